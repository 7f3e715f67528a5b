//! Finding the programs the comparison runs (`haproxy`, `taskset`, `openssl`) and saying in one
//! error which are missing and where they come from, before anything is started.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::bail;

/// Where Debian and source installs put `haproxy`, which a user's `PATH` often lacks (`sbin`).
const HAPROXY_FALLBACKS: [&str; 2] = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"];

/// The programs a run needs, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tools {
    pub(crate) haproxy: PathBuf,
    pub(crate) taskset: PathBuf,
    /// Only looked for when a TLS scenario is selected.
    pub(crate) openssl: Option<PathBuf>,
}

/// Finds every tool, or fails naming all of the missing ones at once.
pub(crate) fn find_tools(haproxy: Option<&Path>, need_openssl: bool) -> anyhow::Result<Tools> {
    let found_haproxy = find_haproxy(haproxy);
    let taskset = find_in_path("taskset");
    let openssl = need_openssl.then(|| find_in_path("openssl")).flatten();
    let mut missing = Vec::new();
    if found_haproxy.is_none() {
        missing.push(match haproxy {
            Some(path) => format!("haproxy (no executable at {})", path.display()),
            None => "haproxy (apt-get install haproxy, or pass --haproxy PATH)".to_owned(),
        });
    }
    if taskset.is_none() {
        missing.push("taskset (apt-get install util-linux)".to_owned());
    }
    if need_openssl && openssl.is_none() {
        missing.push("openssl, for the TLS scenarios (apt-get install openssl)".to_owned());
    }
    match (found_haproxy, taskset) {
        (Some(haproxy), Some(taskset)) if missing.is_empty() => Ok(Tools {
            haproxy,
            taskset,
            openssl,
        }),
        _ => bail!("missing tools: {}", missing.join("; ")),
    }
}

/// `explicit` if it is an executable file; otherwise `haproxy` from `PATH` or the usual `sbin`
/// places.
pub fn find_haproxy(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) if path.components().count() > 1 => is_executable(path).then(|| path.into()),
        Some(name) => find_in_path(name.as_os_str()),
        None => find_in_path("haproxy").or_else(|| {
            HAPROXY_FALLBACKS
                .iter()
                .map(PathBuf::from)
                .find(|p| is_executable(p))
        }),
    }
}

/// The first executable called `name` in the directories of `PATH`.
pub(crate) fn find_in_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| is_executable(candidate))
}

/// The file exists and someone may execute it. Permission for this user is left to `exec`, whose
/// error names the file anyway.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;

    use super::{find_haproxy, find_in_path, find_tools};

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-tool-fulcrum-bench").is_none());
    }

    #[test]
    fn a_missing_haproxy_is_named_with_its_path() {
        let error = find_tools(Some(Path::new("/nonexistent/haproxy")), false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("haproxy (no executable at /nonexistent/haproxy)"),
            "{error}"
        );
        assert_eq!(find_haproxy(Some(Path::new("/nonexistent/haproxy"))), None);
    }
}
