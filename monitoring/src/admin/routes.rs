//! What each request gets: the route it names, who may have it, and the answer (see the table
//! in [`super`]). Every path through here returns a response; bad input gets its 4xx, never a
//! panic.
//!
//! Admin actions answer `303 See Other` back to the page (`STATS_PATH`, or `STATS_PATH?norefresh`
//! when posted from there), and their results are kept in the user's session as flash messages,
//! shown once at the top of that next page: a reload does not post the form again, and the
//! results are not in the URL for anyone to forge.

use std::{net::SocketAddr, sync::PoisonError, time::Duration};

use bytes::Bytes;
use fulcrum_common::{UtcTime, stats::Snapshot};
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
    header::{
        ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, ORIGIN, SERVER,
        SET_COOKIE, VARY, WWW_AUTHENTICATE,
    },
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::{
    Shared,
    auth::{self, Auth},
    form::{ActionForm, MAX_BODY},
    html,
    session::{self, Flash},
    throttle::Admit,
};
use crate::{config::User, process};

type Answer = Response<Full<Bytes>>;

/// How long a client has to send a POST's body once its headers are in.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one request, with the headers every answer carries, and logs it at debug level.
pub(super) async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = route(shared, peer, request).await;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // The admin form must not be framed by another site (clickjacking), and the page loads
    // nothing from anywhere.
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !shared.config.hide_version
        && let Ok(server) = HeaderValue::from_str(&format!("Fulcrum/{}", shared.version))
    {
        headers.insert(SERVER, server);
    }
    tracing::debug!(%peer, %method, path, status = response.status().as_u16(), "admin request");
    response
}

/// Which view of the stats a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Page,
    Csv,
}

/// `STATS_PATH` is the page; `STATS_PATH;csv` the CSV (HAProxy's `;norefresh` may come with it,
/// and means nothing for CSV). Anything else under it is not found.
fn stats_view(path: &str, stats_path: &str) -> Option<View> {
    if path == stats_path {
        return Some(View::Page);
    }
    let rest = path.strip_prefix(stats_path)?.strip_prefix(';')?;
    let mut csv = false;
    for part in rest.split(';') {
        match part {
            "csv" => csv = true,
            "norefresh" => {}
            _ => return None,
        }
    }
    csv.then_some(View::Csv)
}

async fn route(shared: &Shared, peer: SocketAddr, request: Request<Incoming>) -> Answer {
    let config = &shared.config;
    let path = request.uri().path();
    if path == config.metrics_path {
        return match *request.method() {
            Method::GET | Method::HEAD => metrics(shared),
            _ => method_not_allowed("GET, HEAD"),
        };
    }
    // After the metrics, which have no password to guess and which scrapers often reach by a
    // name of their own; before the password, which a rebinding page could otherwise try.
    if let Err(host) = shared.hosts.allows(request.headers()) {
        match shared.host_refusals.admit(std::time::Instant::now()) {
            Admit::Log { unlogged } => {
                tracing::warn!(%host, %peer, unlogged, "admin request refused: Host is not this server's (see [admin] server_names)")
            }
            Admit::Skip => {}
        }
        return plain(
            StatusCode::FORBIDDEN,
            "403 Forbidden: this Host is not one of the admin server's names; add it to [admin] server_names\n",
        );
    }
    let Some(view) = stats_view(path, &config.stats_path) else {
        return plain(StatusCode::NOT_FOUND, "404 Not Found\n");
    };
    let now = std::time::Instant::now();
    // Before the credentials are looked at: a client held off learns nothing from them.
    if let Err(wait) = shared.lockout.check(peer.ip(), now) {
        return too_many_refusals(wait);
    }
    let user = match auth::check(&config.users, request.headers()) {
        Auth::Open => None,
        Auth::User(user) => {
            shared.lockout.succeeded(peer.ip());
            Some(user)
        }
        Auth::Missing => return unauthorized(),
        Auth::Refused(name) => {
            shared.lockout.failed(peer.ip(), now);
            let user = name.as_deref().map(auth::loggable).unwrap_or_default();
            match shared.login_refusals.admit(now) {
                Admit::Log { unlogged: 0 } => tracing::warn!(?user, %peer, "stats login refused"),
                Admit::Log { unlogged } => {
                    tracing::warn!(?user, %peer, unlogged, "stats login refused");
                }
                Admit::Skip => {}
            }
            return unauthorized();
        }
    };
    match (request.method(), view) {
        (&Method::GET | &Method::HEAD, View::Csv) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            super::csv(&snapshot(shared)),
        ),
        (&Method::GET | &Method::HEAD, View::Page) => page(shared, &request, user),
        (&Method::POST, View::Page) => action(shared, peer, request, user).await,
        (_, View::Csv) => method_not_allowed("GET, HEAD"),
        (_, View::Page) => method_not_allowed("GET, HEAD, POST"),
    }
}

