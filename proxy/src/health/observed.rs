//! What `error_limit` errors in a row in live traffic do to a server's health check (HAProxy's
//! `on-error`, applied by `health_adjust`): the request path counts them
//! ([`crate::state::Observer`]), and the server's check task, which owns its rise/fall counter,
//! acts here. Whatever the action, the next check then comes within `fast_interval`.

use std::time::Duration;

use super::counter::{HealthCounter, Transition};
use crate::{
    config::{Check, OnError},
    state::CheckResult,
};

/// Moves `health` as `check.on_error` says; `None` for `fastinter`, which only brings the next
/// check forward.
pub(super) fn act(check: &Check, health: &mut HealthCounter) -> Option<Transition> {
    Some(match check.on_error {
        OnError::Fastinter => return None,
        OnError::FailCheck => health.record(false),
        OnError::SuddenDeath => health.fail_to_last_chance(),
        OnError::MarkDown => health.fail_to_down(),
    })
}

/// The check result the stats page shows after an `on_error` action: HAProxy's `HANA` status
/// with its description, which the log's `reason` carries too.
pub(super) fn result(why: String) -> CheckResult {
    CheckResult {
        ok: false,
        description: format!("HANA {why}"),
        duration: Duration::ZERO,
    }
}
