//! The runtime: the timely operators that connect a dataflow to Kafka, and the worker loop.
//!
//! Operators here read Kafka ([`source`]), restore tables ([`restore`]), keep tables' changelogs
//! and read replicas ([`table`]) and hand each closed epoch to the committer ([`commit`]).

pub(crate) mod assignment;
pub(crate) mod commit;
pub(crate) mod health;
pub(crate) mod restore;
pub(crate) mod source;
pub(crate) mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faustus_connectors::{KafkaConfig, OutRecord};
use serde::{Deserialize, Serialize};

/// Where a record came from: `(source, partition, offset, sub-index)`. Orders records within an
/// epoch deterministically, whatever the interleaving of workers.
pub type Pos = (u32, i32, i64, u32);

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
    /// deleted and transaction-marker offsets hold no record).
    pub expected_offsets: u64,
}

/// What flows to the committer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum CommitItem {
    /// A record for a sink, changelog or the dead-letter topic.
    Record(Pos, OutRecord),
    /// An input position: source index, partition, next offset.
    Offset(u32, i32, i64),
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
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// Epoch length.
    pub commit_interval: Duration,
    /// Where sources publish what they read (for `/api/assignment/`).
    pub assignments: Arc<assignment::Assignments>,
    /// The process's life: the stop flag, the first fatal error, the restore's progress.
    pub health: Arc<health::Health>,
}

impl Startup {
    /// A startup for the planning pass: nothing runs.
    pub(crate) fn planning() -> Self {
        Startup {
            planning: true,
            resume_epoch: 1,
            offsets: BTreeMap::new(),
            partitions: BTreeMap::new(),
            kafka: KafkaConfig::new(""),
            commit_interval: Duration::from_millis(100),
            assignments: Arc::default(),
            health: Arc::new(health::Health::new(1)),
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
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let interval = (self.commit_interval.as_millis() as u64).max(1);
        millis - millis % interval
    }

    /// Time until the next epoch begins.
    pub(crate) fn until_next_epoch(&self) -> Duration {
        let interval = (self.commit_interval.as_millis() as u64).max(1);
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Duration::from_millis(interval - millis % interval)
    }
}

/// The stable hash that routes a key to its owning worker: murmur2 of its JSON encoding.
pub(crate) fn route<K: Serialize>(key: &K) -> u64 {
    u64::from(faustus_connectors::murmur2(&key_bytes(key)))
}

/// The stable encoding of a key: JSON.
pub(crate) fn key_bytes<K: Serialize>(key: &K) -> Vec<u8> {
    serde_json::to_vec(key).expect("keys serialize to JSON")
}
