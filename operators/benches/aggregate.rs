//! Aggregates: updates per second of `min_by_key` and `sum_by_key` at 10^3..10^5 keys, over an
//! input where every fourth update retracts an earlier insert.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use differential_dataflow::VecCollection;
use faustus_operators::Aggregate;

/// Inserts `(key, value)`, and at every fourth step also retracts the record inserted four
/// steps earlier (as a negated value, so the input stays a valid multiset after the map).
fn input(keys: u64) -> impl Fn(u64) -> Option<(u64, i64, bool)> + Send + Sync + 'static {
    move |i| {
        if i % 4 == 3 {
            let j = i - 3;
            Some((support::lcg(j) % keys, (j % 1000) as i64, false))
        } else {
            Some((support::lcg(i) % keys, (i % 1000) as i64, true))
        }
    }
}

/// Turns `(k, v, insert)` into an update of `(k, v)` with diff `+1` or `-1`.
fn signed<'s>(c: VecCollection<'s, u64, (u64, i64, bool)>) -> VecCollection<'s, u64, (u64, i64)> {
    c.explode(|(k, v, insert)| Some(((k, v), if insert { 1isize } else { -1 })))
}

fn bench(c: &mut Criterion) {
    let mut group = support::group(c, "aggregate");
    for keys in support::KEYS {
        let n = keys * 4;
        support::updates(&mut group, n);
        group.bench_with_input(BenchmarkId::new("min", keys), &keys, |b, &keys| {
            b.iter(|| support::run1(n, input(keys), |c| signed(c).min_by_key()))
        });
        group.bench_with_input(BenchmarkId::new("sum", keys), &keys, |b, &keys| {
            b.iter(|| support::run1(n, input(keys), |c| signed(c).sum_by_key()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
