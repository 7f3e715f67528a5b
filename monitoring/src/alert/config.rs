//! `[alert]`: where alerts go, as users write it (see the module header in `alert/mod.rs` and
//! docs/config.md), and the checked [`AlertConfig`] built from it.

use std::{path::PathBuf, time::Duration as StdDuration};

use fulcrum_common::{ConfigError, Duration, Spanned, secret};
use lettre::message::Mailbox;
use serde::Deserialize;

use super::{event::Category, http::Endpoint, tls};

/// `[alert]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// Which categories are sent; all of them when left out.
    pub events: Option<Vec<Spanned<String>>>,
    pub email: Option<EmailSection>,
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
    /// A program (split into words like a shell would, but run without one) that reads the
    /// alert's text on standard input.
    pub command: Option<Spanned<String>>,
    /// How long the command may run.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: Spanned<Duration>,
    /// Flap limit per object: `{ max = 3, window = "5m" }`.
    pub rate_limit: Option<RateLimitSection>,
    /// Attempts per alert and sink before it is given up.
    #[serde(default = "default_tries")]
    pub tries: Spanned<u32>,
    /// The wait before the first retry; each next one waits twice as long.
    #[serde(default = "default_backoff")]
    pub backoff: Spanned<Duration>,
}

/// `email = { smtp = "host:port", from = "...", to = ["..."] }` and its optional keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// The relay: `host`, `host:port`, `[v6]:port`; port 25 (465 with `tls = "smtps"`).
    pub smtp: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<Vec<Spanned<String>>>,
    /// `"none"` (the default, as keepalived), `"opportunistic"`, `"starttls"` or `"smtps"`.
    pub tls: Option<Spanned<String>>,
    /// A PEM file of extra CA certificates to trust for the relay.
    pub ca: Option<Spanned<PathBuf>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<PathBuf>>,
    /// Let `user`/`password` go over a connection that may not be encrypted.
    #[serde(default)]
    pub allow_plain_auth: bool,
    #[serde(default = "default_net_timeout")]
    pub timeout: Spanned<Duration>,
}

/// One `webhooks` entry: `{ url = "...", format = "alertmanager" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: Spanned<String>,
    /// `"json"` (the default) or `"alertmanager"`.
    pub format: Option<Spanned<String>>,
    #[serde(default = "default_net_timeout")]
    pub timeout: Spanned<Duration>,
    /// Alertmanager only: how often firing alerts are sent again, as Prometheus does, so
    /// Alertmanager keeps them firing; `"0s"` never (they then end after its `resolve_timeout`).
    #[serde(default = "default_resend")]
    pub resend: Spanned<Duration>,
    /// A PEM file of extra CA certificates to trust for an `https://` receiver.
    pub ca: Option<Spanned<PathBuf>>,
}

/// `rate_limit = { max = 3, window = "5m" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    pub max: Spanned<u32>,
    pub window: Spanned<Duration>,
}

fn default_command_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(30))
}

fn default_net_timeout() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(10))
}

fn default_resend() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(60))
}

fn default_tries() -> Spanned<u32> {
    Spanned::new(0..0, 5)
}

fn default_backoff() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(1))
}

/// A checked `[alert]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// The categories sent, without repeats.
    pub events: Vec<Category>,
    pub email: Option<EmailConfig>,
    pub webhooks: Vec<WebhookConfig>,
    pub command: Option<CommandConfig>,
    pub rate_limit: RateLimit,
    pub retry: Retry,
}

/// Where and how mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub from: Mailbox,
    /// At least one.
    pub to: Vec<Mailbox>,
    pub tls: SmtpTls,
    /// Extra CA certificates (PEM) to trust.
    pub ca_pem: Option<Vec<u8>>,
    pub auth: Option<SmtpAuth>,
    pub timeout: StdDuration,
}

/// How the SMTP connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text, as keepalived sends.
    None,
    /// STARTTLS when the relay offers it, plain text otherwise.
    Opportunistic,
    /// STARTTLS or fail.
    StartTls,
    /// TLS from the first byte (port 465).
    Smtps,
}

impl SmtpTls {
    const NAMES: [(&str, Self); 4] = [
        ("none", Self::None),
        ("opportunistic", Self::Opportunistic),
        ("starttls", Self::StartTls),
        ("smtps", Self::Smtps),
    ];
}

