//! `bench-run`: runs one system on one workload and measures it (see `benches/README.md`).
//!
//! ```text
//! bench-run --system NAME --workload W --guarantee G --brokers B --results FILE
//!           [--events N] [--words N --vocab V [--all-words]] [--suffix S]
//!           [--app-id ID] [--keep-state] [--timeout S] [--idle-timeout S] [--log-dir DIR]
//!           -- COMMAND [ARGS...]
//! ```
//!
//! Creates the output topics, computes the expected answer, starts `COMMAND` with the contract's
//! flags, reads the output topics until they hold exactly the expected answer (or the deadline
//! passes, or the output can no longer match), stops the system, cleans up its topics and
//! appends one JSON line to the results file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use faustus_bench::check::OutputState;
use faustus_bench::kafka::{self, Error};
use faustus_bench::model::Model;
use faustus_bench::process;
use faustus_bench::procstat::{self, Usage};
use faustus_bench::{Guarantee, Inputs, Workload};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

/// Exit code by which a system says it does not support a workload.
const UNSUPPORTED: i32 = 3;

#[derive(Parser, Debug)]
#[command(about = "Runs one system on one workload, checks its answer and measures it")]
struct Args {
    /// The system's name in the results (`ceiling`, `faustus`, `kafka-streams`, `faust`).
    #[arg(long)]
    system: String,
    /// The workload: W0..W4.
    #[arg(long)]
    workload: Workload,
    /// at_least_once or exactly_once.
    #[arg(long)]
    guarantee: Guarantee,
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// The input to read (as loaded by bench-gen).
    #[command(flatten)]
    inputs: Inputs,
    /// The system's application id (default: a unique one).
    #[arg(long)]
    app_id: Option<String>,
    /// Keep the system's internal topics (those named after its app id) and faustus' local
    /// checkpoints (`<temp dir>/faustus/<app id>`) after the run, e.g. to restore its table
    /// later.
    #[arg(long)]
    keep_state: bool,
    /// Seconds to wait for the right answer.
    #[arg(long, default_value_t = 900.0)]
    timeout: f64,
    /// Seconds without new output after which a wrong answer is final.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// After the output first matches, keep reading until no new output came for this many
    /// seconds, then check again (late duplicates, a table that overshoots).
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// A start-up run on the small priming input: recorded as kind `startup`, its time to the
    /// right answer is the system's fixed cost that the report subtracts for the steady rate.
    #[arg(long)]
    startup_run: bool,
    /// The JSON-lines file to append the result to.
    #[arg(long)]
    results: PathBuf,
    /// Where the system's stdout and stderr go (`<app id>.out`, `<app id>.err`).
    #[arg(long, default_value = "target/bench-logs")]
    log_dir: PathBuf,
    /// The system's command, without the contract's flags.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// How a run ended.
enum Outcome {
    /// The output matched the model.
    Matched,
    /// The system said it does not support the workload.
    Unsupported(String),
    /// The output did not, and will not, match.
    Mismatch(String),
    /// The deadline passed.
    Timeout(String),
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn last_line(path: &PathBuf) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_string()
}

fn output_consumer(brokers: &str, topics: &[String], group: &str) -> Result<BaseConsumer, Error> {
    let consumer: BaseConsumer =
        kafka::consumer(brokers, group, Guarantee::ExactlyOnce).create()?;
    let mut assignment = TopicPartitionList::new();
    for t in topics {
        let n = kafka::partitions(brokers, t)?.ok_or_else(|| format!("no topic `{t}`"))?;
        for p in 0..n {
            assignment.add_partition_offset(t, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// Reads every message available now into `state`; returns how many were read.
fn drain(
    consumer: &BaseConsumer,
    topics: &[String],
    state: &mut OutputState,
) -> Result<u64, Error> {
    let mut n = 0;
    let mut wait = Duration::from_millis(20);
    while n < 100_000 {
        match consumer.poll(wait) {
            None => break,
            Some(Err(e)) => return Err(format!("reading the output: {e}").into()),
            Some(Ok(m)) => {
                let topic = topics
                    .iter()
                    .position(|t| t == m.topic())
                    .ok_or_else(|| format!("a record from unexpected topic `{}`", m.topic()))?;
                state.apply(topic, m.key(), m.payload());
                n += 1;
            }
        }
        wait = Duration::ZERO;
    }
    Ok(n)
}

/// After the first match: reads on until no new output came for `--settle` seconds (at most
/// `--idle-timeout` in all), and checks again.
fn settle(
    consumer: &BaseConsumer,
    outputs: &[String],
    state: &mut OutputState,
    args: &Args,
) -> Result<Outcome, Error> {
    let matched_records = state.records();
    let began = Instant::now();
    let mut quiet_since = Instant::now();
    let quiet = Duration::from_secs_f64(args.settle);
    let limit = Duration::from_secs_f64(args.idle_timeout.max(args.settle));
    while quiet_since.elapsed() < quiet && began.elapsed() < limit && !state.overshot() {
        if drain(consumer, outputs, state)? > 0 {
            quiet_since = Instant::now();
        }
    }
    Ok(if state.matches() {
        Outcome::Matched
    } else {
        Outcome::Mismatch(format!(
            "the output matched, then {} more records came within {:.1} s of settling: {}",
            state.records() - matched_records,
            began.elapsed().as_secs_f64(),
            state.diff()
        ))
    })
}

/// Runs and records; `Ok(true)` when the answer was right or the workload unsupported.
fn run(args: Args) -> Result<bool, Error> {
    let inputs = args.inputs.clone();
    match args.workload {
        Workload::W2 if inputs.words == 0 => return Err("W2 needs --words".into()),
        Workload::W2 => {}
        _ if inputs.events == 0 => return Err(format!("{} needs --events", args.workload).into()),
        _ => {}
    }
    let (kind, workload_name) = if args.startup_run {
        ("startup", args.workload.to_string())
    } else if args.inputs.all_words && args.workload == Workload::W2 {
        ("scale", format!("W2-keys-{}", args.inputs.vocab))
    } else {
        ("throughput", args.workload.to_string())
    };
    let app_id = args.app_id.clone().unwrap_or_else(|| {
        format!(
            "bench-{}-{}-{}-{}",
            args.system,
            workload_name,
            args.guarantee,
            unix_ms()
        )
    });
    let prefix = format!("out-{app_id}-");
    let outputs: Vec<String> = args
        .workload
        .outputs()
        .iter()
        .map(|s| format!("{prefix}{s}"))
        .collect();
    let brokers = args.brokers.as_str();

    let started = Instant::now();
    let (model, counts) = Model::compute_and_count(args.workload, &inputs);
    let events = counts.events_of(args.workload);
    eprintln!(
        "bench-run: {} {} {}: model of {events} events in {:.1} s: {}",
        args.system,
        workload_name,
        args.guarantee,
        started.elapsed().as_secs_f64(),
        model.summary()
    );
    // The input must be there as bench-gen left it.
    let needed: Vec<(String, u64)> = match args.workload {
        Workload::W0 | Workload::W1 | Workload::W3 => vec![(inputs.bids_topic(), counts.bids)],
        Workload::W2 => vec![(inputs.words_topic(), counts.words)],
        Workload::W4 => vec![
            (inputs.persons_topic(), counts.persons),
            (inputs.auctions_topic(), counts.auctions),
        ],
    };
    for (topic, n) in &needed {
        let have = kafka::record_count(brokers, topic)?;
        if have != Some(*n) {
            return Err(format!(
                "input topic `{topic}` holds {have:?} records, expected {n}: run bench-gen first"
            )
            .into());
        }
    }
    let mut state = OutputState::new(model);

    kafka::delete_topics(brokers, &outputs)?;
    kafka::create_topics(brokers, &outputs)?;
    let consumer = output_consumer(brokers, &outputs, &format!("bench-run-{app_id}"))?;

    fs::create_dir_all(&args.log_dir)?;
    let out_log = args.log_dir.join(format!("{app_id}.out"));
    let err_log = args.log_dir.join(format!("{app_id}.err"));
    let mut command = Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .args(["--workload", &args.workload.to_string()])
        .args(["--guarantee", args.guarantee.as_str()])
        .args(["--brokers", brokers])
        .args(["--app-id", &app_id])
        .args(["--output-prefix", &prefix]);
    match args.workload {
        Workload::W0 | Workload::W1 | Workload::W3 => {
            command.args(["--bids", &inputs.bids_topic()]);
        }
        Workload::W2 => {
            command.args(["--words", &inputs.words_topic()]);
        }
        Workload::W4 => {
            command
                .args(["--persons", &inputs.persons_topic()])
                .args(["--auctions", &inputs.auctions_topic()]);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(File::create(&out_log)?)
        .stderr(File::create(&err_log)?);

    let ticks = procstat::clock_ticks();
    let t0 = Instant::now();
    let mut child = process::spawn_group(&mut command)
        .map_err(|e| format!("starting `{}`: {e}", args.command.join(" ")))?;
    let pid = child.id();
    let timeout = Duration::from_secs_f64(args.timeout);
    let idle = Duration::from_secs_f64(args.idle_timeout);
    let mut first_output: Option<Duration> = None;
    let mut last_output = Instant::now();
    let mut usage = Usage::default();
    let mut last_sample = Instant::now();
    let outcome = loop {
        let n = drain(&consumer, &outputs, &mut state)?;
        if n > 0 {
            last_output = Instant::now();
            first_output.get_or_insert_with(|| t0.elapsed());
        }
        if state.matches() {
            if let Some(u) = procstat::usage(pid, ticks) {
                usage = u;
            }
            break Outcome::Matched;
        }
        if state.overshot() {
            break Outcome::Mismatch(state.diff());
        }
        if last_sample.elapsed() > Duration::from_millis(500) {
            last_sample = Instant::now();
            if let Some(u) = procstat::usage(pid, ticks) {
                usage = u;
            }
            if let Some(status) = child.try_wait()? {
                if status.code() == Some(UNSUPPORTED) {
                    break Outcome::Unsupported(last_line(&err_log));
                }
                // Read what it wrote before it went: until the output stays quiet for 2 s.
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut quiet_since = Instant::now();
                while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
                    if drain(&consumer, &outputs, &mut state)? > 0 {
                        quiet_since = Instant::now();
                    }
                }
                if state.matches() {
                    break Outcome::Matched;
                }
                break Outcome::Mismatch(format!(
                    "the system exited ({status}; {}) before its output matched: {}",
                    last_line(&err_log),
                    state.diff()
                ));
            }
        }
        if first_output.is_some() && last_output.elapsed() > idle {
            break Outcome::Mismatch(format!(
                "no new output for {:.0} s: {}",
                idle.as_secs_f64(),
                state.diff()
            ));
        }
        if t0.elapsed() > timeout {
            break Outcome::Timeout(format!(
                "no match after {:.0} s: {}",
                timeout.as_secs_f64(),
                state.diff()
            ));
        }
    };
    let wall = t0.elapsed();
    let outcome = match outcome {
        Outcome::Matched => settle(&consumer, &outputs, &mut state, &args)?,
        other => other,
    };
    process::stop(&mut child, "bench-run");
    drop(consumer);

    let mut cleanup_errors = Vec::new();
    if let Err(e) = kafka::delete_topics(brokers, &outputs) {
        cleanup_errors.push(e.to_string());
    }
    if !args.keep_state {
        match kafka::delete_topics_with_prefix(brokers, &app_id) {
            Ok(deleted) if !deleted.is_empty() => {
                eprintln!(
                    "bench-run: deleted {} internal topics of {app_id}",
                    deleted.len()
                )
            }
            Ok(_) => {}
            Err(e) => cleanup_errors.push(e.to_string()),
        }
        if let Err(e) = faustus_bench::process::remove_local_state(&app_id) {
            cleanup_errors.push(format!("removing the local state of {app_id}: {e}"));
        }
    }

    let wall_s = wall.as_secs_f64();
    let mut row = json!({
        "kind": kind,
        "system": args.system,
        "workload": workload_name,
        "guarantee": args.guarantee.as_str(),
        "events": events,
        "input_suffix": inputs.suffix,
        "app_id": app_id,
        "output_records": state.records(),
    });
    let answer = match &outcome {
        Outcome::Matched => {
            // The steady rate needs the start-up run's time: the report computes it.
            row["events_per_sec_wall"] = json!(events as f64 / wall_s);
            row["wall_s"] = json!(wall_s);
            row["first_output_s"] = json!(first_output.map(|d| d.as_secs_f64()));
            row["cpu_s"] = json!(usage.cpu_s);
            row["cpu_s_per_million"] = json!(usage.cpu_s / (events as f64 / 1e6));
            row["peak_rss_mb"] = json!(usage.peak_rss_mb);
            "ok".to_string()
        }
        Outcome::Unsupported(line) => format!("unsupported: {line}"),
        Outcome::Mismatch(diff) => format!("mismatch: {diff}"),
        Outcome::Timeout(diff) => format!("timeout: {diff}"),
    };
    for key in [
        "events_per_sec_wall",
        "wall_s",
        "first_output_s",
        "cpu_s_per_million",
        "peak_rss_mb",
    ] {
        if row.get(key).is_none() {
            row[key] = serde_json::Value::Null;
        }
    }
    row["answer"] = json!(answer);
    if let Some(parent) = args.results.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.results)?;
    writeln!(file, "{row}")?;
    match &outcome {
        Outcome::Matched => eprintln!(
            "bench-run: {} {} {} ({kind}): ok: {events} events, {:.1} s (first output at {:.1} s), \
             {:.0} events/s on the wall clock, {:.2} CPU s per million, peak RSS {:.0} MB",
            args.system,
            workload_name,
            args.guarantee,
            wall_s,
            row["first_output_s"].as_f64().unwrap_or(0.0),
            row["events_per_sec_wall"].as_f64().unwrap_or(0.0),
            row["cpu_s_per_million"].as_f64().unwrap_or(0.0),
            row["peak_rss_mb"].as_f64().unwrap_or(0.0),
        ),
        _ => eprintln!(
            "bench-run: {} {} {}: {answer} (logs: {})",
            args.system,
            workload_name,
            args.guarantee,
            err_log.display()
        ),
    }
    if !cleanup_errors.is_empty() {
        eprintln!("bench-run: cleaning up: {}", cleanup_errors.join("; "));
    }
    Ok(matches!(
        outcome,
        Outcome::Matched | Outcome::Unsupported(_)
    ))
}

/// Exit status: 0 when the answer was right (or the workload unsupported), 2 when it was wrong
/// or late (recorded in the results file either way), 1 when the run could not be made.
fn main() {
    match run(Args::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(2),
        Err(e) => {
            eprintln!("bench-run: error: {e}");
            std::process::exit(1);
        }
    }
}
