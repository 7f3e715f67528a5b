//! A `[nrpe.command]` line, split into words once at config time (shell quoting honoured, no
//! shell run), with its `$ARGn$` macros found so that a request's arguments are put inside words
//! and can never add one.
//!
//! Macros follow NRPE's `process_macros`: `$ARG1$` to `$ARG16$` take the request's arguments (an
//! argument not sent is empty), `$$` is a `$`, and any other `$` is kept. Where NRPE's shell would
//! drop an unquoted empty expansion, a word made only of macros that all came out empty is left
//! out here too, so `-w $ARG1$ $ARG2$` without a second argument runs `-w x`, not `-w x ""`.

use std::borrow::Cow;

use crate::checks::Builtin;

use super::request::MAX_ARGUMENTS;

/// The word that makes a line an in-process check: `builtin load -w 15,10,5 -c 30,25,20`.
pub const BUILTIN: &str = "builtin";

/// A parsed command line. Equal when written the same (for reload comparisons).
#[derive(Debug, Clone)]
pub struct CommandLine {
    line: String,
    run: Run,
}

#[derive(Debug, Clone)]
enum Run {
    /// A program and its arguments.
    Exec(Vec<Word>),
    /// A builtin without macros, parsed once.
    Builtin(Builtin),
    /// A builtin whose options come from the request: parsed after substitution.
    BuiltinWithArguments(Vec<Word>),
}

/// One word of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `$ARGn$`, 0-based.
    Arg(usize),
}

/// What a request runs, its arguments substituted.
#[derive(Debug)]
pub(crate) enum Resolved<'a> {
    /// The program then its arguments; never empty.
    Exec(Vec<String>),
    Builtin(Cow<'a, Builtin>),
}

impl CommandLine {
    /// Parses a command line; the error says what is wrong, for the config error at its key.
    pub fn parse(line: &str) -> Result<Self, String> {
        let split = shell_words::split(line)
            .map_err(|e| format!("cannot split it into words ({e}): check its quotes"))?;
        let words = split
            .iter()
            .map(|word| Word::parse(word))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((program, rest)) = words.split_first() else {
            return Err("the command line is empty".to_owned());
        };
        let run = if split[0] == BUILTIN {
            if rest.is_empty() {
                return Err(format!(
                    "`{BUILTIN}` needs a check name, e.g. `{BUILTIN} load -w 15,10,5 -c 30,25,20`"
                ));
            }
            if rest.iter().any(Word::has_args) {
                Run::BuiltinWithArguments(rest.to_vec())
            } else {
                Run::Builtin(
                    Builtin::parse(&split[1..]).map_err(|e| format!("builtin check: {e}"))?,
                )
            }
        } else {
            if program.has_args() {
                return Err(
                    "the program (the first word) cannot come from a `$ARGn$` argument".to_owned(),
                );
            }
            if split[0].is_empty() {
                return Err("the program (the first word) is empty".to_owned());
            }
            Run::Exec(words)
        };
        Ok(Self {
            line: line.to_owned(),
            run,
        })
    }

    /// The line as written.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Whether the line has `$ARGn$` macros, which need `allow_arguments`.
    pub fn uses_arguments(&self) -> bool {
        match &self.run {
            Run::Exec(words) | Run::BuiltinWithArguments(words) => words.iter().any(Word::has_args),
            Run::Builtin(_) => false,
        }
    }

    /// What to run for a request with `args`; the error is a builtin refusing its options.
    pub(crate) fn resolve(&self, args: &[String]) -> Result<Resolved<'_>, String> {
        match &self.run {
            Run::Exec(words) => Ok(Resolved::Exec(substitute(words, args))),
            Run::Builtin(builtin) => Ok(Resolved::Builtin(Cow::Borrowed(builtin))),
            Run::BuiltinWithArguments(words) => Builtin::parse(&substitute(words, args))
                .map(|builtin| Resolved::Builtin(Cow::Owned(builtin))),
        }
    }
}

impl PartialEq for CommandLine {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line
    }
}

impl Eq for CommandLine {}

impl Word {
    fn parse(word: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = word;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(after) = after.strip_prefix('$') {
                text.push('$');
                rest = after;
            } else if let Some((n, after)) = arg_macro(after)? {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Arg(n));
                rest = after;
            } else {
                text.push('$');
                rest = after;
            }
        }
        text.push_str(rest);
        if !text.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self(pieces))
    }

    fn has_args(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Arg(_)))
    }
}

