//! `exclude` patterns, with gitignore's rules (which rsync's `--exclude` shares), for paths
//! relative to the synced directory, `/`-separated:
//!
//! - `*` matches within a name (not `/`), `?` one character of a name, `[a-z]`, `[!0-9]` one
//!   of (not of) a set; `\` takes the next character literally.
//! - `**` as a whole segment matches across directories: `**/cache` is `cache` at any depth,
//!   `logs/**` everything inside `logs`, `a/**/b` `b` at any depth under `a` (also `a/b`).
//! - A trailing `/` matches directories only: `cache/` is every directory named `cache`.
//! - A pattern without a `/` (a trailing one aside) matches a name at any depth (`*.tmp`,
//!   `cache/`); one with a `/` at its start or in its middle is matched against the whole path
//!   from the synced directory (`/uploads/tmp`, `uploads/tmp`).
//! - A directory that is excluded excludes everything inside it.
//!
//! Negation (`!pattern`) is refused rather than ignored: a user who writes it expects files to
//! be synced that would not be.

use std::fmt;

/// A compiled `exclude` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// As the user wrote it.
    text: String,
    /// A trailing `/`: directories only.
    dir_only: bool,
    /// Matched against the whole relative path, not only the last name.
    anchored: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` as the last segment: one or more characters, `/` included.
    Rest,
    /// `**/` as the first or a middle segment: zero or more whole directories (`x/y/`).
    Dirs,
    /// `[...]`: one character other than `/` in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exclude pattern `{pattern}` {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl Pattern {
    /// Compiles `text`; refuses what would never match or not do what it says.
    pub fn new(text: &str) -> Result<Self, PatternError> {
        let fail = |reason: &str| PatternError {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.starts_with('!') {
            return Err(fail(
                "negates (`!`): negation is not supported; write the patterns to exclude only \
                 (use `\\!` for a name starting with `!`)",
            ));
        }
        let mut body = text;
        let dir_only = body.ends_with('/') && !body.ends_with("\\/");
        if dir_only {
            body = &body[..body.len() - 1];
        }
        let rooted = body.starts_with('/');
        if rooted {
            body = &body[1..];
        }
        if body.is_empty() {
            return Err(fail(
                "is empty: it would exclude nothing, or everything; give e.g. \"*.tmp\" or \"cache/\"",
            ));
        }
        let anchored = rooted || body.contains('/');
        let segments: Vec<&str> = body.split('/').collect();
        let mut tokens = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            match *segment {
                "" => return Err(fail("has an empty segment (`//`): paths have none")),
                "." | ".." => {
                    return Err(fail(
                        "has a `.` or `..` segment: paths are matched from the synced directory, \
                         without them",
                    ));
                }
                "**" if last && anchored => tokens.push(Token::Rest),
                "**" if !last => {
                    tokens.push(Token::Dirs);
                    continue;
                }
                // A lone `**` names everything, like `*`.
                "**" => tokens.push(Token::Star),
                _ => compile_segment(segment, &mut tokens).map_err(|reason| fail(&reason))?,
            }
            if !last {
                tokens.push(Token::Char('/'));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            dir_only,
            anchored,
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the relative path `path` (`/`-separated, no leading `/`) matches, itself; see
    /// [`is_excluded`] for a path inside an excluded directory.
    pub fn matches(&self, path: &str, is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        let subject = if self.anchored {
            path
        } else {
            path.rsplit('/').next().unwrap_or(path)
        };
        let chars: Vec<char> = subject.chars().collect();
        Matcher::new(&self.tokens, &chars).matches(0, 0)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether `path` (relative, `/`-separated) is excluded: it matches a pattern, or one of the
/// directories it is in does. A scan that skips excluded directories needs only
/// [`Pattern::matches`]; an event for a path deep inside one needs this.
pub fn is_excluded(patterns: &[Pattern], path: &str, is_dir: bool) -> bool {
    if patterns.is_empty() {
        return false;
    }
    let ancestors = path
        .match_indices('/')
        .map(|(i, _)| (&path[..i], true))
        .chain(std::iter::once((path, is_dir)));
    for (prefix, dir) in ancestors {
        if patterns.iter().any(|p| p.matches(prefix, dir)) {
            return true;
        }
    }
    false
}

/// One segment's characters: literals, `*`, `?`, `[...]`, `\x`.
fn compile_segment(segment: &str, tokens: &mut Vec<Token>) -> Result<(), String> {
    let mut chars = segment.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                // `a**b` is `a*b`, as in gitignore: `**` spans directories only as a segment.
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                tokens.push(Token::Star);
            }
            '?' => tokens.push(Token::One),
            '\\' => match chars.next() {
                Some(next) => tokens.push(Token::Char(next)),
                None => return Err("ends with a lone `\\`: escape a character after it".to_owned()),
            },
            '[' => tokens.push(compile_class(&mut chars)?),
            _ => tokens.push(Token::Char(c)),
        }
    }
    Ok(())
}

