//! Oracle tests for `FoldByKey`: random events and restored entries over several epochs, with one
//! and with several workers; after every epoch the accumulated table equals a model that folds
//! the same events in epoch order and, within an epoch, by order key.

mod common;

use std::collections::BTreeMap;

use common::*;
use faustus_operators::FoldByKey;
use proptest::prelude::*;

/// The specification: restored entries first, then events by (epoch, order), folded with
/// "add the value; a zero value deletes the key".
fn model(
    restored: &[(u8, i64)],
    events: &[Vec<(u8, i64, u32)>],
    through: usize,
) -> BTreeMap<(u8, i64), isize> {
    let mut table: BTreeMap<u8, i64> = restored.iter().copied().collect();
    for batch in events.iter().take(through + 1) {
        let mut batch = batch.clone();
        batch.sort_by_key(|(_, _, order)| *order);
        for (k, v, _) in batch {
            if v == 0 {
                table.remove(&k);
            } else {
                *table.entry(k).or_insert(0) += v;
            }
        }
    }
    as_set(table)
}

fn fold(k: &u8, old: Option<&i64>, v: i64) -> Option<i64> {
    let _ = k;
    if v == 0 {
        None
    } else {
        Some(old.copied().unwrap_or(0) + v)
    }
}

/// Epochs of events with unique order keys (the engine's source positions are unique).
fn events() -> impl Strategy<Value = Vec<Vec<(u8, i64, u32)>>> {
    prop::collection::vec(
        prop::collection::vec((0u8..6, -3i64..4, 0u32..1000), 0..8),
        1..5,
    )
    .prop_map(|epochs| {
        let mut next = 0u32;
        epochs
            .into_iter()
            .map(|batch| {
                batch
                    .into_iter()
                    .map(|(k, v, o)| {
                        next += 1;
                        // Shuffle within the epoch: the order key, not arrival, decides.
                        (k, v, o * 1000 + next)
                    })
                    .collect()
            })
            .collect()
    })
}

/// The restore input of `n` epochs: the restored entries at epoch 0, with the first batch of
/// events, and nothing after.
fn restore_input(restored: &[(u8, i64)], n: usize) -> Vec<Vec<((u8, i64), isize)>> {
    let mut seeds: Vec<Vec<((u8, i64), isize)>> = vec![restored.iter().map(|e| (*e, 1)).collect()];
    seeds.resize(n, Vec::new());
    seeds
}

/// The updates of `fold_by_key` on `workers` workers: `restored` at epoch 0, then `events`.
fn folded(
    workers: usize,
    restored: &[(u8, i64)],
    events: &[Vec<(u8, i64, u32)>],
) -> Updates<(u8, i64)> {
    run2(
        workers,
        appends(events.to_vec()),
        restore_input(restored, events.len()),
        |events, restore| events.fold_by_key(restore, |k: &u8| u64::from(*k), "fold", fold),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    #[test]
    fn fold_matches_the_model(
        restored in prop::collection::btree_map(0u8..6, 1i64..10, 0..4),
        events in events(),
    ) {
        let restored: Vec<(u8, i64)> = restored.into_iter().collect();
        let expected: Vec<_> = (0..events.len()).map(|e| model(&restored, &events, e)).collect();
        for workers in WORKERS {
            let updates = folded(workers, &restored, &events);
            check_epochs(&updates, &expected, &format!("{workers} worker(s)"))?;
            // Only net changes: no key is retracted and re-inserted with the same value.
            for epoch in 0..events.len() {
                let changes = changes_at(&updates, epoch as u64);
                prop_assert!(changes.values().all(|d| d.abs() == 1), "{:?}", changes);
            }
        }
    }
}

#[test]
fn negative_multiplicities_are_ignored() {
    let updates = run1(
        2,
        vec![vec![((1u8, 5i64, 1u32), 1), ((1u8, 7i64, 2u32), -1)]],
        |events| {
            let restore = events.clone().filter(|_| false).map(|(k, v, _)| (k, v));
            events.fold_by_key(restore, |k: &u8| u64::from(*k), "fold", fold)
        },
    );
    assert_eq!(at(&updates, 0), as_set([(1u8, 5i64)]));
}

#[test]
fn an_epoch_of_restored_entries_alone_seeds_the_table_and_events_continue_from_it() {
    let restored: Vec<(u8, i64)> = (0u8..40).map(|k| (k, i64::from(k) + 1)).collect();
    // Epoch 0 brings the restored entries only; epoch 1 the first events.
    let events = vec![Vec::new(), vec![(3u8, 10i64, 1u32), (7, 0, 2), (50, 2, 3)]];
    let expected: Vec<_> = (0..events.len())
        .map(|e| model(&restored, &events, e))
        .collect();
    for workers in WORKERS {
        let updates = folded(workers, &restored, &events);
        check_epochs(&updates, &expected, &format!("{workers} worker(s)")).unwrap();
        assert_eq!(changes_at(&updates, 0), as_set(restored.clone()));
    }
}

/// The running results of `scan_by_key`: per epoch, one `(key, entry after the event, order)`
/// per event, continuing from the restored entries.
fn scan_model(
    restored: &[(u8, i64)],
    events: &[Vec<(u8, i64, u32)>],
    through: usize,
) -> BTreeMap<(u8, Option<i64>, u32), isize> {
    let mut table: BTreeMap<u8, i64> = restored.iter().copied().collect();
    let mut running = BTreeMap::new();
    for batch in events.iter().take(through + 1) {
        let mut batch = batch.clone();
        batch.sort_by_key(|(_, _, order)| *order);
        for (k, v, order) in batch {
            let new = fold(&k, table.get(&k), v);
            match new {
                Some(n) => table.insert(k, n),
                None => table.remove(&k),
            };
            *running.entry((k, new, order)).or_insert(0) += 1;
        }
    }
    running
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(32)))]

    #[test]
    fn scan_emits_the_running_result_of_every_event(
        restored in prop::collection::btree_map(0u8..6, 1i64..10, 0..4),
        events in events(),
    ) {
        let restored: Vec<(u8, i64)> = restored.into_iter().collect();
        let expected: Vec<_> = (0..events.len()).map(|e| scan_model(&restored, &events, e)).collect();
        for workers in WORKERS {
            let updates = run2(
                workers,
                appends(events.clone()),
                restore_input(&restored, events.len()),
                |events, restore| events.scan_by_key(restore, |k: &u8| u64::from(*k), "scan", fold).1,
            );
            check_epochs(&updates, &expected, &format!("{workers} worker(s)"))?;
        }
    }
}
