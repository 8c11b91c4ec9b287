//! Oracle and scenario tests for joins.
//!
//! Oracle tests compare the accumulated output after every epoch with a from-scratch model
//! computed from the inputs accumulated so far (tables) or from every event seen so far
//! (streams), with 1 and 3 workers. Scenario tests replay the Kafka Streams join semantics
//! tables, one per join kind.

#![allow(clippy::type_complexity)]

mod common;

use std::collections::BTreeMap;

use common::{
    after, apart, appends, as_set, at, changes_at, restore_seeds, run2, setups, split, Route,
    Updates, WORKERS,
};
use differential_dataflow::{ExchangeData, VecCollection};
use faustus_operators::{EventTime, JoinKind, JoinWindow, Side, TableJoin, WindowJoin};
use proptest::prelude::*;

type Upd<D> = Vec<Vec<(D, isize)>>;

/// Turns per-epoch upserts `(key, Some(value) | None)` into table updates, and the table after
/// every epoch.
fn tables(epochs: &[Vec<(u8, Option<u8>)>]) -> (Upd<(u8, u8)>, Vec<BTreeMap<u8, u8>>) {
    let mut table = BTreeMap::new();
    let mut updates = Vec::new();
    let mut states = Vec::new();
    for batch in epochs {
        let mut here = Vec::new();
        for &(k, v) in batch {
            let old = match v {
                Some(v) => table.insert(k, v),
                None => table.remove(&k),
            };
            if let Some(old) = old {
                here.push(((k, old), -1));
            }
            if let Some(v) = v {
                here.push(((k, v), 1));
            }
        }
        updates.push(here);
        states.push(table.clone());
    }
    (updates, states)
}

/// The table after epoch `e` of the tables after each epoch (the last one after them, and empty
/// before any).
fn table_at(tables: &[BTreeMap<u8, u8>], e: usize) -> BTreeMap<u8, u8> {
    tables.get(e).or(tables.last()).cloned().unwrap_or_default()
}

fn upserts() -> impl Strategy<Value = Vec<Vec<(u8, Option<u8>)>>> {
    proptest::collection::vec(
        proptest::collection::vec((0u8..4, proptest::option::of(0u8..4)), 0..5),
        1..6,
    )
}

