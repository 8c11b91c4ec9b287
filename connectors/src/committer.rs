//! The committer: one per application, it makes each closed epoch durable.
//!
//! For every epoch the engine hands over an [`EpochBatch`]: the records of that epoch for sink
//! topics, changelogs and the dead-letter topic, and the input positions reached at the end of
//! the epoch. The committer writes them in epoch order as
//!
//! ```text
//! begin → records → progress record {epoch, offsets} → commit
//! ```
//!
//! With [`Guarantee::ExactlyOnce`] that is one Kafka transaction (KIP-98): outputs, changelogs
//! and input positions become visible to `read_committed` readers together or not at all. The
//! producer's `transactional.id` is `<app>-committer`; `init_transactions` at start aborts what
//! a crashed instance left open and fences it out. Batches that queued up while a commit was in
//! flight are committed together (group commit), so a slow broker lengthens transactions rather
//! than building a backlog of them. A transaction is opened only when there is something to
//! write.
//!
//! With [`Guarantee::AtLeastOnce`] the records are produced and flushed, and only then the
//! progress record: a crash between the two replays the epoch (duplicates, no loss).
//!
//! ## Consumer-group offsets
//!
//! The progress record is what recovery reads; standard lag tools (`kafka-consumer-groups.sh`,
//! Burrow, exporters) read consumer-group offsets instead. With
//! [`CommitterConfig::consumer_group`] set, every commit also records its input positions as
//! that group's offsets, with an asynchronous offset commit once the epoch has committed (its
//! transaction, or its progress record): the group's offsets are never ahead of what committed,
//! and at most a commit or two behind. They are outside the transaction on purpose:
//! librdkafka's `send_offsets_to_transaction` can wait forever when a broker dies while it runs,
//! and a commit must never hang on what only lag tools read. The group never has members: nobody
//! reads through it, it only shows how far the application has committed.
//!
//! ## Recovery
//!
//! [`read_progress`] returns the last committed progress record. Resuming from its offsets, with
//! tables restored from their changelogs (which hold exactly the committed epochs), continues the
//! computation as if the crash had not happened.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::client::KafkaConfig;
use crate::delivery::{commit_promptly, flush_promptly};
use crate::error::{ConnectorError, KafkaContext, Result};
use crate::reader::{read_to_end, QuietContext};

/// The processing guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs, changelogs and input positions of an epoch commit in one Kafka transaction.
    ExactlyOnce,
    /// Outputs are flushed before input positions are recorded: nothing is lost, a crash may
    /// repeat the outputs of the epochs after the last recorded position.
    AtLeastOnce,
}

impl std::str::FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exactly_once" | "exactly-once" => Ok(Guarantee::ExactlyOnce),
            "at_least_once" | "at-least-once" => Ok(Guarantee::AtLeastOnce),
            other => Err(format!(
                "unknown processing guarantee `{other}`: use `exactly_once` or `at_least_once`"
            )),
        }
    }
}

/// A record to write, addressed by the index of its topic in [`CommitterConfig::topics`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OutRecord {
    /// Index of the destination topic.
    pub topic: u32,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value; `None` writes a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's timestamp in milliseconds since 1970; `None` lets the producer stamp it
    /// with the time it is sent.
    pub timestamp: Option<i64>,
}

/// Record headers in the Kafka client's form; `None` when there are none.
pub fn owned_headers(headers: &[(String, Vec<u8>)]) -> Option<OwnedHeaders> {
    if headers.is_empty() {
        return None;
    }
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(value),
        });
    }
    Some(owned)
}

/// Everything one epoch commits.
#[derive(Clone, Debug, Default)]
pub struct EpochBatch {
    /// The epoch.
    pub epoch: u64,
    /// Records, written in this order.
    pub records: Vec<OutRecord>,
    /// Input positions reached at the end of the epoch: `(topic, partition) → next offset`.
    pub offsets: BTreeMap<(String, i32), i64>,
}

impl EpochBatch {
    /// What its records take in memory, roughly: keys, values and headers, and a fixed cost per
    /// record.
    pub fn bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| {
                let key = r.key.as_ref().map_or(0, Vec::len);
                let value = r.value.as_ref().map_or(0, Vec::len);
                let headers: usize = r.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
                (key + value + headers + std::mem::size_of::<OutRecord>()) as u64
            })
            .sum()
    }
}

