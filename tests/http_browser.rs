//! The HTML pages in a real headless Chromium, driven with [thirtyfour] (a W3C WebDriver client)
//! through `chromedriver`: the list of tables, a table page, a pagination link, the lookup form,
//! and escaping of a key full of markup. Screenshots of a table page and of a key page are kept in
//! `target/test-artifacts/http-table.png` and `http-key.png`.
//!
//! A click or a form returns before the browser has replaced the page, so nothing is read right
//! after one: every page is first proven by [`Browser::arrive`], which waits (at most [`WAIT`])
//! until the URL is the expected one (its path, and its query decoded), the document has loaded
//! and will not reload itself, and one element shows a text that the page before never showed.
//! That wait is thirtyfour's `ElementQuery`, with the URL as one more filter and errors counted
//! as "not yet": an element that goes stale while the browser navigates is looked up again, not
//! a failure. Reads go through the [`Page`] that `arrive` returns, and following a link consumes
//! that `Page`, so a read cannot reach a page that is not proven yet. thirtyfour's
//! `run_and_quit` closes the browser session even when a step fails.
//!
//! The overview page (`/`) draws its charts with its own script, from JSON it polls: its test
//! waits (at most [`WAIT`]) until the script says it drew them with data, then reads the page,
//! and keeps a screenshot at 1280×800 in `target/test-artifacts/overview.png`.
//!
//! The workflows page (`/api/workflows/`) reloads itself every 5 s: its test waits (at most
//! [`WAIT`]) until a script reading the chord's row in one go sees the counts it expects, shows
//! the chord in progress (two members done, one failed, one held back by the test) with its
//! deadline, keeps a screenshot in `target/test-artifacts/workflows.png`, lets the last member
//! answer, and waits until the callback has the chord's result and the page no longer lists it.
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver`.

mod browser;
mod common;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::Chromedriver;
use common::*;
use faustus::prelude::{App, Topic};
use serde_json::Value;
use thirtyfour::extensions::query::{ElementPollerWithTimeout, IntoElementPoller};
use thirtyfour::prelude::*;
use thirtyfour::stringmatch::StringMatch;
use tokio::sync::Semaphore;

/// A key that is markup: it must show as text, never as elements.
const MARKUP_KEY: &str = "<b id=\"injected\">bold</b> & \"quoted\"";

/// How long a step waits for the page it expects.
const WAIT: Duration = Duration::from_secs(30);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// What proves that the browser shows the page a step expects. `text` must be something the
/// page before never showed, so that finding it proves the navigation is over.
#[derive(Clone)]
struct Expect {
    /// The URL's path ends with this.
    path: &'static str,
    /// A parameter the URL's query has (decoded); `None`: the URL has no query at all.
    query: Option<(&'static str, String)>,
    /// The one element that shows `text`, as a part of its text.
    css: &'static str,
    text: String,
}

impl Expect {
    /// The list of tables.
    fn tables() -> Expect {
        Expect {
            path: "/api/table/",
            query: None,
            css: "h1",
            text: "Tables".into(),
        }
    }

    /// Page `number` of table `totals`, whose `#position` shows `position`.
    fn table(number: u64, position: &str) -> Expect {
        Expect {
            path: "/api/table/totals/",
            query: (number > 1).then(|| ("page", number.to_string())),
            css: "#position",
            text: position.into(),
        }
    }

    /// The lookup of `key` in table `totals`: `css` shows `text`.
    fn lookup(key: &str, css: &'static str, text: &str) -> Expect {
        Expect {
            path: "/api/table/totals/",
            query: Some(("key", key.into())),
            css,
            text: text.into(),
        }
    }

    /// Whether the document of `element` has the expected URL, is loaded, and will not reload
    /// itself (a `<meta http-equiv="refresh">`, as a page about a table that is not ready yet
    /// may have): a page that passes stays as it is until the test leaves it.
    async fn has_url_of(&self, element: &WebElement) -> WebDriverResult<bool> {
        let url = element.handle().current_url().await?;
        let url_is = url.path().ends_with(self.path)
            && match &self.query {
                None => url.query().is_none(),
                Some((name, value)) => url.query_pairs().any(|(n, v)| n == *name && v == *value),
            };
        let settled = element
            .handle()
            .execute(
                r#"return document.readyState === "complete"
                    && !document.querySelector('meta[http-equiv="refresh" i]');"#,
                Vec::new(),
            )
            .await?;
        Ok(url_is && settled.json() == &Value::Bool(true))
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a page at `…{}`", self.path)?;
        match &self.query {
            None => write!(f, " without a query")?,
            Some((name, value)) => write!(f, " with {name}={value:?}")?,
        }
        write!(f, " whose `{}` shows {:?}", self.css, self.text)
    }
}