/// Model of the three table⋈table joins at one epoch, as `(k, (Option<v>, Option<w>))`; the inner
/// join keeps pairs, the left join keeps rows with a left value.
fn table_join_model(
    l: &BTreeMap<u8, u8>,
    r: &BTreeMap<u8, u8>,
) -> Vec<(u8, (Option<u8>, Option<u8>))> {
    let mut keys: Vec<u8> = l.keys().chain(r.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| (k, (l.get(&k).copied(), r.get(&k).copied())))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(32)))]

    #[test]
    fn table_joins_match_model(left in upserts(), right in upserts()) {
        let (lu, ls) = tables(&left);
        let (ru, rs) = tables(&right);
        let n = std::cmp::max(ls.len(), rs.len());
        for (workers, route) in setups() {
            let inner = run2(workers, lu.clone(), ru.clone(), move |l, r| match route {
                Route::Default => l.table_join(r),
                _ => l.table_join_core(r, route.of()),
            });
            let left_ = run2(workers, lu.clone(), ru.clone(), move |l, r| match route {
                Route::Default => l.table_left_join(r),
                _ => l.table_left_join_core(r, route.of()),
            });
            let outer = run2(workers, lu.clone(), ru.clone(), move |l, r| match route {
                Route::Default => l.table_outer_join(r),
                _ => l.table_outer_join_core(r, route.of()),
            });
            let workers = format!("{workers} {route:?}");
            for e in 0..n {
                let rows = table_join_model(&table_at(&ls, e), &table_at(&rs, e));
                let want_inner = as_set(rows.iter().filter_map(|&(k, (v, w))| Some((k, (v?, w?)))));
                let want_left = as_set(rows.iter().filter_map(|&(k, (v, w))| Some((k, (v?, w)))));
                let want_outer = as_set(rows.iter().copied());
                let t = e as u64;
                prop_assert_eq!(at(&inner, t), want_inner, "inner, workers {} epoch {}", workers, e);
                prop_assert_eq!(at(&left_, t), want_left, "left, workers {} epoch {}", workers, e);
                prop_assert_eq!(at(&outer, t), want_outer, "outer, workers {} epoch {}", workers, e);
            }
        }
    }

    #[test]
    fn fk_joins_match_model(left in upserts(), right in upserts()) {
        // Left value `v` refers to right key `v % 4`, except that `v >= 3` has no foreign key.
        let fk = |v: &u8| if *v < 3 { Some(*v) } else { None };
        let (lu, ls) = tables(&left);
        let (ru, rs) = tables(&right);
        let n = std::cmp::max(ls.len(), rs.len());
        for (workers, route) in setups() {
            let inner = run2(workers, lu.clone(), ru.clone(), move |l, r| match route {
                Route::Default => l.fk_join(r, fk),
                _ => l.fk_join_core(r, fk, route.of()),
            });
            let left_ = run2(workers, lu.clone(), ru.clone(), move |l, r| match route {
                Route::Default => l.fk_left_join(r, fk),
                _ => l.fk_left_join_core(r, fk, route.of()),
            });
            let workers = format!("{workers} {route:?}");
            for e in 0..n {
                let (l, r) = (table_at(&ls, e), table_at(&rs, e));
                let rows: Vec<(u8, (u8, Option<u8>))> = l
                    .iter()
                    .map(|(&k, &v)| (k, (v, fk(&v).and_then(|f| r.get(&f).copied()))))
                    .collect();
                let want_inner = as_set(rows.iter().filter_map(|&(k, (v, w))| Some((k, (v, w?)))));
                let t = e as u64;
                prop_assert_eq!(at(&inner, t), want_inner, "inner, workers {} epoch {}", workers, e);
                prop_assert_eq!(at(&left_, t), as_set(rows), "left, workers {} epoch {}", workers, e);
            }
        }
    }

    #[test]
    fn lookup_joins_match_model(
        events in proptest::collection::vec(proptest::collection::vec((0u8..4, 0u8..4), 0..5), 1..6),
        table in upserts(),
    ) {
        let (tu, ts) = tables(&table);
        let state = |e: usize| ts.get(e).or(ts.last()).cloned().unwrap_or_default();
        // Each event of epoch e sees the table as of the end of epoch e.
        let mut want: Vec<BTreeMap<(u8, (u8, Option<u8>)), isize>> = Vec::new();
        let mut acc = Vec::new();
        for (e, batch) in events.iter().enumerate() {
            let t = state(e);
            acc.extend(batch.iter().map(|&(k, v)| (k, (v, t.get(&k).copied()))));
            want.push(as_set(acc.clone()));
        }
        for (workers, route) in setups() {
            let inner = run2(workers, appends(events.clone()), tu.clone(), move |s, t| match route {
                Route::Default => s.lookup_join(t),
                _ => s
                    .lookup_join_core(t, false, route.of())
                    .flat_map(|(k, (v, w))| w.map(|w| (k, (v, w)))),
            });
            let left_ = run2(workers, appends(events.clone()), tu.clone(), move |s, t| match route {
                Route::Default => s.lookup_left_join(t),
                _ => s.lookup_join_core(t, true, route.of()),
            });
            let mirror = run2(workers, appends(events.clone()), tu.clone(), move |s, t| match route {
                Route::Default => t.join_stream(s),
                _ => t.join_stream_core(s, route.of()),
            });
            let workers = format!("{workers} {route:?}");
            prop_assert!(inner.iter().all(|(_, _, r)| *r > 0), "never retracts");
            prop_assert!(left_.iter().all(|(_, _, r)| *r > 0), "never retracts");
            for (e, w) in want.iter().enumerate() {
                let w_inner: BTreeMap<_, isize> =
                    w.iter().filter_map(|(&(k, (v, t)), &n)| Some(((k, (v, t?)), n))).collect();
                let w_mirror: BTreeMap<_, isize> =
                    w.iter().filter_map(|(&(k, (v, t)), &n)| Some(((k, (t?, v)), n))).collect();
                let t = e as u64;
                prop_assert_eq!(at(&inner, t), w_inner, "inner, workers {} epoch {}", workers, e);
                prop_assert_eq!(&at(&left_, t), w, "left, workers {} epoch {}", workers, e);
                prop_assert_eq!(at(&mirror, t), w_mirror, "mirror, workers {} epoch {}", workers, e);
            }
        }
    }
}

