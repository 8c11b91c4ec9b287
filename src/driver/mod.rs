//! A test driver: run a program's dataflow in-process, without Kafka, with time under the
//! test's control.
//!
//! [`TestDriver`] runs the **same build closure** as [`crate::App::start`], on timely, with 1 or
//! N workers; only the edges of the dataflow differ. Sources read the records the test pipes in
//! ([`TestDriver::pipe`], [`TestDriver::pipe_record`]); an epoch ends when the test says so
//! ([`TestDriver::close_epoch`]), never by the clock; what the committer would write to Kafka in
//! one transaction per epoch is kept in memory instead ([`TestDriver::output`],
//! [`TestDriver::changelog`], [`TestDriver::dead_letters`]), and every table can be read
//! ([`TestDriver::table`]), public or not. [`TestDriver::restart`] drops every operator's state
//! and restores it from the changelog records captured so far, as a crash and restart on a
//! broker do.
//!
//! ```
//! use faustus::driver::TestDriver;
//! use faustus::prelude::*;
//!
//! # fn main() -> faustus::Result<()> {
//! let orders = Topic::<String, i64>::new("orders").key_codec(Str);
//! let o = orders.clone();
//! let mut driver = TestDriver::start("shop", move |df| {
//!     df.stream(&o).sum("totals");
//! })?;
//! driver.pipe(&orders, &"ann".to_string(), &5, 1_000);
//! driver.pipe(&orders, &"ann".to_string(), &7, 2_000);
//! driver.close_epoch()?;
//! assert_eq!(driver.table::<String, i64>("totals")?["ann"], 12);
//! driver.restart()?;
//! driver.pipe(&orders, &"ann".to_string(), &1, 3_000);
//! driver.close_epoch()?;
//! assert_eq!(driver.table::<String, i64>("totals")?["ann"], 13);
//! # Ok(())
//! # }
//! ```
//!
//! ## What is the same as on a broker, and what is not
//!
//! - A keyed record goes to the partition Kafka's Java client would pick (murmur2 of the key
//!   bytes), a record without a key to partition 0; offsets count from 0 per partition.
//!   Partition `p` of source `s` is read by worker `(s + p) % workers`, as from Kafka.
//! - Bad input (bytes that do not decode, a tombstone in a stream) becomes the same dead letter,
//!   with the same reason and origin headers.
//! - The records of an epoch are written in the order of their positions, whatever the number
//!   of workers, so the same input closed into the same epochs gives the same output with any
//!   worker count ([`DriverBuilder::assert_same_across_workers`]).
//! - Epochs are numbered 1, 2, 3, ... (the restore epoch of the first run is 1, its first input
//!   epoch 2): a table's changes and a final window are stamped with that number, where a
//!   broker stamps the epoch's wall-clock time. Which records share an epoch is the test's
//!   choice here, the clock's on a broker; outputs that depend on it (a table's changes, which
//!   are per epoch) match a broker's only once compacted to the last value per key.
//! - Wall-clock time is the driver's clock, which moves only by [`TestDriver::advance_clock`]:
//!   windows and joins that punctuate when idle ([`crate::window::Timed::punctuate_when_idle`])
//!   see the clock's value at each closed epoch, so their output is as repeatable as the rest.

#[cfg(feature = "proptest")]
pub mod strategy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use faustus_connectors::{kafka_partition, EpochBatch};

use crate::app::{declare_tables, plan_checked, spawn_cluster};
use crate::config::AppConfig;
use crate::dataflow::{Data, Dataflow};
use crate::error::{Error, Result};
use crate::record::Headers;
use crate::runtime::commit::EpochSink;
use crate::runtime::driver::{Changelogs, Harness, Piped};
use crate::runtime::health::Health;
use crate::runtime::{Io, Startup};
use crate::topic::{RecordError, Topic};

/// A program's build closure, as the driver keeps it (it builds every run).
type Build = Arc<dyn for<'s> Fn(&Dataflow<'s>) + Send + Sync>;

/// How often a driver that waits for an epoch looks for a failed worker.
const FAILURE_POLL: Duration = Duration::from_millis(20);

