//! Open-loop end-to-end latency: feed a system its workload's input at a fixed rate, match
//! every output record to the input record that caused it, and take the time from that input's
//! **scheduled** send time to the output's arrival (so a system that falls behind is charged for
//! the queue it builds up, not measured only when it is ready).
//!
//! One run ([`run`]): fresh input and output topics (4 partitions, unique names), the system
//! started with the contract's flags pointing at them, a priming phase (the first
//! [`PRIMING_EVENTS`] events of the input, sent at once, until the first output appears: the
//! system is up), then `rate` events per second for `warmup + seconds` seconds, the outputs
//! consumed and matched as they arrive; samples of inputs scheduled during the warm-up are
//! discarded. Then the system is stopped (SIGTERM, SIGKILL after 10 s) and every topic of the
//! run is deleted (inputs, outputs, and the system's internal topics, which are named after the
//! run's application id).
//!
//! How an output record answers inputs, per workload (an input is answered once its effect is
//! visible; an update that covers several inputs, because a system coalesced updates, answers
//! all of them at once):
//!
//! | output | answers |
//! |---|---|
//! | W0 bid, W1 q1, W1 q2 | the input bid with that content (the n-th such output, the n-th such bid) |
//! | W2 `(word, n)` | the first `n` occurrences of `word` |
//! | W3 q5 `([auction, ws], n)` | the first `n` bids of `auction` in window `ws` |
//! | W3 q7 `(ws, max)` | the bids of window `ws` that raised its maximum, up to price `max` |
//! | W4 q3 auction id | the later of the auction and its seller |
//! | W4 q8 `(person, auction)` | the later of the person and the auction |
//!
//! Every input knows how many answers it should get (the same rules, applied to the inputs).
//! An input scheduled after the warm-up that is still not answered when the run ends is
//! **missing**: it is counted (`missing`), and it enters the percentiles with the time from its
//! scheduled send to the end of the drain, a lower bound of its latency. So a system that falls
//! behind and never answers is not measured only on the inputs it did answer.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faustus_connectors::{ensure_topics, kafka_partition, KafkaConfig, QuietContext, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::process::System;
use crate::{
    hopping_starts, window_start, Bid, Event, Q1, Q2, Q3, Q5_HOP_MS, Q5_SIZE_MS, Q7_SIZE_MS, Q8,
};

/// Events sent at once before the timed run, until the system answers.
pub const PRIMING_EVENTS: usize = 1_000;
/// How long the system may take to answer the priming events.
const PRIMING_DEADLINE: Duration = Duration::from_secs(180);
/// After the last scheduled input: stop waiting for outputs once none arrived for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(3);
/// After the last scheduled input: stop waiting for outputs after this long in any case.
const DRAIN_MAX: Duration = Duration::from_secs(60);
/// Partitions of every topic of a run.
const PARTITIONS: i32 = 4;
/// Vocabulary of the W2 words (the contract's default).
pub const VOCABULARY: usize = 100_000;

/// What one latency run measures.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The workload: `W0` .. `W4`.
    pub workload: String,
    /// `exactly_once` or `at_least_once` (passed to the system; outputs are read
    /// `read_committed` under `exactly_once`).
    pub guarantee: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// Input events per second.
    pub rate: f64,
    /// What the rate is, for the report: `low` (half the slowest system's throughput) or `high`
    /// (half of Kafka Streams').
    pub load: String,
    /// Seconds measured, after the warm-up.
    pub seconds: f64,
    /// Seconds of warm-up, whose samples are discarded.
    pub warmup_seconds: f64,
    /// The system's name, for the result.
    pub system: String,
    /// The system's command and its fixed arguments.
    pub command: Vec<String>,
    /// Where to write the latency over time, if anywhere: a CSV row per 100 ms of scheduled
    /// send time after the warm-up (`at_s,samples,p50_ms,max_ms`), to tell stalls from a steady
    /// spread.
    pub series: Option<std::path::PathBuf>,
}

