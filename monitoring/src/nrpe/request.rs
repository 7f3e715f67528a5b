//! A query's text (`command!arg1!arg2`) checked the way NRPE 4.1's `validate_request` checks it,
//! and split into the command and its arguments.
//!
//! Commands never run through a shell here unless their config line asks for one, so these
//! filters are a second wall; they are kept because a line like `/bin/sh -c '... $ARG1$'` does
//! hand arguments to a shell, exactly as NRPE does, and because clients and auditors expect NRPE's
//! refusals (CVE-2013-1362 and CVE-2014-2913 were shell injections through arguments).

/// NRPE's `NASTY_METACHARS`: a query holding any of them is refused, command name included.
pub const NASTY_METACHARS: &[char] = &[
    '|', '`', '&', '>', '<', '\'', '\\', '[', ']', '{', '}', ';', '\r', '\n',
];

/// The most arguments a query passes (`$ARG1$` to `$ARG16$`); NRPE ignores the rest, and so does
/// this.
pub const MAX_ARGUMENTS: usize = 16;

/// The command `check_nrpe` sends without `-c`: answered with the daemon's version.
pub const HELLO: &str = "_NRPE_CHECK";

/// A query that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: String,
    /// At most [`MAX_ARGUMENTS`], none empty; always empty unless arguments are allowed.
    pub args: Vec<String>,
}

/// Why a query is refused; the texts are NRPE's log messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("Request contained no query!")]
    Empty,
    #[error("Request contained illegal metachars!")]
    Metachars,
    #[error("Request contained command arguments, but argument option is not enabled!")]
    ArgumentsNotAllowed,
    #[error("Request contained an empty command argument")]
    EmptyArgument,
    #[error("Request contained a bash command substitution!")]
    CommandSubstitution,
    /// NRPE passes arguments on as bytes; ours are text, and one read lossily would name
    /// another path than the client meant.
    #[error("Request contained a command argument that is not UTF-8")]
    NotUtf8,
}

/// Checks `text` (a query packet's text) and splits it. `allow_arguments` is `[nrpe]`'s
/// (NRPE's `dont_blame_nrpe`).
///
/// The order is NRPE's: no query, metacharacters anywhere, `!` while arguments are off, then each
/// argument. Unlike NRPE's `strtok`, an empty argument (`cmd!!x`) is refused rather than
/// skipped, which would shift `x` into `$ARG1$`. A command name that is not UTF-8 is read
/// lossily, and can match no configured command; an argument that is not is refused, where NRPE
/// would pass its bytes on.
pub fn parse(text: &[u8], allow_arguments: bool) -> Result<Request, RequestError> {
    let utf8 = std::str::from_utf8(text).is_ok();
    let text = String::from_utf8_lossy(text);
    if text.is_empty() {
        return Err(RequestError::Empty);
    }
    if text.contains(NASTY_METACHARS) {
        return Err(RequestError::Metachars);
    }
    let mut parts = text.split('!');
    let command = parts.next().unwrap_or_default();
    if command.is_empty() {
        return Err(RequestError::Empty);
    }
    let args: Vec<&str> = parts.collect();
    if !args.is_empty() && !allow_arguments {
        return Err(RequestError::ArgumentsNotAllowed);
    }
    for arg in &args {
        if arg.is_empty() {
            return Err(RequestError::EmptyArgument);
        }
        if arg.contains("$(") {
            return Err(RequestError::CommandSubstitution);
        }
    }
    if !utf8
        && args
            .iter()
            .any(|arg| arg.contains(char::REPLACEMENT_CHARACTER))
    {
        return Err(RequestError::NotUtf8);
    }
    Ok(Request {
        command: command.to_owned(),
        args: args
            .into_iter()
            .take(MAX_ARGUMENTS)
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn splits_command_and_arguments() {
        assert_eq!(
            parse(b"check_disk!/var!20%", true).unwrap(),
            Request {
                command: "check_disk".into(),
                args: vec!["/var".into(), "20%".into()],
            }
        );
        assert_eq!(
            parse(b"check_load", false).unwrap().args,
            Vec::<String>::new()
        );
    }

    #[test]
    fn refuses_as_nrpe_does() {
        assert_eq!(parse(b"", true), Err(RequestError::Empty));
        assert_eq!(parse(b"!x", true), Err(RequestError::Empty));
        assert_eq!(
            parse(b"cmd!x", false),
            Err(RequestError::ArgumentsNotAllowed)
        );
        assert_eq!(parse(b"cmd!", true), Err(RequestError::EmptyArgument));
        assert_eq!(parse(b"cmd!!x", true), Err(RequestError::EmptyArgument));
        assert_eq!(
            parse(b"cmd!$(touch /tmp/x)", true),
            Err(RequestError::CommandSubstitution)
        );
        for bad in NASTY_METACHARS {
            let text = format!("cmd!a{bad}b");
            // Metacharacters are refused before arguments are even looked at.
            assert_eq!(
                parse(text.as_bytes(), false),
                Err(RequestError::Metachars),
                "{bad:?}"
            );
        }
        assert_eq!(parse(b"c;md", false), Err(RequestError::Metachars));
        // An argument that is not UTF-8 is refused rather than changed.
        assert_eq!(
            parse(b"check_disk!/srv/caf\xe9", true),
            Err(RequestError::NotUtf8)
        );
        assert_eq!(
            parse(b"check_caf\xe9", true).unwrap().command,
            "check_caf\u{fffd}"
        );
    }

    #[test]
    fn keeps_sixteen_arguments() {
        let text = format!("cmd!{}", vec!["a"; 20].join("!"));
        assert_eq!(
            parse(text.as_bytes(), true).unwrap().args.len(),
            MAX_ARGUMENTS
        );
    }

    #[test]
    fn errors_carry_nrpe_texts() {
        assert_eq!(
            RequestError::ArgumentsNotAllowed.to_string(),
            "Request contained command arguments, but argument option is not enabled!"
        );
        assert_eq!(
            RequestError::CommandSubstitution.to_string(),
            "Request contained a bash command substitution!"
        );
    }
}
