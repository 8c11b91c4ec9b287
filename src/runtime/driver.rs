//! The runtime side of the test driver ([`crate::driver`]): what its sources read, what its
//! tables restore from, and where its epochs go.
//!
//! The operator graph is the one `App::start` builds; only its edges differ. A [`Harness`] is
//! shared by the driver and every worker of one run:
//!
//! - **Sources** read the records the driver piped into a topic, partition by partition, with
//!   the assignment of the Kafka source (`(source + partition) % peers`). A record belongs to the
//!   epoch in which the driver closed it; a source emits it at that epoch and moves its
//!   capability to the epoch after the last closed one. Time never comes from the clock.
//! - **Restore** reads the changelog records the driver captured in earlier runs, keeps the last
//!   value per key, and emits it at the restore epoch, split among workers by the changelog
//!   partition of the key (as a Kafka restore reads its partitions).
//! - **The commit sink** hands each complete epoch to [`Harness::capture`] instead of a Kafka
//!   transaction, and tells the driver how far the frontier has got ([`Harness::reached`]).

use std::any::Any;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use differential_dataflow::ExchangeData;
use faustus_connectors::{kafka_partition, EpochBatch, RawRecord};
use serde::de::DeserializeOwned;
use timely::dataflow::operators::generic::source as timely_source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::SyncActivator;

use super::restore::{apply, undecodable, Entries};
use super::source::{assigned, dead_letter, meta, SourceItem};
use super::table::Replica;
use super::{Pos, Startup};
use crate::dataflow::Data;
use crate::record::Headers;
use crate::topic::RecordError;

/// A record piped into an input topic, at its place in the topic.
#[derive(Clone, Debug)]
pub(crate) struct Piped {
    /// The epoch the driver closed it in.
    pub epoch: u64,
    /// Its offset in its partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// The record timestamp, if any.
    pub timestamp: Option<i64>,
    /// The headers.
    pub headers: Headers,
}

/// Changelog records per changelog topic, in the order written: a JSON key, and a JSON value
/// or a tombstone.
pub(crate) type Changelogs = BTreeMap<String, Vec<(Vec<u8>, Option<Vec<u8>>)>>;

/// What the driver and the workers of one run share, under one lock.
#[derive(Default)]
struct Shared {
    /// Piped records per topic and partition, in offset order.
    input: BTreeMap<(String, i32), Vec<Piped>>,
    /// The last epoch the driver closed.
    closed: u64,
    /// The driver's clock (milliseconds) when it closed each epoch of this run.
    clock: BTreeMap<u64, u64>,
    /// The run is over: sources drop their capabilities.
    stopping: bool,
    /// Complete epochs, not yet taken by the driver.
    batches: Vec<EpochBatch>,
    /// The commit sink's frontier: every epoch before it is complete (`None`: all are).
    reached: Option<u64>,
    /// Each table's read copies, by name, one per worker.
    tables: BTreeMap<String, Vec<Arc<dyn TableCopy>>>,
}

/// A table's read copy on one worker, typed or as JSON.
pub(crate) trait TableCopy: Send + Sync {
    /// The typed copy (an `Arc<Replica<K, A>>`), to downcast.
    fn as_any(&self) -> &dyn Any;
    /// The entries, keys and values as JSON (or their debug form where JSON cannot hold them).
    fn json(&self) -> Vec<(String, String)>;
}

impl<K: Data, A: Data> TableCopy for Arc<Replica<K, A>> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn json(&self) -> Vec<(String, String)> {
        fn json<T: serde::Serialize + std::fmt::Debug>(t: &T) -> String {
            serde_json::to_string(t).unwrap_or_else(|_| format!("{t:?}"))
        }
        self.read()
            .iter()
            .map(|(k, a)| (json(k), json(a)))
            .collect()
    }
}

/// The state one run of a test driver shares with its workers: see the [module docs](self).
pub(crate) struct Harness {
    shared: Mutex<Shared>,
    changed: Condvar,
    /// The sources' activators, to wake them when an epoch closes or the run stops.
    activators: Mutex<Vec<SyncActivator>>,
    /// Changelog records to restore from, per changelog topic, in the order they were written.
    changelogs: Changelogs,
    /// The application's output topics, by index.
    out_topics: Vec<String>,
}

