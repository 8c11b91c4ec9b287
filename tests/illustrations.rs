//! The guide's illustrations (`docs/img/*.svg`) in a real headless Chromium, over WebDriver:
//! each one parses as SVG (Chromium puts a `parsererror` element into a document that is not
//! well-formed XML), has a `<title>`, a `viewBox`, a width and a height, draws something of a
//! non-empty size, keeps every text inside the picture, and loads nothing from elsewhere. And
//! the pictures and the guide agree: every image a guide page shows exists, and every picture
//! is shown by some page. No broker is needed.
//!
//! `scripts/test` installs Debian's `chromium` and `chromium-driver`.

mod browser;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browser::Chromedriver;
use common::runtime;
use serde::Deserialize;
use thirtyfour::prelude::*;

/// How long a picture may take to load.
const WAIT: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// What the browser says about a loaded picture (see [`INSPECT`]).
#[derive(Debug, Deserialize)]
struct Inspection {
    /// `document.readyState`.
    ready: String,
    /// The root element's local name and namespace.
    root: String,
    namespace: String,
    /// How many `parsererror` elements the document holds.
    parser_errors: u64,
    /// The text of the root's `<title>` child ("" without one).
    title: String,
    view_box: Option<String>,
    width: Option<String>,
    height: Option<String>,
    /// The drawing's bounding box (`getBBox()`), and the root's rendered size on the page.
    bbox: [f64; 2],
    rendered: [f64; 2],
    /// How many `<text>` elements there are, and the start of each that reaches outside the
    /// rendered picture.
    texts: u64,
    clipped: Vec<String>,
    /// Every reference (`href`, `url(...)`) that does not point inside the document.
    external: Vec<String>,
}