/// The appliance's snapshot with the sampled session rates filled in.
fn snapshot(shared: &Shared) -> Snapshot {
    let mut snapshot = shared.appliance.snapshot();
    shared
        .rates
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .fill(&mut snapshot);
    snapshot
}

fn metrics(shared: &Shared) -> Answer {
    let mut body = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&shared.registry.gather(), &mut body) {
        Ok(()) => text(StatusCode::OK, prometheus::TEXT_FORMAT, body),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

/// The HTML page, or the snapshot as JSON for a client that prefers it.
fn page(shared: &Shared, request: &Request<Incoming>, user: Option<&User>) -> Answer {
    let snapshot = snapshot(shared);
    let mut response = if prefers_json(request.headers()) {
        json(&snapshot)
    } else {
        html_page(shared, request, user, &snapshot)
    };
    // A page or its JSON depends on `Accept`; a 500 from either does not.
    if response.status() == StatusCode::OK {
        response
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("Accept"));
    }
    response
}

fn json(snapshot: &Snapshot) -> Answer {
    match serde_json::to_vec(snapshot) {
        Ok(body) => text(StatusCode::OK, "application/json", body),
        Err(error) => {
            tracing::error!(%error, "cannot encode the snapshot as JSON");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode JSON\n")
        }
    }
}

fn html_page(
    shared: &Shared,
    request: &Request<Incoming>,
    user: Option<&User>,
    snapshot: &Snapshot,
) -> Answer {
    let config = &shared.config;
    // Only a logged-in user who may act gets a session: its token goes into the forms.
    let session = match user {
        Some(user) if config.admin_actions && !user.read_only => {
            match shared.sessions.open(
                session::cookie(request.headers()),
                &user.name,
                Instant::now(),
                request.method() != Method::HEAD,
            ) {
                Ok(session) => Some(session),
                Err(error) => {
                    tracing::error!(%error, "cannot open an admin session");
                    return plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "cannot open an admin session: the system random source failed\n",
                    );
                }
            }
        }
        _ => None,
    };
    let node = process::node_name();
    let generated = UtcTime::now().rfc3339();
    let body = html::render(&html::Page {
        snapshot,
        version: (!config.hide_version).then_some(shared.version),
        node: node.as_deref(),
        pid: std::process::id(),
        uptime: process::uptime_secs(),
        generated: &generated,
        // At least 1: the config refuses less than 1s.
        refresh_secs: config.refresh.as_secs(),
        norefresh: wants_norefresh(request),
        stats_path: &config.stats_path,
        user: user.map(|u| u.name.as_str()),
        token: session.as_ref().map(|s| s.token.as_str()),
        flash: session.as_ref().map_or(&[], |s| s.flash.as_slice()),
    });
    let mut response = text(StatusCode::OK, "text/html; charset=utf-8", body);
    if let Some(id) = session.and_then(|s| s.new_id) {
        match HeaderValue::from_str(&session::set_cookie(&id, &config.stats_path, shared.tls)) {
            Ok(cookie) => {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            Err(_) => tracing::error!(
                stats_path = config.stats_path,
                "the stats path cannot go into a cookie; admin actions will be refused"
            ),
        }
    }
    response
}

