//! Windows on event time, one of each kind, counting clicks per user:
//!
//! - **tumbling** 1 min: `clicks-per-minute`;
//! - **hopping** 5 min, advancing by 1 min: `clicks-per-5-minutes`;
//! - **sliding** 1 min (one window ending at each click): `clicks-in-sliding-minute`;
//! - **session** with a 30 s inactivity gap: `click-sessions`;
//! - **final emission**: the tumbling per-minute count once per window, when it closes, as an
//!   append-only stream (`final-clicks-per-minute`).
//!
//! Every window has a 10 s grace period: a click up to 10 s behind the largest event time seen
//! (stream time) still counts; a click for a window that has closed is *late* and goes to the
//! dead-letter topic `<app>-__errors`. Windowed tables keep their rows for an hour of stream
//! time (`expires`).
//!
//! The example produces its own clicks (event times are milliseconds since midnight, from
//! 09:00), in three steps, waiting until each is processed: the morning's clicks (one of them
//! out of order, within the grace period); a click at 09:10 that moves stream time on and closes
//! every earlier window (so the final counts come out); and a late click. It then prints the
//! windowed tables (read over HTTP), the final counts (read from their topic) and the late
//! click (read from the dead-letter topic), and exits.
//!
//! Run with: `cargo run --release --example windows` (embedded broker), or add
//! `-- --brokers 127.0.0.1:9092` for a real one; `-- --serve` keeps serving the tables over HTTP
//! until Ctrl-C; `-- --help` lists every flag. See `docs/guide/windows.md`.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use faustus::prelude::*;
use serde_json::Value;
use support::ExampleArgs;

/// A click, on the `clicks` topic keyed by user id; `at` is its event time (ms since midnight).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Click {
    page: String,
    at: u64,
}

/// faustus windows example: tumbling, hopping, sliding and session windows, final emission.
#[derive(clap::Parser, Debug)]
struct Args {
    #[command(flatten)]
    example: ExampleArgs,
}

/// The tumbling and sliding window size, and the hopping windows' advance.
const MINUTE: Duration = Duration::from_secs(60);
/// How far behind stream time a click may arrive and still count.
const GRACE: Duration = Duration::from_secs(10);
/// How long (in stream time) closed windows stay in the tables.
const KEEP: Duration = Duration::from_secs(3600);

/// Milliseconds since midnight of `h:m:s`.
fn at(h: u64, m: u64, s: u64) -> u64 {
    ((h * 60 + m) * 60 + s) * 1000
}

/// `hh:mm:ss`, with `.mmm` when there are milliseconds.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    let hms = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    match ms % 1000 {
        0 => hms,
        rest => format!("{hms}.{rest:03}"),
    }
}

/// A windowed row, `user [start, end) => value`.
fn window_row(key: &Value, value: &Value) -> String {
    let (user, window): (String, Window) =
        serde_json::from_value(key.clone()).expect("windowed keys are [user, window]");
    format!(
        "{user} [{}, {}) => {value}",
        clock(window.start),
        clock(window.end)
    )
}

fn main() -> ExitCode {
    support::main::<Args>(run)
}

fn run(args: Args) -> faustus::Result<()> {
    // One partition: the clicks arrive in the order they are produced.
    let clicks = Topic::<String, Click>::new(args.example.topic("clicks")).partitions(1);
    let final_counts =
        Topic::<(String, Window), i64>::new(args.example.topic("final-clicks-per-minute"));

    let demo = args.example.start("windows", move |df| {
        let clicks = df
            .stream(&clicks)
            .event_time(|_user, click| click.at)
            .grace(GRACE);
        clicks
            .clone()
            .tumbling(MINUTE)
            .expires(KEEP)
            .count("clicks-per-minute")
            .public();
        clicks
            .clone()
            .hopping(5 * MINUTE, MINUTE)
            .expires(KEEP)
            .count("clicks-per-5-minutes")
            .public();
        clicks
            .clone()
            .sliding(MINUTE)
            .expires(KEEP)
            .count("clicks-in-sliding-minute")
            .public();
        clicks
            .clone()
            .session(Duration::from_secs(30))
            .expires(KEEP)
            .count("click-sessions")
            .public();
        // `window` takes the kind as a value (here the same tumbling minute), e.g. from a flag.
        clicks
            .window(WindowKind::Tumbling { size: 60_000 })
            .emit_final()
            .count("final-clicks-per-minute")
            .to_topic(&final_counts);
    })?;

    let click = |user: &str, page: &str, at: u64| {
        (
            user.to_string(),
            Click {
                page: page.to_string(),
                at,
            },
        )
    };
    // 1. The morning's clicks, in order but for one (09:00:58 arrives after 09:01:02: within
    // the grace period, so it still counts).
    demo.produce_values(
        "clicks",
        &[
            click("ann", "/home", at(9, 0, 5)),
            click("ann", "/pricing", at(9, 0, 20)),
            click("bob", "/home", at(9, 0, 30)),
            click("ann", "/docs", at(9, 0, 40)),
            click("ann", "/docs/windows", at(9, 1, 2)),
            click("ann", "/docs/joins", at(9, 0, 58)),
            click("ann", "/signup", at(9, 1, 15)),
            click("bob", "/pricing", at(9, 2, 0)),
            click("bob", "/signup", at(9, 2, 20)),
            click("ann", "/home", at(9, 3, 30)),
            click("ann", "/account", at(9, 3, 45)),
        ],
    );
    demo.wait_processed(&["clicks"]);
    // 2. A click at 09:10 moves stream time past every earlier window's end + grace: they close,
    // and the final counts are emitted.
    demo.produce_values("clicks", &[click("cat", "/home", at(9, 10, 0))]);
    demo.wait_processed(&["clicks"]);
    // 3. A click at 09:00:50 now is late: its windows have closed. Not counted: dead-lettered.
    demo.produce_values("clicks", &[click("ann", "/late", at(9, 0, 50))]);
    demo.wait_processed(&["clicks"]);

    for table in [
        "clicks-per-minute",
        "clicks-per-5-minutes",
        "clicks-in-sliding-minute",
        "click-sessions",
    ] {
        println!("## table {table}");
        for (key, value) in demo.table(table) {
            println!("{}", window_row(&key, &value));
        }
    }
    println!("## stream final-clicks-per-minute");
    let mut finals: Vec<(String, Window, Value)> = demo
        .read_topic("final-clicks-per-minute")
        .into_iter()
        .map(|record| {
            let (user, window) = serde_json::from_value(record.key).expect("[user, window] keys");
            (user, window, record.value)
        })
        .collect();
    finals.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    for (user, window, value) in finals {
        println!("{}", window_row(&serde_json::json!([user, window]), &value));
    }
    // Each windowed table reports the late click (the hopping table once per closed window):
    // print each late event once, with the reason.
    println!("## dead-letters");
    let dead_letters = demo.read_raw(&demo.dead_letter_topic());
    let late: BTreeSet<String> = dead_letters
        .iter()
        .map(|letter| {
            let time = letter
                .header("faustus.error.event_time")
                .parse()
                .unwrap_or(0);
            format!(
                "{} {} at {} => {}",
                letter.key.as_str().unwrap_or_default(),
                letter.value["page"].as_str().unwrap_or_default(),
                clock(time),
                letter.header("faustus.error.reason")
            )
        })
        .collect();
    for line in late {
        println!("{line}");
    }
    demo.finish()
}
