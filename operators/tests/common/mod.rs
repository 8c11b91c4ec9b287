//! Test harness: run a dataflow over per-epoch input batches with one or several workers and
//! collect every output update, so that tests can compare the accumulated output at each epoch
//! with a model.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use differential_dataflow::{ExchangeData, VecCollection};
use proptest::prelude::{prop_assert_eq, TestCaseError};

/// The worker counts every oracle test runs with.
pub const WORKERS: [usize; 2] = [1, 3];

/// How an oracle test routes keys: the plain method (differential's `Hashable`), or the `_core`
/// variant with everything on worker 0, or with a stable hash of the key's JSON (as the engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The plain method, with the default route.
    Default,
    /// The `_core` variant with `|_| 0`: every key on one worker, whatever the worker count.
    Skewed,
    /// The `_core` variant with FNV-1a of the key's JSON.
    Json,
}

/// The routes every routed oracle test runs with.
pub const ROUTES: [Route; 3] = [Route::Default, Route::Skewed, Route::Json];

impl Route {
    /// The routing function of a `_core` variant (`Default` routes like `Json`; tests call the
    /// plain method for it instead).
    pub fn of<K: serde::Serialize>(self) -> impl Fn(&K) -> u64 + Clone + 'static {
        move |k: &K| match self {
            Route::Skewed => 0,
            Route::Default | Route::Json => {
                let bytes = serde_json::to_vec(k).expect("key serializes");
                bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                })
            }
        }
    }
}

/// Every worker count with every route: the setups of a routed oracle test.
pub fn setups() -> impl Iterator<Item = (usize, Route)> {
    WORKERS.into_iter().flat_map(|w| ROUTES.map(|r| (w, r)))
}

/// Every output update: `(data, epoch, diff)`.
pub type Updates<O> = Vec<(O, u64, isize)>;

/// Runs `build` over one input fed with the updates `epochs[e]` at epoch `e` and returns all output
/// updates.
///
/// Records are spread over the workers round-robin, so they reach their owners through exchange.
pub fn run1<I, O, B>(workers: usize, epochs: Vec<Vec<(I, isize)>>, build: B) -> Updates<O>
where
    I: ExchangeData + Sync,
    O: ExchangeData,
    B: for<'s> Fn(VecCollection<'s, u64, I>) -> VecCollection<'s, u64, O> + Send + Sync + 'static,
{
    let empty: Vec<Vec<((), isize)>> = epochs.iter().map(|_| Vec::new()).collect();
    run2(workers, epochs, empty, move |a, _b| build(a))
}

/// As [`run1`] with two inputs.
pub fn run2<I1, I2, O, B>(
    workers: usize,
    epochs1: Vec<Vec<(I1, isize)>>,
    epochs2: Vec<Vec<(I2, isize)>>,
    build: B,
) -> Updates<O>
where
    I1: ExchangeData + Sync,
    I2: ExchangeData + Sync,
    O: ExchangeData,
    B: for<'s> Fn(
            VecCollection<'s, u64, I1>,
            VecCollection<'s, u64, I2>,
        ) -> VecCollection<'s, u64, O>
        + Send
        + Sync
        + 'static,
{
    let sink: Arc<Mutex<Updates<O>>> = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&sink);
    let epochs1 = Arc::new(epochs1);
    let epochs2 = Arc::new(epochs2);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let out = Arc::clone(&out);
        let (mut in1, mut in2) = worker.dataflow::<u64, _, _>(|scope| {
            let (in1, c1) = scope.new_collection::<I1, isize>();
            let (in2, c2) = scope.new_collection::<I2, isize>();
            build(c1, c2).inspect(move |(d, t, r)| {
                out.lock().unwrap().push((d.clone(), *t, *r));
            });
            (in1, in2)
        });
        let n = std::cmp::max(epochs1.len(), epochs2.len());
        let mut next = 0usize;
        for e in 0..n {
            for (record, diff) in epochs1.get(e).into_iter().flatten() {
                if next % peers == index {
                    in1.update(record.clone(), *diff);
                }
                next += 1;
            }
            for (record, diff) in epochs2.get(e).into_iter().flatten() {
                if next % peers == index {
                    in2.update(record.clone(), *diff);
                }
                next += 1;
            }
            in1.advance_to(e as u64 + 1);
            in2.advance_to(e as u64 + 1);
            in1.flush();
            in2.flush();
            worker.step();
        }
    })
    .expect("timely starts");
    for result in guards.join() {
        result.expect("worker succeeds");
    }
    let updates = std::mem::take(&mut *sink.lock().unwrap());
    updates
}

