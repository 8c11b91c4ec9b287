//! The test driver's speed: one property-test case of a small dataflow, a stream⋈table join of
//! 20 records (10 table updates, then 10 events), from start to the joined output read back.
//! A property test runs this once per case: 1,000 cases take 1,000 times the figure.
//!
//! Run with: `cargo bench --bench driver`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use faustus::driver::TestDriver;
use faustus::prelude::*;

fn join_case(workers: usize) -> usize {
    let prices = Topic::<String, i64>::new("prices").key_codec(Str);
    let orders = Topic::<String, i64>::new("orders").key_codec(Str);
    let charges = Topic::<String, (i64, i64)>::new("charges").key_codec(Str);
    let (p, o, c) = (prices.clone(), orders.clone(), charges.clone());
    let mut driver = TestDriver::builder("bench")
        .workers(workers)
        .start(move |df| {
            let prices = df.table(&p, "prices");
            df.stream(&o).join(&prices).to_topic(&c);
        })
        .expect("the dataflow starts");
    for i in 0..10i64 {
        driver.pipe(&prices, &format!("k{}", i % 5), &i, i);
    }
    driver.close_epoch().expect("an epoch closes");
    for i in 0..10i64 {
        driver.pipe(&orders, &format!("k{}", i % 7), &i, 100 + i);
    }
    driver.close_epoch().expect("an epoch closes");
    driver.output(&charges).expect("charges decode").len()
}

fn bench(c: &mut Criterion) {
    assert_eq!(join_case(1), 8, "events of keys with a price are joined");
    c.bench_function("driver/join-20-records/1-worker", |b| {
        b.iter(|| join_case(1))
    });
    c.bench_function("driver/join-20-records/2-workers", |b| {
        b.iter(|| join_case(2))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
