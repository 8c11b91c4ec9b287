//! Stream inputs are append-only: every operator that reads a stream ignores records with
//! multiplicity `d <= 0`, as the module docs promise. Each test runs an operator on a stream, then
//! on the same stream with retractions and zero-multiplicity records mixed in (with event times
//! far ahead, so that a counted one would also move stream time), and requires the same output
//! updates at every epoch, with one and three workers.

#![allow(clippy::type_complexity)]

mod common;

use std::collections::BTreeMap;

use common::{appends, changes_at, run1, run2, Updates, WORKERS};
use differential_dataflow::{ExchangeData, VecCollection};
use faustus_operators::{
    EventTime, JoinKind, JoinWindow, ListOp, ListTables, SetOp, SetTables, TableJoin, Upsert,
    WindowConfig, WindowJoin, WindowKind, Windows,
};

/// `clean` with `noise` (records with `d <= 0`) added to each epoch, before and after the
/// epoch's own records.
fn noisy<I: Clone>(clean: &[Vec<I>], noise: &[Vec<I>]) -> Vec<Vec<(I, isize)>> {
    clean
        .iter()
        .enumerate()
        .map(|(e, batch)| {
            let noise = noise.get(e).cloned().unwrap_or_default();
            let mut out: Vec<(I, isize)> = noise.iter().map(|r| (r.clone(), -1)).collect();
            out.extend(batch.iter().map(|r| (r.clone(), 1)));
            out.extend(noise.iter().map(|r| (r.clone(), 0)));
            out.extend(noise.iter().map(|r| (r.clone(), -3)));
            out
        })
        .collect()
}

/// The consolidated updates of every epoch.
fn per_epoch<O: Ord + Clone>(out: &Updates<O>, epochs: usize) -> Vec<BTreeMap<O, isize>> {
    (0..epochs as u64).map(|e| changes_at(out, e)).collect()
}

fn assert_ignored<I, O, B>(name: &str, clean: Vec<Vec<I>>, noise: Vec<Vec<I>>, build: B)
where
    I: ExchangeData + Sync,
    O: ExchangeData,
    B: for<'s> Fn(VecCollection<'s, u64, I>) -> VecCollection<'s, u64, O>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let n = clean.len();
    for workers in WORKERS {
        let want = run1(workers, appends(clean.clone()), build.clone());
        assert!(!want.is_empty(), "{name}: the clean run has output");
        let got = run1(workers, noisy(&clean, &noise), build.clone());
        assert_eq!(
            per_epoch(&got, n),
            per_epoch(&want, n),
            "{name}, workers {workers}"
        );
    }
}

#[test]
fn upsert_ignores_non_positive_records() {
    let clean = vec![
        vec![(1u8, Some(1u8), 0u8), (2, Some(2), 0)],
        vec![(1, None, 1)],
    ];
    // A retracted later write, a retracted tombstone, and a new key.
    let noise = vec![
        vec![(1, Some(9), 9), (2, None, 9), (3, Some(3), 0)],
        vec![(1, Some(7), 9)],
    ];
    assert_ignored("upsert", clean.clone(), noise.clone(), |c| c.upsert("u"));
    assert_ignored("upsert_core", clean, noise, |c| c.upsert_core("u", |_| 0));
}

#[test]
fn windows_ignore_non_positive_records() {
    let clean = vec![
        vec![(1u8, 1u8, EventTime(3)), (2, 1, EventTime(12))],
        vec![(1, 2, EventTime(8)), (1, 1, EventTime(25))],
        vec![(1, 1, EventTime(9))],
    ];
    // Far-ahead event times: counted, they would close every window above.
    let noise = vec![
        vec![(1, 7, EventTime(500)), (3, 7, EventTime(4))],
        vec![(1, 7, EventTime(9)), (2, 7, EventTime(1000))],
        vec![(1, 7, EventTime(2000))],
    ];
    for kind in [
        WindowKind::Tumbling { size: 10 },
        WindowKind::Hopping {
            size: 10,
            advance: 5,
        },
        WindowKind::Sliding { size: 10 },
        WindowKind::Session { gap: 5 },
    ] {
        for emit in [
            faustus_operators::Emit::EveryUpdate,
            faustus_operators::Emit::Final,
        ] {
            let c = WindowConfig {
                kind,
                grace: 5,
                expires: 20,
                emit,
            };
            let name = format!("{kind:?} {emit:?}");
            assert_ignored(&name, clean.clone(), noise.clone(), move |input| {
                let w = input.window_aggregate(c, "content", |_k, _w, r| r.to_vec());
                w.output.map(Ok).concat(w.late.map(Err))
            });
            assert_ignored(&name, clean.clone(), noise.clone(), move |input| {
                let w = input.window_count(c);
                w.output.map(Ok).concat(w.late.map(Err))
            });
        }
    }
}