/// The progress record: the last committed epoch and the input positions after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The last committed epoch.
    pub epoch: u64,
    /// `topic → partition → next offset to read`.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The local checkpoint generation that holds the tables as of this epoch (see
    /// [`CheckpointGeneration`]), if the committing process kept one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// The local checkpoint generation a committing process writes its tables to: named in every
/// progress record while its files are whole, so that a restart knows which files hold the
/// tables as of the committed epoch. Once a write to it failed, it is no longer named.
#[derive(Debug)]
pub struct CheckpointGeneration {
    id: String,
    whole: std::sync::atomic::AtomicBool,
}

impl CheckpointGeneration {
    /// Generation `id`, whole.
    pub fn new(id: String) -> Self {
        CheckpointGeneration {
            id,
            whole: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The generation's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id to name in a progress record: `None` once the generation is spoiled.
    pub fn named(&self) -> Option<String> {
        self.whole
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| self.id.clone())
    }

    /// Marks the generation as missing a write: progress records no longer name it.
    pub fn spoil(&self) {
        self.whole
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// What the committer reports as it works, for metrics. Called on the commit thread: keep it
/// cheap (update counters, observe a histogram).
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    /// A commit completed (a transaction, or a flush and its progress record): it took
    /// `duration`, wrote `records[i]` records to topic `i` of [`CommitterConfig::topics`], and
    /// the last epoch it holds is `epoch`.
    fn committed(&self, epoch: u64, duration: Duration, records: &[u64]);
    /// An attempt at a commit failed and was aborted (exactly-once) or is tried again
    /// (at-least-once).
    fn aborted(&self);
    /// The producer failed fatally (the broker aborted a transaction that outlived its timeout)
    /// and a new one, which fences every older one, replaced it.
    fn producer_replaced(&self);
}

/// What the committer needs to know.
#[derive(Clone, Debug)]
pub struct CommitterConfig {
    /// The application id; the transactional id is `<app>-committer`.
    pub app_id: String,
    /// The guarantee.
    pub guarantee: Guarantee,
    /// The progress topic.
    pub progress_topic: String,
    /// Destination topics, indexed by [`OutRecord::topic`].
    pub topics: Vec<String>,
    /// How long a transaction may stay open before the broker aborts it
    /// (`transaction.timeout.ms`).
    pub transaction_timeout: Duration,
    /// How long one blocking step of a commit may take before it counts as failed: committing
    /// or aborting a transaction, flushing an epoch's records (at-least-once). Initializing
    /// transactions at start (which fences a previous instance) is retried for this long while
    /// the broker cannot be reached.
    pub commit_timeout: Duration,
    /// How long reading the progress topic to its end may take (at start, and after a new
    /// producer replaced one the broker fenced); an open transaction holds the reader back.
    pub progress_timeout: Duration,
    /// The consumer group whose offsets each commit also sets to the committed input positions
    /// (see the module documentation); `None`: none.
    pub consumer_group: Option<String>,
    /// Told about every commit, abort and replaced producer.
    pub observer: Option<Arc<dyn CommitObserver>>,
    /// The local checkpoint generation each progress record names (see [`Progress::checkpoint`]).
    pub checkpoint: Option<Arc<CheckpointGeneration>>,
    /// Fault injection for tests: how long to hold each commit (its first attempt) open after
    /// its records were sent and before it completes (the transaction is open, or the progress
    /// record unwritten). Zero: no hold.
    #[cfg(feature = "fault-injection")]
    pub hold_open: Duration,
    /// How many bytes of handed-over epochs may wait for their commit: beyond it,
    /// [`Committer::commit`] blocks until commits catch up (one epoch is always taken, however
    /// large).
    pub max_queued_bytes: u64,
}

/// The first wait before a failed commit is tried again; it doubles up to [`RETRY_BACKOFF_MAX`].
/// Abortable failures (a leader moved, a request timed out) usually pass within a second.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two attempts of a commit: a broker that is back is noticed soon.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The first wait before a producer that failed fatally is replaced; it doubles up to
/// [`NEW_PRODUCER_BACKOFF_MAX`]. Longer than [`RETRY_BACKOFF`]: every new producer fences and
/// asks the transaction coordinator, so replacing them in a tight loop would load the broker.
const NEW_PRODUCER_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait before a producer that failed fatally is replaced.
const NEW_PRODUCER_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How long [`send`] waits before it offers a record again to a producer whose queue is full:
/// short, because the queue drains as fast as the broker takes records.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// How often [`send`] logs that the producer's queue stays full.
const QUEUE_FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// A producer context that counts delivery failures (and logs them), so that a flush can tell
/// whether everything landed.
#[derive(Debug, Default)]
pub struct DeliveryCounter {
    failed: AtomicU64,
}

impl DeliveryCounter {
    /// How many records failed to be delivered so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            log::error!("delivery failed: {e}");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Statistics the committer publishes.
#[derive(Debug)]
pub struct CommitStats {
    /// The last committed epoch (0 before the first commit).
    committed_epoch: AtomicU64,
    /// Transactions (or flushes) completed.
    commits: AtomicU64,
    /// Records written.
    records: AtomicU64,
    /// Total commit time in microseconds.
    commit_micros: AtomicU64,
    /// Bytes of the epochs handed over and not yet committed (see [`Committer::commit`]).
    queued_bytes: AtomicU64,
    /// Commit latencies: entry `i` counts the commits that took `i` milliseconds (rounded down);
    /// the last entry counts every commit of [`LATENCY_BUCKETS`]` - 1` ms or more.
    latency_ms: Box<[AtomicU64]>,
}

/// How many millisecond buckets [`CommitStats`] keeps commit latencies in (0 ms to 10 s).
const LATENCY_BUCKETS: usize = 10_001;

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            committed_epoch: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            commit_micros: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            latency_ms: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl CommitStats {
    /// The last committed epoch (0 before the first commit, or the epoch the application
    /// resumed after).
    pub fn committed_epoch(&self) -> u64 {
        self.committed_epoch.load(Ordering::Acquire)
    }

    /// Transactions (or, at-least-once, flushes) completed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Bytes (keys, values and headers) of the epochs handed to the committer and not yet
    /// committed.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Records written (outputs, changelogs and dead letters; progress records not counted).
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Records one commit that took `latency`.
    fn record(&self, latency: Duration, records: usize) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        let bucket = usize::try_from(micros / 1000)
            .unwrap_or(usize::MAX)
            .min(LATENCY_BUCKETS - 1);
        self.latency_ms[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The commit latency that a fraction `q` (0 to 1) of the commits did not exceed, to the
    /// millisecond (rounded up); `None` before the first commit. Commits of 10 s or more count
    /// as 10 s.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .latency_ms
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let last = LATENCY_BUCKETS as u64 - 1;
                return Some(Duration::from_millis((ms as u64 + 1).min(last)));
            }
        }
        None
    }

    /// A one-line summary: commits, records, and the latency's mean, median, 90th and 99th
    /// percentiles and maximum.
    pub fn summary(&self) -> String {
        let commits = self.commits.load(Ordering::Relaxed);
        let records = self.records.load(Ordering::Relaxed);
        let mean = self.commit_micros.load(Ordering::Relaxed) as f64 / commits.max(1) as f64;
        let q = |q: f64| {
            self.latency_quantile(q)
                .map_or_else(|| "-".to_string(), |d| format!("{}", d.as_millis()))
        };
        format!(
            "commits={commits} records={records} latency_ms: mean={:.1} p50<={} p90<={} p99<={} max<={}",
            mean / 1000.0,
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0)
        )
    }
}

