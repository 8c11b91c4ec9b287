//! Keyed, ordered folds of an append-only stream into a table.
//!
//! A Faust table fed by an agent is a fold: for every event `(key, value)` the table's entry for
//! `key` becomes `f(key, old_entry, value)`. [`FoldByKey::fold_by_key`] is that operation as a
//! timely operator whose output is a differential collection: the table, at most one entry per
//! key, where each change is the retraction of the old entry and the insertion of the new one.
//!
//! ## Why not `reduce`
//!
//! A differential `reduce` keeps its whole input history arranged, so an aggregate over an
//! append-only stream would grow with the number of events. A fold only needs the current entry
//! per key, so its state is bounded by the number of keys; the price is that its input must be
//! append-only (a stream, never a table), which is exactly what an agent consumes.
//!
//! ## Order and determinism
//!
//! Every input record carries an ordering key `O` (the engine uses the Kafka position of the
//! event). Records are routed to a worker by `route(key)`, buffered per epoch, and applied when
//! the epoch is complete (the input frontier has passed it), sorted by `O` with a stable sort, so
//! that the result does not depend on the interleaving of workers. Within an epoch only the net
//! change per key is emitted: a key updated ten times in one epoch yields one retraction and one
//! insertion.
//!
//! ## Restore
//!
//! The second input seeds state: a record `(key, entry)` sets the entry before any event of the
//! same epoch is applied, and is emitted like any other change (downstream operators see the
//! restored table). Engines restore a table from its changelog through this input. An epoch
//! that only restores entries into an empty state (the restore epoch of a fresh start) emits
//! them as they come, without tracking each key's previous entry.
//!
//! State and per-epoch maps hash keys with foldhash (randomly seeded per process), which is
//! several times faster than std's SipHash on short keys.
//!
//! ## Contract
//!
//! Input records with a positive multiplicity `d` are applied `d` times; records with `d <= 0`
//! are ignored, since a stream never retracts. Returning `None` from the fold deletes the key.

use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use foldhash::{HashMap, HashMapExt};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{OkErr, Operator};
use timely::dataflow::StreamVec;

use crate::epoch::Stash;
use crate::sensor::{sensed, Hop};

/// A fold's table `(key, entry)` and the running result of every event, `(key, entry after the
/// event, order)` (see [`FoldByKey::scan_by_key`]).
pub type Scanned<'scope, K, A, O> = (
    VecCollection<'scope, u64, (K, A)>,
    VecCollection<'scope, u64, (K, Option<A>, O)>,
);

/// A fold's outputs when its function can fail (see [`FoldByKey::try_scan_by_key`]).
pub struct TryScanned<'scope, K: 'static, V: 'static, A: 'static, O: 'static> {
    /// The table `(key, entry)`.
    pub table: VecCollection<'scope, u64, (K, A)>,
    /// The running result of every event the fold did not fail on, `(key, entry after the
    /// event, order)`; empty unless asked for.
    pub running: VecCollection<'scope, u64, (K, Option<A>, O)>,
    /// The events the fold failed on, `(key, value, order, error)`.
    pub failed: VecCollection<'scope, u64, (K, V, O, String)>,
}

