//! The runtime: the timely operators that connect a dataflow to Kafka, and the worker loop.
//!
//! Operators here read Kafka ([`source`]), restore tables ([`restore`]), keep tables' changelogs
//! and read replicas ([`table`]) and hand each closed epoch to the committer ([`commit`]).

pub(crate) mod assignment;
pub(crate) mod catch_up;
pub(crate) mod checkpoint;
pub(crate) mod clock;
pub(crate) mod commit;
pub(crate) mod driver;
pub(crate) mod health;
pub(crate) mod input;
pub(crate) mod restore;
pub(crate) mod source;
pub(crate) mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faustus_connectors::{KafkaConfig, OutRecord};
use serde::{Deserialize, Serialize};

/// Where a record stands in its epoch: orders records within an epoch deterministically, whatever
/// the interleaving of workers. Restored state comes first, then input records by source,
/// partition and offset, then what is emitted once the input is applied (final windows), then
/// changelog records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Pos {
    /// Restored state, before any input of the epoch.
    Restored,
    /// An input record (or what an operator made of it).
    Input {
        /// The source's index (the order in which the program declared its sources).
        source: u32,
        /// The Kafka partition.
        partition: i32,
        /// The record's offset in its partition.
        offset: i64,
        /// The position among the records an operator made from this one (`flat_map`).
        index: u32,
    },
    /// Emitted after the epoch's input was applied (a window's final value).
    AfterInput,
    /// A changelog record: after every output record of the epoch.
    Changelog,
}

impl Pos {
    /// The position of record `offset` of `partition` of source `source`.
    pub fn input(source: u32, partition: i32, offset: i64) -> Pos {
        Pos::Input {
            source,
            partition,
            offset,
            index: 0,
        }
    }

    /// The `index`-th record an operator made from the record at this position.
    pub fn nth(self, index: u32) -> Pos {
        match self {
            Pos::Input {
                source,
                partition,
                offset,
                ..
            } => Pos::Input {
                source,
                partition,
                offset,
                index,
            },
            other => other,
        }
    }

    /// The source, partition and offset of an input record.
    pub fn origin(&self) -> Option<(u32, i32, i64)> {
        match *self {
            Pos::Input {
                source,
                partition,
                offset,
                ..
            } => Some((source, partition, offset)),
            _ => None,
        }
    }
}

/// How this process restored its tables from their changelogs at start-up (see
/// [`crate::Running::restore_report`]). While the restore runs, the counts grow.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// True once every table is restored and the restore epoch has passed through the whole
    /// dataflow: from then on every table holds what its changelog held.
    pub complete: bool,
    /// Seconds from the start of the restore to its completion (0 until complete).
    pub seconds: f64,
    /// Per changelog topic: what this process's workers read from it.
    pub changelogs: BTreeMap<String, ChangelogRestore>,
}

/// What the workers of one process read from one changelog at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangelogRestore {
    /// Changelog records read so far (tombstones and overwritten values included).
    pub records: u64,
    /// Keys restored (the table's entries after the last record of each key), counted as each
    /// worker finishes.
    pub keys: u64,
    /// Workers that finished reading their partitions of it.
    pub workers: usize,
    /// Workers that looked up where their partitions of it end (and so began reading).
    pub workers_started: usize,
    /// The offsets those workers have to read: an upper bound of the records (compacted,
    /// deleted and transaction-marker offsets hold no record); read from a local checkpoint,
    /// the entries its files hold.
    pub expected_offsets: u64,
    /// True when the table is read from this machine's local checkpoint (see `--state-dir`)
    /// rather than from the changelog: `records` then counts the checkpoint's entries.
    pub checkpoint: bool,
}

/// What flows to the committer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum CommitItem {
    /// A record for a sink, changelog or the dead-letter topic.
    Record(Pos, OutRecord),
    /// An input position: source index, partition, next offset.
    Offset(u32, i32, i64),
    /// The application must stop without committing this epoch: one of the program's functions
    /// panicked under the `stop` policy ([`crate::poison::OnPanic::Stop`]); the message says on
    /// which record.
    Stop(String),
}