/// The handle the engine sends epochs to. Dropping it stops the committer after it has written
/// what it was given.
pub struct Committer {
    sender: Option<Sender<EpochBatch>>,
    thread: Option<JoinHandle<Result<()>>>,
    stats: Arc<CommitStats>,
    /// Bytes handed over and not yet committed, and the signal that commits made room.
    queue: Arc<Backlog>,
    max_queued_bytes: u64,
}

/// Bytes handed to the committer and not yet committed, with a signal for each change.
type Backlog = (Mutex<u64>, Condvar);

/// How long [`Committer::commit`] waits at a time for room (it also checks that the committer
/// is still running).
const BACKLOG_WAIT: Duration = Duration::from_millis(100);
/// How often [`Committer::commit`] logs that it is waiting for room.
const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(10);

impl Committer {
    /// Creates the producer, fences any previous instance (under exactly-once), and reads the
    /// last committed progress, which it returns. Every progress record this committer writes
    /// carries the positions of every partition ever recorded, not only of those that moved since
    /// the start: a partition that gets no new input keeps its position across restarts.
    /// Commits run on a thread of their own.
    pub fn start(
        config: &KafkaConfig,
        committer: CommitterConfig,
    ) -> Result<(Committer, Progress)> {
        let producer = create_producer(config, &committer)?;
        // Only now, with any open transaction of a previous instance aborted, is the last
        // committed progress final.
        let progress = read_progress(
            config,
            &committer.progress_topic,
            committer.progress_timeout,
        )?
        .unwrap_or_default();
        let offsets: BTreeMap<(String, i32), i64> = progress
            .offsets
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| ((t.clone(), *p), *o)))
            .collect();
        let stats = Arc::new(CommitStats::default());
        stats
            .committed_epoch
            .store(progress.epoch, Ordering::Release);
        let (sender, receiver) = mpsc::channel();
        let thread_stats = Arc::clone(&stats);
        let queue: Arc<Backlog> = Arc::default();
        let thread_queue = Arc::clone(&queue);
        let max_queued_bytes = committer.max_queued_bytes;
        let (kafka, resumed) = (config.clone(), progress.epoch);
        let thread = std::thread::Builder::new()
            .name("faustus-committer".into())
            .spawn(move || {
                let state = State {
                    group: committer
                        .consumer_group
                        .as_deref()
                        .and_then(|g| OffsetGroup::new(&kafka, g)),
                    kafka,
                    producer,
                    committed: resumed,
                };
                let outcome = run(
                    state,
                    committer,
                    offsets,
                    receiver,
                    thread_stats,
                    &thread_queue,
                );
                // Nothing more commits: wake anyone waiting for room.
                thread_queue.1.notify_all();
                if let Err(e) = &outcome {
                    log::error!("committer: {e}");
                }
                outcome
            })
            .expect("spawning the committer thread");
        let committer = Committer {
            sender: Some(sender),
            thread: Some(thread),
            stats,
            queue,
            max_queued_bytes,
        };
        Ok((committer, progress))
    }

    /// Queues an epoch for commit. Epochs must be queued in increasing order. While the epochs
    /// queued before it hold more than [`CommitterConfig::max_queued_bytes`] with it, waits
    /// for commits to catch up: the caller (the dataflow's commit sink) stalls, and with it the
    /// sources, which is how a slow broker slows the application down instead of filling its
    /// memory.
    pub fn commit(&self, batch: EpochBatch) -> Result<()> {
        let bytes = batch.bytes();
        let (lock, changed) = &*self.queue;
        let mut queued = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut next_log = Instant::now() + BACKLOG_LOG_EVERY;
        while *queued > 0 && queued.saturating_add(bytes) > self.max_queued_bytes {
            if self.is_finished() {
                break;
            }
            if Instant::now() >= next_log {
                log::warn!(
                    "commits are behind: {} bytes wait for their commit (limit {}); input is held back until they catch up",
                    *queued, self.max_queued_bytes
                );
                next_log += BACKLOG_LOG_EVERY;
            }
            queued = changed
                .wait_timeout(queued, BACKLOG_WAIT)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *queued += bytes;
        self.stats.queued_bytes.store(*queued, Ordering::Release);
        drop(queued);
        match &self.sender {
            Some(sender) if sender.send(batch).is_ok() => Ok(()),
            _ => Err(ConnectorError::Timeout(
                "committing: the committer has stopped".into(),
            )),
        }
    }

    /// The committer's statistics.
    pub fn stats(&self) -> Arc<CommitStats> {
        Arc::clone(&self.stats)
    }

    /// True if the commit thread has stopped (after an error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Commits what was queued and stops; returns the commit thread's error, if any.
    pub fn finish(mut self) -> Result<()> {
        self.sender.take();
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(ConnectorError::Timeout("committer thread panicked".into()))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the committer's producer; under exactly-once, with its transactional id, and
/// initialized (which fences every other producer with that id and aborts its open transaction).
fn create_producer(
    config: &KafkaConfig,
    committer: &CommitterConfig,
) -> Result<ThreadedProducer<DeliveryCounter>> {
    let mut client = config.producer();
    if committer.guarantee == Guarantee::ExactlyOnce {
        client
            .set(
                "transactional.id",
                format!("{}-committer", committer.app_id),
            )
            .set(
                "transaction.timeout.ms",
                committer.transaction_timeout.as_millis().to_string(),
            );
    }
    let producer: ThreadedProducer<DeliveryCounter> = client
        .create_with_context(DeliveryCounter::default())
        .context(|| "creating the committer's producer".into())?;
    if committer.guarantee == Guarantee::ExactlyOnce {
        retry(
            "initializing transactions",
            committer.commit_timeout,
            |remaining| producer.init_transactions(remaining),
        )?;
    }
    Ok(producer)
}

/// What the commit loop works with.
struct State {
    kafka: KafkaConfig,
    producer: ThreadedProducer<DeliveryCounter>,
    /// The last epoch committed (by this committer, or before it started).
    committed: u64,
    /// The consumer group the committed positions are recorded in, if any.
    group: Option<OffsetGroup>,
}

/// A consumer group that holds the committed input positions as its offsets. The consumer never
/// subscribes: it only commits offsets.
struct OffsetGroup {
    consumer: BaseConsumer<QuietContext>,
}

impl OffsetGroup {
    /// The group `group`; `None` (and a warning: lag tools will not see the application) if
    /// its consumer cannot be created.
    fn new(kafka: &KafkaConfig, group: &str) -> Option<OffsetGroup> {
        let consumer: BaseConsumer<QuietContext> = match kafka
            .consumer()
            .set("group.id", group)
            .create_with_context(QuietContext)
        {
            Ok(c) => c,
            Err(e) => {
                let e = crate::properties::redact_error(e);
                log::warn!(
                    "cannot create a consumer for group `{group}`; its offsets will not move: {e}"
                );
                return None;
            }
        };
        Some(OffsetGroup { consumer })
    }

    /// Records `progress`'s positions as the group's offsets, without waiting for the broker.
    fn record(&self, progress: &Progress) {
        // Serves the replies to earlier commits, so that they do not pile up in its queue.
        let _ = self.consumer.poll(Duration::ZERO);
        if let Err(e) = self
            .consumer
            .commit(&offset_list(progress), CommitMode::Async)
        {
            log::warn!(
                "recording epoch {}'s positions as consumer-group offsets: {e}",
                progress.epoch
            );
        }
    }
}

/// Input positions as a partition list of offsets.
fn offset_list(progress: &Progress) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    // Positions under names no Kafka topic can have (inputs that are not topics) are kept in
    // the progress record only.
    let kafka_name = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    for (topic, partitions) in progress.offsets.iter().filter(|(t, _)| kafka_name(t)) {
        for (&partition, &offset) in partitions {
            // Cannot fail: the offset is a plain number.
            let _ = list.add_partition_offset(topic, partition, Offset::Offset(offset));
        }
    }
    list
}

/// Commits one batch in a transaction. A transaction the broker aborted because it outlived the
/// transaction timeout (say, while the broker was restarting) leaves the producer unusable (the
/// broker bumped its epoch, which looks like being fenced; or the abort fails with an invalid
/// state): then a new producer is initialized — fencing any other instance — and if
/// the progress topic still ends at this committer's last epoch (no other instance committed
/// meanwhile), the same batch is committed again. Otherwise another instance took over, and this
/// one stops as fenced.
fn commit_exactly_once(
    state: &mut State,
    config: &CommitterConfig,
    records: &[OutRecord],
    progress: &Progress,
) -> Result<()> {
    let mut hold = true;
    let mut backoff = NEW_PRODUCER_BACKOFF;
    loop {
        let outcome = commit_transaction(&state.producer, config, records, progress, hold)?;
        hold = false;
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => {
                log::warn!(
                    "the transaction of epoch {} failed fatally ({e}; the broker aborts a transaction open longer than {:?}); committing it again with a new producer in {backoff:?}",
                    progress.epoch,
                    config.transaction_timeout
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(NEW_PRODUCER_BACKOFF_MAX);
                state.producer = create_producer(&state.kafka, config)?;
                if let Some(observer) = &config.observer {
                    observer.producer_replaced();
                }
                let now = read_progress(
                    &state.kafka,
                    &config.progress_topic,
                    config.progress_timeout,
                )?
                .unwrap_or_default();
                if now.epoch != state.committed {
                    return Err(fenced(config));
                }
            }
        }
    }
}

/// The commit loop.
fn run(
    mut state: State,
    config: CommitterConfig,
    mut offsets: BTreeMap<(String, i32), i64>,
    receiver: Receiver<EpochBatch>,
    stats: Arc<CommitStats>,
    queue: &Backlog,
) -> Result<()> {
    while let Ok(first) = receiver.recv() {
        let mut batches = vec![first];
        batches.extend(receiver.try_iter());
        let epoch = batches.last().map(|b| b.epoch).unwrap_or_default();
        let bytes: u64 = batches.iter().map(EpochBatch::bytes).sum();
        // However this group of epochs ends (committed, nothing to write), its bytes leave the
        // queue; on an error the committer stops and the queue no longer matters.
        let _made_room = MadeRoom {
            queue,
            stats: &stats,
            bytes,
        };
        let mut changed = false;
        let mut records = Vec::new();
        for batch in batches {
            for (tp, offset) in batch.offsets {
                if offsets.insert(tp, offset) != Some(offset) {
                    changed = true;
                }
            }
            records.extend(batch.records);
        }
        if records.is_empty() && !changed {
            continue;
        }
        let progress = Progress {
            epoch,
            offsets: offsets
                .iter()
                .fold(BTreeMap::new(), |mut acc, ((t, p), o)| {
                    acc.entry(t.clone())
                        .or_insert_with(BTreeMap::new)
                        .insert(*p, *o);
                    acc
                }),
            checkpoint: config.checkpoint.as_ref().and_then(|c| c.named()),
        };
        // Everything logged while committing carries the epoch (see `faustus::logging`).
        let span = tracing::info_span!("commit", epoch, records = records.len());
        let _in_span = span.enter();
        let started = Instant::now();
        match config.guarantee {
            Guarantee::ExactlyOnce => {
                commit_exactly_once(&mut state, &config, &records, &progress)?;
                state.committed = epoch;
            }
            Guarantee::AtLeastOnce => {
                commit_flush(&state.producer, &config, &records, &progress)?;
            }
        }
        if let Some(group) = &state.group {
            group.record(&progress);
        }
        let elapsed = started.elapsed();
        log::debug!("committed in {elapsed:?}");
        stats.record(elapsed, records.len());
        if let Some(observer) = &config.observer {
            let mut written = vec![0u64; config.topics.len()];
            for record in &records {
                if let Some(n) = written.get_mut(record.topic as usize) {
                    *n += 1;
                }
            }
            observer.committed(epoch, elapsed, &written);
        }
        stats.committed_epoch.store(epoch, Ordering::Release);
    }
    if config.guarantee == Guarantee::AtLeastOnce {
        flush_promptly(&state.producer, config.commit_timeout)
            .context(|| "flushing at shutdown".into())?;
    }
    Ok(())
}

/// Takes a group of epochs' bytes out of the committer's queue when dropped, and says so.
struct MadeRoom<'a> {
    queue: &'a Backlog,
    stats: &'a CommitStats,
    bytes: u64,
}

