//! Joins: updates per second of the windowed stream⋈stream join, the stream⋈table lookup join
//! and the table⋈table left join at 10^3..10^5 keys.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faustus_operators::{EventTime, JoinWindow, TableJoin, WindowJoin};

fn bench(c: &mut Criterion) {
    let mut group = support::group(c, "join");
    for keys in support::KEYS {
        let n = keys * 4;
        // Two updates (one per input) per step.
        support::updates(&mut group, 2 * n);
        group.bench_with_input(
            BenchmarkId::new("stream_stream", keys),
            &keys,
            |b, &keys| {
                b.iter(|| {
                    // Event time advances with i, with jitter, so state expires as it goes.
                    let left =
                        move |i: u64| Some((support::lcg(i) % keys, i, EventTime(i + i % 7)));
                    let right =
                        move |i: u64| Some((support::lcg(i + 1) % keys, i, EventTime(i + i % 5)));
                    let window = JoinWindow {
                        window: 1_000,
                        grace: 100,
                    };
                    support::run2(n, left, right, move |l, r| {
                        l.window_left_join(r, window).output
                    });
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("stream_table", keys), &keys, |b, &keys| {
            b.iter(|| {
                let events = move |i: u64| Some((support::lcg(i) % keys, i));
                // The table gets each key once.
                let table = move |i: u64| (i < keys).then_some((i, i));
                support::run2(n, events, table, |s, t| s.lookup_left_join(t));
            })
        });
        group.bench_with_input(BenchmarkId::new("table_table", keys), &keys, |b, &keys| {
            b.iter(|| {
                let left = move |i: u64| (i < keys).then_some((i, i));
                let right = move |i: u64| (i.is_multiple_of(2) && i < keys).then_some((i, i));
                support::run2(n, left, right, |l, r| l.table_left_join(r));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
