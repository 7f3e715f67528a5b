//! HAProxy's predefined ACLs, usable by name in any condition without an
//! `acl` line: `TRUE`, `FALSE`, `METH_GET`, `LOCALHOST`, ...
//!
//! Each is written as an ordinary definition so that it reads exactly like
//! HAProxy's documentation table; a test checks that every one parses.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use super::Acl;

/// Name and definition of every predefined ACL, in the order errors list them.
const DEFINITIONS: &[(&str, &str)] = &[
    ("TRUE", "always_true"),
    ("FALSE", "always_false"),
    // Every request the L7 tier evaluates is HTTP.
    ("HTTP", "always_true"),
    ("LOCALHOST", "src 127.0.0.1/8 ::1"),
    ("METH_CONNECT", "method CONNECT"),
    ("METH_DELETE", "method DELETE"),
    ("METH_GET", "method GET HEAD"),
    ("METH_HEAD", "method HEAD"),
    ("METH_OPTIONS", "method OPTIONS"),
    ("METH_POST", "method POST"),
    ("METH_PUT", "method PUT"),
    ("METH_TRACE", "method TRACE"),
    ("HTTP_URL_SLASH", "url_beg /"),
    ("HTTP_URL_STAR", "url *"),
];

/// The names of the predefined ACLs.
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    DEFINITIONS.iter().map(|(name, _)| *name)
}

/// The predefined ACL called `name`, if there is one.
pub(crate) fn get(name: &str) -> Option<&'static Arc<Acl>> {
    PREDEFINED.get(name)
}

/// Compiled once: conditions share these instead of reparsing them.
static PREDEFINED: LazyLock<HashMap<&'static str, Arc<Acl>>> = LazyLock::new(|| {
    DEFINITIONS
        .iter()
        .filter_map(|(name, definition)| Some((*name, Arc::new(Acl::parse(definition).ok()?))))
        .collect()
});

/// The definition text of a predefined ACL (for tests and documentation).
#[cfg(test)]
pub(crate) fn definitions() -> &'static [(&'static str, &'static str)] {
    DEFINITIONS
}