// ---- stream ⋈ stream ----

type Ev = (u8, u8, EventTime);
type JoinRow = (u8, (Option<u8>, Option<u8>), EventTime);
type Late = (u8, Side<(u8, EventTime), (u8, EventTime)>);

/// The model of the windowed outer join, from the documented rules, recomputed from scratch at
/// every epoch: stream time before the epoch decides lateness; pairs of accepted events within
/// the window; unmatched accepted events once `t + window + grace < ST(e)`.
fn window_join_model(
    left: &[Vec<Ev>],
    right: &[Vec<Ev>],
    w: JoinWindow,
    emit_left: bool,
    emit_right: bool,
) -> Vec<(BTreeMap<JoinRow, isize>, BTreeMap<Late, isize>)> {
    let n = std::cmp::max(left.len(), right.len());
    let mut st = 0u64;
    let (mut ls, mut rs): (Vec<Ev>, Vec<Ev>) = (Vec::new(), Vec::new());
    let mut late: Vec<Late> = Vec::new();
    let mut result = Vec::new();
    for e in 0..n {
        let before = st;
        let new_l = left.get(e).cloned().unwrap_or_default();
        let new_r = right.get(e).cloned().unwrap_or_default();
        for &(_, _, t) in new_l.iter().chain(new_r.iter()) {
            st = st.max(t.0);
        }
        for (k, v, t) in new_l {
            if t.0 + w.grace < before {
                late.push((k, Side::Left((v, t))));
            } else {
                ls.push((k, v, t));
            }
        }
        for (k, v, t) in new_r {
            if t.0 + w.grace < before {
                late.push((k, Side::Right((v, t))));
            } else {
                rs.push((k, v, t));
            }
        }
        let joins = |a: &Ev, b: &Ev| a.0 == b.0 && a.2 .0.abs_diff(b.2 .0) <= w.window;
        let closed = |t: EventTime| t.0 + w.window + w.grace < st;
        let mut rows = Vec::new();
        for l in &ls {
            for r in &rs {
                if joins(l, r) {
                    rows.push((l.0, (Some(l.1), Some(r.1)), l.2.max(r.2)));
                }
            }
            if emit_left && closed(l.2) && !rs.iter().any(|r| joins(l, r)) {
                rows.push((l.0, (Some(l.1), None), l.2));
            }
        }
        for r in &rs {
            if emit_right && closed(r.2) && !ls.iter().any(|l| joins(l, r)) {
                rows.push((r.0, (None, Some(r.1)), r.2));
            }
        }
        result.push((as_set(rows), as_set(late.clone())));
    }
    result
}

fn stream() -> impl Strategy<Value = Vec<Vec<Ev>>> {
    let ev = (0u8..3, 0u8..4, 0u64..30).prop_map(|(k, v, t)| (k, v, EventTime(t)));
    proptest::collection::vec(proptest::collection::vec(ev, 0..4), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(48)))]

    #[test]
    fn window_joins_match_model(
        left in stream(),
        right in stream(),
        window in 0u64..6,
        grace in 0u64..6,
    ) {
        let w = JoinWindow { window, grace };
        for (kind, emit_l, emit_r) in [("inner", false, false), ("left", true, false), ("outer", true, true)] {
            let want = window_join_model(&left, &right, w, emit_l, emit_r);
            for (workers, route) in setups() {
                let out = run2(workers, appends(left.clone()), appends(right.clone()), move |l, r| {
                    let j = match kind {
                        _ if route != Route::Default => {
                            let core = match kind {
                                "inner" => JoinKind::Inner,
                                "left" => JoinKind::Left,
                                _ => JoinKind::Outer,
                            };
                            let j = l.window_join_core(r, w, core, route.of());
                            // The core form carries options; the plain forms' rows, as options.
                            (j.output, j.late)
                        }
                        "inner" => {
                            let j = l.window_join(r, w);
                            (j.output.map(|(k, (v, w), t)| (k, (Some(v), Some(w)), t)), j.late)
                        }
                        "left" => {
                            let j = l.window_left_join(r, w);
                            (j.output.map(|(k, (v, w), t)| (k, (Some(v), w), t)), j.late)
                        }
                        _ => {
                            let j = l.window_outer_join(r, w);
                            (j.output, j.late)
                        }
                    };
                    j.0.map(Ok).concat(j.1.map(Err))
                });
                prop_assert!(out.iter().all(|(_, _, r)| *r > 0), "{} never retracts", kind);
                for (e, want) in want.iter().enumerate() {
                    prop_assert_eq!(&split(&out, e as u64), want, "{} workers {} {:?} epoch {}", kind, workers, route, e);
                }
            }
        }
    }
}