impl Harness {
    /// A harness for a run that restores from `changelogs` and writes to `out_topics`.
    pub(crate) fn new(changelogs: Changelogs, out_topics: Vec<String>, closed: u64) -> Self {
        Harness {
            shared: Mutex::new(Shared {
                closed,
                reached: Some(0),
                ..Shared::default()
            }),
            changed: Condvar::new(),
            activators: Mutex::new(Vec::new()),
            changelogs,
            out_topics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The output topics, by index.
    pub(crate) fn out_topics(&self) -> &[String] {
        &self.out_topics
    }

    /// Adds `records` (per topic and partition) to the input as epoch `epoch`, closes it, and
    /// wakes the sources.
    pub(crate) fn close(&self, epoch: u64, records: Vec<((String, i32), Piped)>, clock: u64) {
        {
            let mut shared = self.lock();
            for (at, record) in records {
                shared.input.entry(at).or_default().push(record);
            }
            shared.closed = epoch;
            shared.clock.insert(epoch, clock);
        }
        self.wake();
    }

    /// The last epoch the driver closed, and whether the run is stopping.
    pub(crate) fn closed(&self) -> (u64, bool) {
        let shared = self.lock();
        (shared.closed, shared.stopping)
    }

    /// Wakes `activator` whenever the driver closes an epoch or the run stops.
    pub(crate) fn wake_on_close(&self, activator: SyncActivator) {
        self.activators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(activator);
    }

    /// Ends the run: sources drop their capabilities, and the workers finish.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.wake();
    }

    fn wake(&self) {
        for activator in self
            .activators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // A worker that has finished cannot be woken, and need not be.
            let _ = activator.activate();
        }
    }

    /// Takes one complete epoch from the commit sink. Epochs after the last closed one are a
    /// stopping run's, which a crash would never have committed: they are dropped.
    pub(crate) fn capture(&self, batch: EpochBatch) {
        let mut shared = self.lock();
        if batch.epoch <= shared.closed {
            shared.batches.push(batch);
        }
    }

    /// Records the commit sink's frontier.
    pub(crate) fn reached(&self, frontier: Option<u64>) {
        let mut shared = self.lock();
        if shared.reached != frontier {
            shared.reached = frontier;
            self.changed.notify_all();
        }
    }

