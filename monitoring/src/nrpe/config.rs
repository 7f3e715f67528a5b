//! `[nrpe]` and `[nrpe.command]` as users write them (docs: CONFIG.md), and the checked
//! [`NrpeConfig`] built from them.
//!
//! The TLS files are read and checked here (so `fulcrum check` catches a bad key), and read
//! again when the server starts, which reports the same errors should the files change between.

use std::{collections::BTreeMap, net::IpAddr, net::SocketAddr, path::PathBuf, time};

use fulcrum_common::{ConfigError, Duration, Spanned};
use ipnet::IpNet;
use serde::Deserialize;

use super::{
    command::CommandLine,
    request::{HELLO, NASTY_METACHARS},
    tls::{self, TlsFiles},
};

/// `[nrpe]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NrpeSection {
    /// Where the agent listens (NRPE's `server_address` and `server_port`); required.
    pub listen: Spanned<SocketAddr>,
    /// Client addresses and networks let in (NRPE's `allowed_hosts`, without host names).
    #[serde(default = "default_allowed_hosts")]
    pub allowed_hosts: Spanned<Vec<Spanned<String>>>,
    /// TLS, for a default `check_nrpe`; without it the agent speaks plain TCP (`check_nrpe -n`).
    pub tls: Option<NrpeTlsSection>,
    /// Let requests carry `!`-separated arguments into `$ARGn$` (NRPE's `dont_blame_nrpe`).
    #[serde(default)]
    pub allow_arguments: bool,
    /// How long a command may run before it is killed and answered UNKNOWN.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Spanned<Duration>,
    /// How long a client has to complete the TLS handshake and send its whole request.
    #[serde(default = "default_connection_timeout")]
    pub connection_timeout: Spanned<Duration>,
    /// `name = "command line"` (NRPE's `command[name]=...`).
    #[serde(default)]
    pub command: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// `tls = { cert = "etc/tls/nrpe.pem", key = "etc/tls/nrpe.key" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NrpeTlsSection {
    pub cert: Spanned<PathBuf>,
    pub key: Spanned<PathBuf>,
}

/// NRPE's own default is `127.0.0.1`; the IPv6 loopback is let in too, as NRPE 4 packages do.
fn default_allowed_hosts() -> Spanned<Vec<Spanned<String>>> {
    let hosts = ["127.0.0.1", "::1"]
        .into_iter()
        .map(|host| Spanned::new(0..0, host.to_owned()))
        .collect();
    Spanned::new(0..0, hosts)
}

fn default_command_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(60))
}

fn default_connection_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(300))
}

/// A checked `[nrpe]`. Compared on reload: the agent restarts only when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NrpeConfig {
    pub listen: SocketAddr,
    /// Never empty; a single address is a /32 or /128.
    pub allowed_hosts: Vec<IpNet>,
    pub tls: Option<TlsFiles>,
    pub allow_arguments: bool,
    /// More than zero.
    pub command_timeout: time::Duration,
    /// More than zero.
    pub connection_timeout: time::Duration,
    /// By name; a line uses `$ARGn$` only if `allow_arguments` is on.
    pub commands: BTreeMap<String, CommandLine>,
}

impl NrpeSection {
    /// Checks the section; every problem is reported, each at its key.
    pub fn build(&self) -> Result<NrpeConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut allowed_hosts = Vec::new();
        for host in self.allowed_hosts.get_ref() {
            match parse_host(host.get_ref()) {
                Ok(net) => allowed_hosts.push(net),
                Err(message) => errors.push(ConfigError::at(host, message)),
            }
        }
        if self.allowed_hosts.get_ref().is_empty() {
            errors.push(ConfigError::at(
                &self.allowed_hosts,
                "`allowed_hosts` is empty, so no client could connect: list the Nagios servers' addresses, or \"0.0.0.0/0\" and \"::/0\" for anyone",
            ));
        }
        let tls = self.tls.as_ref().map(|tls| TlsFiles {
            cert: tls.cert.get_ref().clone(),
            key: tls.key.get_ref().clone(),
            fingerprint: fulcrum_common::fingerprint::of_files(&[
                tls.cert.get_ref(),
                tls.key.get_ref(),
            ]),
        });
        if let (Some(section), Some(files)) = (&self.tls, &tls)
            && let Err(e) = tls::server_config(files)
        {
            let at = if e.file == "key" {
                &section.key
            } else {
                &section.cert
            };
            errors.push(ConfigError::at(at, e.to_string()));
        }
        for (key, timeout) in [
            ("command_timeout", &self.command_timeout),
            ("connection_timeout", &self.connection_timeout),
        ] {
            if timeout.get_ref().is_zero() {
                errors.push(ConfigError::at(
                    timeout,
                    format!("`{key}` must be more than 0s"),
                ));
            }
        }
        let mut commands = BTreeMap::new();
        for (name, line) in &self.command {
            match self.command_line(name, line) {
                Ok(command) => {
                    commands.insert(name.get_ref().clone(), command);
                }
                Err(message) => errors.push(ConfigError::at(name, message)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NrpeConfig {
            listen: *self.listen.get_ref(),
            allowed_hosts,
            tls,
            allow_arguments: self.allow_arguments,
            command_timeout: self.command_timeout.get_ref().get(),
            connection_timeout: self.connection_timeout.get_ref().get(),
            commands,
        })
    }

    fn command_line(
        &self,
        name: &Spanned<String>,
        line: &Spanned<String>,
    ) -> Result<CommandLine, String> {
        let name = name.get_ref();
        if name.is_empty() || name.contains('!') || name.contains(NASTY_METACHARS) {
            return Err(format!(
                "command `{name}` can never be asked for: a name is non-empty, without `!` or any of NRPE's metacharacters |`&><'\\[]{{}};"
            ));
        }
        if name == HELLO {
            return Err(format!(
                "`{HELLO}` is NRPE's version query and cannot be a command"
            ));
        }
        let command =
            CommandLine::parse(line.get_ref()).map_err(|e| format!("command `{name}`: {e}"))?;
        if command.uses_arguments() && !self.allow_arguments {
            return Err(format!(
                "command `{name}` uses `$ARGn$`, but `allow_arguments` is off: clients cannot send arguments"
            ));
        }
        Ok(command)
    }
}

/// An `allowed_hosts` entry: an address or a network.
fn parse_host(host: &str) -> Result<IpNet, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    host.parse::<IpNet>().map(|net| net.trunc()).map_err(|_| {
        format!(
            "`{host}` is neither an IP address nor a network: write e.g. \"192.0.2.10\", \"10.0.0.0/8\" or \"2001:db8::/32\" (host names are not resolved)"
        )
    })
}

#[cfg(test)]
mod tests;