/// SMTP AUTH credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for SmtpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub endpoint: Endpoint,
    pub format: WebhookFormat,
    pub timeout: StdDuration,
    /// `None`: firing alerts are not sent again.
    pub resend: Option<StdDuration>,
    pub ca_pem: Option<Vec<u8>>,
}

/// The body a webhook posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// One plain JSON object per alert.
    Json,
    /// Alertmanager's `POST /api/v2/alerts` array.
    Alertmanager,
}

/// The command sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Program and arguments; at least the program.
    pub argv: Vec<String>,
    pub timeout: StdDuration,
}

/// The flap limit: at most `max` alerts per object per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub window: StdDuration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            max: 3,
            window: StdDuration::from_secs(300),
        }
    }
}

/// Attempts per alert and sink, and the first wait between them (doubling after each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub tries: u32,
    pub backoff: StdDuration,
}

impl AlertSection {
    /// Checks the section; every problem is reported, each at its key.
    pub fn build(&self) -> Result<AlertConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let events = match &self.events {
            None => Category::ALL.to_vec(),
            Some(names) => {
                let mut events = Vec::new();
                for name in names {
                    match Category::from_name(name.get_ref()) {
                        Some(c) if !events.contains(&c) => events.push(c),
                        Some(_) => {}
                        None => errors.push(ConfigError::at(
                            name,
                            format!(
                                "unknown event category `{}`: write {}",
                                name.get_ref(),
                                Category::ALL.map(Category::name).join(", ")
                            ),
                        )),
                    }
                }
                events
            }
        };
        let email = self
            .email
            .as_ref()
            .and_then(|e| e.build().map_err(|e| errors.extend(e)).ok());
        let webhooks = self
            .webhooks
            .iter()
            .filter_map(|w| w.build().map_err(|e| errors.extend(e)).ok())
            .collect::<Vec<_>>();
        let command = self
            .command
            .as_ref()
            .and_then(|c| match shell_words::split(c.get_ref()) {
                Ok(argv) if !argv.is_empty() => Some(CommandConfig {
                    argv,
                    timeout: self.command_timeout.get_ref().get(),
                }),
                Ok(_) => {
                    errors.push(ConfigError::at(c, "`command` is empty: name a program"));
                    None
                }
                Err(e) => {
                    errors.push(ConfigError::at(c, format!("cannot split `command`: {e}")));
                    None
                }
            });
        if self.command_timeout.get_ref().is_zero() {
            errors.push(ConfigError::at(
                &self.command_timeout,
                "`command_timeout` must be more than 0s",
            ));
        }
        let rate_limit = match &self.rate_limit {
            None => RateLimit::default(),
            Some(r) => {
                if *r.max.get_ref() == 0 {
                    errors.push(ConfigError::at(
                        &r.max,
                        "`max` must be at least 1 (raise it to send more; the last state of an object is always sent)",
                    ));
                }
                if r.window.get_ref().is_zero() {
                    errors.push(ConfigError::at(&r.window, "`window` must be more than 0s"));
                }
                RateLimit {
                    max: *r.max.get_ref(),
                    window: r.window.get_ref().get(),
                }
            }
        };
        if !(1..=20).contains(self.tries.get_ref()) {
            errors.push(ConfigError::at(
                &self.tries,
                "`tries` must be between 1 and 20",
            ));
        }
        if self.backoff.get_ref().is_zero() {
            errors.push(ConfigError::at(
                &self.backoff,
                "`backoff` must be more than 0s",
            ));
        }
        if self.email.is_none() && self.webhooks.is_empty() && self.command.is_none() {
            errors.push(ConfigError::global(
                "`[alert]` sends nowhere: set `email`, `webhooks` or `command`",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AlertConfig {
            events,
            email,
            webhooks,
            command,
            rate_limit,
            retry: Retry {
                tries: *self.tries.get_ref(),
                backoff: self.backoff.get_ref().get(),
            },
        })
    }
}

impl EmailSection {
    fn build(&self) -> Result<EmailConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let tls = match &self.tls {
            None => SmtpTls::None,
            Some(name) => SmtpTls::NAMES
                .iter()
                .find(|(n, _)| n == name.get_ref())
                .map(|(_, t)| *t)
                .unwrap_or_else(|| {
                    errors.push(ConfigError::at(
                        name,
                        format!(
                            "unknown `tls` mode `{}`: write none, opportunistic, starttls or smtps",
                            name.get_ref()
                        ),
                    ));
                    SmtpTls::None
                }),
        };
        let default_port = if tls == SmtpTls::Smtps { 465 } else { 25 };
        let (host, port) = match host_port(self.smtp.get_ref(), default_port) {
            Ok(hp) => hp,
            Err(e) => {
                errors.push(ConfigError::at(&self.smtp, e));
                (String::new(), 0)
            }
        };
        let mailbox = |s: &Spanned<String>, errors: &mut Vec<ConfigError>| {
            s.get_ref()
                .parse::<Mailbox>()
                .map_err(|e| {
                    errors.push(ConfigError::at(
                        s,
                        format!("`{}` is not a mail address: {e}", s.get_ref()),
                    ));
                })
                .ok()
        };
        let from = mailbox(&self.from, &mut errors);
        let to = self
            .to
            .get_ref()
            .iter()
            .filter_map(|t| mailbox(t, &mut errors))
            .collect::<Vec<_>>();
        if self.to.get_ref().is_empty() {
            errors.push(ConfigError::at(
                &self.to,
                "`to` is empty: list at least one address",
            ));
        }
        let ca_pem = self
            .ca
            .as_ref()
            .and_then(|ca| read_ca(ca).map_err(|e| errors.push(e)).ok());
        let password = secret::resolve(
            "password",
            self.password.as_ref(),
            self.password_file.as_ref(),
        )
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
        let auth = match (&self.user, password) {
            (Some(user), Some(password)) => {
                if matches!(tls, SmtpTls::None | SmtpTls::Opportunistic) && !self.allow_plain_auth {
                    errors.push(ConfigError::at(
                        user,
                        "SMTP AUTH would send the password in clear: set `tls = \"starttls\"` or `\"smtps\"`, or `allow_plain_auth = true`",
                    ));
                }
                Some(SmtpAuth {
                    user: user.get_ref().clone(),
                    password,
                })
            }
            (Some(user), None) => {
                errors.push(ConfigError::at(
                    user,
                    "`user` needs a `password` or a `password_file`",
                ));
                None
            }
            (None, Some(_)) => {
                let message = "a password without a `user`: set `user` too";
                // At whichever key gave the password.
                errors.push(match (&self.password, &self.password_file) {
                    (Some(password), _) => ConfigError::at(password, message),
                    (None, Some(file)) => ConfigError::at(file, message),
                    (None, None) => ConfigError::at(&self.smtp, message),
                });
                None
            }
            (None, None) => None,
        };
        if self.timeout.get_ref().is_zero() {
            errors.push(ConfigError::at(
                &self.timeout,
                "`timeout` must be more than 0s",
            ));
        }
        match from {
            Some(from) if errors.is_empty() => Ok(EmailConfig {
                host,
                port,
                from,
                to,
                tls,
                ca_pem,
                auth,
                timeout: self.timeout.get_ref().get(),
            }),
            _ => Err(errors),
        }
    }
}

