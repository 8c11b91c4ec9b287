//! Timely plumbing shared by the operators: per-epoch stashes, routing, arranged joins, and the
//! stream time and restore input of the operators that keep one.
//!
//! Every stateful operator in this crate works the same way: records are routed to the worker
//! that owns their key, buffered by epoch, and applied in epoch order once every input's frontier
//! has passed the epoch. Applying a whole epoch at once, in a deterministic order, is what makes
//! the results independent of the number of workers and of how their inputs interleave.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{
    KeyBatcher, KeyBuilder, KeySpine, ValBatcher, ValSpine,
};
use differential_dataflow::{ExchangeData, Hashable, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::{Broadcast, Map as _};
use timely::dataflow::operators::{Capability, Concat, Exchange as _, InputCapability, Operator};
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use crate::sensor::{sensed, Hop};

/// The default routing function: differential's `Hashable` of the key.
///
/// Engines that must locate a key's owner outside the dataflow pass their own stable route to the
/// `_core` variants instead.
pub fn default_route<K: Hash>(key: &K) -> u64 {
    key.hashed()
}

/// A routing function shared by the several exchanges of one operator.
pub(crate) type Route<K> = Rc<dyn Fn(&K) -> u64>;

/// `(key, value)` updates arranged by key on the worker that owns the key.
pub(crate) type ByKey<'scope, K, V> = Arranged<'scope, TraceAgent<ValSpine<K, V, u64, isize>>>;

/// Keys arranged on the worker that owns them.
pub(crate) type Keys<'scope, K> = Arranged<'scope, TraceAgent<KeySpine<K, u64, isize>>>;

/// Arranges `(key, value)` updates by key on the worker `route(key)` chooses.
///
/// Differential's `arrange_by_key` exchanges by `Hashable`; here the arrangement's own
/// parallelization contract is the exchange by `route`, so records move once, to the route's
/// owner, and are arranged there. The exchange is sensed as hop `hop` of `name`. Every operator downstream of the arrangement (`join_core`,
/// `reduce_abelian`) reads it in place (`Pipeline`), so two arrangements made with the same route
/// line up key by key.
pub(crate) fn arrange_by_route<'scope, K, V>(
    input: VecCollection<'scope, u64, (K, V)>,
    name: &str,
    route: Route<K>,
    hop: Hop,
) -> ByKey<'scope, K, V>
where
    K: ExchangeData,
    V: ExchangeData,
{
    let pact = sensed(
        Exchange::new(move |((k, _), _, _): &((K, V), u64, isize)| route(k)),
        hop,
        name,
    );
    arrange_core::<_, _, ValBatcher<K, V, u64, isize>, ValSpine<K, V, u64, isize>>(
        input.inner,
        pact,
        name,
        ValBatcher::new,
    )
}

/// [`arrange_by_route`] for one side of a join: its exchange is the join's repartition.
pub(crate) fn arrange_join_side<'scope, K, V>(
    input: VecCollection<'scope, u64, (K, V)>,
    name: &str,
    route: Route<K>,
) -> ByKey<'scope, K, V>
where
    K: ExchangeData,
    V: ExchangeData,
{
    arrange_by_route(input, name, route, Hop::JoinRepartition)
}

/// The distinct keys of `(key, value)` updates (every key with a non-zero accumulated count),
/// arranged on the worker `route(key)` chooses: differential's `distinct`, routed (a join's
/// repartition).
pub(crate) fn distinct_keys_by_route<'scope, K, V>(
    input: VecCollection<'scope, u64, (K, V)>,
    name: &str,
    route: Route<K>,
) -> Keys<'scope, K>
where
    K: ExchangeData,
    V: ExchangeData,
{
    let pact = sensed(
        Exchange::new(move |((k, _), _, _): &((K, ()), u64, isize)| route(k)),
        Hop::JoinRepartition,
        name,
    );
    let keys = input.map(|(k, _)| (k, ()));
    arrange_core::<_, _, KeyBatcher<K, u64, isize>, KeySpine<K, u64, isize>>(
        keys.inner,
        pact,
        &format!("Arrange: {name}"),
        KeyBatcher::new,
    )
    .reduce_abelian::<_, KeyBuilder<K, u64, isize>, KeySpine<K, u64, isize>, _, _>(
        name,
        |_key, _input, output| output.push(((), 1)),
        |buffer, key, updates| {
            buffer.clear();
            buffer.extend(updates.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
        },
    )
}

/// The rows of `rows` whose key is not in `keys`, `arranged` being the same rows arranged by key
/// (differential's `antijoin`, on arrangements).
pub(crate) fn antijoin_arranged<'scope, K, V>(
    rows: VecCollection<'scope, u64, (K, V)>,
    arranged: ByKey<'scope, K, V>,
    keys: Keys<'scope, K>,
) -> VecCollection<'scope, u64, (K, V)>
where
    K: ExchangeData,
    V: ExchangeData,
{
    let present = arranged.join_core(keys, |k: &K, v: &V, _: &()| Some((k.clone(), v.clone())));
    rows.concat(present.negate())
}

