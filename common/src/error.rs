//! An error found in one config section, located by its byte span in the file.

use std::ops::Range;

use serde_spanned::Spanned;

/// One problem with the config, ready to be reported next to its line.
///
/// Sections report every problem they find rather than stopping at the first, so the user fixes
/// the whole file in one pass, as `haproxy -c` lets them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// Bytes of the file the problem is about; `None` when no single place is to blame.
    pub span: Option<Range<usize>>,
    /// What is wrong and what is allowed instead.
    pub message: String,
}

impl ConfigError {
    /// An error about the value that `at` was read from.
    pub fn at<T>(at: &Spanned<T>, message: impl Into<String>) -> Self {
        Self {
            span: Some(at.span()),
            message: message.into(),
        }
    }

    /// An error about a byte range of the file.
    pub fn spanned(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            message: message.into(),
        }
    }

    /// An error that no single place of the file is to blame for.
    pub fn global(message: impl Into<String>) -> Self {
        Self {
            span: None,
            message: message.into(),
        }
    }
}

/// `names` joined by commas, or `none`: the list of what is defined, in a message about
/// something that is not.
pub fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_or_none_says_none_for_an_empty_list() {
        assert_eq!(list_or_none(&[]), "none");
        assert_eq!(list_or_none(&["a"]), "a");
        assert_eq!(list_or_none(&["a", "b"]), "a, b");
    }
}
