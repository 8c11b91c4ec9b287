//! Oracle and scenario tests for windows.
//!
//! The model replays the documented rules with plain vectors: stream time per epoch, lateness
//! judged against the stream time before the epoch, and the windowed table recomputed from
//! scratch from the accepted records after every epoch. Sessions follow Kafka Streams' rule,
//! stated on records rather than windows: records at most `gap` apart share a session, a session
//! `[first, last]` is shown as `[first, last + gap)`, and it is closed once
//! `last + gap + grace < ST`.

#![allow(clippy::type_complexity)]

mod common;

use std::collections::BTreeMap;

use common::{
    after, apart, appends, as_set, at, changes_at, restore_seeds, run1, setups, split, Route,
    Updates, WORKERS,
};
use differential_dataflow::VecCollection;
use faustus_operators::{
    default_route, Emit, EventTime, Window, WindowConfig, WindowKind, Windowed, Windows,
};
use proptest::prelude::*;

type Rec = (u8, u8, EventTime);
type Content = Vec<(EventTime, u8)>;
type Row = ((u8, Window), Content);
type Late = ((u8, Window), (u8, EventTime));

/// Every fixed window `[n * advance, n * advance + size)` containing `t`, from scratch.
fn fixed_windows(size: u64, advance: u64, t: u64) -> Vec<Window> {
    (0..=t / advance)
        .map(|n| Window {
            start: n * advance,
            end: n * advance + size,
        })
        .filter(|w| w.contains(t))
        .collect()
}

/// Sessions of `times` (sorted) as `(first, last)`: a new session starts wherever a record is
/// more than `gap` after the one before it.
fn sessions(times: &[u64], gap: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &t in times {
        match out.last_mut() {
            Some((_, last)) if t - *last <= gap => *last = t,
            _ => out.push((t, t)),
        }
    }
    out
}