/// The records of one epoch from up to two inputs, with a capability to emit at the epoch.
pub struct Batch<A, B> {
    /// A capability for the epoch (of the operator's first output).
    pub capability: Capability<u64>,
    /// The first input's records, in arrival order.
    pub first: Vec<A>,
    /// The second input's records, in arrival order.
    pub second: Vec<B>,
}

/// Records of up to two inputs buffered by epoch until the epoch is complete on every input:
/// the shape of every stateful operator here, and of the engine's own (a table's maintainer,
/// final windows). Push records as they arrive with the message's capability, then pop the
/// complete epochs, in order, with the inputs' frontiers.
///
/// ```
/// use differential_dataflow::input::Input;
/// use faustus_operators::Stash;
/// use timely::container::CapacityContainerBuilder;
/// use timely::dataflow::channels::pact::Pipeline;
/// use timely::dataflow::operators::{Inspect, Operator};
///
/// timely::example(|scope| {
///     let (_input, numbers) = scope.new_collection_from(vec![1u64, 2, 3]);
///     numbers
///         .inner
///         .unary_frontier::<CapacityContainerBuilder<Vec<u64>>, _, _, _>(
///             Pipeline,
///             "SumPerEpoch",
///             |_cap, _info| {
///                 let mut stash: Stash<u64, ()> = Stash::new();
///                 move |(input, frontier), output| {
///                     input.for_each(|cap, data| {
///                         for (x, time, _diff) in data.drain(..) {
///                             stash.push_first(&cap, time, x);
///                         }
///                     });
///                     while let Some((_time, batch)) = stash.pop_complete(&[frontier]) {
///                         let sum: u64 = batch.first.iter().sum();
///                         output.session(&batch.capability).give(sum);
///                     }
///                 }
///             },
///         )
///         .inspect(|sum| assert_eq!(*sum, 6));
/// });
/// ```
pub struct Stash<A, B> {
    pending: BTreeMap<u64, Batch<A, B>>,
}

impl<A, B> Default for Stash<A, B> {
    fn default() -> Self {
        Stash::new()
    }
}

impl<A, B> Stash<A, B> {
    /// An empty stash.
    pub fn new() -> Self {
        Stash {
            pending: BTreeMap::new(),
        }
    }

    /// The batch of epoch `time`, created (with a capability derived from `cap`) on first use.
    fn batch(&mut self, cap: &InputCapability<u64>, time: u64) -> Option<&mut Batch<A, B>> {
        if !self.pending.contains_key(&time) {
            let capability = cap.retain_least(0)?;
            // Data in a message is never earlier than the message's capability.
            let time = std::cmp::max(time, *capability.time());
            let capability = capability.delayed(&time);
            self.pending.insert(
                time,
                Batch {
                    capability,
                    first: Vec::new(),
                    second: Vec::new(),
                },
            );
        }
        self.pending.get_mut(&time)
    }

    /// Buffers a record of the first input at epoch `time`.
    pub fn push_first(&mut self, cap: &InputCapability<u64>, time: u64, record: A) {
        if let Some(batch) = self.batch(cap, time) {
            batch.first.push(record);
        }
    }

    /// Buffers a record of the second input at epoch `time`.
    pub fn push_second(&mut self, cap: &InputCapability<u64>, time: u64, record: B) {
        if let Some(batch) = self.batch(cap, time) {
            batch.second.push(record);
        }
    }

    /// Removes and returns the earliest epoch, if no input can still send records for it.
    pub fn pop_complete(
        &mut self,
        frontiers: &[&MutableAntichain<u64>],
    ) -> Option<(u64, Batch<A, B>)> {
        let (&time, _) = self.pending.first_key_value()?;
        if frontiers.iter().all(|f| !f.less_equal(&time)) {
            self.pending.pop_first()
        } else {
            None
        }
    }
}

