//! Finding `rsync` and `lsyncd`, and naming every missing one before anything starts.

use std::path::{Path, PathBuf};

use crate::compare::{self, is_executable};

/// The reference programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub rsync: PathBuf,
    pub lsyncd: PathBuf,
}

/// The tools that are not there, each with its package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing tools: {}", .0.join("; "))]
pub struct MissingTools(pub Vec<String>);

/// Finds both; a given path overrides the search of `PATH` (and `/usr/bin`).
pub fn find_tools(rsync: Option<&Path>, lsyncd: Option<&Path>) -> Result<Tools, MissingTools> {
    let found = |given: Option<&Path>, name: &str, package: &str| match given {
        Some(path) if is_executable(path) => Ok(path.to_owned()),
        Some(path) => Err(format!("{name} (no executable at {})", path.display())),
        None => find_in_path(name)
            .ok_or_else(|| format!("{name} (apt-get install {package}, or pass --{name} PATH)")),
    };
    match (
        found(rsync, "rsync", "rsync"),
        found(lsyncd, "lsyncd", "lsyncd"),
    ) {
        (Ok(rsync), Ok(lsyncd)) => Ok(Tools { rsync, lsyncd }),
        (rsync, lsyncd) => Err(MissingTools(
            [rsync.err(), lsyncd.err()].into_iter().flatten().collect(),
        )),
    }
}

/// The first executable called `name` in `PATH`, else in `/usr/bin` or `/usr/local/bin`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    compare::find_in_path(name).or_else(|| {
        ["/usr/bin", "/usr/local/bin"]
            .into_iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|candidate| is_executable(candidate))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;

    use super::find_tools;

    #[test]
    fn every_missing_tool_is_named() {
        let error = find_tools(
            Some(Path::new("/nonexistent/rsync")),
            Some(Path::new("/nonexistent/lsyncd")),
        )
        .unwrap_err();
        assert_eq!(error.0.len(), 2, "{error}");
        assert!(
            error
                .to_string()
                .contains("rsync (no executable at /nonexistent/rsync)")
        );
        assert!(
            error
                .to_string()
                .contains("lsyncd (no executable at /nonexistent/lsyncd)")
        );
    }
}
