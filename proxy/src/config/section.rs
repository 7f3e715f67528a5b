//! The serde types of the proxy's config sections, `[frontend.NAME]` and `[backend.NAME]`, exactly
//! as users write them (see docs/config.md). Nothing here is checked beyond types; `build` turns
//! these into a validated [`crate::Config`].

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use fulcrum_common::{Duration, Spanned};
use serde::Deserialize;

/// `[frontend.NAME]`: where clients connect and how their requests are routed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendSection {
    /// Addresses to listen on; a VIP the node does not hold yet is fine (IP_FREEBIND).
    pub bind: Spanned<Vec<Spanned<SocketAddr>>>,
    /// TLS termination; without it the listeners speak plain HTTP/1.1 and h2c.
    pub tls: Option<TlsSection>,
    /// Named ACLs: `acl.is_post = "method POST"`.
    #[serde(default)]
    pub acl: BTreeMap<String, Spanned<String>>,
    /// Answers given by the proxy itself, tried before `use_backend` (HAProxy's
    /// `http-request return`): health endpoints, maintenance pages, the default welcome page.
    #[serde(rename = "return", default)]
    pub returns: Vec<ReturnSection>,
    /// Rules tried in order; the first whose condition holds picks the backend.
    #[serde(default)]
    pub use_backend: Vec<UseBackendSection>,
    /// The backend for requests no rule matched; without it they get 503.
    pub default_backend: Option<Spanned<String>>,
    /// Add `X-Forwarded-For` and `X-Forwarded-Proto` (HAProxy's `option forwardfor`).
    #[serde(default)]
    pub forward_for: bool,
    /// Concurrent client connections this frontend accepts; more wait in the kernel's backlog.
    pub max_connections: Option<Spanned<u32>>,
    #[serde(default)]
    pub timeout: FrontendTimeoutSection,
}

/// `tls = { certs = [...] }` of a frontend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM files, each holding a certificate chain and its private key; several files are chosen
    /// between by SNI, the first is the default.
    pub certs: Spanned<Vec<Spanned<PathBuf>>>,
    /// ALPN protocols offered, in order of preference.
    #[serde(default = "default_alpn")]
    pub alpn: Vec<Spanned<String>>,
}

fn default_alpn() -> Vec<Spanned<String>> {
    ["h2", "http/1.1"]
        .into_iter()
        .map(|p| Spanned::new(0..0, p.to_owned()))
        .collect()
}

/// One `use_backend` rule: `{ backend = "x", if = "cond" }` or `{ backend = "x", unless = "cond" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseBackendSection {
    pub backend: Spanned<String>,
    #[serde(rename = "if")]
    pub if_: Option<Spanned<String>>,
    pub unless: Option<Spanned<String>>,
}

/// One `return` rule: `{ if = "{ path /health }", status = 200, content_type = "text/plain", body = "ok" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnSection {
    #[serde(rename = "if")]
    pub if_: Option<Spanned<String>>,
    pub unless: Option<Spanned<String>>,
    #[serde(default = "default_return_status")]
    pub status: Spanned<u16>,
    #[serde(default = "default_content_type")]
    pub content_type: Spanned<String>,
    #[serde(default)]
    pub body: String,
}

fn default_return_status() -> Spanned<u16> {
    Spanned::new(0..0, 200)
}

fn default_content_type() -> Spanned<String> {
    Spanned::new(0..0, "text/plain".to_owned())
}

/// `timeout = { ... }` of a frontend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrontendTimeoutSection {
    /// Client inactivity while a request or response is under way.
    pub client: Duration,
    /// Time to receive a whole request head; past it the client gets 408 (the slowloris guard).
    pub http_request: Duration,
    /// Idle time allowed between two requests on a keep-alive connection.
    pub keep_alive: Duration,
}

impl Default for FrontendTimeoutSection {
    fn default() -> Self {
        Self {
            client: Duration::from_secs(30),
            http_request: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
        }
    }
}

