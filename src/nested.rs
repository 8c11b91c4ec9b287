//! Tables with nested values: a set table (`key → set of members`) and a list table
//! (`key → list`), built from streams of operations ([`SetOp`], [`ListOp`]).
//!
//! Their changelogs are operation logs, `{"action": "add", "value": member}` and so on (the
//! serde form of [`SetOp`] and [`ListOp`]), and stay bounded under Kafka compaction:
//!
//! - a set table's changelog is keyed by `[key, member]`, one `add` per member that joined in an
//!   epoch; a member that left is a tombstone on its `[key, member]` (compaction then forgets
//!   it), so the log holds one record per live member;
//! - a list table's changelog is keyed by the table key: each epoch that changed a key's list
//!   writes `{"action": "replace", "value": [...]}` with the whole new list, or a tombstone when
//!   the list became empty, so the log holds one record per live key.
//!
//! On restart the changelog is read back (the last record per changelog key) and its operations
//! are replayed, in the operators' order, before any new input: the same table comes back. See
//! `faustus-operators`' `nested` module for the operators and their property tests.

use std::collections::BTreeSet;

use faustus_operators::{Aggregate as _, ListOp, ListTables as _, SetOp, SetTables as _};

use crate::dataflow::{Data, Stream, Table};
use crate::runtime::{route, Pos};

impl<'s, K: Data, M: Data> Stream<'s, K, SetOp<M>> {
    /// The set table of the operations: `add` puts a member in the key's set, `remove` takes it
    /// out, `clear` empties the set. An empty set is absent. Within an epoch, operations apply
    /// in input order. Over HTTP a key's value is a JSON array, in member order.
    pub fn set_table(self, name: &str) -> Table<'s, K, BTreeSet<M>> {
        let state = self.df.state::<(K, M), SetOp<M>>(name);
        let restored = state.restored().map(|((k, _m), op)| (k, op, Pos::Restored));
        let ops = self.coll.map(|(k, op, m)| (k, op, m.pos()));
        let set = ops.concat(restored).set_table_core(name, route::<K>);
        state.log(set.changelog.map(|(km, op)| match op {
            SetOp::Remove(_) => (km, None),
            op => (km, Some(op)),
        }));
        let sets = set
            .table
            .reduce_by_key_core(name, route::<K>, |_k, members| {
                Some(members.iter().map(|(m, _)| (*m).clone()).collect())
            });
        state.restores(sets)
    }
}

impl<'s, K: Data, M: Data> Stream<'s, K, ListOp<M>> {
    /// The list table of the operations: `append` adds at the end, `remove` takes out the first
    /// occurrence of a value, `clear` empties the list, `replace` sets the whole list. Order is
    /// input order. An empty list is absent. Over HTTP a key's value is a JSON array.
    pub fn list_table(self, name: &str) -> Table<'s, K, Vec<M>> {
        let state = self.df.state::<K, ListOp<M>>(name);
        let restored = state.restored().map(|(k, op)| (k, op, Pos::Restored));
        let ops = self.coll.map(|(k, op, m)| (k, op, m.pos()));
        let list = ops.concat(restored).list_table_core(name, route::<K>);
        state.log(list.changelog.map(|(k, op)| match op {
            ListOp::Clear => (k, None),
            op => (k, Some(op)),
        }));
        state.restores(list.table)
    }
}