impl WebhookSection {
    fn build(&self) -> Result<WebhookConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let endpoint = Endpoint::parse(self.url.get_ref())
            .map_err(|e| errors.push(ConfigError::at(&self.url, e)))
            .ok();
        let format = match &self.format {
            None => WebhookFormat::Json,
            Some(f) => match f.get_ref().as_str() {
                "json" => WebhookFormat::Json,
                "alertmanager" => WebhookFormat::Alertmanager,
                other => {
                    errors.push(ConfigError::at(
                        f,
                        format!("unknown webhook `format` `{other}`: write json or alertmanager"),
                    ));
                    WebhookFormat::Json
                }
            },
        };
        let ca_pem = self
            .ca
            .as_ref()
            .and_then(|ca| read_ca(ca).map_err(|e| errors.push(e)).ok());
        if self.timeout.get_ref().is_zero() {
            errors.push(ConfigError::at(
                &self.timeout,
                "`timeout` must be more than 0s",
            ));
        }
        let resend = self.resend.get_ref().get();
        if !resend.is_zero() && resend < StdDuration::from_secs(1) {
            errors.push(ConfigError::at(
                &self.resend,
                "`resend` must be at least 1s, or 0s for never",
            ));
        }
        match endpoint {
            Some(endpoint) if errors.is_empty() => Ok(WebhookConfig {
                endpoint,
                format,
                timeout: self.timeout.get_ref().get(),
                resend: (!resend.is_zero()).then_some(resend),
                ca_pem,
            }),
            _ => Err(errors),
        }
    }
}