/// The boundary between the operator graph and the world outside it: where sources read, and
/// where tables restore from. The graph is the same for both; only the operators at its edges
/// differ (`source`, `restore`), and the commit sink's target ([`commit::EpochSink`]).
pub(crate) enum Io {
    /// Kafka: sources read partitions, tables restore from changelog topics, epochs follow the
    /// wall clock.
    Kafka(KafkaConfig),
    /// A test driver ([`crate::driver`]): sources read what the driver piped, tables restore
    /// from the changelog records it captured, epochs close when it says so.
    Driver(Arc<driver::Harness>),
}

/// What every worker learns before the dataflow runs.
pub(crate) struct Startup {
    /// Only planning: operators stop at once.
    pub planning: bool,
    /// The restore epoch: tables are restored at it; inputs start after it.
    pub resume_epoch: u64,
    /// Input positions recorded by the last committed epoch.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Partition counts of every topic the program uses.
    pub partitions: BTreeMap<String, i32>,
    /// Where input comes from, and restored state: Kafka, or a test driver.
    pub io: Io,
    /// The longest an epoch lasts.
    pub commit_interval: Duration,
    /// The shortest an epoch lasts, when input is sparse (see [`Startup::next_epoch`]).
    pub min_epoch: Duration,
    /// How long reading a changelog to its end may take.
    pub restore_timeout: Duration,
    /// Where sources publish what they read (for `/api/assignment/`).
    pub assignments: Arc<assignment::Assignments>,
    /// The process's life: the stop flag, the first fatal error, the restore's progress.
    pub health: Arc<health::Health>,
    /// The application's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How many bytes of input the sources of the whole cluster may hold in epochs that have
    /// not reached the committer (each worker's sources get an equal share).
    pub max_uncommitted_bytes: u64,
    /// The topics the dataflow writes: a source of one of them reads records the application
    /// wrote (its hop is `through`, see [`crate::metrics`]).
    pub written: BTreeSet<String>,
    /// This run's local checkpoints of its tables, if it keeps them.
    pub checkpoints: Option<Arc<checkpoint::Checkpoints>>,
}

impl Startup {
    /// A startup for the planning pass: nothing runs.
    pub(crate) fn planning() -> Self {
        Startup {
            planning: true,
            resume_epoch: 1,
            offsets: BTreeMap::new(),
            partitions: BTreeMap::new(),
            io: Io::Kafka(KafkaConfig::new("")),
            commit_interval: crate::config::DEFAULT_COMMIT_INTERVAL,
            min_epoch: crate::config::DEFAULT_COMMIT_INTERVAL / MIN_EPOCH_DIVISOR,
            restore_timeout: Duration::ZERO,
            assignments: Arc::default(),
            health: Arc::new(health::Health::new(1)),
            metrics: Arc::default(),
            max_uncommitted_bytes: u64::MAX,
            written: BTreeSet::new(),
            checkpoints: None,
        }
    }

    /// True once the application is stopping.
    pub(crate) fn stopping(&self) -> bool {
        self.planning || self.health.stopping()
    }

    /// Records a fatal error and stops the application.
    pub(crate) fn fail(&self, message: String) {
        self.health.fail(message);
    }

    /// The epoch of the wall clock: milliseconds since 1970, rounded down to a multiple of the
    /// commit interval. Epochs are in milliseconds whatever the interval, so a restart with a
    /// different interval continues after the last committed epoch instead of waiting for the
    /// clock to catch up with a differently scaled number.
    pub(crate) fn epoch_now(&self) -> u64 {
        wall_clock_rounded(self.commit_interval)
    }

