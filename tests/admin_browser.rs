//! The admin stats page driven by a real browser (Debian's headless Chromium through
//! chromedriver, see tests/support/webdriver.rs): an operator logs in, drains and then disables a
//! server from the page, and the traffic follows. A second test checks the WebDriver client itself
//! on a static form page.

#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use fulcrum_bench::origin::Origin;
use support::{
    Fulcrum, Reply, get, origin,
    webdriver::{Browser, PNG_SIGNATURE, artifact_path, base64_decode},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

/// Requests per round of client traffic.
const ROUND: usize = 20;

/// Issue 5, "Show": log in to the stats page, see both servers UP, drain one (new clients go to
/// the other, its sticky client stays), then put it in maintenance (no traffic reaches it at all).
#[test]
fn operator_drains_then_disables_a_server_from_the_stats_page() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let _shot = ScreenshotOnPanic(&browser, "failure.png");
    let rt = Runtime::new().unwrap();
    let (s1, s2) = rt.block_on(async { (origin("s1").await, origin("s2").await) });
    let fulcrum = Fulcrum::start(&format!(
        r#"
[frontend.main]
bind = ["127.0.0.1:0"]
default_backend = "web"

[backend.web]
balance = "roundrobin"
cookie = {{ name = "SRV", mode = "insert" }}
health_check = {{ type = "http", path = "/health", interval = "300ms", timeout = "250ms", rise = 2, fall = 3 }}
servers = [
  {{ name = "s1", address = "{}", cookie = "s1" }},
  {{ name = "s2", address = "{}", cookie = "s2" }},
]

[admin]
listen = "127.0.0.1:0"
users = [{{ name = "admin", password = "s3cret" }}]
admin_actions = true
refresh = "60s"
"#,
        s1.addr(),
        s2.addr()
    ));
    let front = fulcrum.addr("main");
    let stats = format!("http://admin:s3cret@{}/stats", fulcrum.admin_addr());
    let request = |cookie: Option<&str>| -> Reply {
        let headers: &[(&str, &str)] = match cookie {
            Some(cookie) => &[("cookie", cookie)],
            None => &[],
        };
        let reply = rt.block_on(get(front, "/app", headers));
        assert_eq!(reply.status, 200, "{reply:?}");
        reply
    };

    // A client without a cookie is balanced and told which server it is on; keep the cookie of
    // one that landed on s1: the sticky client.
    let sticky = (0..4)
        .map(|_| request(None))
        .find(|reply| reply.server() == "s1")
        .expect("round robin reaches s1");
    assert_eq!(sticky.all("set-cookie"), ["SRV=s1; path=/"]);
    let sticky = "SRV=s1";

    // Log in (credentials in the URL) and see both servers UP.
    browser.navigate(&stats);
    browser.wait_until("s1 and s2 UP", |b| {
        let up = ["s1", "s2"]
            .map(|s| row(b, s))
            .iter()
            .all(|(class, state)| {
                class.split_whitespace().any(|c| c == "state-up") && state == "UP"
            });
        if !up {
            b.navigate(&stats);
        }
        up.then_some(())
    });
    assert!(browser.try_find("#flash").is_none());

    // Drain s1 from the page.
    act(&browser, "s1", "drain");
    let (class, state) = row(&browser, "s1");
    assert!(class.contains("state-drain"), "{class}");
    assert!(state.starts_with("DRAIN"), "{state}");
    assert!(row(&browser, "s2").0.contains("state-up"));
    save(&browser, "stats-drain.png");

    // New clients all go to s2; the sticky client is still served by s1.
    for _ in 0..ROUND {
        let reply = request(None);
        assert_eq!(reply.server(), "s2", "a new client went to the drained s1");
        assert_eq!(reply.all("set-cookie"), ["SRV=s2; path=/"]);
    }
    for _ in 0..ROUND {
        assert_eq!(
            request(Some(sticky)).server(),
            "s1",
            "the sticky client lost s1"
        );
    }

    // Maintenance: s1 MAINT on the page, and no request reaches it, sticky or not.
    act(&browser, "s1", "maint");
    let (class, state) = row(&browser, "s1");
    assert!(class.contains("state-maint"), "{class}");
    assert!(state.starts_with("MAINT"), "{state}");
    let before = client_requests(&s1);
    for _ in 0..ROUND {
        assert_eq!(request(None).server(), "s2");
        let reply = request(Some(sticky));
        assert_eq!(reply.server(), "s2", "a request reached s1 in MAINT");
        assert_eq!(reply.all("set-cookie"), ["SRV=s2; path=/"]);
    }
    assert_eq!(
        client_requests(&s1),
        before,
        "client traffic reached s1 in MAINT"
    );
    assert!(client_requests(&s2) >= 3 * ROUND);

    // The page as the operator sees it, kept for people to look at.
    let png = save(&browser, "stats.png");
    assert!(png.len() > 1000 && png.starts_with(PNG_SIGNATURE));

    // On a phone's width the page itself does not scroll sideways: each wide table scrolls in
    // its own box, so the header, the legend and the forms stay readable.
    browser.cdp(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({ "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true }),
    );
    browser.navigate(&stats);
    let widths = browser.execute(
        "return [document.documentElement.scrollWidth, window.innerWidth, \
         document.querySelector('table.stats').parentElement.scrollWidth, \
         document.querySelector('table.stats').parentElement.clientWidth];",
        &[],
    );
    let [page, viewport, table, table_box] =
        [0, 1, 2, 3].map(|i| widths[i].as_u64().unwrap_or_else(|| panic!("{widths}")));
    assert!(
        page <= viewport,
        "the page overflows a phone's width: {page} > {viewport}"
    );
    assert!(
        table > table_box,
        "the table scrolls in its own box: {table} <= {table_box}"
    );
    let png = save(&browser, "stats-phone.png");
    assert!(png.starts_with(PNG_SIGNATURE));
}

/// The state class list and the status text (`span.state`) of server `server`'s row in `web`.
fn row(browser: &Browser, server: &str) -> (String, String) {
    let row = browser.find(&format!("tr#row-web-{server}.srv"));
    let class = browser.attribute(&row, "class").unwrap_or_default();
    let state = browser
        .find_in(&row, "td.status span.state")
        .map(|s| browser.text(&s))
        .unwrap_or_default();
    (class, state)
}

/// Ticks `server` in backend `web`'s form, chooses `action` and applies it, then waits for the
/// page it is sent back to and checks its result line.
fn act(browser: &Browser, server: &str, action: &str) {
    let checkbox = browser.find(&format!("input#cb-web-{server}[name=s]"));
    assert!(!browser.is_selected(&checkbox));
    browser.click(&checkbox);
    assert!(browser.is_selected(&checkbox));
    browser.select("select#action-web[name=action]", action);
    browser.click_to_navigate(&browser.find("button#apply-web"));
    let flash = browser.find("#flash p.flash");
    let text = browser.text(&flash);
    assert_eq!(
        browser.attribute(&flash, "class").as_deref(),
        Some("flash ok"),
        "{action} {server} failed: {text}"
    );
    assert!(text.contains(server), "{text}");
    assert!(
        browser.current_url().ends_with("/stats"),
        "{}",
        browser.current_url()
    );
}

/// How many requests other than health checks `origin` received.
fn client_requests(origin: &Origin) -> usize {
    origin
        .requests()
        .iter()
        .filter(|r| r.uri.path() == "/app")
        .count()
}

/// Saves a screenshot as this test's artifact `name` and returns it.
fn save(browser: &Browser, name: &str) -> Vec<u8> {
    let png = browser.screenshot();
    let path: PathBuf = artifact_path("admin_browser", name);
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
    png
}

/// Keeps a screenshot of the page when the test fails, to see what the browser saw.
struct ScreenshotOnPanic<'a>(&'a Browser, &'static str);

impl Drop for ScreenshotOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| save(self.0, self.1)));
        }
    }
}