/// The script that inspects the document the browser shows; it returns an [`Inspection`].
const INSPECT: &str = r##"
const root = document.documentElement;
const out = {
  ready: document.readyState,
  root: root ? root.localName : "",
  namespace: root ? (root.namespaceURI || "") : "",
  parser_errors: document.getElementsByTagNameNS("*", "parsererror").length,
  title: "", view_box: null, width: null, height: null,
  bbox: [0, 0], rendered: [0, 0], texts: 0, clipped: [], external: [],
};
if (root && root.localName === "svg") {
  const title = Array.from(root.children).find(e => e.localName === "title");
  out.title = title ? title.textContent.trim() : "";
  out.view_box = root.getAttribute("viewBox");
  out.width = root.getAttribute("width");
  out.height = root.getAttribute("height");
  const box = root.getBBox();
  out.bbox = [box.width, box.height];
  const frame = root.getBoundingClientRect();
  out.rendered = [frame.width, frame.height];
  const texts = root.getElementsByTagNameNS("http://www.w3.org/2000/svg", "text");
  out.texts = texts.length;
  for (const text of texts) {
    const r = text.getBoundingClientRect();
    if (r.left < frame.left - 0.5 || r.top < frame.top - 0.5 ||
        r.right > frame.right + 0.5 || r.bottom > frame.bottom + 0.5) {
      out.clipped.push(text.textContent.trim().slice(0, 40));
    }
  }
  for (const e of root.querySelectorAll("*")) {
    for (const a of e.attributes) {
      const value = a.value.trim();
      if (a.localName === "href" && !value.startsWith("#")) out.external.push(value);
      for (const m of value.matchAll(/url\(\s*['"]?([^'")\s]*)/g)) {
        if (!m[1].startsWith("#")) out.external.push(m[0]);
      }
    }
  }
  for (const style of root.getElementsByTagNameNS("*", "style")) {
    for (const m of style.textContent.matchAll(/url\(\s*['"]?([^'")\s]*)|@import/g)) {
      if (m[0] === "@import" || !m[1].startsWith("#")) out.external.push(m[0]);
    }
  }
}
return out;
"##;

/// The repository's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

/// The targets of the Markdown images (`![alt](target)`) in `text`.
fn image_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("![") {
        rest = &rest[start + 2..];
        let Some(close) = rest.find("](") else { break };
        // An alt text does not span lines; `![` elsewhere (in code) is not an image.
        if rest[..close].contains('\n') {
            continue;
        }
        let after = &rest[close + 2..];
        let Some(end) = after.find(')') else { break };
        let target = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(target.to_string());
        rest = &after[end..];
    }
    targets
}

#[test]
fn image_targets_are_found_in_markdown() {
    let page = "text ![a picture](../img/a.svg) and ![b](b.png \"title\")\n`![not`\n](x)";
    assert_eq!(image_targets(page), vec!["../img/a.svg", "b.png"]);
}

#[test]
fn every_picture_is_shown_by_a_guide_page_and_every_image_shown_exists() {
    let guide = root().join("docs/guide");
    let pictures: BTreeSet<PathBuf> = files(&root().join("docs/img"), ".svg")
        .into_iter()
        .map(|p| p.canonicalize().expect("a picture's path"))
        .collect();
    assert!(!pictures.is_empty(), "docs/img holds no SVG picture");
    let mut shown = BTreeSet::new();
    let mut missing = Vec::new();
    for page in files(&guide, ".md") {
        let text = std::fs::read_to_string(&page).expect("a guide page");
        for target in image_targets(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                missing.push(format!(
                    "{}: {target} is not in the repository",
                    page.display()
                ));
                continue;
            }
            match guide.join(&target).canonicalize() {
                Ok(path) => {
                    shown.insert(path);
                }
                Err(_) => missing.push(format!("{}: {target} does not exist", page.display())),
            }
        }
    }
    assert!(missing.is_empty(), "images the guide shows: {missing:#?}");
    let orphans: Vec<&PathBuf> = pictures.difference(&shown).collect();
    assert!(
        orphans.is_empty(),
        "pictures no guide page shows: {orphans:#?}"
    );
}

#[test]
fn every_picture_loads_and_draws_in_chromium() {
    let pictures = files(&root().join("docs/img"), ".svg");
    assert!(!pictures.is_empty(), "docs/img holds no SVG picture");
    // Pictures with faults, to show that the checks see what Chromium reports: one that is not
    // well-formed, and one whose text runs past its edge and that loads an image from elsewhere.
    let dir = std::env::temp_dir();
    let broken = dir.join(format!("faustus-broken-{}.svg", std::process::id()));
    std::fs::write(
        &broken,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><text>open</svg>"#,
    )
    .expect("writing the broken picture");
    let faulty = dir.join(format!("faustus-faulty-{}.svg", std::process::id()));
    std::fs::write(
        &faulty,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 40" width="100" height="40">
  <title>faulty</title>
  <text x="60" y="20">far too long to fit</text>
  <image href="http://example.invalid/a.png" width="10" height="10"/>
</svg>"#,
    )
    .expect("writing the faulty picture");

    let chromedriver = Chromedriver::start();
    let runtime = runtime();
    let to_look_at: Vec<PathBuf> = pictures.iter().chain([&broken, &faulty]).cloned().collect();
    let inspections = runtime.block_on(async {
        chromedriver
            .session(1000, 800)
            .await
            .run_and_quit(|driver| async move {
                let mut all = Vec::new();
                for path in &to_look_at {
                    all.push((path.clone(), inspect(&driver, path).await));
                }
                Ok::<_, WebDriverError>(all)
            })
            .await
            .expect("the Chromium session")
    });
    drop(runtime);
    let _ = std::fs::remove_file(&broken);
    let _ = std::fs::remove_file(&faulty);

    let mut problems = Vec::new();
    for (path, seen) in &inspections {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path == &broken {
            assert!(
                seen.parser_errors > 0,
                "Chromium reported no parser error for a picture that is not well-formed: {seen:?}"
            );
            continue;
        }
        if path == &faulty {
            assert_eq!(seen.clipped, ["far too long to fit"], "{seen:?}");
            assert_eq!(seen.external, ["http://example.invalid/a.png"], "{seen:?}");
            continue;
        }
        let mut fail = |what: String| problems.push(format!("{name}: {what}"));
        if seen.root != "svg" || seen.namespace != "http://www.w3.org/2000/svg" {
            fail(format!(
                "the root is `{}` in `{}`",
                seen.root, seen.namespace
            ));
        }
        if seen.parser_errors > 0 {
            fail("Chromium reports a parser error".into());
        }
        if seen.title.is_empty() {
            fail("no <title>".into());
        }
        for (attribute, value) in [
            ("viewBox", &seen.view_box),
            ("width", &seen.width),
            ("height", &seen.height),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                fail(format!("no {attribute} attribute"));
            }
        }
        if !(seen.bbox[0] > 0.0 && seen.bbox[1] > 0.0) {
            fail(format!("the drawing's bounding box is {:?}", seen.bbox));
        }
        if !(seen.rendered[0] > 0.0 && seen.rendered[1] > 0.0) {
            fail(format!("it renders at {:?}", seen.rendered));
        }
        if seen.texts == 0 {
            fail("no <text>: its words must be text, not paths".into());
        }
        if !seen.clipped.is_empty() {
            fail(format!(
                "texts reach outside the picture: {:?}",
                seen.clipped
            ));
        }
        if !seen.external.is_empty() {
            fail(format!("it refers outside itself: {:?}", seen.external));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Notes a failed look at `url` that will be retried.
fn log_retry(url: &str, error: &WebDriverError) {
    eprintln!("looking at {url} again: {error}");
}

/// Opens `path` and inspects it once the document is loaded.
async fn inspect(driver: &WebDriver, path: &Path) -> Inspection {
    let url = format!("file://{}", path.display());
    driver
        .goto(&url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = match driver.execute(INSPECT, Vec::new()).await {
            Ok(ret) => serde_json::from_value::<Inspection>(ret.json().clone())
                .unwrap_or_else(|e| panic!("the inspection of {url}: {e}: {:?}", ret.json())),
            // The document may still be on its way in: look again, until the deadline.
            Err(e) if Instant::now() < deadline => {
                log_retry(&url, &e);
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(e) => panic!("inspecting {url}: {e}"),
        };
        if seen.ready == "complete" {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not load within {WAIT:?}: {seen:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
