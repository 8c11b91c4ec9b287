//! What the overview page (`GET /`, `GET /api/overview/`) shows of the last minutes, kept in
//! memory by each process: a [`History`] of samples of its counters, and its most recent dead
//! letters.
//!
//! Both are a [`Ring`]: a bounded `VecDeque` behind a mutex, which forgets its oldest item when a
//! new one arrives at capacity. The sampler pushes one [`Sample`] every [`SAMPLE_EVERY`] (so the
//! history covers [`SAMPLES`] × [`SAMPLE_EVERY`], ten minutes); the places that make dead letters
//! push one [`RecentDeadLetter`] each (the dataflow's commit sink once per epoch, at most
//! [`RECENT_DEAD_LETTERS`] of them; an agent once per dead letter). Nothing is touched per
//! record, and memory stays bounded whatever the input.
//!
//! A cluster's series is the sum of its processes' ([`sum_series`]): every process samples on
//! its own clock, so samples are put into buckets of [`SAMPLE_EVERY`] by wall-clock time, and a
//! process without a sample in a bucket counts with its previous one (its totals only grow, so
//! that is what it would have said). Buckets before every process has its first sample are left
//! out: a sum that misses a process would look like a drop in throughput.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How often a process samples its counters.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// How many samples a process keeps: ten minutes at [`SAMPLE_EVERY`].
pub(crate) const SAMPLES: usize = 300;

/// How many recent dead letters a process keeps.
pub(crate) const RECENT_DEAD_LETTERS: usize = 20;

/// The longest reason a recent dead letter keeps, in characters (a panic's message can be
/// long; the dead-letter topic has it whole).
const REASON_CHARS: usize = 500;

/// A bounded list that forgets its oldest item when full.
#[derive(Debug)]
pub(crate) struct Ring<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
}

impl<T: Clone> Ring<T> {
    /// An empty ring that holds at most `capacity` items.
    pub(crate) fn new(capacity: usize) -> Self {
        Ring {
            items: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Adds `items`, oldest first, under one lock; only the last `capacity` of them can stay.
    pub(crate) fn extend(&self, items: impl IntoIterator<Item = T>) {
        let mut ring = self.items.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            if self.capacity > 0 {
                ring.push_back(item);
            }
        }
    }

    /// Adds one item.
    pub(crate) fn push(&self, item: T) {
        self.extend([item]);
    }

    /// The items, oldest first.
    pub(crate) fn oldest_first(&self) -> Vec<T> {
        let ring = self.items.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }

    /// The items, newest first.
    pub(crate) fn newest_first(&self) -> Vec<T> {
        let ring = self.items.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

/// A process's counters at one moment. Totals count from the process's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// When, in milliseconds since 1970.
    pub at_ms: u64,
    /// Records read from input partitions by the dataflow's sources.
    pub records_read: u64,
    /// Records the committer wrote (outputs, changelogs, dead letters).
    pub records_written: u64,
    /// Records in the input partitions after the sources' positions (`None`: Kafka did not
    /// tell the high watermark of any partition, or there is none).
    pub lag: Option<i64>,
    /// Dead letters, of the dataflow and of the agents.
    pub dead_letters: u64,
    /// Commits completed.
    pub commits: u64,
}

/// The sampled history of a process.
pub(crate) type History = Ring<Sample>;

/// A new, empty [`History`].
pub(crate) fn history() -> History {
    Ring::new(SAMPLES)
}

/// One recent dead letter, as the overview shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecentDeadLetter {
    /// When it was made, in milliseconds since 1970.
    pub at_ms: u64,
    /// What kind of failure: `decode`, `late`, `encode`, `panic` (see [`crate::dead_letter`]),
    /// or `handler` for an agent's handler that failed.
    pub kind: String,
    /// Why (at most [`REASON_CHARS`] characters).
    pub reason: String,
    /// The input topic, partition and offset it came from, where known.
    pub topic: Option<String>,
    /// Its partition.
    pub partition: Option<i32>,
    /// Its offset.
    pub offset: Option<i64>,
    /// The table or operator that refused it, or the agent whose handler failed.
    pub operator: Option<String>,
    /// The agent that dead-lettered it (`None`: the dataflow).
    pub agent: Option<String>,
}

impl RecentDeadLetter {
    /// A dead letter made now for `reason` (cut to [`REASON_CHARS`] characters).
    pub(crate) fn now(kind: &str, reason: &str) -> Self {
        let reason = match reason.char_indices().nth(REASON_CHARS) {
            Some((cut, _)) => format!("{}…", &reason[..cut]),
            None => reason.to_string(),
        };
        RecentDeadLetter {
            at_ms: now_ms(),
            kind: kind.to_string(),
            reason,
            topic: None,
            partition: None,
            offset: None,
            operator: None,
            agent: None,
        }
    }

