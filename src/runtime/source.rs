//! The Kafka source operator.
//!
//! ## Contract
//!
//! Partition `p` of the source with index `s` is read by global worker `(s + p) % peers`; a
//! worker that reads no partition drops its capability at once, so it never holds the frontier
//! back. A worker's epochs follow the wall clock (`now / commit interval`), starting after the
//! restore epoch; every record is emitted at the epoch in which it was read, in offset order per
//! partition, with its timestamp and headers ([`Meta`]). Before its capability moves past an
//! epoch, the source emits the positions it reached in that epoch, so the committer records
//! exactly the input that epoch consumed. A record that does not decode goes to the dead-letter topic, with the reason and its
//! topic/partition/offset in headers, as a record of the same epoch.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use differential_dataflow::ExchangeData;
use faustus_connectors::{KafkaConfig, PartitionReader, RawRecord};
use timely::dataflow::operators::generic::source as timely_source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use super::{CommitItem, Io, Pos, Startup};
use crate::dead_letter::DeadLetter;
use crate::record::Meta;
use crate::topic::RecordError;
use std::sync::Arc;

/// Records handed out per activation before yielding to other operators.
pub(crate) const BATCH: usize = 8192;

/// What a source emits: data, or something for the committer.
pub(crate) type SourceItem<D> = Result<((D, Meta), u64, isize), CommitItem>;

/// Which partitions of source `index` worker `worker` of `peers` reads.
pub(crate) fn assigned(index: u32, partitions: i32, worker: usize, peers: usize) -> Vec<i32> {
    (0..partitions)
        .filter(|p| (index as usize + *p as usize) % peers == worker)
        .collect()
}

