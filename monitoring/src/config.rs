//! `[admin]`: the admin web server's section, as users write it (see docs/config.md §6), and the
//! validated [`AdminConfig`] built from it.

use std::{net::SocketAddr, path::PathBuf};

use fulcrum_common::{ConfigError, Duration, Spanned, secret};
use serde::Deserialize;

/// `[admin]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the admin web server listens; separate from every traffic listener.
    pub listen: Spanned<SocketAddr>,
    /// The stats page; its CSV is at `STATS_PATH;csv`, its JSON answers `Accept: application/json`.
    #[serde(default = "default_stats_path")]
    pub stats_path: Spanned<String>,
    /// Prometheus text format, without authentication (scrapers).
    #[serde(default = "default_metrics_path")]
    pub metrics_path: Spanned<String>,
    /// Users allowed on the stats page (HTTP basic auth). Empty: the page is open to anyone who
    /// reaches `listen`, and admin actions are refused.
    #[serde(default)]
    pub users: Vec<UserSection>,
    /// Leave the version out of the page (HAProxy's `stats hide-version`).
    #[serde(default)]
    pub hide_version: bool,
    /// Let authenticated users act on servers from the page (HAProxy's `stats admin if TRUE`).
    /// Needs `users`.
    #[serde(default = "no_admin_actions")]
    pub admin_actions: Spanned<bool>,
    /// How often the page reloads itself.
    #[serde(default = "default_refresh")]
    pub refresh: Spanned<Duration>,
    /// Serve HTTPS instead of HTTP.
    pub tls: Option<AdminTlsSection>,
    /// Names a request's `Host` may give besides IP addresses, `localhost` and this machine's
    /// host name (against DNS rebinding): `name`, `.domain`, or `*` for any.
    #[serde(default)]
    pub server_names: Vec<Spanned<String>>,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold at once; its next ones
    /// are closed at once. 1 to 256, the server's own limit (256 turns the cap off).
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: Spanned<u32>,
}

/// One `users` entry: `{ name = "admin", password = "..." }` or `password_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    pub name: Spanned<String>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// This user sees the page but may not act from it, even with `admin_actions` (HAProxy's
    /// `stats auth` user left out of `stats admin if ...`).
    #[serde(default)]
    pub read_only: bool,
}

/// `tls = { cert = "etc/tls/admin.pem" }`: one PEM file with the chain and its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsSection {
    pub cert: Spanned<PathBuf>,
}

fn default_stats_path() -> Spanned<String> {
    Spanned::new(0..0, "/stats".to_owned())
}

fn default_metrics_path() -> Spanned<String> {
    Spanned::new(0..0, "/metrics".to_owned())
}

fn no_admin_actions() -> Spanned<bool> {
    Spanned::new(0..0, false)
}

fn default_refresh() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(5))
}

/// A browser opens up to six connections to a server, a scraper one: room for a few of each
/// behind one NAT address, while one client alone takes at most a sixteenth of the slots.
fn default_max_connections_per_source() -> Spanned<u32> {
    Spanned::new(0..0, 16)
}

/// A checked `[admin]`. Compared on reload: the admin server restarts only when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub stats_path: String,
    pub metrics_path: String,
    pub users: Vec<User>,
    pub hide_version: bool,
    pub admin_actions: bool,
    /// At least 1s ([`AdminSection::build`] refuses less).
    pub refresh: std::time::Duration,
    /// The PEM file (chain + key) to serve HTTPS with.
    pub tls_cert: Option<PathBuf>,
    /// A hash of that file's content when it was checked: a certificate renewed in place
    /// changes the config, so a reload restarts the server with it.
    pub tls_fingerprint: Option<u64>,
    /// As written; see [`AdminSection::server_names`].
    pub server_names: Vec<String>,
    /// 1 to [`MAX_CONNECTIONS`](crate::admin::MAX_CONNECTIONS).
    pub max_connections_per_source: usize,
}

/// A user of the stats page.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Sees the page, takes no admin action.
    pub read_only: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// A byte a path may hold as written (RFC 3986 `pchar` and `/`, without percent-encoding or
/// `;`, which starts the stats page's `;csv`).
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,=:@".contains(&b)
}

