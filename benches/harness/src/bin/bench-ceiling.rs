//! `bench-ceiling`: the benchmark's ceiling, a plain Kafka consume → produce passthrough of the
//! bids with no processing at all (key and value bytes as they are), to measure what this
//! machine and broker can do. W0 only.
//!
//! Takes the contract's flags (`benches/README.md`). Two threads, each a consumer of its own
//! over half of the partitions, with the contract's client settings (those of faustus' own
//! readers and writers: `linger.ms=5`, `batch.size=262144`, the same fetch settings). Nothing
//! waits for Kafka inside the consume loop:
//! - `at_least_once`: one producer per thread (librdkafka's own thread serves it); a delivery
//!   callback tracks, per input partition, the oldest input offset whose copy is not yet
//!   acknowledged, and every 100 ms the loop commits (asynchronously) the offsets below it.
//! - `exactly_once`: two transactional producers per thread, used in turn. Every 100 ms the
//!   loop hands the current one, with the consumer's positions, to a committer thread
//!   (`send_offsets_to_transaction`, `commit_transaction`, `begin_transaction`) and goes on
//!   consuming into the other; if that one is still committing, it keeps writing into the
//!   current transaction until it is free.
//!
//! Built with jemalloc as the allocator of the whole process (librdkafka's too), as faustus'
//! programs are: the ceiling gets whatever that buys.
//!
//! Runs until SIGTERM/SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use faustus_bench::kafka::{self, Error};
use faustus_bench::{Guarantee, Workload, COMMIT_INTERVAL_MS};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::IntoOpaque;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// jemalloc for every allocation of the process, librdkafka's included (the harness crate's
/// dependency enables `unprefixed_malloc_on_supported_platforms`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit code for "workload not supported".
const UNSUPPORTED: i32 = 3;
/// Consumer threads.
const THREADS: i32 = 2;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug, Clone)]
#[command(about = "The ceiling: a plain Kafka passthrough of the bids (W0 only)")]
struct Args {
    /// The workload (W0 only).
    #[arg(long)]
    workload: Workload,
    /// at_least_once or exactly_once.
    #[arg(long)]
    guarantee: Guarantee,
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Application id: the consumer group and the transactional ids' prefix.
    #[arg(long)]
    app_id: String,
    /// Output topic prefix.
    #[arg(long)]
    output_prefix: String,
    /// The bids topic.
    #[arg(long, default_value = "bench-bid")]
    bids: String,
    /// The persons topic (unused).
    #[arg(long)]
    persons: Option<String>,
    /// The auctions topic (unused).
    #[arg(long)]
    auctions: Option<String>,
    /// The words topic (unused).
    #[arg(long)]
    words: Option<String>,
    /// Drop every Nth record: a deliberately wrong system, to check that the harness rejects
    /// a wrong answer (0: never).
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Write every Nth record twice: a deliberately wrong system (0: never).
    #[arg(long, default_value_t = 0)]
    duplicate_every: u64,
    /// Once the input has been quiet for this many milliseconds, write the last record again,
    /// once: a late duplicate, after the output was right (0: never).
    #[arg(long, default_value_t = 0)]
    late_duplicate_ms: u64,
}

/// Per input partition, the input offsets whose copies are not yet acknowledged, and the next
/// offset after the last one sent.
#[derive(Default)]
struct InFlight {
    pending: BTreeMap<i32, BTreeSet<i64>>,
    next: BTreeMap<i32, i64>,
    failed: Option<String>,
}

impl InFlight {
    /// The offsets safe to commit: below the oldest unacknowledged copy of each partition.
    fn committable(&self) -> Vec<(i32, i64)> {
        self.next
            .iter()
            .map(|(&p, &next)| {
                let oldest = self.pending.get(&p).and_then(|s| s.first().copied());
                (p, oldest.unwrap_or(next))
            })
            .collect()
    }
}

/// An input partition and offset in one word (offsets below 2^48, partitions below 2^15; -1:
/// a record that is not an input's copy).
fn tag(partition: i32, offset: i64) -> usize {
    ((partition as usize) << 48) | (offset as usize & ((1 << 48) - 1))
}

fn untag(tag: usize) -> (i32, i64) {
    let offset = (tag & ((1 << 48) - 1)) as i64;
    let offset = if offset == (1 << 48) - 1 { -1 } else { offset };
    ((tag >> 48) as i32, offset)
}

/// The at-least-once producer's context: acknowledgements clear offsets in flight.
struct Tracker(Arc<Mutex<InFlight>>);

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    /// The input partition and offset of the copy ([`tag`]).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (partition, offset) = untag(opaque);
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                if let Some(set) = state.pending.get_mut(&partition) {
                    set.remove(&offset);
                }
            }
            Err((e, _)) => {
                state
                    .failed
                    .get_or_insert_with(|| format!("a copy was not delivered: {e}"));
            }
        }
    }
}

