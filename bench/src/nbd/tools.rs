//! Finding the programs the run needs (`qemu-nbd`, `nbdcopy`, and `fio` with its nbd engine for
//! the latency) and naming every missing one at once, before anything is started.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::compare::{find_in_path, is_executable};

/// The programs a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    pub qemu_nbd: PathBuf,
    pub nbdcopy: PathBuf,
    /// `None` when fio is missing or was built without the nbd engine: no latency then.
    pub fio: Option<PathBuf>,
}

/// The required tools that are not there, each with the package that has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing tools: {}", .0.join("; "))]
pub struct MissingTools(pub Vec<String>);

/// Finds every tool; `qemu_nbd` overrides the one in `PATH`.
pub fn find_tools(qemu_nbd: Option<&Path>) -> Result<Tools, MissingTools> {
    let found_qemu = match qemu_nbd {
        Some(path) => is_executable(path).then(|| path.to_owned()),
        None => find_in_path("qemu-nbd"),
    };
    let nbdcopy = find_in_path("nbdcopy");
    let mut missing = Vec::new();
    if found_qemu.is_none() {
        missing.push(match qemu_nbd {
            Some(path) => format!("qemu-nbd (no executable at {})", path.display()),
            None => "qemu-nbd (apt-get install qemu-utils, or pass --qemu-nbd PATH)".to_owned(),
        });
    }
    if nbdcopy.is_none() {
        missing.push("nbdcopy (apt-get install libnbd-bin)".to_owned());
    }
    match (found_qemu, nbdcopy) {
        (Some(qemu_nbd), Some(nbdcopy)) => Ok(Tools {
            qemu_nbd,
            nbdcopy,
            fio: find_in_path("fio").filter(|fio| has_nbd_engine(fio)),
        }),
        _ => Err(MissingTools(missing)),
    }
}

/// `fio --enghelp=nbd` lists the engine's options (`uri`) only when fio was built with libnbd.
fn has_nbd_engine(fio: &Path) -> bool {
    Command::new(fio)
        .arg("--enghelp=nbd")
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("uri")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::Path;

    use super::find_tools;

    #[test]
    fn a_missing_qemu_nbd_is_named_with_its_path() {
        let error = find_tools(Some(Path::new("/nonexistent/qemu-nbd")))
            .map(|_| ())
            .unwrap_err();
        assert!(
            error.0[0].contains("qemu-nbd (no executable at /nonexistent/qemu-nbd)"),
            "{error}"
        );
        assert!(error.to_string().starts_with("missing tools: "));
    }
}
