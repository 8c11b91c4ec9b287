//! Nested tables: updates per second of set and list tables at 10^3..10^5 keys.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faustus_operators::{ListOp, ListTables, SetOp, SetTables};

fn bench(c: &mut Criterion) {
    let mut group = support::group(c, "nested");
    for keys in support::KEYS {
        let n = keys * 4;
        support::updates(&mut group, n);
        group.bench_with_input(BenchmarkId::new("set", keys), &keys, |b, &keys| {
            b.iter(|| {
                let op = move |i: u64| {
                    let member = support::lcg(i) % 16;
                    let op = if i.is_multiple_of(3) {
                        SetOp::Remove(member)
                    } else {
                        SetOp::Add(member)
                    };
                    Some((support::lcg(i) % keys, op, i))
                };
                support::run1(n, op, |c| c.set_table("set").table);
            })
        });
        group.bench_with_input(BenchmarkId::new("list", keys), &keys, |b, &keys| {
            b.iter(|| {
                let op = move |i: u64| {
                    let value = i % 16;
                    let op = if i.is_multiple_of(3) {
                        ListOp::Remove(value)
                    } else {
                        ListOp::Append(value)
                    };
                    Some((support::lcg(i) % keys, op, i))
                };
                support::run1(n, op, |c| c.list_table("list").table);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