#[test]
fn webdriver_client_drives_chromium() {
    assert_eq!(base64_decode("iVBORw0KGgo=").unwrap(), PNG_SIGNATURE);
    assert_eq!(base64_decode("Zm9vYmE").unwrap(), b"fooba");
    let Some(browser) = Browser::start() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let (addr, seen) = rt.block_on(form_server());

    // Credentials in a top-level URL are sent to the server; the page sets a session cookie.
    browser.navigate(&format!("http://user:pw@{addr}/form"));
    assert_eq!(browser.title(), "webdriver check");
    assert_eq!(browser.text(&browser.find("#title")), "A form");
    let cookie = browser.cdp("Browser.getVersion", serde_json::json!({}));
    assert!(
        cookie["product"].as_str().unwrap().contains("Chrom"),
        "{cookie}"
    );

    // Fill the form as a user would, and submit it.
    let (a, b) = (browser.find("#cb-a"), browser.find("#cb-b"));
    browser.click(&b);
    assert!(browser.is_selected(&b) && !browser.is_selected(&a));
    assert_eq!(browser.attribute(&b, "value").as_deref(), Some("b"));
    browser.select("select[name=action]", "drain");
    let note = browser.find("#note");
    browser.send_keys(&note, "hello world");
    assert_eq!(browser.property(&note, "value"), "hello world");
    browser.click_to_navigate(&browser.find("#apply"));

    // The POST answered 303 to a GET that shows what was posted.
    let result = browser.find("#result");
    assert_eq!(
        browser.text(&result),
        "token=t0k3n&s=b&note=hello+world&action=drain"
    );
    assert!(browser.current_url().ends_with("/form?done"));
    assert_eq!(
        browser.execute("return document.title + arguments[0]", &["!".into()]),
        "webdriver check!"
    );
    // Chromium does not send URL credentials preemptively on the POST: it answers the 401
    // challenge from its auth cache and posts again, with the session cookie.
    let posts: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "POST")
        .cloned()
        .collect();
    let post = posts.iter().find(|r| r.authorized).unwrap_or_else(|| {
        panic!("the form was posted with the credentials: {posts:?}");
    });
    assert_eq!(post.target, "/form");
    assert_eq!(post.cookie.as_deref(), Some("sid=abc"), "{post:?}");

    let png = save(&browser, "webdriver_client.png");
    assert!(png.len() > 100 && png.starts_with(PNG_SIGNATURE));
}