impl Drop for MadeRoom<'_> {
    fn drop(&mut self) {
        let mut queued = self.queue.0.lock().unwrap_or_else(|e| e.into_inner());
        *queued = queued.saturating_sub(self.bytes);
        self.stats.queued_bytes.store(*queued, Ordering::Release);
        self.queue.1.notify_all();
    }
}

/// One transaction; an abortable failure aborts and redoes the whole batch, a fatal one (fenced)
/// stops the committer. `Ok(Err(e))`: the producer failed fatally after the transaction had been
/// open for longer than the transaction timeout (the broker aborted it), or failed fatally in
/// another way that a new producer can recover from. `hold`: apply the fault-injection hold to
/// the first attempt.
fn commit_transaction(
    producer: &ThreadedProducer<DeliveryCounter>,
    config: &CommitterConfig,
    records: &[OutRecord],
    progress: &Progress,
    mut hold: bool,
) -> Result<std::result::Result<(), KafkaError>> {
    let mut backoff = RETRY_BACKOFF;
    loop {
        let begun = Instant::now();
        let attempt = (|| -> std::result::Result<(), KafkaError> {
            producer.begin_transaction()?;
            send_all(producer, config, records, progress)?;
            if std::mem::take(&mut hold) {
                hold_open(config);
            }
            commit_promptly(producer, config.commit_timeout)
        })();
        // A fatal error leaves the producer unusable. Fenced while young: a newer instance took
        // over. Fenced after the transaction timeout, or any other fatal error (the broker
        // aborted the transaction, e.g. while it was restarting): a new producer can go on.
        let fatal = |e: KafkaError| -> Result<std::result::Result<(), KafkaError>> {
            if is_fenced(&e) && begun.elapsed() < config.transaction_timeout {
                Err(fenced(config))
            } else {
                Ok(Err(e))
            }
        };
        let is_fatal = |e: &KafkaError| {
            is_fenced(e) || matches!(e, KafkaError::Transaction(t) if t.is_fatal())
        };
        match attempt {
            Ok(()) => return Ok(Ok(())),
            Err(e) if is_fatal(&e) => return fatal(e),
            Err(e) => {
                log::warn!(
                    "commit of epoch {} failed ({e}); aborting and retrying in {backoff:?}",
                    progress.epoch
                );
                if let Some(observer) = &config.observer {
                    observer.aborted();
                }
                if let Err(abort) = producer.abort_transaction(config.commit_timeout) {
                    if is_fatal(&abort) {
                        return fatal(abort);
                    }
                    log::warn!("abort failed: {abort}");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
    }
}

/// Produce, flush, then record progress; a failed delivery retries the whole batch.
fn commit_flush(
    producer: &ThreadedProducer<DeliveryCounter>,
    config: &CommitterConfig,
    records: &[OutRecord],
    progress: &Progress,
) -> Result<()> {
    let mut backoff = RETRY_BACKOFF;
    loop {
        let before = producer.context().failed();
        let attempt = send_records(producer, config, records)
            .and_then(|()| flush_promptly(producer, config.commit_timeout))
            .and_then(|()| {
                hold_open(config);
                send_progress(producer, config, progress)
            })
            .and_then(|()| flush_promptly(producer, config.commit_timeout));
        let failed = producer.context().failed() != before;
        match attempt {
            Ok(()) if !failed => return Ok(()),
            outcome => {
                log::warn!(
                    "writing epoch {} failed ({outcome:?}, delivery failures: {failed}); retrying in {backoff:?}",
                    progress.epoch
                );
                if let Some(observer) = &config.observer {
                    observer.aborted();
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
    }
}

/// Sleeps for the configured fault-injection hold, if any.
#[cfg(feature = "fault-injection")]
fn hold_open(config: &CommitterConfig) {
    if !config.hold_open.is_zero() {
        std::thread::sleep(config.hold_open);
    }
}

/// Without the `fault-injection` feature there is no hold.
#[cfg(not(feature = "fault-injection"))]
fn hold_open(_: &CommitterConfig) {}

/// Produces the records and then the progress record.
fn send_all(
    producer: &ThreadedProducer<DeliveryCounter>,
    config: &CommitterConfig,
    records: &[OutRecord],
    progress: &Progress,
) -> std::result::Result<(), KafkaError> {
    send_records(producer, config, records)?;
    send_progress(producer, config, progress)
}

/// Produces the records.
fn send_records(
    producer: &ThreadedProducer<DeliveryCounter>,
    config: &CommitterConfig,
    records: &[OutRecord],
) -> std::result::Result<(), KafkaError> {
    for record in records {
        let topic = &config.topics[record.topic as usize];
        let mut base: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(timestamp) = record.timestamp {
            base = base.timestamp(timestamp);
        }
        if let Some(headers) = owned_headers(&record.headers) {
            base = base.headers(headers);
        }
        send(producer, base)?;
    }
    Ok(())
}

/// Produces the progress record.
fn send_progress(
    producer: &ThreadedProducer<DeliveryCounter>,
    config: &CommitterConfig,
    progress: &Progress,
) -> std::result::Result<(), KafkaError> {
    let value = serde_json::to_vec(progress).expect("progress serializes");
    send(
        producer,
        BaseRecord::to(&config.progress_topic)
            .key(&b"progress"[..])
            .payload(value.as_slice()),
    )
}

/// Sends one record, waiting while the local queue is full (and saying so every
/// [`QUEUE_FULL_WARNING_EVERY`], so that a producer that cannot deliver is visible in the log).
fn send<'a>(
    producer: &ThreadedProducer<DeliveryCounter>,
    mut record: BaseRecord<'a, [u8], [u8]>,
) -> std::result::Result<(), KafkaError> {
    let started = Instant::now();
    let mut next_warning = QUEUE_FULL_WARNING_EVERY;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                if started.elapsed() >= next_warning {
                    log::warn!(
                        "the producer's queue has been full for {:?}: the broker is not taking \
                         records",
                        started.elapsed()
                    );
                    next_warning += QUEUE_FULL_WARNING_EVERY;
                }
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// The error of a committer fenced by a newer instance.
fn fenced(config: &CommitterConfig) -> ConnectorError {
    ConnectorError::Fenced(format!("{}-committer", config.app_id))
}

/// Whether a producer error says that a newer producer of its transactional id has fenced it.
pub fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

/// Retries an operation that fails while the broker is unreachable, for up to `timeout`; `f` is
/// given the time that is left.
fn retry<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(Duration) -> std::result::Result<T, KafkaError>,
) -> Result<T> {
    let started = Instant::now();
    let mut backoff = RETRY_BACKOFF;
    loop {
        match f(timeout.saturating_sub(started.elapsed())) {
            Ok(v) => return Ok(v),
            Err(e) if is_fenced(&e) => return Err(ConnectorError::Fenced(what.to_string())),
            Err(e) if started.elapsed() < timeout => {
                log::warn!("{what}: {e}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
            Err(source) => {
                return Err(ConnectorError::Kafka {
                    context: what.to_string(),
                    source,
                })
            }
        }
    }
}

/// Reads the last committed progress record of progress topic `topic`, if any, waiting up to
/// `timeout` for it to end (an open transaction holds a `read_committed` reader back until it
/// ends: give it longer than the transaction timeout).
pub fn read_progress(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Progress>> {
    let mut last = None;
    let mut error = None;
    read_to_end(config, topic, &[0], timeout, |record| {
        if let Some(value) = record.value {
            match serde_json::from_slice::<Progress>(value) {
                Ok(p) => last = Some(p),
                Err(e) => {
                    error = Some(ConnectorError::Corrupt {
                        what: format!("progress record at `{topic}`/0@{}", record.offset),
                        reason: e.to_string(),
                    })
                }
            }
        }
    })?;
    match error {
        Some(e) => Err(e),
        None => Ok(last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_latency_quantiles_come_from_the_histogram() {
        let stats = CommitStats::default();
        assert_eq!(stats.latency_quantile(0.5), None);
        for ms in [1, 2, 3, 4, 5, 6, 7, 8, 9, 100] {
            stats.record(Duration::from_micros(ms * 1000 + 300), 2);
        }
        stats.record(Duration::from_secs(60), 1);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 11);
        assert_eq!(stats.records.load(Ordering::Relaxed), 21);
        assert_eq!(stats.latency_quantile(0.5), Some(Duration::from_millis(7)));
        assert_eq!(
            stats.latency_quantile(0.9),
            Some(Duration::from_millis(101))
        );
        // A commit beyond the histogram counts as its last bucket.
        assert_eq!(stats.latency_quantile(1.0), Some(Duration::from_secs(10)));
        assert!(
            stats.summary().starts_with("commits=11 records=21"),
            "{}",
            stats.summary()
        );
    }
}