/// A Chromium session, for the test's steps.
struct Browser {
    driver: WebDriver,
}

impl Browser {
    /// Makes the page's viewport `width`×`height` CSS pixels at a scale of 1, and waits until the
    /// page reports it.
    ///
    /// The size is set through Chromium's DevTools (`Emulation.setDeviceMetricsOverride`), not by
    /// sizing the window: a window's frame and the moment its new size reaches the page both
    /// vary, and the override holds for every page the session opens after it.
    async fn viewport(&self, width: u32, height: u32) {
        self.driver
            .cdp()
            .send_raw(
                "Emulation.setDeviceMetricsOverride",
                serde_json::json!({
                    "width": width,
                    "height": height,
                    "deviceScaleFactor": 1,
                    "mobile": false,
                }),
            )
            .await
            .expect("overriding the viewport");
        // The size itself when it is not the one asked for, for the failure's message.
        self.wait_script(
            &format!("a viewport of {width}×{height}"),
            &format!(
                "return (window.innerWidth === {width} && window.innerHeight === {height}) \
                 || [window.innerWidth, window.innerHeight];"
            ),
        )
        .await;
    }

    /// Waits (at most [`WAIT`]) until `script` returns `true` in the current page; `what` says
    /// what it waits for.
    async fn wait_script(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = self.driver.execute(script, Vec::new()).await;
            match &answer {
                Ok(ret) if ret.json() == &Value::Bool(true) => return,
                _ if Instant::now() >= deadline => panic!("waited {WAIT:?} for {what}: {answer:?}"),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Opens `url`, and waits for the page `expect` describes.
    async fn open(&self, url: &str, expect: Expect) -> Page<'_> {
        self.driver
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        self.arrive(expect).await
    }

    /// Waits until the browser shows the page `expect` describes, and returns it to read.
    ///
    /// Each look is one pass of a thirtyfour query: exactly one `expect.css` that shows
    /// `expect.text` and whose document is loaded at the expected URL. A look that fails in any
    /// way (an element gone stale because the page was replaced meanwhile, a document not loaded
    /// yet, a WebDriver error during the navigation) only means "not yet": thirtyfour's poller
    /// looks again every [`POLL`], for at most [`WAIT`].
    async fn arrive(&self, expect: Expect) -> Page<'_> {
        let wanted = Arc::new(expect.clone());
        let mut poller = ElementPollerWithTimeout::new(WAIT, POLL).start();
        loop {
            let wanted = Arc::clone(&wanted);
            let look = self
                .driver
                .query(By::Css(expect.css))
                .nowait()
                .ignore_errors(true)
                .with_text(StringMatch::new(expect.text.clone()).partial())
                .with_filter(move |element: WebElement| {
                    let wanted = Arc::clone(&wanted);
                    async move { Ok(wanted.has_url_of(&element).await.unwrap_or(false)) }
                })
                .single()
                .await;
            match look {
                Ok(_) => break,
                Err(e) if !poller.tick().await => panic!(
                    "waited {WAIT:?} for {expect}: {e}\nthe browser shows {}",
                    self.describe(expect.css).await
                ),
                Err(_) => {}
            }
        }
        Page {
            browser: self,
            expect,
        }
    }