/// The model: `(table, late)` after each epoch.
fn model(
    epochs: &[Vec<Rec>],
    c: WindowConfig,
) -> Vec<(BTreeMap<Row, isize>, BTreeMap<Late, isize>)> {
    let closed = |w: &Window, st: u64| w.end + c.grace <= st;
    let retention = match c.kind {
        WindowKind::Session { gap } => c.expires.max(c.grace + gap),
        _ => c.expires.max(c.grace),
    };
    // A session, by its last record `last`: closed once `last + gap + grace < ST` (Kafka
    // Streams), expired once `last + gap + retention < ST`.
    let session_closed = |last: u64, gap: u64, st: u64| last + gap + c.grace < st;
    let session_expired = |last: u64, gap: u64, st: u64| last + gap + retention < st;
    let mut st = 0;
    // Fixed windows: accepted (key, window, record); others: accepted (key, record).
    let mut accepted_fixed: Vec<(u8, Window, (EventTime, u8))> = Vec::new();
    let mut accepted: Vec<(u8, (EventTime, u8))> = Vec::new();
    let mut late: Vec<Late> = Vec::new();
    let mut result = Vec::new();
    // The windows of each key, with their content, from the accepted records.
    let windows_of = |accepted: &Vec<(u8, (EventTime, u8))>,
                      fixed: &Vec<(u8, Window, (EventTime, u8))>| {
        let mut rows: BTreeMap<(u8, Window), Content> = BTreeMap::new();
        match c.kind {
            WindowKind::Tumbling { .. } | WindowKind::Hopping { .. } => {
                for &(k, w, r) in fixed {
                    rows.entry((k, w)).or_default().push(r);
                }
            }
            WindowKind::Sliding { size } => {
                for &(k, (t, _)) in accepted {
                    let w = Window {
                        start: (t.0 + 1).saturating_sub(size),
                        end: t.0 + 1,
                    };
                    let content = accepted
                        .iter()
                        .filter(|(k2, (t2, _))| *k2 == k && w.contains(t2.0))
                        .map(|(_, r)| *r)
                        .collect();
                    rows.insert((k, w), content);
                }
            }
            WindowKind::Session { gap } => {
                let mut keys: Vec<u8> = accepted.iter().map(|(k, _)| *k).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let mut times: Vec<u64> = accepted
                        .iter()
                        .filter(|(k2, _)| *k2 == k)
                        .map(|(_, (t, _))| t.0)
                        .collect();
                    times.sort();
                    for (first, last) in sessions(&times, gap) {
                        let content = accepted
                            .iter()
                            .filter(|(k2, (t2, _))| *k2 == k && (first..=last).contains(&t2.0))
                            .map(|(_, r)| *r)
                            .collect();
                        let w = Window {
                            start: first,
                            end: last + gap,
                        };
                        rows.insert((k, w), content);
                    }
                }
            }
        }
        for content in rows.values_mut() {
            content.sort();
        }
        rows
    };
    for batch in epochs {
        let before = st;
        for &(_, _, t) in batch {
            st = st.max(t.0);
        }
        let existing = windows_of(&accepted, &accepted_fixed);
        for &(k, v, t) in batch {
            match c.kind {
                WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => {
                    let advance = match c.kind {
                        WindowKind::Hopping { advance, .. } => advance,
                        _ => size,
                    };
                    for w in fixed_windows(size, advance, t.0) {
                        if closed(&w, before) {
                            late.push(((k, w), (v, t)));
                        } else {
                            accepted_fixed.push((k, w, (t, v)));
                        }
                    }
                }
                WindowKind::Sliding { size } => {
                    let own = Window {
                        start: (t.0 + 1).saturating_sub(size),
                        end: t.0 + 1,
                    };
                    if closed(&own, before) {
                        late.push(((k, own), (v, t)));
                    } else {
                        accepted.push((k, (t, v)));
                    }
                }
                WindowKind::Session { gap } => {
                    // Late when the record alone would be a closed session, or when it would
                    // join a closed session: one with a record at most `gap` from it.
                    let joins_closed = existing.iter().any(|((k2, _), content)| {
                        let last = content.iter().map(|(t2, _)| t2.0).max().expect("a record");
                        *k2 == k
                            && session_closed(last, gap, before)
                            && content.iter().any(|(t2, _)| t2.0.abs_diff(t.0) <= gap)
                    });
                    if session_closed(t.0, gap, before) || joins_closed {
                        let own = Window {
                            start: t.0,
                            end: t.0 + gap,
                        };
                        late.push(((k, own), (v, t)));
                    } else {
                        accepted.push((k, (t, v)));
                    }
                }
            }
        }
        let rows = windows_of(&accepted, &accepted_fixed);
        let table = rows
            .into_iter()
            .filter(|((_, w), content)| match (c.kind, c.emit) {
                (WindowKind::Session { gap }, emit) => {
                    let last = content.iter().map(|(t, _)| t.0).max().expect("a record");
                    match emit {
                        Emit::EveryUpdate => !session_expired(last, gap, st),
                        Emit::Final => session_closed(last, gap, st),
                    }
                }
                (_, Emit::EveryUpdate) => w.end + retention > st,
                (_, Emit::Final) => closed(w, st),
            });
        result.push((as_set(table), as_set(late.clone())));
    }
    result
}

fn config() -> impl Strategy<Value = WindowConfig> {
    let kind = prop_oneof![
        (1u64..10).prop_map(|size| WindowKind::Tumbling { size }),
        (1u64..10, 1u64..10).prop_map(|(size, a)| WindowKind::Hopping {
            size,
            advance: 1 + a % size
        }),
        (1u64..10).prop_map(|size| WindowKind::Sliding { size }),
        (1u64..8).prop_map(|gap| WindowKind::Session { gap }),
    ];
    let emit = prop_oneof![Just(Emit::EveryUpdate), Just(Emit::Final)];
    (kind, 0u64..8, 0u64..20, emit).prop_map(|(kind, grace, expires, emit)| WindowConfig {
        kind,
        grace,
        expires,
        emit,
    })
}

fn records() -> impl Strategy<Value = Vec<Vec<Rec>>> {
    let rec = (0u8..3, 0u8..3, 0u64..40).prop_map(|(k, v, t)| (k, v, EventTime(t)));
    proptest::collection::vec(proptest::collection::vec(rec, 0..5), 1..7)
}