/// The result of a run, as appended to the results file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyResult {
    /// Always `latency`.
    pub kind: &'static str,
    /// The system.
    pub system: String,
    /// The workload.
    pub workload: String,
    /// The guarantee.
    pub guarantee: String,
    /// Input events per second.
    pub rate: f64,
    /// What the rate is: `low` or `high` (see [`Settings::load`]).
    pub load: String,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Samples after the warm-up, missing answers included.
    pub samples: usize,
    /// Answers due to inputs scheduled after the warm-up that never came (each counted in the
    /// percentiles as the time from its scheduled send to the end of the drain).
    pub missing: u64,
    /// Output records that matched no input.
    pub unmatched: u64,
}

/// One input record, ready to send.
struct Input {
    topic: usize,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// The run's topics.
struct Topics {
    /// Bids.
    bids: String,
    /// Auctions.
    auctions: String,
    /// Persons.
    persons: String,
    /// Words.
    words: String,
    /// Output topics of the workload.
    outputs: Vec<String>,
}

impl Topics {
    fn input(&self, index: usize) -> &str {
        [&self.bids, &self.auctions, &self.persons, &self.words][index]
    }
}

const BIDS: usize = 0;
const AUCTIONS: usize = 1;
const PERSONS: usize = 2;
const WORDS: usize = 3;

/// The output topic suffixes of a workload.
pub fn output_suffixes(workload: &str) -> Result<&'static [&'static str], String> {
    Ok(match workload {
        "W0" => &["w0"],
        "W1" => &["w1-q1", "w1-q2"],
        "W2" => &["w2"],
        "W3" => &["w3-q5", "w3-q7"],
        "W4" => &["w4-q3", "w4-q8"],
        other => {
            return Err(format!(
                "unknown workload `{other}`: use W0, W1, W2, W3 or W4"
            ))
        }
    })
}

fn json<T: Serialize>(x: &T) -> Vec<u8> {
    serde_json::to_vec(x).expect("contract types serialize")
}

/// The inputs with one identity, in send order, and how many outputs matched them so far.
type Occurrences = (Vec<usize>, usize);

/// Indexes the inputs, to find which one caused an output record.
#[derive(Default)]
pub struct Matcher {
    /// Per output topic index, canonical identity → input indices in send order, and how many
    /// outputs with that identity were matched so far (W0, W1: the n-th output with the content
    /// of the n-th input; W3 q7: the first).
    by_content: Vec<HashMap<Vec<u8>, Occurrences>>,
    /// W2: word → input indices in send order, and how many are answered.
    words: HashMap<String, Occurrences>,
    /// W3 q5: (auction, window start) → input indices in send order, and how many are answered.
    windows: HashMap<(u64, u64), Occurrences>,
    /// W3 q7: window start → (price, input index) of the bids that raised the window's maximum,
    /// in send order, and how many are answered.
    maxima: HashMap<u64, (Vec<(u64, usize)>, usize)>,
    /// W4: person id → (input index, answers its persons get: q3 and q8 state filter).
    persons: HashMap<u64, (usize, crate::Person)>,
    /// W4: auction id → (input index, seller).
    auctions: HashMap<u64, (usize, u64)>,
    /// Per input: the answers it should get.
    pub want: Vec<u32>,
}

/// The first `n` of `occurrences` not yet answered: they are answered now.
fn answer_up_to(occurrences: &mut Occurrences, n: usize) -> Vec<usize> {
    let (inputs, answered) = occurrences;
    let upto = n.min(inputs.len());
    let newly = inputs.get(*answered..upto).map(<[usize]>::to_vec);
    *answered = (*answered).max(upto);
    newly.unwrap_or_default()
}

impl Matcher {
    fn new(outputs: usize) -> Self {
        Matcher {
            by_content: (0..outputs).map(|_| HashMap::new()).collect(),
            ..Matcher::default()
        }
    }

    fn content(&mut self, output: usize, identity: Vec<u8>, input: usize) {
        self.by_content[output]
            .entry(identity)
            .or_default()
            .0
            .push(input);
        self.want[input] += 1;
    }