/// Folds an append-only collection of `(key, value, order)` records into a table keyed by `key`.
pub trait FoldByKey<'scope, K, V, O> {
    /// Applies `fold(key, current, value)` to every record, in epoch order and by `order` within
    /// an epoch, and returns the resulting table. `restore` seeds entries; `route` chooses the
    /// worker that owns a key (it must be the same function on every worker).
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::FoldByKey;
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![
    ///         ("a".to_string(), 5i64, 1u64),
    ///         ("a".to_string(), 7, 2),
    ///         ("b".to_string(), 1, 3),
    ///     ]).1;
    ///     let restore = scope.new_collection_from(vec![("b".to_string(), 10i64)]).1;
    ///     let expected = scope.new_collection_from(vec![
    ///         ("a".to_string(), 12i64),
    ///         ("b".to_string(), 11),
    ///     ]).1;
    ///     events
    ///         .fold_by_key(restore, |k: &String| k.len() as u64, "sum", |_k, old, v| {
    ///             Some(old.copied().unwrap_or(0) + v)
    ///         })
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn fold_by_key<A, F, H>(
        self,
        restore: VecCollection<'scope, u64, (K, A)>,
        route: H,
        name: &str,
        fold: F,
    ) -> VecCollection<'scope, u64, (K, A)>
    where
        A: ExchangeData,
        F: FnMut(&K, Option<&A>, V) -> Option<A> + 'static,
        H: Fn(&K) -> u64 + 'static;

    /// As [`FoldByKey::fold_by_key`], and also returns the running result per event: for every
    /// input record (each of its `d` copies), `(key, entry after the record, order)`, where the
    /// entry is `None` when the fold removed the key. Restored entries emit no events.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::FoldByKey;
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![
    ///         ("a".to_string(), 5i64, 1u64),
    ///         ("a".to_string(), 7, 2),
    ///     ]).1;
    ///     let restore = scope.new_collection_from(Vec::<(String, i64)>::new()).1;
    ///     let expected = scope.new_collection_from(vec![
    ///         ("a".to_string(), Some(5i64), 1u64),
    ///         ("a".to_string(), Some(12), 2),
    ///     ]).1;
    ///     let (_table, running) = events.scan_by_key(restore, |k: &String| k.len() as u64, "sum",
    ///         |_k, old, v| Some(old.copied().unwrap_or(0) + v));
    ///     running.assert_eq(expected);
    /// });
    /// ```
    fn scan_by_key<A, F, H>(
        self,
        restore: VecCollection<'scope, u64, (K, A)>,
        route: H,
        name: &str,
        fold: F,
    ) -> Scanned<'scope, K, A, O>
    where
        A: ExchangeData,
        F: FnMut(&K, Option<&A>, V) -> Option<A> + 'static,
        H: Fn(&K) -> u64 + 'static;

    /// As [`FoldByKey::scan_by_key`] (with `running`; otherwise as [`FoldByKey::fold_by_key`]),
    /// for a fold that can fail: an event on which `fold` returns `Err` leaves the entry as it
    /// was, has no running result, and comes out in [`TryScanned::failed`] with the error.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::FoldByKey;
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![
    ///         ("a".to_string(), 5i64, 1u64),
    ///         ("a".to_string(), -1, 2),
    ///         ("a".to_string(), 7, 3),
    ///     ]).1;
    ///     let restore = scope.new_collection_from(Vec::<(String, i64)>::new()).1;
    ///     let folded = events.try_scan_by_key(restore, |k: &String| k.len() as u64, "sum", false,
    ///         |_k, old, v| if v < 0 { Err("negative".to_string()) }
    ///                      else { Ok(Some(old.copied().unwrap_or(0) + v)) });
    ///     let table = scope.new_collection_from(vec![("a".to_string(), 12i64)]).1;
    ///     let failed = scope.new_collection_from(vec![
    ///         ("a".to_string(), -1i64, 2u64, "negative".to_string()),
    ///     ]).1;
    ///     folded.table.assert_eq(table);
    ///     folded.failed.assert_eq(failed);
    /// });
    /// ```
    fn try_scan_by_key<A, F, H>(
        self,
        restore: VecCollection<'scope, u64, (K, A)>,
        route: H,
        name: &str,
        running: bool,
        fold: F,
    ) -> TryScanned<'scope, K, V, A, O>
    where
        A: ExchangeData,
        F: FnMut(&K, Option<&A>, V) -> Result<Option<A>, String> + 'static,
        H: Fn(&K) -> u64 + 'static;
}

/// A table update (`Ok`), or a running result of one event (`Err(Ok)`), or an event the fold
/// failed on (`Err(Err)`).
/// Failures are boxed: they are rare, and every element of a container takes the size of the
/// largest variant.
type FoldOut<K, V, A, O> = Result<((K, A), u64, isize), RunningOrFailed<K, V, A, O>>;
/// What a fold emits besides its table.
type RunningOrFailed<K, V, A, O> = Result<Running<K, A, O>, Box<Failed<K, V, O>>>;
/// The running result of one event.
type Running<K, A, O> = ((K, Option<A>, O), u64, isize);
/// An event the fold failed on, with the error.
type Failed<K, V, O> = ((K, V, O, String), u64, isize);

impl<'scope, K, V, O> FoldByKey<'scope, K, V, O> for VecCollection<'scope, u64, (K, V, O)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    O: ExchangeData,
{
    fn fold_by_key<A, F, H>(
        self,
        restore: VecCollection<'scope, u64, (K, A)>,
        route: H,
        name: &str,
        fold: F,
    ) -> VecCollection<'scope, u64, (K, A)>
    where
        A: ExchangeData,
        F: FnMut(&K, Option<&A>, V) -> Option<A> + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        let mut fold = fold;
        fold_core(
            self,
            restore,
            route,
            name,
            move |k, a, v| Ok(fold(k, a, v)),
            false,
        )
        .table
    }

    fn scan_by_key<A, F, H>(
        self,
        restore: VecCollection<'scope, u64, (K, A)>,
        route: H,
        name: &str,
        fold: F,
    ) -> Scanned<'scope, K, A, O>
    where
        A: ExchangeData,
        F: FnMut(&K, Option<&A>, V) -> Option<A> + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        let mut fold = fold;
        let folded = fold_core(
            self,
            restore,
            route,
            name,
            move |k, a, v| Ok(fold(k, a, v)),
            true,
        );
        (folded.table, folded.running)
    }

    fn try_scan_by_key<A, F, H>(
        self,
        restore: VecCollection<'scope, u64, (K, A)>,
        route: H,
        name: &str,
        running: bool,
        fold: F,
    ) -> TryScanned<'scope, K, V, A, O>
    where
        A: ExchangeData,
        F: FnMut(&K, Option<&A>, V) -> Result<Option<A>, String> + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        fold_core(self, restore, route, name, fold, running)
    }
}

