//! A report's common parts: the machine it ran on, medians and rates, the Markdown header and
//! cells, and the result files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use crate::compare::{cpu_model, median};

/// The CPU's model from `/proc/cpuinfo`, or `unknown`.
pub(crate) fn cpu_model_or_unknown() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned())
}

/// Logical CPUs.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The kernel's release, or `unknown`.
pub(crate) fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned())
}

/// The largest block order of Linux's buddy allocator on x86_64 and arm64 with 4 KiB pages
/// (`MAX_PAGE_ORDER`): free page reporting set above it reports nothing.
const MAX_PAGE_ORDER: u32 = 10;

/// Whether freed memory goes back to the host (virtio-balloon free page reporting), from
/// `page_reporting_order` (above [`MAX_PAGE_ORDER`]: off); `None` where the kernel has no such
/// parameter. When it is on, a
/// process that touches memory the host took back waits for the host to fault it in again,
/// on every 4 KiB page: on the VM of 2026-11-22 that made a tmpfs copy 10× slower, so a run
/// then measures which process got such memory as much as the servers.
pub(crate) fn free_page_reporting() -> Option<String> {
    let order = page_reporting_order()?;
    Some(if order > MAX_PAGE_ORDER {
        format!("off (page_reporting_order {order})")
    } else {
        format!(
            "on: freed blocks of {} KiB go back to the host (page_reporting_order {order})",
            4u64 << order
        )
    })
}

/// Warns through the log when free page reporting is on (see [`free_page_reporting`]), with
/// how to switch it off for the run.
pub(crate) fn warn_if_free_page_reporting() {
    if page_reporting_order().is_some_and(|order| order <= MAX_PAGE_ORDER) {
        tracing::warn!(
            "free page reporting is on: whichever server first touches memory the host took back runs slower, so runs vary; as root, `echo 11 > /sys/module/page_reporting/parameters/page_reporting_order` switches it off (put the old value back afterwards)"
        );
    }
}

fn page_reporting_order() -> Option<u32> {
    std::fs::read_to_string("/sys/module/page_reporting/parameters/page_reporting_order")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The first non-empty line `program arg` prints, on stdout or else on stderr (keepalived
/// prints its version there).
pub(crate) fn version_line(program: &Path, arg: &str) -> anyhow::Result<String> {
    let out = Command::new(program)
        .arg(arg)
        .output()
        .with_context(|| format!("cannot run {} {arg}", program.display()))?;
    Ok(String::from_utf8_lossy(&[out.stdout, out.stderr].concat())
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// `TYPE on DEVICE` of the mount holding `dir`, from `/proc/self/mounts`: the longest mount
/// point it is under.
pub(crate) fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}

/// The median of the values `value` gives for `runs`, skipping those it gives none for.
pub(crate) fn median_of<R>(runs: &[R], value: impl Fn(&R) -> Option<f64>) -> Option<f64> {
    median(&runs.iter().filter_map(value).collect::<Vec<_>>())
}

/// Throughput in MiB (2^20 bytes) per second; 0 for a zero or negative time, which only a broken
/// clock gives.
pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / f64::from(1 << 20) / seconds
    } else {
        0.0
    }
}

/// A table cell: `value` to `decimals` places, `–` without one.
pub(crate) fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The first line of an error, fit for a table cell.
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().replace('|', "\\|")
}

/// The top of a report's Markdown: `# TITLE, DAY`, the command that made it, and the machine
/// table's first rows (CPU, kernel), for the caller to go on with.
pub(crate) fn markdown_header(
    md: &mut String,
    title: &str,
    date: &str,
    command: &str,
    (cpu_model, cores, kernel): (&str, usize, &str),
) {
    let day = date.get(..10).unwrap_or(date);
    let _ = writeln!(md, "# {title}, {day}\n");
    let _ = writeln!(md, "Made on {date} by:\n\n```sh\n{command}\n```\n");
    md.push_str("| machine | |\n|---|---|\n");
    let _ = writeln!(md, "| CPU | {cpu_model} ({cores} logical CPUs) |");
    let _ = writeln!(md, "| kernel | {kernel} |");
}

/// `STEM-DATE.json`, `STEM-DATE.md`, and copies as `latest.json` and `latest.md` in `out`; the
/// four paths go to the report's `files` (through `files`) before it is serialised.
pub(crate) fn write_files<R: Serialize>(
    out: &Path,
    stem: &str,
    date: &str,
    report: &mut R,
    files: impl FnOnce(&mut R) -> &mut Vec<PathBuf>,
    render_markdown: impl FnOnce(&R) -> String,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = out.join(format!("{stem}-{date}.json"));
    let markdown = out.join(format!("{stem}-{date}.md"));
    let (latest_json, latest_md) = (out.join("latest.json"), out.join("latest.md"));
    *files(report) = vec![
        json.clone(),
        markdown.clone(),
        latest_json.clone(),
        latest_md.clone(),
    ];
    let json_text =
        serde_json::to_string_pretty(report).context("cannot serialise the report")? + "\n";
    let markdown_text = render_markdown(report);
    for (path, text) in [
        (&json, &json_text),
        (&markdown, &markdown_text),
        (&latest_json, &json_text),
        (&latest_md, &markdown_text),
    ] {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{mib_per_s, number};

    #[test]
    fn rate_is_mib_per_second() {
        assert_eq!(mib_per_s(1 << 30, 2.0), 512.0);
        assert_eq!(mib_per_s(1 << 20, 0.5), 2.0);
        assert_eq!(mib_per_s(1 << 20, 0.0), 0.0);
    }

    #[test]
    fn cells() {
        assert_eq!(number(Some(1.234), 2), "1.23");
        assert_eq!(number(None, 0), "–");
    }
}
