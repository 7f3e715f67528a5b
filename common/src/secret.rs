//! Secrets given inline (`password = "..."`) or through a `*_file` twin (`password_file = "..."`)
//! that names a file holding them, so the config itself can be world-readable.

use std::path::PathBuf;

use serde_spanned::Spanned;

use crate::ConfigError;

/// Resolves a secret from its inline value or its `*_file` twin; `key` names the inline key.
///
/// Exactly one of the two may be set. A file's trailing newline is dropped, since editors add one.
pub fn resolve(
    key: &str,
    inline: Option<&Spanned<String>>,
    file: Option<&Spanned<PathBuf>>,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(file)) => Err(ConfigError::at(
            file,
            format!("set either `{key}` or `{key}_file`, not both"),
        )),
        (Some(value), None) => Ok(Some(value.get_ref().clone())),
        (None, Some(path)) => std::fs::read_to_string(path.get_ref())
            .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| {
                ConfigError::at(
                    path,
                    format!("cannot read `{key}_file` {}: {e}", path.get_ref().display()),
                )
            }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::io::Write;

    use super::*;

    fn spanned<T>(v: T) -> Spanned<T> {
        Spanned::new(0..1, v)
    }

    #[test]
    fn inline_file_both_and_missing() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "s3cret").unwrap();
        let path = spanned(f.path().to_path_buf());
        assert_eq!(
            resolve("password", None, Some(&path)).unwrap().as_deref(),
            Some("s3cret")
        );
        let inline = spanned("inline".to_owned());
        assert_eq!(
            resolve("password", Some(&inline), None).unwrap().as_deref(),
            Some("inline")
        );
        let both = resolve("password", Some(&inline), Some(&path)).unwrap_err();
        assert!(both.message.contains("not both"));
        let missing = spanned(PathBuf::from("/nonexistent/fulcrum-secret"));
        let err = resolve("password", None, Some(&missing)).unwrap_err();
        assert!(
            err.message.contains("cannot read `password_file`"),
            "{}",
            err.message
        );
        assert_eq!(resolve("password", None, None).unwrap(), None);
    }
}
