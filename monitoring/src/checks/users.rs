//! `users`: check_users. Counts the logged-in users (`USER_PROCESS` records of the utmp file)
//! against `-w`/`-c` ranges.
//!
//! glibc's `struct utmp` on x86_64 and aarch64 (both little-endian, 384 bytes a record):
//!
//! ```text
//!  0      2      4          8           40          44          76           332 ...  384
//! +------+------+----------+-----------+-----------+-----------+------------+--------+
//! |ut_type| pad | ut_pid   | ut_line   | ut_id     | ut_user   | ut_host    | exit,  |
//! | i16  |      | i32      | [u8; 32]  | [u8; 4]   | [u8; 32]  | [u8; 256]  | tv ... |
//! +------+------+----------+-----------+-----------+-----------+------------+--------+
//! ```

use super::options::{self, Spec, value};
use super::perfdata::Perf;
use super::range::Thresholds;
use super::{Outcome, State};

const NAME: &str = "users";
const SPECS: &[Spec] = &[value('w', "warning"), value('c', "critical")];

/// Where glibc keeps the current logins.
pub const UTMP: &str = "/var/run/utmp";
/// The size of one `struct utmp`.
pub const RECORD: usize = 384;
/// `ut_type` of a login.
const USER_PROCESS: i16 = 7;

/// check_users' options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub thresholds: Thresholds,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let thresholds = Thresholds::parse(parsed.last('w'), parsed.last('c'))
            .map_err(|why| format!("{NAME}: {why}"))?;
        Ok(Self { thresholds })
    }
}

/// Reads the utmp file and judges the count.
pub async fn run(opts: &Options) -> Outcome {
    match tokio::fs::read(UTMP).await {
        Ok(bytes) => evaluate(count(&bytes), opts),
        // No utmp file is no logins, as glibc's getutxent() reports it to check_users.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => evaluate(0, opts),
        Err(e) => Outcome::unknown("USERS", format!("cannot read {UTMP}: {e}")),
    }
}

/// The logins in a utmp file's bytes; a partial record at the end (a file being written) is
/// left out.
pub fn count(utmp: &[u8]) -> usize {
    utmp.chunks_exact(RECORD)
        .filter(|record| {
            // `ut_type` is a native-endian `short` at the start of the record.
            let ut_type = i16::from_ne_bytes([record[0], record[1]]);
            ut_type == USER_PROCESS
        })
        .count()
}

/// Judges a count of logged-in users.
pub fn evaluate(users: usize, opts: &Options) -> Outcome {
    #[allow(clippy::cast_precision_loss, reason = "a count of users")]
    let state: State = opts.thresholds.state(users as f64);
    let text = format!("USERS {state} - {users} users currently logged in ");
    let perf = [Perf::new("users", users)
        .thresholds(&opts.thresholds)
        .min(0)];
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn record(ut_type: i16, user: &str) -> Vec<u8> {
        let mut r = vec![0u8; RECORD];
        r[..2].copy_from_slice(&ut_type.to_ne_bytes());
        r[44..44 + user.len()].copy_from_slice(user.as_bytes());
        r
    }

    #[test]
    fn counts_user_process_records() {
        // BOOT_TIME (2), RUN_LVL (1), two logins, a LOGIN_PROCESS (6), a DEAD_PROCESS (8).
        let mut file = Vec::new();
        for (t, u) in [
            (2, ""),
            (1, ""),
            (7, "root"),
            (6, "LOGIN"),
            (7, "admin"),
            (8, ""),
        ] {
            file.extend(record(t, u));
        }
        assert_eq!(count(&file), 2);
        // A torn last record is not counted.
        file.extend(&record(7, "late")[..100]);
        assert_eq!(count(&file), 2);
        assert_eq!(count(&[]), 0);
        assert_eq!(count(&[7]), 0);
    }

    #[test]
    fn judges_the_count() {
        let o = opts(&["-w", "5", "-c", "10"]).unwrap();
        let out = evaluate(0, &o);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "USERS OK - 0 users currently logged in |users=0;5;10;0"
        );
        assert_eq!(evaluate(6, &o).state, State::Warning);
        assert_eq!(evaluate(11, &o).state, State::Critical);
        assert_eq!(
            evaluate(0, &opts(&["-w", "@0"]).unwrap()).state,
            State::Warning
        );
        assert!(opts(&["-c", "x"]).unwrap_err().starts_with("users: -c: "));
        assert!(opts(&["x"]).is_err());
    }
}
