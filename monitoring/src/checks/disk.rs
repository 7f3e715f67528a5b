//! `disk`: check_disk. Free space (and free inodes) of each `-p PATH`'s filesystem from
//! `statvfs`, against `-w`/`-c` as a percentage (`20%`) or an amount free (`100`, in `-u`
//! units, MiB by default, or `10GB`).

use super::free::{self, Free, Unit};
use super::options::{self, Spec, value};
use super::perfdata::{Perf, Uom};
use super::{Outcome, State, io_error};

const NAME: &str = "disk";
const SPECS: &[Spec] = &[
    value('w', "warning"),
    value('c', "critical"),
    value('W', "iwarning"),
    value('K', "icritical"),
    value('u', "units"),
    value('p', "path"),
];

/// check_disk's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub warning: Option<Free>,
    pub critical: Option<Free>,
    /// `-W`/`-K`: percent of inodes free.
    pub inode_warning: Option<f64>,
    pub inode_critical: Option<f64>,
    /// How free space is printed (and what a bare `-w 100` counts in).
    pub unit: Unit,
    /// The paths whose filesystems are checked; `/` when none is given.
    pub paths: Vec<String>,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let unit = match parsed.last('u') {
            Some(u) => Unit::parse(u)
                .ok_or_else(|| options::bad(NAME, 'u', format!("unknown unit `{u}`")))?,
            None => free::MIB,
        };
        let space = |short: char| {
            parsed
                .last(short)
                .map(|t| Free::parse(t, unit).map_err(|why| options::bad(NAME, short, why)))
                .transpose()
        };
        let inodes = |short: char| {
            parsed
                .last(short)
                .map(|t| match Free::parse(t, free::BYTES) {
                    Ok(Free::Percent(p)) => Ok(p),
                    // check_disk reads a bare `-W 10` as a percentage too.
                    Ok(Free::Bytes(n)) if !t.ends_with(|c: char| c.is_ascii_alphabetic()) => {
                        #[allow(clippy::cast_precision_loss, reason = "at most 100")]
                        let p = n as f64;
                        if p <= 100.0 {
                            Ok(p)
                        } else {
                            Err(options::bad(NAME, short, format!("`{t}` is over 100%")))
                        }
                    }
                    _ => Err(options::bad(
                        NAME,
                        short,
                        format!("`{t}` is not a percentage of inodes free"),
                    )),
                })
                .transpose()
        };
        let mut paths: Vec<String> = parsed.all('p').into_iter().map(str::to_owned).collect();
        if paths.is_empty() {
            paths.push("/".to_owned());
        }
        Ok(Self {
            warning: space('w')?,
            critical: space('c')?,
            inode_warning: inodes('W')?,
            inode_critical: inodes('K')?,
            unit,
            paths,
        })
    }
}

