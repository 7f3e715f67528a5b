//! Helpers shared by the config tests of `[volume.NAME]` and `[sync.NAME]`.

#![allow(clippy::unwrap_used, reason = "tests")]

use fulcrum_common::ConfigError;

/// The one config `built` holds; panics with the errors otherwise.
pub(crate) fn only<C>(built: Result<Vec<C>, Vec<ConfigError>>) -> C {
    let mut all = built.unwrap_or_else(|errors| panic!("{errors:#?}"));
    assert_eq!(all.len(), 1);
    all.remove(0)
}

/// Each error of `built` (built from `text`) as (the text its span covers, its message).
pub(crate) fn error_spans<C>(
    text: &str,
    built: Result<Vec<C>, Vec<ConfigError>>,
) -> Vec<(String, String)> {
    match built {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| (text[e.span.unwrap()].to_owned(), e.message))
            .collect(),
    }
}
