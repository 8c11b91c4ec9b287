//! Upsert tables: updates per second at 10^3..10^5 keys (10 writes per key, 1 in 8 a delete).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faustus_operators::Upsert;

fn bench(c: &mut Criterion) {
    let mut group = support::group(c, "upsert");
    for keys in support::KEYS {
        let n = keys * 10;
        support::updates(&mut group, n);
        group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, &keys| {
            b.iter(|| {
                let write = move |i: u64| {
                    let value = if i.is_multiple_of(8) { None } else { Some(i) };
                    Some((support::lcg(i) % keys, value, i))
                };
                support::run1(n, write, |c| c.upsert("upsert"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
