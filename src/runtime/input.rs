//! The source operator of an input without Kafka ([`crate::input::Input`]): an iterator or a
//! channel.
//!
//! ## Contract
//!
//! It keeps the contract of the Kafka source ([`super::source`]), with the input's items as the
//! records of one partition:
//!
//! - An iterator is partition 0, read by the worker that would read partition 0 of a topic at
//!   the same source index. Its position is the number of items taken; a restart makes the
//!   iterator again and skips the items that committed epochs took.
//! - A channel is read by the first worker of each process, as partition `process` (so every
//!   process has its own sequence of positions). Its position counts the items taken since the
//!   first start; nothing is skipped after a restart, since the items that committed are no
//!   longer in the channel.
//! - Under Kafka, items are taken into the epoch of the wall clock, at most [`BATCH`] per
//!   activation, and not while the worker's input not yet taken in by the committer is over its
//!   share (backpressure). Under a test driver, a source takes what its input holds when the
//!   driver closes an epoch, into that epoch.
//! - Before its capability moves past an epoch, the source emits the position it reached in it.
//!
//! An item carries the timestamp it was given, or its epoch's time.

use std::sync::Arc;

use differential_dataflow::ExchangeData;
use timely::dataflow::operators::generic::source as timely_source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use super::source::{assigned, Backlog, ReadCounts, SourceItem, BACKPRESSURE_WAIT, BATCH};
use super::{CommitItem, Io, Pos, Startup};
use crate::input::{Item, Reader};
use crate::record::Meta;

/// Where one worker stands in the input.
struct Cursor<K, V> {
    partition: i32,
    /// The next item's position.
    next: i64,
    /// The position last reported to the committer.
    reported: i64,
    items: Items<K, V>,
}

/// What a worker takes items from.
enum Items<K, V> {
    Iter(Box<dyn Iterator<Item = Item<K, V>>>),
    Channel(Reader<K, V>),
}

impl<K, V> Cursor<K, V> {
    /// Takes up to `limit` items into epoch `time` of source `index`, handing each to `give` as
    /// a record with its position; true if the input may hold more right now.
    fn take(
        &mut self,
        limit: usize,
        index: u32,
        time: u64,
        read: &mut ReadCounts,
        mut give: impl FnMut(SourceItem<(K, V)>),
    ) -> bool {
        let mut more = true;
        for _ in 0..limit {
            let item = match &mut self.items {
                Items::Iter(iter) => iter.next(),
                Items::Channel(reader) => reader.try_recv(),
            };
            let Some(item) = item else {
                more = false;
                break;
            };
            let pos = Pos::input(index, self.partition, self.next);
            let timestamp = item
                .timestamp
                .unwrap_or_else(|| i64::try_from(time).unwrap_or(i64::MAX));
            give(Ok((
                ((item.key, item.value), Meta::new(pos, timestamp)),
                time,
                1,
            )));
            read.count(self.partition);
            self.next += 1;
        }
        read.flush();
        more
    }

    /// The position to report, if it moved since the last report.
    fn report(&mut self) -> Option<i64> {
        (self.next != self.reported).then(|| {
            self.reported = self.next;
            self.next
        })
    }
}

/// Builds the source operator of input `name` (source index `index`).
pub(crate) fn input_source<'s, K, V>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    index: u32,
    name: String,
    reader: crate::input::Source<K, V>,
    workers: usize,
    committed: ProbeHandle<u64>,
) -> StreamVec<'s, u64, SourceItem<(K, V)>>
where
    K: ExchangeData,
    V: ExchangeData,
{
    let worker = scope.index();
    let peers = scope.peers();
    let workers = workers.max(1);
    let mut backlog = Backlog::new(&startup, peers, committed);
    let driver = match &startup.io {
        Io::Driver(harness) => Some(Arc::clone(harness)),
        Io::Kafka(_) => None,
    };
    timely_source(scope, &format!("Input({name})"), move |capability, info| {
        if let Some(harness) = &driver {
            harness.wake_on_close(scope.worker().sync_activator_for(info.address.to_vec()));
        }
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability);
        let mut cursor: Option<Cursor<K, V>> = None;
        let mut read = ReadCounts::default();
        let mut started = false;
        move |output| {
            if !started {
                started = true;
                let partition = match &reader {
                    crate::input::Source::Iter(_) => {
                        assigned(index, 1, worker, peers).first().map(|_| 0)
                    }
                    crate::input::Source::Channel(_) => worker
                        .is_multiple_of(workers)
                        .then_some((worker / workers) as i32),
                };
                let (Some(cap), Some(partition), false) =
                    (capability.as_mut(), partition, startup.planning)
                else {
                    capability = None;
                    return;
                };
                let next = startup
                    .offsets
                    .get(&name)
                    .and_then(|p| p.get(&partition))
                    .copied()
                    .unwrap_or(0);
                let items = match &reader {
                    crate::input::Source::Iter(make) => {
                        Items::Iter(Box::new(make().skip(next as usize)))
                    }
                    crate::input::Source::Channel(r) => Items::Channel(r.clone()),
                };
                log::info!("worker {worker} reads input `{name}` as partition {partition}");
                read = ReadCounts::new(&startup.metrics, &name, &[partition]);
                cursor = Some(Cursor {
                    partition,
                    next,
                    reported: next,
                    items,
                });
                let first = match &driver {
                    Some(_) => startup.resume_epoch + 1,
                    None => (startup.resume_epoch + 1).max(startup.epoch_now()),
                };
                cap.downgrade(&first);
            }
            let (Some(cap), Some(cursor)) = (capability.as_mut(), cursor.as_mut()) else {
                return;
            };
            let partition = cursor.partition;
            match &driver {
                Some(harness) => {
                    // Under a test driver: take what the input holds when the driver closes the
                    // epoch, into that epoch.
                    let (closed, stopping) = harness.closed();
                    if *cap.time() <= closed {
                        let time = *cap.time();
                        let mut session = output.session(&*cap);
                        cursor.take(usize::MAX, index, time, &mut read, |x| session.give(x));
                        if let Some(next) = cursor.report() {
                            session.give(Err(CommitItem::Offset(index, partition, next)));
                        }
                    }
                    super::driver::follow(&mut capability, closed, stopping);
                }
                None => {
                    let stopping = startup.stopping();
                    let next = backlog.next_epoch(&startup, *cap.time());
                    if stopping || next.is_some() {
                        if let Some(position) = cursor.report() {
                            output
                                .session(&*cap)
                                .give(Err(CommitItem::Offset(index, partition, position)));
                        }
                        let Some(next) = next.filter(|_| !stopping) else {
                            capability = None;
                            return;
                        };
                        cap.downgrade(&next);
                    }
                    if backlog.over(&startup.metrics) {
                        activator.activate_after(BACKPRESSURE_WAIT);
                        return;
                    }
                    let time = *cap.time();
                    let before = cursor.next;
                    let mut session = output.session(&*cap);
                    let more = cursor.take(BATCH, index, time, &mut read, |x| session.give(x));
                    drop(session);
                    let taken = (cursor.next - before) as u64;
                    let bytes = taken * std::mem::size_of::<(K, V, Meta)>() as u64;
                    backlog.read(time, bytes, &startup.metrics);
                    if more {
                        activator.activate();
                    } else {
                        activator.activate_after(
                            startup.until_next_epoch().min(super::SOURCE_IDLE_WAIT),
                        );
                    }
                }
            }
        }
    })
}