    /// The epoch an operator holding epoch `current` under Kafka moves to now, if it is to close
    /// `current`: the wall clock's epoch once it has passed `current`, or earlier, at the next
    /// multiple of [`Startup::min_epoch`], when `sparse` (this operator took in little during
    /// `current`, see [`EARLY_CLOSE_MAX_BYTES`]) and `committed` (the frontier of what the
    /// committer's worker has taken in) has reached `current`: every earlier epoch is complete,
    /// so nothing but the wall clock would hold this one back.
    ///
    /// At a low input rate every operator closes its epochs after the shortest epoch, one after
    /// the other, and the committer commits back to back (it merges the epochs that wait while
    /// it commits): an output waits about half the shortest epoch plus one commit, not half the
    /// commit interval. Under load the operators read more than the limit per epoch, or the
    /// frontier lags, and epochs last the full interval, as many outputs per key and
    /// transactions as before.
    pub(crate) fn next_epoch(
        &self,
        current: u64,
        committed: &timely::dataflow::ProbeHandle<u64>,
        sparse: bool,
    ) -> Option<u64> {
        let now = self.epoch_now();
        if now > current {
            return Some(now);
        }
        if sparse && !committed.less_than(&current) {
            let early = wall_clock_rounded(self.min_epoch);
            if early > current {
                return Some(early);
            }
        }
        None
    }

    /// Time until the next epoch begins.
    pub(crate) fn until_next_epoch(&self) -> Duration {
        let millis = wall_clock_millis();
        let interval = (self.commit_interval.as_millis() as u64).max(1);
        Duration::from_millis(interval - millis % interval)
    }
}

/// Milliseconds since 1970 by the wall clock.
fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The wall clock in milliseconds, rounded down to a multiple of `step` (at least 1 ms).
fn wall_clock_rounded(step: Duration) -> u64 {
    let millis = wall_clock_millis();
    millis - millis % (step.as_millis() as u64).max(1)
}

/// The default shortest epoch is the commit interval divided by this (see
/// [`Startup::next_epoch`]).
pub(crate) const MIN_EPOCH_DIVISOR: u32 = 10;

/// An operator that took in more than this many bytes of input in its current epoch keeps the
/// epoch open until the commit interval ends (see [`Startup::next_epoch`]): under load, longer
/// epochs mean fewer outputs per key and fewer transactions. 64 KiB is about 250 records of
/// the benchmark's Nexmark events: 25,000 a second for one source with the default shortest
/// epoch of 10 ms.
pub(crate) const EARLY_CLOSE_MAX_BYTES: u64 = 64 * 1024;

/// The longest a source that found nothing to read waits before it polls again (less, when the
/// next epoch begins sooner): a record's latency, against the cost of an empty poll.
pub(crate) const SOURCE_IDLE_WAIT: Duration = Duration::from_millis(2);

/// How long a source waits after a failed poll before it tries again; librdkafka retries
/// broker errors on its own, so this only keeps a failing source from spinning.
pub(crate) const SOURCE_ERROR_WAIT: Duration = Duration::from_millis(100);

/// The stable hash that routes a key to its owning worker: murmur2 of its JSON encoding (a key
/// that has none, which faustus can neither store nor serve, is routed by its debug form).
pub(crate) fn route<K: Serialize + std::fmt::Debug>(key: &K) -> u64 {
    thread_local! {
        // Every record crossing workers is routed: its key is encoded into this thread's
        // buffer, not into a new allocation.
        static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ENCODED.with_borrow_mut(|bytes| {
        bytes.clear();
        if serde_json::to_writer(&mut *bytes, key).is_err() {
            bytes.clear();
            bytes.extend_from_slice(format!("{key:?}").as_bytes());
        }
        u64::from(faustus_connectors::murmur2(bytes))
    })
}

/// The stable encoding of keys and values: JSON. It fails for what JSON cannot hold (a map
/// whose keys are not strings, a serializer that errs).
pub(crate) fn try_json<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(value)
}