/// Builds the source operator for topic `topic` (source index `index`): one that reads Kafka,
/// or, under a test driver, one that reads what the driver piped (see [`super::driver`]). Both
/// keep the contract above.
pub(crate) fn source<'s, D, F>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    index: u32,
    topic: String,
    committed: ProbeHandle<u64>,
    decode: F,
) -> StreamVec<'s, u64, SourceItem<D>>
where
    D: ExchangeData,
    F: FnMut(&RawRecord<'_>) -> Result<D, RecordError> + 'static,
{
    match &startup.io {
        Io::Kafka(kafka) => {
            let kafka = kafka.clone();
            let backlog = Backlog::new(&startup, scope.peers(), committed);
            kafka_source(scope, startup, kafka, index, topic, backlog, decode)
        }
        Io::Driver(harness) => {
            let harness = Arc::clone(harness);
            super::driver::driver_source(scope, startup, harness, index, topic, decode)
        }
    }
}

/// The source operator that reads topic `topic` from Kafka.
fn kafka_source<'s, D, F>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    kafka: KafkaConfig,
    index: u32,
    topic: String,
    mut backlog: Backlog,
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
        &format!("Source({topic})"),
        move |capability, info| {
            let activator = scope.activator_for(info.address);
            let mut capability = Some(capability);
            let mut reader: Option<PartitionReader> = None;
            let mut reported: BTreeMap<i32, i64> = BTreeMap::new();
            // Records read per partition, counted per poll (see `crate::metrics`).
            let mut read = ReadCounts::default();
            // The hop latency of the records read (see `crate::metrics`), per poll.
            let mut sensor = None;
            let mut started = false;
            move |output| {
                let Some(cap) = capability.as_mut() else {
                    return;
                };
                if !started {
                    started = true;
                    if startup.planning {
                        capability = None;
                        return;
                    }
                    cap.downgrade(&(startup.resume_epoch + 1).max(startup.epoch_now()));
                    let partitions = startup.partitions.get(&topic).copied().unwrap_or(0);
                    let mine = assigned(index, partitions, worker, peers);
                    if mine.is_empty() {
                        let none = BTreeMap::new();
                        startup.assignments.publish(worker, &topic, None, &none);
                        capability = None;
                        return;
                    }
                    let resume = startup.offsets.get(&topic);
                    let start: Vec<(i32, Option<i64>)> = mine
                        .iter()
                        .map(|p| (*p, resume.and_then(|r| r.get(p)).copied()))
                        .collect();
                    log::info!("worker {worker} reads `{topic}` partitions {mine:?}");
                    match PartitionReader::new(&kafka, &topic, &start) {
                        Ok(r) => {
                            reported = r.positions().clone();
                            read = ReadCounts::new(&startup.metrics, &topic, &mine);
                            let hop = if startup.written.contains(&topic) {
                                "through"
                            } else {
                                "source"
                            };
                            sensor = startup.metrics.hop_sensor(hop, &topic);
                            startup.assignments.publish(
                                worker,
                                &topic,
                                Some(*cap.time()),
                                &reported,
                            );
                            reader = Some(r);
                        }
                        Err(e) => {
                            startup.fail(format!("source `{topic}`: {e}"));
                            capability = None;
                            return;
                        }
                    }
                }
                let Some(cap) = capability.as_mut() else {
                    return;
                };
                let reader = reader.as_mut().expect("reader exists once started");

                // Close the current epoch if the clock moved on, or early while input is sparse
                // (or we are stopping): report the positions reached, then move the capability.
                let stopping = startup.stopping();
                let next = backlog.next_epoch(&startup, *cap.time());
                if stopping || next.is_some() {
                    let mut session = output.session(&*cap);
                    for (&partition, &offset) in reader.positions() {
                        if reported.get(&partition) != Some(&offset) {
                            session.give(Err(CommitItem::Offset(index, partition, offset)));
                            reported.insert(partition, offset);
                        }
                    }
                    drop(session);
                    let epoch = next.filter(|_| !stopping);
                    startup
                        .assignments
                        .publish(worker, &topic, epoch, reader.positions());
                    let Some(next) = next.filter(|_| !stopping) else {
                        capability = None;
                        return;
                    };
                    cap.downgrade(&next);
                }

                // Backpressure: while this worker's input in epochs the committer has not taken
                // in is over its share, read nothing. The partitions are not paused: the Kafka
                // client stops fetching once its own queue is full (`queued.max.messages.kbytes`),
                // and keeps what it prefetched, where pausing would drop it and, with every
                // partition paused, leave its fetcher asleep for up to a second after the resume.
                if backlog.over(&startup.metrics) {
                    activator.activate_after(BACKPRESSURE_WAIT);
                    return;
                }
                let time = *cap.time();
                let mut session = output.session(&*cap);
                let mut bytes = 0;
                let mut oldest = i64::MAX;
                let polled = reader.poll(BATCH, Duration::ZERO, |record| {
                    bytes += record_bytes(&record);
                    if let Some(t) = record.timestamp.filter(|t| *t >= 0) {
                        oldest = oldest.min(t);
                    }
                    read.count(record.partition);
                    let pos = Pos::input(index, record.partition, record.offset);
                    match decode(&record) {
                        Ok(data) => session.give(Ok(((data, meta(&record, pos, time)), time, 1))),
                        Err(e) => session.give(Err(dead_letter(&record, pos, &e.to_string()))),
                    }
                });
                drop(session);
                read.flush();
                if let (Some(sensor), true) = (&sensor, oldest < i64::MAX) {
                    sensor.observe_since(oldest);
                }
                backlog.read(time, bytes, &startup.metrics);
                match polled {
                    Ok(n) if n >= BATCH => activator.activate(),
                    Ok(_) => activator
                        .activate_after(startup.until_next_epoch().min(super::SOURCE_IDLE_WAIT)),
                    Err(e) => {
                        log::warn!("source `{topic}`: {e}");
                        activator.activate_after(super::SOURCE_ERROR_WAIT);
                    }
                }
            }
        },
    )
}

/// How long a source over its share of `--max-uncommitted-bytes` waits before it looks again.
pub(crate) const BACKPRESSURE_WAIT: Duration = Duration::from_millis(10);

/// What a record read takes in memory, roughly: its key and value, and a fixed cost.
fn record_bytes(record: &RawRecord<'_>) -> u64 {
    let key = record.key.map_or(0, <[u8]>::len);
    let value = record.value.map_or(0, <[u8]>::len);
    (key + value + 64) as u64
}

/// One source's input in epochs that have not yet reached the committer (the probe after the
/// exchange to worker 0 has not passed them), against its share of `--max-uncommitted-bytes`.
/// When commits fall behind, worker 0 waits in [`faustus_connectors::Committer::commit`], the
/// probe stops moving, and this share fills: the source stops reading. Memory is then bounded
/// by the budget, not by how far behind the broker is.
pub(crate) struct Backlog {
    committed: ProbeHandle<u64>,
    share: u64,
    /// Bytes read per epoch, oldest first, for the epochs not yet passed.
    epochs: VecDeque<(u64, u64)>,
    total: u64,
}

