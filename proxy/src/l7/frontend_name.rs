//! Which frontend a listener serves. A reload may hand a kept address to a frontend of another
//! name, and the table and the listener's name cannot change in one step: a request must find
//! its frontend whichever of the two it saw first.
//!
//! The reload renames the listener first ([`ListenerFrontend::hand_to`]), then stores the new table;
//! a request loads the table first, then looks its frontend up ([`ListenerFrontend::find`]). So a
//! request that saw the new table sees the new name; one that saw the old table finds its
//! frontend under the new name or, when the old table does not have it, under the previous one.

use arc_swap::ArcSwap;
use std::sync::Arc;

use crate::{config::Frontend, table::Table};

/// The frontend a listener serves, by name, and the one it served before the last hand-over.
#[derive(Debug)]
pub(crate) struct ListenerFrontend {
    current: ArcSwap<String>,
    previous: ArcSwap<String>,
}

impl ListenerFrontend {
    pub(crate) fn new(name: String) -> Self {
        let name = Arc::new(name);
        Self {
            previous: ArcSwap::new(Arc::clone(&name)),
            current: ArcSwap::new(name),
        }
    }

    /// The frontend served now, for logs.
    pub(crate) fn current(&self) -> Arc<String> {
        self.current.load_full()
    }

    /// Hands the listener to `name`. Called before the table that has `name` is stored.
    pub(crate) fn hand_to(&self, name: &str) {
        self.previous.store(self.current.load_full());
        self.current.store(Arc::new(name.to_owned()));
    }

    /// The frontend this listener serves in `table`, with its index; `table` must be loaded
    /// before this is called (see the module doc).
    pub(crate) fn find<'t>(&self, table: &'t Table) -> Option<(usize, &'t Frontend)> {
        table
            .frontend(&self.current.load())
            .or_else(|| table.frontend(&self.previous.load()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::{
        config::{Sections, build, section::FrontendSection},
        state::Registry,
    };

    /// A table with one frontend `name` on 127.0.0.1:8080.
    fn table(name: &str, registry: &Registry) -> Table {
        let section: FrontendSection = toml::from_str(r#"bind = ["127.0.0.1:8080"]"#).unwrap();
        let sections = Sections {
            frontend: [(name.to_owned(), section)].into_iter().collect(),
            ..Sections::default()
        };
        Table::build(build(&sections).unwrap(), registry)
    }

    // Input: a listener of frontend `old` handed to `new` by a reload, seen with the table from
    // before the reload and with the one after. Output: the frontend is found either way.
    // (The listener was renamed after the new table was stored; a request in between looked
    // the old name up in the new table, found nothing, and its connection was closed.)
    #[test]
    fn a_request_finds_its_frontend_on_either_side_of_a_rename() {
        let registry = Registry::default();
        let (before, after) = (table("old", &registry), table("new", &registry));
        let name = ListenerFrontend::new("old".to_owned());
        assert_eq!(name.find(&before).unwrap().1.name, "old");
        name.hand_to("new");
        assert_eq!(name.find(&before).unwrap().1.name, "old");
        assert_eq!(name.find(&after).unwrap().1.name, "new");
        assert_eq!(name.current().as_str(), "new");
    }
}
