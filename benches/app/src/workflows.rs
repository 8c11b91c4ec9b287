//! `bench-workflows`: faustus' chords and chains, timed end to end (`scripts/bench`, the
//! workflows step; Celery runs the same jobs in `benches/peers/celery/`).
//!
//! ```text
//! bench-workflows run --brokers HOST:PORT --job chords|chains --count K [--members N]
//!                     --guarantee at_least_once|exactly_once --results FILE
//! bench-workflows report --results FILE --out FILE.md
//! ```
//!
//! `run` starts one application (one process: the member agent, 8 handlers at a time; the chord
//! coordinator; for chains, three step agents), waits until it is ready, then starts `K`
//! chords of `N` members (or `K` chains of three steps) all at once, and waits until every
//! chord's callback (or every chain's last output) has been read back, committed. Each member
//! replies its value doubled; each result is checked. It appends one JSON line to `FILE`:
//! `{"kind":"workflow","system":"faustus","job":..,"guarantee":..,"count":..,"members":..,
//! "seconds":..,"per_sec":..,"answer":"ok"|why}`. `report` writes the table of medians.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faustus::agent::{Agent, Event};
use faustus::prelude::*;
use faustus::workflow::{Chain, Chord, ChordResult, JsonValue};
use faustus::Guarantee;
use serde_json::{json, Value};

