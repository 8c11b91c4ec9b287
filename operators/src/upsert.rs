//! Upsert tables: a stream of `(key, Option<value>, order)` becomes a table with at most one value
//! per key.
//!
//! ## Semantics
//!
//! The input is append-only (a changelog or a keyed topic): records with multiplicity `d <= 0` are
//! ignored and records with `d > 0` count once (an upsert is idempotent). `Some(v)` sets the key's
//! value to `v`, retracting the previous value; `None` is a tombstone and deletes the key.
//!
//! * **Order.** Epochs apply in order. Within an epoch, the record with the greatest ordering key
//!   `O` wins (the engine passes the source position, so "last write wins" as in Kafka); ties on
//!   `O` go to the greatest `Option<V>`, so the result never depends on arrival order.
//! * **Output.** The table is a differential collection `(key, value)` that holds at most one
//!   value per key at every epoch. It changes only when an epoch completes, and only by the net
//!   change of that epoch: a key written ten times in an epoch yields at most one retraction and
//!   one insertion; rewriting the current value emits nothing.
//! * **State** is the current table, one value per key, on the worker that owns the key.

use std::collections::HashMap;
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;

use crate::epoch::{default_route, Stash};
use crate::sensor::{sensed, Hop};

/// Builds upsert tables from `(key, Option<value>, order)` records.
pub trait Upsert<'scope, K, V, O>: Sized
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    O: ExchangeData,
{
    /// The table of the latest value per key; `None` deletes.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Upsert;
    ///
    /// timely::example(|scope| {
    ///     let writes = scope.new_collection_from(vec![
    ///         ('a', Some(1), 1u64),
    ///         ('a', Some(2), 2),
    ///         ('b', Some(5), 3),
    ///         ('b', None, 4),
    ///     ]).1;
    ///     let expected = scope.new_collection_from(vec![('a', 2)]).1;
    ///     writes.upsert("table").assert_eq(expected);
    /// });
    /// ```
    fn upsert(self, name: &str) -> VecCollection<'scope, u64, (K, V)> {
        self.upsert_core(name, default_route::<K>)
    }

    /// As [`Upsert::upsert`], with `route(key)` choosing the worker that owns a key (it must be the
    /// same function on every worker).
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Upsert;
    ///
    /// timely::example(|scope| {
    ///     // Same order key: the greater value wins, whatever the arrival order.
    ///     let writes = scope.new_collection_from(vec![(1u64, Some('x'), 0u32), (1, Some('y'), 0)]).1;
    ///     let expected = scope.new_collection_from(vec![(1u64, 'y')]).1;
    ///     writes.upsert_core("table", |k: &u64| *k).assert_eq(expected);
    /// });
    /// ```
    fn upsert_core<H>(self, name: &str, route: H) -> VecCollection<'scope, u64, (K, V)>
    where
        H: Fn(&K) -> u64 + 'static;
}

impl<'scope, K, V, O> Upsert<'scope, K, V, O> for VecCollection<'scope, u64, (K, Option<V>, O)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    O: ExchangeData,
{
    fn upsert_core<H>(self, name: &str, route: H) -> VecCollection<'scope, u64, (K, V)>
    where
        H: Fn(&K) -> u64 + 'static,
    {
        let pact = sensed(
            Exchange::new(move |((k, _, _), _, _): &((K, Option<V>, O), u64, isize)| route(k)),
            Hop::GroupBy,
            name,
        );
        self.inner
            .unary_frontier(pact, name, move |_cap, _info| {
                let mut table: HashMap<K, V> = HashMap::new();
                let mut stash: Stash<_, ()> = Stash::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| stash.push_appends(&cap, data));
                    while let Some((time, batch)) = stash.pop_complete(&[frontier]) {
                        // The winning write per key: greatest (order, value); repeats change nothing.
                        let mut last: HashMap<K, (O, Option<V>)> = HashMap::new();
                        for ((k, v, o), _) in batch.first {
                            match last.get_mut(&k) {
                                Some(best) => {
                                    if (&o, &v) > (&best.0, &best.1) {
                                        *best = (o, v);
                                    }
                                }
                                None => {
                                    last.insert(k, (o, v));
                                }
                            }
                        }
                        let mut session = output.session(&batch.capability);
                        for (k, (_, v)) in last {
                            let old = match v {
                                Some(v) => {
                                    if table.get(&k) == Some(&v) {
                                        continue;
                                    }
                                    session.give(((k.clone(), v.clone()), time, 1isize));
                                    table.insert(k.clone(), v)
                                }
                                None => table.remove(&k),
                            };
                            if let Some(old) = old {
                                session.give(((k, old), time, -1isize));
                            }
                        }
                    }
                }
            })
            .as_collection()
    }
}