impl<R, B> Stash<(R, isize), B> {
    /// Buffers a message of the first input read as an append-only stream: each update with a
    /// positive count is `count` records, kept as `(record, count)`; the others are ignored.
    pub(crate) fn push_appends(
        &mut self,
        cap: &InputCapability<u64>,
        data: &mut Vec<(R, u64, isize)>,
    ) {
        for (record, time, count) in data.drain(..) {
            if count > 0 {
                self.push_first(cap, time, (record, count));
            }
        }
    }
}

impl<A, R> Stash<A, Aux<R>> {
    /// Buffers a message of a restorable operator's auxiliary input (see [`aux_input`]).
    pub(crate) fn push_aux(&mut self, cap: &InputCapability<u64>, data: &mut Vec<(u64, Aux<R>)>) {
        for (time, aux) in data.drain(..) {
            self.push_second(cap, time, aux);
        }
    }
}

/// For every epoch, the largest event time among the positive records of that epoch on this
/// worker, as `(epoch, max)` at that epoch, sent to every worker.
pub(crate) fn epoch_maxima<'scope, D, F>(
    input: VecCollection<'scope, u64, D>,
    time_of: F,
) -> StreamVec<'scope, u64, (u64, u64)>
where
    D: Clone + 'static,
    F: Fn(&D) -> u64 + 'static,
{
    input
        .inner
        .unary(Pipeline, "EpochMaxima", move |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut maxima: BTreeMap<u64, u64> = BTreeMap::new();
                    for (d, t, r) in data.iter() {
                        if *r > 0 {
                            let m = maxima.entry(*t).or_insert(0);
                            *m = std::cmp::max(*m, time_of(d));
                        }
                    }
                    for (t, m) in maxima {
                        let Some(least) = cap.least() else { continue };
                        let t = std::cmp::max(t, *least);
                        output.session(&cap.delayed(&t, 0)).give((t, m));
                    }
                });
            }
        })
        .broadcast()
}

/// A record of the auxiliary input of an operator that keeps stream time and can be restored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Aux<R> {
    /// The largest event time of an epoch on some worker, or a restored stream time.
    Max(u64),
    /// A restored state row, with its multiplicity.
    Row(R, isize),
}

/// The state to restore an operator with: its state rows, and the stream time it had reached.
pub(crate) type Restored<'scope, R> = (
    VecCollection<'scope, u64, R>,
    VecCollection<'scope, u64, u64>,
);

/// The auxiliary input of an operator that keeps stream time: the [`epoch_maxima`] of `events`
/// (by `time_of`) and, when restoring, the positive restored rows, sent to the worker `owner(row)`
/// chooses, and the restored stream times, sent to every worker, each as `(epoch, record)` at the
/// epoch it carries. Read it with [`Stash::push_aux`] and [`StreamTime::advance`].
pub(crate) fn aux_input<'scope, D, R>(
    events: VecCollection<'scope, u64, D>,
    time_of: impl Fn(&D) -> u64 + 'static,
    restore: Option<Restored<'scope, R>>,
    owner: impl Fn(&R) -> u64 + 'static,
) -> StreamVec<'scope, u64, (u64, Aux<R>)>
where
    D: Clone + 'static,
    R: ExchangeData,
{
    let maxima = epoch_maxima(events, time_of).map(|(t, m)| (t, Aux::Max(m)));
    let Some((rows, stream_time)) = restore else {
        return maxima;
    };
    let rows = rows
        .inner
        .exchange(move |(row, _, _)| owner(row))
        .flat_map(|(row, t, d)| (d > 0).then_some((t, Aux::Row(row, d))));
    let times = stream_time
        .inner
        .flat_map(|(st, t, d)| (d > 0).then_some((t, Aux::Max(st))))
        .broadcast();
    maxima.concat(rows).concat(times)
}

/// The largest event time seen by an operator, advanced once per completed epoch.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamTime(pub(crate) u64);

impl StreamTime {
    /// Takes in the auxiliary records of a completed epoch: advances to the largest of their
    /// maxima, and returns the stream time before the epoch with the epoch's restored rows.
    pub(crate) fn advance<R>(&mut self, aux: Vec<Aux<R>>) -> (u64, Vec<(R, isize)>) {
        let before = self.0;
        let mut restored = Vec::new();
        for aux in aux {
            match aux {
                Aux::Max(m) => self.0 = std::cmp::max(self.0, m),
                Aux::Row(row, d) => restored.push((row, d)),
            }
        }
        (before, restored)
    }
}
