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

use faustus_connectors::{Committer, EpochBatch};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use super::{CommitItem, Startup};

/// Gathers `items` on worker 0 and commits each complete epoch with `committer`.
pub(crate) fn commit_sink(
    items: StreamVec<'_, u64, CommitItem>,
    committer: Rc<RefCell<Option<Committer>>>,
    sources: Vec<String>,
    startup: Arc<Startup>,
) {
    let mut pending: BTreeMap<u64, Vec<CommitItem>> = BTreeMap::new();
    let mut failed = false;
    let mut restored = false;
    items.sink(
        Exchange::new(|_: &CommitItem| 0),
        "Commit",
        move |(input, frontier)| {
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
                for item in items {
                    match item {
                        CommitItem::Record(pos, record) => records.push((pos, record)),
                        CommitItem::Offset(source, partition, offset) => {
                            let entry = batch
                                .offsets
                                .entry((sources[source as usize].clone(), partition))
                                .or_insert(offset);
                            *entry = (*entry).max(offset);
                        }
                    }
                }
                records.sort_by_key(|r| r.0);
                batch.records = records.into_iter().map(|(_, r)| r).collect();
                let committer = committer.borrow();
                match committer.as_ref() {
                    Some(c) => {
                        if let Err(e) = c.commit(batch) {
                            failed = true;
                            startup.fail(format!("committing epoch {time}: {e}"));
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
        },
    );
}