    /// Adds input `index` (event `event` or word `word`) for `workload`.
    fn add(&mut self, workload: &str, index: usize, event: Option<&Event>, word: Option<&str>) {
        if self.want.len() <= index {
            self.want.resize(index + 1, 0);
        }
        match (workload, event, word) {
            ("W0", Some(Event::Bid(b)), _) => self.content(0, json(b), index),
            ("W1", Some(Event::Bid(b)), _) => {
                self.content(0, json(&crate::q1(b)), index);
                if let Some(q2) = crate::q2(b) {
                    self.content(1, json(&q2), index);
                }
            }
            ("W2", _, Some(w)) => {
                self.words.entry(w.to_string()).or_default().0.push(index);
                self.want[index] += 1;
            }
            ("W3", Some(Event::Bid(b)), _) => {
                for ws in hopping_starts(b.date_time, Q5_SIZE_MS, Q5_HOP_MS) {
                    self.windows
                        .entry((b.auction, ws))
                        .or_default()
                        .0
                        .push(index);
                    self.want[index] += 1;
                }
                let ws = window_start(b.date_time, Q7_SIZE_MS);
                let (raised, _) = self.maxima.entry(ws).or_default();
                if raised.last().is_none_or(|&(max, _)| b.price > max) {
                    raised.push((b.price, index));
                    self.want[index] += 1;
                }
            }
            ("W4", Some(Event::Person(p)), _) => {
                self.persons.insert(p.id, (index, p.clone()));
            }
            ("W4", Some(Event::Auction(a)), _) => {
                self.auctions.insert(a.id, (index, a.seller));
                // The answers due: q3 and q8, on the later of the auction and its seller (a
                // person comes before the auctions it sells in the generated stream).
                if let Some((person, p)) = self.persons.get(&a.seller) {
                    let later = index.max(*person);
                    let due = u32::from(crate::q3_auction(a) && crate::q3_person(p))
                        + u32::from(a.date_time.abs_diff(p.date_time) <= crate::Q8_WITHIN_MS);
                    self.want[later] += due;
                }
            }
            _ => {}
        }
    }

    /// The inputs that output record `(key, value)` of output topic `output` answers now (none
    /// new: an update that repeats what was answered), or `None` when it answers no input.
    pub fn find(
        &mut self,
        workload: &str,
        output: usize,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Option<Vec<usize>> {
        fn parse<T: DeserializeOwned>(bytes: Option<&[u8]>) -> Option<T> {
            serde_json::from_slice(bytes?).ok()
        }
        let mut nth = |output: usize, identity: Vec<u8>| {
            let (inputs, matched) = self.by_content[output].get_mut(&identity)?;
            let input = inputs.get(*matched).copied();
            *matched += 1;
            input.map(|i| vec![i])
        };
        match (workload, output) {
            ("W0", 0) => nth(0, json(&parse::<Bid>(value)?)),
            ("W1", 0) => nth(0, json(&parse::<Q1>(value)?)),
            ("W1", 1) => nth(1, json(&parse::<Q2>(value)?)),
            ("W2", 0) => {
                let word: String = parse(key)?;
                let n: usize = parse(value)?;
                let occurrences = self.words.get_mut(&word)?;
                (n >= 1 && n <= occurrences.0.len()).then(|| answer_up_to(occurrences, n))
            }
            ("W3", 0) => {
                let window: (u64, u64) = parse(key)?;
                let n: usize = parse(value)?;
                let occurrences = self.windows.get_mut(&window)?;
                (n >= 1 && n <= occurrences.0.len()).then(|| answer_up_to(occurrences, n))
            }
            ("W3", 1) => {
                let ws: u64 = parse(key)?;
                let max: u64 = parse(value)?;
                let (raised, answered) = self.maxima.get_mut(&ws)?;
                let upto = raised.iter().position(|&(p, _)| p == max)? + 1;
                let newly = raised
                    .get(*answered..upto)
                    .map(|r| r.iter().map(|&(_, i)| i).collect())
                    .unwrap_or_default();
                *answered = (*answered).max(upto);
                Some(newly)
            }
            ("W4", 0) => {
                let id: u64 = parse(key)?;
                let _row: Q3 = parse(value)?;
                let (auction, seller) = *self.auctions.get(&id)?;
                Some(vec![auction.max(self.persons.get(&seller)?.0)])
            }
            ("W4", 1) => {
                let row: Q8 = parse(value)?;
                let (auction, _) = *self.auctions.get(&row.auction)?;
                Some(vec![auction.max(self.persons.get(&row.id)?.0)])
            }
            _ => None,
        }
    }
}

/// The inputs of `workload`: `total` records, in send order, and the matcher over them.
fn inputs(workload: &str, total: usize, outputs: usize) -> (Vec<Input>, Matcher) {
    let mut matcher = Matcher::new(outputs);
    matcher.want.reserve(total);
    let mut records = Vec::with_capacity(total);
    if workload == "W2" {
        for word in crate::zipf_words(VOCABULARY, total) {
            matcher.add(workload, records.len(), None, Some(&word));
            records.push(Input {
                topic: WORDS,
                key: None,
                value: json(&word),
            });
        }
        return (records, matcher);
    }
    let wanted = |e: &Event| match workload {
        "W4" => !matches!(e, Event::Bid(_)),
        _ => matches!(e, Event::Bid(_)),
    };
    // Generate in chunks until enough of the workload's events are there.
    let mut generated = 0;
    let mut chunk = total.max(1000) * 2;
    while records.len() < total {
        for event in crate::nexmark_events(generated + chunk).skip(generated) {
            if records.len() == total {
                break;
            }
            if !wanted(&event) {
                continue;
            }
            matcher.add(workload, records.len(), Some(&event), None);
            let (topic, key, value) = match &event {
                Event::Bid(b) => (BIDS, json(&b.auction), json(b)),
                Event::Auction(a) => (AUCTIONS, json(&a.id), json(a)),
                Event::Person(p) => (PERSONS, json(&p.id), json(p)),
            };
            records.push(Input {
                topic,
                key: Some(key),
                value,
            });
        }
        generated += chunk;
        chunk *= 2;
    }
    (records, matcher)
}

/// Nearest-rank quantile of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Deletes every topic whose name starts with `prefix`.
fn delete_topics(kafka: &KafkaConfig, prefix: &str) -> Result<(), String> {
    let consumer: BaseConsumer = kafka
        .client()
        .create()
        .map_err(|e| format!("creating a metadata client: {e}"))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|e| format!("listing topics: {e}"))?;
    let names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = kafka
        .client()
        .create()
        .map_err(|e| format!("creating an admin client: {e}"))?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    futures::executor::block_on(admin.delete_topics(&refs, &options))
        .map_err(|e| format!("deleting topics: {e}"))?;
    Ok(())
}