/// Folds a record into a window's content, in `(event time, value)` order.
fn add_record(content: &mut Content, t: EventTime, v: &u8) {
    let at = content.partition_point(|r| *r <= (t, *v));
    content.insert(at, (t, *v));
}

/// Merges the contents of two sessions.
fn merge_content(content: &mut Content, other: Content) {
    content.extend(other);
    content.sort();
}

/// The windows' content folded incrementally: each record is inserted into a sorted list, and
/// merging sorts the union of two lists (order-insensitive, so equal to the recomputed content).
fn fold_content<'s>(
    input: VecCollection<'s, u64, Rec>,
    c: WindowConfig,
    route: impl Fn(&u8) -> u64 + 'static,
) -> Windowed<'s, u8, u8, Content> {
    input.window_fold_core(c, "content", route, Vec::new(), add_record, merge_content)
}

/// Runs the windows with the window's content as its value: recomputed from the records
/// (`window_aggregate`), or, with `fold`, maintained incrementally ([`fold_content`]).
fn run_windows(
    workers: usize,
    route: Route,
    fold: bool,
    epochs: &[Vec<Rec>],
    c: WindowConfig,
) -> Updates<Result<Row, Late>> {
    run1(workers, appends(epochs.to_vec()), move |input| {
        let content = |_k: &u8, _w: &Window, records: &[(EventTime, u8)]| records.to_vec();
        let w = match (fold, route) {
            (false, Route::Default) => input.window_aggregate(c, "content", content),
            (false, _) => input.window_aggregate_core(c, "content", route.of(), content),
            (true, Route::Default) => fold_content(input, c, default_route::<u8>),
            (true, _) => fold_content(input, c, route.of()),
        };
        w.output.map(Ok).concat(w.late.map(Err))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(64)))]

    #[test]
    fn windows_match_model(epochs in records(), c in config()) {
        let want = model(&epochs, c);
        let runs = setups().flat_map(|(w, r)| [(w, r, false), (w, r, true)]);
        for (workers, route, fold) in runs {
            let out = run_windows(workers, route, fold, &epochs, c);
            for (e, want) in want.iter().enumerate() {
                prop_assert_eq!(&split(&out, e as u64), want, "workers {} {:?} fold {} epoch {}", workers, route, fold, e);
            }
            if c.emit == Emit::Final {
                // Exactly one result per window, never retracted.
                prop_assert!(out.iter().all(|(_, _, r)| *r == 1));
                let mut seen = std::collections::BTreeSet::new();
                for (row, _, _) in &out {
                    if let Ok((kw, _)) = row {
                        prop_assert!(seen.insert(*kw), "window {:?} emitted twice", kw);
                    }
                }
            }
        }
    }
}

// ---- Scenario tests, one per window kind ----

fn cfg(kind: WindowKind, grace: u64, expires: u64, emit: Emit) -> WindowConfig {
    WindowConfig {
        kind,
        grace,
        expires,
        emit,
    }
}

fn counts(epochs: Vec<Vec<Rec>>, c: WindowConfig) -> Updates<Result<((u8, Window), isize), Late>> {
    run1(1, appends(epochs), move |input| {
        let w = input.window_count(c);
        w.output.map(Ok).concat(w.late.map(Err))
    })
}

fn w(start: u64, end: u64) -> Window {
    Window { start, end }
}