/// The fold operator; with `each`, it also emits the running result of every event.
fn fold_core<'scope, K, V, O, A, F, H>(
    events: VecCollection<'scope, u64, (K, V, O)>,
    restore: VecCollection<'scope, u64, (K, A)>,
    route: H,
    name: &str,
    mut fold: F,
    each: bool,
) -> TryScanned<'scope, K, V, A, O>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    O: ExchangeData,
    A: ExchangeData,
    F: FnMut(&K, Option<&A>, V) -> Result<Option<A>, String> + 'static,
    H: Fn(&K) -> u64 + 'static,
{
    let route = Rc::new(route);
    let route_events = Rc::clone(&route);
    let events_pact = sensed(
        Exchange::new(move |((k, _, _), _, _): &((K, V, O), u64, isize)| route_events(k)),
        Hop::GroupBy,
        name,
    );
    let restore_pact = Exchange::new(move |((k, _), _, _): &((K, A), u64, isize)| route(k));

    let (table, rest): (StreamVec<'scope, u64, _>, StreamVec<'scope, u64, _>) = events
        .inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<FoldOut<K, V, A, O>>>, _, _, _, _>(
            restore.inner,
            events_pact,
            restore_pact,
            name,
            move |_capability, _info| {
                let mut state: HashMap<K, A> = HashMap::new();
                let mut stash = Stash::new();
                move |(events, events_frontier), (restored, restore_frontier), output| {
                    events.for_each(|cap, data| stash.push_appends(&cap, data));
                    restored.for_each(|cap, data| {
                        for (entry, t, d) in data.drain(..) {
                            if d > 0 {
                                stash.push_second(&cap, t, entry);
                            }
                        }
                    });
                    // Apply every epoch that neither input can still add to, in order.
                    let frontiers = [events_frontier, restore_frontier];
                    while let Some((time, batch)) = stash.pop_complete(&frontiers) {
                        if state.is_empty() && batch.first.is_empty() {
                            // Only restored entries, into an empty state: each is new, so it
                            // is emitted as it is set. A key restored twice retracts its
                            // first entry.
                            let mut session = output.session(&batch.capability);
                            state.reserve(batch.second.len());
                            for (k, a) in batch.second {
                                if let Some(old) = state.insert(k.clone(), a.clone()) {
                                    session.give(Ok(((k.clone(), old), time, -1isize)));
                                }
                                session.give(Ok(((k, a), time, 1isize)));
                            }
                            continue;
                        }
                        let mut before: HashMap<K, Option<A>> = HashMap::new();
                        for (k, a) in batch.second {
                            let old = state.insert(k.clone(), a);
                            before.entry(k).or_insert(old);
                        }
                        // Events in order; equal orders in arrival order.
                        let mut events = batch.first;
                        events.sort_by(|((_, _, x), _), ((_, _, y), _)| x.cmp(y));
                        let mut session = output.session(&batch.capability);
                        for ((k, v, o), d) in events {
                            for _ in 0..d {
                                let old = state.get(&k);
                                let new = match fold(&k, old, v.clone()) {
                                    Ok(new) => new,
                                    Err(e) => {
                                        let failed = (k.clone(), v.clone(), o.clone(), e);
                                        session.give(Err(Err(Box::new((failed, time, 1isize)))));
                                        continue;
                                    }
                                };
                                if each {
                                    let out = (k.clone(), new.clone(), o.clone());
                                    session.give(Err(Ok((out, time, 1isize))));
                                }
                                let old = match new {
                                    Some(new) => state.insert(k.clone(), new),
                                    None => state.remove(&k),
                                };
                                before.entry(k.clone()).or_insert(old);
                            }
                        }
                        for (k, old) in before {
                            let new = state.get(&k);
                            if old.as_ref() == new {
                                continue;
                            }
                            if let Some(old) = old {
                                session.give(Ok(((k.clone(), old), time, -1isize)));
                            }
                            if let Some(new) = new {
                                session.give(Ok(((k, new.clone()), time, 1isize)));
                            }
                        }
                    }
                }
            },
        )
        .ok_err(|x| x);
    let (running, failed) =
        rest.ok_err(|x: RunningOrFailed<K, V, A, O>| x.map_err(|failed| *failed));
    TryScanned {
        table: table.as_collection(),
        running: running.as_collection(),
        failed: failed.as_collection(),
    }
}
