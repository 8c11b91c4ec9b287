//! Re-grouping a table: [`Table::group_by`] and the aggregates of a [`GroupedTable`].
//!
//! `table.group_by(f)` maps every row `(k, a)` to a row `(g, v) = f(k, a)` of a new grouping
//! key; an aggregate of the grouped table is a table keyed by `g`. Unlike a stream's fold, a
//! table's rows change and disappear, so each aggregate follows them: when a row is updated its
//! old `(g, v)` is taken out of its group and the new one put in (possibly into another group),
//! and when a row is deleted it leaves its group. This is Kafka Streams' `KTable.groupBy(..)`
//! with `count` / `reduce(adder, subtractor)` / `aggregate`, without the subtractor: every
//! aggregate is computed from the group's live rows (differential's `reduce`), so it is right
//! under any sequence of updates and deletions, even for aggregates that cannot be undone, such
//! as `min` and `max`.
//!
//! A group with no rows is absent (a tombstone downstream), never a zero. Aggregates have no
//! changelog of their own: after a restart they are recomputed from their (restored) input table
//! at the restore epoch.
//!
//! ```no_run
//! # use faustus::prelude::*;
//! # fn build(df: &Dataflow<'_>, accounts: &Topic<String, (String, i64)>) {
//! // accounts: account -> (region, balance)
//! let accounts = df.table(accounts, "accounts");
//! let by_region = accounts.group_by(|_account, (region, balance)| (region.clone(), *balance));
//! by_region.clone().count("accounts_per_region").public();
//! by_region.sum("balance_per_region").public();
//! # }
//! ```

use faustus_operators::{Aggregate as _, Summable};

use crate::dataflow::{Data, Dataflow, Failure, Table};
use crate::poison::catch;
use crate::runtime::route;
use crate::runtime::Pos;
use differential_dataflow::VecCollection;

impl<'s, K: Data, A: Data> Table<'s, K, A> {
    /// Groups the table's rows by a new key: `f(key, value)` gives each row's group and the value
    /// it contributes. See the [module docs](crate::grouped).
    pub fn group_by<G: Data, V: Data>(
        &self,
        f: impl Fn(&K, &A) -> (G, V) + 'static,
    ) -> GroupedTable<'s, G, V> {
        let operator = format!("group_by({})", self.name);
        let rows = self
            .df
            .guarded(self.coll.clone(), &operator, move |(k, a): (K, A)| {
                catch(|| f(&k, &a))
                    .map(Some)
                    .map_err(|message| Failure::new(message, Pos::AfterInput).with_record(&k, &a))
            });
        GroupedTable {
            df: self.df.clone(),
            rows,
        }
    }
}

/// A table's rows under new keys, ready to aggregate; see the [module docs](crate::grouped).
#[derive(Clone)]
pub struct GroupedTable<'s, G: 'static, V: 'static> {
    df: Dataflow<'s>,
    rows: VecCollection<'s, u64, (G, V)>,
}

impl<'s, G: Data, V: Data> GroupedTable<'s, G, V> {
    /// The number of rows in each group, as table `name`.
    pub fn count(self, name: &str) -> Table<'s, G, i64> {
        let counts = self
            .rows
            .count_by_key_core(route::<G>)
            .map(|(g, n)| (g, n as i64));
        Table::from_collection(&self.df, name, counts)
    }

    /// The sum of each group's values (integers, wrapping on overflow), as table `name`.
    pub fn sum(self, name: &str) -> Table<'s, G, V>
    where
        V: Summable,
    {
        let sums = self.rows.sum_by_key_core(route::<G>);
        Table::from_collection(&self.df, name, sums)
    }

    /// The smallest value of each group, as table `name`.
    pub fn min(self, name: &str) -> Table<'s, G, V> {
        let mins = self.rows.min_by_key_core(route::<G>);
        Table::from_collection(&self.df, name, mins)
    }

    /// The largest value of each group, as table `name`.
    pub fn max(self, name: &str) -> Table<'s, G, V> {
        let maxima = self.rows.max_by_key_core(route::<G>);
        Table::from_collection(&self.df, name, maxima)
    }

    /// Any aggregate of each group, as table `name`: `f(group, values)` sees the group's live
    /// values in order, each with its count of rows (at least 1), and returns the group's entry
    /// (`None` leaves the group out).
    pub fn aggregate<B: Data>(
        self,
        name: &str,
        f: impl Fn(&G, &[(&V, isize)]) -> Option<B> + 'static,
    ) -> Table<'s, G, B> {
        // A panic becomes the group's `Err` entry, which leaves the table as a dead letter.
        let caught = self
            .rows
            .reduce_by_key_core(name, route::<G>, move |g, values| {
                match catch(|| f(g, values)) {
                    Ok(entry) => entry.map(Ok),
                    Err(message) => Some(Err(message)),
                }
            });
        let operator = format!("aggregate({name})");
        let aggregates = self.df.guarded(
            caught,
            &operator,
            move |(g, entry): (G, Result<B, String>)| match entry {
                Ok(b) => Ok(Some((g, b))),
                Err(message) => Err(Failure::new(message, Pos::AfterInput).with_key(&g)),
            },
        );
        Table::from_collection(&self.df, name, aggregates)
    }
}