#[test]
fn tumbling_scenario_grace_late_and_expiry() {
    let c = cfg(WindowKind::Tumbling { size: 10 }, 5, 20, Emit::EveryUpdate);
    let epochs = vec![
        vec![(0, 0, EventTime(2)), (0, 0, EventTime(12))],
        vec![(0, 0, EventTime(14)), (0, 0, EventTime(8))], // ST(0) = 12; [0,10) open until 15
        vec![(0, 0, EventTime(16))],                       // ST -> 16 closes [0,10)
        vec![(0, 0, EventTime(9))],                        // late for [0,10)
        vec![(0, 0, EventTime(31))],                       // ST -> 31: [0,10) expires (10+20)
    ];
    let out = counts(epochs, c);
    assert_eq!(
        at(&out, 1),
        as_set([Ok(((0, w(0, 10)), 2)), Ok(((0, w(10, 20)), 2))])
    );
    assert_eq!(
        at(&out, 2),
        as_set([Ok(((0, w(0, 10)), 2)), Ok(((0, w(10, 20)), 3))])
    );
    assert_eq!(
        changes_at(&out, 3),
        as_set([Err(((0, w(0, 10)), (0, EventTime(9))))])
    );
    let mut expired = BTreeMap::new();
    expired.insert(Ok(((0, w(0, 10)), 2)), -1);
    expired.insert(Ok(((0, w(30, 40)), 1)), 1);
    assert_eq!(changes_at(&out, 4), expired);
}

#[test]
fn hopping_scenario_final_emits_once_per_window() {
    let c = cfg(
        WindowKind::Hopping {
            size: 10,
            advance: 5,
        },
        0,
        100,
        Emit::Final,
    );
    let epochs = vec![
        vec![(0, 0, EventTime(7))],
        vec![(0, 0, EventTime(12))],
        vec![(0, 0, EventTime(40))],
    ];
    let out = counts(epochs, c);
    // 7 is in [0,10) and [5,15); 12 in [5,15) and [10,20).
    assert_eq!(
        at(&out, 1),
        as_set([Ok(((0, w(0, 10)), 1))]),
        "[0,10) closes at ST 12"
    );
    assert_eq!(
        changes_at(&out, 2),
        as_set([Ok(((0, w(5, 15)), 2)), Ok(((0, w(10, 20)), 1))])
    );
}

#[test]
fn hopping_scenario_partially_late_record() {
    let c = cfg(
        WindowKind::Hopping {
            size: 10,
            advance: 5,
        },
        0,
        100,
        Emit::EveryUpdate,
    );
    // After epoch 0, ST = 12: [0,10) is closed, [5,15) is open. A record at 7 is late for the
    // first and counted in the second.
    let epochs = vec![vec![(0, 0, EventTime(12))], vec![(0, 1, EventTime(7))]];
    let out = counts(epochs, c);
    assert_eq!(
        changes_at(&out, 1),
        as_set([Err(((0, w(0, 10)), (1, EventTime(7))))])
            .into_iter()
            .chain([(Ok(((0, w(5, 15)), 1)), -1), (Ok(((0, w(5, 15)), 2)), 1)])
            .collect()
    );
}

#[test]
fn sliding_scenario() {
    let c = cfg(
        WindowKind::Sliding { size: 10 },
        100,
        100,
        Emit::EveryUpdate,
    );
    let epochs = vec![
        vec![(0, 0, EventTime(5)), (0, 0, EventTime(12))],
        vec![(0, 0, EventTime(9))],
    ];
    let out = counts(epochs, c);
    // Windows end at each record: (-4..6] -> [0,6), [3,13).
    assert_eq!(
        at(&out, 0),
        as_set([Ok(((0, w(0, 6)), 1)), Ok(((0, w(3, 13)), 2))])
    );
    // 9 creates [0,10) holding 5 and 9, and joins [3,13).
    assert_eq!(
        at(&out, 1),
        as_set([
            Ok(((0, w(0, 6)), 1)),
            Ok(((0, w(0, 10)), 2)),
            Ok(((0, w(3, 13)), 3))
        ])
    );
}