/// A request the form server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorized: bool,
    cookie: Option<String>,
}

/// A tiny HTTP/1.1 server with one page behind basic auth (`user:pw`): `GET /form` shows a form
/// with checkboxes, a select, a text input and a hidden token, sets a session cookie; `POST /form`
/// answers 303 to `/form?done`, which shows the last posted body in `#result`.
async fn form_server() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let posted = Arc::new(Mutex::new(String::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, posted) = (Arc::clone(&log), Arc::clone(&posted));
            tokio::spawn(async move {
                let _ = serve_form(stream, &log, &posted).await;
            });
        }
    });
    (addr, seen)
}

async fn serve_form(
    mut stream: TcpStream,
    log: &Mutex<Vec<Seen>>,
    posted: &Mutex<String>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        request_line.next().unwrap_or_default().to_owned(),
        request_line.next().unwrap_or_default().to_owned(),
    );
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
    // "user:pw" in base64.
    let authorized = header("authorization").as_deref() == Some("Basic dXNlcjpwdw==");
    log.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        authorized,
        cookie: header("cookie"),
    });
    let response = if !authorized {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n"
            .to_owned()
    } else if method == "POST" && target == "/form" {
        *posted.lock().unwrap() = body;
        "HTTP/1.1 303 See Other\r\nLocation: /form?done\r\nContent-Length: 0\r\n".to_owned()
    } else if method == "GET" && target.starts_with("/form") {
        let result = if target == "/form?done" {
            let posted = posted
                .lock()
                .unwrap()
                .replace('&', "&amp;")
                .replace('<', "&lt;");
            format!("<p id=\"result\">{posted}</p>")
        } else {
            String::new()
        };
        let page = FORM_PAGE.replace("RESULT", &result);
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
             Set-Cookie: sid=abc; Path=/; HttpOnly; SameSite=Strict\r\n\
             Content-Length: {}\r\n\r\n{page}",
            page.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n".to_owned()
    };
    let response = if response.contains("\r\n\r\n") {
        response.replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
    } else {
        format!("{response}Connection: close\r\n\r\n")
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>webdriver check</title></head>
<body>
<h1 id="title">A form</h1>
<form method="post" action="/form">
<input type="hidden" name="token" value="t0k3n">
<label><input type="checkbox" name="s" value="a" id="cb-a"> a</label>
<label><input type="checkbox" name="s" value="b" id="cb-b"> b</label>
<input type="text" name="note" id="note">
<select name="action">
<option value="">Choose an action</option>
<option value="ready">ready</option>
<option value="drain">drain</option>
<option value="maint">maint</option>
</select>
<button type="submit" id="apply">Apply</button>
</form>
RESULT
</body></html>
"#;
