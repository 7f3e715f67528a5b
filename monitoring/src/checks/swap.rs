//! `swap`: check_swap. Free swap from `/proc/meminfo` against `-w`/`-c` as a percentage free
//! (`20%`) or bytes free (`100000000`, `1GB`); `-n` says what no swap at all is.

use super::free::{self, Free};
use super::options::{self, Spec, value};
use super::perfdata::{Perf, Uom};
use super::{Outcome, State};

const NAME: &str = "swap";
const SPECS: &[Spec] = &[
    value('w', "warning"),
    value('c', "critical"),
    value('n', "no-swap"),
];

/// check_swap's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub warning: Option<Free>,
    pub critical: Option<Free>,
    /// The state when there is no swap (`-n`); CRITICAL by default, as check_swap.
    pub no_swap: State,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let space = |short: char| {
            parsed
                .last(short)
                .map(|t| Free::parse(t, free::BYTES).map_err(|why| options::bad(NAME, short, why)))
                .transpose()
        };
        let (warning, critical) = (space('w')?, space('c')?);
        // check_swap refuses a warning that could never come before the critical.
        match (warning, critical) {
            (Some(Free::Percent(w)), Some(Free::Percent(c))) if w < c => {
                return Err(format!(
                    "{NAME}: the warning percentage free ({w}%) is below the critical ({c}%)"
                ));
            }
            (Some(Free::Bytes(w)), Some(Free::Bytes(c))) if w < c => {
                return Err(format!(
                    "{NAME}: the warning space free ({w} B) is below the critical ({c} B)"
                ));
            }
            _ => {}
        }
        let no_swap = match parsed.last('n') {
            None => State::Critical,
            Some(s) => parse_state(s).ok_or_else(|| {
                options::bad(
                    NAME,
                    'n',
                    format!("`{s}` is not ok, warning, critical or unknown"),
                )
            })?,
        };
        Ok(Self {
            warning,
            critical,
            no_swap,
        })
    }
}

fn parse_state(text: &str) -> Option<State> {
    match text.to_ascii_lowercase().as_str() {
        "ok" => Some(State::Ok),
        "warning" | "warn" => Some(State::Warning),
        "critical" | "crit" => Some(State::Critical),
        "unknown" => Some(State::Unknown),
        _ => None,
    }
}

/// Reads `/proc/meminfo` and judges it.
pub async fn run(opts: &Options) -> Outcome {
    match tokio::fs::read_to_string("/proc/meminfo").await {
        Ok(text) => evaluate(&text, opts),
        Err(e) => Outcome::unknown("SWAP", format!("cannot read /proc/meminfo: {e}")),
    }
}

