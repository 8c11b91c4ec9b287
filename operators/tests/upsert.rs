//! Oracle tests for upsert tables: the table after every epoch equals the model that applies each
//! epoch's last write (by order key, then value) per key.

#![allow(clippy::type_complexity)]

mod common;

use std::collections::BTreeMap;

use common::{appends, as_set, at, check_epochs, run1, setups, Route, WORKERS};
use faustus_operators::Upsert;
use proptest::prelude::*;

type Write = (u8, Option<u8>, u8);

/// The model: epochs in order; within an epoch the greatest `(order, value)` per key wins.
fn model(epochs: &[Vec<Write>]) -> Vec<BTreeMap<(u8, u8), isize>> {
    let mut table: BTreeMap<u8, u8> = BTreeMap::new();
    let mut result = Vec::new();
    for batch in epochs {
        let mut last: BTreeMap<u8, (u8, Option<u8>)> = BTreeMap::new();
        for &(k, v, o) in batch {
            let best = last.entry(k).or_insert((o, v));
            if (o, v) > *best {
                *best = (o, v);
            }
        }
        for (k, (_, v)) in last {
            match v {
                Some(v) => table.insert(k, v),
                None => table.remove(&k),
            };
        }
        result.push(as_set(table.iter().map(|(k, v)| (*k, *v))));
    }
    result
}

fn writes() -> impl Strategy<Value = Vec<Vec<Write>>> {
    let write = (0u8..4, proptest::option::of(0u8..4), 0u8..4);
    proptest::collection::vec(proptest::collection::vec(write, 0..6), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(48)))]

    #[test]
    fn upsert_matches_model(epochs in writes()) {
        let expected = model(&epochs);
        for (workers, route) in setups() {
            let out = run1(workers, appends(epochs.clone()), move |c| match route {
                Route::Default => c.upsert("upsert"),
                _ => c.upsert_core("upsert", route.of()),
            });
            check_epochs(&out, &expected, &format!("workers {workers} {route:?}"))?;
        }
    }
}

#[test]
fn last_write_by_order_wins_within_an_epoch() {
    // Arrival order is the reverse of the order key: the order key decides.
    let epochs = vec![
        vec![('k', Some(2), 9u32), ('k', Some(1), 3)],
        vec![('k', None, 0)],
    ];
    for workers in WORKERS {
        let out = run1(workers, appends(epochs.clone()), |c| c.upsert("upsert"));
        assert_eq!(at(&out, 0), as_set([('k', 2)]));
        assert_eq!(at(&out, 1), as_set([]));
    }
}

#[test]
fn rewriting_the_current_value_emits_nothing() {
    let epochs = vec![vec![('k', Some(1), 0u32)], vec![('k', Some(1), 1)]];
    let out = run1(1, appends(epochs), |c| c.upsert("upsert"));
    assert_eq!(out.iter().filter(|(_, t, _)| *t == 1).count(), 0);
}
