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
//! The application computes, from events `(key, {seq, amount, ts})`: an echo of the input; a
//! running sum and a running min per key (`scan`: one output per input event); a windowed count
//! per key (tumbling event-time windows); and a stream⋈table join of the events with a table of
//! rates per key. The sums, mins, counts and rates are also tables, served over HTTP and kept in
//! changelogs.
//!
//! Subcommands:
//! - `table`: writes the rates table's topic `<prefix>-rates` (one row per key);
//! - `generate`: writes `--records` events to `<prefix>-input`, at `--rate` per second;
//! - `app`: the application under test (every `faustus` flag, plus `--prefix`, `--window`);
//! - `await-committed`: waits until the application has committed all of a topic's input;
//! - `progress`: prints the last committed epoch;
//! - `open-transactions`: prints how many output partitions hold an open transaction;
//! - `verify`: waits until all input is committed and every process is ready (its tables restored),
//!   then checks every output against a model;
//! - `ports`: prints free TCP ports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use faustus::connectors::{
    connect, ensure_topics, partition_count, read_progress, read_to_end, DeliveryCounter,
    KafkaConfig, QuietContext, TopicSpec,
};
use faustus::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
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
    /// Writes the rates table's topic: one row per key.
    Table(TableCmd),
    /// Writes the input events.
    Generate(Generate),
    /// Runs the application under test (boxed: its flags are most of the command line).
    App(Box<AppCmd>),
    /// Prints the last committed epoch (0 before the first commit).
    Progress(Common),
    /// Waits until the application has committed every record of `<prefix>-<topic>`.
    AwaitCommitted {
        #[command(flatten)]
        common: Common,
        /// The input topic, without the prefix (`input` or `rates`).
        #[arg(long)]
        topic: String,
        /// The application id whose progress to watch (default: the prefix).
        #[arg(long)]
        app_id: Option<String>,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Prints how many output partitions hold an open transaction (read_committed end <
    /// read_uncommitted end).
    OpenTransactions(Common),
    /// Waits until the committing process has just begun a commit, and prints the progress
    /// topic's end then (exit status 1 after `--timeout`): the driver's aim. It probes
    /// watermarks only, every 10 ms: the echo's end and read_committed end (summed over its
    /// partitions), then the progress topic's end. A commit has just begun when the echo was
    /// quiet in one probe and is written in the next: under exactly_once, no transaction open,
    /// then one open; under at_least_once, the end still, then grown while the progress topic
    /// did not. The commit then still has its writing and its hold (`CHAOS_HOLD_MS`) ahead; a
    /// transaction seen open later may already be committing, which a kill cannot interrupt.
    AwaitCommit {
        #[command(flatten)]
        common: Common,
        /// The guarantee the application runs with.
        #[arg(long)]
        guarantee: Guarantee,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Prints the progress topic's end (the number of progress records written).
    ProgressEnd(Common),
    /// Waits until all input is committed, checks every output, prints the result line.
    Verify(Verify),
    /// Deletes every topic of the prefix (a broker with fewer partitions restarts faster).
    DeleteTopics(Common),
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
struct TableCmd {
    #[command(flatten)]
    common: Common,
    /// Distinct keys.
    #[arg(long, default_value_t = KEYS)]
    keys: u32,
}

#[derive(clap::Args)]
struct Generate {
    #[command(flatten)]
    common: Common,
    /// Events to write.
    #[arg(long, env = "CHAOS_RECORDS", default_value_t = 1_000_000)]
    records: u64,
    /// Distinct keys.
    #[arg(long, default_value_t = KEYS)]
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
    // Text or JSON lines (`--log-format` of the `app` command), filtered by `RUST_LOG`.
    let outcome = match faustus::logging::parse_args::<Cli>("info").command {
        Command::Table(t) => write_rates(&t),
        Command::Generate(g) => generate(&g),
        Command::AwaitCommitted {
            common,
            topic,
            app_id,
            timeout,
        } => {
            let kafka = KafkaConfig::new(&common.brokers);
            let topic = format!("{}-{topic}", common.prefix);
            let app_id = app_id.unwrap_or(common.prefix);
            await_committed(&kafka, &app_id, &topic, Duration::from_secs(timeout)).and_then(
                |done| match done {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.into()),
                },
            )
        }
        Command::App(a) => app(*a),
        Command::Progress(c) => progress(&c).map(|p| println!("{p}")),
        Command::OpenTransactions(c) => open_transactions(&c).map(|open| {
            println!("{}", open.len());
            for (topic, partition, committed, end) in open {
                eprintln!("open: {topic}/{partition}: read_committed end {committed} < end {end}");
            }
        }),
        Command::AwaitCommit {
            common,
            guarantee,
            timeout,
        } => match await_commit(&common, guarantee, Duration::from_secs(timeout)) {
            Ok(Some(progress)) => {
                println!("{progress}");
                Ok(())
            }
            Ok(None) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::ProgressEnd(c) => {
            Probe::new(&c)
                .and_then(|p| p.probe())
                .map(|(_, _, progress)| {
                    println!("{progress}");
                })
        }
        Command::Verify(v) => return verify(&v),
        Command::DeleteTopics(c) => delete_topics(&c),
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

/// Distinct keys (the default).
const KEYS: u32 = 10_000;

fn rates_topic(prefix: &str) -> Topic<u32, i64> {
    Topic::new(format!("{prefix}-rates")).partitions(PARTITIONS)
}

/// The rate of a key, in the rates table.
fn rate(key: u32) -> i64 {
    i64::from(key % 97) + 1
}

fn joined_topic(prefix: &str) -> Topic<u32, (Event, i64)> {
    Topic::new(format!("{prefix}-joined")).partitions(PARTITIONS)
}

/// The running aggregates (`scan`), by name: `<prefix>-running-<name>` holds one output per
/// input event, and the table `<name>` the latest value per key.
const RUNNING: [&str; 2] = ["sum", "min"];

/// The tables checked against the model, by name.
const TABLES: [&str; 4] = ["sum", "min", "wcount", "rates"];

/// Every topic the application writes (what must hold no open transaction): every topic of the
/// prefix but the inputs.
fn output_topics(kafka: &KafkaConfig, prefix: &str) -> AnyResult<Vec<String>> {
    let inputs = [format!("{prefix}-input"), format!("{prefix}-rates")];
    let mut topics = prefixed_topics(kafka, prefix)?;
    topics.retain(|t| !inputs.contains(t));
    Ok(topics)
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

/// Creates input topic `topic` if missing, and a producer for it (idempotent, as every faustus
/// producer: a broker restart neither loses nor repeats input, and order per partition holds).
/// The topic is replicated as the application replicates the topics it creates: 3 replicas with
/// 2 in sync, or fewer on a smaller cluster, so that on a cluster the input survives the loss
/// of a broker too (idempotence implies `acks=all`).
fn input_producer(
    kafka: &KafkaConfig,
    topic: &str,
) -> AnyResult<ThreadedProducer<DeliveryCounter>> {
    let replicas = i32::try_from(connect(kafka)?)?.clamp(1, 3);
    let spec = TopicSpec::new(topic, PARTITIONS).replicated(replicas, replicas.min(2));
    ensure_topics(kafka, &[spec])?;
    Ok(kafka
        .producer()
        .set("message.timeout.ms", "600000")
        .create_with_context(DeliveryCounter::default())?)
}

/// Sends one record, waiting while the producer's queue is full.
fn send(
    producer: &ThreadedProducer<DeliveryCounter>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> AnyResult<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Flushes the producer; an error if any record was not delivered.
fn flush(producer: &ThreadedProducer<DeliveryCounter>) -> AnyResult<()> {
    producer.flush(Duration::from_secs(600))?;
    match producer.context().failed() {
        0 => Ok(()),
        failed => Err(format!("{failed} records were not delivered").into()),
    }
}

fn write_rates(args: &TableCmd) -> AnyResult<()> {
    let kafka = KafkaConfig::new(&args.common.brokers);
    let topic = rates_topic(&args.common.prefix);
    let producer = input_producer(&kafka, topic.name())?;
    for key in 0..args.keys {
        let (k, v) = (topic.encode_key(&key)?, topic.encode_value(&rate(key))?);
        send(
            &producer,
            BaseRecord::to(topic.name()).key(&k[..]).payload(&v[..]),
        )?;
    }
    flush(&producer)
}

fn generate(args: &Generate) -> AnyResult<()> {
    let kafka = KafkaConfig::new(&args.common.brokers);
    let topic = input_topic(&args.common.prefix);
    let producer = input_producer(&kafka, topic.name())?;
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
        let (k, v) = (topic.encode_key(&key)?, topic.encode_value(&event)?);
        send(
            &producer,
            BaseRecord::to(topic.name()).key(&k[..]).payload(&v[..]),
        )?;
    }
    flush(&producer)?;
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
    let rates = rates_topic(&prefix);
    let joined = joined_topic(&prefix);
    let running_sums = Topic::<u32, i64>::new(format!("{prefix}-running-sum"));
    let running_mins = Topic::<u32, i64>::new(format!("{prefix}-running-min"));
    let wcounts = Topic::<(u32, Window), i64>::new(format!("{prefix}-wcount"));
    // Event time is the sequence number. Which events are late depends on how far apart in time
    // the partitions are read, which kills and restarts change: windows here accept events for
    // the whole run (a grace period longer than it) and keep their rows, so the final table
    // holds every window and a model can predict it.
    let size = Duration::from_millis(window);
    let forever = Duration::from_secs(u64::from(u32::MAX));
    let running = app.start(move |df| {
        let rates = df.table(&rates, "rates").public();
        let events = df.stream(&input);
        events.to_topic(&echo);
        let amounts = events.clone().map(|key, e| (key, e.amount));
        let (sums, running) = amounts.clone().scan("sum", |_, sum: Option<&i64>, a| {
            sum.copied().unwrap_or(0) + a
        });
        sums.public();
        running.to_topic(&running_sums);
        let (mins, running) = amounts.scan("min", |_, min: Option<&i64>, a| {
            min.map_or(a, |m| (*m).min(a))
        });
        mins.public();
        running.to_topic(&running_mins);
        events
            .clone()
            .event_time(|_, e| e.ts)
            .grace(forever)
            .tumbling(size)
            .expires(forever)
            .count("wcount")
            .public()
            .to_topic(&wcounts);
        events.join(&rates).to_topic(&joined);
    })?;
    if let Some(addr) = running.http_addr() {
        log::info!("chaos app serving tables on http://{addr}/api/table/");
    }
    let stats = running.commit_stats();
    running.run_until_signal()?;
    if let Some(stats) = stats {
        eprintln!("commit stats: {}", stats.summary());
    }
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
    Ok(read_progress(&kafka, &topic, Duration::from_secs(180))?.map_or(0, |p| p.epoch))
}

/// Waits until the committed progress of application `app_id` holds the end of every partition
/// of input `topic`;
/// `Ok(epoch)` then, or `Err(what was committed instead)` after `timeout`.
fn await_committed(
    kafka: &KafkaConfig,
    app_id: &str,
    topic: &str,
    timeout: Duration,
) -> AnyResult<Result<u64, String>> {
    let ends = ends(kafka, topic)?;
    let started = Instant::now();
    let progress_topic = format!("{app_id}-__progress");
    loop {
        let progress = match partition_count(kafka, &progress_topic)? {
            Some(_) => {
                read_progress(kafka, &progress_topic, Duration::from_secs(180))?.unwrap_or_default()
            }
            None => Default::default(),
        };
        let at = progress.offsets.get(topic).cloned().unwrap_or_default();
        if ends
            .iter()
            .all(|(p, end)| *end == 0 || at.get(p) == Some(end))
        {
            return Ok(Ok(progress.epoch));
        }
        if started.elapsed() > timeout {
            return Ok(Err(format!(
                "after {timeout:?} the committed positions of `{topic}` are {at:?}, its end is {ends:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every topic whose name starts with `<prefix>-`.
fn prefixed_topics(kafka: &KafkaConfig, prefix: &str) -> AnyResult<Vec<String>> {
    let consumer = watermark_consumer(kafka, "read_uncommitted")?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(30))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|t| t.starts_with(&format!("{prefix}-")))
        .collect())
}

fn delete_topics(common: &Common) -> AnyResult<()> {
    let kafka = KafkaConfig::new(&common.brokers);
    let topics = prefixed_topics(&kafka, &common.prefix)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let admin: AdminClient<DefaultClientContext> = kafka.client().create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    for result in runtime.block_on(admin.delete_topics(&names, &options))? {
        if let Err((topic, code)) = result {
            eprintln!("deleting `{topic}`: {code}");
        }
    }
    eprintln!("deleted {} topics", names.len());
    Ok(())
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

/// Watermark readers for the driver's aim ([`await_commit`]).
struct Probe {
    committed: BaseConsumer<QuietContext>,
    uncommitted: BaseConsumer<QuietContext>,
    echo: String,
    progress: String,
}

impl Probe {
    fn new(common: &Common) -> AnyResult<Probe> {
        let kafka = KafkaConfig::new(&common.brokers);
        Ok(Probe {
            committed: watermark_consumer(&kafka, "read_committed")?,
            uncommitted: watermark_consumer(&kafka, "read_uncommitted")?,
            echo: echo_topic(&common.prefix).name().to_string(),
            progress: format!("{}-__progress", common.prefix),
        })
    }

    /// The echo's end and read_committed end (summed over its partitions), then the progress
    /// topic's end.
    fn probe(&self) -> AnyResult<(i64, i64, i64)> {
        let timeout = Duration::from_secs(30);
        let (mut end, mut stable) = (0, 0);
        for p in 0..PARTITIONS {
            end += self.uncommitted.fetch_watermarks(&self.echo, p, timeout)?.1;
            stable += self.committed.fetch_watermarks(&self.echo, p, timeout)?.1;
        }
        let progress = self
            .uncommitted
            .fetch_watermarks(&self.progress, 0, timeout)?
            .1;
        Ok((end, stable, progress))
    }
}

/// Waits until the committing process has just begun a commit (see `Command::AwaitCommit`); the
/// progress topic's end then, or `None` after `timeout`.
fn await_commit(
    common: &Common,
    guarantee: Guarantee,
    timeout: Duration,
) -> AnyResult<Option<i64>> {
    let probe = Probe::new(common)?;
    let started = Instant::now();
    // The last probe, if the echo was quiet in it (exactly_once: no transaction open;
    // at_least_once: its end as in the probe before).
    let mut quiet: Option<(i64, i64, i64)> = None;
    let mut last_end: Option<i64> = None;
    while started.elapsed() < timeout {
        // The broker may not answer for a moment (it is being restarted): probe again.
        let Ok(now) = probe.probe() else {
            quiet = None;
            last_end = None;
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let (end, stable, progress) = now;
        if let Some((end_before, _, progress_before)) = quiet {
            let begun = match guarantee {
                Guarantee::ExactlyOnce => end > stable,
                Guarantee::AtLeastOnce => end > end_before && progress == progress_before,
            };
            if begun {
                return Ok(Some(progress));
            }
        }
        let still = match guarantee {
            Guarantee::ExactlyOnce => end == stable,
            Guarantee::AtLeastOnce => last_end == Some(end),
        };
        quiet = still.then_some(now);
        last_end = Some(end);
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(None)
}

/// Output partitions whose read_committed end (the last stable offset) is below their end:
/// `(topic, partition, read_committed end, read_uncommitted end)`.
fn open_transactions(common: &Common) -> AnyResult<Vec<(String, i32, i64, i64)>> {
    let kafka = KafkaConfig::new(&common.brokers);
    let committed = watermark_consumer(&kafka, "read_committed")?;
    let uncommitted = watermark_consumer(&kafka, "read_uncommitted")?;
    let timeout = Duration::from_secs(30);
    let mut open = Vec::new();
    for topic in output_topics(&kafka, &common.prefix)? {
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
        let (_, end) = consumer.fetch_watermarks(topic, p, Duration::from_secs(30))?;
        ends.insert(p, end);
    }
    Ok(ends)
}

/// A key as the verifier compares it: `k` for a key, `[k,start]` for a window of a key. Accepts
/// a key's JSON in any form faustus writes it (changelog, topic, HTTP listing).
fn canonical(key: &serde_json::Value) -> Option<String> {
    match key {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) => canonical(&serde_json::from_str(s).ok()?),
        serde_json::Value::Array(pair) => match pair.as_slice() {
            [k, window] => Some(format!("[{},{}]", k.as_u64()?, window["start"].as_u64()?)),
            _ => None,
        },
        _ => None,
    }
}

/// What the verifier found.
#[derive(Default)]
struct Report {
    lost: u64,
    duplicated: u64,
    /// Failed checks other than loss and duplication (open transactions, order, extra or wrong
    /// records, HTTP ≠ changelog, ...).
    violations: Vec<String>,
    /// Findings at_least_once allows (it may count a replayed epoch twice in a table).
    tolerated: Vec<String>,
}

impl Report {
    /// Adds what one check found lost and duplicated, and says so.
    fn count(&mut self, check: &str, lost: u64, duplicated: u64) {
        eprintln!("{check}: lost {lost}, duplicated {duplicated}");
        self.lost += lost;
        self.duplicated += duplicated;
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            eprintln!("violation: {what}");
        }
        self.violations.push(what);
    }
}

/// The model: the input, per partition and per key, in order.
struct Model {
    /// The application's prefix.
    prefix: String,
    /// Input events per partition, in offset order: `(key, event)`.
    partitions: BTreeMap<i32, Vec<(u32, Event)>>,
    /// Amounts per key, in input order.
    amounts: HashMap<u32, Vec<i64>>,
    /// Events per `(key, window start)`.
    windows: BTreeMap<(u32, u64), i64>,
    /// The rates table.
    rates: BTreeMap<u32, i64>,
}

impl Model {
    fn read(kafka: &KafkaConfig, prefix: &str, window: u64) -> AnyResult<Model> {
        let topic = input_topic(prefix);
        let mut model = Model {
            prefix: prefix.to_string(),
            partitions: BTreeMap::new(),
            amounts: HashMap::new(),
            windows: BTreeMap::new(),
            rates: BTreeMap::new(),
        };
        for r in read_topic(kafka, topic.name())? {
            let key = topic.decode_key(&r.key)?;
            let event = topic.decode_value(r.value.as_deref().unwrap_or_default())?;
            model.amounts.entry(key).or_default().push(event.amount);
            let start = event.ts - event.ts % window;
            *model.windows.entry((key, start)).or_default() += 1;
            model
                .partitions
                .entry(r.partition)
                .or_default()
                .push((key, event));
        }
        let rates = rates_topic(prefix);
        for r in read_topic(kafka, rates.name())? {
            let key = rates.decode_key(&r.key)?;
            let rate = rates.decode_value(r.value.as_deref().unwrap_or_default())?;
            model.rates.insert(key, rate);
        }
        Ok(model)
    }

    fn records(&self) -> u64 {
        self.partitions.values().map(|p| p.len() as u64).sum()
    }

    /// The running aggregate `name` of each key: its value after each of the key's events.
    fn running(&self, name: &str) -> HashMap<u32, Vec<i64>> {
        self.amounts
            .iter()
            .map(|(k, amounts)| {
                let mut acc: Option<i64> = None;
                let values = amounts
                    .iter()
                    .map(|&a| {
                        let next = match (name, acc) {
                            (_, None) => a,
                            ("sum", Some(s)) => s + a,
                            (_, Some(m)) => m.min(a),
                        };
                        acc = Some(next);
                        next
                    })
                    .collect();
                (*k, values)
            })
            .collect()
    }

    /// The final table `name`, by canonical key.
    fn table(&self, name: &str) -> BTreeMap<String, i64> {
        match name {
            "sum" | "min" => self
                .running(name)
                .into_iter()
                .map(|(k, values)| (k.to_string(), *values.last().expect("a key has events")))
                .collect(),
            "rates" => self
                .rates
                .iter()
                .map(|(k, r)| (k.to_string(), *r))
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
    let input = input_topic(prefix);
    let total: i64 = ends(&kafka, input.name())?.values().sum();
    if total as u64 != args.records {
        report.violation(format!(
            "the input holds {total} events, the generator wrote {}",
            args.records
        ));
    }
    let started = Instant::now();
    match await_committed(
        &kafka,
        prefix,
        input.name(),
        Duration::from_secs(args.timeout),
    )? {
        Ok(epoch) => eprintln!(
            "all input committed (epoch {epoch}), after waiting {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => report.violation(e),
    }

    // 1b. Every process has restored its tables: a restarted process serves them only then
    // (before, it answers 503 "restoring"), and the committed progress above may well have
    // been committed by the run before it.
    if !args.http.is_empty() {
        let started = Instant::now();
        match await_ready(&args.http, Duration::from_secs(args.timeout))? {
            Ok(()) => eprintln!(
                "every process ready, after waiting {:.1} s",
                started.elapsed().as_secs_f64()
            ),
            Err(e) => report.violation(e),
        }
    }

    // 2. No transaction left open on any output partition.
    for (topic, p, stable, end) in open_transactions(&args.common)? {
        report.violation(format!(
            "{topic}/{p}: a transaction is open (read_committed end {stable}, end {end})"
        ));
    }

    // 3. Every output against the model.
    let model = Model::read(&kafka, prefix, args.window)?;
    eprintln!(
        "model: {} events, {} keys",
        model.records(),
        model.amounts.len()
    );
    let echo = echo_topic(prefix);
    check_per_partition(&kafka, "echo", &model, &mut report, |r| {
        Ok((echo.decode_key(&r.key)?, echo.decode_value(value(r)?)?))
    })?;
    let joined = joined_topic(prefix);
    check_per_partition(&kafka, "joined", &model, &mut report, |r| {
        let key = joined.decode_key(&r.key)?;
        let (event, rate) = joined.decode_value(value(r)?)?;
        match model.rates.get(&key) {
            Some(&want) if want == rate => Ok((key, event)),
            want => {
                Err(format!("key {key} joined with rate {rate}, the table has {want:?}").into())
            }
        }
    })?;
    for name in RUNNING {
        check_running(&kafka, prefix, name, &model, args.guarantee, &mut report)?;
    }
    check_window_updates(&kafka, prefix, &model, args.guarantee, &mut report)?;
    for table in TABLES {
        check_table(&kafka, prefix, table, &model, args, &mut report)?;
    }
    let errors = read_topic(&kafka, &format!("{prefix}-__errors"))?;
    if !errors.is_empty() {
        report.violation(format!(
            "{} dead letters (late or undecodable events)",
            errors.len()
        ));
    }
    Ok(report)
}

/// A record's value; an error for a tombstone.
fn value(r: &Read) -> Result<&[u8], String> {
    r.value.as_deref().ok_or_else(|| "a tombstone".to_string())
}

/// An output that holds one record per input event, in the input's partitions (same key, same
/// partition count): partition by partition, it must equal the input, in order. `decode` turns
/// a record into `(key, event)`, or says what is wrong with it.
fn check_per_partition(
    kafka: &KafkaConfig,
    name: &str,
    model: &Model,
    report: &mut Report,
    decode: impl Fn(&Read) -> AnyResult<(u32, Event)>,
) -> AnyResult<()> {
    let prefix_topic = format!("{}-{name}", model.prefix);
    let mut output: BTreeMap<i32, Vec<(u32, Event)>> = BTreeMap::new();
    for r in read_topic(kafka, &prefix_topic)? {
        match decode(&r) {
            Ok(record) => output.entry(r.partition).or_default().push(record),
            Err(e) => report.violation(format!("{name}/{}: {e}", r.partition)),
        }
    }
    let (mut lost, mut duplicated) = (0, 0);
    for p in 0..PARTITIONS {
        let input = model
            .partitions
            .get(&p)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let out = output.get(&p).map(Vec::as_slice).unwrap_or_default();
        if input == out {
            continue;
        }
        let wanted: BTreeSet<u64> = input.iter().map(|(_, e)| e.seq).collect();
        let mut seen = BTreeSet::new();
        let mut firsts = Vec::new();
        for (key, event) in out {
            if !wanted.contains(&event.seq) {
                report.violation(format!(
                    "{name}/{p}: event {} is not in input partition {p}",
                    event.seq
                ));
            } else if !seen.insert(event.seq) {
                duplicated += 1;
            } else {
                firsts.push((*key, event.clone()));
            }
        }
        lost += (wanted.len() - seen.len()) as u64;
        // Leaving out repeats, what is there comes in input order.
        let mut rest = input.iter();
        if !firsts.iter().all(|f| rest.any(|i| i == f)) {
            report.violation(format!("{name}/{p}: events out of order (or changed)"));
        }
    }
    report.count(name, lost, duplicated);
    Ok(())
}

/// The running aggregate `name`: per key, the i-th output is the aggregate after the key's i-th
/// input event.
fn check_running(
    kafka: &KafkaConfig,
    prefix: &str,
    name: &str,
    model: &Model,
    guarantee: Guarantee,
    report: &mut Report,
) -> AnyResult<()> {
    let topic = Topic::<u32, i64>::new(format!("{prefix}-running-{name}"));
    let mut outputs: HashMap<u32, Vec<i64>> = HashMap::new();
    for r in read_topic(kafka, topic.name())? {
        let key = topic.decode_key(&r.key)?;
        outputs
            .entry(key)
            .or_default()
            .push(topic.decode_value(value(&r)?)?);
    }
    let expected = model.running(name);
    let (mut lost, mut duplicated, mut wrong) = (0u64, 0u64, 0u64);
    for (key, want) in &expected {
        let got = outputs.remove(key).unwrap_or_default();
        if &got == want {
            continue;
        }
        if guarantee == Guarantee::AtLeastOnce {
            // A replay counts inputs twice in the restored state, so every later value of the
            // key is off: count outputs against inputs (one output per input), and report the
            // wrong values as tolerated.
            lost += want.len().saturating_sub(got.len()) as u64;
            duplicated += got.len().saturating_sub(want.len()) as u64;
            if got.iter().zip(want).any(|(g, w)| g != w) {
                wrong += 1;
            }
            continue;
        }
        // By sequence: the i-th output is the aggregate after the key's i-th input (values
        // repeat, a running min's most of all, so matching by value would take a repeated output
        // for the next one). Outputs past the inputs are duplicates, inputs past the outputs
        // are lost, and a position that holds another value is wrong.
        duplicated += got.len().saturating_sub(want.len()) as u64;
        lost += want.len().saturating_sub(got.len()) as u64;
        wrong += got.iter().zip(want).filter(|(g, w)| g != w).count() as u64;
    }
    let extra: usize = outputs.values().map(Vec::len).sum();
    if extra > 0 {
        report.violation(format!(
            "running-{name}: {extra} outputs for keys without input"
        ));
    }
    match guarantee {
        Guarantee::AtLeastOnce if wrong > 0 => report.tolerated.push(format!(
            "running-{name}: the outputs of {wrong} keys differ from the model after a replay (repeated outputs; sums that count an input twice)"
        )),
        Guarantee::ExactlyOnce if wrong > 0 => report.violation(format!(
            "running-{name}: {wrong} outputs are not the aggregate after the input at their position in their key's sequence"
        )),
        _ => {}
    }
    report.count(&format!("running-{name}"), lost, duplicated);
    Ok(())
}

/// The windowed count's updates, per window: they grow strictly, and the last is the window's
/// count in the model.
fn check_window_updates(
    kafka: &KafkaConfig,
    prefix: &str,
    model: &Model,
    guarantee: Guarantee,
    report: &mut Report,
) -> AnyResult<()> {
    let expected = model.table("wcount");
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let (mut lost, mut duplicated, mut shrank) = (0u64, 0u64, 0u64);
    for r in read_topic(kafka, &format!("{prefix}-wcount"))? {
        let key = serde_json::from_slice(&r.key)
            .ok()
            .and_then(|k| canonical(&k))
            .ok_or("a wcount key that is not [key, window]")?;
        let Some(v) = r.value else {
            report.violation(format!("wcount: a tombstone for {key}"));
            continue;
        };
        let n: i64 = serde_json::from_slice(&v)?;
        if last.insert(key, n).is_some_and(|before| n <= before) {
            shrank += 1;
        }
    }
    for (key, want) in &expected {
        match last.get(key) {
            Some(n) if n == want => {}
            Some(n) if n > want => duplicated += (n - want) as u64,
            Some(n) => lost += (want - n) as u64,
            None => lost += *want as u64,
        }
    }
    let extra: Vec<&String> = last.keys().filter(|k| !expected.contains_key(*k)).collect();
    if let Some(first) = extra.first() {
        report.violation(format!(
            "wcount: updates for {} windows the input has no event in (e.g. {first})",
            extra.len()
        ));
    }
    if shrank > 0 {
        let what = format!("wcount: {shrank} updates do not grow the window's count");
        match guarantee {
            Guarantee::AtLeastOnce => report.tolerated.push(what),
            Guarantee::ExactlyOnce => report.violation(what),
        }
    }
    report.count("wcount updates", lost, duplicated);
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
        let key = serde_json::from_slice(&r.key)
            .ok()
            .and_then(|k| canonical(&k))
            .ok_or_else(|| format!("{table}: a changelog key that does not decode"))?;
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
    // Every process answers for the whole table (its own keys and its peers'): each one's
    // answer is held against the model and the changelog on its own.
    for host in &args.http {
        let served = http_table(host, table)?;
        let source = format!("HTTP of {host}");
        compare(table, &source, &served, &expected, args.guarantee, report);
        if served != changelog {
            report.violation(format!(
                "{table}: the table over {source} differs from its changelog"
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
    let (mut differ, mut over) = (0, 0);
    let mut example = None;
    for (key, want) in expected {
        let got = actual.get(key).copied();
        if got != Some(*want) {
            differ += 1;
            if got.is_some_and(|g| g > *want) && table != "min" && table != "rates" {
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

/// Waits until every process answers `GET /api/ready` with 200: `Ok(Err(what was answered
/// instead))` after `timeout`.
fn await_ready(hosts: &[String], timeout: Duration) -> AnyResult<Result<(), String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let started = Instant::now();
        let mut waiting: Vec<&String> = hosts.iter().collect();
        let mut last = BTreeMap::new();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for host in waiting {
                let answer = client.get(format!("http://{host}/api/ready")).send().await;
                match answer {
                    Ok(r) if r.status().is_success() => continue,
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        last.insert(host.clone(), format!("{status} {body}"));
                    }
                    Err(e) => {
                        last.insert(host.clone(), e.to_string());
                    }
                }
                still.push(host);
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if started.elapsed() > timeout {
                let answers: Vec<String> = waiting
                    .iter()
                    .map(|h| format!("{h}: {}", last.get(*h).map_or("", String::as_str)))
                    .collect();
                return Ok(Err(format!(
                    "after {timeout:?} not every process is ready: {}",
                    answers.join("; ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Ok(()))
    })
}

/// A table as one process serves it over HTTP, by canonical key: every page of its listing. A
/// key listed twice is an error.
fn http_table(host: &str, table: &str) -> AnyResult<BTreeMap<String, i64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut out = BTreeMap::new();
        {
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
                        let key =
                            canonical(&serde_json::Value::String(k.clone())).ok_or_else(|| {
                                format!("{table}: an HTTP key `{k}` that does not parse")
                            })?;
                        let value = v.as_i64().ok_or("a non-integer value")?;
                        if out.insert(key, value).is_some() {
                            return Err(format!("{table}: {host} lists key `{k}` twice").into());
                        }
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