impl AdminSection {
    /// Checks the section; every problem is reported, each at its key.
    pub fn build(&self) -> Result<AdminConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        for path in [&self.stats_path, &self.metrics_path] {
            // Requests arrive percent-encoded and are matched as they come: a space or a
            // non-ASCII letter here would never match, and could not go into the session
            // cookie's `Path` either.
            // `//host/...` would be a URL of another host in the page's links, its form's
            // `action` and the redirect after an action, which would then post there.
            let text = path.get_ref();
            if !text.starts_with('/') || text.starts_with("//") || !text.bytes().all(is_path_byte) {
                errors.push(ConfigError::at(
                    path,
                    format!(
                        "`{text}` is not a path: write one that starts with a single `/`, made of letters, digits and `/-._~!$&'()*+,=:@` (no `?`, `#`, `;`, `%` or spaces)",
                    ),
                ));
            }
        }
        if self.stats_path.get_ref() == self.metrics_path.get_ref() {
            // At the key the file sets: a default has no place in the file.
            let written = if self.metrics_path.span().is_empty() {
                &self.stats_path
            } else {
                &self.metrics_path
            };
            errors.push(ConfigError::at(
                written,
                "`metrics_path` and `stats_path` must differ",
            ));
        }
        let refresh = self.refresh.get_ref().get();
        if refresh < std::time::Duration::from_secs(1) {
            errors.push(ConfigError::at(
                &self.refresh,
                "`refresh` must be at least 1s",
            ));
        }
        let mut users = Vec::new();
        for user in &self.users {
            let name = user.name.get_ref();
            if name.is_empty() || name.contains(':') {
                errors.push(ConfigError::at(
                    &user.name,
                    "a user name must be non-empty and without `:` (HTTP basic auth)",
                ));
            }
            if users.iter().any(|u: &User| &u.name == name) {
                errors.push(ConfigError::at(
                    &user.name,
                    format!("user `{name}` is listed twice"),
                ));
            }
            match secret::resolve(
                "password",
                user.password.as_ref(),
                user.password_file.as_ref(),
            ) {
                Ok(Some(password)) if password.is_empty() => {
                    let span = (user.password.as_ref().map(|p| p.span()))
                        .or_else(|| user.password_file.as_ref().map(|p| p.span()))
                        .unwrap_or_else(|| user.name.span());
                    errors.push(ConfigError::spanned(
                        span,
                        format!("user `{name}` has an empty password: anyone could log in"),
                    ));
                }
                Ok(Some(password)) => users.push(User {
                    name: name.clone(),
                    password,
                    read_only: user.read_only,
                }),
                Ok(None) => errors.push(ConfigError::at(
                    &user.name,
                    format!("user `{name}` needs a `password` or a `password_file`"),
                )),
                Err(e) => errors.push(e),
            }
        }
        for host in &self.server_names {
            let name = host.get_ref();
            // Underscores too: browsers send them (Docker's and NetBIOS names have them).
            let label = |l: &str| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            };
            let bare = name.strip_prefix('.').unwrap_or(name);
            let bare = bare.strip_suffix('.').unwrap_or(bare);
            if name.parse::<std::net::IpAddr>().is_ok() {
                errors.push(ConfigError::at(
                    host,
                    format!("`{name}` is an address: requests that name the server by any IP address always pass, and this key does not choose who may connect (use a firewall, or `listen` on a management address)"),
                ));
            } else if name != "*" && !bare.split('.').all(label) {
                errors.push(ConfigError::at(
                    host,
                    format!("`{name}` is not a host name: write `lb1.example.com`, `.example.com` for it and every name under it, or `*` for any (no port, scheme or path; a non-ASCII name in its xn-- form)"),
                ));
            }
        }
        let per_source = *self.max_connections_per_source.get_ref() as usize;
        if !(1..=crate::admin::MAX_CONNECTIONS).contains(&per_source) {
            errors.push(ConfigError::at(
                &self.max_connections_per_source,
                format!(
                    "`max_connections_per_source` must be 1 to {} (the admin server's own limit, which turns the cap off)",
                    crate::admin::MAX_CONNECTIONS
                ),
            ));
        }
        let mut tls_fingerprint = None;
        if let Some(tls) = &self.tls {
            // Checked with the file, as the proxy's certificates are: at start-up the server
            // would fail with no place in the file, and on reload after the old one stopped.
            match crate::admin::tls::server_config(tls.cert.get_ref()) {
                Ok(_) => {
                    tls_fingerprint = fulcrum_common::fingerprint::of_files(&[tls.cert.get_ref()]);
                }
                Err(error) => errors.push(ConfigError::at(&tls.cert, error.to_string())),
            }
        }
        if *self.admin_actions.get_ref() && self.users.is_empty() {
            // Refused at run time (no one to act as); said here, where it can be fixed.
            errors.push(ConfigError::at(
                &self.admin_actions,
                "admin_actions needs users: actions are taken as a logged-in user, and without \
                 `users` the page is open to anyone and offers none",
            ));
        }
        if errors.is_empty() {
            Ok(AdminConfig {
                listen: *self.listen.get_ref(),
                stats_path: self.stats_path.get_ref().clone(),
                metrics_path: self.metrics_path.get_ref().clone(),
                users,
                hide_version: self.hide_version,
                admin_actions: *self.admin_actions.get_ref(),
                refresh,
                tls_cert: self.tls.as_ref().map(|t| t.cert.get_ref().clone()),
                tls_fingerprint,
                server_names: (self.server_names.iter())
                    .map(|h| h.get_ref().clone())
                    .collect(),
                max_connections_per_source: per_source,
            })
        } else {
            Err(errors)
        }
    }
}