// ---- Scenario tests: Kafka Streams join semantics, one per join kind ----

/// A script in the style of the Kafka Streams join semantics table: one key, one record per
/// epoch, window 10, grace 0.
fn kstreams_script() -> (Vec<Vec<Ev>>, Vec<Vec<Ev>>) {
    // epoch: 0      1      2      3      4       5
    // left:  A@10   -      B@30   -      -       C@210
    // right: -      a@15   -      b@100  c@205   -
    let l = vec![
        vec![(0, b'A', EventTime(10))],
        vec![],
        vec![(0, b'B', EventTime(30))],
        vec![],
        vec![],
        vec![(0, b'C', EventTime(210))],
    ];
    let r = vec![
        vec![],
        vec![(0, b'a', EventTime(15))],
        vec![],
        vec![(0, b'b', EventTime(100))],
        vec![(0, b'c', EventTime(205))],
        vec![],
    ];
    (l, r)
}

/// Runs `join` (with the script's window) over [`kstreams_script`], with one worker.
fn run_script<O: ExchangeData>(
    join: impl for<'s> Fn(
            VecCollection<'s, u64, Ev>,
            VecCollection<'s, u64, Ev>,
            JoinWindow,
        ) -> VecCollection<'s, u64, O>
        + Send
        + Sync
        + 'static,
) -> Updates<O> {
    let (l, r) = kstreams_script();
    let w = JoinWindow {
        window: 10,
        grace: 0,
    };
    run2(1, appends(l), appends(r), move |l, r| join(l, r, w))
}

#[test]
fn stream_stream_inner_join_scenario() {
    let out = run_script(|l, r, w| l.window_join(r, w).output);
    assert_eq!(
        changes_at(&out, 1),
        as_set([(0, (b'A', b'a'), EventTime(15))])
    );
    assert_eq!(changes_at(&out, 2), as_set([]), "B@30 is 15 away from a@15");
    assert_eq!(
        changes_at(&out, 5),
        as_set([(0, (b'C', b'c'), EventTime(210))])
    );
    assert_eq!(at(&out, 5).len(), 2);
}

#[test]
fn stream_stream_left_join_scenario() {
    let out = run_script(|l, r, w| l.window_left_join(r, w).output);
    // B@30 never matches; it is emitted as (B, None) only when stream time passes 30 + 10 + 0,
    // which happens at epoch 3 (b@100), not eagerly at epoch 2.
    assert_eq!(changes_at(&out, 2), as_set([]));
    assert_eq!(
        changes_at(&out, 3),
        as_set([(0, (b'B', None), EventTime(30))])
    );
    // A matched, so no (A, None) ever.
    assert!(!at(&out, 5).contains_key(&(0, (b'A', None), EventTime(10))));
    assert_eq!(
        changes_at(&out, 5),
        as_set([(0, (b'C', Some(b'c')), EventTime(210))])
    );
}

#[test]
fn stream_stream_outer_join_scenario() {
    let out = run_script(|l, r, w| l.window_outer_join(r, w).output);
    // b@100 closes when stream time passes 110: at epoch 4 (c@205).
    assert_eq!(
        changes_at(&out, 3),
        as_set([(0, (Some(b'B'), None), EventTime(30))])
    );
    assert_eq!(
        changes_at(&out, 4),
        as_set([(0, (None, Some(b'b')), EventTime(100))])
    );
}

