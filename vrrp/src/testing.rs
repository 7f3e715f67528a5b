//! Helpers shared by this crate's unit tests.

use std::path::Path;

/// The lines a test's scripts or followers appended to `log`; none when it does not exist yet.
pub(crate) fn logged_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
