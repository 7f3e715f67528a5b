//! `vrrp`: the appliance's VRRP instances. CRITICAL when one is FAULT; WARNING when one is
//! INIT, or BACKUP without having heard a master (then nobody may hold its addresses), or not
//! MASTER though `-m` expects it to be here.

use fulcrum_common::stats::VrrpInstance;

use super::options::{self, Spec, value};
use super::perfdata::Perf;
use super::{Outcome, State};

const NAME: &str = "vrrp";
const SPECS: &[Spec] = &[value('m', "master")];

/// The check's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-m NAME[,NAME]` (repeatable): instances that should be MASTER on this node.
    pub masters: Vec<String>,
}

impl Options {
    /// Parses the options after the check's name.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let parsed = options::parse(NAME, SPECS, args)?;
        if let Some(extra) = parsed.operands.first() {
            return Err(format!("{NAME}: unexpected argument `{extra}`"));
        }
        let masters = parsed
            .all('m')
            .into_iter()
            .flat_map(|m| m.split(','))
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self { masters })
    }
}

/// Judges the instances.
pub fn evaluate(instances: &[VrrpInstance], opts: &Options) -> Outcome {
    if let Some(missing) = opts
        .masters
        .iter()
        .find(|m| !instances.iter().any(|i| i.name == **m))
    {
        return Outcome::unknown("VRRP", format!("no VRRP instance `{missing}`"));
    }
    if instances.is_empty() {
        return Outcome::unknown("VRRP", "no VRRP instance is configured");
    }
    let mut state = State::Ok;
    let mut shown = Vec::new();
    let mut counts = [0u32; 4];
    for instance in instances {
        let expect_master = opts.masters.contains(&instance.name);
        let (here, note) = match instance.state.as_str() {
            "FAULT" => {
                counts[3] += 1;
                let why = instance.reason.as_deref().unwrap_or("fault");
                (State::Critical, format!(" ({why})"))
            }
            "MASTER" => {
                counts[2] += 1;
                (State::Ok, String::new())
            }
            "BACKUP" => {
                counts[1] += 1;
                match &instance.master {
                    _ if expect_master => (State::Warning, " (expected MASTER)".to_owned()),
                    Some(master) => (State::Ok, format!(" (master {master})")),
                    None => (State::Warning, " (no master heard)".to_owned()),
                }
            }
            "INIT" => {
                counts[0] += 1;
                (State::Warning, String::new())
            }
            // A state this check does not know: say so rather than guess.
            _ => (State::Unknown, " (unknown state)".to_owned()),
        };
        let here = if expect_master && instance.state != "MASTER" {
            here.worst(State::Warning)
        } else {
            here
        };
        state = state.worst(here);
        shown.push(format!("{} {}{note}", instance.name, instance.state));
    }
    let text = format!("VRRP {state} - {}", shown.join(", "));
    let perf: Vec<Perf> = ["init", "backup", "master", "fault"]
        .iter()
        .zip(counts)
        .map(|(label, n)| Perf::new(label, n).min(0))
        .collect();
    Outcome::new(state, text, &perf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Result<Options, String> {
        Options::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    fn instance(name: &str, state: &str, master: Option<&str>) -> VrrpInstance {
        VrrpInstance {
            name: name.to_owned(),
            state: state.to_owned(),
            master: master.map(str::to_owned),
            ..VrrpInstance::default()
        }
    }

    #[test]
    fn options() {
        assert_eq!(
            opts(&["-m", "VI_1,VI_2", "--master=VI_3"]).unwrap().masters,
            ["VI_1", "VI_2", "VI_3"]
        );
        assert!(opts(&["-x"]).is_err());
        assert!(opts(&["VI_1"]).is_err());
    }

    #[test]
    fn states() {
        let none = opts(&[]).unwrap();
        let healthy = [
            instance("VI_1", "MASTER", Some("10.0.0.1")),
            instance("VI_2", "BACKUP", Some("10.0.0.2")),
        ];
        let out = evaluate(&healthy, &none);
        assert_eq!(out.state, State::Ok);
        assert_eq!(
            out.output,
            "VRRP OK - VI_1 MASTER, VI_2 BACKUP (master 10.0.0.2)|init=0;;;0 backup=1;;;0 \
             master=1;;;0 fault=0;;;0"
        );
        let lonely = [instance("VI_1", "BACKUP", None)];
        let out = evaluate(&lonely, &none);
        assert_eq!(out.state, State::Warning);
        assert!(
            out.output
                .starts_with("VRRP WARNING - VI_1 BACKUP (no master heard)|")
        );
        assert_eq!(
            evaluate(&[instance("VI_1", "INIT", None)], &none).state,
            State::Warning
        );
        let mut fault = instance("VI_2", "FAULT", None);
        fault.reason = Some("interface down".to_owned());
        let out = evaluate(&[healthy[0].clone(), fault], &none);
        assert_eq!(out.state, State::Critical);
        assert!(
            out.output
                .starts_with("VRRP CRITICAL - VI_1 MASTER, VI_2 FAULT (interface down)|")
        );
        assert_eq!(
            evaluate(&[instance("VI_1", "WEIRD", None)], &none).state,
            State::Unknown
        );
    }

    #[test]
    fn expected_masters() {
        let healthy = [
            instance("VI_1", "MASTER", Some("10.0.0.1")),
            instance("VI_2", "BACKUP", Some("10.0.0.2")),
        ];
        assert_eq!(
            evaluate(&healthy, &opts(&["-m", "VI_1"]).unwrap()).state,
            State::Ok
        );
        let out = evaluate(&healthy, &opts(&["-m", "VI_1,VI_2"]).unwrap());
        assert_eq!(out.state, State::Warning);
        assert!(out.output.contains("VI_2 BACKUP (expected MASTER)"));
        let out = evaluate(&healthy, &opts(&["-m", "VI_9"]).unwrap());
        assert_eq!(out.output, "VRRP UNKNOWN - no VRRP instance `VI_9`");
        assert_eq!(evaluate(&[], &opts(&[]).unwrap()).state, State::Unknown);
    }
}
