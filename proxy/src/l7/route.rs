//! Choosing a backend for a request: the frontend's `use_backend` rules in order, then its
//! `default_backend`.

use super::acl::RequestFacts;
use crate::config::Frontend;

/// The index of the backend that serves `request`, or `None` when no rule matched and the
/// frontend has no default backend.
pub(crate) fn choose_backend(frontend: &Frontend, request: &RequestFacts<'_>) -> Option<usize> {
    frontend
        .rules
        .iter()
        .find(|rule| rule.condition.matches(request) != rule.negate)
        .map(|rule| rule.backend)
        .or(frontend.default_backend)
}
