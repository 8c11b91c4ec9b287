//! The commit sink: gathers every epoch's records and input positions on worker 0 and hands
//! each completed epoch to the committer (see `faustus_connectors::committer`).
//!
//! An epoch is complete when the sink's input frontier has passed it: every source has moved
//! on, and every operator between has emitted all it will for that epoch. Epochs at or before
//! the restore epoch are dropped: what they contain was derived from restored state and was
//! committed by an earlier run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use faustus_connectors::{Committer, EpochBatch, OutRecord};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::progress::frontier::AntichainRef;

use super::driver::Harness;
use super::{CommitItem, Startup};

/// Where complete epochs go: the Kafka committer (one transaction each), or a test driver's
/// capture. The sink before it is the same for both.
pub(crate) enum EpochSink {
    /// The Kafka committer.
    Kafka(Committer),
    /// A test driver, which keeps every epoch's records in memory.
    Driver(Arc<Harness>),
}

impl EpochSink {
    /// Commits one complete epoch.
    fn commit(&self, batch: EpochBatch) -> Result<(), String> {
        match self {
            EpochSink::Kafka(c) => c.commit(batch).map_err(|e| e.to_string()),
            EpochSink::Driver(h) => {
                h.capture(batch);
                Ok(())
            }
        }
    }

    /// Bytes handed to the committer and not yet committed (`None` under a driver).
    fn queued_bytes(&self) -> Option<u64> {
        match self {
            EpochSink::Kafka(c) => Some(c.stats().queued_bytes()),
            EpochSink::Driver(_) => None,
        }
    }

    /// True once the committer has stopped (it can stop between epochs).
    fn is_finished(&self) -> bool {
        match self {
            EpochSink::Kafka(c) => c.is_finished(),
            EpochSink::Driver(_) => false,
        }
    }

    /// Tells a driver how far the whole dataflow has got: every epoch before `frontier` is
    /// complete (an empty frontier: the dataflow is done).
    fn reached(&self, frontier: AntichainRef<'_, u64>) {
        if let EpochSink::Driver(h) = self {
            h.reached(frontier.first().copied());
        }
    }

    /// Waits for the last commit (Kafka); a driver has nothing in flight.
    pub(crate) fn finish(self) -> crate::Result<()> {
        match self {
            EpochSink::Kafka(c) => c.finish().map_err(Into::into),
            EpochSink::Driver(_) => Ok(()),
        }
    }
}