/// `[backend.NAME]`: a pool of servers and how to pick between them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `roundrobin` (default) | `static-rr` | `leastconn` | `first` | `source` | `uri` | `hdr(NAME)` | `random`.
    pub balance: Option<Spanned<String>>,
    pub cookie: Option<CookieSection>,
    pub health_check: Option<HealthCheckSection>,
    /// An agent on each server that reports its weight, state and health (HAProxy's
    /// `agent-check`).
    pub agent_check: Option<AgentCheckSection>,
    #[serde(default)]
    pub timeout: BackendTimeoutSection,
    /// Connection attempts after the first fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Let the last retry go to another server, and let a sticky client whose server cannot be
    /// reached go elsewhere (HAProxy's `option redispatch`).
    #[serde(default)]
    pub redispatch: bool,
    /// Idle keep-alive connections kept per server for reuse.
    #[serde(default = "default_pool_idle")]
    pub pool_max_idle: u32,
    /// A server back UP takes its weight in steps over this long (HAProxy's `slowstart`).
    pub slow_start: Option<Spanned<Duration>>,
    pub servers: Vec<ServerSection>,
}

fn default_retries() -> u32 {
    3
}

fn default_pool_idle() -> u32 {
    1024
}

/// `cookie = { name = "webserver", mode = "insert", ... }`: HAProxy's cookie persistence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieSection {
    pub name: Spanned<String>,
    #[serde(default)]
    pub mode: CookieMode,
    /// Add `Cache-Control: private` to responses that set the persistence cookie (inserted, or
    /// rewritten/prefixed), so shared caches do not hand one client's cookie to others.
    #[serde(default)]
    pub nocache: bool,
    /// With `insert`: remove the persistence cookie from requests before they reach the server,
    /// so applications never see it. (A client holding a valid cookie is never sent it again,
    /// with or without `indirect`.)
    #[serde(default)]
    pub indirect: bool,
    #[serde(default)]
    pub httponly: bool,
    #[serde(default)]
    pub secure: bool,
    pub domain: Option<Spanned<String>>,
    pub max_age: Option<Spanned<Duration>>,
}

/// How the persistence cookie gets to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieMode {
    /// Fulcrum adds its own `Set-Cookie`.
    #[default]
    Insert,
    /// The server sets the cookie; Fulcrum replaces its value with the server's id.
    Rewrite,
    /// The server sets the cookie; Fulcrum prefixes its value with `ID~`.
    Prefix,
}

/// `health_check = { ... }` of a backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    #[serde(rename = "type", default = "default_check_kind")]
    pub kind: Spanned<CheckKind>,
    #[serde(default = "default_check_method")]
    pub method: Spanned<String>,
    #[serde(default = "default_check_path")]
    pub path: Spanned<String>,
    /// `Host` header of the check request; the server's address when unset.
    pub host: Option<Spanned<String>>,
    /// Status codes that pass, `"200"` or `"200-399"`; 200-399 when unset, as HAProxy's
    /// `option httpchk`. With `expect_body`, both must pass.
    pub expect_status: Option<Spanned<String>>,
    /// A substring the response body must contain (ldirectord's `receive`).
    pub expect_body: Option<String>,
    /// Period between two probes (HAProxy's `inter`).
    #[serde(default = "default_check_interval")]
    pub interval: Spanned<Duration>,
    /// Period while the server is on its way UP or DOWN (HAProxy's `fastinter`); `interval`
    /// unless set.
    pub fast_interval: Option<Spanned<Duration>>,
    /// Period while the server is fully DOWN (HAProxy's `downinter`); `interval` unless set.
    pub down_interval: Option<Spanned<Duration>>,
    /// Defaults to `interval`, as HAProxy's `timeout check`.
    pub timeout: Option<Spanned<Duration>>,
    #[serde(default = "default_rise")]
    pub rise: Spanned<u32>,
    #[serde(default = "default_fall")]
    pub fall: Spanned<u32>,
    /// Port to check instead of the server's.
    pub port: Option<Spanned<u16>>,
    /// What a server marked DOWN by its check does to its sessions (HAProxy's
    /// `on-marked-down`): nothing, or `"shutdown-sessions"`.
    pub on_marked_down: Option<OnMarkedDown>,
    /// What a server marked UP by its check does to the backup servers' sessions (HAProxy's
    /// `on-marked-up`): nothing, or `"shutdown-backup-sessions"`.
    pub on_marked_up: Option<OnMarkedUp>,
    /// The program an `external` check runs, with its first arguments, split as a shell would
    /// (HAProxy's `external-check command`, ldirectord's `checkcommand`).
    pub command: Option<Spanned<String>>,
    /// Passive health from live traffic (HAProxy's `observe`).
    pub observe: Option<Spanned<Observe>>,
    /// Consecutive errors that set `on_error` off (HAProxy's `error-limit`); 10 unless set.
    pub error_limit: Option<Spanned<u32>>,
    /// What `error_limit` consecutive errors do (HAProxy's `on-error`); `fastinter` unless set.
    pub on_error: Option<Spanned<OnError>>,
}