/// jemalloc, as the guide recommends for faustus programs (docs/guide/deployment.md, "The
/// allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// faustus' chords and chains, timed (and the report of every system's runs).
#[derive(clap::Parser, Debug)]
#[command(name = "bench-workflows")]
enum Cli {
    /// Runs one job and appends its figures to the results file.
    Run(RunArgs),
    /// Writes the report of the results file: medians per system, job, size and guarantee.
    Report {
        /// The results (JSON lines).
        #[arg(long)]
        results: PathBuf,
        /// Where the Markdown report goes.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// `chords` or `chains`.
    #[arg(long)]
    job: String,
    /// Chords (or chains) started at once.
    #[arg(long)]
    count: usize,
    /// Members per chord.
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Processing guarantee.
    #[arg(long, default_value = "exactly_once")]
    guarantee: Guarantee,
    /// The results file (JSON lines, appended).
    #[arg(long)]
    results: PathBuf,
    /// The longest a run may take, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn main() -> ExitCode {
    use clap::Parser as _;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = match Cli::parse() {
        Cli::Run(args) => run(&args),
        Cli::Report { results, out } => report(&results, &out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-workflows: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the sink agent has seen: each chord's result (or chain's output) by key.
type Seen = Arc<Mutex<BTreeMap<String, Value>>>;

fn run(args: &RunArgs) -> faustus::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("bench-wf-{}-{nanos:x}", args.job);
    let topic = |name: &str| format!("{id}-{name}");
    let members = Topic::<String, i64>::new(topic("members")).partitions(4);
    let callback = Topic::<String, ChordResult>::new(topic("callback")).partitions(4);
    let steps = [
        Topic::<String, i64>::new(topic("step1")).partitions(4),
        Topic::<String, i64>::new(topic("step2")).partitions(4),
        Topic::<String, i64>::new(topic("step3")).partitions(4),
    ];
    let output = Topic::<String, i64>::new(topic("output")).partitions(4);
    let seen: Seen = Arc::default();
    let replying = |name: &str, topic: &Topic<String, i64>, f: fn(i64) -> i64| {
        Agent::new(name, topic).concurrency(8).handler(
            move |event: Event<String, i64>| async move {
                event.reply(&f(event.value()))?;
                Ok(())
            },
        )
    };
    let mut app = App::new(&id)
        .brokers(&args.brokers)
        .guarantee(args.guarantee)
        .http(None)
        .partitions(4)
        .commit_interval(Duration::from_millis(faustus_bench::COMMIT_INTERVAL_MS));
    match args.job.as_str() {
        "chords" => {
            let seen = Arc::clone(&seen);
            app = app
                .chords()
                .agent(replying("member", &members, |v| v * 2))
                .agent(Agent::new("callback", &callback).handler(
                    move |event: Event<String, ChordResult>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let result = serde_json::to_value(event.value()).unwrap_or_default();
                            lock(&seen).insert(event.key(), result);
                            Ok(())
                        }
                    },
                ));
        }
        "chains" => {
            let out = output.clone();
            let seen = Arc::clone(&seen);
            app = app
                .agent(replying("step1", &steps[0], |v| v + 1))
                .agent(replying("step2", &steps[1], |v| v * 3))
                .agent(
                    Agent::new("step3", &steps[2])
                        .concurrency(8)
                        .sends_to(&output)
                        .handler(move |event: Event<String, i64>| {
                            let out = out.clone();
                            async move {
                                event.send(&out, event.key(), event.value() * 10)?;
                                Ok(())
                            }
                        }),
                )
                .agent(
                    Agent::new("sink", &output).handler(move |event: Event<String, i64>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            lock(&seen).insert(event.key(), json!(event.value()));
                            Ok(())
                        }
                    }),
                );
        }
        other => {
            return Err(faustus::Error::Config(format!(
                "--job {other}: expected `chords` or `chains`"
            )))
        }
    }
    let running = app.start_agents()?;
    let workflows = running.workflows()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| faustus::Error::Runtime(e.to_string()))?;
    let (keys, expected): (Vec<String>, Vec<Value>) = (0..args.count)
        .map(|i| match args.job.as_str() {
            "chords" => (
                format!("c{i}"),
                json!((0..args.members as i64)
                    .map(|v| Some(JsonValue::from(v * 2)))
                    .collect::<Vec<_>>()),
            ),
            _ => (format!("k{i}"), json!((i as i64 + 1) * 3 * 10)),
        })
        .unzip();
    let started = Instant::now();
    runtime.block_on(async {
        let starts = keys.iter().enumerate().map(|(i, key)| {
            let workflows = workflows.clone();
            let (members, steps, callback) = (&members, &steps, &callback);
            async move {
                match args.job.as_str() {
                    "chords" => {
                        let chord = (0..args.members as i64)
                            .try_fold(Chord::new(key.clone()), |c, v| {
                                c.member(members, &format!("{key}-{v}"), &v)
                            })
                            .map_err(|e| faustus::Error::Config(e.to_string()))?
                            .callback(callback);
                        workflows.start_chord(&chord).await
                    }
                    _ => {
                        let chain = Chain::new(&steps[0], key, &(i as i64))
                            .map_err(|e| faustus::Error::Config(e.to_string()))?
                            .then(&steps[1])
                            .then(&steps[2]);
                        workflows.start_chain(&chain).await
                    }
                }
            }
        });
        for started in futures::future::join_all(starts).await {
            started?;
        }
        Ok::<(), faustus::Error>(())
    })?;
    let deadline = started + Duration::from_secs(args.timeout_secs);
    while lock(&seen).len() < args.count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = started.elapsed().as_secs_f64();
    let seen = lock(&seen).clone();
    let answer = check(args, &keys, &expected, &seen);
    let units = match args.job.as_str() {
        "chords" => args.count,
        _ => args.count * 3,
    };
    let row = json!({
        "kind": "workflow",
        "system": "faustus",
        "job": args.job,
        "guarantee": serde_json::to_value(args.guarantee).unwrap_or_default(),
        "count": args.count,
        "members": if args.job == "chords" { args.members } else { 3 },
        "seconds": seconds,
        "per_sec": units as f64 / seconds,
        "answer": answer,
    });
    println!("{row}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.results)
        .map_err(|e| faustus::Error::Runtime(format!("{}: {e}", args.results.display())))?;
    writeln!(file, "{row}").map_err(|e| faustus::Error::Runtime(e.to_string()))?;
    running.shutdown()?;
    delete_topics(&args.brokers, &id);
    Ok(())
}

