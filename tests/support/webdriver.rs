//! A minimal W3C WebDriver client for the browser tests: it starts Debian's `chromedriver` on a
//! free port, opens one headless Chromium session, and speaks the protocol's JSON over blocking
//! HTTP/1.1 (one connection per command). No downloaded browser and no WebDriver crate.
//!
//! Everything it starts (driver, browser, profile dir) is gone when the [`Browser`] is dropped,
//! also when the test panics.

use std::{
    fmt,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{PATIENCE, require_tool};

/// The key W3C WebDriver wraps element references in.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take (a navigation waits for the page load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Chromium's switches: headless, no first-run or background traffic that could reach the network
/// or slow the start, and a window big enough for the stats page's table.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
];

/// A failed WebDriver command: the W3C error code (`no such element`, ...) and its message, or
/// `transport` when chromedriver could not be reached or answered something that is not JSON.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// A reference to an element of the current page (stale once the page changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    id: String,
}

/// A running `chromedriver`; killed on drop.
#[derive(Debug)]
struct Driver {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// One headless Chromium session. Dropping it ends the session (which closes the browser), stops
/// chromedriver and removes the profile dir.
pub struct Browser {
    driver: Driver,
    session: String,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("driver", &self.driver.addr)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. `None`, after saying so, when
    /// chromium or chromedriver is not installed; in CI (`CI` set) that is a failure instead.
    pub fn start() -> Option<Self> {
        // `&` and not `&&`: report both when both are missing.
        if !(require_tool("chromium") & require_tool("chromedriver")) {
            eprintln!(
                "skipped: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let chromium = find_in_path("chromium").expect("`command -v chromium` found it");
        let driver = Driver::start(&find_in_path("chromedriver").expect("found by command -v"));
        let profile = driver.dir.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&a| a.to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 30_000 },
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": args,
                    },
                }
            }
        });
        let created = driver
            .command("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}\n{}", driver.log()));
        let session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session without an id: {created}"))
            .to_owned();
        Some(Self { driver, session })
    }

    /// Sends a raw command on this session: `path` is relative to `/session/{id}`.
    pub fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        self.driver
            .command(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for the page to load.
    pub fn navigate(&self, url: &str) {
        self.run("POST", "/url", Some(&json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        string(self.run("GET", "/url", None))
    }

    pub fn title(&self) -> String {
        string(self.run("GET", "/title", None))
    }

    /// The current page's HTML as the browser has it (after scripts ran).
    pub fn source(&self) -> String {
        string(self.run("GET", "/source", None))
    }

    /// The first element matching the CSS `selector`; panics when there is none.
    pub fn find(&self, selector: &str) -> Element {
        self.try_find(selector).unwrap_or_else(|| {
            panic!(
                "no element matches `{selector}` on {}:\n{}",
                self.current_url(),
                self.source()
            )
        })
    }

    /// The first element matching the CSS `selector`, if any.
    pub fn try_find(&self, selector: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": selector });
        match self.command("POST", "/element", Some(&body)) {
            Ok(found) => Some(element(&found)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{selector}`: {e}"),
        }
    }

    /// The first descendant of `parent` matching the CSS `selector`, if any.
    pub fn find_in(&self, parent: &Element, selector: &str) -> Option<Element> {
        let body = json!({ "using": "css selector", "value": selector });
        match self.command(
            "POST",
            &format!("/element/{}/element", parent.id),
            Some(&body),
        ) {
            Ok(found) => Some(element(&found)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{selector}` in {parent:?}: {e}"),
        }
    }

    /// Clicks `element` (scrolled into view first, as a user would).
    pub fn click(&self, element: &Element) {
        self.run(
            "POST",
            &format!("/element/{}/click", element.id),
            Some(&json!({})),
        );
    }

    /// Clicks `element`, which leads to another page (a link, a form's submit button), and waits
    /// until that page has replaced the current one and loaded. A click alone may return before
    /// the navigation starts, and then the old page would still answer. The old page is told
    /// apart by a mark on its `window`, which a new document does not have; while the pages
    /// change, a command may fail with a transient error, which counts as not there yet.
    pub fn click_to_navigate(&self, element: &Element) {
        self.execute("window.fulcrumOldPage = true;", &[]);
        self.click(element);
        let probe = json!({
            "script": "return window.fulcrumOldPage !== true && document.readyState === 'complete';",
            "args": [],
        });
        self.wait_until("the next page", |b| {
            let loaded = b.command("POST", "/execute/sync", Some(&probe));
            (loaded.ok() == Some(Value::Bool(true))).then_some(())
        });
    }

    /// The rendered text of `element`.
    pub fn text(&self, element: &Element) -> String {
        string(self.run("GET", &format!("/element/{}/text", element.id), None))
    }

    /// `element`'s attribute `name`, as the HTML says it (`None` when absent).
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let value = self.run(
            "GET",
            &format!("/element/{}/attribute/{name}", element.id),
            None,
        );
        value.as_str().map(str::to_owned)
    }

    /// `element`'s DOM property `name` (`value` of an input, `checked` of a checkbox, ...).
    pub fn property(&self, element: &Element, name: &str) -> Value {
        self.run(
            "GET",
            &format!("/element/{}/property/{name}", element.id),
            None,
        )
    }

    /// Whether a checkbox or radio is checked, or an `<option>` selected.
    pub fn is_selected(&self, element: &Element) -> bool {
        self.run("GET", &format!("/element/{}/selected", element.id), None)
            .as_bool()
            .unwrap_or(false)
    }

    /// Types `text` into `element`.
    pub fn send_keys(&self, element: &Element, text: &str) {
        self.run(
            "POST",
            &format!("/element/{}/value", element.id),
            Some(&json!({ "text": text })),
        );
    }

    /// Chooses the `<option value="VALUE">` of the `<select>` matching `select`, by clicking it.
    pub fn select(&self, select: &str, value: &str) {
        let option = self.find(&format!("{select} option[value=\"{value}\"]"));
        self.click(&option);
        assert!(
            self.is_selected(&option),
            "option `{value}` of `{select}` is not selected after a click"
        );
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns what it
    /// returns.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.run(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.run(
            "POST",
            "/goog/cdp/execute",
            Some(&json!({ "cmd": cmd, "params": params })),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let encoded = string(self.run("GET", "/screenshot", None));
        base64_decode(&encoded).unwrap_or_else(|| panic!("screenshot is not base64"))
    }

    /// Polls `probe` until it returns `Some`, failing after `PATIENCE` with `what` and the page.
    pub fn wait_until<T>(&self, what: &str, mut probe: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = probe(self) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} on {}:\n{}",
                self.current_url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command that must succeed.
    fn run(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes the browser; the driver is killed after (Driver's drop).
        let _ = self.command("DELETE", "", None);
    }
}

impl Driver {
    /// Runs `chromedriver --port=0` and waits until it says which port it took and is ready.
    fn start(program: &std::path::Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fulcrum-webdriver-")
            .tempdir()
            .unwrap();
        let child = Command::new(program)
            .arg("--port=0")
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let mut driver = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        // With `--log-path` it says "ChromeDriver was started successfully on port N." there.
        let port = driver.wait_log("its port", |log| {
            log.split("started successfully on port ")
                .nth(1)
                .and_then(|rest| {
                    let digits = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    rest[..digits].parse::<u16>().ok()
                })
        });
        driver.addr.set_port(port);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(status) = driver.command("GET", "/status", None)
                && status["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never became ready\n{}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command and returns its `value`, or the error chromedriver answered.
    fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let transport = |message: String| WebDriverError {
            status: 0,
            error: "transport".to_owned(),
            message,
        };
        let (status, text) = http(self.addr, method, path, body)
            .map_err(|e| transport(format!("{method} {path}: {e}")))?;
        let mut reply: Value = serde_json::from_slice(&text).map_err(|e| {
            transport(format!(
                "{method} {path}: {e}: {}",
                String::from_utf8_lossy(&text)
            ))
        })?;
        let value = reply["value"].take();
        if status == 200 {
            return Ok(value);
        }
        Err(WebDriverError {
            status,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// Polls chromedriver's log until `probe` finds something in it.
    fn wait_log<T>(&mut self, what: &str, probe: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = std::fs::read_to_string(self.dir.path().join("chromedriver.log"))
                .unwrap_or_default();
            if let Some(found) = probe(&log) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before saying {what}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not say {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// chromedriver's log, for failure messages.
    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        // The end says why it failed; the start is mostly the command line.
        let tail = log.len().saturating_sub(8_000);
        let tail = (tail..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(log.len());
        format!("chromedriver log:\n{}", &log[tail..])
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the body. chromedriver keeps the
/// connection open despite `Connection: close`, so the body is read by its length or chunks.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    let mut read_more = |response: &mut Vec<u8>| -> std::io::Result<bool> {
        let mut chunk = [0; 16 * 1024];
        let n = stream.read(&mut chunk)?;
        response.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    let end = loop {
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if !read_more(&mut response)? {
            return Err(invalid("closed before the end of the head"));
        }
    };
    let head = std::str::from_utf8(&response[..end])
        .map_err(|_| invalid("head not UTF-8"))?
        .to_owned();
    let (status, headers) = super::parse_head(&head);
    if status == 0 {
        return Err(invalid("no status"));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|values| values.first())
            .map(|v| v.to_ascii_lowercase())
    };
    let start = end + 4;
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&response[start..]) {
                return Ok((status, body));
            }
            if !read_more(&mut response)? {
                return Err(invalid("closed inside a chunked body"));
            }
        }
    }
    match header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(length)) => {
            while response.len() < start + length {
                if !read_more(&mut response)? {
                    return Err(invalid("closed inside the body"));
                }
            }
            Ok((status, response[start..start + length].to_vec()))
        }
        Some(Err(_)) => Err(invalid("bad content-length")),
        None => {
            while read_more(&mut response)? {}
            Ok((status, response[start..].to_vec()))
        }
    }
}

/// Decodes a complete `Transfer-Encoding: chunked` body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The element reference in a find command's answer.
fn element(found: &Value) -> Element {
    Element {
        id: found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {found}"))
            .to_owned(),
    }
}

/// A command's value that must be a string.
fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("expected a string, got {other}"),
    }
}

/// Where `program` is on `PATH`.
fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Decodes standard base64 (RFC 4648 §4, padding optional, whitespace ignored), the way
/// screenshots arrive.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::{
        Engine as _,
        alphabet::STANDARD,
        engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    };
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: String = text.split_ascii_whitespace().collect();
    LENIENT.decode(compact).ok()
}

/// The eight bytes every PNG file starts with.
pub const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Where a test saves files worth looking at after the run (screenshots): the target dir's
/// `test-artifacts/TEST/NAME` (`CARGO_TARGET_DIR`, else the workspace's `target`).
pub fn artifact_path(test: &str, name: &str) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| manifest.join(d))
        .unwrap_or_else(|| manifest.join("target"));
    let dir = target.join("test-artifacts").join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
