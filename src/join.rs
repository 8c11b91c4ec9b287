//! Joins on [`Stream`]s and [`Table`]s, with Kafka Streams' semantics.
//!
//! | left | right | methods | result | what triggers output |
//! |---|---|---|---|---|
//! | stream | table | [`Stream::join`], [`Stream::left_join`] | stream | each stream event, looking the table up as of the event's epoch; table updates emit nothing |
//! | table | stream | [`Table::join_stream`] | stream | each stream event, as above (the mirror) |
//! | table | table | [`Table::join`], [`Table::left_join`], [`Table::outer_join`] | table | an update on either side; a result that disappears is removed (a tombstone downstream) |
//! | table | table by foreign key | [`Table::fk_join`], [`Table::fk_left_join`] | table | as table⋈table, the right row chosen by `fk(left value)` (KIP-213) |
//! | stream | stream | [`Timed::join`], [`Timed::left_join`], [`Timed::outer_join`] | stream | a pair of events with `\|t1 - t2\| <= window`; in left and outer joins an unmatched event `(v, None)` only when its window has closed |
//!
//! "As of the event's epoch" means: the table after every update of earlier epochs, and of the
//! same epoch (an epoch is applied as a whole). Stream-side joins never retract what they have
//! emitted. Joined tables are named `<left>-join-<right>` (or `-left-join-`, `-outer-join-`,
//! `-fk-join-`, `-fk-left-join-`), can be made [`Table::public`], and are recomputed from
//! their restored inputs after a restart (they have no changelog of their own).
//!
//! A windowed stream⋈stream join is named by the program (`left.join("name", right)`), like
//! every operator with state: it keeps the events of its window (and whether each has matched)
//! in a table of that name with a changelog, and its stream time in another; after a restart
//! the join continues exactly where it stopped: stored events still join, and unmatched ones
//! are still emitted when their window closes. A pair is stamped with the later of its events'
//! record timestamps, an unmatched event with its own.
//!
//! The semantics are those of `faustus-operators` (see its `join` module), where every operator
//! is checked against a plain model by property tests.

use std::rc::Rc;

use differential_dataflow::VecCollection;
use faustus_operators::{
    EventTime, JoinKind, JoinRestore, JoinWindow, Side, TableJoin as _, WindowJoin as _,
};

use crate::dataflow::{Data, Failure, Stream, Table};
use crate::poison::catch;
use crate::record::Meta;
use crate::runtime::{route, Pos};
use crate::window::{json_late, kept_stream_time, late_letters, Timed};

/// A stored event of a stream⋈stream join: its side, value, position, record timestamp and
/// event time.
type JoinSide<V, W> = Side<((V, (Pos, i64)), EventTime), ((W, (Pos, i64)), EventTime)>;

