//! The chaos test's programs: the generator of input, the application under test, and the
//! verifier that proves its outputs right. `scripts/chaos` drives them: it runs the application
//! as a cluster, kills its processes and the broker with SIGKILL, restarts them, and finally
//! runs `verify`, whose last line is `records=N lost=L duplicated=D kills=K broker_kills=B`.
//!
//! Guarantee: under `exactly_once` every output holds every input's effect exactly once, however
//! the processes die; under `at_least_once`, nothing is lost and duplicates are counted.
//!
//! Run with: `scripts/chaos` (or `cargo run --release --example chaos -- --help`).
//!
//! Subcommands:
//! - `generate`: writes `--records` events to `<prefix>-input`, at `--rate` per second;
//! - `app`: the application under test (every `faustus` flag, plus `--prefix`, `--window`);
//! - `progress`: prints the last committed epoch;
//! - `open-transactions`: prints how many output partitions hold an open transaction;
//! - `verify`: waits until all input is committed, then checks every output against a model;
//! - `ports`: prints free TCP ports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use faustus::connectors::{
    ensure_topics, partition_count, read_progress, read_to_end, KafkaConfig, QuietContext,
    TopicSpec,
};
use faustus::prelude::*;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

/// One input event. Its key is a number in `0..keys`; `seq` numbers the events from 0 in the
/// order the generator wrote them; `ts` is its event time (used by the windowed count).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Event {
    seq: u64,
    amount: i64,
    ts: u64,
}

/// The chaos test's programs.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the input events.
    Generate(Generate),
    /// Runs the application under test.
    App(AppCmd),
    /// Prints the last committed epoch (0 before the first commit).
    Progress(Common),
    /// Prints how many output partitions hold an open transaction (read_committed end <
    /// read_uncommitted end).
    OpenTransactions(Common),
    /// Waits until all input is committed, checks every output, prints the result line.
    Verify(Verify),
    /// Prints `n` free TCP ports on 127.0.0.1, comma-separated.
    Ports {
        /// How many.
        n: usize,
    },
}

/// Flags every subcommand that talks to Kafka takes.
#[derive(clap::Args, Clone)]
struct Common {
    /// Kafka bootstrap servers.
    #[arg(long, env = "FAUSTUS_BROKERS")]
    brokers: String,
    /// Names the application and its topics (`<prefix>-input`, `<prefix>-echo`, ...).
    #[arg(long)]
    prefix: String,
}