#[test]
fn nested_tables_ignore_non_positive_records() {
    let clean = vec![
        vec![(1u8, SetOp::Add(1u8), 0u8), (1, SetOp::Add(2), 1)],
        vec![(1, SetOp::Remove(1), 0)],
    ];
    let noise = vec![
        vec![(1, SetOp::Clear, 9), (2, SetOp::Add(5), 0)],
        vec![(1, SetOp::Remove(2), 9), (1, SetOp::Add(3), 9)],
    ];
    assert_ignored("set_table", clean, noise, |ops| {
        let t = ops.set_table("set");
        t.table.map(Ok).concat(t.changelog.map(Err))
    });
    let clean = vec![
        vec![(1u8, ListOp::Append(1u8), 0u8), (1, ListOp::Append(2), 1)],
        vec![(1, ListOp::Remove(1), 0)],
    ];
    let noise = vec![
        vec![(1, ListOp::Clear, 9), (2, ListOp::Append(5), 0)],
        vec![(1, ListOp::Replace(vec![7]), 9), (1, ListOp::Append(3), 9)],
    ];
    assert_ignored("list_table", clean, noise, |ops| {
        let t = ops.list_table_core("list", |_| 0);
        t.table.map(Ok).concat(t.changelog.map(Err))
    });
}

type Ev = (u8, u8, EventTime);
type JoinOut = Result<
    (u8, (Option<u8>, Option<u8>), EventTime),
    faustus_operators::LateJoinRecord<u8, u8, u8>,
>;

fn outer_join<'s>(
    l: VecCollection<'s, u64, Ev>,
    r: VecCollection<'s, u64, Ev>,
    w: JoinWindow,
) -> VecCollection<'s, u64, JoinOut> {
    let j = l.window_join_core(r, w, JoinKind::Outer, |k: &u8| u64::from(*k));
    j.output.map(Ok).concat(j.late.map(Err))
}

#[test]
fn stream_joins_ignore_non_positive_records() {
    let left: Vec<Vec<Ev>> = vec![
        vec![(1, 1, EventTime(10)), (2, 2, EventTime(11))],
        vec![(1, 3, EventTime(40))],
    ];
    let right: Vec<Vec<Ev>> = vec![vec![(1, 9, EventTime(12))], vec![(2, 8, EventTime(60))]];
    let left_noise = vec![vec![(1, 7, EventTime(11)), (3, 7, EventTime(900))], vec![]];
    let right_noise = vec![vec![(2, 7, EventTime(10))], vec![(1, 7, EventTime(41))]];
    let w = JoinWindow {
        window: 5,
        grace: 2,
    };
    for workers in WORKERS {
        let want = run2(
            workers,
            appends(left.clone()),
            appends(right.clone()),
            move |l, r| outer_join(l, r, w),
        );
        assert!(!want.is_empty());
        let got = run2(
            workers,
            noisy(&left, &left_noise),
            noisy(&right, &right_noise),
            move |l, r| outer_join(l, r, w),
        );
        assert_eq!(per_epoch(&got, 2), per_epoch(&want, 2), "workers {workers}");
    }

    // stream⋈table: non-positive events are ignored (table retractions are not: it is a table).
    let events = vec![vec![(1u8, 1u8), (2, 2)], vec![(1, 3)]];
    let noise = vec![vec![(1, 7), (2, 7)], vec![(1, 7)]];
    let table = vec![
        vec![((1u8, 'x'), 1isize)],
        vec![((1, 'x'), -1), ((1, 'y'), 1)],
    ];
    for workers in WORKERS {
        let want = run2(workers, appends(events.clone()), table.clone(), |s, t| {
            s.lookup_left_join(t)
        });
        let got = run2(workers, noisy(&events, &noise), table.clone(), |s, t| {
            s.lookup_left_join(t)
        });
        assert_eq!(per_epoch(&got, 2), per_epoch(&want, 2), "workers {workers}");
        let want = run2(workers, appends(events.clone()), table.clone(), |s, t| {
            t.join_stream(s)
        });
        let got = run2(workers, noisy(&events, &noise), table.clone(), |s, t| {
            t.join_stream(s)
        });
        assert!(!want.is_empty());
        assert_eq!(per_epoch(&got, 2), per_epoch(&want, 2), "workers {workers}");
    }
}