/// `[...]` after its `[`: `!` or `^` first negates, a `]` first is literal, `a-z` is a range.
fn compile_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, String> {
    let negated = matches!(chars.peek(), Some('!' | '^'));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(c) = chars.next() else {
            return Err("has a `[` without its `]`: close the set, or write `\\[`".to_owned());
        };
        if c == ']' && !first {
            break;
        }
        first = false;
        let c = if c == '\\' {
            chars
                .next()
                .ok_or_else(|| "ends with a lone `\\`: escape a character after it".to_owned())?
        } else {
            c
        };
        let mut lookahead = chars.clone();
        if lookahead.next() == Some('-')
            && let Some(end) = lookahead.next().filter(|e| *e != ']')
        {
            if end < c {
                return Err(format!(
                    "has a reversed range `{c}-{end}`: write `{end}-{c}`"
                ));
            }
            chars.next();
            chars.next();
            ranges.push((c, end));
        } else {
            ranges.push((c, c));
        }
    }
    Ok(Token::Class { negated, ranges })
}

/// Tokens against a name or path, memoized: each (token, position) pair is decided once, so a
/// pattern with several `*` stays linear in the path's length times the pattern's.
struct Matcher<'a> {
    tokens: &'a [Token],
    chars: &'a [char],
    memo: Vec<Option<bool>>,
}

impl<'a> Matcher<'a> {
    fn new(tokens: &'a [Token], chars: &'a [char]) -> Self {
        Self {
            tokens,
            chars,
            memo: vec![None; (tokens.len() + 1) * (chars.len() + 1)],
        }
    }

    fn matches(&mut self, t: usize, p: usize) -> bool {
        let slot = t * (self.chars.len() + 1) + p;
        if let Some(known) = self.memo[slot] {
            return known;
        }
        let result = self.decide(t, p);
        self.memo[slot] = Some(result);
        result
    }