/// `host`, `host:port` or `[v6]:port`.
fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || {
        format!("`{s}` is not a host or host:port, e.g. \"192.0.2.25:25\" or \"mail.example.com\"")
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.split_once(':') {
            Some((_, p)) if p.contains(':') => (s, None),
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
    };
    Ok((host.to_owned(), port))
}

/// Reads a `ca` file, refusing one without certificates.
fn read_ca(path: &Spanned<PathBuf>) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path.get_ref()).map_err(|e| {
        ConfigError::at(
            path,
            format!("cannot read `ca` {}: {e}", path.get_ref().display()),
        )
    })?;
    match tls::count_certificates(&pem) {
        Ok(0) => Err(ConfigError::at(path, "`ca` holds no PEM certificate")),
        Ok(_) => Ok(pem),
        Err(e) => Err(ConfigError::at(path, format!("`ca`: {e}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    // The crate does not depend on `toml`, so sections are built by hand, each value with a
    // span of its own, and errors are checked to carry the span of the value at fault.
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static NEXT: AtomicUsize = AtomicUsize::new(1);

    fn s<T>(v: T) -> Spanned<T> {
        let at = NEXT.fetch_add(1, Ordering::Relaxed) * 10;
        Spanned::new(at..at + 5, v)
    }

    fn st(v: &str) -> Spanned<String> {
        s(v.to_owned())
    }

    fn section() -> AlertSection {
        AlertSection {
            events: None,
            email: None,
            webhooks: Vec::new(),
            command: Some(st("/usr/local/bin/send-sms")),
            command_timeout: default_command_timeout(),
            rate_limit: None,
            tries: default_tries(),
            backoff: default_backoff(),
        }
    }

    fn email(smtp: &str, from: &str, to: &[&str]) -> EmailSection {
        EmailSection {
            smtp: st(smtp),
            from: st(from),
            to: s(to.iter().map(|t| st(t)).collect()),
            tls: None,
            ca: None,
            user: None,
            password: None,
            password_file: None,
            allow_plain_auth: false,
            timeout: default_net_timeout(),
        }
    }

    fn webhook(url: &str, format: Option<&str>) -> WebhookSection {
        WebhookSection {
            url: st(url),
            format: format.map(st),
            timeout: default_net_timeout(),
            resend: default_resend(),
            ca: None,
        }
    }

    /// The one error of `section`, which must be at `at`.
    fn error_at<T>(section: &AlertSection, at: &Spanned<T>) -> String {
        let errors = section.build().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].span, Some(at.span()), "{}", errors[0].message);
        errors[0].message.clone()
    }

    #[test]
    fn the_documented_example_builds() {
        // events = ["vrrp", "server", "volume", "sync"]
        // email = { smtp = "192.168.60.128:25", from = "fulcrum@example.com", to = ["root@localhost"] }
        // webhooks = [{ url = "http://127.0.0.1:9093/api/v2/alerts", format = "alertmanager" }]
        // command = "/usr/local/bin/send-sms"
        let mut sec = section();
        sec.events = Some(["vrrp", "server", "volume", "sync"].map(st).to_vec());
        sec.email = Some(email(
            "192.168.60.128:25",
            "fulcrum@example.com",
            &["root@localhost"],
        ));
        sec.webhooks = vec![webhook(
            "http://127.0.0.1:9093/api/v2/alerts",
            Some("alertmanager"),
        )];
        let c = sec.build().unwrap();
        assert_eq!(c.events, Category::ALL.to_vec());
        let email = c.email.unwrap();
        assert_eq!((email.host.as_str(), email.port), ("192.168.60.128", 25));
        assert_eq!(email.to[0].email.to_string(), "root@localhost");
        assert_eq!(email.tls, SmtpTls::None);
        assert_eq!(c.webhooks[0].format, WebhookFormat::Alertmanager);
        assert_eq!(c.webhooks[0].resend, Some(StdDuration::from_secs(60)));
        assert_eq!(c.command.unwrap().argv, ["/usr/local/bin/send-sms"]);
        assert_eq!(c.rate_limit, RateLimit::default());
        assert_eq!(c.retry.tries, 5);
    }

    #[test]
    fn every_mistake_is_reported_at_its_key() {
        let mut sec = section();
        let disk = st("disk");
        sec.events = Some(vec![st("vrrp"), disk.clone()]);
        let m = error_at(&sec, &disk);
        assert!(m.contains("vrrp, server, volume, sync"), "{m}");

        for (smtp, from, to, at) in [
            ("mail:99999", "a@b.c", "r@b.c", 0),
            ("", "a@b.c", "r@b.c", 0),
            ("m", "not an address", "r@b.c", 1),
            ("m", "a@b.c", "nobody", 2),
        ] {
            let mut sec = section();
            let e = email(smtp, from, &[to]);
            sec.email = Some(e.clone());
            let key = [&e.smtp, &e.from, &e.to.get_ref()[0]][at];
            error_at(&sec, key);
        }
        let mut sec = section();
        let e = email("m", "a@b.c", &[]);
        sec.email = Some(e.clone());
        assert!(error_at(&sec, &e.to).contains("empty"));

        let mut e = email("m", "a@b.c", &["r@b.c"]);
        e.tls = Some(st("ssl"));
        sec.email = Some(e.clone());
        error_at(&sec, e.tls.as_ref().unwrap());

        let mut e = email("m", "a@b.c", &["r@b.c"]);
        e.user = Some(st("u"));
        e.password = Some(st("p"));
        sec.email = Some(e.clone());
        assert!(error_at(&sec, e.user.as_ref().unwrap()).contains("in clear"));

        let mut e = email("m", "a@b.c", &["r@b.c"]);
        e.password = Some(st("p"));
        sec.email = Some(e.clone());
        assert!(error_at(&sec, e.password.as_ref().unwrap()).contains("without a `user`"));

        let mut sec = section();
        for (url, format, at_url) in [
            ("ftp://h/x", None, true),
            ("http://u:p@h/", None, true),
            ("http://h/", Some("xml"), false),
        ] {
            let w = webhook(url, format);
            sec.webhooks = vec![w.clone()];
            let key = if at_url {
                &w.url
            } else {
                w.format.as_ref().unwrap()
            };
            error_at(&sec, key);
        }

        for command in ["  ", "a 'b"] {
            let mut sec = section();
            let c = st(command);
            sec.command = Some(c.clone());
            error_at(&sec, &c);
        }

        let mut sec = section();
        let limit = RateLimitSection {
            max: s(0),
            window: s(Duration::from_secs(60)),
        };
        sec.rate_limit = Some(limit.clone());
        error_at(&sec, &limit.max);

        let mut sec = section();
        sec.command = None;
        let m = sec.build().unwrap_err();
        assert!(m[0].message.contains("sends nowhere"), "{m:?}");
        assert_eq!(m[0].span, None);
    }

    #[test]
    fn tls_and_auth() {
        let mut sec = section();
        let mut e = email(
            "[::1]",
            "Fulcrum <f@example.com>",
            &["a@example.com", "b@example.com"],
        );
        e.tls = Some(st("smtps"));
        e.user = Some(st("u"));
        e.password = Some(st("p"));
        sec.email = Some(e);
        let email = sec.build().unwrap().email.unwrap();
        assert_eq!((email.host.as_str(), email.port), ("::1", 465));
        assert_eq!(email.to.len(), 2);
        assert_eq!(email.auth.as_ref().unwrap().user, "u");
        assert!(!format!("{email:?}").contains("\"p\""));

        let mut e = email_plain_auth();
        e.allow_plain_auth = true;
        sec.email = Some(e);
        assert!(sec.build().is_ok());
    }

    fn email_plain_auth() -> EmailSection {
        let mut e = email("m:587", "a@b.c", &["r@b.c"]);
        e.user = Some(st("u"));
        e.password = Some(st("p"));
        e
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            host_port("mail.example.com", 25).unwrap(),
            ("mail.example.com".into(), 25)
        );
        assert_eq!(
            host_port("10.0.0.1:2525", 25).unwrap(),
            ("10.0.0.1".into(), 2525)
        );
        assert_eq!(
            host_port("[2001:db8::1]:26", 25).unwrap(),
            ("2001:db8::1".into(), 26)
        );
        assert_eq!(
            host_port("2001:db8::1", 25).unwrap(),
            ("2001:db8::1".into(), 25)
        );
        for bad in ["", ":25", "h:", "h:x", "h:0", "[::1", "[::1]x"] {
            assert!(host_port(bad, 25).is_err(), "{bad}");
        }
    }
}
