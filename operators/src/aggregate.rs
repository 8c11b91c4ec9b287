//! Aggregates of a keyed collection into a table: count, sum, min, max and a general reduce.
//!
//! ## Semantics
//!
//! The input is a differential collection of `(key, value)` records that may contain retractions
//! (it is typically a table, or a table's history). Each aggregate is a table with at most one
//! value per key, equal at every epoch to the aggregate of the input *as accumulated at that
//! epoch*:
//!
//! * a key is present exactly when it has at least one record with a positive accumulated count
//!   (a sum of zero over present records is reported as `0`, not as absent);
//! * `count` is the number of records, counting multiplicities;
//! * `sum` adds `value * multiplicity` with wrapping arithmetic (never panics on overflow);
//! * `min`/`max` range over the values with a positive count, so retracting the current minimum
//!   moves the minimum back to the next smallest value;
//! * `reduce_by_key` runs any function of the key's accumulated `(value, count)` list.
//!
//! These are built on differential's `reduce`, which keeps the input arranged: the state is the
//! input's history compacted to its live records, and outputs change exactly at the epochs where
//! an aggregate changes (an update that leaves an aggregate unchanged emits nothing). Records with
//! a non-positive accumulated count (an inconsistent input) are ignored rather than trusted.

use std::hash::Hash;

use differential_dataflow::{ExchangeData, VecCollection};

/// Values that can be summed by [`Aggregate::sum_by_key`]: integers, with wrapping arithmetic.
pub trait Summable: ExchangeData {
    /// The sum of no values.
    fn zero() -> Self;
    /// Adds `value * times` to `self`, wrapping on overflow.
    fn add_times(&mut self, value: &Self, times: isize);
}

macro_rules! summable {
    ($($t:ty),*) => {$(
        impl Summable for $t {
            fn zero() -> Self {
                0
            }
            fn add_times(&mut self, value: &Self, times: isize) {
                *self = self.wrapping_add(value.wrapping_mul(times as $t));
            }
        }
    )*};
}
summable!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

/// Aggregates a collection of `(key, value)` into a table keyed by `key`.
pub trait Aggregate<'scope, K, V> {
    /// The number of records per key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Aggregate;
    ///
    /// timely::example(|scope| {
    ///     let input = scope.new_collection_from(vec![('a', 1), ('a', 2), ('b', 7)]).1;
    ///     let expected = scope.new_collection_from(vec![('a', 2isize), ('b', 1)]).1;
    ///     input.count_by_key().assert_eq(expected);
    /// });
    /// ```
    fn count_by_key(self) -> VecCollection<'scope, u64, (K, isize)>;

    /// The sum of the values per key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Aggregate;
    ///
    /// timely::example(|scope| {
    ///     let input = scope.new_collection_from(vec![('a', 1i64), ('a', 2), ('b', 7)]).1;
    ///     let expected = scope.new_collection_from(vec![('a', 3i64), ('b', 7)]).1;
    ///     input.sum_by_key().assert_eq(expected);
    /// });
    /// ```
    fn sum_by_key(self) -> VecCollection<'scope, u64, (K, V)>
    where
        V: Summable;

    /// The least value per key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Aggregate;
    ///
    /// timely::example(|scope| {
    ///     let input = scope.new_collection_from(vec![('a', 3), ('a', 2), ('b', 7)]).1;
    ///     let expected = scope.new_collection_from(vec![('a', 2), ('b', 7)]).1;
    ///     input.min_by_key().assert_eq(expected);
    /// });
    /// ```
    fn min_by_key(self) -> VecCollection<'scope, u64, (K, V)>;

    /// The greatest value per key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Aggregate;
    ///
    /// timely::example(|scope| {
    ///     let input = scope.new_collection_from(vec![('a', 3), ('a', 2), ('b', 7)]).1;
    ///     let expected = scope.new_collection_from(vec![('a', 3), ('b', 7)]).1;
    ///     input.max_by_key().assert_eq(expected);
    /// });
    /// ```
    fn max_by_key(self) -> VecCollection<'scope, u64, (K, V)>;

    /// A general aggregate: `logic(key, values)` sees the key's values in ascending order, each
    /// with its (positive) count, and returns the key's entry (`None` leaves the key absent).
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Aggregate;
    ///
    /// timely::example(|scope| {
    ///     let input = scope.new_collection_from(vec![('a', 3), ('a', 2), ('b', 7)]).1;
    ///     let expected = scope.new_collection_from(vec![('a', vec![2, 3]), ('b', vec![7])]).1;
    ///     input
    ///         .reduce_by_key("values", |_key, values| {
    ///             Some(values.iter().map(|(v, _count)| **v).collect::<Vec<i32>>())
    ///         })
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn reduce_by_key<A, L>(self, name: &str, logic: L) -> VecCollection<'scope, u64, (K, A)>
    where
        A: ExchangeData,
        L: FnMut(&K, &[(&V, isize)]) -> Option<A> + 'static;
}

impl<'scope, K, V> Aggregate<'scope, K, V> for VecCollection<'scope, u64, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn count_by_key(self) -> VecCollection<'scope, u64, (K, isize)> {
        self.reduce_by_key("CountByKey", |_k, values| {
            Some(values.iter().map(|(_, d)| *d).sum())
        })
    }

    fn sum_by_key(self) -> VecCollection<'scope, u64, (K, V)>
    where
        V: Summable,
    {
        self.reduce_by_key("SumByKey", |_k, values| {
            let mut sum = V::zero();
            for (v, d) in values {
                sum.add_times(v, *d);
            }
            Some(sum)
        })
    }

    fn min_by_key(self) -> VecCollection<'scope, u64, (K, V)> {
        self.reduce_by_key("MinByKey", |_k, values| {
            values.first().map(|(v, _)| (*v).clone())
        })
    }

    fn max_by_key(self) -> VecCollection<'scope, u64, (K, V)> {
        self.reduce_by_key("MaxByKey", |_k, values| {
            values.last().map(|(v, _)| (*v).clone())
        })
    }

    fn reduce_by_key<A, L>(self, name: &str, mut logic: L) -> VecCollection<'scope, u64, (K, A)>
    where
        A: ExchangeData,
        L: FnMut(&K, &[(&V, isize)]) -> Option<A> + 'static,
    {
        self.reduce_named(name, move |k, input, output| {
            let positive: Vec<(&V, isize)> = input
                .iter()
                .filter(|(_, d)| *d > 0)
                .map(|(v, d)| (*v, *d))
                .collect();
            if positive.is_empty() {
                return;
            }
            if let Some(a) = logic(k, &positive) {
                output.push((a, 1isize));
            }
        })
    }
}
