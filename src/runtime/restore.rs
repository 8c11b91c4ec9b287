//! Restoring a table from its changelog.
//!
//! Worker `w` reads changelog partitions `p` with `p % peers == w` from the beginning to their
//! current end (committed data only), keeps the last value per key (a tombstone removes the
//! key), and emits the result at the restore epoch, a slice per activation; then it drops its
//! capability. Sources start after the restore epoch, so every table is whole before the first
//! new event reaches it.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::ExchangeData;
use faustus_connectors::{read_to_end_counted, KafkaConfig};
use serde::de::DeserializeOwned;
use timely::dataflow::operators::generic::source as timely_source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};

use super::health::PROGRESS_EVERY;
use super::{Io, Startup};

/// The entries read from a changelog: the last value per key (hashed with foldhash, as operator
/// state is).
pub(crate) type Entries<K, A> = foldhash::HashMap<K, A>;

/// Emits the entries of changelog `topic` as `((key, value), restore epoch, 1)`: read from
/// Kafka, or, under a test driver, from the changelog records it captured
/// ([`super::driver::read_changelog`]). A failed read fails the application and emits nothing.
pub(crate) fn restore_source<'s, K, A>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    topic: String,
) -> StreamVec<'s, u64, ((K, A), u64, isize)>
where
    K: ExchangeData + Hash + DeserializeOwned,
    A: ExchangeData + DeserializeOwned,
{
    let worker = scope.index();
    let peers = scope.peers();
    timely_source(
        scope,
        &format!("Restore({topic})"),
        move |capability, info| {
            let mut capability = Some(capability);
            let activator = scope.activator_for(info.address);
            // What is read and not yet emitted, with the capability to emit it at.
            let mut emitting: Option<(Capability<u64>, Emitting<K, A>)> = None;
            move |output| {
                if let Some((cap, mut entries)) = emitting.take() {
                    // A slice per activation, so that the operators downstream take each one in
                    // while it is in the cache, instead of every entry being queued at once.
                    let mut session = output.session(&cap);
                    let epoch = *cap.time();
                    let mut emitted = 0;
                    for (k, a) in entries.by_ref() {
                        session.give(((k, a), epoch, 1));
                        emitted += 1;
                        if emitted == EMIT_CHUNK {
                            drop(session);
                            emitting = Some((cap, entries));
                            activator.activate();
                            return;
                        }
                    }
                    return;
                }
                let Some(mut cap) = capability.take() else {
                    return;
                };
                if startup.planning {
                    return;
                }
                let epoch = startup.resume_epoch;
                cap.downgrade(&epoch);
                let partitions = startup.partitions.get(&topic).copied().unwrap_or(0);
                let mine: Vec<i32> = (0..partitions)
                    .filter(|p| *p as usize % peers == worker)
                    .collect();
                let span = tracing::info_span!("restore", changelog = %topic, worker);
                let _in_span = span.enter();
                let local = startup.checkpoints.as_ref().filter(|c| c.restores(&topic));
                let read: Result<Restored<K, A>, String> = match &startup.io {
                    Io::Kafka(_) if local.is_some() => {
                        read_checkpoint(&startup, local.expect("checked"), &topic, worker, peers)
                            .map(Restored::Listed)
                    }
                    Io::Kafka(kafka) => {
                        read_kafka(&startup, kafka, &topic, &mine).map(Restored::Keyed)
                    }
                    Io::Driver(harness) => {
                        super::driver::read_changelog(harness, &topic, partitions, &mine)
                            .map(Restored::Keyed)
                    }
                };
                match read {
                    Err(e) => startup.fail(format!("restoring `{topic}`: {e}")),
                    Ok(entries) => {
                        let len = entries.len();
                        log::info!("worker {worker} restored {len} keys of `{topic}`");
                        startup.health.update_restore(&topic, |r| {
                            r.keys += len as u64;
                            r.workers += 1;
                        });
                        emitting = Some((cap, entries.into_iter()));
                        activator.activate();
                    }
                }
            }
        },
    )
}

