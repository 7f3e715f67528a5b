//! Match methods (`-m str|beg|end|sub|reg|found|len|dir|dom|int|ip|bool`) and
//! the compiled values an ACL compares samples against.
//!
//! String comparisons work on bytes, as HAProxy's do: header values need not
//! be UTF-8, and `-i` folds ASCII case only.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use regex::bytes::{Regex, RegexBuilder};

use super::AclError;
use super::fetch::{Kind, Sample};
use super::lexer::Word;

/// How a sample is compared with the ACL's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchMethod {
    Str,
    Beg,
    End,
    Sub,
    Reg,
    Found,
    Len,
    Dir,
    Dom,
    Int,
    Ip,
    Bool,
}

impl MatchMethod {
    const ALL: [MatchMethod; 12] = [
        MatchMethod::Str,
        MatchMethod::Beg,
        MatchMethod::End,
        MatchMethod::Sub,
        MatchMethod::Reg,
        MatchMethod::Found,
        MatchMethod::Len,
        MatchMethod::Dir,
        MatchMethod::Dom,
        MatchMethod::Int,
        MatchMethod::Ip,
        MatchMethod::Bool,
    ];

    /// Parses the word after `-m`.
    pub(crate) fn parse(word: &str) -> Result<MatchMethod, AclError> {
        Self::ALL
            .into_iter()
            .find(|method| method.name() == word)
            .ok_or_else(|| AclError::UnknownMatchMethod {
                method: word.to_owned(),
                allowed: Self::ALL.map(MatchMethod::name).join(", "),
            })
    }

    /// The name written after `-m`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MatchMethod::Str => "str",
            MatchMethod::Beg => "beg",
            MatchMethod::End => "end",
            MatchMethod::Sub => "sub",
            MatchMethod::Reg => "reg",
            MatchMethod::Found => "found",
            MatchMethod::Len => "len",
            MatchMethod::Dir => "dir",
            MatchMethod::Dom => "dom",
            MatchMethod::Int => "int",
            MatchMethod::Ip => "ip",
            MatchMethod::Bool => "bool",
        }
    }

    /// The match methods that make sense for a fetch of this kind.
    pub(crate) fn allowed_for(kind: Kind) -> &'static [MatchMethod] {
        use MatchMethod as M;
        match kind {
            Kind::Str => &[
                M::Str,
                M::Beg,
                M::End,
                M::Sub,
                M::Reg,
                M::Found,
                M::Len,
                M::Dir,
                M::Dom,
            ],
            Kind::Int => &[M::Int, M::Found],
            Kind::Ip => &[M::Ip, M::Found],
            Kind::Bool => &[M::Bool, M::Found],
        }
    }
}

/// Where integer values come from, which decides their limits and the error
/// reported for a bad one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IntDomain<'a> {
    /// `dst_port`: 0-65535, reported as a bad port range.
    Port,
    /// Counts and lengths of the named fetch.
    Count(&'a str),
}

/// An ACL's values compiled for one match method.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    /// `-m found`: any sample at all.
    Found,
    /// `-m bool`: a true sample.
    Bool,
    /// String comparisons; `icase` folds ASCII case.
    Text {
        method: TextMethod,
        icase: bool,
        values: Vec<Vec<u8>>,
    },
    /// `-m reg`: unanchored regex search.
    Regex(Vec<Regex>),
    /// `-m len`: the sample's length in bytes falls in a range.
    Len(Vec<IntRange>),
    /// `-m int`: the sample falls in a range.
    Int(Vec<IntRange>),
    /// `-m ip`: the address is in a network.
    Ip(Vec<IpNet>),
}

/// The string comparisons that take literal values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextMethod {
    Str,
    Beg,
    End,
    Sub,
    Dir,
    Dom,
}

