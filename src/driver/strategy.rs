//! proptest strategies for Kafka-shaped input (cargo feature `proptest`): keys from a small set
//! (so that keys repeat and meet), timestamps that go back as well as forward, tombstones,
//! exact duplicates, and bytes that do not decode; split into epochs, with or without a restart.
//!
//! ```
//! use faustus::driver::strategy::{epochs, events, keys, Shape};
//! use proptest::prelude::*;
//! use proptest::test_runner::TestRunner;
//!
//! let input = epochs(events(keys(3), 0..100i64, Shape::default()), 3);
//! TestRunner::default()
//!     .run(&input, |epochs| {
//!         prop_assert!(!epochs.is_empty() && epochs.len() <= 3);
//!         for event in epochs.iter().flatten() {
//!             prop_assert!(["k0", "k1", "k2"].contains(&event.key.as_str()));
//!         }
//!         Ok(())
//!     })
//!     .unwrap();
//! ```

use std::fmt::Debug;
use std::ops::Range;

use proptest::prelude::*;

use super::{Event, Payload};

/// One of `n` keys, `"k0"` to `"k{n-1}"`: few keys, so that events of a key meet (in a join, a
/// fold, a window).
pub fn keys(n: usize) -> impl Strategy<Value = String> + Clone {
    (0..n.max(1)).prop_map(|i| format!("k{i}"))
}

/// What a sequence of [`events`] looks like.
#[derive(Clone, Debug)]
pub struct Shape {
    /// How many events.
    pub len: Range<usize>,
    /// Out of 100 events, about how many are tombstones.
    pub tombstones: u32,
    /// Out of 100 events, about how many are bytes that do not decode.
    pub bad: u32,
    /// Out of 100 events, about how many repeat the event before them exactly.
    pub duplicates: u32,
    /// The largest step of a timestamp forward, in milliseconds.
    pub step: i64,
    /// The largest step of a timestamp back (out of order), in milliseconds.
    pub disorder: i64,
    /// The first timestamp.
    pub start: i64,
}

impl Default for Shape {
    /// 0 to 20 events, 10 % tombstones, 5 % bad bytes, 10 % duplicates, timestamps from 0
    /// stepping up to 20 s forward or 10 s back.
    fn default() -> Self {
        Shape {
            len: 0..20,
            tombstones: 10,
            bad: 5,
            duplicates: 10,
            step: 20_000,
            disorder: 10_000,
            start: 0,
        }
    }
}

/// Sequences of events with keys from `key` and values from `value`, shaped by `shape`.
pub fn events<K, V>(
    key: impl Strategy<Value = K> + Clone,
    value: impl Strategy<Value = V> + Clone,
    shape: Shape,
) -> impl Strategy<Value = Vec<Event<K, V>>>
where
    K: Clone + Debug,
    V: Clone + Debug,
{
    let payload = prop_oneof![
        100u32.saturating_sub(shape.tombstones + shape.bad) => value.prop_map(Payload::Value),
        shape.tombstones => Just(Payload::Tombstone),
        shape.bad => prop::collection::vec(any::<u8>(), 0..4).prop_map(|mut bytes| {
            // Never valid JSON, nor a valid string: a byte that UTF-8 never holds.
            bytes.insert(0, 0xff);
            Payload::Bad(bytes)
        }),
    ];
    let one = (key, payload, -shape.disorder..=shape.step, 0u32..100);
    let (start, duplicates) = (shape.start, shape.duplicates);
    prop::collection::vec(one, shape.len).prop_map(move |drawn| {
        let mut time = start;
        let mut out: Vec<Event<K, V>> = Vec::with_capacity(drawn.len());
        for (key, payload, step, dice) in drawn {
            if dice < duplicates {
                if let Some(last) = out.last().cloned() {
                    out.push(last);
                    continue;
                }
            }
            time = (time + step).max(0);
            out.push(Event {
                key,
                payload,
                timestamp: time,
            });
        }
        out
    })
}

/// `events`, split into 1 to `max_epochs` epochs (an epoch may be empty), in order.
pub fn epochs<T: Clone + Debug>(
    events: impl Strategy<Value = Vec<T>>,
    max_epochs: usize,
) -> impl Strategy<Value = Vec<Vec<T>>> {
    let max_epochs = max_epochs.max(1);
    events.prop_flat_map(move |events| {
        let n = events.len();
        prop::collection::vec(0..=n, max_epochs - 1).prop_map(move |mut cuts| {
            cuts.sort_unstable();
            let mut out = Vec::with_capacity(max_epochs);
            let mut from = 0;
            for cut in cuts.into_iter().chain([n]) {
                out.push(events[from..cut].to_vec());
                from = cut;
            }
            out
        })
    })
}