/// Sends `record`, waiting while the producer's queue is full.
fn send<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> Result<(), Error> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => return Err(format!("producing: {e}").into()),
        }
    }
}

/// A copy of a record (`partition`, `key`, `value`) for `output`.
fn record<'a, T: IntoOpaque>(
    output: &'a str,
    (partition, key, value): (i32, Option<&'a [u8]>, Option<&'a [u8]>),
    opaque: T,
) -> BaseRecord<'a, [u8], [u8], T> {
    let mut record = BaseRecord::with_opaque_to(output, opaque).partition(partition);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    record
}

/// The parts of an input message that its copy takes.
fn parts<'a>(m: &'a BorrowedMessage<'_>) -> (i32, Option<&'a [u8]>, Option<&'a [u8]>) {
    (m.partition(), m.key(), m.payload())
}

/// The last input record, kept for `--late-duplicate-ms`.
type Kept = (i32, Option<Vec<u8>>, Option<Vec<u8>>);

fn keep(m: &BorrowedMessage<'_>) -> Kept {
    (
        m.partition(),
        m.key().map(<[u8]>::to_vec),
        m.payload().map(<[u8]>::to_vec),
    )
}

fn kept(k: &Kept) -> (i32, Option<&[u8]>, Option<&[u8]>) {
    (k.0, k.1.as_deref(), k.2.as_deref())
}

