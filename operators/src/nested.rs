//! Nested tables: a set table (`key → set of members`) and a list table (`key → list`), built
//! from a stream of operations, each with a changelog that restores it.
//!
//! ## Semantics
//!
//! The input is append-only `(key, op, order)` (records with `d <= 0` are ignored; `d > 0` applies
//! the op `d` times). Epochs apply in order; within an epoch a key's ops apply in ascending
//! `(order, op)` order, so the result does not depend on arrival order. Output changes only when
//! an epoch completes, by the net change of the epoch.
//!
//! * [`SetOp`]: `add` (idempotent), `remove` (a no-op for a non-member), `clear`. The set table is
//!   the relation `(key, member)`: one row per member, so adding a member inserts one row and a
//!   large set is never re-emitted as a whole.
//! * [`ListOp`]: `append`, `remove` (the first occurrence; a no-op if absent), `clear`, and
//!   `replace` (the whole list; what the changelog writes). The list table is `(key, list)` in
//!   arrival order; a change retracts the old list and inserts the new one. An empty list is
//!   absent.
//!
//! ## Changelog, and how it stays bounded under compaction
//!
//! A compacted Kafka topic keeps only the latest record per message key, so an operation log
//! keyed only by the table key would lose all but its last op. The two tables avoid this in the
//! two ways a log can:
//!
//! * **Set: keyed by `(key, member)`.** For every member whose membership changed in an epoch, the
//!   changelog has one record `((key, member), {"action": "add"|"remove", "value": member})`.
//!   A `clear` becomes one `remove` per member. Compaction keeps the latest op per member, which
//!   is exactly the membership; `remove` records may be written as tombstones and compacted away.
//!   The log is bounded by the number of live members (plus tombstones until they are cleaned).
//! * **List: a snapshot per key.** Order and duplicates make a list's ops depend on each other,
//!   so for every key whose list changed in an epoch, the changelog has one record
//!   `(key, {"action": "replace", "value": [..]})` with the whole new list, or
//!   `(key, {"action": "clear"})` when it became empty (a tombstone candidate). Compaction keeps
//!   the latest snapshot per key, so the log is bounded by the table's size; the cost is writing
//!   the whole list of every changed key once per epoch.
//!
//! Replaying a changelog's records in order, through [`SetOp::apply`] / [`ListOp::apply`] or
//! through these operators, rebuilds the same table. Each key (or key and member) has at most one
//! changelog record per epoch, so the order of records within an epoch does not matter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;

use crate::epoch::{default_route, Stash};
use crate::sensor::{sensed, Hop};

/// An operation on a set table; serialized as `{"action": "add", "value": member}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "action", content = "value", rename_all = "snake_case")]
pub enum SetOp<M> {
    /// Adds a member.
    Add(M),
    /// Removes a member.
    Remove(M),
    /// Removes every member.
    Clear,
}

impl<M: Ord + Clone> SetOp<M> {
    /// Applies the operation to a set.
    pub fn apply(&self, set: &mut BTreeSet<M>) {
        match self {
            SetOp::Add(m) => {
                set.insert(m.clone());
            }
            SetOp::Remove(m) => {
                set.remove(m);
            }
            SetOp::Clear => set.clear(),
        }
    }
}

/// An operation on a list table; serialized as `{"action": "append", "value": member}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "action", content = "value", rename_all = "snake_case")]
pub enum ListOp<M> {
    /// Appends a value.
    Append(M),
    /// Removes the first occurrence of a value.
    Remove(M),
    /// Empties the list.
    Clear,
    /// Replaces the whole list (the changelog's snapshot record).
    Replace(Vec<M>),
}

impl<M: PartialEq + Clone> ListOp<M> {
    /// Applies the operation to a list.
    pub fn apply(&self, list: &mut Vec<M>) {
        match self {
            ListOp::Append(m) => list.push(m.clone()),
            ListOp::Remove(m) => {
                if let Some(i) = list.iter().position(|x| x == m) {
                    list.remove(i);
                }
            }
            ListOp::Clear => list.clear(),
            ListOp::Replace(all) => *list = all.clone(),
        }
    }
}

/// A nested table and its changelog.
pub struct Nested<'scope, T: 'static, C: 'static> {
    /// The table.
    pub table: VecCollection<'scope, u64, T>,
    /// The changelog: an append-only log of operations that rebuilds the table.
    pub changelog: VecCollection<'scope, u64, C>,
}

/// A set table `(key, member)` with its changelog `((key, member), op)`.
pub type SetTable<'scope, K, M> = Nested<'scope, (K, M), ((K, M), SetOp<M>)>;

/// A list table `(key, list)` with its changelog `(key, op)`.
pub type ListTable<'scope, K, M> = Nested<'scope, (K, Vec<M>), (K, ListOp<M>)>;

