//! Checks shared by the `[volume.NAME]` and `[sync.NAME]` builders: the section's name, `IP:port`
//! addresses and listeners, the shared secret, and building every section before checking that
//! they do not clash. Each check reports its problems at the key, in the words of the section it
//! serves (`what` names it: "volume", "sync set").

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use fulcrum_common::{ConfigError, Spanned, secret};

use crate::volume::config::SharedSecret;

/// The longest section name: it names files or a directory in `state_dir`.
const MAX_NAME: usize = 64;

/// What a section's messages say about it.
pub(crate) struct Kind {
    /// The section, as its messages name it: "volume", "sync set".
    pub(crate) what: &'static str,
    /// What its name names in `state_dir`: "files", "a directory".
    pub(crate) state: &'static str,
    /// A good name, e.g. "nfs".
    pub(crate) example_name: &'static str,
    /// A good `listen`, e.g. "10.1.88.175:7788"; its port is also the IPv6 example's.
    pub(crate) example_addr: &'static str,
    /// Who names this node's `listen`: "the peer", "the peers".
    pub(crate) named_by: &'static str,
}

impl Kind {
    /// 1 to 64 letters, digits, `-`, `_` and `.`, not starting with `.` or `-` (a name
    /// starting with `-` would read as an option to `fulcrum volume`).
    pub(crate) fn check_name(&self, name: &Spanned<String>, errors: &mut Vec<ConfigError>) {
        let text = name.get_ref();
        let valid = !text.is_empty()
            && text.len() <= MAX_NAME
            && !text.starts_with(['.', '-'])
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            let Kind {
                what,
                state,
                example_name,
                ..
            } = self;
            errors.push(ConfigError::at(
                name,
                format!(
                    "`{text}` cannot name a {what}: use 1 to {MAX_NAME} letters, digits, `-`, `_` \
                     or `.`, not starting with `.` or `-` (it names {state} in state_dir), e.g. \
                     \"{example_name}\""
                ),
            ));
        }
    }

    /// `IP:port`, with a hint when the port or the brackets of IPv6 are missing.
    pub(crate) fn parse_addr(
        &self,
        text: &Spanned<String>,
        key: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<SocketAddr> {
        let value = text.get_ref().trim();
        let parsed = value.parse::<SocketAddr>();
        if parsed.is_err() {
            let hint = if value.parse::<std::net::IpAddr>().is_ok() {
                " (the port is missing)"
            } else {
                ""
            };
            let (example, port) = (self.example_addr, self.example_port());
            errors.push(ConfigError::at(
                text,
                format!(
                    "{key}: `{value}` is not IP:port{hint}: write e.g. \"{example}\", or \
                     \"[2001:db8::1]:{port}\" for IPv6"
                ),
            ));
        }
        parsed.ok()
    }

    /// The port is fixed: the peers' config names it.
    pub(crate) fn check_listen(
        &self,
        addr: SocketAddr,
        text: &Spanned<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        if addr.port() == 0 {
            errors.push(ConfigError::at(
                text,
                format!(
                    "listen: port 0 cannot be named by {}: give a port, e.g. {}",
                    self.named_by,
                    self.example_port()
                ),
            ));
        } else if addr.ip().is_multicast() {
            errors.push(ConfigError::at(
                text,
                format!("listen: {} is a multicast address", addr.ip()),
            ));
        }
    }

    /// `shared_secret` or `shared_secret_file`: exactly one, not empty.
    pub(crate) fn build_secret(
        &self,
        name: &Spanned<String>,
        inline: Option<&Spanned<SharedSecret>>,
        file: Option<&Spanned<PathBuf>>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<SharedSecret> {
        // `secret::resolve` takes the inline value as a string; it never prints it.
        let inline = inline.map(|s| Spanned::new(s.span(), s.get_ref().as_str().to_owned()));
        match secret::resolve("shared_secret", inline.as_ref(), file) {
            Ok(Some(value)) if value.is_empty() => {
                let span = inline
                    .as_ref()
                    .map(Spanned::span)
                    .or_else(|| file.map(Spanned::span))
                    .unwrap_or_else(|| name.span());
                errors.push(ConfigError::spanned(
                    span,
                    "shared_secret is empty: the peers authenticate each other with it",
                ));
                None
            }
            Ok(Some(value)) => Some(SharedSecret::new(value)),
            Ok(None) => {
                errors.push(ConfigError::at(
                    name,
                    format!(
                        "{} `{}` needs `shared_secret` (or `shared_secret_file`): the peers \
                         authenticate each other with it",
                        self.what,
                        name.get_ref()
                    ),
                ));
                None
            }
            Err(e) => {
                errors.push(e);
                None
            }
        }
    }

    fn example_port(&self) -> &'static str {
        self.example_addr
            .rsplit_once(':')
            .map_or(self.example_addr, |(_, port)| port)
    }
}

/// Builds every section with `build`, then checks with `check_distinct` that the built ones do
/// not clash; every problem is reported.
pub(crate) fn build_all<S, C>(
    sections: &BTreeMap<Spanned<String>, S>,
    build: impl Fn(&S, &Spanned<String>) -> Result<C, Vec<ConfigError>>,
    check_distinct: impl FnOnce(&[(&S, C)], &mut Vec<ConfigError>),
) -> Result<Vec<C>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut built = Vec::with_capacity(sections.len());
    for (name, section) in sections {
        match build(section, name) {
            Ok(config) => built.push((section, config)),
            Err(e) => errors.extend(e),
        }
    }
    check_distinct(&built, &mut errors);
    if errors.is_empty() {
        Ok(built.into_iter().map(|(_, config)| config).collect())
    } else {
        Err(errors)
    }
}

pub(crate) use fulcrum_common::net::binds_overlap;