    /// Waits until every epoch up to `epoch` is complete, or `gave_up()` says to stop waiting
    /// (checked every `poll`); returns the complete epochs taken from the sink.
    pub(crate) fn wait_through(
        &self,
        epoch: u64,
        poll: Duration,
        mut gave_up: impl FnMut() -> Option<String>,
    ) -> Result<Vec<EpochBatch>, String> {
        let mut shared = self.lock();
        while shared.reached.is_some_and(|f| f <= epoch) {
            if let Some(why) = gave_up() {
                return Err(why);
            }
            shared = self
                .changed
                .wait_timeout(shared, poll)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(std::mem::take(&mut shared.batches))
    }

    /// Registers worker's read copy of table `name`.
    pub(crate) fn register_table(&self, name: &str, copy: Arc<dyn TableCopy>) {
        self.lock()
            .tables
            .entry(name.to_string())
            .or_default()
            .push(copy);
    }

    /// Moves the read copies registered as `old` to `new` (a table renamed while it is built).
    pub(crate) fn rename_table(&self, old: &str, new: &str) {
        let mut shared = self.lock();
        if let Some(copies) = shared.tables.remove(old) {
            shared
                .tables
                .entry(new.to_string())
                .or_default()
                .extend(copies);
        }
    }

    /// The read copies of table `name`, one per worker (`None`: no such table).
    pub(crate) fn table(&self, name: &str) -> Option<Vec<Arc<dyn TableCopy>>> {
        self.lock().tables.get(name).cloned()
    }

    /// The names of all tables.
    pub(crate) fn table_names(&self) -> Vec<String> {
        self.lock().tables.keys().cloned().collect()
    }
}

/// The source of topic `topic` (source index `index`) under a test driver: see the
/// [module docs](self).
pub(crate) fn driver_source<'s, D, F>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    harness: Arc<Harness>,
    index: u32,
    topic: String,
    mut decode: F,
) -> StreamVec<'s, u64, SourceItem<D>>
where
    D: ExchangeData,
    F: FnMut(&RawRecord<'_>) -> Result<D, RecordError> + 'static,
{
    let worker = scope.index();
    let peers = scope.peers();
    timely_source(
        scope,
        &format!("DriverSource({topic})"),
        move |capability, info| {
            harness
                .activators
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(scope.worker().sync_activator_for(info.address.to_vec()));
            let mut capability = Some(capability);
            // The next record to read, per partition of mine.
            let mut cursors: BTreeMap<i32, usize> = BTreeMap::new();
            let mut started = false;
            move |output| {
                let Some(cap) = capability.as_mut() else {
                    return;
                };
                if !started {
                    started = true;
                    let partitions = startup.partitions.get(&topic).copied().unwrap_or(0);
                    let mine = assigned(index, partitions, worker, peers);
                    if startup.planning || mine.is_empty() {
                        capability = None;
                        return;
                    }
                    cap.downgrade(&(startup.resume_epoch + 1));
                    cursors = mine.into_iter().map(|p| (p, 0)).collect();
                }
                let shared = harness.lock();
                for (&partition, cursor) in cursors.iter_mut() {
                    let Some(records) = shared.input.get(&(topic.clone(), partition)) else {
                        continue;
                    };
                    for piped in records[*cursor..]
                        .iter()
                        .take_while(|r| r.epoch <= shared.closed)
                    {
                        *cursor += 1;
                        let time = cap.delayed(&piped.epoch);
                        let record = RawRecord {
                            topic: &topic,
                            partition,
                            offset: piped.offset,
                            timestamp: piped.timestamp,
                            key: piped.key.as_deref(),
                            value: piped.value.as_deref(),
                            headers: piped
                                .headers
                                .iter()
                                .map(|(n, v)| (n.as_str(), v.as_slice()))
                                .collect(),
                        };
                        let pos = Pos::input(index, partition, piped.offset);
                        let item = match decode(&record) {
                            Ok(data) => {
                                Ok(((data, meta(&record, pos, piped.epoch)), piped.epoch, 1))
                            }
                            Err(e) => Err(dead_letter(&record, pos, &e.to_string())),
                        };
                        output.session(&time).give(item);
                    }
                }
                let (closed, stopping) = (shared.closed, shared.stopping);
                drop(shared);
                follow(&mut capability, closed, stopping);
            }
        },
    )
}

/// The clock under a test driver (see [`super::clock`]): on worker 0, at each closed epoch, the
/// driver's clock when it closed it.
pub(crate) fn driver_clock<'s>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    harness: Arc<Harness>,
) -> StreamVec<'s, u64, u64> {
    let ticking = scope.index() == 0 && !startup.planning;
    timely_source(scope, "DriverClock", move |capability, info| {
        harness
            .activators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(scope.worker().sync_activator_for(info.address.to_vec()));
        let mut capability = ticking.then(|| {
            let mut capability = capability;
            capability.downgrade(&(startup.resume_epoch + 1));
            capability
        });
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            let shared = harness.lock();
            for (&epoch, &clock) in shared.clock.range(*cap.time()..) {
                output.session(&cap.delayed(&epoch)).give(clock);
            }
            let (closed, stopping) = (shared.closed, shared.stopping);
            drop(shared);
            follow(&mut capability, closed, stopping);
        }
    })
}

/// Moves a driver operator's capability past the last closed epoch, or drops it when the run is
/// stopping.
pub(crate) fn follow(capability: &mut Option<Capability<u64>>, closed: u64, stopping: bool) {
    if stopping {
        *capability = None;
    } else if let Some(cap) = capability.as_mut().filter(|cap| *cap.time() <= closed) {
        cap.downgrade(&(closed + 1));
    }
}

/// A changelog's entries under a test driver: the last value per key of the records captured
/// for `topic`, for the keys whose changelog partition (of `partitions`, as Kafka's producer
/// would choose it) is one of `mine`.
pub(crate) fn read_changelog<K, A>(
    harness: &Harness,
    topic: &str,
    partitions: i32,
    mine: &[i32],
) -> Result<Entries<K, A>, String>
where
    K: Hash + Eq + DeserializeOwned,
    A: DeserializeOwned,
{
    let mut entries: Entries<K, A> = Entries::default();
    let records = harness.changelogs.get(topic).map_or(&[][..], |r| r);
    for (key, value) in records {
        let partition = kafka_partition(key, partitions.max(1) as u32) as i32;
        if !mine.contains(&partition) {
            continue;
        }
        apply(&mut entries, key, value.as_deref()).map_err(|e| undecodable(&e.to_string()))?;
    }
    Ok(entries)
}
