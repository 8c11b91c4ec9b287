//! Backpressure: while commits are held (the test-only commit hold, as a slow broker would),
//! input keeps arriving, and the sources slow down instead of the memory growing. The chaos
//! example's application (an echo of every event, running sums and minima, a windowed count and
//! a join: several outputs per event) runs under exactly-once with a small
//! `--max-uncommitted-bytes`, and once with a budget it never reaches, for comparison: the
//! gauges stay within the budget, the peak RSS stays below the unbounded run's, and the verifier
//! finds every output exact.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Events per run: enough that, unbounded, a commit hold leaves tens of megabytes waiting.
const RECORDS: u64 = 150_000;
/// The small budget.
const BUDGET: u64 = 2 << 20;
/// A budget these runs never reach.
const UNBOUNDED: u64 = 1 << 30;
/// How long each commit is held open.
const HOLD_MS: &str = "1000";

/// What one run saw.
#[derive(Debug)]
struct Seen {
    /// The largest `faustus_uncommitted_input_bytes` scraped.
    input: i64,
    /// The largest `faustus_commit_queue_bytes` scraped.
    queue: i64,
    /// The application's peak RSS (`VmHWM`), in kB.
    peak_kb: u64,
    /// The verifier's result line.
    verdict: String,
}

/// Runs a chaos subcommand to its end; returns its standard output.
fn chaos(args: &[&str]) -> String {
    let out = Command::new(example_binary("chaos"))
        .args(args)
        .env("FAUSTUS_BROKERS", brokers())
        .stderr(Stdio::inherit())
        .output()
        .expect("running the chaos example");
    assert!(
        out.status.success(),
        "chaos {args:?} failed: {}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of an unlabelled gauge in a Prometheus text page.
fn gauge(page: &str, name: &str) -> Option<i64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// The peak RSS of process `pid`, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn run(budget: u64) -> Seen {
    let prefix = unique("backpressure");
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    chaos(&["table", "--prefix", &prefix]);
    let mut args: Vec<String> = [
        "app",
        "--prefix",
        &prefix,
        "--window",
        "100000",
        "--brokers",
        &brokers(),
        "--guarantee",
        "exactly_once",
        "--workers",
        "2",
        "--http",
        &http,
        "--http-peers",
        &http,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["--max-uncommitted-bytes".into(), budget.to_string()]);
    let mut app =
        Process::example_with("chaos", &args, &[("FAUSTUS_FAULT_COMMIT_HOLD_MS", HOLD_MS)]);
    chaos(&["await-committed", "--prefix", &prefix, "--topic", "rates"]);
    let records = RECORDS.to_string();
    let chaos_child = |args: &[&str]| {
        Command::new(example_binary("chaos"))
            .args(args)
            .env("FAUSTUS_BROKERS", brokers())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a chaos subcommand")
    };
    // Scrape while the input arrives, then until the verifier (which waits for all input to be
    // committed) has checked everything.
    let (mut input, mut queue) = (0, 0);
    let started = Instant::now();
    let mut scrape_until_exit = |child: &mut std::process::Child| {
        while child.try_wait().expect("wait").is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the run did not finish within 10 minutes"
            );
            let (status, body) = http_text(&format!("http://{http}/metrics"));
            if status == 200 {
                input = input.max(gauge(&body, "faustus_uncommitted_input_bytes").unwrap_or(0));
                queue = queue.max(gauge(&body, "faustus_commit_queue_bytes").unwrap_or(0));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut generator = chaos_child(&["generate", "--prefix", &prefix, "--records", &records]);
    scrape_until_exit(&mut generator);
    assert!(
        generator.wait().expect("wait").success(),
        "the generator failed"
    );
    let mut verifier = chaos_child(&[
        "verify",
        "--prefix",
        &prefix,
        "--records",
        &records,
        "--window",
        "100000",
        "--guarantee",
        "exactly_once",
        "--http",
        &http,
    ]);
    scrape_until_exit(&mut verifier);
    let verifier = verifier.wait_with_output().expect("verify");
    let peak_kb = peak_rss_kb(app.child.id());
    let status = app.terminate();
    assert!(status.success(), "a clean stop, got {status}");
    let verdict = String::from_utf8_lossy(&verifier.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(verifier.status.success(), "the verifier failed: {verdict}");
    Seen {
        input,
        queue,
        peak_kb,
        verdict,
    }
}

/// A GET answered as text: status and body (status 0 when it fails).
fn http_text(url: &str) -> (u16, String) {
    match reqwest::blocking::get(url) {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[test]
fn held_commits_slow_the_sources_down_memory_stays_bounded_and_the_answer_exact() {
    let bounded = run(BUDGET);
    eprintln!("bounded: {bounded:?}");
    let unbounded = run(UNBOUNDED);
    eprintln!("unbounded: {unbounded:?}");
    for seen in [&bounded, &unbounded] {
        assert!(
            seen.verdict
                .contains(&format!("records={RECORDS} lost=0 duplicated=0")),
            "every output exact: {}",
            seen.verdict
        );
    }
    // Each of the two sources may read one poll (8192 records) past its half of the budget.
    let slack = 2 * 8192 * 200;
    assert!(
        bounded.input as u64 <= BUDGET + slack,
        "uncommitted input within the budget: {bounded:?}"
    );
    assert!(
        bounded.queue as u64 <= BUDGET + 8 * (BUDGET + slack),
        "the commit queue within the budget and one epoch: {bounded:?}"
    );
    assert!(
        unbounded.queue > bounded.queue * 4,
        "unbounded, the held commits let more wait: {unbounded:?} against {bounded:?}"
    );
    assert!(
        bounded.peak_kb < unbounded.peak_kb,
        "a lower peak RSS with the budget: {bounded:?} against {unbounded:?}"
    );
}