/// Builds a set table from `(key, SetOp, order)` records.
pub trait SetTables<'scope, K, M, O>: Sized
where
    K: ExchangeData + Hash,
    M: ExchangeData,
    O: ExchangeData,
{
    /// The set table of the operations.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{SetOp, SetTables};
    ///
    /// timely::example(|scope| {
    ///     let ops = scope.new_collection_from(vec![
    ///         ('k', SetOp::Add(1), 0u64),
    ///         ('k', SetOp::Add(2), 1),
    ///         ('k', SetOp::Remove(1), 2),
    ///     ]).1;
    ///     let expected = scope.new_collection_from(vec![('k', 2)]).1;
    ///     ops.set_table("tags").table.assert_eq(expected);
    /// });
    /// ```
    fn set_table(self, name: &str) -> SetTable<'scope, K, M> {
        self.set_table_core(name, default_route::<K>)
    }

    /// As [`SetTables::set_table`], with `route(key)` choosing the worker that owns a key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{SetOp, SetTables};
    ///
    /// timely::example(|scope| {
    ///     let ops = scope.new_collection_from(vec![
    ///         (1u64, SetOp::Add('a'), 0u64),
    ///         (1, SetOp::Add('b'), 1),
    ///         (1, SetOp::Clear, 2),
    ///         (1, SetOp::Add('c'), 3),
    ///     ]).1;
    ///     let set = ops.set_table_core("tags", |k: &u64| *k);
    ///     set.table.assert_eq(scope.new_collection_from(vec![(1u64, 'c')]).1);
    ///     // The changelog is keyed by (key, member): one op per changed member.
    ///     let log = scope.new_collection_from(vec![((1u64, 'c'), SetOp::Add('c'))]).1;
    ///     set.changelog.assert_eq(log);
    /// });
    /// ```
    fn set_table_core<H>(self, name: &str, route: H) -> SetTable<'scope, K, M>
    where
        H: Fn(&K) -> u64 + 'static;
}

/// Builds a list table from `(key, ListOp, order)` records.
pub trait ListTables<'scope, K, M, O>: Sized
where
    K: ExchangeData + Hash,
    M: ExchangeData,
    O: ExchangeData,
{
    /// The list table of the operations.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{ListOp, ListTables};
    ///
    /// timely::example(|scope| {
    ///     let ops = scope.new_collection_from(vec![
    ///         ('k', ListOp::Append(1), 0u64),
    ///         ('k', ListOp::Append(2), 1),
    ///         ('k', ListOp::Append(1), 2),
    ///         ('k', ListOp::Remove(1), 3),
    ///     ]).1;
    ///     let expected = scope.new_collection_from(vec![('k', vec![2, 1])]).1;
    ///     let list = ops.list_table("history");
    ///     list.table.assert_eq(expected);
    ///     let snapshot = scope.new_collection_from(vec![('k', ListOp::Replace(vec![2, 1]))]).1;
    ///     list.changelog.assert_eq(snapshot);
    /// });
    /// ```
    fn list_table(self, name: &str) -> ListTable<'scope, K, M> {
        self.list_table_core(name, default_route::<K>)
    }

    /// As [`ListTables::list_table`], with `route(key)` choosing the worker that owns a key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{ListOp, ListTables};
    ///
    /// timely::example(|scope| {
    ///     let ops = scope.new_collection_from(vec![
    ///         (1u64, ListOp::Append('a'), 0u64),
    ///         (1, ListOp::Clear, 1),
    ///     ]).1;
    ///     // No net change within the epoch: nothing in the table, nothing in the changelog.
    ///     let list = ops.list_table_core("history", |k: &u64| *k);
    ///     list.table.assert_empty();
    ///     list.changelog.assert_empty();
    /// });
    /// ```
    fn list_table_core<H>(self, name: &str, route: H) -> ListTable<'scope, K, M>
    where
        H: Fn(&K) -> u64 + 'static;
}

/// An update of a nested table (`Ok`) or a changelog record (`Err`), with its count.
type Update<T, C> = (Result<T, C>, isize);

/// The operations of a nested table: what they do to a key's state, and what a change of a key's
/// state emits. The two tables differ only in this.
trait Operation<K>: ExchangeData {
    /// A key's state: a set or a list.
    type State: Default + PartialEq + Clone + 'static;
    /// A row of the table.
    type Row: ExchangeData;
    /// A record of the changelog.
    type Log: ExchangeData;
    /// Applies the operation to a key's state.
    fn apply_to(&self, state: &mut Self::State);
    /// The table updates and changelog records of `key`'s change from `old` to `new`.
    fn changes(
        key: &K,
        old: &Self::State,
        new: &Self::State,
        out: &mut Vec<Update<Self::Row, Self::Log>>,
    );
}

impl<K: ExchangeData, M: ExchangeData> Operation<K> for SetOp<M> {
    type State = BTreeSet<M>;
    type Row = (K, M);
    type Log = ((K, M), SetOp<M>);