/// `ARGn$...` after a `$`: the 0-based argument and what follows the closing `$`; `None` when it
/// is not a macro; an error for `$ARG0$` or `$ARG17$`, which NRPE silently replaces by nothing.
fn arg_macro(after_dollar: &str) -> Result<Option<(usize, &str)>, String> {
    let Some(digits_on) = after_dollar.strip_prefix("ARG") else {
        return Ok(None);
    };
    let digits = digits_on.len()
        - digits_on
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    let Some(after) = digits_on[digits..].strip_prefix('$') else {
        return Ok(None);
    };
    match digits_on[..digits].parse::<usize>() {
        Ok(n @ 1..=MAX_ARGUMENTS) => Ok(Some((n - 1, after))),
        _ => Err(format!(
            "`$ARG{}$`: arguments go from `$ARG1$` to `$ARG{MAX_ARGUMENTS}$`",
            &digits_on[..digits]
        )),
    }
}

/// The words with `args` in place of their macros (see the module header for dropped words).
fn substitute(words: &[Word], args: &[String]) -> Vec<String> {
    words
        .iter()
        .filter_map(|Word(pieces)| {
            let only_args = pieces.iter().all(|p| matches!(p, Piece::Arg(_)));
            let word: String = pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Text(text) => text.as_str(),
                    Piece::Arg(n) => args.get(*n).map_or("", String::as_str),
                })
                .collect();
            (!(only_args && word.is_empty())).then_some(word)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn exec(line: &str, args: &[&str]) -> Vec<String> {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        match CommandLine::parse(line).unwrap().resolve(&args).unwrap() {
            Resolved::Exec(words) => words,
            Resolved::Builtin(b) => panic!("not an exec: {b:?}"),
        }
    }

    #[test]
    fn splits_with_quotes_and_runs_no_shell() {
        assert_eq!(
            exec("/bin/echo 'a b' \"c d\" e\\ f", &[]),
            ["/bin/echo", "a b", "c d", "e f"]
        );
        // A shell is run only when the line says so, and then gets the script as one word.
        assert_eq!(
            exec("/bin/sh -c 'echo $HOME; exit 2'", &[]),
            ["/bin/sh", "-c", "echo $HOME; exit 2"]
        );
    }

    #[test]
    fn arguments_stay_inside_their_word() {
        assert_eq!(
            exec("/bin/check -w $ARG1$ -c x$ARG2$y", &["1 2", "; rm -rf /"]),
            ["/bin/check", "-w", "1 2", "-c", "x; rm -rf /y"]
        );
    }

    #[test]
    fn macros_follow_nrpe() {
        assert_eq!(
            exec("/bin/e $$ARG1$$ a$b $X$", &["v"]),
            ["/bin/e", "$ARG1$", "a$b", "$X$"]
        );
        assert_eq!(exec("/bin/e $ARG1$$ARG2$", &["a", "b"]), ["/bin/e", "ab"]);
        assert_eq!(exec("/bin/e $ARG16$", &vec!["z"; 16]), ["/bin/e", "z"]);
    }

    #[test]
    fn drops_words_that_were_only_missing_arguments() {
        assert_eq!(
            exec("/bin/e -w $ARG1$ $ARG2$ end", &["x"]),
            ["/bin/e", "-w", "x", "end"]
        );
        assert_eq!(exec("/bin/e -w=$ARG1$", &[]), ["/bin/e", "-w="]);
        assert_eq!(exec("/bin/e ''", &[]), ["/bin/e", ""]);
    }

    #[test]
    fn refuses_bad_lines() {
        for (line, wanted) in [
            ("", "empty"),
            ("   ", "empty"),
            ("/bin/e 'open", "quotes"),
            ("$ARG1$ x", "program"),
            ("'' x", "program"),
            ("/bin/e $ARG0$", "$ARG1$"),
            ("/bin/e $ARG17$", "$ARG16$"),
            ("builtin", "check name"),
        ] {
            let error = CommandLine::parse(line).unwrap_err();
            assert!(error.contains(wanted), "{line:?}: {error}");
        }
    }

    #[test]
    fn knows_when_it_uses_arguments() {
        assert!(!CommandLine::parse("/bin/e a").unwrap().uses_arguments());
        assert!(
            CommandLine::parse("/bin/e -w$ARG3$")
                .unwrap()
                .uses_arguments()
        );
        assert!(
            !CommandLine::parse("builtin load -w 15,10,5 -c 30,25,20")
                .unwrap()
                .uses_arguments()
        );
        assert!(
            CommandLine::parse("builtin load -w $ARG1$ -c 30,25,20")
                .unwrap()
                .uses_arguments()
        );
    }

    #[test]
    fn compares_by_line() {
        assert_eq!(
            CommandLine::parse("/bin/e a").unwrap(),
            CommandLine::parse("/bin/e a").unwrap()
        );
        assert_ne!(
            CommandLine::parse("/bin/e a").unwrap(),
            CommandLine::parse("/bin/e  a").unwrap()
        );
    }
}
