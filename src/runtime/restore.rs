//! Restoring a table from its changelog.
//!
//! Worker `w` reads changelog partitions `p` with `p % peers == w` from the beginning to their
//! current end (committed data only), keeps the last value per key (a tombstone removes the
//! key), and emits the result at the restore epoch; then it drops its capability. Sources start
//! after the restore epoch, so every table is whole before the first new event reaches it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use differential_dataflow::ExchangeData;
use faustus_connectors::{read_to_end_counted, KafkaConfig};
use serde::de::DeserializeOwned;
use timely::dataflow::operators::generic::source as timely_source;
use timely::dataflow::{Scope, StreamVec};

use super::health::PROGRESS_EVERY;
use super::{Io, Startup};

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
        move |capability, _info| {
            let mut capability = Some(capability);
            move |output| {
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
                let read = match &startup.io {
                    Io::Kafka(kafka) => read_kafka(&startup, kafka, &topic, &mine),
                    Io::Driver(harness) => {
                        super::driver::read_changelog(harness, &topic, partitions, &mine)
                    }
                };
                match read {
                    Err(e) => startup.fail(format!("restoring `{topic}`: {e}")),
                    Ok(entries) => {
                        log::info!(
                            "worker {worker} restored {} keys of `{topic}`",
                            entries.len()
                        );
                        startup.health.update_restore(&topic, |r| {
                            r.keys += entries.len() as u64;
                            r.workers += 1;
                        });
                        let mut session = output.session(&cap);
                        for (k, a) in entries {
                            session.give(((k, a), epoch, 1));
                        }
                    }
                }
            }
        },
    )
}

/// Reads partitions `mine` of changelog topic `topic` from Kafka to their end, counting the
/// records read in the restore's progress; the last value per key.
fn read_kafka<K, A>(
    startup: &Startup,
    kafka: &KafkaConfig,
    topic: &str,
    mine: &[i32],
) -> Result<HashMap<K, A>, String>
where
    K: Hash + Eq + DeserializeOwned,
    A: DeserializeOwned,
{
    let mut entries: HashMap<K, A> = HashMap::new();
    let mut error = None;
    let health = &startup.health;
    // Records read and not yet added to the shared progress.
    let mut unreported = 0u64;
    let read = read_to_end_counted(
        kafka,
        topic,
        mine,
        startup.restore_timeout,
        |offsets| {
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

/// Why a restore failed on a changelog record that does not decode (`at` says which).
pub(crate) fn undecodable(at: &str) -> String {
    format!("a changelog record does not decode ({at}); was the table's type changed?")
}

/// Applies one changelog record to `entries`: a JSON key with a JSON value sets the key, with
/// no value (a tombstone) removes it.
pub(crate) fn apply<K, A>(
    entries: &mut HashMap<K, A>,
    key: &[u8],
    value: Option<&[u8]>,
) -> serde_json::Result<()>
where
    K: Hash + Eq + DeserializeOwned,
    A: DeserializeOwned,
{
    let key = serde_json::from_slice::<K>(key)?;
    match value {
        None => {
            entries.remove(&key);
        }
        Some(value) => {
            entries.insert(key, serde_json::from_slice::<A>(value)?);
        }
    }
    Ok(())
}