    /// The dead letter a dead-letter record's headers describe (see [`crate::dead_letter`]).
    pub(crate) fn from_headers(headers: &[(String, Vec<u8>)]) -> Self {
        use crate::dead_letter as dl;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(h, _)| h == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let mut letter = RecentDeadLetter::now(
            &header(dl::KIND).unwrap_or_default(),
            &header(dl::REASON).unwrap_or_default(),
        );
        letter.topic = header(dl::TOPIC);
        letter.partition = header(dl::PARTITION).and_then(|p| p.parse().ok());
        letter.offset = header(dl::OFFSET).and_then(|o| o.parse().ok());
        letter.operator = header(dl::OPERATOR);
        letter
    }
}

/// The recent dead letters of a process.
pub(crate) type DeadLetterLog = Ring<RecentDeadLetter>;

/// A new, empty [`DeadLetterLog`].
pub(crate) fn dead_letter_log() -> DeadLetterLog {
    Ring::new(RECENT_DEAD_LETTERS)
}

/// Milliseconds since 1970, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The series of a cluster: per bucket of `every`, the sum of every process's latest sample in
/// it (or before it); the bucket's time is its last sample's. Buckets before the latest first
/// sample of a process are left out, and so are processes without samples yet. See the module
/// documentation.
pub(crate) fn sum_series(processes: &[Vec<Sample>], every: Duration) -> Vec<Sample> {
    let every = every.as_millis().max(1) as u64;
    let sampled: Vec<&Vec<Sample>> = processes.iter().filter(|s| !s.is_empty()).collect();
    if sampled.len() <= 1 {
        return sampled.first().map(|s| s.to_vec()).unwrap_or_default();
    }
    // Per process: bucket → its last sample in the bucket.
    let bucketed: Vec<BTreeMap<u64, Sample>> = sampled
        .iter()
        .map(|samples| samples.iter().map(|s| (s.at_ms / every, *s)).collect())
        .collect();
    let first = bucketed
        .iter()
        .filter_map(|b| b.keys().next().copied())
        .max()
        .unwrap_or_default();
    let mut buckets: Vec<u64> = bucketed
        .iter()
        .flat_map(|b| b.range(first..).map(|(k, _)| *k))
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    buckets
        .into_iter()
        .map(|bucket| {
            let mut sum = Sample::default();
            for process in &bucketed {
                let Some((_, s)) = process.range(..=bucket).next_back() else {
                    continue;
                };
                sum.at_ms = sum.at_ms.max(s.at_ms);
                sum.records_read += s.records_read;
                sum.records_written += s.records_written;
                sum.dead_letters += s.dead_letters;
                sum.commits += s.commits;
                sum.lag = match (sum.lag, s.lag) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            sum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_newest_items_up_to_its_capacity() {
        let ring = Ring::new(3);
        assert!(ring.oldest_first().is_empty());
        ring.push(1);
        ring.push(2);
        assert_eq!(ring.oldest_first(), vec![1, 2]);
        ring.extend([3, 4, 5]);
        assert_eq!(ring.oldest_first(), vec![3, 4, 5]);
        assert_eq!(ring.newest_first(), vec![5, 4, 3]);
        ring.extend(10..100);
        assert_eq!(ring.newest_first(), vec![99, 98, 97]);
        let none: Ring<u8> = Ring::new(0);
        none.push(1);
        assert!(none.oldest_first().is_empty());
    }

    #[test]
    fn the_history_covers_ten_minutes() {
        let history = history();
        for i in 0..(SAMPLES as u64 + 50) {
            history.push(Sample {
                at_ms: i * 2000,
                commits: i,
                ..Sample::default()
            });
        }
        let samples = history.oldest_first();
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples[0].commits, 50);
        assert_eq!(samples.last().unwrap().commits, SAMPLES as u64 + 49);
        let span = samples.last().unwrap().at_ms - samples[0].at_ms;
        assert_eq!(span + 2000, 10 * 60 * 1000);
    }

    #[test]
    fn the_dead_letter_log_keeps_the_last_ones_newest_first() {
        let log = dead_letter_log();
        for i in 0..(RECENT_DEAD_LETTERS + 7) {
            log.push(RecentDeadLetter::now("decode", &format!("reason {i}")));
        }
        let recent = log.newest_first();
        assert_eq!(recent.len(), RECENT_DEAD_LETTERS);
        assert_eq!(
            recent[0].reason,
            format!("reason {}", RECENT_DEAD_LETTERS + 6)
        );
        assert_eq!(recent.last().unwrap().reason, "reason 7");
        assert!(recent.windows(2).all(|w| w[0].at_ms >= w[1].at_ms));
    }

    #[test]
    fn a_dead_letter_is_read_from_its_headers_and_its_reason_is_bounded() {
        use crate::dead_letter as dl;
        let long = "é".repeat(REASON_CHARS + 10);
        let headers = vec![
            (dl::REASON.to_string(), long.into_bytes()),
            (dl::KIND.to_string(), b"decode".to_vec()),
            (dl::TOPIC.to_string(), b"orders".to_vec()),
            (dl::PARTITION.to_string(), b"3".to_vec()),
            (dl::OFFSET.to_string(), b"41".to_vec()),
        ];
        let letter = RecentDeadLetter::from_headers(&headers);
        assert_eq!(letter.kind, "decode");
        assert_eq!(letter.topic.as_deref(), Some("orders"));
        assert_eq!((letter.partition, letter.offset), (Some(3), Some(41)));
        assert_eq!(letter.operator, None);
        assert_eq!(letter.reason.chars().count(), REASON_CHARS + 1);
        assert!(letter.reason.ends_with('…'));
    }

    fn sample(at_ms: u64, records_read: u64, lag: Option<i64>) -> Sample {
        Sample {
            at_ms,
            records_read,
            lag,
            ..Sample::default()
        }
    }

    #[test]
    fn a_cluster_series_sums_processes_per_bucket() {
        let every = Duration::from_secs(2);
        // Process 1 starts later, samples out of phase, and misses the bucket at 8 s.
        let a = vec![
            sample(2_100, 10, Some(5)),
            sample(4_100, 20, Some(4)),
            sample(6_100, 30, Some(3)),
            sample(8_100, 40, Some(2)),
        ];
        let b = vec![
            sample(4_900, 100, None),
            sample(6_900, 200, Some(1)),
            sample(10_900, 400, Some(1)),
        ];
        let sum = sum_series(&[a.clone(), b], every);
        let read: Vec<u64> = sum.iter().map(|s| s.records_read).collect();
        // Buckets 2 (4–6 s), 3, 4 (b carries 200 forward), 5 (a carries 40 forward).
        assert_eq!(read, vec![120, 230, 240, 440]);
        let lag: Vec<Option<i64>> = sum.iter().map(|s| s.lag).collect();
        assert_eq!(lag, vec![Some(4), Some(4), Some(3), Some(3)]);
        assert_eq!(sum[0].at_ms, 4_900);
        assert!(sum.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
        // One process: its own series; a process without samples yet is left out.
        assert_eq!(sum_series(std::slice::from_ref(&a), every), a);
        assert_eq!(sum_series(&[vec![], a.clone()], every), a);
        assert!(sum_series(&[], every).is_empty());
    }
}