/// The accumulated collection at epoch `epoch`: every `(data, count)` with a non-zero count.
pub fn at<O: Ord + Clone>(updates: &Updates<O>, epoch: u64) -> BTreeMap<O, isize> {
    let mut acc: BTreeMap<O, isize> = BTreeMap::new();
    for (d, t, r) in updates {
        if *t <= epoch {
            *acc.entry(d.clone()).or_default() += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Checks the accumulated output at every epoch against the model's table at that epoch,
/// `expected[epoch]`; `setup` names the run in a failure.
pub fn check_epochs<O: Ord + Clone + std::fmt::Debug>(
    updates: &Updates<O>,
    expected: &[BTreeMap<O, isize>],
    setup: &str,
) -> Result<(), TestCaseError> {
    for (epoch, want) in expected.iter().enumerate() {
        prop_assert_eq!(
            &at(updates, epoch as u64),
            want,
            "{} epoch {}",
            setup,
            epoch
        );
    }
    Ok(())
}

/// An accumulated collection of two kinds of records (`Ok` and `Err`), as two collections.
pub fn apart<A: Ord, B: Ord>(
    acc: BTreeMap<Result<A, B>, isize>,
) -> (BTreeMap<A, isize>, BTreeMap<B, isize>) {
    let (mut ok, mut err) = (BTreeMap::new(), BTreeMap::new());
    for (record, n) in acc {
        match record {
            Ok(a) => ok.insert(a, n),
            Err(b) => err.insert(b, n),
        };
    }
    (ok, err)
}

/// The accumulated `Ok` and `Err` records at epoch `epoch` (see [`at`] and [`apart`]).
pub fn split<A: Ord + Clone, B: Ord + Clone>(
    updates: &Updates<Result<A, B>>,
    epoch: u64,
) -> (BTreeMap<A, isize>, BTreeMap<B, isize>) {
    apart(at(updates, epoch))
}

/// A model table as an accumulated collection (every record once).
pub fn as_set<O: Ord + Clone, I: IntoIterator<Item = O>>(items: I) -> BTreeMap<O, isize> {
    let mut acc: BTreeMap<O, isize> = BTreeMap::new();
    for item in items {
        *acc.entry(item).or_default() += 1;
    }
    acc
}

/// The updates at exactly epoch `epoch`, consolidated.
pub fn changes_at<O: Ord + Clone>(updates: &Updates<O>, epoch: u64) -> BTreeMap<O, isize> {
    let mut acc: BTreeMap<O, isize> = BTreeMap::new();
    for (d, t, r) in updates {
        if *t == epoch {
            *acc.entry(d.clone()).or_default() += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Appends: every record with multiplicity one.
pub fn appends<I>(epochs: Vec<Vec<I>>) -> Vec<Vec<(I, isize)>> {
    epochs
        .into_iter()
        .map(|batch| batch.into_iter().map(|r| (r, 1)).collect())
        .collect()
}

/// The second input of a run restored at epoch `j` of `n`: at epoch `j`, the state `rows` (as
/// `Ok`) and the stream time reached (as `Err`, if any); nothing at the other epochs.
pub fn restore_seeds<R>(
    n: usize,
    j: usize,
    rows: impl IntoIterator<Item = (R, isize)>,
    stream_time: Option<u64>,
) -> Vec<Vec<(Result<R, u64>, isize)>> {
    let mut seeds: Vec<Vec<(Result<R, u64>, isize)>> = (0..n).map(|_| Vec::new()).collect();
    seeds[j].extend(rows.into_iter().map(|(row, d)| (Ok(row), d)));
    seeds[j].extend(stream_time.map(|t| (Err(t), 1)));
    seeds
}

/// The input a run restored at epoch `j` still reads: `epochs` with epochs `0..=j` emptied.
pub fn after<I: Clone>(epochs: &[Vec<I>], j: usize) -> Vec<Vec<I>> {
    let mut later = epochs.to_vec();
    for batch in later.iter_mut().take(j + 1) {
        batch.clear();
    }
    later
}

/// The number of proptest cases: `default`, or `PROPTEST_CASES` when set (for deeper runs).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