impl Matcher {
    /// Compiles `values` for `method`; `what` names the fetch in errors.
    pub(crate) fn compile(
        method: MatchMethod,
        icase: bool,
        values: &[Word],
        what: &str,
        domain: IntDomain<'_>,
    ) -> Result<Matcher, AclError> {
        let no_values = |what: &str| match values.first() {
            Some(first) => Err(AclError::ValuesNotAllowed {
                what: what.to_owned(),
                value: first.text.clone(),
            }),
            None => Ok(()),
        };
        let text = |method| Matcher::Text {
            method,
            icase,
            values: values.iter().map(|w| w.text.as_bytes().to_vec()).collect(),
        };
        Ok(match method {
            MatchMethod::Found => {
                no_values("-m found")?;
                Matcher::Found
            }
            MatchMethod::Bool => {
                no_values(what)?;
                Matcher::Bool
            }
            MatchMethod::Str => text(TextMethod::Str),
            MatchMethod::Beg => text(TextMethod::Beg),
            MatchMethod::End => text(TextMethod::End),
            MatchMethod::Sub => text(TextMethod::Sub),
            MatchMethod::Dir => text(TextMethod::Dir),
            MatchMethod::Dom => text(TextMethod::Dom),
            MatchMethod::Reg => Matcher::Regex(
                values
                    .iter()
                    .map(|w| compile_regex(&w.text, icase))
                    .collect::<Result<_, _>>()?,
            ),
            MatchMethod::Len => Matcher::Len(parse_int_values(values, domain)?),
            MatchMethod::Int => Matcher::Int(parse_int_values(values, domain)?),
            MatchMethod::Ip => Matcher::Ip(
                values
                    .iter()
                    .map(|w| parse_net(&w.text))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Whether one sample matches any of the values.
    pub(crate) fn matches(&self, sample: Sample<'_>) -> bool {
        match (self, sample) {
            (Matcher::Found, _) => true,
            (Matcher::Bool, Sample::Bool(b)) => b,
            (
                Matcher::Text {
                    method,
                    icase,
                    values,
                },
                Sample::Bytes(s),
            ) => values.iter().any(|v| text_matches(*method, *icase, s, v)),
            (Matcher::Regex(regexes), Sample::Bytes(s)) => regexes.iter().any(|r| r.is_match(s)),
            (Matcher::Len(ranges), Sample::Bytes(s)) => {
                let len = u64::try_from(s.len()).unwrap_or(u64::MAX);
                ranges.iter().any(|r| r.contains(len))
            }
            (Matcher::Int(ranges), Sample::Int(n)) => ranges.iter().any(|r| r.contains(n)),
            (Matcher::Ip(nets), Sample::Ip(ip)) => nets.iter().any(|net| net_contains(net, ip)),
            // Parsing only pairs a matcher with fetches of its kind.
            _ => false,
        }
    }
}

/// An inclusive range of integers; empty when `lo > hi` (e.g. `lt 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntRange {
    lo: u64,
    hi: u64,
}

impl IntRange {
    fn contains(self, n: u64) -> bool {
        self.lo <= n && n <= self.hi
    }
}

fn text_matches(method: TextMethod, icase: bool, sample: &[u8], value: &[u8]) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        if icase {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match method {
        TextMethod::Str => eq(sample, value),
        TextMethod::Beg => sample
            .get(..value.len())
            .is_some_and(|head| eq(head, value)),
        TextMethod::End => sample
            .len()
            .checked_sub(value.len())
            .and_then(|start| sample.get(start..))
            .is_some_and(|tail| eq(tail, value)),
        TextMethod::Sub => {
            value.is_empty() || sample.windows(value.len()).any(|window| eq(window, value))
        }
        // HAProxy's `pat_match_dir`: slashes and the query's `?` delimit.
        TextMethod::Dir => match_word(sample, value, icase, b"/?"),
        TextMethod::Dom => match_word(sample, value, icase, b"/?.:"),
    }
}

/// HAProxy's `dir` / `dom` matching: `value`, stripped of delimiters at both
/// ends, must appear in `sample` as a run of whole delimiter-separated parts.
/// `/static/` therefore matches `/img/static/a.png` but not `/statics`.
fn match_word(sample: &[u8], value: &[u8], icase: bool, delimiters: &[u8]) -> bool {
    let is_delim = |b: &u8| delimiters.contains(b);
    let start = value
        .iter()
        .position(|b| !is_delim(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_delim(b))
        .map_or(start, |i| i + 1);
    let word = value.get(start..end).unwrap_or_default();
    if word.is_empty() {
        // HAProxy never matches a value made only of delimiters.
        return false;
    }
    let eq = |a: &[u8]| {
        if icase {
            a.eq_ignore_ascii_case(word)
        } else {
            a == word
        }
    };
    (0..sample.len()).any(|at| {
        let after_delim = at == 0 || sample.get(at - 1).is_some_and(is_delim);
        let candidate = sample.get(at..at + word.len());
        let before_delim = sample.get(at + word.len()).is_none_or(is_delim);
        after_delim && before_delim && candidate.is_some_and(eq)
    })
}

fn compile_regex(pattern: &str, icase: bool) -> Result<Regex, AclError> {
    RegexBuilder::new(pattern)
        .case_insensitive(icase)
        .build()
        .map_err(|e| AclError::BadRegex {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })
}

/// Parses integer values: `N`, `LO:HI`, `LO:`, `:HI`, and `eq|ge|gt|le|lt N`.
fn parse_int_values(values: &[Word], domain: IntDomain<'_>) -> Result<Vec<IntRange>, AclError> {
    let max = match domain {
        IntDomain::Port => u64::from(u16::MAX),
        IntDomain::Count(_) => u64::MAX,
    };
    let error = |value: &str, reason: String| match domain {
        IntDomain::Port => AclError::BadPortRange {
            value: value.to_owned(),
            reason,
        },
        IntDomain::Count(fetch) => AclError::BadInteger {
            value: value.to_owned(),
            fetch: fetch.to_owned(),
            reason,
        },
    };
    let number = |text: &str, whole: &str| -> Result<u64, AclError> {
        let n: u64 = text
            .parse()
            .map_err(|_| error(whole, format!("`{text}` is not a whole number")))?;
        if n > max {
            return Err(error(whole, format!("{n} is above {max}")));
        }
        Ok(n)
    };

    let mut ranges = Vec::with_capacity(values.len());
    let mut words = values.iter();
    while let Some(word) = words.next() {
        let text = word.text.as_str();
        let operator = if word.quoted_at.is_none() {
            ["eq", "ge", "gt", "le", "lt"]
                .into_iter()
                .find(|op| *op == text)
        } else {
            None
        };
        if let Some(op) = operator {
            let Some(operand) = words.next() else {
                return Err(error(
                    op,
                    format!("operator `{op}` needs a number after it"),
                ));
            };
            let n = number(&operand.text, &operand.text)?;
            let (lo, hi) = match op {
                "eq" => (n, n),
                "ge" => (n, max),
                // An impossible bound gives an empty range (lo > hi).
                "gt" => n.checked_add(1).map_or((1, 0), |lo| (lo, max)),
                "le" => (0, n),
                _ => n.checked_sub(1).map_or((1, 0), |hi| (0, hi)),
            };
            ranges.push(IntRange { lo, hi });
            continue;
        }
        let range = match text.split_once(':') {
            None => {
                let n = number(text, text)?;
                IntRange { lo: n, hi: n }
            }
            Some(("", "")) => {
                return Err(error(text, "a range needs at least one bound".to_owned()));
            }
            Some((lo, hi)) => {
                let lo = if lo.is_empty() { 0 } else { number(lo, text)? };
                let hi = if hi.is_empty() {
                    max
                } else {
                    number(hi, text)?
                };
                if lo > hi {
                    return Err(error(
                        text,
                        format!("the low bound {lo} is above the high bound {hi}"),
                    ));
                }
                IntRange { lo, hi }
            }
        };
        ranges.push(range);
    }
    Ok(ranges)
}

/// Parses `ADDR`, `ADDR/PREFIX` or (IPv4) `ADDR/NETMASK`.
fn parse_net(text: &str) -> Result<IpNet, AclError> {
    let bad = || AclError::BadCidr {
        value: text.to_owned(),
    };
    let Some((addr, mask)) = text.split_once('/') else {
        return text.parse::<IpAddr>().map(IpNet::from).map_err(|_| bad());
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix = match (addr, mask.parse::<u8>()) {
        (_, Ok(prefix)) => prefix,
        (IpAddr::V4(_), Err(_)) => {
            let netmask: std::net::Ipv4Addr = mask.parse().map_err(|_| bad())?;
            let bits = u32::from(netmask);
            // Only contiguous masks (ones then zeros) describe a network.
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(bad());
            }
            u8::try_from(bits.leading_ones()).map_err(|_| bad())?
        }
        (IpAddr::V6(_), Err(_)) => return Err(bad()),
    };
    IpNet::new(addr, prefix)
        .map(|net| net.trunc())
        .map_err(|_| bad())
}

/// Network membership where an IPv4 address and its IPv4-mapped IPv6 form
/// (`::ffff:a.b.c.d`, as a dual-stack listener reports v4 clients) are the same.
fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNet::V4(net), IpAddr::V4(v4)) => net.contains(&v4),
        (IpNet::V4(net), IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .is_some_and(|v4| Ipv4Net::contains(net, &v4)),
        (IpNet::V6(net), IpAddr::V6(v6)) => net.contains(&v6),
        (IpNet::V6(net), IpAddr::V4(v4)) => Ipv6Net::contains(net, &v4.to_ipv6_mapped()),
    }
}