/// What the consumer thread hands back: latency samples (ms), unmatched outputs, answers per
/// input.
struct Consumed {
    samples: Vec<f64>,
    /// Each sample's scheduled send time (ns after the warm-up), in the order of `samples`.
    sent_at: Vec<u64>,
    unmatched: u64,
    got: Vec<u32>,
    /// One sample per missing answer (filled in after the drain).
    missing: Vec<f64>,
}

/// Runs one latency measurement.
pub fn run(settings: &Settings) -> Result<LatencyResult, String> {
    let suffixes = output_suffixes(&settings.workload)?;
    if !(settings.rate > 0.0 && settings.seconds > 0.0 && settings.warmup_seconds >= 0.0) {
        return Err("--rate and --seconds must be positive, --warmup-seconds not negative".into());
    }
    let (program, args) = settings
        .command
        .split_first()
        .ok_or("give the system's command after `--`")?;
    let exactly_once = match settings.guarantee.as_str() {
        "exactly_once" => true,
        "at_least_once" => false,
        other => {
            return Err(format!(
                "unknown guarantee `{other}`: use exactly_once or at_least_once"
            ))
        }
    };
    let kafka = KafkaConfig::new(&settings.brokers);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let run_id = format!(
        "lat-{}-{}-{}-{nanos}",
        settings.system,
        settings.workload.to_lowercase(),
        std::process::id()
    )
    .replace(
        |c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)),
        "-",
    );
    let prefix = format!("{run_id}-out-");
    let topics = Topics {
        bids: format!("{run_id}-in-bid"),
        auctions: format!("{run_id}-in-auction"),
        persons: format!("{run_id}-in-person"),
        words: format!("{run_id}-in-words"),
        outputs: suffixes.iter().map(|s| format!("{prefix}{s}")).collect(),
    };

    let scheduled = (settings.rate * (settings.warmup_seconds + settings.seconds)).ceil() as usize;
    let total = PRIMING_EVENTS + scheduled;
    eprintln!(
        "bench-latency: {} {} at {} events/s: generating {total} input records",
        settings.system, settings.workload, settings.rate
    );
    let (records, matcher) = inputs(&settings.workload, total, topics.outputs.len());

    let mut specs: Vec<TopicSpec> = (0..4)
        .map(|i| TopicSpec::new(topics.input(i), PARTITIONS))
        .collect();
    specs.extend(topics.outputs.iter().map(|t| TopicSpec::new(t, PARTITIONS)));
    ensure_topics(&kafka, &specs).map_err(|e| format!("creating the run's topics: {e}"))?;

    let outcome = measure(
        settings,
        &kafka,
        &topics,
        &run_id,
        &prefix,
        program,
        args,
        records,
        matcher,
        exactly_once,
    );
    if let Err(e) = delete_topics(&kafka, &run_id) {
        eprintln!("bench-latency: {e}");
    }
    if let Err(e) = crate::process::remove_local_state(&run_id) {
        eprintln!("bench-latency: removing the local state of {run_id}: {e}");
    }
    let consumed = outcome?;
    if consumed.samples.is_empty() {
        return Err(format!(
            "no output answered an input after the warm-up ({} answers missing, {} unmatched \
             outputs)",
            consumed.missing.len(),
            consumed.unmatched
        ));
    }
    let missing = consumed.missing.len() as u64;
    if let Some(path) = &settings.series {
        write_series(path, &consumed.sent_at, &consumed.samples)?;
    }
    let mut samples = consumed.samples;
    samples.extend_from_slice(&consumed.missing);
    samples.sort_by(f64::total_cmp);
    Ok(LatencyResult {
        kind: "latency",
        system: settings.system.clone(),
        workload: settings.workload.clone(),
        guarantee: settings.guarantee.clone(),
        rate: settings.rate,
        load: settings.load.clone(),
        p50_ms: quantile(&samples, 0.5),
        p99_ms: quantile(&samples, 0.99),
        samples: samples.len(),
        missing,
        unmatched: consumed.unmatched,
    })
}