    fn apply_to(&self, set: &mut BTreeSet<M>) {
        self.apply(set)
    }

    /// One row and one changelog record per member whose membership changed.
    fn changes(
        k: &K,
        old: &BTreeSet<M>,
        new: &BTreeSet<M>,
        out: &mut Vec<Update<Self::Row, Self::Log>>,
    ) {
        for m in old.difference(new) {
            let km = (k.clone(), m.clone());
            out.push((Ok(km.clone()), -1));
            out.push((Err((km, SetOp::Remove(m.clone()))), 1));
        }
        for m in new.difference(old) {
            let km = (k.clone(), m.clone());
            out.push((Ok(km.clone()), 1));
            out.push((Err((km, SetOp::Add(m.clone()))), 1));
        }
    }
}

impl<K: ExchangeData, M: ExchangeData> Operation<K> for ListOp<M> {
    type State = Vec<M>;
    type Row = (K, Vec<M>);
    type Log = (K, ListOp<M>);

    fn apply_to(&self, list: &mut Vec<M>) {
        self.apply(list)
    }

    /// The old list retracted, the new one inserted, and the new list as a snapshot (a `clear`
    /// when it is empty).
    fn changes(k: &K, old: &Vec<M>, new: &Vec<M>, out: &mut Vec<Update<Self::Row, Self::Log>>) {
        if !old.is_empty() {
            out.push((Ok((k.clone(), old.clone())), -1));
        }
        if new.is_empty() {
            out.push((Err((k.clone(), ListOp::Clear)), 1));
        } else {
            out.push((Ok((k.clone(), new.clone())), 1));
            out.push((Err((k.clone(), ListOp::Replace(new.clone()))), 1));
        }
    }
}

/// Applies each completed epoch's ops per key, in `(order, op)` order, to the key's state, and
/// emits the table updates and changelog records of every key whose state changed.
fn nested_core<'scope, K, Op, O, H>(
    input: VecCollection<'scope, u64, (K, Op, O)>,
    name: &str,
    route: H,
) -> Nested<'scope, Op::Row, Op::Log>
where
    K: ExchangeData + Hash,
    Op: Operation<K>,
    O: ExchangeData,
    H: Fn(&K) -> u64 + 'static,
{
    let pact = sensed(
        Exchange::new(move |((k, _, _), _, _): &((K, Op, O), u64, isize)| route(k)),
        Hop::GroupBy,
        name,
    );
    let out = input
        .inner
        .unary_frontier(pact, name, move |_cap, _info| {
            let mut state: HashMap<K, Op::State> = HashMap::new();
            let mut stash: Stash<_, ()> = Stash::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| stash.push_appends(&cap, data));
                while let Some((time, batch)) = stash.pop_complete(&[frontier]) {
                    let mut per_key: BTreeMap<K, Vec<(O, Op, isize)>> = BTreeMap::new();
                    for ((k, op, o), d) in batch.first {
                        per_key.entry(k).or_default().push((o, op, d));
                    }
                    let mut updates = Vec::new();
                    for (k, mut ops) in per_key {
                        ops.sort();
                        let old = state.get(&k).cloned().unwrap_or_default();
                        let mut new = old.clone();
                        for (_o, op, d) in ops {
                            for _ in 0..d {
                                op.apply_to(&mut new);
                            }
                        }
                        if new != old {
                            Op::changes(&k, &old, &new, &mut updates);
                            if new == Op::State::default() {
                                state.remove(&k);
                            } else {
                                state.insert(k, new);
                            }
                        }
                    }
                    let mut session = output.session(&batch.capability);
                    for (d, r) in updates {
                        session.give((d, time, r));
                    }
                }
            }
        })
        .as_collection();
    Nested {
        table: out.clone().flat_map(|r| r.ok()),
        changelog: out.flat_map(|r| r.err()),
    }
}

impl<'scope, K, M, O> SetTables<'scope, K, M, O> for VecCollection<'scope, u64, (K, SetOp<M>, O)>
where
    K: ExchangeData + Hash,
    M: ExchangeData,
    O: ExchangeData,
{
    fn set_table_core<H>(self, name: &str, route: H) -> SetTable<'scope, K, M>
    where
        H: Fn(&K) -> u64 + 'static,
    {
        nested_core(self, name, route)
    }
}

impl<'scope, K, M, O> ListTables<'scope, K, M, O> for VecCollection<'scope, u64, (K, ListOp<M>, O)>
where
    K: ExchangeData + Hash,
    M: ExchangeData,
    O: ExchangeData,
{
    fn list_table_core<H>(self, name: &str, route: H) -> ListTable<'scope, K, M>
    where
        H: Fn(&K) -> u64 + 'static,
    {
        nested_core(self, name, route)
    }
}
