//! A small `getopt_long` for the checks, so a command line written for check_load or
//! check_disk works unchanged: `-w 10`, `-w10`, `-rw10` (clustered flags), `--warning=10`,
//! `--warning 10`, a unique prefix of a long name (`--warn`), and `--` ending the options.
//! Operands may come anywhere, as GNU getopt permutes them.

/// One option a check accepts.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub short: char,
    pub long: &'static str,
    /// Whether it takes a value.
    pub value: bool,
}

/// An option that takes a value.
pub const fn value(short: char, long: &'static str) -> Spec {
    Spec {
        short,
        long,
        value: true,
    }
}

/// An option that is a flag.
pub const fn flag(short: char, long: &'static str) -> Spec {
    Spec {
        short,
        long,
        value: false,
    }
}

/// A parsed command line: the options in the order given, then the operands.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    opts: Vec<(char, String)>,
    pub operands: Vec<String>,
}

impl Parsed {
    /// The value given last for `short`, as getopt-based plugins keep the last one.
    pub fn last(&self, short: char) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(c, _)| *c == short)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `short` (for repeatable options such as `-p PATH`).
    pub fn all(&self, short: char) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(c, _)| *c == short)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether the flag `short` was given.
    pub fn has(&self, short: char) -> bool {
        self.opts.iter().any(|(c, _)| *c == short)
    }
}

/// Parses `args` (the options after the check's name) against `specs`; `check` names the check
/// in errors, which are one line each.
pub fn parse(check: &str, specs: &[Spec], args: &[String]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            parsed.operands.extend(rest.by_ref().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, v)) => (name, Some(v)),
                None => (long, None),
            };
            let spec = find_long(check, specs, name)?;
            let value = match (spec.value, inline) {
                (true, Some(v)) => v.to_owned(),
                (true, None) => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{check}: option --{} needs a value", spec.long))?,
                (false, Some(_)) => {
                    return Err(format!("{check}: option --{} takes no value", spec.long));
                }
                (false, None) => String::new(),
            };
            parsed.opts.push((spec.short, value));
        } else if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (at, short) in cluster.char_indices() {
                let spec = specs
                    .iter()
                    .find(|s| s.short == short)
                    .ok_or_else(|| format!("{check}: unknown option -{short}"))?;
                if !spec.value {
                    parsed.opts.push((short, String::new()));
                    continue;
                }
                // `-w10`: the rest of the word is the value; `-w 10`: the next word is.
                let inline = &cluster[at + short.len_utf8()..];
                let value = if inline.is_empty() {
                    rest.next()
                        .cloned()
                        .ok_or_else(|| format!("{check}: option -{short} needs a value"))?
                } else {
                    inline.to_owned()
                };
                parsed.opts.push((short, value));
                break;
            }
        } else {
            // A lone `-` is an operand too, as in getopt.
            parsed.operands.push(arg.clone());
        }
    }
    Ok(parsed)
}

fn find_long<'a>(check: &str, specs: &'a [Spec], name: &str) -> Result<&'a Spec, String> {
    if let Some(exact) = specs.iter().find(|s| s.long == name) {
        return Ok(exact);
    }
    let mut prefixed = specs
        .iter()
        .filter(|s| !name.is_empty() && s.long.starts_with(name));
    match (prefixed.next(), prefixed.next()) {
        (Some(spec), None) => Ok(spec),
        (Some(_), Some(_)) => Err(format!("{check}: option --{name} is ambiguous")),
        _ => Err(format!("{check}: unknown option --{name}")),
    }
}

/// The error for an option whose value is bad: `load: -w `x`: ...`.
pub fn bad(check: &str, short: char, why: impl std::fmt::Display) -> String {
    format!("{check}: -{short}: {why}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        value('w', "warning"),
        value('c', "critical"),
        flag('r', "percpu"),
        value('p', "path"),
        value('P', "partition"),
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn parse_ok(list: &[&str]) -> Parsed {
        parse("t", SPECS, &args(list)).unwrap()
    }

    #[test]
    fn every_spelling_of_a_value() {
        for list in [
            &["-w", "10"][..],
            &["-w10"],
            &["--warning=10"],
            &["--warning", "10"],
            &["--warn", "10"],
            &["-w", "1", "-w", "10"],
        ] {
            assert_eq!(parse_ok(list).last('w'), Some("10"), "{list:?}");
        }
    }

    #[test]
    fn flags_cluster_and_values_may_look_like_options() {
        let p = parse_ok(&["-rw10", "-c", "-5", "x", "--", "-w"]);
        assert!(p.has('r'));
        assert_eq!(p.last('w'), Some("10"));
        assert_eq!(p.last('c'), Some("-5"));
        assert_eq!(p.operands, ["x", "-w"]);
        let p = parse_ok(&["-p", "/", "--path=/var", "-"]);
        assert_eq!(p.all('p'), ["/", "/var"]);
        assert_eq!(p.operands, ["-"]);
    }

    #[test]
    fn errors_name_the_option() {
        let err = |list: &[&str]| parse("t", SPECS, &args(list)).unwrap_err();
        assert_eq!(err(&["-x"]), "t: unknown option -x");
        assert_eq!(err(&["-w"]), "t: option -w needs a value");
        assert_eq!(err(&["--warning"]), "t: option --warning needs a value");
        assert_eq!(err(&["--percpu=1"]), "t: option --percpu takes no value");
        assert_eq!(err(&["--nope"]), "t: unknown option --nope");
        assert_eq!(err(&["--pa", "/"]), "t: option --pa is ambiguous");
        assert_eq!(err(&["-rx"]), "t: unknown option -x");
    }
}