/// The restored entries a worker has yet to emit.
type Emitting<K, A> = Box<dyn Iterator<Item = (K, A)>>;

/// What a worker restored: the last value per key, in a map (read from a changelog) or a list
/// (read from a checkpoint, whose files hold each key once).
enum Restored<K, A> {
    Keyed(Entries<K, A>),
    Listed(Vec<(K, A)>),
}

impl<K, A> Restored<K, A> {
    fn len(&self) -> usize {
        match self {
            Restored::Keyed(map) => map.len(),
            Restored::Listed(list) => list.len(),
        }
    }

    fn into_iter(self) -> Emitting<K, A>
    where
        K: 'static,
        A: 'static,
    {
        match self {
            Restored::Keyed(map) => Box::new(map.into_iter()),
            Restored::Listed(list) => Box::new(list.into_iter()),
        }
    }
}

/// Reads worker `worker`'s share of the local checkpoint of changelog `topic` (see
/// [`super::checkpoint`]), counting the entries read in the restore's progress.
fn read_checkpoint<K, A>(
    startup: &Startup,
    checkpoints: &super::checkpoint::Checkpoints,
    topic: &str,
    worker: usize,
    peers: usize,
) -> Result<Vec<(K, A)>, String>
where
    K: Hash + Eq + DeserializeOwned,
    A: DeserializeOwned,
{
    let health = &startup.health;
    health.update_restore(topic, |r| r.checkpoint = true);
    let entries = checkpoints.read(
        topic,
        worker,
        peers,
        |expected| {
            health.update_restore(topic, |r| {
                r.workers_started += 1;
                r.expected_offsets += expected;
            })
        },
        |records| health.update_restore(topic, |r| r.records += records),
    )?;
    log::info!(
        "read {} keys of `{topic}` from the local checkpoint",
        entries.len()
    );
    Ok(entries)
}

/// Reads partitions `mine` of changelog topic `topic` from Kafka to their end, counting the
/// records read in the restore's progress; the last value per key.
fn read_kafka<K, A>(
    startup: &Startup,
    kafka: &KafkaConfig,
    topic: &str,
    mine: &[i32],
) -> Result<Entries<K, A>, String>
where
    K: Hash + Eq + DeserializeOwned,
    A: DeserializeOwned,
{
    let mut entries: Entries<K, A> = Entries::default();
    let mut error = None;
    let health = &startup.health;
    // Records read and not yet added to the shared progress.
    let mut unreported = 0u64;
    let mut progress = ProgressLog::new(LOG_PROGRESS_EVERY);
    let expected = std::cell::Cell::new(0u64);
    let read = read_to_end_counted(
        kafka,
        topic,
        mine,
        startup.restore_timeout,
        |offsets| {
            expected.set(offsets);
            health.update_restore(topic, |r| {
                r.workers_started += 1;
                r.expected_offsets += offsets;
            })
        },
        |record| {
            unreported += 1;
            if unreported == PROGRESS_EVERY {
                health.update_restore(topic, |r| r.records += PROGRESS_EVERY);
                unreported = 0;
                if let Some(line) = progress.step(PROGRESS_EVERY, expected.get()) {
                    log::info!("restoring `{topic}` partitions {mine:?}: {line}");
                }
            }
            if entries.capacity() == 0 {
                // Room for the records to come (fewer keys, once compacted), within reason.
                entries.reserve(expected.get().min(RESERVE_MAX) as usize);
            }
            let key = record.key.unwrap_or_default();
            if let Err(e) = apply(&mut entries, key, record.value) {
                error = Some(format!(
                    "{}/{}@{}: {e}",
                    record.topic, record.partition, record.offset
                ));
            }
        },
    );
    health.update_restore(topic, |r| r.records += unreported);
    match (read, error) {
        (Err(e), _) => Err(e.to_string()),
        (Ok(_), Some(e)) => Err(undecodable(&e)),
        (Ok(n), None) => {
            log::info!("read {n} records of `{topic}` partitions {mine:?}");
            Ok(entries)
        }
    }
}

