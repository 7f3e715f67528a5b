//! One ACL definition, `FETCH [FLAGS] [VALUES...]`: parsing it and testing a
//! request against it.
//!
//! Flags come right after the fetch: `-i` (ignore ASCII case), `-m METHOD`
//! (choose the match method) and `--` (end of flags, so values may start
//! with `-`). Several values are alternatives: any one matching is enough.

use super::fetch::{Fetch, Kind};
use super::lexer::{Word, split_words};
use super::matcher::{MatchMethod, Matcher};
use super::{AclError, RequestFacts};

/// One compiled ACL definition, such as `path_beg -i /static /images`.
///
/// Several definitions can be [merged](Acl::merge) under one name, which
/// HAProxy does when the same `acl NAME` line appears more than once: the
/// result matches when any of them does.
#[derive(Debug, Clone)]
pub struct Acl {
    /// Alternatives; the ACL matches when any one does.
    tests: Vec<Test>,
}

impl Acl {
    /// Parses `FETCH [FLAGS] [VALUES...]`, e.g. `hdr(host) -i example.com`.
    pub fn parse(expr: &str) -> Result<Acl, AclError> {
        Acl::from_words(&split_words(expr)?)
    }

    /// Whether the request matches this ACL.
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.tests.iter().any(|test| test.matches(req))
    }

    /// Adds `other`'s definition as an alternative: the merged ACL matches
    /// when either did. This is how HAProxy treats an ACL name defined on
    /// several lines.
    pub fn merge(&mut self, other: Acl) {
        self.tests.extend(other.tests);
    }

    /// Parses a definition already split into words (anonymous ACLs in
    /// conditions arrive this way).
    pub(crate) fn from_words(words: &[Word]) -> Result<Acl, AclError> {
        let Some((first, rest)) = words.split_first() else {
            return Err(AclError::EmptyAcl);
        };
        let fetch = Fetch::parse(&first.text)?;
        let kind = fetch.kind();
        let mut method = fetch.default_method;
        let mut icase = false;

        let mut rest = rest;
        while let Some((word, tail)) = rest.split_first() {
            if word.quoted_at == Some(0) || !word.text.starts_with('-') {
                break;
            }
            rest = tail;
            match word.text.as_str() {
                "--" => break,
                "-i" => {
                    if kind != Kind::Str {
                        return Err(AclError::FlagNotAccepted {
                            flag: word.text.clone(),
                            fetch: fetch.written.clone(),
                            allowed: allowed_flags(kind),
                        });
                    }
                    icase = true;
                }
                "-m" => {
                    let Some((name, tail)) = rest.split_first() else {
                        return Err(AclError::MissingMatchMethod {
                            allowed: names(MatchMethod::allowed_for(kind)),
                        });
                    };
                    rest = tail;
                    let chosen = MatchMethod::parse(&name.text)?;
                    let allowed = MatchMethod::allowed_for(kind);
                    if !allowed.contains(&chosen) {
                        return Err(AclError::MatchMethodNotAllowed {
                            method: name.text.clone(),
                            fetch: fetch.written.clone(),
                            allowed: names(allowed),
                        });
                    }
                    method = chosen;
                }
                _ => {
                    return Err(AclError::UnknownFlag {
                        flag: word.text.clone(),
                        fetch: fetch.written.clone(),
                    });
                }
            }
        }

        let matcher = Matcher::compile(method, icase, rest, &fetch.written, fetch.int_domain())?;
        Ok(Acl {
            tests: vec![Test { fetch, matcher }],
        })
    }
}

/// One fetch with the values it is compared against.
#[derive(Debug, Clone)]
struct Test {
    fetch: Fetch,
    matcher: Matcher,
}

impl Test {
    fn matches(&self, req: &RequestFacts<'_>) -> bool {
        self.fetch
            .any_sample(req, &mut |sample| self.matcher.matches(sample))
    }
}

/// The flags a fetch of this kind accepts, for error messages.
fn allowed_flags(kind: Kind) -> String {
    let methods = names(MatchMethod::allowed_for(kind)).replace(", ", "|");
    match kind {
        Kind::Str => format!("-i, -m {methods}, --"),
        Kind::Int | Kind::Ip | Kind::Bool => format!("-m {methods}, --"),
    }
}

fn names(methods: &[MatchMethod]) -> String {
    methods
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}
