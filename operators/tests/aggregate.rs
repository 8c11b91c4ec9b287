//! Oracle tests for aggregates: after every epoch, each aggregate table equals the aggregate of
//! the input multiset accumulated so far, computed from scratch. Inputs include retractions, so
//! deleting the current min/max must move it back.

#![allow(clippy::type_complexity)]

mod common;

use std::collections::BTreeMap;

use common::{as_set, at, check_epochs, run1, setups, Route};
use faustus_operators::Aggregate;
use proptest::prelude::*;

/// One step of a random input: insert `(k, v)`, or delete the `i`-th live record (if any).
#[derive(Clone, Debug)]
enum Op {
    Insert(u8, i64),
    Delete(usize),
}

/// Turns operations into per-epoch updates and the live multiset after each epoch.
fn realize(epochs: &[Vec<Op>]) -> (Vec<Vec<((u8, i64), isize)>>, Vec<Vec<(u8, i64)>>) {
    let mut live: Vec<(u8, i64)> = Vec::new();
    let mut updates = Vec::new();
    let mut states = Vec::new();
    for batch in epochs {
        let mut here = Vec::new();
        for op in batch {
            match *op {
                Op::Insert(k, v) => {
                    live.push((k, v));
                    here.push(((k, v), 1));
                }
                Op::Delete(i) if !live.is_empty() => {
                    let r = live.remove(i % live.len());
                    here.push((r, -1));
                }
                Op::Delete(_) => {}
            }
        }
        updates.push(here);
        states.push(live.clone());
    }
    (updates, states)
}

/// The model: group the live records by key and apply `f` to each group's values.
fn model<A: Ord + Clone>(
    states: &[Vec<(u8, i64)>],
    f: impl Fn(&[i64]) -> A,
) -> Vec<BTreeMap<(u8, A), isize>> {
    states
        .iter()
        .map(|live| {
            let mut groups: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
            for (k, v) in live {
                groups.entry(*k).or_default().push(*v);
            }
            as_set(groups.into_iter().map(|(k, vs)| (k, f(&vs))))
        })
        .collect()
}

fn ops() -> impl Strategy<Value = Vec<Vec<Op>>> {
    let op = prop_oneof![
        3 => (0u8..3, -3i64..4).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0usize..16).prop_map(Op::Delete),
    ];
    proptest::collection::vec(proptest::collection::vec(op, 0..6), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(32)))]

    #[test]
    fn count_matches_model(epochs in ops()) {
        let (updates, states) = realize(&epochs);
        let expected = model(&states, |vs| vs.len() as isize);
        for (workers, route) in setups() {
            let out = run1(workers, updates.clone(), move |c| match route {
                Route::Default => c.count_by_key(),
                _ => c.count_by_key_core(route.of()),
            });
            check_epochs(&out, &expected, &format!("workers {workers} route {route:?}"))?;
        }
    }

    #[test]
    fn sum_matches_model(epochs in ops()) {
        let (updates, states) = realize(&epochs);
        let expected = model(&states, |vs| vs.iter().sum::<i64>());
        for (workers, route) in setups() {
            let out = run1(workers, updates.clone(), move |c| match route {
                Route::Default => c.sum_by_key(),
                _ => c.sum_by_key_core(route.of()),
            });
            check_epochs(&out, &expected, &format!("workers {workers} route {route:?}"))?;
        }
    }

    #[test]
    fn min_and_max_match_model(epochs in ops()) {
        let (updates, states) = realize(&epochs);
        let mins = model(&states, |vs| *vs.iter().min().unwrap());
        let maxs = model(&states, |vs| *vs.iter().max().unwrap());
        for (workers, route) in setups() {
            let out = run1(workers, updates.clone(), move |c| match route {
                Route::Default => c.min_by_key(),
                _ => c.min_by_key_core(route.of()),
            });
            check_epochs(&out, &mins, &format!("workers {workers} route {route:?}"))?;
            let out = run1(workers, updates.clone(), move |c| match route {
                Route::Default => c.max_by_key(),
                _ => c.max_by_key_core(route.of()),
            });
            check_epochs(&out, &maxs, &format!("workers {workers} route {route:?}"))?;
        }
    }

    #[test]
    fn reduce_matches_model(epochs in ops()) {
        let (updates, states) = realize(&epochs);
        // Sorted values with repetition: any order-insensitive function of the group.
        let expected = model(&states, |vs| { let mut vs = vs.to_vec(); vs.sort(); vs });
        let sorted = |_k: &u8, values: &[(&i64, isize)]| {
            let mut all = Vec::new();
            for (v, n) in values {
                for _ in 0..*n {
                    all.push(**v);
                }
            }
            Some(all)
        };
        for (workers, route) in setups() {
            let out = run1(workers, updates.clone(), move |c| match route {
                Route::Default => c.reduce_by_key("sorted", sorted),
                _ => c.reduce_by_key_core("sorted", route.of(), sorted),
            });
            check_epochs(&out, &expected, &format!("workers {workers} route {route:?}"))?;
        }
    }
}

#[test]
fn deleting_the_minimum_moves_it_back() {
    let updates = vec![
        vec![(('k', 5), 1), (('k', 3), 1), (('k', 9), 1)],
        vec![(('k', 3), -1)],
        vec![(('k', 5), -1), (('k', 9), -1)],
    ];
    let out = run1(1, updates, |c| c.min_by_key());
    assert_eq!(at(&out, 0), as_set([('k', 3)]));
    assert_eq!(at(&out, 1), as_set([('k', 5)]));
    assert_eq!(at(&out, 2), as_set([]));
}