/// An admin action from the page's form: checked (see [`super::session`]), carried out server
/// by server, logged, and answered with a redirect to the page that shows the results.
async fn action(
    shared: &Shared,
    peer: SocketAddr,
    request: Request<Incoming>,
    user: Option<&User>,
) -> Answer {
    if !shared.config.admin_actions {
        return plain(
            StatusCode::FORBIDDEN,
            "admin actions are off: set `admin_actions = true` in [admin]\n",
        );
    }
    let Some(user) = user else {
        return plain(
            StatusCode::FORBIDDEN,
            "admin actions need a login: add `users` to [admin]\n",
        );
    };
    let (user, read_only) = (user.name.as_str(), user.read_only);
    if read_only {
        tracing::warn!(user, %peer, "admin action refused: the user is read_only");
        return plain(
            StatusCode::FORBIDDEN,
            "refused: this user may see the page but not act from it (read_only in [admin] users)\n",
        );
    }
    let headers = request.headers();
    if !session::origin_allowed(headers, shared.tls) {
        let origin = headers
            .get(ORIGIN)
            .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned());
        tracing::warn!(user, %peer, ?origin, "admin action refused: request from another origin");
        return plain(
            StatusCode::FORBIDDEN,
            "refused: the form was not sent from this stats page\n",
        );
    }
    if !is_form(headers) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the form as application/x-www-form-urlencoded\n",
        );
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let cookie = session::cookie(headers).map(str::to_owned);
    let back = html::page_url(&shared.config.stats_path, wants_norefresh(&request));
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), MAX_BODY).collect(),
    )
    .await;
    let body = match collected {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(_)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            );
        }
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request body came too slowly\n",
            );
        }
    };
    let form = ActionForm::parse(&body);
    let token = form.token.as_deref().unwrap_or_default();
    let Some(cookie) = cookie.filter(|id| {
        shared
            .sessions
            .allows(Some(id), user, token, Instant::now())
    }) else {
        tracing::warn!(user, %peer, "admin action refused: no valid session or token");
        return plain(
            StatusCode::FORBIDDEN,
            "refused: this form is stale or was not sent from the stats page; reload the page and \
             try again\n",
        );
    };
    let flash = match form.request() {
        Err(problem) => {
            tracing::info!(user, %peer, problem, "admin action not understood");
            vec![Flash {
                ok: false,
                text: problem,
            }]
        }
        Ok((action, servers)) => servers
            .iter()
            .map(
                |server| match shared.appliance.server_action(server, action) {
                    Ok(message) => {
                        tracing::info!(user, %peer, %server, %action, result = message, "admin action");
                        // The appliance's message names the server already.
                        Flash {
                            ok: true,
                            text: message,
                        }
                    }
                    Err(error) => {
                        tracing::info!(user, %peer, %server, %action, error, "admin action failed");
                        Flash {
                            ok: false,
                            text: format!("{server}: {error}"),
                        }
                    }
                },
            )
            .collect(),
    };
    shared.sessions.set_flash(&cookie, flash);
    let mut response = plain(StatusCode::SEE_OTHER, "");
    if let Ok(location) = HeaderValue::from_str(&back) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// Whether `Accept` ranks `application/json` above `text/html` (RFC 9110 §12.5.1: the most
/// specific range that matches gives a type its quality). `*/*` alone, or no `Accept`, is HTML.
fn prefers_json(headers: &HeaderMap) -> bool {
    let ranges: Vec<&str> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let json = quality(&ranges, "application", "json");
    json > 0.0 && json > quality(&ranges, "text", "html")
}

fn quality(ranges: &[&str], major: &str, minor: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in ranges {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim();
        let Some((range_major, range_minor)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (range_major.trim(), range_minor.trim()) {
            (a, b) if a.eq_ignore_ascii_case(major) && b.eq_ignore_ascii_case(minor) => 3,
            (a, "*") if a.eq_ignore_ascii_case(major) => 2,
            ("*", "*") => 1,
            _ => continue,
        };
        // No `q` is 1; one that is not a number in 0..=1 counts as 0 (not acceptable).
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, value)| {
                value
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0)
            });
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

fn wants_norefresh<B>(request: &Request<B>) -> bool {
    request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "norefresh" || p.starts_with("norefresh="))
    })
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn plain(status: StatusCode, body: &'static str) -> Answer {
    text(status, "text/plain; charset=utf-8", body)
}

fn unauthorized() -> Answer {
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: log in as one of the users of [admin]\n",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(auth::CHALLENGE));
    response
}

/// 429 for a client that used up its refused logins, with `Retry-After` in whole seconds.
fn too_many_refusals(wait: std::time::Duration) -> Answer {
    let mut response = plain(
        StatusCode::TOO_MANY_REQUESTS,
        "429 Too Many Requests: too many refused logins from this address; wait, then log in again\n",
    );
    let seconds = wait.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, value);
    }
    response
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn too_large() -> Answer {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the form is larger than 64 KiB\n",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn stats_paths_name_their_view() {
        assert_eq!(stats_view("/stats", "/stats"), Some(View::Page));
        assert_eq!(stats_view("/stats;csv", "/stats"), Some(View::Csv));
        assert_eq!(
            stats_view("/stats;csv;norefresh", "/stats"),
            Some(View::Csv)
        );
        assert_eq!(stats_view("/stats;norefresh", "/stats"), None);
        assert_eq!(stats_view("/stats;json", "/stats"), None);
        assert_eq!(stats_view("/statsx", "/stats"), None);
        assert_eq!(stats_view("/stats/", "/stats"), None);
        assert_eq!(stats_view("/;csv", "/"), Some(View::Csv));
        assert_eq!(stats_view("/other", "/"), None);
    }

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_only_when_preferred() {
        assert!(prefers_json(&accept("application/json")));
        assert!(prefers_json(&accept("application/json, text/html;q=0.5")));
        assert!(prefers_json(&accept("text/html;q=0.1, application/*")));
        assert!(prefers_json(&accept("APPLICATION/JSON;Q=0.9, */*;q=0.1")));
        assert!(!prefers_json(&HeaderMap::new()));
        assert!(!prefers_json(&accept("*/*")));
        assert!(!prefers_json(&accept(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!prefers_json(&accept("application/json;q=0, */*")));
        assert!(!prefers_json(&accept("application/json;q=NaN")));
        assert!(!prefers_json(&accept("garbage, ;;, /, =")));
    }
}
