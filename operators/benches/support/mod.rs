//! Shared driver for the operator benchmarks: feed `updates` records over `EPOCHS` epochs into a
//! one-worker dataflow and run it to completion.

#![allow(dead_code)]

use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput};
use differential_dataflow::input::Input;
use differential_dataflow::{ExchangeData, VecCollection};

/// Key-space sizes every family is measured at.
pub const KEYS: [u64; 3] = [1_000, 10_000, 100_000];

/// Epochs the updates are spread over.
pub const EPOCHS: u64 = 10;

/// A short default run: few samples, short measurement.
pub fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group
}

/// Sets the group's throughput to `n` updates.
pub fn updates(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, n: u64) {
    group.throughput(Throughput::Elements(n));
}

/// A deterministic pseudo-random sequence.
pub fn lcg(i: u64) -> u64 {
    i.wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        .rotate_right(17)
}

/// Runs `build` over two inputs fed with `first(i)` / `second(i)` for `i < n`, spread over
/// `EPOCHS` epochs, and drains the output.
pub fn run2<I1, I2, O, F1, F2, B>(n: u64, first: F1, second: F2, build: B)
where
    I1: ExchangeData,
    I2: ExchangeData,
    F1: Fn(u64) -> Option<I1> + Send + Sync + 'static,
    F2: Fn(u64) -> Option<I2> + Send + Sync + 'static,
    O: ExchangeData,
    B: for<'s> FnOnce(
            VecCollection<'s, u64, I1>,
            VecCollection<'s, u64, I2>,
        ) -> VecCollection<'s, u64, O>
        + Send
        + Sync
        + 'static,
{
    timely::execute_directly(move |worker| {
        let (mut in1, mut in2, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (in1, c1) = scope.new_collection::<I1, isize>();
            let (in2, c2) = scope.new_collection::<I2, isize>();
            let (probe, _) = build(c1, c2).probe();
            (in1, in2, probe)
        });
        let per_epoch = n.div_ceil(EPOCHS);
        for i in 0..n {
            if let Some(x) = first(i) {
                in1.insert(x);
            }
            if let Some(x) = second(i) {
                in2.insert(x);
            }
            if (i + 1).is_multiple_of(per_epoch) {
                let next = (i + 1) / per_epoch;
                in1.advance_to(next);
                in2.advance_to(next);
                in1.flush();
                in2.flush();
                worker.step_while(|| probe.less_than(in1.time()));
            }
        }
        in1.close();
        in2.close();
        while worker.step() {}
    });
}

/// As [`run2`] with one input.
pub fn run1<I, O, F, B>(n: u64, input: F, build: B)
where
    I: ExchangeData,
    F: Fn(u64) -> Option<I> + Send + Sync + 'static,
    O: ExchangeData,
    B: for<'s> FnOnce(VecCollection<'s, u64, I>) -> VecCollection<'s, u64, O>
        + Send
        + Sync
        + 'static,
{
    run2(n, input, |_| None::<()>, move |a, _b| build(a));
}