#[derive(clap::Args)]
struct Generate {
    #[command(flatten)]
    common: Common,
    /// Events to write.
    #[arg(long, env = "CHAOS_RECORDS", default_value_t = 1_000_000)]
    records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u32,
    /// Events per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(clap::Args)]
struct AppCmd {
    #[command(flatten)]
    app: AppArgs,
    /// Names the application and its topics.
    #[arg(long)]
    prefix: String,
    /// Window size of the windowed count, in event-time units.
    #[arg(long, default_value_t = 100_000)]
    window: u64,
}

#[derive(clap::Args)]
struct Verify {
    #[command(flatten)]
    common: Common,
    /// Events the generator wrote.
    #[arg(long)]
    records: u64,
    /// Window size of the windowed count.
    #[arg(long)]
    window: u64,
    /// The guarantee the application ran with (`at_least_once` tolerates duplicates).
    #[arg(long)]
    guarantee: Guarantee,
    /// HTTP addresses of the application's processes (`host:port,...`).
    #[arg(long, value_delimiter = ',')]
    http: Vec<String>,
    /// How long to wait for the application to commit all input, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Process kills the driver made (reported in the result line).
    #[arg(long, default_value_t = 0)]
    kills: u64,
    /// Broker kills the driver made (reported in the result line).
    #[arg(long, default_value_t = 0)]
    broker_kills: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let outcome = match Cli::parse().command {
        Command::Generate(g) => generate(&g),
        Command::App(a) => app(a),
        Command::Progress(c) => progress(&c).map(|p| println!("{p}")),
        Command::OpenTransactions(c) => open_transactions(&c).map(|open| {
            println!("{}", open.len());
            for (topic, partition, committed, end) in open {
                eprintln!("open: {topic}/{partition}: read_committed end {committed} < end {end}");
            }
        }),
        Command::Verify(v) => return verify(&v),
        Command::Ports { n } => {
            let listeners: Vec<_> = (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
                .collect();
            let ports: Vec<String> = listeners
                .iter()
                .map(|l| l.local_addr().expect("bound").port().to_string())
                .collect();
            println!("{}", ports.join(","));
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------------
// Topics

/// Partitions of the input and the echo (equal, so the echo of input partition `p` is output
/// partition `p`: both are partitioned by murmur2 of the same key bytes).
const PARTITIONS: i32 = 8;

fn input_topic(prefix: &str) -> Topic<u32, Event> {
    Topic::new(format!("{prefix}-input")).partitions(PARTITIONS)
}

fn echo_topic(prefix: &str) -> Topic<u32, Event> {
    Topic::new(format!("{prefix}-echo")).partitions(PARTITIONS)
}

/// The tables the application keeps, by name; each is public, has a changelog and writes its
/// changes to `<prefix>-<name>`.
const TABLES: [&str; 3] = ["sum", "min", "wcount"];

/// Every topic the application writes (what must hold no open transaction).
fn output_topics(prefix: &str) -> Vec<String> {
    let mut topics = vec![
        format!("{prefix}-echo"),
        format!("{prefix}-__progress"),
        format!("{prefix}-__errors"),
    ];
    for table in TABLES {
        topics.push(format!("{prefix}-{table}"));
        topics.push(format!("{prefix}-{table}-changelog"));
    }
    topics
}

// ---------------------------------------------------------------------------------------------
// The generator

/// A deterministic 64-bit mix (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Counts failed deliveries.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            log::error!("generator: delivery failed: {e}");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn generate(args: &Generate) -> AnyResult<()> {
    let kafka = KafkaConfig::new(&args.common.brokers);
    let topic = input_topic(&args.common.prefix);
    ensure_topics(&kafka, &[TopicSpec::new(topic.name(), PARTITIONS)])?;
    // Idempotent (the default producer settings): a broker restart neither loses nor repeats
    // input, and order per partition holds.
    let producer: ThreadedProducer<Deliveries> = kafka
        .producer()
        .set("message.timeout.ms", "600000")
        .create_with_context(Deliveries::default())?;
    let started = Instant::now();
    for seq in 0..args.records {
        if args.rate > 0 {
            let due = Duration::from_secs_f64(seq as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let key = (mix(seq) % u64::from(args.keys.max(1))) as u32;
        let event = Event {
            seq,
            amount: (mix(seq ^ 0x5555) % 1000) as i64 + 1,
            ts: seq,
        };
        let (k, v) = (topic.encode_key(&key), topic.encode_value(&event));
        let mut record = BaseRecord::to(topic.name()).key(&k).payload(&v);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(600))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} input events were not delivered").into());
    }
    eprintln!(
        "generated {} events in {:.1} s",
        args.records,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The application under test

fn app(args: AppCmd) -> AnyResult<()> {
    let prefix = args.prefix.clone();
    let window = args.window.max(1);
    let app = App::new(prefix.clone()).with_args(&args.app)?;
    let input = input_topic(&prefix);
    let echo = echo_topic(&prefix);
    let sums = Topic::<u32, i64>::new(format!("{prefix}-sum"));
    let mins = Topic::<u32, i64>::new(format!("{prefix}-min"));
    let wcounts = Topic::<(u32, u64), i64>::new(format!("{prefix}-wcount"));
    let running = app.start(move |df| {
        let events = df.stream(&input);
        events.to_topic(&echo);
        let amounts = events.clone().map(|key, e| (key, e.amount));
        amounts.clone().sum("sum").public().to_topic(&sums);
        amounts
            .reduce("min", |a, b| (*a).min(b))
            .public()
            .to_topic(&mins);
        events
            .map(move |key, e| ((key, e.ts / window), ()))
            .count("wcount")
            .public()
            .to_topic(&wcounts);
    })?;
    if let Some(addr) = running.http_addr() {
        log::info!("chaos app serving tables on http://{addr}/api/table/");
    }
    running.run_until_signal()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Inspecting the application's state in Kafka

fn progress(common: &Common) -> AnyResult<u64> {
    let kafka = KafkaConfig::new(&common.brokers);
    let topic = format!("{}-__progress", common.prefix);
    if partition_count(&kafka, &topic)?.is_none() {
        return Ok(0);
    }
    Ok(read_progress(&kafka, &topic)?.map_or(0, |p| p.epoch))
}

/// A consumer with the given isolation level, for reading watermarks.
fn watermark_consumer(
    kafka: &KafkaConfig,
    isolation: &str,
) -> AnyResult<BaseConsumer<QuietContext>> {
    Ok(kafka
        .consumer()
        .set("isolation.level", isolation)
        .create_with_context(QuietContext)?)
}

/// Output partitions whose read_committed end (the last stable offset) is below their end:
/// `(topic, partition, read_committed end, read_uncommitted end)`.
fn open_transactions(common: &Common) -> AnyResult<Vec<(String, i32, i64, i64)>> {
    let kafka = KafkaConfig::new(&common.brokers);
    let committed = watermark_consumer(&kafka, "read_committed")?;
    let uncommitted = watermark_consumer(&kafka, "read_uncommitted")?;
    let timeout = Duration::from_secs(30);
    let mut open = Vec::new();
    for topic in output_topics(&common.prefix) {
        let Some(partitions) = partition_count(&kafka, &topic)? else {
            continue;
        };
        for p in 0..partitions {
            let (_, end) = uncommitted.fetch_watermarks(&topic, p, timeout)?;
            let (_, stable) = committed.fetch_watermarks(&topic, p, timeout)?;
            if stable != end {
                open.push((topic.clone(), p, stable, end));
            }
        }
    }
    Ok(open)
}

// ---------------------------------------------------------------------------------------------
// The verifier

/// One record read back: partition, key bytes, value bytes (`None`: tombstone).
struct Read {
    partition: i32,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// Every committed record of `topic`, per partition in offset order.
fn read_topic(kafka: &KafkaConfig, topic: &str) -> AnyResult<Vec<Read>> {
    let Some(partitions) = partition_count(kafka, topic)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let all: Vec<i32> = (0..partitions).collect();
    read_to_end(kafka, topic, &all, Duration::from_secs(300), |r| {
        out.push((
            r.partition,
            r.offset,
            Read {
                partition: r.partition,
                key: r.key.unwrap_or_default().to_vec(),
                value: r.value.map(<[u8]>::to_vec),
            },
        ))
    })?;
    out.sort_by_key(|(p, o, _)| (*p, *o));
    Ok(out.into_iter().map(|(_, _, r)| r).collect())
}

/// The high watermark of every partition of `topic`.
fn ends(kafka: &KafkaConfig, topic: &str) -> AnyResult<BTreeMap<i32, i64>> {
    let consumer = watermark_consumer(kafka, "read_uncommitted")?;
    let partitions = partition_count(kafka, topic)?.unwrap_or(0);
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        ends.insert(
            p,
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(30))?
                .1,
        );
    }
    Ok(ends)
}

/// What the verifier found, by check.
#[derive(Default)]
struct Report {
    lost: u64,
    duplicated: u64,
    /// Other failed checks (open transactions, order, extra records, HTTP ≠ changelog, ...),
    /// each described.
    violations: Vec<String>,
    /// Findings that at_least_once allows (it may count a replayed epoch twice in a table).
    tolerated: Vec<String>,
}

impl Report {
    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            eprintln!("violation: {what}");
        }
        self.violations.push(what);
    }
}

/// The model: the input, per partition and per key, in order.
struct Model {
    /// Input events per partition, in offset order: `(key, event)`.
    partitions: BTreeMap<i32, Vec<(u32, Event)>>,
    /// Amounts per key, in input order.
    amounts: HashMap<u32, Vec<i64>>,
    /// Events per `(key, window)`.
    windows: BTreeMap<(u32, u64), i64>,
}

impl Model {
    fn read(kafka: &KafkaConfig, prefix: &str, window: u64) -> AnyResult<Model> {
        let topic = input_topic(prefix);
        let mut model = Model {
            partitions: BTreeMap::new(),
            amounts: HashMap::new(),
            windows: BTreeMap::new(),
        };
        for r in read_topic(kafka, topic.name())? {
            let key = topic.decode_key(&r.key)?;
            let event = topic.decode_value(r.value.as_deref().unwrap_or_default())?;
            model.amounts.entry(key).or_default().push(event.amount);
            *model.windows.entry((key, event.ts / window)).or_default() += 1;
            model
                .partitions
                .entry(r.partition)
                .or_default()
                .push((key, event));
        }
        Ok(model)
    }

    fn records(&self) -> u64 {
        self.partitions.values().map(|p| p.len() as u64).sum()
    }

    fn table(&self, name: &str) -> BTreeMap<String, i64> {
        match name {
            "sum" => self
                .amounts
                .iter()
                .map(|(k, a)| (k.to_string(), a.iter().sum()))
                .collect(),
            "min" => self
                .amounts
                .iter()
                .map(|(k, a)| (k.to_string(), *a.iter().min().expect("a key has events")))
                .collect(),
            _ => self
                .windows
                .iter()
                .map(|((k, w), n)| (format!("[{k},{w}]"), *n))
                .collect(),
        }
    }
}

fn verify(args: &Verify) -> ExitCode {
    match verify_all(args) {
        Ok(report) => {
            let ok = report.violations.is_empty()
                && report.lost == 0
                && (report.duplicated == 0 || args.guarantee == Guarantee::AtLeastOnce);
            for t in &report.tolerated {
                eprintln!("tolerated under at_least_once: {t}");
            }
            println!(
                "verdict: {} ({} violation(s))",
                if ok { "PASS" } else { "FAIL" },
                report.violations.len()
            );
            println!(
                "records={} lost={} duplicated={} kills={} broker_kills={}",
                args.records, report.lost, report.duplicated, args.kills, args.broker_kills
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: verifying: {e}");
            println!(
                "records={} lost=? duplicated=? kills={} broker_kills={}",
                args.records, args.kills, args.broker_kills
            );
            ExitCode::from(2)
        }
    }
}

fn verify_all(args: &Verify) -> AnyResult<Report> {
    let kafka = KafkaConfig::new(&args.common.brokers);
    let prefix = &args.common.prefix;
    let mut report = Report::default();

    // 1. Wait until the application has committed all input.
    let input = format!("{prefix}-input");
    let input_ends = ends(&kafka, &input)?;
    let total: i64 = input_ends.values().sum();
    if total as u64 != args.records {
        report.violation(format!(
            "the input holds {total} events, the generator wrote {}",
            args.records
        ));
    }
    let started = Instant::now();
    loop {
        let progress = read_progress(&kafka, &format!("{prefix}-__progress"))?.unwrap_or_default();
        let at = progress.offsets.get(&input).cloned().unwrap_or_default();
        if input_ends.iter().all(|(p, end)| at.get(p) == Some(end)) {
            eprintln!(
                "all input committed (epoch {}), after waiting {:.1} s",
                progress.epoch,
                started.elapsed().as_secs_f64()
            );
            break;
        }
        if started.elapsed() > Duration::from_secs(args.timeout) {
            report.violation(format!(
                "after {} s the committed input positions are {at:?}, the input ends at {input_ends:?}",
                args.timeout
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // 2. No transaction left open on any output partition.
    for (topic, p, stable, end) in open_transactions(&args.common)? {
        report.violation(format!(
            "{topic}/{p}: a transaction is open (read_committed end {stable}, end {end})"
        ));
    }

    // 3. The model.
    let model = Model::read(&kafka, prefix, args.window)?;
    eprintln!(
        "model: {} events, {} keys",
        model.records(),
        model.amounts.len()
    );

    check_echo(&kafka, prefix, &model, &mut report)?;
    for table in TABLES {
        check_updates(&kafka, prefix, table, &model, args.guarantee, &mut report)?;
        check_table(&kafka, prefix, table, &model, args, &mut report)?;
    }
    let errors = read_topic(&kafka, &format!("{prefix}-__errors"))?;
    if !errors.is_empty() {
        report.violation(format!("{} dead letters", errors.len()));
    }
    Ok(report)
}

/// The echo equals the input, partition by partition, in order.
fn check_echo(
    kafka: &KafkaConfig,
    prefix: &str,
    model: &Model,
    report: &mut Report,
) -> AnyResult<()> {
    let topic = echo_topic(prefix);
    let mut echo: BTreeMap<i32, Vec<(u32, Event)>> = BTreeMap::new();
    for r in read_topic(kafka, topic.name())? {
        let key = topic.decode_key(&r.key)?;
        let event = topic.decode_value(r.value.as_deref().unwrap_or_default())?;
        echo.entry(r.partition).or_default().push((key, event));
    }
    let (mut lost, mut duplicated) = (0, 0);
    for p in 0..PARTITIONS {
        let input = model
            .partitions
            .get(&p)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let output = echo.get(&p).map(Vec::as_slice).unwrap_or_default();
        if input == output {
            continue;
        }
        let wanted: BTreeSet<u64> = input.iter().map(|(_, e)| e.seq).collect();
        let mut seen = BTreeSet::new();
        let mut firsts = Vec::new();
        for (key, event) in output {
            if !wanted.contains(&event.seq) {
                report.violation(format!(
                    "echo/{p}: event {} is not in input partition {p}",
                    event.seq
                ));
            } else if !seen.insert(event.seq) {
                duplicated += 1;
            } else {
                firsts.push((*key, event.clone()));
            }
        }
        lost += (wanted.len() - seen.len()) as u64;
        let in_order = firsts.iter().zip(input).all(|(a, b)| a == b);
        if !in_order {
            report.violation(format!("echo/{p}: events out of order (or changed)"));
        }
    }
    eprintln!("echo: lost {lost}, duplicated {duplicated}");
    report.lost += lost;
    report.duplicated += duplicated;
    Ok(())
}

/// The updates of an aggregate table, per key: each is the aggregate after some prefix of the
/// key's input, the prefixes grow strictly, and the last update covers all input.
fn check_updates(
    kafka: &KafkaConfig,
    prefix: &str,
    table: &str,
    model: &Model,
    guarantee: Guarantee,
    report: &mut Report,
) -> AnyResult<()> {
    let mut updates: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in read_topic(kafka, &format!("{prefix}-{table}"))? {
        let key = String::from_utf8(r.key)?;
        match r.value {
            Some(v) => updates
                .entry(key)
                .or_default()
                .push(serde_json::from_slice(&v)?),
            None => report.violation(format!("{table}: a tombstone for {key}")),
        }
    }
    let (mut lost, mut duplicated, mut wrong) = (0u64, 0u64, 0u64);
    for (key, values) in &updates {
        // The aggregate after each prefix of the key's input (index i: after i+1 events).
        let prefixes: Vec<i64> = match table {
            "sum" | "min" => {
                let Ok(k) = key.parse::<u32>() else {
                    report.violation(format!("{table}: unexpected key {key}"));
                    continue;
                };
                let amounts = model.amounts.get(&k).map(Vec::as_slice).unwrap_or_default();
                let mut acc: Option<i64> = None;
                amounts
                    .iter()
                    .map(|&a| {
                        let next = match (table, acc) {
                            (_, None) => a,
                            ("sum", Some(s)) => s + a,
                            (_, Some(m)) => m.min(a),
                        };
                        acc = Some(next);
                        next
                    })
                    .collect()
            }
            _ => {
                let Ok((k, w)) = serde_json::from_str::<(u32, u64)>(key) else {
                    report.violation(format!("{table}: unexpected key {key}"));
                    continue;
                };
                let n = model.windows.get(&(k, w)).copied().unwrap_or(0);
                (1..=n).collect()
            }
        };
        // Each update must be the aggregate after a prefix longer than the previous update's
        // (for min, which repeats values, the longest prefix so far with that value).
        let mut at: Option<usize> = None;
        for &value in values {
            let from = at.map_or(0, |i| i + 1);
            match prefixes[from.min(prefixes.len())..]
                .iter()
                .position(|&x| x == value)
            {
                Some(i) => at = Some(from + i),
                None if guarantee == Guarantee::AtLeastOnce => duplicated += 1,
                None => wrong += 1,
            }
        }
        let last = values.last().copied();
        if last != prefixes.last().copied() {
            if guarantee == Guarantee::AtLeastOnce
                && table != "min"
                && last > prefixes.last().copied()
            {
                duplicated += 1;
            } else {
                lost += 1;
            }
        }
    }
    let expected_keys = model.table(table).len();
    let missing = expected_keys.saturating_sub(updates.len()) as u64;
    lost += missing;
    if wrong > 0 {
        report.violation(format!(
            "{table}: {wrong} update(s) are not the aggregate of a longer input prefix than the update before"
        ));
    }
    eprintln!(
        "{table} updates: {} keys, lost {lost}, duplicated {duplicated}",
        updates.len()
    );
    report.lost += lost;
    report.duplicated += duplicated;
    Ok(())
}

/// The final table, from its changelog and over HTTP, equals the model.
fn check_table(
    kafka: &KafkaConfig,
    prefix: &str,
    table: &str,
    model: &Model,
    args: &Verify,
    report: &mut Report,
) -> AnyResult<()> {
    let expected = model.table(table);
    let mut changelog: BTreeMap<String, i64> = BTreeMap::new();
    for r in read_topic(kafka, &format!("{prefix}-{table}-changelog"))? {
        let key: serde_json::Value = serde_json::from_slice(&r.key)?;
        let key = match key {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        match r.value {
            Some(v) => changelog.insert(key, serde_json::from_slice(&v)?),
            None => changelog.remove(&key),
        };
    }
    compare(
        table,
        "changelog",
        &changelog,
        &expected,
        args.guarantee,
        report,
    );
    if !args.http.is_empty() {
        let served = http_table(&args.http, table)?;
        compare(table, "HTTP", &served, &expected, args.guarantee, report);
        if served != changelog {
            report.violation(format!(
                "{table}: the table over HTTP differs from its changelog"
            ));
        }
    }
    Ok(())
}

/// Compares a final table with the model. Under at_least_once a replayed epoch may be counted
/// twice in a table (see docs/design.md), so larger sums and counts are tolerated there.
fn compare(
    table: &str,
    source: &str,
    actual: &BTreeMap<String, i64>,
    expected: &BTreeMap<String, i64>,
    guarantee: Guarantee,
    report: &mut Report,
) {
    if actual == expected {
        eprintln!(
            "{table} ({source}): {} keys, equal to the model",
            actual.len()
        );
        return;
    }
    let mut differ = 0;
    let mut over = 0;
    let mut example = None;
    for (key, want) in expected {
        let got = actual.get(key).copied();
        if got != Some(*want) {
            differ += 1;
            if got.is_some_and(|g| g > *want) && table != "min" {
                over += 1;
            }
            example.get_or_insert(format!("{key}: {got:?}, expected {want}"));
        }
    }
    let extra = actual.keys().filter(|k| !expected.contains_key(*k)).count();
    let what = format!(
        "{table} ({source}): {differ} of {} keys differ from the model, {extra} extra (e.g. {})",
        expected.len(),
        example.unwrap_or_default()
    );
    if guarantee == Guarantee::AtLeastOnce && differ == over && extra == 0 {
        report.tolerated.push(what);
    } else {
        report.violation(what);
    }
}

/// A table as served over HTTP: every page of every process's listing.
fn http_table(hosts: &[String], table: &str) -> AnyResult<BTreeMap<String, i64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut out = BTreeMap::new();
        for host in hosts {
            let mut after: Option<String> = None;
            loop {
                let mut request = client
                    .get(format!("http://{host}/api/table/{table}/"))
                    .query(&[("size", "1000")]);
                if let Some(a) = &after {
                    request = request.query(&[("after", a)]);
                }
                let page: serde_json::Value =
                    request.send().await?.error_for_status()?.json().await?;
                if let Some(results) = page["results"].as_object() {
                    for (k, v) in results {
                        out.insert(k.clone(), v.as_i64().ok_or("a non-integer value")?);
                    }
                }
                match page["next_after"].as_str() {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
        }
        Ok(out)
    })
}
