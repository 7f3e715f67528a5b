//! The machine description every result carries: CPU model and count, kernel, both proxies'
//! versions, and the clock tick that CPU times are counted in.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};
use tokio::process::Command;

use super::procfs::read_own_nofile;
use super::report::Machine;

/// The tick rate Linux has used on every common architecture, taken when `getconf` is missing.
const ASSUMED_CLOCK_TICKS: u64 = 100;

/// Describes this machine and the two proxies. Fails if either proxy cannot say its version,
/// which is the cheapest way to learn that a path is wrong before anything is started.
pub(crate) async fn describe_machine(haproxy: &Path, fulcrum: &Path) -> anyhow::Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // `HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/`: the part before the URL.
    let haproxy_line = first_line(&output(haproxy, &["-v"]).await?);
    let haproxy_version = haproxy_line
        .split(" - ")
        .next()
        .unwrap_or_default()
        .to_owned();
    let fulcrum_version = first_line(&output(fulcrum, &["version"]).await?);
    let (clock_ticks_per_second, clock_ticks_source) = clock_ticks().await;
    Ok(Machine {
        cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        // What `uname -r` prints, without running it.
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned()),
        haproxy_version,
        fulcrum_version,
        clock_ticks_per_second,
        clock_ticks_source,
        open_files_hard_limit: read_own_nofile()?.hard,
    })
}

/// `sysconf(_SC_CLK_TCK)` by way of `getconf`, since the workspace forbids the `unsafe` a libc
/// call needs; 100 (and `"assumed"`) when it cannot be read.
async fn clock_ticks() -> (u64, String) {
    match output(Path::new("getconf"), &["CLK_TCK"]).await {
        Ok(text) => match text.trim().parse() {
            Ok(ticks) if ticks > 0 => (ticks, "getconf CLK_TCK".to_owned()),
            _ => (ASSUMED_CLOCK_TICKS, "assumed".to_owned()),
        },
        Err(_) => (ASSUMED_CLOCK_TICKS, "assumed".to_owned()),
    }
}

/// The `model name` of the first CPU in `/proc/cpuinfo`.
pub(crate) fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

/// Runs `program args` and returns its stdout.
async fn output(program: &Path, args: &[&str]) -> anyhow::Result<String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::cpu_model;

    #[test]
    fn cpu_model_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }
}