impl<'s, K: Data, V: Data> Stream<'s, K, V> {
    /// stream⋈table: each event `(k, v)` whose key has a row `w` in `table` (as of the event's
    /// epoch) becomes `(k, (v, w))`; events whose key has no row are dropped. Later table updates
    /// emit nothing.
    pub fn join<W: Data>(self, table: &Table<'s, K, W>) -> Stream<'s, K, (V, W)> {
        self.lookup(table, false)
            .flat_map_pos(|k, (v, w)| w.map(|w| (k, (v, w))))
    }

    /// stream⋈table left join: as [`Stream::join`], and events whose key has no row become
    /// `(k, (v, None))`.
    pub fn left_join<W: Data>(self, table: &Table<'s, K, W>) -> Stream<'s, K, (V, Option<W>)> {
        self.lookup(table, true)
    }

    fn lookup<W: Data>(self, table: &Table<'s, K, W>, left: bool) -> Stream<'s, K, (V, Option<W>)> {
        let events = self.coll.map(|(k, v, p)| (k, (v, p)));
        let joined = events.lookup_join_core(table.coll.clone(), left, route::<K>);
        Stream {
            df: self.df,
            coll: joined.map(|(k, ((v, p), w))| (k, (v, w), p)),
        }
    }

    /// Like `flat_map`, keeping each event's position (an event yields at most one event here).
    fn flat_map_pos<K2: Data, V2: Data>(
        self,
        f: impl Fn(K, V) -> Option<(K2, V2)> + 'static,
    ) -> Stream<'s, K2, V2> {
        Stream {
            df: self.df,
            coll: self
                .coll
                .flat_map(move |(k, v, p)| f(k, v).map(|(k, v)| (k, v, p))),
        }
    }
}

impl<'s, K: Data, A: Data> Table<'s, K, A> {
    /// table⋈table inner join: `(k, (a, b))` while both tables have a row for `k`.
    pub fn join<B: Data>(&self, other: &Table<'s, K, B>) -> Table<'s, K, (A, B)> {
        let joined = self
            .coll
            .clone()
            .table_join_core(other.coll.clone(), route::<K>);
        Table::from_collection(
            &self.df,
            &format!("{}-join-{}", self.name, other.name),
            joined,
        )
    }

    /// table⋈table left join: every row of `self`, with `None` while `other` has no row for
    /// its key.
    pub fn left_join<B: Data>(&self, other: &Table<'s, K, B>) -> Table<'s, K, (A, Option<B>)> {
        let joined = self
            .coll
            .clone()
            .table_left_join_core(other.coll.clone(), route::<K>);
        Table::from_collection(
            &self.df,
            &format!("{}-left-join-{}", self.name, other.name),
            joined,
        )
    }

    /// table⋈table outer join: every key of either table, with the rows each has.
    pub fn outer_join<B: Data>(
        &self,
        other: &Table<'s, K, B>,
    ) -> Table<'s, K, (Option<A>, Option<B>)> {
        let joined = self
            .coll
            .clone()
            .table_outer_join_core(other.coll.clone(), route::<K>);
        Table::from_collection(
            &self.df,
            &format!("{}-outer-join-{}", self.name, other.name),
            joined,
        )
    }

    /// Foreign-key join (KIP-213): each row `(k, a)` joins the row of `other` keyed `fk(&a)`
    /// (no foreign key, or no such row: no result). A change of either the left row or of the
    /// right row it points to updates the result.
    pub fn fk_join<F: Data, B: Data>(
        &self,
        other: &Table<'s, F, B>,
        fk: impl Fn(&A) -> Option<F> + 'static,
    ) -> Table<'s, K, (A, B)> {
        let name = format!("{}-fk-join-{}", self.name, other.name);
        let (rows, fk) = self.fk_checked(&name, fk);
        let joined = rows.fk_join_core(other.coll.clone(), fk, route::<F>);
        Table::from_collection(&self.df, &name, joined)
    }

    /// Foreign-key left join: as [`Table::fk_join`], keeping left rows with no right row.
    pub fn fk_left_join<F: Data, B: Data>(
        &self,
        other: &Table<'s, F, B>,
        fk: impl Fn(&A) -> Option<F> + 'static,
    ) -> Table<'s, K, (A, Option<B>)> {
        let name = format!("{}-fk-left-join-{}", self.name, other.name);
        let (rows, fk) = self.fk_checked(&name, fk);
        let joined = rows.fk_left_join_core(other.coll.clone(), fk, route::<F>);
        Table::from_collection(&self.df, &name, joined)
    }

    /// The rows for which `fk` does not panic (the others become dead letters of `operator`),
    /// and `fk` for the join, which calls it again: a row it panicked on then has no foreign key.
    #[allow(clippy::type_complexity)]
    fn fk_checked<F: Data>(
        &self,
        operator: &str,
        fk: impl Fn(&A) -> Option<F> + 'static,
    ) -> (
        VecCollection<'s, u64, (K, A)>,
        impl Fn(&A) -> Option<F> + 'static,
    ) {
        let fk = Rc::new(fk);
        let check = Rc::clone(&fk);
        let rows = self.df.guarded(
            self.coll.clone(),
            operator,
            move |(k, a): (K, A)| match catch(|| check(&a)) {
                Ok(_) => Ok(Some((k, a))),
                Err(message) => Err(Failure::new(message, Pos::AfterInput).with_record(&k, &a)),
            },
        );
        (rows, move |a: &A| catch(|| fk(a)).unwrap_or(None))
    }

    /// table⋈stream (the mirror of [`Stream::join`]): each event `(k, v)` of `stream` whose key
    /// has a row `a` becomes `(k, (a, v))`; table updates emit nothing.
    pub fn join_stream<V: Data>(&self, stream: &Stream<'s, K, V>) -> Stream<'s, K, (A, V)> {
        let events = stream.coll.clone().map(|(k, v, p)| (k, (v, p)));
        let joined = self.coll.clone().join_stream_core(events, route::<K>);
        Stream {
            df: self.df.clone(),
            coll: joined.map(|(k, (a, (v, p)))| (k, (a, v), p)),
        }
    }
}

impl<'s, K: Data, V: Data> Timed<'s, K, V> {
    /// Windowed stream⋈stream inner join, whose state is named `name` (its changelog topic is
    /// `<app>-<name>-changelog`): `(k, (v, w))` for every pair of events of the same key whose
    /// event times differ by at most `window`. Events later than the grace period (see
    /// [`Timed::join_grace`]) go to the dead-letter topic.
    pub fn join<W: Data>(self, name: &str, other: Timed<'s, K, W>) -> Stream<'s, K, (V, W)> {
        self.stream_join(name, other, JoinKind::Inner)
            .flat_map_pos(|k, (v, w)| Some((k, (v?, w?))))
    }

    /// Windowed stream⋈stream left join: as [`Timed::join`], and each event of `self` that
    /// found no partner by the time its window closed becomes `(k, (v, None))` then (never
    /// eagerly).
    pub fn left_join<W: Data>(
        self,
        name: &str,
        other: Timed<'s, K, W>,
    ) -> Stream<'s, K, (V, Option<W>)> {
        self.stream_join(name, other, JoinKind::Left)
            .flat_map_pos(|k, (v, w)| Some((k, (v?, w))))
    }

    /// Windowed stream⋈stream outer join: as [`Timed::left_join`], for unmatched events of
    /// either side.
    pub fn outer_join<W: Data>(
        self,
        name: &str,
        other: Timed<'s, K, W>,
    ) -> Stream<'s, K, (Option<V>, Option<W>)> {
        self.stream_join(name, other, JoinKind::Outer)
    }

    fn stream_join<W: Data>(
        self,
        name: &str,
        other: Timed<'s, K, W>,
        kind: JoinKind,
    ) -> Stream<'s, K, (Option<V>, Option<W>)> {
        let df = self.df.clone();
        // Either side may set the window and the grace period: the larger counts.
        let window = JoinWindow {
            window: self.join_window_ms().max(other.join_window_ms()),
            grace: self.grace_ms().max(other.grace_ms()),
        };
        // The join's stored events are a table with a changelog, and so is its stream time.
        let state = df.state::<(K, JoinSide<V, W>), bool>(name);
        let rows = state.restored();
        let times = self
            .events()
            .map(|(_, (_, p), t)| (t, p))
            .concat(other.events().map(|(_, (_, p), t)| (t, p)));
        let idle = self.idle_ms().max(other.idle_ms());
        let (stream_time, _) = kept_stream_time(&df, name, times, idle);
        let restore = JoinRestore {
            rows: rows.map(|((k, side), matched)| (k, side, matched)),
            stream_time,
        };
        let restorable = self.stamped_events().window_join_restored(
            other.stamped_events(),
            window,
            kind,
            route::<K>,
            restore,
        );
        let (stored, kept) = (
            state,
            restorable
                .state
                .map(|(k, side, matched)| ((k, side), matched)),
        );
        stored.keep(kept);
        let joined = restorable.joined;
        late_letters(
            &df,
            joined.late.map(|(k, side)| match side {
                Side::Left(((v, (p, _)), t)) => (p, json_late(&k, &v), t),
                Side::Right(((w, (p, _)), t)) => (p, json_late(&k, &w), t),
            }),
            name,
            "the stream join's window for this event had closed",
        );
        // A pair is stamped with the later record timestamp of the two (Kafka Streams' rule), an
        // unmatched event with its own.
        let coll = joined.output.map(|(k, (v, w), _t)| {
            let (a, b) = (v.as_ref().map(|x| x.1), w.as_ref().map(|x| x.1));
            let pos = later(a.map(|x| x.0), b.map(|x| x.0));
            let timestamp = a.map(|x| x.1).max(b.map(|x| x.1)).unwrap_or(0);
            (
                k,
                (v.map(|x| x.0), w.map(|x| x.0)),
                Meta::new(pos, timestamp),
            )
        });
        Stream { df, coll }
    }
}

/// The position of a joined pair: the later of its events' (so it sorts after both inputs).
fn later(a: Option<Pos>, b: Option<Pos>) -> Pos {
    match (a, b) {
        (Some(a), Some(b)) => a.max(b),
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => Pos::Restored,
    }
}
