//! The one error type of the ACL module.
//!
//! Every message goes straight into a configuration error report, so each one
//! names the offending text and says what would have been accepted instead.

/// Why an ACL definition or an `if` condition was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AclError {
    /// The ACL definition has no words at all.
    #[error("empty ACL definition (expected `FETCH [FLAGS] [VALUES...]`, e.g. `path_beg /static`)")]
    EmptyAcl,

    /// A quote was opened and never closed.
    #[error("unterminated {quote} quote in `{text}` (close it with a matching {quote})")]
    UnterminatedQuote {
        /// The quote character, `"` or `'`.
        quote: char,
        /// The text being split into words.
        text: String,
    },

    /// The first word of an ACL definition is not a known fetch.
    #[error("unknown matcher `{name}` (allowed: {allowed})")]
    UnknownFetch {
        /// The name as written, without its `(...)` argument.
        name: String,
        /// The fetch names this module knows, comma separated.
        allowed: String,
    },

    /// The fetch exists but its `(...)` argument is missing, superfluous or bad.
    #[error("bad argument for `{fetch}`: {reason}")]
    BadFetchArgument {
        /// The fetch as written.
        fetch: String,
        /// What is wrong and what is expected.
        reason: String,
    },

    /// A word starting with `-` that is not a flag this module knows.
    #[error(
        "unknown flag `{flag}` for `{fetch}` (allowed: -i, -m METHOD, --; a value starting with `-` goes after `--`)"
    )]
    UnknownFlag {
        /// The flag as written.
        flag: String,
        /// The fetch it was given to.
        fetch: String,
    },

    /// A known flag given to a fetch that has no use for it.
    #[error("flag `{flag}` is not accepted by `{fetch}` (allowed: {allowed})")]
    FlagNotAccepted {
        /// The flag as written.
        flag: String,
        /// The fetch it was given to.
        fetch: String,
        /// The flags this fetch does accept.
        allowed: String,
    },

    /// `-m` ended the definition.
    #[error("`-m` needs a match method after it (allowed here: {allowed})")]
    MissingMatchMethod {
        /// The methods the fetch accepts.
        allowed: String,
    },

    /// `-m` with a method nobody knows.
    #[error("unknown match method `{method}` after `-m` (allowed: {allowed})")]
    UnknownMatchMethod {
        /// The method as written.
        method: String,
        /// Every match method this module knows.
        allowed: String,
    },

    /// `-m METHOD` with a method that does not fit the fetch's kind of value.
    #[error("match method `-m {method}` is not allowed for `{fetch}` (allowed: {allowed})")]
    MatchMethodNotAllowed {
        /// The method as written.
        method: String,
        /// The fetch it was given to.
        fetch: String,
        /// The methods this fetch accepts.
        allowed: String,
    },

    /// Values given where none are accepted (`ssl_fc`, `-m found`, TRUE-like ACLs).
    #[error("`{what}` takes no values (got `{value}`)")]
    ValuesNotAllowed {
        /// The fetch or match method that takes no values.
        what: String,
        /// The first value given.
        value: String,
    },

    /// A `*_reg` / `-m reg` pattern the regex engine refused.
    #[error("bad regex `{pattern}`: {reason}")]
    BadRegex {
        /// The pattern as written.
        pattern: String,
        /// The regex engine's explanation.
        reason: String,
    },

    /// An address or network for `src` that does not parse.
    #[error(
        "bad CIDR `{value}` for `src` (allowed: an IPv4 or IPv6 address, optionally with /PREFIX or /NETMASK, e.g. 10.0.0.0/8, 192.168.1.7, 2001:db8::/32)"
    )]
    BadCidr {
        /// The value as written.
        value: String,
    },

    /// A port or port range for `dst_port` that does not parse.
    #[error(
        "bad port range `{value}` for `dst_port`: {reason} (allowed: PORT, LOW:HIGH, LOW:, :HIGH, with ports 0-65535, e.g. 443 or 8000:8080)"
    )]
    BadPortRange {
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An integer value (`hdr_cnt`, `-m len`) that does not parse.
    #[error(
        "bad integer `{value}` for `{fetch}`: {reason} (allowed: N, LOW:HIGH, LOW:, :HIGH, or one of eq|ge|gt|le|lt followed by N)"
    )]
    BadInteger {
        /// The value as written.
        value: String,
        /// The fetch it was given to.
        fetch: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An `if` condition with no terms.
    #[error(
        "empty condition (expected ACL names joined by spaces (and), `||` or `or`, each optionally negated with `!`, or anonymous ACLs `{{ FETCH [FLAGS] [VALUES...] }}`)"
    )]
    EmptyCondition,

    /// A condition names an ACL that was never defined.
    #[error("unknown ACL `{name}` ({})", known_acls(.defined))]
    UnknownAcl {
        /// The name as written.
        name: String,
        /// The names that are defined, sorted.
        defined: Vec<String>,
    },

    /// `{` never closed, `}` never opened, or `{` inside `{ ... }`.
    #[error("unbalanced braces: {detail}")]
    UnbalancedBraces {
        /// Which imbalance, and how to write braces.
        detail: String,
    },

    /// `{ }` with nothing inside.
    #[error(
        "empty anonymous ACL `{{ }}` (expected `{{ FETCH [FLAGS] [VALUES...] }}`, e.g. `{{ method POST }}`)"
    )]
    EmptyAnonymousAcl,

    /// An anonymous ACL whose definition is wrong; says which one and why.
    #[error("in anonymous ACL `{{ {text} }}`: {inner}")]
    InAnonymousAcl {
        /// The definition between the braces.
        text: String,
        /// What is wrong with it.
        inner: Box<AclError>,
    },

    /// `||` / `or` at the start or end of a condition, or twice in a row.
    #[error("dangling `{op}`: it needs an ACL on both sides, as in `a || b`")]
    DanglingOr {
        /// The operator as written (`||` or `or`).
        op: String,
    },

    /// `!` with no ACL after it.
    #[error("dangling `!`: it must be followed by an ACL name or `{{ ... }}`, as in `!is_static`")]
    DanglingNot,
}

/// Renders the "what is defined" part of [`AclError::UnknownAcl`].
fn known_acls(defined: &[String]) -> String {
    if defined.is_empty() {
        format!(
            "no ACLs are defined; predefined: {}",
            super::predefined::names().collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("defined: {}", defined.join(", "))
    }
}