/// What live traffic a server is judged by (HAProxy's `observe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observe {
    /// Connections: one that cannot be made is an error, one made clears the count.
    Layer4,
    /// HTTP responses as well: a 5xx other than 501 and 505, or a bad, aborted or late
    /// response, is an error; any other response clears the count.
    Layer7,
}

/// HAProxy's `on-error` actions, from the mildest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The next health check comes within `fast_interval`.
    #[default]
    Fastinter,
    /// As a failed health check.
    FailCheck,
    /// As failed health checks down to one short of DOWN.
    SuddenDeath,
    /// DOWN at once.
    MarkDown,
}

/// `agent_check = { ... }` of a backend or a virtual service: HAProxy's `agent-port`, `agent-inter` and
/// `agent-send`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCheckSection {
    /// The agent's TCP port on the server's address.
    pub port: Spanned<u16>,
    #[serde(default = "default_check_interval")]
    pub interval: Spanned<Duration>,
    /// For the connect and the reply together; `interval` when unset.
    pub timeout: Option<Spanned<Duration>>,
    /// Sent once connected, before the reply is read.
    pub send: Option<String>,
}

/// HAProxy's `on-marked-up` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMarkedUp {
    /// Every session on the backend's backup servers ends, so that their clients come back to
    /// the active server.
    ShutdownBackupSessions,
}

/// HAProxy's `on-marked-down` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnMarkedDown {
    /// Every session on the server ends at once, instead of running on (or timing out).
    ShutdownSessions,
}

/// What a health check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    /// HTTP over TLS, the server's certificate not verified.
    Https,
    #[default]
    Tcp,
    /// A program's exit status: 0 passes.
    External,
    None,
}

fn default_check_kind() -> Spanned<CheckKind> {
    Spanned::new(0..0, CheckKind::default())
}

fn default_check_method() -> Spanned<String> {
    Spanned::new(0..0, "GET".to_owned())
}

fn default_check_path() -> Spanned<String> {
    Spanned::new(0..0, "/".to_owned())
}

fn default_check_interval() -> Spanned<Duration> {
    Spanned::new(0..0, Duration::from_secs(2))
}

fn default_rise() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}

fn default_fall() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}

/// `timeout = { ... }` of a backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendTimeoutSection {
    pub connect: Duration,
    /// Server inactivity; with no response head yet the client gets 504.
    pub server: Duration,
    /// Time a request may wait for a server slot; then 503. Defaults to `connect`, as HAProxy.
    pub queue: Option<Duration>,
    /// Inactivity both ways of a tunnel after a `101`. Defaults to the larger of the frontend's
    /// `client` and this `server` timeout.
    pub tunnel: Option<Duration>,
}

impl Default for BackendTimeoutSection {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            server: Duration::from_secs(30),
            queue: None,
            tunnel: None,
        }
    }
}

/// One entry of `servers = [...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub name: Spanned<String>,
    pub address: Spanned<SocketAddr>,
    /// 0..=256; 0 gets no new clients.
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
    /// Persistence cookie value; defaults to the server's name.
    pub cookie: Option<Spanned<String>>,
    /// Concurrent requests sent to this server; more wait in the backend's queue.
    pub max_connections: Option<Spanned<u32>>,
    /// Used only while no active server is UP.
    #[serde(default)]
    pub backup: bool,
    /// Set to false to leave this server out of the backend's health checks.
    #[serde(default = "default_true")]
    pub check: bool,
    /// Start in MAINT, as HAProxy's `disabled`.
    #[serde(default)]
    pub disabled: bool,
    /// Where the backend's agent check asks this server's agent, when not on its `address`
    /// (HAProxy's `agent-addr`).
    pub agent_addr: Option<Spanned<IpAddr>>,
}

fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

fn default_true() -> bool {
    true
}