impl Backlog {
    pub(crate) fn new(startup: &Startup, peers: usize, committed: ProbeHandle<u64>) -> Self {
        Backlog {
            committed,
            share: (startup.max_uncommitted_bytes / peers.max(1) as u64).max(1),
            epochs: VecDeque::new(),
            total: 0,
        }
    }

    /// Counts `bytes` read into epoch `time`.
    pub(crate) fn read(&mut self, time: u64, bytes: u64, metrics: &crate::metrics::Metrics) {
        if bytes == 0 {
            return;
        }
        match self.epochs.back_mut() {
            Some((epoch, n)) if *epoch == time => *n += bytes,
            _ => self.epochs.push_back((time, bytes)),
        }
        self.total += bytes;
        metrics.uncommitted_input.add(bytes as i64);
    }

    /// The epoch the source holding `current` moves to now, if it closes `current` (see
    /// [`Startup::next_epoch`]: sparse when this source read at most
    /// [`super::EARLY_CLOSE_MAX_BYTES`] into `current`).
    pub(crate) fn next_epoch(&self, startup: &Startup, current: u64) -> Option<u64> {
        let read = match self.epochs.back() {
            Some(&(epoch, bytes)) if epoch == current => bytes,
            _ => 0,
        };
        startup.next_epoch(
            current,
            &self.committed,
            read <= super::EARLY_CLOSE_MAX_BYTES,
        )
    }

    /// Forgets the epochs the committer's worker has taken in; true while the rest is over this
    /// source's share.
    pub(crate) fn over(&mut self, metrics: &crate::metrics::Metrics) -> bool {
        while let Some(&(epoch, bytes)) = self.epochs.front() {
            if self.committed.less_equal(&epoch) {
                break;
            }
            self.epochs.pop_front();
            self.total -= bytes;
            metrics.uncommitted_input.sub(bytes as i64);
        }
        self.total >= self.share
    }
}

/// Records read per partition: counted in plain integers during a poll, added to the metrics'
/// counters after it, so that a record costs an addition and no atomic operation.
#[derive(Default)]
pub(crate) struct ReadCounts {
    /// Per partition read: the partition, its counter, and the records counted since the last
    /// flush.
    partitions: Vec<(i32, prometheus::IntCounter, u64)>,
}

impl ReadCounts {
    /// Counts for `partitions` of `topic`.
    pub(crate) fn new(metrics: &crate::metrics::Metrics, topic: &str, partitions: &[i32]) -> Self {
        ReadCounts {
            partitions: partitions
                .iter()
                .map(|&p| (p, metrics.read_counter(topic, p), 0))
                .collect(),
        }
    }

    /// Counts one record of `partition`.
    pub(crate) fn count(&mut self, partition: i32) {
        if let Some(entry) = self.partitions.iter_mut().find(|e| e.0 == partition) {
            entry.2 += 1;
        }
    }

    /// Adds what was counted to the counters.
    pub(crate) fn flush(&mut self) {
        for (_, counter, n) in &mut self.partitions {
            if *n > 0 {
                counter.inc_by(std::mem::take(n));
            }
        }
    }
}

/// A record's position, timestamp (the epoch's time if it has none) and headers.
pub(crate) fn meta(record: &RawRecord<'_>, pos: Pos, epoch: u64) -> Meta {
    let timestamp = match record.timestamp {
        Some(t) if t >= 0 => t,
        _ => i64::try_from(epoch).unwrap_or(i64::MAX),
    };
    let mut meta = Meta::new(pos, timestamp);
    meta.headers = record
        .headers
        .iter()
        .map(|(name, value)| ((*name).to_string(), value.to_vec()))
        .collect();
    meta
}

/// The dead-letter record for a record that did not decode: its key and value unchanged, and
/// the reason and origin in headers.
pub(crate) fn dead_letter(record: &RawRecord<'_>, pos: Pos, reason: &str) -> CommitItem {
    log::warn!(
        "dead letter: `{}`/{}@{}: {reason}",
        record.topic,
        record.partition,
        record.offset
    );
    DeadLetter::new(
        reason,
        record.key.map(<[u8]>::to_vec),
        record.value.map(<[u8]>::to_vec),
    )
    .origin(record.topic, record.partition, record.offset)
    .into_item(pos)
}