#[test]
fn stream_stream_late_event_is_dropped_and_counted() {
    let l = vec![vec![(0, 1, EventTime(100))], vec![(0, 2, EventTime(50))]];
    let r = vec![vec![], vec![(0, 9, EventTime(55))]];
    let w = JoinWindow {
        window: 10,
        grace: 20,
    };
    let out = run2(1, appends(l), appends(r), move |l, r| {
        let j = l.window_join(r, w);
        j.output.map(Ok).concat(j.late.map(Err))
    });
    // Stream time is 100 after epoch 0; 50 + 20 < 100 and 55 + 20 < 100: both late.
    let late: Vec<_> = at(&out, 1).into_keys().filter_map(|r| r.err()).collect();
    assert_eq!(late.len(), 2);
    assert!(at(&out, 1).keys().all(|r| r.is_err()));
}

#[test]
fn table_table_join_scenarios() {
    // epoch 0: left a=1; epoch 1: right a=x; epoch 2: left a=2; epoch 3: right a deleted;
    // epoch 4: left a deleted.
    let left = vec![
        vec![(('a', 1), 1)],
        vec![],
        vec![(('a', 1), -1), (('a', 2), 1)],
        vec![],
        vec![(('a', 2), -1)],
    ];
    let right = vec![
        vec![],
        vec![(('a', 'x'), 1)],
        vec![],
        vec![(('a', 'x'), -1)],
        vec![],
    ];
    let inner = run2(1, left.clone(), right.clone(), |l, r| l.table_join(r));
    assert_eq!(changes_at(&inner, 0), as_set([]));
    assert_eq!(changes_at(&inner, 1), as_set([('a', (1, 'x'))]));
    let mut update = BTreeMap::new();
    update.insert(('a', (1, 'x')), -1);
    update.insert(('a', (2, 'x')), 1);
    assert_eq!(changes_at(&inner, 2), update);
    assert_eq!(at(&inner, 3), as_set([]));

    let left_ = run2(1, left.clone(), right.clone(), |l, r| l.table_left_join(r));
    assert_eq!(at(&left_, 0), as_set([('a', (1, None))]));
    assert_eq!(at(&left_, 1), as_set([('a', (1, Some('x')))]));
    assert_eq!(at(&left_, 3), as_set([('a', (2, None))]));
    assert_eq!(at(&left_, 4), as_set([]));

    let outer = run2(1, left, right, |l, r| l.table_outer_join(r));
    assert_eq!(at(&outer, 3), as_set([('a', (Some(2), None))]));
    assert_eq!(at(&outer, 4), as_set([]));
}

#[test]
fn stream_table_join_scenario() {
    // An event before the row exists, one after; then the row changes: nothing is re-emitted.
    let events = vec![vec![('a', 1)], vec![('a', 2)], vec![], vec![('a', 3)]];
    let table = vec![
        vec![],
        vec![(('a', 'x'), 1)],
        vec![(('a', 'x'), -1), (('a', 'y'), 1)],
        vec![],
    ];
    let out = run2(1, appends(events.clone()), table.clone(), |s, t| {
        s.lookup_left_join(t)
    });
    assert_eq!(changes_at(&out, 0), as_set([('a', (1, None))]));
    assert_eq!(changes_at(&out, 1), as_set([('a', (2, Some('x')))]));
    assert_eq!(
        changes_at(&out, 2),
        as_set([]),
        "a table update emits nothing"
    );
    assert_eq!(changes_at(&out, 3), as_set([('a', (3, Some('y')))]));
    let inner = run2(1, appends(events), table, |s, t| s.lookup_join(t));
    assert_eq!(at(&inner, 3), as_set([('a', (2, 'x')), ('a', (3, 'y'))]));
}

