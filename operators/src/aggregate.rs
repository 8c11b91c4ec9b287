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
//!
//! ## Routing
//!
//! Each aggregate has a `_core` variant taking `route(key)`, the worker that owns a key (the same
//! function on every worker). The input is exchanged by the route and arranged where it lands,
//! with no second exchange, so a key's aggregate lives on `route(key)`'s worker. The plain
//! methods use [`default_route`].

use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::{ExchangeData, VecCollection};

use crate::epoch::{arrange_by_route, default_route};
use crate::sensor::Hop;

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
pub trait Aggregate<'scope, K, V>: Sized
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
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
    fn count_by_key(self) -> VecCollection<'scope, u64, (K, isize)> {
        self.count_by_key_core(default_route::<K>)
    }

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
        V: Summable,
    {
        self.sum_by_key_core(default_route::<K>)
    }

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
    fn min_by_key(self) -> VecCollection<'scope, u64, (K, V)> {
        self.min_by_key_core(default_route::<K>)
    }

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
    fn max_by_key(self) -> VecCollection<'scope, u64, (K, V)> {
        self.max_by_key_core(default_route::<K>)
    }

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
        L: FnMut(&K, &[(&V, isize)]) -> Option<A> + 'static,
    {
        self.reduce_by_key_core(name, default_route::<K>, logic)
    }

    /// As [`Aggregate::count_by_key`], with `route(key)` choosing the worker that owns a key.
    fn count_by_key_core<H>(self, route: H) -> VecCollection<'scope, u64, (K, isize)>
    where
        H: Fn(&K) -> u64 + 'static,
    {
        self.reduce_by_key_core("CountByKey", route, |_k, values| {
            Some(values.iter().map(|(_, d)| *d).sum())
        })
    }

    /// As [`Aggregate::sum_by_key`], with `route(key)` choosing the worker that owns a key.
    fn sum_by_key_core<H>(self, route: H) -> VecCollection<'scope, u64, (K, V)>
    where
        V: Summable,
        H: Fn(&K) -> u64 + 'static,
    {
        self.reduce_by_key_core("SumByKey", route, |_k, values| {
            let mut sum = V::zero();
            for (v, d) in values {
                sum.add_times(v, *d);
            }
            Some(sum)
        })
    }

    /// As [`Aggregate::min_by_key`], with `route(key)` choosing the worker that owns a key.
    fn min_by_key_core<H>(self, route: H) -> VecCollection<'scope, u64, (K, V)>
    where
        H: Fn(&K) -> u64 + 'static,
    {
        self.reduce_by_key_core("MinByKey", route, |_k, values| {
            values.first().map(|(v, _)| (*v).clone())
        })
    }

    /// As [`Aggregate::max_by_key`], with `route(key)` choosing the worker that owns a key.
    fn max_by_key_core<H>(self, route: H) -> VecCollection<'scope, u64, (K, V)>
    where
        H: Fn(&K) -> u64 + 'static,
    {
        self.reduce_by_key_core("MaxByKey", route, |_k, values| {
            values.last().map(|(v, _)| (*v).clone())
        })
    }

    /// As [`Aggregate::reduce_by_key`], with `route(key)` choosing the worker that owns a key
    /// (it must be the same function on every worker). Every other aggregate is built on this.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::Aggregate;
    ///
    /// timely::example(|scope| {
    ///     let input = scope.new_collection_from(vec![(1u64, 3), (1, 2), (2, 7)]).1;
    ///     let expected = scope.new_collection_from(vec![(1u64, 5), (2, 7)]).1;
    ///     input
    ///         .reduce_by_key_core("sum", |k: &u64| *k, |_key, values| {
    ///             Some(values.iter().map(|(v, n)| **v * *n as i32).sum::<i32>())
    ///         })
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn reduce_by_key_core<A, L, H>(
        self,
        name: &str,
        route: H,
        logic: L,
    ) -> VecCollection<'scope, u64, (K, A)>
    where
        A: ExchangeData,
        L: FnMut(&K, &[(&V, isize)]) -> Option<A> + 'static,
        H: Fn(&K) -> u64 + 'static;
}

impl<'scope, K, V> Aggregate<'scope, K, V> for VecCollection<'scope, u64, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn reduce_by_key_core<A, L, H>(
        self,
        name: &str,
        route: H,
        mut logic: L,
    ) -> VecCollection<'scope, u64, (K, A)>
    where
        A: ExchangeData,
        L: FnMut(&K, &[(&V, isize)]) -> Option<A> + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        arrange_by_route(
            self,
            &format!("Arrange: {name}"),
            Rc::new(route),
            Hop::GroupBy,
        )
        .reduce_abelian::<_, ValBuilder<K, A, u64, isize>, ValSpine<K, A, u64, isize>, _, _>(
            name,
            move |k: &K, input: &[(&V, isize)], output: &mut Vec<(A, isize)>| {
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
            },
            |buffer, key, updates| {
                buffer.clear();
                buffer.extend(updates.drain(..).map(|(a, t, r)| ((key.clone(), a), t, r)));
            },
        )
        .as_collection(|k: &K, a: &A| (k.clone(), a.clone()))
    }
}