/// Writes the samples as a series: one CSV row per 100 ms of scheduled send time, with the
/// number of samples, their median and their maximum (answers that never came are not in it).
fn write_series(path: &std::path::Path, sent_at: &[u64], samples: &[f64]) -> Result<(), String> {
    const BUCKET_NS: u64 = 100_000_000;
    let mut buckets: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (at, ms) in sent_at.iter().zip(samples) {
        buckets.entry(at / BUCKET_NS).or_default().push(*ms);
    }
    let mut csv = String::from("at_s,samples,p50_ms,max_ms\n");
    for (bucket, mut v) in buckets {
        v.sort_by(f64::total_cmp);
        csv.push_str(&format!(
            "{:.1},{},{:.1},{:.1}\n",
            bucket as f64 / 10.0,
            v.len(),
            quantile(&v, 0.5),
            v[v.len() - 1]
        ));
    }
    std::fs::write(path, csv).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Starts the system, primes it, feeds it on schedule and collects the samples.
#[allow(clippy::too_many_arguments)]
fn measure(
    settings: &Settings,
    kafka: &KafkaConfig,
    topics: &Topics,
    run_id: &str,
    prefix: &str,
    program: &str,
    args: &[String],
    records: Vec<Input>,
    mut matcher: Matcher,
    exactly_once: bool,
) -> Result<Consumed, String> {
    let mut system = System::spawn(
        Command::new(program)
            .args(args)
            .args(["--workload", &settings.workload])
            .args(["--guarantee", &settings.guarantee])
            .args(["--brokers", &settings.brokers])
            .args(["--app-id", run_id])
            .args(["--output-prefix", prefix])
            .args(["--bids", &topics.bids, "--auctions", &topics.auctions])
            .args(["--persons", &topics.persons, "--words", &topics.words]),
    )
    .map_err(|e| format!("starting `{program}`: {e}"))?;

    // Scheduled send times (ns since `base`), written by the producer, read by the consumer.
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..records.len()).map(|_| AtomicU64::new(0)).collect());
    let first_output = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let last_output = Arc::new(AtomicU64::new(0));
    let warmup_end_ns = Arc::new(AtomicU64::new(u64::MAX));

    let consumer: BaseConsumer<QuietContext> = kafka
        .consumer()
        .set(
            "isolation.level",
            if exactly_once {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .set("enable.partition.eof", "false")
        .create_with_context(QuietContext)
        .map_err(|e| format!("creating the output consumer: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    for topic in &topics.outputs {
        for p in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| format!("assigning `{topic}`: {e}"))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assigning the outputs: {e}"))?;
    let workload = settings.workload.clone();
    let outputs = topics.outputs.clone();
    let want = matcher.want.clone();
    let consumer_thread = {
        let (sent, first_output, done, last_output, warmup_end_ns) = (
            Arc::clone(&sent),
            Arc::clone(&first_output),
            Arc::clone(&done),
            Arc::clone(&last_output),
            Arc::clone(&warmup_end_ns),
        );
        std::thread::spawn(move || {
            let mut consumed = Consumed {
                samples: Vec::new(),
                sent_at: Vec::new(),
                unmatched: 0,
                got: vec![0; matcher.want.len()],
                missing: Vec::new(),
            };
            while !done.load(Ordering::Acquire) {
                let Some(message) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let Ok(message) = message else { continue };
                let now = base.elapsed().as_nanos() as u64;
                first_output.store(true, Ordering::Release);
                last_output.store(now, Ordering::Release);
                let output = outputs
                    .iter()
                    .position(|t| t == message.topic())
                    .unwrap_or(usize::MAX);
                match matcher.find(&workload, output, message.key(), message.payload()) {
                    Some(inputs) => {
                        let warm = warmup_end_ns.load(Ordering::Acquire);
                        for input in inputs {
                            if let Some(g) = consumed.got.get_mut(input) {
                                *g += 1;
                            }
                            let at = sent[input].load(Ordering::Acquire);
                            // Priming inputs and inputs scheduled in the warm-up are not sampled.
                            if input >= PRIMING_EVENTS && at >= warm {
                                consumed.samples.push(now.saturating_sub(at) as f64 / 1e6);
                                consumed.sent_at.push(at - warm);
                            }
                        }
                    }
                    None => consumed.unmatched += 1,
                }
            }
            consumed
        })
    };

    let producer: ThreadedProducer<_> = kafka
        .producer()
        .set("linger.ms", "1")
        .create()
        .map_err(|e| format!("creating the input producer: {e}"))?;
    let send = |index: usize, at: u64| -> Result<(), String> {
        let input = &records[index];
        sent[index].store(at, Ordering::Release);
        let topic = topics.input(input.topic);
        let partition = match &input.key {
            Some(k) => kafka_partition(k, PARTITIONS as u32) as i32,
            None => 0,
        };
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).payload(input.value.as_slice());
        record = match &input.key {
            Some(k) => record.key(k.as_slice()).partition(partition),
            None => record,
        };
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((rdkafka::error::KafkaError::MessageProduction(_), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(format!("producing to `{topic}`: {e}")),
            }
        }
    };

    // Priming: the first events at once, until the system answers.
    let priming_started = Instant::now();
    for index in 0..PRIMING_EVENTS.min(records.len()) {
        send(index, 0).map_err(|e| format!("priming: {e}"))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("priming: {e}"))?;
    while !first_output.load(Ordering::Acquire) {
        if let Some(status) = system.exited() {
            done.store(true, Ordering::Release);
            let _ = consumer_thread.join();
            return Err(format!("the system exited while starting ({status})"));
        }
        if priming_started.elapsed() > PRIMING_DEADLINE {
            done.store(true, Ordering::Release);
            let _ = consumer_thread.join();
            return Err(format!(
                "no output within {PRIMING_DEADLINE:?} of the first {PRIMING_EVENTS} inputs"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the priming backlog drain before the schedule starts.
    std::thread::sleep(Duration::from_secs(1));
    eprintln!(
        "bench-latency: the system answered after {:.1} s; sending {} events/s",
        priming_started.elapsed().as_secs_f64(),
        settings.rate
    );

    // The open-loop schedule: input j at start + j / rate, whatever the system does.
    let start = base.elapsed().as_nanos() as u64;
    let interval_ns = 1e9 / settings.rate;
    warmup_end_ns.store(
        start + (settings.warmup_seconds * 1e9) as u64,
        Ordering::Release,
    );
    for (j, index) in (PRIMING_EVENTS..records.len()).enumerate() {
        let at = start + (j as f64 * interval_ns) as u64;
        loop {
            let now = base.elapsed().as_nanos() as u64;
            if now >= at {
                break;
            }
            let wait = Duration::from_nanos(at - now);
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
        send(index, at)?;
        if j % 1024 == 0 {
            if let Some(status) = system.exited() {
                done.store(true, Ordering::Release);
                let _ = consumer_thread.join();
                return Err(format!("the system exited during the run ({status})"));
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("flushing inputs: {e}"))?;

    // Drain: until no output arrived for a while.
    let end = Instant::now();
    loop {
        let now = base.elapsed().as_nanos() as u64;
        let quiet = now.saturating_sub(last_output.load(Ordering::Acquire));
        if quiet > DRAIN_QUIET.as_nanos() as u64 || end.elapsed() > DRAIN_MAX {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done.store(true, Ordering::Release);
    drop(system);
    let drained_ns = base.elapsed().as_nanos() as u64;
    let mut consumed = consumer_thread
        .join()
        .map_err(|_| "the output consumer panicked".to_string())?;
    // The answers still due after the drain: each at least the time to the drain's end.
    let warm = warmup_end_ns.load(Ordering::Acquire);
    for (input, &due) in want.iter().enumerate().skip(PRIMING_EVENTS) {
        let at = sent[input].load(Ordering::Acquire);
        let got = consumed.got.get(input).copied().unwrap_or(0);
        if at >= warm && due > got {
            let wait = drained_ns.saturating_sub(at) as f64 / 1e6;
            consumed
                .missing
                .extend(std::iter::repeat_n(wait, (due - got) as usize));
        }
    }
    Ok(consumed)
}

/// Appends `result` to `path` as one JSON line.
pub fn append(path: &PathBuf, result: &LatencyResult) -> Result<(), String> {
    let line = serde_json::to_string(result).expect("results serialize");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    writeln!(file, "{line}").map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coalesced_count_answers_every_occurrence_it_covers() {
        let (records, mut matcher) = inputs("W2", 2_000, 1);
        assert!(matcher.want.iter().all(|&w| w == 1));
        let word: String = serde_json::from_slice(&records[0].value).expect("a word");
        let occurrences: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].value == records[0].value)
            .collect();
        assert!(occurrences.len() >= 3, "w1 is the commonest word");
        let key = json(&word);
        // The count jumps to 3 (updates merged): the first three occurrences are answered.
        let answered = matcher.find("W2", 0, Some(&key), Some(b"3"));
        assert_eq!(answered, Some(occurrences[..3].to_vec()));
        // A repeated or older count answers nothing new; a count past the input, nothing.
        assert_eq!(matcher.find("W2", 0, Some(&key), Some(b"2")), Some(vec![]));
        let past = (occurrences.len() + 1).to_string();
        assert_eq!(
            matcher.find("W2", 0, Some(&key), Some(past.as_bytes())),
            None
        );
    }

    #[test]
    fn a_window_maximum_answers_the_bids_that_raised_it() {
        let (records, mut matcher) = inputs("W3", 500, 2);
        // Per q7 window, the bids that raised the maximum, in send order.
        let mut raised: HashMap<u64, Vec<(u64, usize)>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let bid: Bid = serde_json::from_slice(&r.value).expect("a bid");
            let list = raised
                .entry(window_start(bid.date_time, Q7_SIZE_MS))
                .or_default();
            if list.last().is_none_or(|&(max, _)| bid.price > max) {
                list.push((bid.price, i));
            }
        }
        let (ws, list) = raised
            .iter()
            .max_by_key(|(_, l)| l.len())
            .expect("a window");
        assert!(list.len() >= 2, "{list:?}");
        // Only the second maximum arrives (the first was merged away): both raisers answered.
        let (max, _) = list[1];
        let answered = matcher.find("W3", 1, Some(&json(ws)), Some(&json(&max)));
        assert_eq!(answered, Some(vec![list[0].1, list[1].1]));
    }
}