#[test]
fn foreign_key_join_scenario() {
    // order 1 -> customer 7; customer 7 renamed; order 1 moves to customer 8 (absent).
    let orders = vec![vec![((1, 7), 1)], vec![], vec![((1, 7), -1), ((1, 8), 1)]];
    let customers = vec![
        vec![((7, 'x'), 1)],
        vec![((7, 'x'), -1), ((7, 'y'), 1)],
        vec![],
    ];
    let out = run2(1, orders.clone(), customers.clone(), |o, c| {
        o.fk_join(c, |c: &i32| Some(*c))
    });
    assert_eq!(at(&out, 0), as_set([(1, (7, 'x'))]));
    assert_eq!(at(&out, 1), as_set([(1, (7, 'y'))]));
    assert_eq!(at(&out, 2), as_set([]));
    let left = run2(1, orders, customers, |o, c| {
        o.fk_left_join(c, |c: &i32| Some(*c))
    });
    assert_eq!(at(&left, 2), as_set([(1, (8, None))]));
}

// ---- Restore: a stream join restored from its state continues exactly like the original ----

type StateRow = faustus_operators::JoinStateRow<u8, u8, u8>;
type Seed = Result<StateRow, u64>;
type Restored = Result<Result<JoinRow, Late>, StateRow>;

/// Runs the restorable join of `events` (`Ok`: left, `Err`: right), seeded with `seeds`
/// (`Ok`: a state row, `Err`: a stream time), returning rows, late records and state changes.
fn run_restorable(
    workers: usize,
    events: Vec<Vec<(Result<Ev, Ev>, isize)>>,
    seeds: Vec<Vec<(Seed, isize)>>,
    w: JoinWindow,
    kind: JoinKind,
) -> Updates<Restored> {
    run2(workers, events, seeds, move |events, seeds| {
        let left = events.clone().flat_map(|e| e.ok());
        let right = events.flat_map(|e| e.err());
        let rows = seeds.clone().flat_map(|s| s.ok());
        let stream_time = seeds.flat_map(|s| s.err());
        let j = left.window_join_restored(
            right,
            w,
            kind,
            Route::Json.of(),
            faustus_operators::JoinRestore { rows, stream_time },
        );
        j.joined
            .output
            .map(|r| Ok(Ok(r)))
            .concat(j.joined.late.map(|l| Ok(Err(l))))
            .concat(j.state.map(Err))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(48)))]

    /// Snapshot the join's state and stream time after epoch `j`, restore a fresh operator from
    /// them at epoch `j`, feed it the later epochs: after `j` it emits exactly what the original
    /// emitted, and its state stays equal.
    #[test]
    fn restored_stream_joins_continue_like_the_original(
        left in stream(),
        right in stream(),
        window in 0u64..6,
        grace in 0u64..6,
        j in 0usize..6,
        kind in prop_oneof![Just(JoinKind::Inner), Just(JoinKind::Left), Just(JoinKind::Outer)],
    ) {
        let w = JoinWindow { window, grace };
        let n = left.len().max(right.len());
        let j = j.min(n - 1);
        let mut events: Vec<Vec<(Result<Ev, Ev>, isize)>> = vec![Vec::new(); n];
        for (e, batch) in left.iter().enumerate() {
            events[e].extend(batch.iter().map(|x| (Ok(*x), 1)));
        }
        for (e, batch) in right.iter().enumerate() {
            events[e].extend(batch.iter().map(|x| (Err(*x), 1)));
        }
        let no_seeds: Vec<Vec<(Seed, isize)>> = vec![Vec::new(); n];
        let original = run_restorable(1, events.clone(), no_seeds, w, kind);
        let state_at = |u: &Updates<Restored>, e: u64| split(u, e).1;
        let emitted_at = |u: &Updates<Restored>, e: u64| apart(changes_at(u, e)).0;
        let stream_time = events[..=j]
            .iter()
            .flatten()
            .map(|(e, _)| match e { Ok((_, _, t)) | Err((_, _, t)) => t.0 })
            .max();
        let seeds = restore_seeds(n, j, state_at(&original, j as u64), stream_time);
        let later = after(&events, j);
        for workers in WORKERS {
            let restored = run_restorable(workers, later.clone(), seeds.clone(), w, kind);
            for e in j..n {
                let e = e as u64;
                prop_assert_eq!(state_at(&restored, e), state_at(&original, e), "state at epoch {} with {} worker(s)", e, workers);
                if e > j as u64 {
                    prop_assert_eq!(emitted_at(&restored, e), emitted_at(&original, e), "output at epoch {} with {} worker(s)", e, workers);
                }
            }
        }
    }
}
