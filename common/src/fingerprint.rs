//! A hash of files' content, to tell a file replaced in place (a renewed certificate) from the
//! same one when a reload compares configs.

use std::hash::{Hash, Hasher};
use std::path::Path;

/// A hash of the content of `paths`, in order; `None` when one cannot be read. Not
/// cryptographic: it tells a changed file from the same one, nothing more.
pub fn of_files(paths: &[&Path]) -> Option<u64> {
    let mut hasher = std::hash::DefaultHasher::new();
    for path in paths {
        std::fs::read(path).ok()?.hash(&mut hasher);
    }
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::of_files;

    #[test]
    fn a_file_changed_in_place_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        std::fs::write(&file, b"one").unwrap();
        let before = of_files(&[&file]).unwrap();
        assert_eq!(of_files(&[&file]), Some(before));
        std::fs::write(&file, b"two").unwrap();
        assert_ne!(of_files(&[&file]), Some(before));
        assert_eq!(of_files(&[&dir.path().join("missing")]), None);
    }
}
