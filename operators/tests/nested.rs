//! Oracle tests for nested tables: after every epoch the set/list table equals a model that
//! replays each epoch's ops per key in `(order, op)` order; replaying the changelog emitted so
//! far rebuilds the same table; the changelog has at most one record per compaction key per
//! epoch; and ops serialize as `{"action": ..., "value": ...}`.

#![allow(clippy::type_complexity)]

mod common;

use std::collections::BTreeMap;

use common::{appends, as_set, at, run1, setups, Route, Updates, WORKERS};
use faustus_operators::{ListOp, ListTables, SetOp, SetTables};
use proptest::prelude::*;

/// The model's own set operation on a sorted `Vec` (independent of `SetOp::apply`).
fn set_apply(set: &mut Vec<u8>, op: &SetOp<u8>) {
    match op {
        SetOp::Add(m) if !set.contains(m) => {
            set.push(*m);
            set.sort();
        }
        SetOp::Add(_) => {}
        SetOp::Remove(m) => set.retain(|x| x != m),
        SetOp::Clear => set.clear(),
    }
}

fn list_apply(list: &mut Vec<u8>, op: &ListOp<u8>) {
    match op {
        ListOp::Append(m) => list.push(*m),
        ListOp::Remove(m) => {
            if let Some(i) = list.iter().position(|x| x == m) {
                list.remove(i);
            }
        }
        ListOp::Clear => list.clear(),
        ListOp::Replace(all) => *list = all.clone(),
    }
}

/// The model: per epoch, every key's ops sorted by `(order, op)` applied in turn.
fn replay<Op: Ord + Clone>(
    epochs: &[Vec<(u8, Op, u8)>],
    apply: impl Fn(&mut Vec<u8>, &Op),
) -> Vec<BTreeMap<u8, Vec<u8>>> {
    let mut state: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut out = Vec::new();
    for batch in epochs {
        let mut batch = batch.clone();
        batch.sort_by(|a, b| (a.2, &a.1).cmp(&(b.2, &b.1)));
        for (k, op, _) in &batch {
            apply(state.entry(*k).or_default(), op);
        }
        state.retain(|_, v| !v.is_empty());
        out.push(state.clone());
    }
    out
}

fn set_ops() -> impl Strategy<Value = Vec<Vec<(u8, SetOp<u8>, u8)>>> {
    let op = prop_oneof![
        4 => (0u8..4).prop_map(SetOp::Add),
        3 => (0u8..4).prop_map(SetOp::Remove),
        1 => Just(SetOp::Clear),
    ];
    proptest::collection::vec(proptest::collection::vec((0u8..3, op, 0u8..4), 0..6), 1..6)
}

fn list_ops() -> impl Strategy<Value = Vec<Vec<(u8, ListOp<u8>, u8)>>> {
    let op = prop_oneof![
        4 => (0u8..4).prop_map(ListOp::Append),
        3 => (0u8..4).prop_map(ListOp::Remove),
        1 => Just(ListOp::Clear),
        1 => proptest::collection::vec(0u8..4, 0..3).prop_map(ListOp::Replace),
    ];
    proptest::collection::vec(proptest::collection::vec((0u8..3, op, 0u8..4), 0..6), 1..6)
}

type SetOut = Result<(u8, u8), ((u8, u8), SetOp<u8>)>;
type ListOut = Result<(u8, Vec<u8>), (u8, ListOp<u8>)>;