    /// What the browser shows now, for a failed wait: its URL and the texts of `css`.
    async fn describe(&self, css: &str) -> String {
        let url = match self.driver.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(no URL: {e})"),
        };
        let mut texts = Vec::new();
        for element in self.driver.find_all(By::Css(css)).await.unwrap_or_default() {
            texts.push(element.text().await.unwrap_or_else(|e| format!("({e})")));
        }
        format!("{url} where `{css}` shows {texts:?}")
    }
}

/// A page [`Browser::arrive`] proved the browser shows. It does not change until a link is
/// followed or a form submitted, which consumes it: reads need no waits of their own.
struct Page<'b> {
    browser: &'b Browser,
    expect: Expect,
}

impl Page<'_> {
    fn driver(&self) -> &WebDriver {
        &self.browser.driver
    }

    async fn url(&self) -> String {
        self.driver()
            .current_url()
            .await
            .expect("the URL")
            .to_string()
    }

    /// The elements matching a CSS selector.
    async fn all(&self, css: &str) -> Vec<WebElement> {
        self.driver()
            .find_all(By::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}` on {}: {e}", self.expect))
    }

    /// The one element matching a CSS selector.
    async fn one(&self, css: &str) -> WebElement {
        let mut all = self.all(css).await;
        assert_eq!(all.len(), 1, "`{css}` matches {} elements", all.len());
        all.remove(0)
    }

    async fn text(&self, css: &str) -> String {
        self.one(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("the text of `{css}` on {}: {e}", self.expect))
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.one(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}` on {}: {e}", self.expect));
    }

    /// Clicks a link or a button that leaves this page.
    async fn click(self, css: &str) {
        self.one(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{css}` on {}: {e}", self.expect));
    }

    /// The texts of every element matching a CSS selector, read in one script: a page that
    /// redraws itself cannot replace an element between finding it and reading it.
    async fn texts_now(&self, css: &str) -> Vec<String> {
        let texts = self
            .driver()
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim());",
                vec![Value::String(css.to_string())],
            )
            .await
            .unwrap_or_else(|e| panic!("reading `{css}` on {}: {e}", self.expect));
        serde_json::from_value(texts.json().clone()).expect("texts")
    }

    /// The text of the one element matching a CSS selector, read in one script.
    async fn text_now(&self, css: &str) -> String {
        let mut texts = self.texts_now(css).await;
        assert_eq!(texts.len(), 1, "`{css}` matches {texts:?}");
        texts.remove(0)
    }

    /// Waits (at most [`WAIT`]) until `script` returns `true` in the page; `what` says what it
    /// waits for.
    async fn wait_script(&self, what: &str, script: &str) {
        self.browser
            .wait_script(&format!("{what} on {}", self.expect), script)
            .await;
    }

    /// A screenshot, checked to be a PNG that is not empty, kept in `target/test-artifacts`.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let bytes = self
            .driver()
            .screenshot_as_png()
            .await
            .expect("a screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 1000, "{} has only {size} bytes", path.display());
        path
    }
}

#[test]
fn a_person_can_browse_page_and_look_up_in_chromium() {
    let chromedriver = Chromedriver::start();
    let input = unique("browser-orders");
    create_topic(&input, 4);
    let mut amounts: Vec<(String, i64)> = (0..250)
        .map(|i| (format!("account-{i:03}"), i as i64 + 1))
        .collect();
    amounts.push((MARKUP_KEY.to_string(), 42));
    let (running, base) = start_filled_totals_app(&input, &amounts);

    // The browser is async; the app and chromedriver (whose helpers and drops block) stay
    // outside the runtime.
    let runtime = runtime();
    runtime.block_on(browse(&chromedriver, &base));
    drop(runtime);
    running.shutdown().expect("a clean stop");
}

/// Runs the [`steps`] in a Chromium session. `run_and_quit` closes the session whether they
/// pass or panic (and then panics on), so that no Chromium outlives the test.
async fn browse(chromedriver: &Chromedriver, base: &str) {
    chromedriver
        .session(1100, 900)
        .await
        .run_and_quit(|driver| async move {
            steps(&Browser { driver }, base).await;
            Ok::<(), WebDriverError>(())
        })
        .await
        .expect("closing the session");
}

/// What a person does in the browser, and what they must see.
async fn steps(browser: &Browser, base: &str) {
    // The list of tables links to the table.
    let tables = browser
        .open(&format!("{base}/api/table/"), Expect::tables())
        .await;
    // One table, `totals` (the entry may say more about the table after its link).
    assert_eq!(tables.all("#tables li").await.len(), 1);
    assert_eq!(tables.text("#tables li a.table").await, "totals");
    // The filled table is restored and serving: its state says so.
    assert_eq!(tables.text("#tables li .state").await, "ready");
    tables.click("a.table").await;
    let page = browser
        .arrive(Expect::table(1, "Page 1 · 251 entries"))
        .await;
    let url = page.url().await;
    assert!(url.ends_with("/api/table/totals/"), "{url}");
    assert_eq!(page.all("#entries tbody tr").await.len(), 100);
    assert_eq!(
        page.all("#previous").await.len(),
        0,
        "page 1 has no previous page"
    );
    // The markup key sorts first ('<' < 'a') and shows as text, not as elements.
    assert_eq!(
        page.text("#entries tbody tr:first-child td.key").await,
        MARKUP_KEY
    );
    assert!(
        page.all("#injected").await.is_empty(),
        "a key became markup"
    );
    page.screenshot("http-table.png").await;

    // Follow the pagination links.
    page.click("#next").await;
    let page = browser.arrive(Expect::table(2, "Page 2")).await;
    let url = page.url().await;
    assert!(url.contains("page=2"), "{url}");
    assert_eq!(
        page.text("#entries tbody tr:first-child td.key").await,
        "account-099"
    );
    page.click("#next").await;
    let page = browser.arrive(Expect::table(3, "Page 3")).await;
    assert_eq!(page.all("#entries tbody tr").await.len(), 51);
    assert_eq!(
        page.all("#next").await.len(),
        0,
        "the last page has no next page"
    );
    page.click("#previous").await;
    let page = browser.arrive(Expect::table(2, "Page 2")).await;

    // The lookup form, with an ordinary key and with the markup key.
    page.type_into("#key", "account-007").await;
    page.click("#lookup-submit").await;
    let page = browser
        .arrive(Expect::lookup("account-007", "#key-name", "account-007"))
        .await;
    assert_eq!(page.text("#value").await, "8");
    page.type_into("#key", MARKUP_KEY).await;
    page.click("#lookup-submit").await;
    let page = browser
        .arrive(Expect::lookup(MARKUP_KEY, "#key-name", "bold"))
        .await;
    assert_eq!(page.text("#key-name").await, MARKUP_KEY);
    assert_eq!(page.text("#value").await, "42");
    assert!(
        page.all("#injected").await.is_empty(),
        "a key became markup"
    );
    page.screenshot("http-key.png").await;

    // An unknown key is a readable error page.
    page.type_into("#key", "nobody").await;
    page.click("#lookup-submit").await;
    browser
        .arrive(Expect::lookup("nobody", "#error", "no key `nobody`"))
        .await;
}

#[test]
fn the_overview_page_draws_live_charts_and_shows_tables_and_dead_letters() {
    let chromedriver = Chromedriver::start();
    let input = unique("overview-orders");
    create_topic(&input, 2);
    let amounts: Vec<(String, i64)> = (0..50)
        .map(|i| (format!("account-{i:03}"), i as i64 + 1))
        .collect();
    let (running, base) = start_filled_totals_app(&input, &amounts);
    // A program asking `/` gets an index that names the application.
    let (status, index) = http_get(&format!("{base}/"));
    assert_eq!(status, 200, "{index}");
    let app = index["app"]
        .as_str()
        .expect("the index names the app")
        .to_string();
    assert_eq!(index["endpoints"]["overview"], "/api/overview/", "{index}");

    // A value that is not a number does not decode: a dead letter, whose reason the page
    // must show as the dead-letter topic has it.
    produce(
        &input,
        &[(
            Some(b"account-bad".to_vec()),
            Some(b"not a number".to_vec()),
        )],
    );
    let dead_letters = faustus::dead_letter::topic(&app);
    let reason = wait_for("the dead letter", Duration::from_secs(120), || {
        read_all(&dead_letters)
            .into_iter()
            .find_map(|r| r.headers.get(faustus::dead_letter::REASON).cloned())
    });

    // Input keeps flowing while the browser watches (the same keys: the table keeps 50).
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, input) = (Arc::clone(&stop), input.clone());
        std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<(String, i64)> = (0..20)
                    .map(|i| (format!("account-{:03}", (round * 20 + i) % 50), 1))
                    .collect();
                produce(&input, &amount_records(&batch));
                round += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let runtime = runtime();
    runtime.block_on(async {
        chromedriver
            .session(1280, 800)
            .await
            .run_and_quit(|driver| async move {
                overview_steps(&Browser { driver }, &base, &app, &input, &reason).await;
                Ok::<(), WebDriverError>(())
            })
            .await
            .expect("closing the session");
    });
    drop(runtime);
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("the feeder");
    running.shutdown().expect("a clean stop");
}

/// What an operator sees on the overview page, at 1280×800.
async fn overview_steps(browser: &Browser, base: &str, app: &str, input: &str, reason: &str) {
    browser.viewport(1280, 800).await;
    let page = browser
        .open(
            &format!("{base}/"),
            Expect {
                path: "/",
                query: None,
                css: "#app-id",
                text: app.to_string(),
            },
        )
        .await;
    assert_eq!(page.text_now("#app-id").await, app);
    // The charts are drawn from at least two rates (three samples, two seconds apart), and
    // the input that flows shows as records read per second.
    page.wait_script(
        "the charts drawn with data and records read per second",
        r##"const points = id => Number(document.getElementById(id).getAttribute("data-points"));
           return points("chart-throughput") >= 2 && points("chart-lag") >= 2
               && points("chart-events") >= 2
               && document.querySelectorAll("#chart-throughput polyline").length === 2
               && parseFloat(document.getElementById("tile-read").textContent) > 0;"##,
    )
    .await;
    let read = page.text_now("#tile-read-total").await;
    let total: u64 = read
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("the records read, `{read}`: {e}"));
    assert!(total >= 51, "the app read the 51 records before: {read}");
    assert_eq!(page.text_now("#app-state").await, "ready");
    assert!(page
        .text_now("#fact-guarantee")
        .await
        .contains("exactly-once"));

    // The partitions: both of the input topic, each owned by a worker, with a known lag.
    let partitions = page.texts_now("#partitions tbody tr").await;
    assert_eq!(
        partitions.len(),
        2,
        "the input's two partitions: {partitions:?}"
    );
    for row in &partitions {
        assert!(row.starts_with(input), "{row}");
    }

    // The dead letter, newest first, with the reason the dead-letter topic has.
    page.wait_script(
        "the dead letter's row",
        "return document.querySelectorAll('#dead-letters tbody tr').length >= 1;",
    )
    .await;
    assert_eq!(
        page.text_now("#dead-letters tbody tr:first-child td.reason")
            .await,
        reason
    );
    let from = page
        .text("#dead-letters tbody tr:first-child td:nth-child(3)")
        .await;
    assert!(from.starts_with(input), "{from}");
    assert_eq!(
        page.text_now("#dead-letters tbody tr:first-child .badge")
            .await,
        "decode"
    );

    // The table, ready, with its entries.
    assert_eq!(page.texts_now("#tables tbody tr").await.len(), 1);
    assert_eq!(page.text_now("#tables a.table").await, "totals");
    assert_eq!(
        page.text_now("#tables tbody tr td:nth-child(2)").await,
        "ready"
    );
    assert_eq!(
        page.text_now("#tables tbody tr td:nth-child(3)").await,
        "50"
    );
    // A screenshot worth keeping: charts with a few more samples.
    page.wait_script(
        "six rates in the throughput chart",
        r#"return Number(document.getElementById("chart-throughput").getAttribute("data-points")) >= 6;"#,
    )
    .await;
    let shot = page.screenshot("overview.png").await;
    eprintln!("the overview: {}", shot.display());

    // A backlog: records held in an open transaction cannot be read, but count as lag. The
    // page shows the catch-up as a bar with its figures, and drops it once caught up.
    let held: Vec<(String, i64)> = (0..12_000)
        .map(|i| (format!("account-{:03}", i % 50), 1))
        .collect();
    let holder = hold_transaction(input, &amount_records(&held));
    // Under load the app may be behind the feeder already: a bar for that smaller backlog is
    // not yet the one of the held records.
    page.wait_script(
        "the catch-up's bar with the held records",
        r#"const card = document.getElementById("catch-up-0");
           return card !== null && !document.getElementById("progress").hidden
               && card.textContent.includes("input records behind")
               && card.querySelector(".detail").textContent.includes(" of 12,");"#,
    )
    .await;
    let shown = page.text_now("#catch-up-0 .detail").await;
    assert!(
        shown.contains(" of 12,"),
        "the held records are the backlog: {shown}"
    );
    let shot = page.screenshot("overview-catch-up.png").await;
    eprintln!("the overview catching up: {}", shot.display());
    {
        use rdkafka::producer::Producer;
        holder
            .commit_transaction(Duration::from_secs(30))
            .expect("the held transaction commits");
    }
    page.wait_script(
        "the catch-up's end",
        r#"return document.getElementById("progress").hidden
               && document.getElementById("catch-up-0") === null;"#,
    )
    .await;

    // Its link opens the table's page.
    page.click("#tables a.table").await;
    browser
        .arrive(Expect::table(1, "Page 1 · 50 entries"))
        .await;
}

#[test]
fn the_workflows_page_shows_a_chord_in_progress_until_it_completes() {
    use faustus::agent::{Agent, Event, HandlerError, Retry};
    use faustus::workflow::{Chord, ChordResult};

    let chromedriver = Chromedriver::start();
    let work = Topic::<String, i64>::new(unique("browser-work")).partitions(2);
    let held = Topic::<String, i64>::new(unique("browser-held")).partitions(1);
    let results = Topic::<String, ChordResult>::new(unique("browser-chord-results"));
    create_topic(results.name(), 1);
    // `work` answers ten times its value and fails on 13; `held` answers once the test lets it.
    let gate = Arc::new(Semaphore::new(0));
    let worker = Agent::new("work", &work)
        .retry(Retry {
            retries: 0,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        })
        .handler(|event: Event<String, i64>| async move {
            if event.value() == 13 {
                return Err(HandlerError::new("13 is unlucky"));
            }
            event.reply(&(event.value() * 10))?;
            Ok(())
        });
    let holder = {
        let gate = Arc::clone(&gate);
        Agent::new("held", &held)
            .timeout(Duration::from_secs(600))
            .handler(move |event: Event<String, i64>| {
                let gate = Arc::clone(&gate);
                async move {
                    let _permit = gate
                        .acquire()
                        .await
                        .map_err(|e| HandlerError::new(e.to_string()))?;
                    event.reply(&event.value())?;
                    Ok(())
                }
            })
    };
    let running = App::new(unique("browser-wf"))
        .brokers(brokers())
        .http(Some(([127, 0, 0, 1], 0).into()))
        .guarantee(faustus::Guarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(100))
        .chords()
        .agent(worker)
        .agent(holder)
        .start(|_df| {})
        .expect("the app starts");
    let base = format!("http://{}", running.http_addr().expect("an HTTP address"));
    let chord = [1, 2, 13]
        .into_iter()
        .fold(Chord::new("nightly-report"), |c, v| {
            c.member(&work, &format!("part-{v}"), &v).expect("a member")
        })
        .member(&held, &"slow-part".to_string(), &7)
        .expect("a member")
        .deadline(Duration::from_secs(3600))
        .callback(&results);
    let workflows = running.workflows().expect("workflows");

    let runtime = runtime();
    runtime
        .block_on(workflows.start_chord(&chord))
        .expect("the chord starts");
    runtime.block_on(async {
        chromedriver
            .session(1100, 700)
            .await
            .run_and_quit(|driver| async move {
                let browser = Browser { driver };
                workflows_steps(&browser, &base, &gate, results.name()).await;
                Ok::<(), WebDriverError>(())
            })
            .await
            .expect("closing the session");
    });
    drop(runtime);
    running.shutdown().expect("a clean stop");
}

/// What an operator sees on the workflows page while chord `nightly-report` waits for its held
/// member, and once `gate` lets that member answer.
async fn workflows_steps(browser: &Browser, base: &str, gate: &Semaphore, results: &str) {
    use faustus::workflow::{ChordOutcome, ChordResult};

    let url = format!("{base}/api/workflows/");
    browser
        .driver
        .goto(&url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    let page = Page {
        browser,
        expect: Expect {
            path: "/api/workflows/",
            query: None,
            css: "h1",
            text: "Workflows".into(),
        },
    };
    // The row's cells, read in one script: the page reloads itself, and a read that meets a
    // reload is only "not yet".
    let row_script = r#"const row = document.querySelector('#chords tr[data-chord="nightly-report"]');
        return row === null ? null : Object.fromEntries(
            Array.from(row.cells).map(c => [c.className, c.innerText.trim()]));"#;
    let deadline = Instant::now() + WAIT;
    let row: serde_json::Map<String, Value> = loop {
        let read = page.driver().execute(row_script, Vec::new()).await;
        let row = read.ok().and_then(|r| match r.json() {
            Value::Object(row) => Some(row.clone()),
            _ => None,
        });
        match row {
            Some(row) if row["done"] == "2" && row["failed"] == "1" => break row,
            _ if Instant::now() >= deadline => panic!(
                "waited {WAIT:?} for the chord with 2 members done and 1 failed: {row:?}\nthe browser shows {}",
                browser.describe("body").await
            ),
            _ => tokio::time::sleep(POLL).await,
        }
    };
    assert_eq!(row["chord"], "nightly-report", "{row:?}");
    assert_eq!(row["size"], "4", "{row:?}");
    // The deadline, an hour after the start: a UTC time and the minutes left.
    let shown = row["deadline"].as_str().unwrap_or_default();
    let minutes: u64 = shown
        .strip_suffix(" min)")
        .and_then(|s| s.rsplit_once("(in "))
        .and_then(|(time, m)| time.ends_with(" UTC ").then_some(m))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("the deadline reads `{shown}`"));
    assert!((50..=60).contains(&minutes), "{shown}");
    let coordinators = page.texts_now("#coordinators li").await;
    assert_eq!(coordinators.len(), 1, "{coordinators:?}");
    let shot = page.screenshot("workflows.png").await;
    eprintln!("the workflows page: {}", shot.display());

    // The held member answers: the chord completes (failed: one member failed), its result
    // reaches the callback, and the page drops it.
    gate.add_permits(1);
    let results = results.to_string();
    let result = tokio::task::spawn_blocking(move || {
        wait_for("the chord's result", Duration::from_secs(120), || {
            let record = read_all(&results).pop()?;
            serde_json::from_slice::<ChordResult>(record.value.as_deref()?).ok()
        })
    })
    .await
    .expect("the wait");
    assert_eq!(result.chord, "nightly-report");
    assert_eq!(result.outcome, ChordOutcome::Failed);
    assert_eq!(result.failed.len(), 1, "{result:?}");
    assert_eq!(result.failed[0].member, 2);
    assert_eq!(
        result.results,
        vec![Some(10.into()), Some(20.into()), None, Some(7.into())]
    );
    page.wait_script(
        "the completed chord gone from the page",
        r#"return document.getElementById("no-chords") !== null
            && document.querySelector("tr[data-chord]") === null;"#,
    )
    .await;
}
