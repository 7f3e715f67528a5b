//! Tracking: the checkers of `[vrrp.script.NAME]` and the priority (or fault) an instance derives
//! from what it tracks, with keepalived's fall/rise and weight rules.
//!
//! - [`script`]: one task per script, publishing its verdict on a `watch` channel.
//! - [`weight`]: the effective priority of an instance from its tracked scripts and interfaces.

mod script;
pub(crate) mod shell;
mod weight;

pub use script::{ScriptHealth, spawn_script};
pub use weight::{Tracked, tracked_priority};
