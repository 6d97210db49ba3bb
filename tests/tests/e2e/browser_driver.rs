//! A small W3C WebDriver client over reqwest, driving Debian's `chromedriver` and headless
//! Chromium: enough to sign in, fill forms, click, read the page, run a script and take
//! screenshots. No browser automation crate is needed: WebDriver is JSON over HTTP.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{POLL, ProcessGuard};

/// How long chromedriver may take to say it is listening.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one WebDriver command may take (page loads included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium binary chromedriver starts (Debian's wrapper script sets flags we pass ourselves).
fn chromium_binary() -> Option<PathBuf> {
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// A running chromedriver on a free loopback port.
pub struct Chromedriver {
    _process: ProcessGuard,
    url: String,
    chromium: PathBuf,
}

impl Chromedriver {
    /// Starts chromedriver, or `None` (after saying why) when it or Chromium is not installed and
    /// `SHADOWAI_REQUIRE_BROWSER=1` is not set (scripts/test.sh sets it).
    pub async fn start() -> Option<Chromedriver> {
        let chromium = chromium_binary();
        let has_driver = std::path::Path::new("/usr/bin/chromedriver").is_file();
        let (Some(chromium), true) = (chromium, has_driver) else {
            let required = std::env::var_os("SHADOWAI_REQUIRE_BROWSER").is_some_and(|v| v == "1");
            assert!(
                !required,
                "SHADOWAI_REQUIRE_BROWSER=1 but chromium or chromedriver is not installed \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped: chromium and chromium-driver are not installed");
            return None;
        };
        let process = ProcessGuard::spawn(
            "chromedriver",
            Command::new("/usr/bin/chromedriver").arg("--port=0"),
        );
        let deadline = Instant::now() + DRIVER_TIMEOUT;
        let port = loop {
            let port = process.stdout_lines().iter().find_map(|line| {
                line.split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
            });
            if let Some(port) = port {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        };
        Some(Chromedriver {
            _process: process,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
        })
    }
}

/// One browser session (a fresh profile: no cookies, no cache).
pub struct Browser {
    client: reqwest::Client,
    session: String,
}

impl Browser {
    pub async fn new(driver: &Chromedriver) -> Browser {
        let client = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("http client");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": driver.chromium.to_string_lossy(),
                // --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                         "--disable-background-networking"],
            },
        }}});
        let answer = send(
            &client,
            reqwest::Method::POST,
            &format!("{}/session", driver.url),
            Some(&capabilities),
        )
        .await;
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {answer}"))
            .to_owned();
        Browser {
            client,
            session: format!("{}/session/{id}", driver.url),
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        send(
            &self.client,
            method,
            &format!("{}{path}", self.session),
            body,
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(&body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    /// Loads `url` and waits for it (WebDriver waits for the load event).
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Ids of the elements matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .map(|elements| elements.iter().filter_map(element_id).collect())
            .unwrap_or_default()
    }

    /// The id of the first element matching `css`; panics (with the page text) when none does.
    pub async fn find(&self, css: &str) -> String {
        match self.find_all(css).await.into_iter().next() {
            Some(id) => id,
            None => panic!(
                "no element matches {css:?} on {}\n{}",
                self.current_url().await,
                self.body_text().await
            ),
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Clicks an element that navigates (a link, a form's submit button) and waits until the next
    /// page has loaded. A WebDriver click does not always wait for the navigation it starts, so
    /// the old document is marked first and the wait ends once a document without the mark is
    /// complete.
    pub async fn click_and_wait(&self, css: &str) {
        self.execute("window.__shadowai_old_page = true;", vec![])
            .await;
        self.click(css).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let state = self
                .execute(
                    "return window.__shadowai_old_page === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await;
            if state == "complete" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "clicking {css} did not load a new page (still {state} at {})",
                self.current_url().await
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Clears a text field and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await;
    }

    /// Chooses the option with `value` in a `<select>`.
    pub async fn select(&self, css: &str, value: &str) {
        let option = format!("{css} option[value=\"{value}\"]");
        self.click(&option).await;
    }

    /// Runs `script` in the page (as a function body) and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// What the page shows as text (`innerText` of the body).
    pub async fn body_text(&self) -> String {
        self.execute(
            "return document.body ? document.body.innerText : '';",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.get(&format!("/element/{id}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A cookie's value (HttpOnly cookies included: WebDriver sees them, page scripts do not).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self.get("/cookie").await;
        cookies.as_array()?.iter().find_map(|cookie| {
            (cookie["name"] == name).then(|| cookie["value"].as_str().unwrap_or("").to_owned())
        })
    }

    pub async fn delete_cookies(&self) {
        self.command(reqwest::Method::DELETE, "/cookie", None).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("screenshot is base64")
    }

    /// Ends the session (the browser exits).
    pub async fn quit(self) {
        let _ = self.client.delete(&self.session).send().await;
    }
}

/// The id inside a WebDriver element reference (`{"element-6066-...": "<id>"}`).
fn element_id(reference: &Value) -> Option<String> {
    reference
        .as_object()?
        .values()
        .next()?
        .as_str()
        .map(str::to_owned)
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Value {
    let mut request = client.request(method.clone(), url);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("webdriver {method} {url}: {e}"));
    let status = response.status();
    let text = response.text().await.expect("webdriver answer");
    let answer: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("webdriver {method} {url} answered non-JSON ({e}): {text}"));
    assert!(
        status.is_success(),
        "webdriver {method} {url} failed with {status}: {text}"
    );
    answer.get("value").cloned().unwrap_or(Value::Null)
}
