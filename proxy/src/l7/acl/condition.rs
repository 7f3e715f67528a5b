//! `if` conditions: HAProxy's grammar for combining ACLs, and evaluating it.
//!
//! ```text
//! condition := and-group { ("||" | "or") and-group }
//! and-group := term { term }             (terms side by side are ANDed)
//! term      := { "!" } ( ACL_NAME | "{" FETCH [FLAGS] [VALUES...] "}" )
//! ```
//!
//! AND binds tighter than OR and there are no parentheses, exactly as in
//! HAProxy, so `a b || c` is `(a and b) or c`. `!` may stand alone or be glued
//! to the term (`!is_static`, `!{`); braces must be words of their own.

use std::collections::HashMap;
use std::sync::Arc;

use super::lexer::{Word, split_words};
use super::{Acl, AclError, RequestFacts, predefined};

/// A compiled `if` expression, e.g. `is_api !{ src 10.0.0.0/8 } || METH_GET`.
#[derive(Debug, Clone)]
pub struct Condition {
    /// OR of AND-groups; never empty, nor is any group.
    any_of: Vec<Vec<Term>>,
}

impl Condition {
    /// Parses a condition. `named` resolves ACL names (they shadow the
    /// predefined ones such as `METH_GET`); an unknown name is an error listing
    /// the defined ones.
    pub fn parse(expr: &str, named: &HashMap<String, Arc<Acl>>) -> Result<Condition, AclError> {
        let words = split_words(expr)?;
        if words.is_empty() {
            return Err(AclError::EmptyCondition);
        }

        let mut any_of = Vec::new();
        let mut group = Vec::new();
        let mut negated = false;
        let mut pending_not = false;
        let mut last_or = None;
        let mut rest = words.as_slice();
        while let Some((word, tail)) = rest.split_first() {
            rest = tail;
            if word.is_bare("||") || word.is_bare("or") {
                if pending_not {
                    return Err(AclError::DanglingNot);
                }
                if group.is_empty() {
                    return Err(AclError::DanglingOr {
                        op: word.text.clone(),
                    });
                }
                any_of.push(std::mem::take(&mut group));
                last_or = Some(word.text.clone());
                continue;
            }

            let bangs = word
                .bare_prefix()
                .bytes()
                .take_while(|&b| b == b'!')
                .count();
            negated ^= bangs % 2 == 1;
            pending_not |= bangs > 0;
            let text = word.text.get(bangs..).unwrap_or_default();
            let bare = word.quoted_at.is_none();
            if text.is_empty() && bare {
                // A lone `!`: it applies to the next term.
                continue;
            }

            let acl = if bare && text == "{" {
                let (inside, after) = anonymous_body(rest)?;
                rest = after;
                Arc::new(
                    Acl::from_words(inside).map_err(|inner| AclError::InAnonymousAcl {
                        text: render(inside),
                        inner: Box::new(inner),
                    })?,
                )
            } else if bare && text == "}" {
                return Err(AclError::UnbalancedBraces {
                    detail: "`}` without an opening `{`".to_owned(),
                });
            } else if bare && (text.starts_with('{') || text.ends_with('}')) {
                return Err(AclError::UnbalancedBraces {
                    detail: format!(
                        "in `{}`, braces must stand alone, separated by spaces, as in `{{ path_beg /admin }}`",
                        word.text
                    ),
                });
            } else {
                lookup(text, named)?
            };
            group.push(Term { negated, acl });
            negated = false;
            pending_not = false;
        }

        if pending_not {
            return Err(AclError::DanglingNot);
        }
        if group.is_empty() {
            return Err(match last_or {
                Some(op) => AclError::DanglingOr { op },
                None => AclError::EmptyCondition,
            });
        }
        any_of.push(group);
        Ok(Condition { any_of })
    }

    /// Whether the request satisfies the condition.
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.any_of
            .iter()
            .any(|group| group.iter().all(|term| term.matches(req)))
    }
}

/// One possibly negated ACL of a condition.
#[derive(Debug, Clone)]
struct Term {
    negated: bool,
    acl: Arc<Acl>,
}

impl Term {
    fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.acl.matches(req) != self.negated
    }
}

/// Finds a named ACL: the caller's first, then the predefined ones.
fn lookup(name: &str, named: &HashMap<String, Arc<Acl>>) -> Result<Arc<Acl>, AclError> {
    if let Some(acl) = named.get(name).or_else(|| predefined::get(name)) {
        return Ok(Arc::clone(acl));
    }
    let mut defined: Vec<String> = named.keys().cloned().collect();
    defined.sort();
    Err(AclError::UnknownAcl {
        name: name.to_owned(),
        defined,
    })
}

/// Splits the words after a `{` into the anonymous ACL's definition and the
/// words after its closing `}`.
fn anonymous_body(words: &[Word]) -> Result<(&[Word], &[Word]), AclError> {
    for (at, word) in words.iter().enumerate() {
        if word.is_bare("}") {
            let inside = words.get(..at).unwrap_or_default();
            if inside.is_empty() {
                return Err(AclError::EmptyAnonymousAcl);
            }
            return Ok((inside, words.get(at + 1..).unwrap_or_default()));
        }
        if word.is_bare("{") {
            return Err(AclError::UnbalancedBraces {
                detail: "`{` inside `{ ... }`: anonymous ACLs cannot be nested".to_owned(),
            });
        }
    }
    let glued = words
        .iter()
        .find(|w| w.bare_prefix().ends_with('}'))
        .map(|w| {
            format!(
                "; `{}` ends with `}}`, but braces must stand alone, separated by spaces",
                w.text
            )
        })
        .unwrap_or_default();
    Err(AclError::UnbalancedBraces {
        detail: format!("`{{` is never closed by a `}}`{glued}"),
    })
}

/// Writes words back as text for error messages, quoting where needed.
fn render(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| {
            if w.text.is_empty() || w.text.contains([' ', '\t']) {
                format!("\"{}\"", w.text)
            } else {
                w.text.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