/// A Kafka record, as piped into an input topic or written to an output topic: bytes, so that
/// a test can pipe what does not decode.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Record {
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// The timestamp in milliseconds since 1970, if any (a source gives an input record without
    /// one the epoch's time).
    pub timestamp: Option<i64>,
    /// The headers, in order.
    pub headers: Headers,
}

impl Record {
    /// A record of raw bytes: a key and a value, no timestamp, no headers.
    pub fn raw(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Record {
        Record {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Record::default()
        }
    }

    /// The record of `key` and `value` (`None`: a tombstone) encoded with `topic`'s codecs.
    ///
    /// # Errors
    ///
    /// The key or the value does not encode.
    pub fn encode<K: 'static, V: 'static>(
        topic: &Topic<K, V>,
        key: &K,
        value: Option<&V>,
    ) -> std::result::Result<Record, RecordError> {
        let (key, value) = topic.encode_record(key, value)?;
        Ok(Record {
            key: Some(key),
            value,
            ..Record::default()
        })
    }

    /// Sets the timestamp.
    pub fn at(mut self, timestamp: i64) -> Record {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Record {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// An input event for [`TestDriver::pipe_event`]: a key, what the record carries, and its
/// timestamp. The `strategy` module (feature `proptest`) makes them for property tests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Event<K, V> {
    /// The key.
    pub key: K,
    /// The value, a tombstone, or bytes that do not decode.
    pub payload: Payload<V>,
    /// The record timestamp (milliseconds).
    pub timestamp: i64,
}

/// What an [`Event`]'s record carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Payload<V> {
    /// A value.
    Value(V),
    /// No value: a deletion in a table's topic, a dead letter in a stream's.
    Tombstone,
    /// Bytes that do not decode as a value: a dead letter.
    Bad(Vec<u8>),
}

impl<K, V> Event<K, V> {
    /// The same event with its value (if it has one) changed by `f`.
    pub fn map_value<W>(self, f: impl FnOnce(V) -> W) -> Event<K, W> {
        Event {
            key: self.key,
            payload: match self.payload {
                Payload::Value(v) => Payload::Value(f(v)),
                Payload::Tombstone => Payload::Tombstone,
                Payload::Bad(bytes) => Payload::Bad(bytes),
            },
            timestamp: self.timestamp,
        }
    }
}

impl<V> Payload<V> {
    /// The value, if the record carries one that decodes.
    pub fn value(&self) -> Option<&V> {
        match self {
            Payload::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// A record the dataflow wrote: to an output topic, a changelog or the dead-letter topic, in
/// epoch `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Written {
    /// The epoch whose transaction wrote it.
    pub epoch: u64,
    /// The topic.
    pub topic: String,
    /// The record.
    pub record: Record,
}

/// A record written to an output topic, decoded with the topic's codecs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Output<K, V> {
    /// The epoch whose transaction wrote it.
    pub epoch: u64,
    /// The key.
    pub key: K,
    /// The value; `None` is a tombstone (a key removed from a table).
    pub value: Option<V>,
    /// The timestamp (milliseconds).
    pub timestamp: Option<i64>,
    /// The headers.
    pub headers: Headers,
}

/// Everything a run has produced so far: every record written, and every table's contents as
/// JSON. Two runs of the same input compare equal when they behaved the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every record written, in the order written.
    pub written: Vec<Written>,
    /// Every table's entries, keys and values as JSON.
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
}

impl Snapshot {
    /// The first difference between two snapshots, said in words (`None`: they are equal).
    pub fn difference(&self, other: &Snapshot) -> Option<String> {
        if let Some(i) = (0..self.written.len().max(other.written.len()))
            .find(|&i| self.written.get(i) != other.written.get(i))
        {
            return Some(format!(
                "written record {i} differs: {:?} against {:?}",
                self.written.get(i),
                other.written.get(i)
            ));
        }
        let names: BTreeSet<&String> = self.tables.keys().chain(other.tables.keys()).collect();
        names.into_iter().find_map(|name| {
            let (a, b) = (self.tables.get(name), other.tables.get(name));
            (a != b).then(|| format!("table `{name}` differs: {a:?} against {b:?}"))
        })
    }
}

/// How to start a [`TestDriver`]: its application id, workers and partitions.
#[derive(Clone, Debug)]
pub struct DriverBuilder {
    app_id: String,
    workers: usize,
    partitions: i32,
    on_panic: crate::poison::OnPanic,
}

impl DriverBuilder {
    /// Sets the number of workers (default 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// What a panic in one of the program's functions does (default: the record becomes a dead
    /// letter, [`crate::OnPanic::DeadLetter`]); with [`crate::OnPanic::Stop`] the epoch fails.
    pub fn on_panic(mut self, policy: crate::poison::OnPanic) -> Self {
        self.on_panic = policy;
        self
    }

    /// Sets the partition count of topics that do not set their own (default: the
    /// application's, [`AppConfig::partitions`]).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Plans the program `build` makes, as [`crate::App::start`] does, and runs it, restored
    /// (from nothing) and ready for input.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a mistake in the program, as `App::start` reports it;
    /// [`Error::Runtime`] when a worker fails.
    pub fn start<F>(self, build: F) -> Result<TestDriver>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        TestDriver::with_build(self, Arc::new(build))
    }

    /// Runs `scenario` on a fresh driver for each worker count in `workers`, and panics, with
    /// the first difference, unless every run wrote the same records and left the same tables;
    /// returns the first run's [`Snapshot`].
    ///
    /// # Panics
    ///
    /// When the runs differ, or one of them fails (the scenario returns an error).
    pub fn assert_same_across_workers<F, S>(
        self,
        workers: &[usize],
        build: F,
        mut scenario: S,
    ) -> Snapshot
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
        S: FnMut(&mut TestDriver) -> Result<()>,
    {
        let build: Build = Arc::new(build);
        let mut first: Option<(usize, Snapshot)> = None;
        for &n in workers {
            let mut driver = TestDriver::with_build(self.clone().workers(n), Arc::clone(&build))
                .unwrap_or_else(|e| panic!("starting with {n} worker(s): {e}"));
            scenario(&mut driver).unwrap_or_else(|e| panic!("with {n} worker(s): {e}"));
            let snapshot = driver.snapshot();
            match &first {
                None => first = Some((n, snapshot)),
                Some((m, expected)) => {
                    if let Some(difference) = expected.difference(&snapshot) {
                        panic!("{m} worker(s) and {n} worker(s) differ: {difference}");
                    }
                }
            }
        }
        first.map(|(_, s)| s).unwrap_or_default()
    }
}

/// One run of the dataflow: from a start or restart to the next restart.
struct Run {
    harness: Arc<Harness>,
    startup: Arc<Startup>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Runs a program's dataflow without Kafka: see the [module docs](self).
pub struct TestDriver {
    config: AppConfig,
    build: Build,
    /// Every topic's partition count.
    topics: BTreeMap<String, i32>,
    out_topics: Vec<String>,
    /// The changelog topics.
    changelogs: BTreeSet<String>,
    public: Vec<(String, crate::runtime::table::Declared)>,
    /// The last closed epoch (after a start, the restore epoch).
    epoch: u64,
    /// The driver's clock, in milliseconds ([`TestDriver::advance_clock`]).
    clock: u64,
    /// Records piped since the last closed epoch.
    pending: Vec<((String, i32), Piped)>,
    /// The next offset per topic and partition.
    offsets: BTreeMap<(String, i32), i64>,
    /// The positions committed epochs reached in the program's inputs ([`crate::input`]),
    /// where a restart resumes them.
    inputs: BTreeMap<String, BTreeMap<i32, i64>>,
    written: Vec<Written>,
    run: Option<Run>,
}

impl std::fmt::Debug for TestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDriver")
            .field("app_id", &self.config.app_id)
            .field("workers", &self.config.workers)
            .field("epoch", &self.epoch)
            .field("written", &self.written.len())
            .finish_non_exhaustive()
    }
}