/// Whether every chord's result (chain's output) came and is right: `ok`, or what is wrong.
fn check(
    args: &RunArgs,
    keys: &[String],
    expected: &[Value],
    seen: &BTreeMap<String, Value>,
) -> String {
    if seen.len() < args.count {
        return format!(
            "only {} of {} within {} s",
            seen.len(),
            args.count,
            args.timeout_secs
        );
    }
    for (key, want) in keys.iter().zip(expected) {
        let got = match args.job.as_str() {
            "chords" => seen.get(key).map(|r| r["results"].clone()),
            _ => seen.get(key).cloned(),
        };
        if got.as_ref() != Some(want) {
            return format!("{key}: expected {want}, got {got:?}");
        }
    }
    "ok".into()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Deletes the run's topics (those named after its id).
fn delete_topics(brokers: &str, id: &str) {
    let status = std::process::Command::new(
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("bench-topics")))
            .unwrap_or_else(|| "bench-topics".into()),
    )
    .args(["--brokers", brokers, "delete-prefix", id])
    .status();
    if !status.is_ok_and(|s| s.success()) {
        log::warn!("could not delete the topics of {id}");
    }
}

/// One results row, as `report` reads it.
#[derive(serde::Deserialize)]
struct Row {
    system: String,
    job: String,
    guarantee: String,
    count: usize,
    members: usize,
    per_sec: f64,
    seconds: f64,
    answer: String,
}

/// The median of `values` (sorted here).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn report(results: &PathBuf, out: &PathBuf) -> faustus::Result<()> {
    let text = std::fs::read_to_string(results)
        .map_err(|e| faustus::Error::Runtime(format!("{}: {e}", results.display())))?;
    let mut groups: BTreeMap<(String, usize, String, String), Vec<Row>> = BTreeMap::new();
    let mut meta = Vec::new();
    for line in text.lines() {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| faustus::Error::Runtime(format!("a results line: {e}")))?;
        if value["kind"] == "meta" {
            meta.push(format!(
                "- **{}**: {}",
                value["key"].as_str().unwrap_or_default(),
                value["value"].as_str().unwrap_or_default()
            ));
            continue;
        }
        if value["kind"] != "workflow" {
            continue;
        }
        let row: Row = serde_json::from_value(value)
            .map_err(|e| faustus::Error::Runtime(format!("a results row: {e}")))?;
        groups
            .entry((
                row.job.clone(),
                row.members,
                row.guarantee.clone(),
                row.system.clone(),
            ))
            .or_default()
            .push(row);
    }
    let mut md = String::from(
        "# Workflows: chords and chains, faustus and Celery\n\n\
         Written by `scripts/bench` (the workflows step); raw rows in `workflows.jsonl`. Each \
         run starts `count` chords (or chains of three steps) at once and is timed until every \
         callback (or last step's output) is seen; rates are wall-clock, from the first start to \
         the last result, and every result is checked. Figures are medians of the runs.\n\n",
    );
    md.push_str(&meta.join("\n"));
    md.push_str(
        "\n\n| job | members (steps) | guarantee | system | runs | right | count | median s | per s (chords, or steps) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for ((job, members, guarantee, system), rows) in &groups {
        let right = rows.iter().filter(|r| r.answer == "ok").count();
        let mut rates: Vec<f64> = rows
            .iter()
            .filter(|r| r.answer == "ok")
            .map(|r| r.per_sec)
            .collect();
        let mut secs: Vec<f64> = rows
            .iter()
            .filter(|r| r.answer == "ok")
            .map(|r| r.seconds)
            .collect();
        let counts: BTreeSet<usize> = rows.iter().map(|r| r.count).collect();
        md.push_str(&format!(
            "| {job} | {members} | {guarantee} | {system} | {} | {right} | {} | {:.2} | {:.1} |\n",
            rows.len(),
            counts
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            median(&mut secs),
            median(&mut rates),
        ));
    }
    std::fs::write(out, md)
        .map_err(|e| faustus::Error::Runtime(format!("{}: {e}", out.display())))?;
    Ok(())
}
