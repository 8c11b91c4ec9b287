//! Windows: updates per second of tumbling counts (every update) and session counts (final) at
//! 10^3..10^5 keys, with event time advancing and a few out-of-order records.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faustus_operators::{Emit, EventTime, WindowConfig, WindowKind, Windows};

fn bench(c: &mut Criterion) {
    let mut group = support::group(c, "window");
    for keys in support::KEYS {
        let n = keys * 4;
        support::updates(&mut group, n);
        for (name, kind, emit) in [
            (
                "tumbling",
                WindowKind::Tumbling { size: 1_000 },
                Emit::EveryUpdate,
            ),
            ("session", WindowKind::Session { gap: 500 }, Emit::Final),
        ] {
            group.bench_with_input(BenchmarkId::new(name, keys), &keys, |b, &keys| {
                b.iter(|| {
                    let record = move |i: u64| {
                        Some((
                            support::lcg(i) % keys,
                            (),
                            EventTime(i / 4 + support::lcg(i) % 50),
                        ))
                    };
                    let config = WindowConfig {
                        kind,
                        grace: 100,
                        expires: 2_000,
                        emit,
                    };
                    support::run1(n, record, move |c| c.window_count(config).output);
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
