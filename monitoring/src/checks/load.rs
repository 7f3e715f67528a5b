//! `load`: check_load. The 1, 5 and 15 minute load averages from `/proc/loadavg` against
//! `-w`/`-c` triplets (`15,10,5`, or one value for all three), optionally per CPU (`-r`).

use super::options::{self, Spec, flag, value};
use super::perfdata::Perf;
use super::{Outcome, State};

const NAME: &str = "load";
const SPECS: &[Spec] = &[
    value('w', "warning"),
    value('c', "critical"),
    flag('r', "percpu"),
];
const MINUTES: [u32; 3] = [1, 5, 15];

/// check_load's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub warning: [f64; 3],
    pub critical: [f64; 3],
    /// `-r`: divide the load by the number of CPUs online.
    pub per_cpu: bool,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let triplet = |short: char| -> Result<[f64; 3], String> {
            let text = parsed
                .last(short)
                .ok_or_else(|| format!("{NAME}: -{short} is required"))?;
            triplet(text).map_err(|why| options::bad(NAME, short, why))
        };
        let warning = triplet('w')?;
        let critical = triplet('c')?;
        for ((w, c), minutes) in warning.iter().zip(&critical).zip(MINUTES) {
            if w > c {
                return Err(format!(
                    "{NAME}: the {minutes}-minute warning load {w} is greater than the critical {c}"
                ));
            }
        }
        Ok(Self {
            warning,
            critical,
            per_cpu: parsed.has('r'),
        })
    }
}