/// The changelog records of each epoch, in epoch order.
fn changelog<C: Clone, T>(out: &Updates<Result<T, C>>, epoch: u64) -> Vec<(C, isize)> {
    out.iter()
        .filter(|(_, t, _)| *t == epoch)
        .filter_map(|(r, _, d)| match r {
            Err(c) => Some((c.clone(), *d)),
            Ok(_) => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(48)))]

    #[test]
    fn set_table_matches_model(epochs in set_ops()) {
        let want = replay(&epochs, set_apply);
        for (workers, route) in setups() {
            let out: Updates<SetOut> = run1(workers, appends(epochs.clone()), move |ops| {
                let t = match route {
                    Route::Default => ops.set_table("set"),
                    _ => ops.set_table_core("set", route.of()),
                };
                t.table.map(Ok).concat(t.changelog.map(Err))
            });
            let workers = format!("{workers} {route:?}");
            let mut restored: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
            for (e, want) in want.iter().enumerate() {
                let table: BTreeMap<SetOut, isize> = at(&out, e as u64)
                    .into_iter()
                    .filter(|(r, _)| r.is_ok())
                    .collect();
                let rows = want.iter().flat_map(|(k, ms)| ms.iter().map(move |m| Ok((*k, *m))));
                prop_assert_eq!(&table, &as_set(rows), "table, workers {} epoch {}", workers, e);
                // Changelog: appended only, one record per (key, member) per epoch, and its
                // replay in epoch order rebuilds the table.
                let log = changelog(&out, e as u64);
                prop_assert!(log.iter().all(|(_, d)| *d == 1));
                let mut keys: Vec<(u8, u8)> = log.iter().map(|((km, _), _)| *km).collect();
                let n = keys.len();
                keys.sort();
                keys.dedup();
                prop_assert_eq!(keys.len(), n, "one record per (key, member) per epoch");
                for (((k, _m), op), _) in &log {
                    set_apply(restored.entry(*k).or_default(), op);
                }
                restored.retain(|_, v| !v.is_empty());
                prop_assert_eq!(&restored, want, "restore, workers {} epoch {}", workers, e);
            }
        }
    }

    #[test]
    fn list_table_matches_model(epochs in list_ops()) {
        let want = replay(&epochs, list_apply);
        for (workers, route) in setups() {
            let out: Updates<ListOut> = run1(workers, appends(epochs.clone()), move |ops| {
                let t = match route {
                    Route::Default => ops.list_table("list"),
                    _ => ops.list_table_core("list", route.of()),
                };
                t.table.map(Ok).concat(t.changelog.map(Err))
            });
            let workers = format!("{workers} {route:?}");
            let mut restored: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
            for (e, want) in want.iter().enumerate() {
                let table: BTreeMap<ListOut, isize> = at(&out, e as u64)
                    .into_iter()
                    .filter(|(r, _)| r.is_ok())
                    .collect();
                let rows = want.iter().map(|(k, l)| Ok((*k, l.clone())));
                prop_assert_eq!(&table, &as_set(rows), "table, workers {} epoch {}", workers, e);
                let log = changelog(&out, e as u64);
                prop_assert!(log.iter().all(|(_, d)| *d == 1));
                let mut keys: Vec<u8> = log.iter().map(|((k, _), _)| *k).collect();
                let n = keys.len();
                keys.sort();
                keys.dedup();
                prop_assert_eq!(keys.len(), n, "one record per key per epoch");
                for ((k, op), _) in &log {
                    list_apply(restored.entry(*k).or_default(), op);
                }
                restored.retain(|_, v| !v.is_empty());
                prop_assert_eq!(&restored, want, "restore, workers {} epoch {}", workers, e);
            }
        }
    }
}

#[test]
fn ops_serialize_as_action_and_value() {
    assert_eq!(json(&SetOp::Add(3)), r#"{"action":"add","value":3}"#);
    assert_eq!(json(&SetOp::Remove(3)), r#"{"action":"remove","value":3}"#);
    assert_eq!(json(&SetOp::<u8>::Clear), r#"{"action":"clear"}"#);
    assert_eq!(
        json(&ListOp::Append("x".to_string())),
        r#"{"action":"append","value":"x"}"#
    );
    assert_eq!(
        json(&ListOp::Replace(vec![1, 2])),
        r#"{"action":"replace","value":[1,2]}"#
    );
    let back: SetOp<u8> = serde_json::from_str(r#"{"action":"remove","value":7}"#).unwrap();
    assert_eq!(back, SetOp::Remove(7));
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializes")
}

#[test]
fn restoring_from_the_changelog_through_the_operator_gives_the_same_table() {
    let ops = vec![
        vec![
            ('k', SetOp::Add(1), 0u32),
            ('k', SetOp::Add(2), 1),
            ('j', SetOp::Add(5), 2),
        ],
        vec![('k', SetOp::Remove(1), 0), ('k', SetOp::Add(3), 1)],
        vec![('j', SetOp::Clear, 0)],
    ];
    let out: Updates<Result<(char, i32), ((char, i32), SetOp<i32>)>> =
        run1(1, appends(ops), |ops| {
            let t = ops.set_table("set");
            t.table.map(Ok).concat(t.changelog.map(Err))
        });
    let table: BTreeMap<_, _> = at(&out, 2).into_iter().filter(|(r, _)| r.is_ok()).collect();
    assert_eq!(table, as_set([Ok(('k', 2)), Ok(('k', 3))]));
    // Replay the changelog, ordered by the epoch it was written in, into a fresh set table.
    let log: Vec<((char, SetOp<i32>, u64), isize)> = out
        .iter()
        .filter_map(|(r, t, _)| r.clone().err().map(|((k, _), op)| ((k, op, *t), 1)))
        .collect();
    for workers in WORKERS {
        let restored = run1(workers, vec![log.clone()], |log| {
            log.set_table("restored").table
        });
        assert_eq!(at(&restored, 0), as_set([('k', 2), ('k', 3)]));
    }
}