/// Kafka Streams merges records exactly `gap` apart into one session (its `findSessions(key,
/// t - gap, t + gap)` bounds are inclusive); faustus once kept them apart.
#[test]
fn session_events_exactly_gap_apart_share_a_session() {
    let c = cfg(WindowKind::Session { gap: 5 }, 10, 0, Emit::EveryUpdate);
    // t and t + gap: one session, [t, t + gap + gap).
    let out = counts(vec![vec![(0, 0, EventTime(5)), (0, 0, EventTime(10))]], c);
    assert_eq!(at(&out, 0), as_set([Ok(((0, w(5, 15)), 2))]));
    // t and t + gap + 1: two sessions.
    let out = counts(vec![vec![(0, 0, EventTime(5)), (0, 0, EventTime(11))]], c);
    assert_eq!(
        at(&out, 0),
        as_set([Ok(((0, w(5, 10)), 1)), Ok(((0, w(11, 16)), 1))])
    );
    // Across epochs, in order and out of order.
    for epochs in [
        vec![vec![(0, 0, EventTime(5))], vec![(0, 0, EventTime(10))]],
        vec![vec![(0, 0, EventTime(10))], vec![(0, 0, EventTime(5))]],
    ] {
        let out = counts(epochs.clone(), c);
        assert_eq!(at(&out, 1), as_set([Ok(((0, w(5, 15)), 2))]), "{epochs:?}");
    }
    // 6 is exactly gap after the session at 1 and exactly gap before the one at 11: it bridges
    // them.
    let epochs = vec![
        vec![(0, 0, EventTime(1)), (0, 0, EventTime(11))],
        vec![(0, 0, EventTime(6))],
    ];
    let out = counts(epochs, c);
    assert_eq!(
        at(&out, 0),
        as_set([Ok(((0, w(1, 6)), 1)), Ok(((0, w(11, 16)), 1))])
    );
    assert_eq!(at(&out, 1), as_set([Ok(((0, w(1, 16)), 3))]));
}

/// A session still takes a record exactly `gap` after its last one, so it closes one ms after
/// `end + grace` (Kafka Streams: once `last + gap + grace < ST`), and then refuses that record.
#[test]
fn session_closes_after_the_last_time_a_record_can_join_it() {
    let epochs = vec![
        vec![(0, 0, EventTime(5)), (1, 0, EventTime(10))], // ST 10: [5, 10) still takes 10
        vec![(0, 0, EventTime(10))],                       // joins it: [5, 15)
        vec![(1, 0, EventTime(16))],                       // ST 16 > 15 + 0 closes [5, 15)
        vec![(0, 0, EventTime(15))],                       // would join [5, 15): late
    ];
    let c = cfg(WindowKind::Session { gap: 5 }, 0, 100, Emit::EveryUpdate);
    let out = counts(epochs.clone(), c);
    let mut merged = BTreeMap::new();
    merged.insert(Ok(((0, w(5, 10)), 1)), -1);
    merged.insert(Ok(((0, w(5, 15)), 2)), 1);
    assert_eq!(changes_at(&out, 1), merged);
    assert_eq!(
        changes_at(&out, 3),
        as_set([Err(((0, w(15, 20)), (0, EventTime(15))))])
    );
    // Final emission: nothing at ST 10, both sessions at ST 16.
    let c = cfg(WindowKind::Session { gap: 5 }, 0, 100, Emit::Final);
    let out = counts(epochs, c);
    assert_eq!(at(&out, 1), BTreeMap::new());
    assert_eq!(
        changes_at(&out, 2),
        as_set([Ok(((0, w(5, 15)), 2)), Ok(((1, w(10, 15)), 1))])
    );
}

#[test]
fn session_scenario_merge_and_close() {
    let c = cfg(WindowKind::Session { gap: 5 }, 10, 0, Emit::EveryUpdate);
    let epochs = vec![
        vec![(0, 0, EventTime(1)), (0, 0, EventTime(9))], // two sessions: [1,6), [9,14)
        vec![(0, 0, EventTime(5))],                       // bridges them: [1,14)
        vec![(0, 0, EventTime(30))], // closes and expires [1,14) (retention 10 + 5)
    ];
    let out = counts(epochs, c);
    assert_eq!(
        at(&out, 0),
        as_set([Ok(((0, w(1, 6)), 1)), Ok(((0, w(9, 14)), 1))])
    );
    assert_eq!(at(&out, 1), as_set([Ok(((0, w(1, 14)), 3))]));
    assert_eq!(at(&out, 2), as_set([Ok(((0, w(30, 35)), 1))]));
}

// ---- Restore: a run restored from a snapshot continues exactly like the original ----

