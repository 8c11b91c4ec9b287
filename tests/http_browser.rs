//! The HTML pages in a real headless Chromium, driven over the W3C WebDriver protocol
//! (`chromedriver`): the list of tables, a table page, a pagination link, the lookup form, and
//! escaping of a key full of markup. A screenshot of the table page is kept in
//! `target/test-artifacts/http-table.png`.
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// A key that is markup: it must show as text, never as elements.
const MARKUP_KEY: &str = "<b id=\"injected\">bold</b> & \"quoted\"";

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    client: reqwest::blocking::Client,
}

impl Driver {
    fn start() -> Driver {
        for tool in ["chromedriver", "chromium"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "`{tool}` is not installed: run scripts/test, which installs chromium and chromium-driver"
            );
        }
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        };
        wait_for("chromedriver to be ready", Duration::from_secs(30), || {
            let status = driver.client.get(format!("{}/status", driver.url)).send();
            let body: Value = status.ok()?.json().ok()?;
            body["value"]["ready"].as_bool()?.then_some(())
        });
        driver
    }

    /// A WebDriver command: `value` of the answer, panicking on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let request = match method {
            "GET" => self.client.get(&url),
            "DELETE" => self.client.delete(&url),
            _ => self.client.post(&url).json(&body.unwrap_or(json!({}))),
        };
        let answer: Value = request
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            answer["value"]["error"].is_null(),
            "{method} {path}: {answer}"
        );
        answer["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session.
struct Session<'d> {
    driver: &'d Driver,
    id: String,
}

impl<'d> Session<'d> {
    fn new(driver: &'d Driver) -> Session<'d> {
        let chromium = Command::new("sh")
            .args(["-c", "command -v chromium"])
            .output()
            .expect("finding chromium");
        let chromium = String::from_utf8_lossy(&chromium.stdout).trim().to_string();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,900"],
            },
        }}});
        let value = driver.call("POST", "/session", Some(capabilities));
        let id = value["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Session { driver, id }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_string()
    }

    /// The ids of the elements matching a CSS selector.
    fn all(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// The one element matching a CSS selector.
    fn one(&self, css: &str) -> String {
        let all = self.all(css);
        assert_eq!(all.len(), 1, "`{css}` matches {} elements", all.len());
        all[0].clone()
    }

    fn text(&self, css: &str) -> String {
        let element = self.one(css);
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, css: &str) {
        let element = self.one(css);
        self.call("POST", &format!("/element/{element}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.one(css);
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Waits until the page's `#position` (or another element) shows `text`.
    fn wait_text(&self, css: &str, text: &str) {
        wait_for(
            &format!("`{css}` to show `{text}`"),
            Duration::from_secs(20),
            || (self.all(css).len() == 1 && self.text(css).contains(text)).then_some(()),
        );
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .expect("a base64 screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .client
            .delete(format!("{}/session/{}", self.driver.url, self.id))
            .send();
    }
}

#[test]
fn a_person_can_browse_page_and_look_up_in_chromium() {
    let driver = Driver::start();
    let input = unique("browser-orders");
    create_topic(&input, 4);
    let mut amounts: Vec<(String, i64)> = (0..250)
        .map(|i| (format!("account-{i:03}"), i as i64 + 1))
        .collect();
    amounts.push((MARKUP_KEY.to_string(), 42));
    let (running, base) = start_filled_totals_app(&input, &amounts);

    let session = Session::new(&driver);
    // The list of tables links to the table.
    session.open(&format!("{base}/api/table/"));
    assert_eq!(session.text("#tables"), "totals");
    session.click("a.table");
    session.wait_text("#position", "Page 1 · 251 entries");
    assert!(
        session.url().ends_with("/api/table/totals/"),
        "{}",
        session.url()
    );
    let rows = session.all("#entries tbody tr");
    assert_eq!(rows.len(), 100);
    assert_eq!(
        session.all("#previous").len(),
        0,
        "page 1 has no previous page"
    );
    // The markup key sorts first ('<' < 'a') and shows as text, not as elements.
    assert_eq!(
        session.text("#entries tbody tr:first-child td.key"),
        MARKUP_KEY
    );
    assert!(session.all("#injected").is_empty(), "a key became markup");
    let screenshot = session.screenshot("http-table.png");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    // Follow the pagination link.
    session.click("#next");
    session.wait_text("#position", "Page 2");
    assert!(session.url().contains("page=2"), "{}", session.url());
    assert_eq!(
        session.text("#entries tbody tr:first-child td.key"),
        "account-099"
    );
    session.click("#next");
    session.wait_text("#position", "Page 3");
    assert_eq!(session.all("#entries tbody tr").len(), 51);
    assert_eq!(
        session.all("#next").len(),
        0,
        "the last page has no next page"
    );
    session.click("#previous");
    session.wait_text("#position", "Page 2");

    // The lookup form, with an ordinary key and with the markup key.
    session.type_into("#key", "account-007");
    session.click("#lookup-submit");
    session.wait_text("#key-name", "account-007");
    assert_eq!(session.text("#value"), "8");
    session.type_into("#key", MARKUP_KEY);
    session.click("#lookup-submit");
    session.wait_text("#key-name", "bold");
    assert_eq!(session.text("#key-name"), MARKUP_KEY);
    assert_eq!(session.text("#value"), "42");
    assert!(session.all("#injected").is_empty(), "a key became markup");
    session.screenshot("http-key.png");

    // An unknown key is a readable error page.
    session.type_into("#key", "nobody");
    session.click("#lookup-submit");
    session.wait_text("#error", "no key `nobody`");
    drop(session);
    running.shutdown().expect("a clean stop");
}