/// The thread's consumer, over its share of the partitions.
fn consumer(args: &Args, thread: i32, partitions: i32) -> Result<BaseConsumer, Error> {
    let consumer: BaseConsumer = kafka::consumer(&args.brokers, &args.app_id, args.guarantee)
        .set("enable.auto.offset.store", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in (0..partitions).filter(|p| p % THREADS == thread) {
        assignment.add_partition_offset(&args.bids, p, Offset::Stored)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// The next input record, or `None` after a quiet poll. Consumer errors are reports (a
/// coordinator that moved, a broker that is still starting): librdkafka retries on its own.
fn next(consumer: &BaseConsumer) -> Option<BorrowedMessage<'_>> {
    match consumer.poll(Duration::from_millis(10))? {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("bench-ceiling: consumer: {e} (retrying)");
            None
        }
    }
}

/// The deliberately wrong modes (`--drop-every`, `--duplicate-every`, `--late-duplicate-ms`).
struct Faults {
    drop_every: u64,
    duplicate_every: u64,
    late_after: Option<Duration>,
    seen: u64,
    last_input: Instant,
    last: Option<Kept>,
}

impl Faults {
    fn new(args: &Args) -> Self {
        Faults {
            drop_every: args.drop_every,
            duplicate_every: args.duplicate_every,
            late_after: (args.late_duplicate_ms > 0)
                .then(|| Duration::from_millis(args.late_duplicate_ms)),
            seen: 0,
            last_input: Instant::now(),
            last: None,
        }
    }

    /// How many copies of input `m` to write.
    fn copies(&mut self, m: &BorrowedMessage<'_>) -> usize {
        self.seen += 1;
        self.last_input = Instant::now();
        if self.late_after.is_some() {
            self.last = Some(keep(m));
        }
        if self.drop_every > 0 && self.seen.is_multiple_of(self.drop_every) {
            0
        } else if self.duplicate_every > 0 && self.seen.is_multiple_of(self.duplicate_every) {
            2
        } else {
            1
        }
    }

    /// The last input, once, when the input has been quiet for `--late-duplicate-ms`.
    fn late_duplicate(&mut self) -> Option<Kept> {
        let quiet = self
            .late_after
            .is_some_and(|after| self.last_input.elapsed() >= after);
        if quiet {
            self.late_after = None;
            self.last.take()
        } else {
            None
        }
    }
}

fn at_least_once(args: &Args, thread: i32, partitions: i32) -> Result<(), Error> {
    let output = format!("{}w0", args.output_prefix);
    let consumer = consumer(args, thread, partitions)?;
    let state = Arc::new(Mutex::new(InFlight::default()));
    let producer: ThreadedProducer<Tracker> =
        kafka::producer(&args.brokers).create_with_context(Tracker(Arc::clone(&state)))?;
    let interval = Duration::from_millis(COMMIT_INTERVAL_MS);
    let mut last_commit = Instant::now();
    let mut committed: Vec<(i32, i64)> = Vec::new();
    let mut faults = Faults::new(args);
    loop {
        if let Some(m) = next(&consumer) {
            let n = faults.copies(&m);
            {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if n > 0 {
                    s.pending
                        .entry(m.partition())
                        .or_default()
                        .insert(m.offset());
                }
                s.next.insert(m.partition(), m.offset() + 1);
            }
            for _ in 0..n {
                let opaque = tag(m.partition(), m.offset());
                send(&producer, record(&output, parts(&m), opaque))?;
            }
        } else if let Some(k) = faults.late_duplicate() {
            send(&producer, record(&output, kept(&k), tag(k.0, -1)))?;
        }
        if last_commit.elapsed() >= interval {
            last_commit = Instant::now();
            let (ready, failed) = {
                let s = state.lock().unwrap_or_else(|e| e.into_inner());
                (s.committable(), s.failed.clone())
            };
            if let Some(e) = failed {
                return Err(e.into());
            }
            if ready != committed {
                let mut offsets = TopicPartitionList::new();
                for &(p, next) in &ready {
                    offsets.add_partition_offset(&args.bids, p, Offset::Offset(next))?;
                }
                consumer.commit(&offsets, CommitMode::Async)?;
                committed = ready;
            }
        }
    }
}

/// A transactional producer, and whether it is free (not committing).
type Txn = Arc<ThreadedProducer<rdkafka::producer::DefaultProducerContext>>;

/// A transaction to commit: its producer, the offsets it covers, the consumer's group.
struct Commit {
    producer: Txn,
    offsets: TopicPartitionList,
    group: ConsumerGroupMetadata,
}

fn exactly_once(args: &Args, thread: i32, partitions: i32) -> Result<(), Error> {
    let output = format!("{}w0", args.output_prefix);
    let consumer = consumer(args, thread, partitions)?;
    let mut producers: Vec<Txn> = Vec::new();
    for side in ["a", "b"] {
        let producer: ThreadedProducer<_> = kafka::producer(&args.brokers)
            .set(
                "transactional.id",
                format!("{}-{thread}{side}", args.app_id),
            )
            .create()?;
        producer.init_transactions(TIMEOUT)?;
        producer.begin_transaction()?;
        producers.push(Arc::new(producer));
    }
    // The committer: commits what it is handed, in order, and hands the producer back.
    let (to_commit, commits) = mpsc::channel::<Commit>();
    let (to_free, freed) = mpsc::channel::<Result<Txn, String>>();
    let committer = thread::spawn(move || {
        for c in commits {
            let result = c
                .producer
                .send_offsets_to_transaction(&c.offsets, &c.group, TIMEOUT)
                .and_then(|()| faustus_connectors::commit_promptly(&*c.producer, TIMEOUT))
                .and_then(|()| c.producer.begin_transaction())
                .map(|()| c.producer)
                .map_err(|e| format!("committing a transaction: {e}"));
            if to_free.send(result).is_err() {
                return;
            }
        }
    });
    let mut current = producers.pop().ok_or("no producer")?;
    let mut spare = producers.pop();
    let interval = Duration::from_millis(COMMIT_INTERVAL_MS);
    let mut last_commit = Instant::now();
    let mut dirty = false;
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut faults = Faults::new(args);
    loop {
        if let Some(m) = next(&consumer) {
            for _ in 0..faults.copies(&m) {
                send(&current, record(&output, parts(&m), ()))?;
            }
            positions.insert(m.partition(), m.offset() + 1);
            dirty = true;
        } else if let Some(k) = faults.late_duplicate() {
            send(&current, record(&output, kept(&k), ()))?;
            dirty = true;
        }
        if spare.is_none() {
            match freed.try_recv() {
                Ok(Ok(p)) => spare = Some(p),
                Ok(Err(e)) => return Err(e.into()),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => return Err("the committer stopped".into()),
            }
        }
        if dirty && last_commit.elapsed() >= interval {
            if let Some(next_producer) = spare.take() {
                let mut offsets = TopicPartitionList::new();
                for (&p, &next) in &positions {
                    offsets.add_partition_offset(&args.bids, p, Offset::Offset(next))?;
                }
                let group = consumer
                    .group_metadata()
                    .ok_or("the consumer has no group metadata")?;
                let producer = std::mem::replace(&mut current, next_producer);
                to_commit
                    .send(Commit {
                        producer,
                        offsets,
                        group,
                    })
                    .map_err(|_| "the committer stopped")?;
                last_commit = Instant::now();
                dirty = false;
            }
        }
        if committer.is_finished() {
            return Err("the committer stopped".into());
        }
    }
}

fn passthrough(args: &Args, thread: i32, partitions: i32) -> Result<(), Error> {
    match args.guarantee {
        Guarantee::AtLeastOnce => at_least_once(args, thread, partitions),
        Guarantee::ExactlyOnce => exactly_once(args, thread, partitions),
    }
}

fn main() {
    let args = Args::parse();
    if args.workload != Workload::W0 {
        eprintln!("bench-ceiling: the ceiling runs W0 only");
        std::process::exit(UNSUPPORTED);
    }
    let partitions = match kafka::partitions(&args.brokers, &args.bids) {
        Ok(Some(n)) => n,
        Ok(None) => {
            eprintln!("bench-ceiling: error: no topic `{}`", args.bids);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bench-ceiling: error: {e}");
            std::process::exit(1);
        }
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let args = args.clone();
            thread::spawn(move || passthrough(&args, t, partitions))
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("bench-ceiling: error: {e}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("bench-ceiling: a thread panicked");
                std::process::exit(1);
            }
        }
    }
}