    fn decide(&mut self, t: usize, p: usize) -> bool {
        let Some(token) = self.tokens.get(t) else {
            return p == self.chars.len();
        };
        let here = self.chars.get(p).copied();
        match token {
            Token::Char(c) => here == Some(*c) && self.matches(t + 1, p + 1),
            Token::One => here.is_some_and(|c| c != '/') && self.matches(t + 1, p + 1),
            Token::Class { negated, ranges } => {
                here.is_some_and(|c| {
                    c != '/' && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
                }) && self.matches(t + 1, p + 1)
            }
            Token::Star => {
                self.matches(t + 1, p) || (here.is_some_and(|c| c != '/') && self.matches(t, p + 1))
            }
            Token::Rest => p < self.chars.len(),
            Token::Dirs => {
                if self.matches(t + 1, p) {
                    return true;
                }
                // Any run of whole directories: it ends just after a `/`.
                (p + 1..=self.chars.len())
                    .any(|end| self.chars[end - 1] == '/' && self.matches(t + 1, end))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        Pattern::new(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (pattern, path, is_dir, matches)
    const TABLE: &[(&str, &str, bool, bool)] = &[
        // A name at any depth.
        ("*.tmp", "a.tmp", false, true),
        ("*.tmp", "x/y/a.tmp", false, true),
        ("*.tmp", "a.tmp.gz", false, false),
        ("*.tmp", "tmp", false, false),
        ("*.tmp", "dir.tmp", true, true),
        ("a?c", "abc", false, true),
        ("a?c", "ac", false, false),
        ("core", "x/core", false, true),
        ("core", "x/core/y", false, false),
        // Directories only.
        ("cache/", "cache", true, true),
        ("cache/", "x/cache", true, true),
        ("cache/", "cache", false, false),
        // Anchored: a leading or a middle `/`.
        ("/cache", "cache", true, true),
        ("/cache", "x/cache", true, false),
        ("uploads/tmp", "uploads/tmp", false, true),
        ("uploads/tmp", "x/uploads/tmp", false, false),
        ("/*.log", "a.log", false, true),
        ("/*.log", "d/a.log", false, false),
        ("uploads/*.jpg", "uploads/a.jpg", false, true),
        ("uploads/*.jpg", "uploads/d/a.jpg", false, false),
        // `**`.
        ("**/thumbs/", "thumbs", true, true),
        ("**/thumbs/", "a/b/thumbs", true, true),
        ("**/thumbs/", "a/b/thumbs", false, false),
        ("logs/**", "logs/a", false, true),
        ("logs/**", "logs/a/b", false, true),
        ("logs/**", "logs", true, false),
        ("a/**/b", "a/b", false, true),
        ("a/**/b", "a/x/y/b", false, true),
        ("a/**/b", "a/xb", false, false),
        ("a/**/b", "x/a/b", false, false),
        ("**", "anything/at/all", false, true),
        ("a**b", "axxb", false, true),
        ("a**b", "ax/xb", false, false),
        // Sets and escapes.
        ("[abc].txt", "b.txt", false, true),
        ("[abc].txt", "d.txt", false, false),
        ("[a-c]x", "bx", false, true),
        ("[!0-9]*", "9lives", false, false),
        ("[!0-9]*", "lives", false, true),
        ("[]]", "]", false, true),
        ("\\*", "*", false, true),
        ("\\*", "a", false, false),
        ("\\!important", "!important", false, true),
        ("é*", "été", false, true),
    ];

    #[test]
    fn matches_as_gitignore_does() {
        for (pattern, path, is_dir, expected) in TABLE {
            assert_eq!(
                p(pattern).matches(path, *is_dir),
                *expected,
                "{pattern} against {path} (dir: {is_dir})"
            );
        }
    }

    #[test]
    fn a_path_inside_an_excluded_directory_is_excluded() {
        let patterns = [p("cache/"), p("/build"), p("*.tmp")];
        assert!(is_excluded(&patterns, "a/cache/b/c.jpg", false));
        assert!(is_excluded(&patterns, "build/x", false));
        assert!(is_excluded(&patterns, "x/y.tmp", false));
        assert!(!is_excluded(&patterns, "a/cached/c.jpg", false));
        assert!(!is_excluded(&patterns, "x/build", false));
        // A file named `cache` is not a directory.
        assert!(!is_excluded(&patterns, "a/cache", false));
        assert!(!is_excluded(&[], "anything", false));
    }

    #[test]
    fn refuses_patterns_that_would_not_do_what_they_say() {
        for (text, reason) in [
            ("", "empty"),
            ("/", "empty"),
            ("!keep.txt", "negation"),
            ("a//b", "empty segment"),
            ("../x", "`..`"),
            ("a/./b", "`.`"),
            ("[abc", "without its `]`"),
            ("[z-a]", "reversed range"),
            ("abc\\", "lone"),
        ] {
            let err = Pattern::new(text).unwrap_err();
            assert!(err.reason.contains(reason), "{text}: {err}");
            assert_eq!(err.pattern, text);
        }
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = p("*a*a*a*a*a*a*a*a*b");
        let path = "a".repeat(4000);
        assert!(!pattern.matches(&path, false));
    }
}
