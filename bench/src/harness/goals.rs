//! An issue's goal: a measured value against a bound, and the Markdown table of them.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::results::number;

/// A goal of an issue: `measured` must be at least (or at most) `bound`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub name: String,
    pub description: String,
    pub measured: Option<f64>,
    pub bound: f64,
    /// `None` when nothing was measured.
    pub met: Option<bool>,
}

impl Goal {
    /// Met when `measured` ≥ `bound`.
    pub(crate) fn at_least(
        name: &str,
        description: impl Into<String>,
        measured: Option<f64>,
        bound: f64,
    ) -> Self {
        Self::new(
            name,
            description,
            measured,
            bound,
            measured.map(|m| m >= bound),
        )
    }

    /// Met when `measured` ≤ `bound`.
    pub(crate) fn at_most(
        name: &str,
        description: impl Into<String>,
        measured: Option<f64>,
        bound: f64,
    ) -> Self {
        Self::new(
            name,
            description,
            measured,
            bound,
            measured.map(|m| m <= bound),
        )
    }

    fn new(
        name: &str,
        description: impl Into<String>,
        measured: Option<f64>,
        bound: f64,
        met: Option<bool>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            description: description.into(),
            measured,
            bound,
            met,
        }
    }
}

/// The goals' table under `header` (`goal (issue 7)`), each bound after `relation` (`≥`, `≤`).
pub(crate) fn render_goals(md: &mut String, header: &str, relation: &str, goals: &[Goal]) {
    render_goals_by(md, header, goals, |_| relation);
}

/// [`render_goals`] with each goal's own relation (a bound that must not be reached: `<`).
pub(crate) fn render_goals_by<'a>(
    md: &mut String,
    header: &str,
    goals: &[Goal],
    relation: impl Fn(&Goal) -> &'a str,
) {
    let _ = writeln!(
        md,
        "| {header} | measured | bound | met |\n|---|---:|---:|---|"
    );
    for goal in goals {
        let relation = relation(goal);
        let _ = writeln!(
            md,
            "| {} | {} | {relation} {} | {} |",
            goal.description,
            number(goal.measured, 2),
            goal.bound,
            match goal.met {
                Some(true) => "**met**",
                Some(false) => "**not met**",
                None => "not measured",
            }
        );
    }
}