impl TestDriver {
    /// How to start a driver for application `app_id` (its topic names, such as the
    /// changelogs' and the dead-letter topic's, follow from it).
    pub fn builder(app_id: impl Into<String>) -> DriverBuilder {
        let app_id = app_id.into();
        let partitions = AppConfig::new(app_id.clone()).partitions;
        DriverBuilder {
            app_id,
            workers: 1,
            partitions,
            on_panic: crate::poison::OnPanic::DeadLetter,
        }
    }

    /// A driver with one worker running the program `build` makes
    /// ([`DriverBuilder::start`]).
    pub fn start<F>(app_id: impl Into<String>, build: F) -> Result<TestDriver>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        TestDriver::builder(app_id).start(build)
    }

    fn with_build(settings: DriverBuilder, build: Build) -> Result<TestDriver> {
        let mut config = AppConfig::new(settings.app_id);
        config.workers = settings.workers;
        config.partitions = settings.partitions;
        config.on_panic = settings.on_panic;
        config.http = None;
        let planned = plan_checked(&config, Arc::clone(&build))?;
        let topics = planned
            .specs
            .iter()
            .map(|s| (s.name.clone(), s.partitions.unwrap_or(config.partitions)))
            .collect();
        let changelogs = planned
            .specs
            .iter()
            .filter(|s| s.compacted)
            .map(|s| s.name.clone())
            .collect();
        let mut driver = TestDriver {
            config,
            build,
            topics,
            out_topics: planned.out_topics,
            changelogs,
            public: planned.public,
            epoch: 0,
            clock: 0,
            pending: Vec::new(),
            offsets: BTreeMap::new(),
            inputs: BTreeMap::new(),
            written: Vec::new(),
            run: None,
        };
        driver.launch()?;
        Ok(driver)
    }

    /// Starts a run that restores from the changelog records written so far, at the epoch
    /// after the last closed one, and waits until it is restored.
    fn launch(&mut self) -> Result<()> {
        let mut changelogs = Changelogs::new();
        for w in self
            .written
            .iter()
            .filter(|w| self.changelogs.contains(&w.topic))
        {
            changelogs.entry(w.topic.clone()).or_default().push((
                w.record.key.clone().unwrap_or_default(),
                w.record.value.clone(),
            ));
        }
        let resume_epoch = self.epoch + 1;
        let harness = Arc::new(Harness::new(
            changelogs,
            self.out_topics.clone(),
            resume_epoch,
        ));
        let startup = Arc::new(Startup {
            planning: false,
            resume_epoch,
            offsets: self.inputs.clone(),
            partitions: self.topics.clone(),
            io: Io::Driver(Arc::clone(&harness)),
            commit_interval: self.config.commit_interval,
            min_epoch: self.config.shortest_epoch(),
            restore_timeout: self.config.restore_timeout,
            assignments: Arc::default(),
            health: Arc::new(Health::new(self.config.workers)),
            metrics: Arc::default(),
            max_uncommitted_bytes: self.config.max_uncommitted_bytes,
            written: Default::default(),
            checkpoints: None,
        });
        let thread = spawn_cluster(
            &self.config,
            Arc::clone(&self.build),
            Arc::clone(&startup),
            declare_tables(&self.public),
            Some(EpochSink::Driver(Arc::clone(&harness))),
        )?;
        self.run = Some(Run {
            harness,
            startup,
            thread: Some(thread),
        });
        self.epoch = resume_epoch;
        let batches = self.wait(resume_epoch)?;
        self.keep(batches);
        Ok(())
    }

    fn run(&self) -> &Run {
        self.run.as_ref().expect("a driver always has a run")
    }

    /// Waits until epoch `epoch` is complete; a failed worker is an error.
    fn wait(&self, epoch: u64) -> Result<Vec<EpochBatch>> {
        let run = self.run();
        let batches = run
            .harness
            .wait_through(epoch, FAILURE_POLL, || {
                run.startup.health.fatal().or_else(|| {
                    run.thread
                        .as_ref()
                        .is_some_and(|t| t.is_finished())
                        .then(|| "the workers stopped".to_string())
                })
            })
            .map_err(Error::Runtime)?;
        // An epoch that failed (a panic under the `stop` policy) is reached but not committed.
        match run.startup.health.fatal() {
            Some(fatal) => Err(Error::Runtime(fatal)),
            None => Ok(batches),
        }
    }

    fn keep(&mut self, batches: Vec<EpochBatch>) {
        let topics = self.run().harness.out_topics().to_vec();
        for batch in batches {
            for ((source, partition), next) in batch.offsets {
                if crate::input::is_input(&source) {
                    self.inputs
                        .entry(source)
                        .or_default()
                        .insert(partition, next);
                }
            }
            for r in batch.records {
                self.written.push(Written {
                    epoch: batch.epoch,
                    topic: topics[r.topic as usize].clone(),
                    record: Record {
                        key: r.key,
                        value: r.value,
                        timestamp: r.timestamp,
                        headers: r.headers,
                    },
                });
            }
        }
    }

    /// Pipes the record `key`, `value`, with timestamp `timestamp` (milliseconds), into
    /// `topic`; it is read when the epoch closes ([`TestDriver::close_epoch`]).
    ///
    /// # Panics
    ///
    /// When the key or value does not encode with the topic's codecs (to pipe any bytes, use
    /// [`TestDriver::pipe_record`]).
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
        timestamp: i64,
    ) -> &mut Self {
        let record = Record::encode(topic, key, Some(value))
            .unwrap_or_else(|e| panic!("a record for `{}` does not encode: {e}", topic.name()));
        self.pipe_record(topic.name(), record.at(timestamp))
    }

    /// Pipes a tombstone for `key` (a deletion, in a table's topic) into `topic`.
    ///
    /// # Panics
    ///
    /// When the key does not encode with the topic's codec.
    pub fn pipe_tombstone<K: 'static, V: 'static>(
        &mut self,
        topic: &Topic<K, V>,
        key: &K,
        timestamp: i64,
    ) -> &mut Self {
        let record = Record::encode(topic, key, None)
            .unwrap_or_else(|e| panic!("a key for `{}` does not encode: {e}", topic.name()));
        self.pipe_record(topic.name(), record.at(timestamp))
    }

    /// Pipes `record`, bytes as they are (bad input too), into topic `topic`. A record piped
    /// into a topic the program does not read is never read.
    pub fn pipe_record(&mut self, topic: &str, record: Record) -> &mut Self {
        let partitions = self
            .topics
            .get(topic)
            .copied()
            .unwrap_or(self.config.partitions);
        let partition = record
            .key
            .as_deref()
            .map_or(0, |k| kafka_partition(k, partitions.max(1) as u32) as i32);
        let next = self
            .offsets
            .entry((topic.to_string(), partition))
            .or_insert(0);
        let offset = *next;
        *next += 1;
        self.pending.push((
            (topic.to_string(), partition),
            Piped {
                epoch: 0,
                offset,
                key: record.key,
                value: record.value,
                timestamp: record.timestamp,
                headers: record.headers,
            },
        ));
        self
    }

    /// Pipes `event` into `topic`: its key encoded with the topic's codec, and its value, a
    /// tombstone, or its bad bytes as they are.
    ///
    /// # Panics
    ///
    /// When the key or value does not encode with the topic's codecs.
    pub fn pipe_event<K: 'static, V: 'static>(
        &mut self,
        topic: &Topic<K, V>,
        event: &Event<K, V>,
    ) -> &mut Self {
        match &event.payload {
            Payload::Value(v) => self.pipe(topic, &event.key, v, event.timestamp),
            Payload::Tombstone => self.pipe_tombstone(topic, &event.key, event.timestamp),
            Payload::Bad(bytes) => {
                let mut record = Record::encode(topic, &event.key, None).unwrap_or_else(|e| {
                    panic!("a key for `{}` does not encode: {e}", topic.name())
                });
                record.value = Some(bytes.clone());
                self.pipe_record(topic.name(), record.at(event.timestamp))
            }
        }
    }

    /// Closes an epoch: the records piped since the last one are read, every operator takes
    /// them in, and the epoch's output, changelog records and dead letters are written, as one
    /// Kafka transaction would. Returns the epoch's number.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when a worker failed (a panic in the program's code).
    pub fn close_epoch(&mut self) -> Result<u64> {
        let epoch = self.epoch + 1;
        let records = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(at, piped)| (at, Piped { epoch, ..piped }))
            .collect();
        self.run().harness.close(epoch, records, self.clock);
        let batches = self.wait(epoch)?;
        self.epoch = epoch;
        self.keep(batches);
        Ok(epoch)
    }

    /// The last closed epoch (after a start or restart: the restore epoch).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Moves the driver's clock on by `by`. The clock is the wall clock of the driven program:
    /// it starts at zero, moves only when the test says so, and each epoch takes the clock's
    /// value when it closes. Only operators that let wall-clock time move their stream time
    /// read it ([`crate::window::Timed::punctuate_when_idle`]).
    pub fn advance_clock(&mut self, by: Duration) -> &mut Self {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.clock = self.clock.saturating_add(ms);
        self
    }

    /// The driver's clock, in milliseconds ([`TestDriver::advance_clock`]).
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.config.workers
    }

    /// Drops every operator's state, as a crash does, and starts again: tables restore from the
    /// changelog records written so far, at the epoch after the last closed one; records piped
    /// but not yet in a closed epoch are read after the restore, as a broker's consumer would
    /// read them again.
    ///
    /// # Errors
    ///
    /// [`Error::Runtime`] when a worker failed.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    /// Stops the current run and waits for its workers.
    fn stop(&mut self) -> Result<()> {
        if let Some(fatal) = self.run.as_ref().and_then(|r| r.startup.health.fatal()) {
            // The workers may never finish: leave them (and the failed run, which keeps
            // answering with its error).
            return Err(Error::Runtime(fatal));
        }
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        run.harness.stop();
        run.startup
            .health
            .stop_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        match run.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(Error::Runtime("a worker panicked".into())),
            None => Ok(()),
        }
    }

    /// Every record written so far (outputs, changelogs, dead letters), in the order written.
    pub fn written(&self) -> &[Written] {
        &self.written
    }

    /// The records written to topic `topic`, in order.
    pub fn records(&self, topic: &str) -> Vec<Written> {
        self.written
            .iter()
            .filter(|w| w.topic == topic)
            .cloned()
            .collect()
    }

    /// The records written to `topic`, decoded with its codecs, in order.
    ///
    /// # Errors
    ///
    /// A record does not decode (or has no key).
    pub fn output<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
    ) -> std::result::Result<Vec<Output<K, V>>, RecordError> {
        self.written
            .iter()
            .filter(|w| w.topic == topic.name())
            .map(|w| {
                let (key, value) =
                    topic.decode_record(w.record.key.as_deref(), w.record.value.as_deref())?;
                Ok(Output {
                    epoch: w.epoch,
                    key,
                    value,
                    timestamp: w.record.timestamp,
                    headers: w.record.headers.clone(),
                })
            })
            .collect()
    }

    /// The dead letters written so far: records that did not decode, events too late for their
    /// window, keys or values that do not encode; the reason and origin are in headers (see
    /// [`crate::dead_letter`]).
    pub fn dead_letters(&self) -> Vec<Written> {
        self.records(&crate::dead_letter::topic(&self.config.app_id))
    }

    /// The changelog records of state or table `name` written so far (its changelog topic is
    /// `<app>-<name>-changelog`): JSON keys, and JSON values or tombstones.
    pub fn changelog(&self, name: &str) -> Vec<Written> {
        self.records(&format!("{}-{name}-changelog", self.config.app_id))
    }

    /// Table `name`'s contents after the last closed epoch, from every worker (a windowed
    /// table's keys are `(K, Window)`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when there is no table `name`, or its keys and values are not `K` and
    /// `V`.
    pub fn table<K: Data, V: Data>(&self, name: &str) -> Result<BTreeMap<K, V>> {
        let copies = self
            .run()
            .harness
            .table(name)
            .ok_or_else(|| Error::Config(format!("no table is named `{name}`")))?;
        let mut entries = BTreeMap::new();
        for copy in copies {
            let typed = copy
                .as_any()
                .downcast_ref::<Arc<crate::runtime::table::Replica<K, V>>>()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "table `{name}` does not hold {} keys and {} values",
                        std::any::type_name::<K>(),
                        std::any::type_name::<V>()
                    ))
                })?;
            entries.extend(typed.read().iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(entries)
    }

    /// The names of the program's tables.
    pub fn table_names(&self) -> Vec<String> {
        self.run().harness.table_names()
    }

    /// Everything written so far and every table's contents (see [`Snapshot`]).
    pub fn snapshot(&self) -> Snapshot {
        let harness = &self.run().harness;
        let tables = harness
            .table_names()
            .into_iter()
            .map(|name| {
                let entries = harness
                    .table(&name)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|copy| copy.json())
                    .collect();
                (name, entries)
            })
            .collect();
        Snapshot {
            written: self.written.clone(),
            tables,
        }
    }
}

impl Drop for TestDriver {
    /// Stops the workers and waits for them (unless one failed: then they are left).
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
