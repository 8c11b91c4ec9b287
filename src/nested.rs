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

use faustus_connectors::OutRecord;
use faustus_operators::{Aggregate as _, ListOp, ListTables as _, SetOp, SetTables as _};
use timely::dataflow::operators::vec::Map as _;

use crate::dataflow::{Data, Stream, Table};
use crate::runtime::{key_bytes, route, CommitItem, Pos};

/// Order key of changelog records: after every sink record of the epoch.
const CHANGELOG_POS: Pos = (u32::MAX, 0, 0, 0);

/// Order key of restored operations: before any input.
const RESTORED_POS: Pos = (0, 0, 0, 0);

impl<'s, K: Data, M: Data> Stream<'s, K, SetOp<M>> {
    /// The set table of the operations: `add` puts a member in the key's set, `remove` takes it
    /// out, `clear` empties the set. An empty set is absent. Within an epoch, operations apply
    /// in input order. Over HTTP a key's value is a JSON array, in member order.
    pub fn set_table(self, name: &str) -> Table<'s, K, BTreeSet<M>> {
        let df = self.df.clone();
        let (index, restored) = df.changelog::<(K, M), SetOp<M>>(name);
        let restored = restored.map(|((k, _m), op)| (k, op, RESTORED_POS));
        let set = self.coll.concat(restored).set_table_core(name, route::<K>);
        df.push_output(set.changelog.inner.map(move |(((k, m), op), _t, _d)| {
            let value = match op {
                SetOp::Remove(_) => None,
                op => Some(key_bytes(&op)),
            };
            changelog_record(index, key_bytes(&(k, m)), value)
        }));
        let sets = set
            .table
            .reduce_by_key_core(name, route::<K>, |_k, members| {
                Some(members.iter().map(|(m, _)| (*m).clone()).collect())
            });
        Table::new(df, name, sets, None)
    }
}

impl<'s, K: Data, M: Data> Stream<'s, K, ListOp<M>> {
    /// The list table of the operations: `append` adds at the end, `remove` takes out the first
    /// occurrence of a value, `clear` empties the list, `replace` sets the whole list. Order is
    /// input order. An empty list is absent. Over HTTP a key's value is a JSON array.
    pub fn list_table(self, name: &str) -> Table<'s, K, Vec<M>> {
        let df = self.df.clone();
        let (index, restored) = df.changelog::<K, ListOp<M>>(name);
        let restored = restored.map(|(k, op)| (k, op, RESTORED_POS));
        let list = self.coll.concat(restored).list_table_core(name, route::<K>);
        df.push_output(list.changelog.inner.map(move |((k, op), _t, _d)| {
            let value = match op {
                ListOp::Clear => None,
                op => Some(key_bytes(&op)),
            };
            changelog_record(index, key_bytes(&k), value)
        }));
        Table::new(df, name, list.table, None)
    }
}

fn changelog_record(topic: u32, key: Vec<u8>, value: Option<Vec<u8>>) -> CommitItem {
    CommitItem::Record(
        CHANGELOG_POS,
        OutRecord {
            topic,
            key: Some(key),
            value,
            headers: Vec::new(),
        },
    )
}