/// Commits each complete epoch of `items` (all of them on worker 0) with `committer`.
pub(crate) fn commit_sink(
    items: StreamVec<'_, u64, CommitItem>,
    committer: Rc<RefCell<Option<EpochSink>>>,
    sources: Vec<String>,
    startup: Arc<Startup>,
) {
    let mut pending: BTreeMap<u64, Vec<CommitItem>> = BTreeMap::new();
    let mut failed = false;
    // The frontier at the last activation, for the epoch length.
    let mut previous: Option<u64> = None;
    let mut restored = false;
    items.sink(Pipeline, "Commit", move |(input, frontier)| {
        // The committer can stop between epochs (fenced by a newer instance, a fatal Kafka
        // error): notice it at the next activation, whether or not this epoch has records.
        if !failed && committer.borrow().as_ref().is_some_and(|c| c.is_finished()) {
            failed = true;
            startup.fail("the committer stopped; see its error above".into());
        }
        // Past the restore epoch, every operator has taken in the restored tables.
        if !restored && !startup.planning && !frontier.less_equal(&startup.resume_epoch) {
            restored = true;
            startup.health.restore_complete();
        }
        // Each move of the frontier closes an epoch, empty or not: its length is the step
        // (epochs are milliseconds since 1970 at their start). The step from the restore
        // epoch to the first epoch of the clock is not an epoch's length.
        if let Some(&now) = frontier.frontier().first() {
            match previous {
                Some(before) if now > before && before > startup.resume_epoch => {
                    let seconds = (now - before) as f64 / 1000.0;
                    startup.metrics.epoch_length.observe(seconds);
                }
                _ => {}
            }
            previous = Some(now);
        }
        input.for_each(|cap, data| {
            if let Some(&time) = cap.least() {
                pending.entry(time).or_default().append(data);
            }
        });
        while let Some((&time, _)) = pending.first_key_value() {
            if frontier.less_equal(&time) {
                break;
            }
            let items = pending.pop_first().expect("non-empty").1;
            if time <= startup.resume_epoch || failed {
                continue;
            }
            let mut batch = EpochBatch {
                epoch: time,
                ..EpochBatch::default()
            };
            let mut records = Vec::new();
            let mut dead = DeadLetterCounts::default();
            let mut stop = None;
            for item in items {
                match item {
                    CommitItem::Record(pos, record) => {
                        dead.count(&record);
                        records.push((pos, record));
                    }
                    CommitItem::Offset(source, partition, offset) => {
                        let entry = batch
                            .offsets
                            .entry((sources[source as usize].clone(), partition))
                            .or_insert(offset);
                        *entry = (*entry).max(offset);
                    }
                    CommitItem::Stop(message) => {
                        stop.get_or_insert(message);
                    }
                }
            }
            if let Some(message) = stop {
                // Nothing of this epoch, or of any later one, commits: a restart reads it
                // again.
                failed = true;
                startup.fail(message);
                continue;
            }
            // By position, then by content where positions tie (changelog records, final
            // windows): the order is the same whatever the number of workers.
            records.sort_by(|(p, a), (q, b)| {
                (p, a.topic, &a.key, &a.value, a.timestamp, &a.headers).cmp(&(
                    q,
                    b.topic,
                    &b.key,
                    &b.value,
                    b.timestamp,
                    &b.headers,
                ))
            });
            batch.records = records.into_iter().map(|(_, r)| r).collect();
            if dead.any() {
                remember_dead_letters(&batch.records, &startup.metrics);
            }
            dead.flush(&startup.metrics);
            let committer = committer.borrow();
            match committer.as_ref() {
                Some(c) => {
                    // Waits while commits are behind (backpressure).
                    if let Err(e) = c.commit(batch) {
                        failed = true;
                        startup.fail(format!("committing epoch {time}: {e}"));
                    }
                    if let Some(queued) = c.queued_bytes() {
                        startup.metrics.commit_queue.set(queued as i64);
                    }
                }
                None if batch.records.is_empty() && batch.offsets.is_empty() => {}
                None => {
                    failed = true;
                    startup.fail(format!(
                        "epoch {time} reached a worker without a committer: this is a bug"
                    ));
                }
            }
        }
        if let Some(c) = committer.borrow().as_ref() {
            c.reached(frontier.frontier());
        }
    });
}

/// Dead letters of one epoch by kind (the `faustus.error.kind` header), for the metrics.
#[derive(Default)]
struct DeadLetterCounts(BTreeMap<Vec<u8>, u64>);

impl DeadLetterCounts {
    /// Counts `record` if it is a dead letter.
    fn count(&mut self, record: &OutRecord) {
        if record.topic != crate::dead_letter::TOPIC_INDEX {
            return;
        }
        let kind = record
            .headers
            .iter()
            .find(|(name, _)| name == crate::dead_letter::KIND)
            .map_or_else(Vec::new, |(_, v)| v.clone());
        *self.0.entry(kind).or_default() += 1;
    }

    /// True when the epoch has dead letters.
    fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// Adds the counts to `faustus_dead_letters_total`.
    fn flush(self, metrics: &crate::metrics::Metrics) {
        for (kind, n) in self.0 {
            let kind = String::from_utf8_lossy(&kind);
            metrics.dead_letters.with_label_values(&[&kind]).inc_by(n);
        }
    }
}

/// Keeps the last dead letters of an epoch's `records` among the process's recent ones (for the
/// overview): one pass from the end that stops after as many as are kept, and one lock.
fn remember_dead_letters(records: &[OutRecord], metrics: &crate::metrics::Metrics) {
    let mut last: Vec<crate::overview::RecentDeadLetter> = records
        .iter()
        .rev()
        .filter(|r| r.topic == crate::dead_letter::TOPIC_INDEX)
        .take(crate::overview::RECENT_DEAD_LETTERS)
        .map(|r| crate::overview::RecentDeadLetter::from_headers(&r.headers))
        .collect();
    last.reverse();
    metrics.recent_dead_letters.extend(last);
}