/// `15,10,5`, `15,10` or `15`: missing values repeat the last one, as check_load does.
fn triplet(text: &str) -> Result<[f64; 3], String> {
    let values = text
        .split(',')
        .map(|v| match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
            _ => Err(format!(
                "`{text}`: `{v}` is not a load (a number, at least 0)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    match values[..] {
        [a] => Ok([a, a, a]),
        [a, b] => Ok([a, b, b]),
        [a, b, c] => Ok([a, b, c]),
        _ => Err(format!(
            "`{text}`: give at most three loads (1, 5 and 15 minutes)"
        )),
    }
}

/// Reads `/proc/loadavg` and the CPU count, then judges them.
pub async fn run(opts: &Options) -> Outcome {
    let text = match tokio::fs::read_to_string("/proc/loadavg").await {
        Ok(text) => text,
        Err(e) => return Outcome::unknown("LOAD", format!("cannot read /proc/loadavg: {e}")),
    };
    let cpus = match tokio::fs::read_to_string("/sys/devices/system/cpu/online").await {
        Ok(list) => count_cpus(&list),
        Err(_) => None,
    }
    .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
    .unwrap_or(1);
    evaluate(&text, cpus, opts)
}

/// Judges `/proc/loadavg`'s text (`0.10 0.20 0.30 1/123 4567`); `cpus` divides it under `-r`.
pub fn evaluate(loadavg: &str, cpus: usize, opts: &Options) -> Outcome {
    let mut fields = loadavg.split_ascii_whitespace().map(str::parse::<f64>);
    let mut load = [0.0; 3];
    for slot in &mut load {
        match fields.next() {
            Some(Ok(v)) if v.is_finite() && v >= 0.0 => *slot = v,
            _ => return Outcome::unknown("LOAD", "cannot parse /proc/loadavg"),
        }
    }
    #[allow(clippy::cast_precision_loss, reason = "CPU counts are small")]
    let divisor = cpus.max(1) as f64;
    let judged = if opts.per_cpu {
        load.map(|l| l / divisor)
    } else {
        load
    };
    // check_load: CRITICAL as soon as one average exceeds its critical load, WARNING if one
    // exceeds its warning load.
    let mut state = State::Ok;
    for ((&value, &w), &c) in judged.iter().zip(&opts.warning).zip(&opts.critical) {
        if value > c {
            state = State::Critical;
            break;
        } else if value > w {
            state = State::Warning;
        }
    }
    let averages = |l: [f64; 3]| format!("{:.2}, {:.2}, {:.2}", l[0], l[1], l[2]);
    let mut perf = Vec::new();
    let mut text = format!("LOAD {state} - ");
    if opts.per_cpu {
        text.push_str(&format!("scaled load average: {} - ", averages(judged)));
    }
    text.push_str(&format!("total load average: {}", averages(load)));
    for (i, minutes) in MINUTES.into_iter().enumerate() {
        let (w, c) = (
            format!("{:.3}", opts.warning[i]),
            format!("{:.3}", opts.critical[i]),
        );
        let total = Perf::new(&format!("load{minutes}"), format!("{:.3}", load[i]));
        if opts.per_cpu {
            // As check_load 2.3 prints it: the thresholds apply to the scaled values.
            perf.push(total.min(0));
            perf.push(
                Perf::new(
                    &format!("scaled_load{minutes}"),
                    format!("{:.3}", judged[i]),
                )
                .warn(w)
                .crit(c)
                .min(0),
            );
        } else {
            perf.push(total.warn(w).crit(c).min(0));
        }
    }
    Outcome::new(state, text, &perf)
}

/// The count of CPUs in a kernel CPU list such as `/sys/devices/system/cpu/online` (`0-3,6`),
/// which is what check_load's `sysconf(_SC_NPROCESSORS_ONLN)` reads.
pub fn count_cpus(list: &str) -> Option<usize> {
    let mut count = 0usize;
    for part in list.trim().split(',') {
        let (low, high) = match part.split_once('-') {
            Some((l, h)) => (l.parse::<usize>().ok()?, h.parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        count = count.checked_add(high.checked_sub(low)?.checked_add(1)?)?;
    }
    (count > 0).then_some(count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options() {
        let o = opts(&["-w", "15,10,5", "-c", "30,25,20"]).unwrap();
        assert_eq!(o.warning, [15.0, 10.0, 5.0]);
        assert_eq!(o.critical, [30.0, 25.0, 20.0]);
        assert!(!o.per_cpu);
        let o = opts(&["-r", "--warning=1,2", "-c3"]).unwrap();
        assert_eq!(o.warning, [1.0, 2.0, 2.0]);
        assert_eq!(o.critical, [3.0; 3]);
        assert!(o.per_cpu);
        assert_eq!(opts(&["-w", "1"]).unwrap_err(), "load: -c is required");
        assert_eq!(
            opts(&["-w", "x", "-c", "1"]).unwrap_err(),
            "load: -w: `x`: `x` is not a load (a number, at least 0)"
        );
        assert!(opts(&["-w", "1,2,3,4", "-c", "5"]).is_err());
        assert!(opts(&["-w", "-1", "-c", "5"]).is_err());
        assert!(opts(&["-w", "1,", "-c", "5"]).is_err());
        assert_eq!(
            opts(&["-w", "5,5,30", "-c", "10"]).unwrap_err(),
            "load: the 15-minute warning load 30 is greater than the critical 10"
        );
        assert!(opts(&["-w", "1", "-c", "2", "extra"]).is_err());
    }

    #[test]
    fn evaluate_as_check_load() {
        let o = opts(&["-w", "15,10,5", "-c", "30,25,20"]).unwrap();
        let out = evaluate("0.10 0.20 0.30 1/123 4567\n", 4, &o);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "LOAD OK - total load average: 0.10, 0.20, 0.30|load1=0.100;15.000;30.000;0 \
             load5=0.200;10.000;25.000;0 load15=0.300;5.000;20.000;0"
        );
        assert_eq!(evaluate("1 1 6 1/1 1", 4, &o).state, State::Warning);
        assert_eq!(evaluate("31 1 1 1/1 1", 4, &o).state, State::Critical);
        // One critical average wins over warnings before it.
        assert_eq!(evaluate("16 11 21 1/1 1", 4, &o).state, State::Critical);
        // At the threshold is not above it.
        assert_eq!(evaluate("15 10 5 1/1 1", 4, &o).state, State::Ok);
        assert_eq!(evaluate("", 4, &o).state, State::Unknown);
        assert_eq!(evaluate("1 x 1", 4, &o).state, State::Unknown);
    }

    #[test]
    fn per_cpu() {
        let o = opts(&["-r", "-w", "1", "-c", "2"]).unwrap();
        let out = evaluate("6.00 2.00 1.00 1/1 1", 4, &o);
        assert_eq!(out.state, State::Warning);
        assert_eq!(
            out.output,
            "LOAD WARNING - scaled load average: 1.50, 0.50, 0.25 - total load average: 6.00, \
             2.00, 1.00|load1=6.000;;;0 scaled_load1=1.500;1.000;2.000;0 load5=2.000;;;0 \
             scaled_load5=0.500;1.000;2.000;0 load15=1.000;;;0 scaled_load15=0.250;1.000;2.000;0"
        );
        assert_eq!(evaluate("6 2 1", 0, &o).state, State::Critical);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpus("0-3\n"), Some(4));
        assert_eq!(count_cpus("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpus("0"), Some(1));
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("x"), None);
        assert_eq!(count_cpus(""), None);
    }
}