/// Window kinds whose state is their values (sliding windows also keep records).
fn restorable_config() -> impl Strategy<Value = WindowConfig> {
    config()
        .prop_filter("sliding windows restore from records", |c| {
            !matches!(c.kind, WindowKind::Sliding { .. })
        })
        .prop_map(|c| WindowConfig {
            emit: Emit::EveryUpdate,
            ..c
        })
}

type Seed = Result<((u8, Window), Content), u64>;

/// The incremental content windows, seeded from `restore` (rows and stream times).
fn run_restored(
    workers: usize,
    epochs: Vec<Vec<(Rec, isize)>>,
    seeds: Vec<Vec<(Seed, isize)>>,
    c: WindowConfig,
) -> Updates<Result<Row, Late>> {
    common::run2(workers, epochs, seeds, move |input, seeds| {
        let rows = seeds.clone().flat_map(|s| s.ok());
        let stream_time = seeds.flat_map(|s| s.err());
        let w = input.window_fold_restored(
            c,
            "content",
            Route::Json.of(),
            Vec::new(),
            add_record,
            merge_content,
            faustus_operators::WindowRestore { rows, stream_time },
        );
        w.output.map(Ok).concat(w.late.map(Err))
    })
}

/// A restored session takes records exactly `gap` before its first and after its last record;
/// at a restored stream time of `end + grace` it is still open.
#[test]
fn restored_session_joins_events_exactly_gap_apart() {
    let c = cfg(WindowKind::Session { gap: 5 }, 0, 100, Emit::EveryUpdate);
    let restored: Content = vec![(EventTime(5), 0)];
    let cases = [
        // Stream time 5: 0 and 10 are exactly gap before and after 5.
        (
            5,
            vec![(0, 1, EventTime(0)), (0, 2, EventTime(10))],
            w(0, 15),
        ),
        // Stream time 10 = end + grace: [5, 10) still takes 10.
        (10, vec![(0, 2, EventTime(10))], w(5, 15)),
    ];
    for (stream_time, events, merged) in cases {
        let seeds: Vec<Vec<(Seed, isize)>> = vec![
            vec![
                (Ok(((0, w(5, 10)), restored.clone())), 1),
                (Err(stream_time), 1),
            ],
            Vec::new(),
        ];
        let mut content = restored.clone();
        content.extend(events.iter().map(|&(_, v, t)| (t, v)));
        content.sort();
        let epochs = appends(vec![Vec::new(), events]);
        for workers in WORKERS {
            let out = run_restored(workers, epochs.clone(), seeds.clone(), c);
            let case = format!("stream time {stream_time}, {workers} worker(s)");
            assert_eq!(
                at(&out, 0),
                as_set([Ok(((0, w(5, 10)), restored.clone()))]),
                "{case}"
            );
            assert_eq!(
                at(&out, 1),
                as_set([Ok(((0, merged), content.clone()))]),
                "{case}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(64)))]

    /// Snapshot the windowed table and the stream time after epoch `j`, restore a fresh operator
    /// from them at epoch `j`, feed it the later epochs: from `j` on, its table equals the
    /// original's, and it refuses the same late records.
    #[test]
    fn restored_windows_continue_like_the_original(
        epochs in records(),
        c in restorable_config(),
        j in 0usize..6,
    ) {
        let j = j.min(epochs.len() - 1);
        let original = run_windows(1, Route::Json, true, &epochs, c);
        let (rows, _) = split(&original, j as u64);
        let stream_time = epochs[..=j].iter().flatten().map(|(_, _, t)| t.0).max();
        let seeds = restore_seeds(epochs.len(), j, rows, stream_time);
        let later = after(&appends(epochs.clone()), j);
        for workers in WORKERS {
            let restored = run_restored(workers, later.clone(), seeds.clone(), c);
            for e in j..epochs.len() {
                let e = e as u64;
                prop_assert_eq!(split(&restored, e).0, split(&original, e).0, "table at epoch {} with {} worker(s)", e, workers);
                if e > j as u64 {
                    let late = |u: &Updates<Result<Row, Late>>| apart(changes_at(u, e)).1;
                    prop_assert_eq!(late(&restored), late(&original), "late at epoch {} with {} worker(s)", e, workers);
                }
            }
        }
    }
}