/// A filesystem's size as `statvfs` gives it, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub total: u64,
    /// Blocks in use (`f_blocks - f_bfree`).
    pub used: u64,
    /// Free to unprivileged users (`f_bavail`), which is what check_disk calls free.
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// Reads each path's filesystem and judges them.
pub async fn run(opts: &Options) -> Outcome {
    let paths = opts.paths.clone();
    // statvfs on a hung network filesystem blocks; keep it off the runtime's threads.
    let read = super::blocking::run(move || {
        paths
            .into_iter()
            .map(|path| {
                let usage = statvfs(&path);
                (path, usage)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match read {
        Ok(results) => evaluate(&results, opts),
        Err(e) => Outcome::unknown("DISK", format!("statvfs failed: {e}")),
    }
}

fn statvfs(path: &str) -> Result<Usage, String> {
    let st = rustix::fs::statvfs(path).map_err(|e| io_error(&e.into()))?;
    let block = if st.f_frsize == 0 {
        st.f_bsize
    } else {
        st.f_frsize
    };
    Ok(Usage {
        total: st.f_blocks.saturating_mul(block),
        used: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(block),
        available: st.f_bavail.saturating_mul(block),
        inodes: st.f_files,
        inodes_free: st.f_ffree,
    })
}

/// Judges each path's usage (or why it could not be read, which is CRITICAL as in check_disk).
pub fn evaluate(results: &[(String, Result<Usage, String>)], opts: &Options) -> Outcome {
    let mut state = State::Ok;
    let mut shown = Vec::new();
    let mut failed = Vec::new();
    let mut perf = Vec::new();
    for (path, usage) in results {
        let usage = match usage {
            Ok(usage) => usage,
            Err(why) => {
                state = State::Critical;
                failed.push(format!("{path} is not accessible: {why}"));
                continue;
            }
        };
        // As df and check_disk: the used share of what users may fill, rounded up.
        let free_pct = 100u64.saturating_sub(free::percent_ceil(
            usage.used,
            usage.used.saturating_add(usage.available),
        ));
        let inodes_used = usage.inodes.saturating_sub(usage.inodes_free);
        let inode_pct = 100u64.saturating_sub(free::percent_ceil(inodes_used, usage.inodes));
        #[allow(clippy::cast_precision_loss, reason = "a percentage")]
        let (free_f, inode_f) = (free_pct as f64, inode_pct as f64);
        let space_below = |t: Option<Free>| t.is_some_and(|t| t.below(usage.available, free_f));
        let inodes_below = |t: Option<f64>| t.is_some_and(|t| inode_f < t);
        let here = if space_below(opts.critical) || inodes_below(opts.inode_critical) {
            State::Critical
        } else if space_below(opts.warning) || inodes_below(opts.inode_warning) {
            State::Warning
        } else {
            State::Ok
        };
        state = state.worst(here);
        shown.push(format!(
            "{path} {}{} ({free_pct}% inode={inode_pct}%);",
            usage.available / opts.unit.bytes,
            opts.unit.name
        ));
        // check_disk graphs used bytes, its thresholds as the used bytes they allow.
        let used_limit = |t: Option<Free>| {
            t.map(|t| usage.total.saturating_sub(t.bytes(usage.total)).to_string())
                .unwrap_or_default()
        };
        perf.push(
            Perf::new(path, usage.used)
                .uom(Uom::Bytes)
                .warn(used_limit(opts.warning))
                .crit(used_limit(opts.critical))
                .min(0)
                .max(usage.total),
        );
    }
    let mut text = format!("DISK {state} -");
    if !shown.is_empty() {
        text.push_str(" free space: ");
        text.push_str(&shown.join(" "));
    }
    if !failed.is_empty() {
        text.push(' ');
        text.push_str(&failed.join("; "));
    }
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    const GIB: u64 = 1 << 30;

    /// 100 GiB, 60 used, 30 available (10 reserved), 1000 inodes with 250 free.
    fn usage() -> Usage {
        Usage {
            total: 100 * GIB,
            used: 60 * GIB,
            available: 30 * GIB,
            inodes: 1000,
            inodes_free: 250,
        }
    }

    #[test]
    fn options() {
        let o = opts(&["-w", "20%", "-c", "10%", "-p", "/", "--path=/var"]).unwrap();
        assert_eq!(o.warning, Some(Free::Percent(20.0)));
        assert_eq!(o.critical, Some(Free::Percent(10.0)));
        assert_eq!(o.paths, ["/", "/var"]);
        assert_eq!(o.unit, free::MIB);
        // The unit applies to a bare amount wherever -u comes.
        let o = opts(&["-w", "100", "-u", "GB", "-c", "1TB"]).unwrap();
        assert_eq!(o.warning, Some(Free::Bytes(100 * GIB)));
        assert_eq!(o.critical, Some(Free::Bytes(1 << 40)));
        assert_eq!(o.paths, ["/"]);
        let o = opts(&["-W", "10%", "-K", "5"]).unwrap();
        assert_eq!((o.inode_warning, o.inode_critical), (Some(10.0), Some(5.0)));
        assert_eq!(
            opts(&["-u", "XB"]).unwrap_err(),
            "disk: -u: unknown unit `XB`"
        );
        assert!(opts(&["-w", "abc"]).unwrap_err().starts_with("disk: -w: "));
        assert!(opts(&["-c", "120%"]).is_err());
        assert!(opts(&["-K", "10MB"]).is_err());
        assert!(opts(&["-K", "200"]).is_err());
        assert!(opts(&["/"]).is_err());
    }

    #[test]
    fn percent_thresholds() {
        // 30 of 90 usable GiB free: 66.7% used rounds up to 67, so 33% free.
        let run = |list: &[&str]| evaluate(&[("/".to_owned(), Ok(usage()))], &opts(list).unwrap());
        let out = run(&["-w", "20%", "-c", "10%"]);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "DISK OK - free space: / 30720MiB (33% inode=25%);|/=64424509440B;85899345920;\
             96636764160;0;107374182400"
        );
        assert_eq!(run(&["-w", "34%", "-c", "10%"]).state, State::Warning);
        assert_eq!(run(&["-w", "33%", "-c", "10%"]).state, State::Ok);
        assert_eq!(run(&["-w", "50%", "-c", "40%"]).state, State::Critical);
        assert_eq!(run(&["-W", "30%"]).state, State::Warning);
        assert_eq!(run(&["-K", "26"]).state, State::Critical);
    }

    #[test]
    fn amount_thresholds() {
        let run = |list: &[&str]| evaluate(&[("/".to_owned(), Ok(usage()))], &opts(list).unwrap());
        let out = run(&["-w", "40", "-c", "20", "-u", "GB"]);
        assert_eq!(out.state, State::Warning);
        assert_eq!(
            out.output,
            "DISK WARNING - free space: / 30GiB (33% inode=25%);|/=64424509440B;64424509440;\
             85899345920;0;107374182400"
        );
        assert_eq!(run(&["-w", "30GB"]).state, State::Ok);
        assert_eq!(run(&["-w", "30721"]).state, State::Warning);
        assert_eq!(run(&["-c", "31GB"]).state, State::Critical);
    }

    #[test]
    fn several_paths_and_failures() {
        let o = opts(&["-w", "10%", "-c", "5%"]).unwrap();
        let empty = Usage {
            total: 0,
            used: 0,
            available: 0,
            inodes: 0,
            inodes_free: 0,
        };
        let out = evaluate(
            &[
                ("/".to_owned(), Ok(usage())),
                ("/my data".to_owned(), Ok(empty)),
                (
                    "/gone".to_owned(),
                    Err("No such file or directory".to_owned()),
                ),
            ],
            &o,
        );
        assert_eq!(out.state, State::Critical);
        assert_eq!(
            out.output,
            "DISK CRITICAL - free space: / 30720MiB (33% inode=25%); /my data 0MiB (100% \
             inode=100%); /gone is not accessible: No such file or directory|/=64424509440B;\
             96636764160;102005473280;0;107374182400 '/my data'=0B;0;0;0;0"
        );
    }
}