/// The most restored entries a worker emits per activation of its restore operator.
const EMIT_CHUNK: usize = 1 << 16;

/// The most entries a restore makes room for before it reads them: a changelog that is not yet
/// compacted has many more offsets than keys.
const RESERVE_MAX: u64 = 1 << 20;

/// How often a long restore logs its progress.
const LOG_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The progress of one worker's read of a changelog, logged at most every `every`: records
/// read of those expected, percent, rate and time left.
struct ProgressLog {
    started: Instant,
    every: Duration,
    last: Instant,
    read: u64,
}

impl ProgressLog {
    fn new(every: Duration) -> Self {
        let now = Instant::now();
        ProgressLog {
            started: now,
            every,
            last: now,
            read: 0,
        }
    }

    /// Counts `records` more, of `expected` offsets to read (an upper bound of the records);
    /// the line to log if the last one is `every` old.
    fn step(&mut self, records: u64, expected: u64) -> Option<String> {
        self.read += records;
        let now = Instant::now();
        if now.duration_since(self.last) < self.every {
            return None;
        }
        self.last = now;
        Some(progress_line(
            self.read,
            expected,
            now.duration_since(self.started),
        ))
    }
}

/// `read` of `expected` records after `elapsed`: `"120000 of 500000 records (24%), 40000/s, about
/// 10 s left"`.
fn progress_line(read: u64, expected: u64, elapsed: Duration) -> String {
    let expected = expected.max(read);
    let p = super::health::RestoreProgress {
        records: read,
        expected_records: Some(expected),
        seconds: elapsed.as_secs_f64(),
    };
    let (rate, percent) = (p.rate(), p.percent().unwrap_or(100));
    // Nothing read yet: no rate to go by, so at least a second per record left.
    let left = p.seconds_left().unwrap_or((expected - read) as f64);
    format!("{read} of {expected} records ({percent}%), {rate:.0}/s, about {left:.0} s left")
}

/// Why a restore failed on a changelog record that does not decode (`at` says which).
pub(crate) fn undecodable(at: &str) -> String {
    format!("a changelog record does not decode ({at}); was the table's type changed?")
}

/// Applies one changelog record to `entries`: a JSON key with a JSON value sets the key, with
/// no value (a tombstone) removes it.
pub(crate) fn apply<K, A>(
    entries: &mut Entries<K, A>,
    key: &[u8],
    value: Option<&[u8]>,
) -> serde_json::Result<()>
where
    K: Hash + Eq + DeserializeOwned,
    A: DeserializeOwned,
{
    let key = faustus_connectors::json_from_slice::<K>(key)?;
    match value {
        None => {
            entries.remove(&key);
        }
        Some(value) => {
            entries.insert(key, faustus_connectors::json_from_slice::<A>(value)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_give_percent_rate_and_time_left() {
        assert_eq!(
            progress_line(120_000, 500_000, Duration::from_secs(3)),
            "120000 of 500000 records (24%), 40000/s, about 10 s left"
        );
        // Compaction leaves fewer records than offsets; more than expected never shows > 100%.
        assert_eq!(
            progress_line(10, 0, Duration::from_secs(1)),
            "10 of 10 records (100%), 10/s, about 0 s left"
        );
    }

    #[test]
    fn progress_is_logged_at_most_once_per_interval() {
        let mut log = ProgressLog::new(Duration::from_secs(3600));
        assert_eq!(log.step(10, 100), None);
        let mut log = ProgressLog::new(Duration::ZERO);
        let line = log
            .step(10, 100)
            .expect("a line when the interval has passed");
        assert!(line.starts_with("10 of 100 records (10%)"), "{line}");
    }
}