/// Judges `/proc/meminfo`'s text (its `SwapTotal` and `SwapFree` lines, in kB).
pub fn evaluate(meminfo: &str, opts: &Options) -> Outcome {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kb = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(kb.saturating_mul(1024))
        })
    };
    let (Some(total), Some(free_bytes)) = (field("SwapTotal"), field("SwapFree")) else {
        return Outcome::unknown("SWAP", "no SwapTotal or SwapFree in /proc/meminfo");
    };
    let free_bytes = free_bytes.min(total);
    let mib = |b: u64| b / free::MIB.bytes;
    let limit = |t: Option<Free>| t.map(|t| t.bytes(total).to_string()).unwrap_or_default();
    let perf = [Perf::new("swap", free_bytes)
        .uom(Uom::Bytes)
        .warn(limit(opts.warning))
        .crit(limit(opts.critical))
        .min(0)
        .max(total)];
    if total == 0 {
        let state = opts.no_swap;
        let text = format!(
            "SWAP {state} - 0% free (0MB out of 0MB) - Swap is either disabled, not present, \
             or of zero size. "
        );
        return Outcome::new(state, text, &perf);
    }
    let free_pct = 100u64.saturating_sub(free::percent_ceil(total - free_bytes, total));
    #[allow(clippy::cast_precision_loss, reason = "a percentage")]
    let free_f = 100.0 - (total - free_bytes) as f64 * 100.0 / total as f64;
    // check_swap alerts at the threshold itself: used >= 100 - w percent, or free <= w bytes.
    let at_or_below = |t: Option<Free>| match t {
        Some(Free::Percent(p)) => free_f <= p,
        Some(Free::Bytes(b)) => free_bytes <= b,
        None => false,
    };
    let state = if at_or_below(opts.critical) {
        State::Critical
    } else if at_or_below(opts.warning) {
        State::Warning
    } else {
        State::Ok
    };
    let text = format!(
        "SWAP {state} - {free_pct}% free ({}MB out of {}MB) ",
        mib(free_bytes),
        mib(total)
    );
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    /// 2 GiB of swap, 1.5 GiB free.
    const MEMINFO: &str = "MemTotal:       16000000 kB\nSwapCached:            0 kB\n\
                           SwapTotal:       2097152 kB\nSwapFree:        1572864 kB\n";

    #[test]
    fn options() {
        let o = opts(&["-w", "20%", "-c", "10%"]).unwrap();
        assert_eq!(o.warning, Some(Free::Percent(20.0)));
        assert_eq!(o.no_swap, State::Critical);
        let o = opts(&["-w", "1GB", "-c", "1000", "-n", "ok"]).unwrap();
        assert_eq!(o.warning, Some(Free::Bytes(1 << 30)));
        assert_eq!(o.critical, Some(Free::Bytes(1000)));
        assert_eq!(o.no_swap, State::Ok);
        assert!(opts(&["-w", "10%", "-c", "20%"]).is_err());
        assert!(opts(&["-w", "10", "-c", "20"]).is_err());
        assert_eq!(
            opts(&["-n", "maybe"]).unwrap_err(),
            "swap: -n: `maybe` is not ok, warning, critical or unknown"
        );
        assert!(opts(&["-w", "x%"]).unwrap_err().starts_with("swap: -w: "));
    }

    #[test]
    fn percent_and_bytes() {
        let out = evaluate(MEMINFO, &opts(&["-w", "80%", "-c", "10%"]).unwrap());
        assert_eq!(out.state, State::Warning);
        assert_eq!(
            out.output,
            "SWAP WARNING - 75% free (1536MB out of 2048MB) |swap=1610612736B;1717986918;\
             214748364;0;2147483648"
        );
        // At the threshold alerts, as in check_swap.
        let at = |list: &[&str]| evaluate(MEMINFO, &opts(list).unwrap()).state;
        assert_eq!(at(&["-w", "75%"]), State::Warning);
        assert_eq!(at(&["-w", "74%"]), State::Ok);
        assert_eq!(at(&["-c", "1536MB"]), State::Critical);
        assert_eq!(at(&["-c", "1535MB"]), State::Ok);
        assert_eq!(at(&[]), State::Ok);
    }

    #[test]
    fn no_swap_and_bad_input() {
        let none = "SwapTotal: 0 kB\nSwapFree: 0 kB\n";
        let out = evaluate(none, &opts(&["-w", "20%", "-c", "10%"]).unwrap());
        assert_eq!(out.state, State::Critical);
        assert_eq!(
            out.output,
            "SWAP CRITICAL - 0% free (0MB out of 0MB) - Swap is either disabled, not present, \
             or of zero size. |swap=0B;0;0;0;0"
        );
        assert_eq!(
            evaluate(none, &opts(&["-n", "ok"]).unwrap()).state,
            State::Ok
        );
        assert_eq!(evaluate("", &opts(&[]).unwrap()).state, State::Unknown);
        assert_eq!(
            evaluate("SwapTotal: x kB\nSwapFree: 1 kB", &opts(&[]).unwrap()).state,
            State::Unknown
        );
    }
}
