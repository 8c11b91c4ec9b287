//! Joins with Kafka Streams semantics: stream⋈stream (windowed), table⋈table, stream⋈table
//! (lookup), table⋈stream, and the foreign-key table⋈table join.
//!
//! Streams and tables are both differential collections here, but they are read differently. A
//! *table* `(key, value)` has at most one value per key and its updates retract; a join of tables
//! is a table, maintained incrementally. A *stream* is append-only (records with multiplicity
//! `d <= 0` are ignored; `d > 0` means `d` events); a join involving a stream is a stream, and it
//! **never retracts** a result it emitted — not when a table changes, not when state expires.
//!
//! ## table ⋈ table ([`TableJoin::table_join`], `_left_`, `_outer_`)
//!
//! At every epoch the result is the relational join of the two tables as they are at that epoch.
//! Left keeps every left row, pairing it with `None` while the right has no row for the key;
//! outer also keeps unmatched right rows. When a right row appears, the `(v, None)` row is
//! retracted and `(v, Some(w))` inserted; a result whose inputs disappear is retracted. Built from
//! differential's `join` and `antijoin`, so the state is two arrangements.
//!
//! ## foreign-key join ([`TableJoin::fk_join`], [`TableJoin::fk_left_join`])
//!
//! KIP-213: a left row `(k, v)` selects the right row whose key is `fk(&v)`; the result is keyed by
//! the left key, `(k, (v, w))`. A left row whose foreign key is `None` or selects no right row is
//! absent from the inner join and `(k, (v, None))` in the left join. Changing either side's row
//! retracts the old result. Maintained incrementally like table⋈table.
//!
//! ## stream ⋈ table ([`TableJoin::lookup_join`], [`TableJoin::lookup_left_join`])
//!
//! Each stream event of epoch `e` is joined with the table **as of the end of epoch `e`** (the
//! table's updates of epoch `e` are applied before the events of `e` look it up). Later table
//! updates emit nothing, and nothing emitted is ever retracted. The left variant emits
//! `(v, None)` for an event whose key has no row. This is a *half join*: only stream events
//! trigger output. Because epochs are totally ordered and applied in order, an event of epoch `e`
//! always looks up the newest complete version of the table, so the operator keeps just the
//! current table (a map per key) rather than a multi-version trace, and its state is bounded by
//! the table's size. [`TableJoin::join_stream`] is the mirror image, table on the left.
//!
//! ## stream ⋈ stream, windowed ([`WindowJoin`])
//!
//! Both streams carry an event time. Two events with the same key join when
//! `|t1 - t2| <= window`, whatever their arrival order; a pair is emitted at the epoch at which
//! the later of the two arrives, with event time `max(t1, t2)`, and is never retracted.
//! Stream time `ST` is global across both inputs (see [`crate::time`]).
//!
//! * **Late.** An event of epoch `e` with `t + grace < ST(e - 1)` is late: dropped, reported on
//!   `late`, never joined.
//! * **Expiry.** A stored event is dropped at the end of epoch `e` once `t + window + grace <
//!   ST(e)`. No event that is not late can still match it: such an event has
//!   `t2 >= ST - grace > t + window`. So expiry never loses a match, and it retracts nothing.
//! * **Unmatched (left/outer).** The left join emits `(v, None)` for a left event that matched
//!   nothing — only when it expires, i.e. once its window has closed, never eagerly (a match
//!   could still arrive until then). The outer join does the same for right events,
//!   `(None, w)`, with the event's own event time.
//!
//! The operator's state is the unexpired events of both sides, per key and by event time, on the
//! key's owner. A new event meets only the other side's events within `window` of it (a range
//! query), and each key is scheduled at the stream time its earliest event expires, so an epoch
//! touches only the keys it brings events for and the keys with something to expire.
//!
//! ## Routing
//!
//! Every join has a route-taking form — [`WindowJoin::window_join_core`],
//! [`TableJoin::lookup_join_core`], [`TableJoin::join_stream_core`] and the `_core` table⋈table
//! and foreign-key joins — where `route(key)` (the same function on every worker) chooses the
//! worker that owns a key; the foreign-key joins route by the foreign key, on which they join.
//! The table⋈table joins exchange their inputs by the route and arrange them where they land,
//! with no second (`Hashable`) exchange. The plain methods use
//! [`default_route`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::Hash;
use std::rc::Rc;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;

use crate::epoch::{
    antijoin_arranged, arrange_join_side, aux_input, default_route, distinct_keys_by_route, Route,
    Stash, StreamTime,
};
use crate::sensor::{sensed, Hop};
use crate::time::{EventTime, WithLate};

/// One of the two inputs of a join.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Side<L, R> {
    /// A record of the left input.
    Left(L),
    /// A record of the right input.
    Right(R),
}

/// Which unmatched events a windowed stream join emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JoinKind {
    /// Only pairs.
    Inner,
    /// Pairs, and `(v, None)` for left events that expire unmatched.
    Left,
    /// Pairs, and unmatched events of either side when they expire.
    Outer,
}

/// The window of a stream⋈stream join: events join when `|t1 - t2| <= window`; `grace` is how
/// far behind stream time an event may arrive and still count (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JoinWindow {
    /// The largest difference in event time of two events that join.
    pub window: u64,
    /// How far behind stream time an event may be and still join.
    pub grace: u64,
}

/// A late stream-join record: the side it came from, with its value and event time.
pub type LateJoinRecord<K, V, W> = (K, Side<(V, EventTime), (W, EventTime)>);

/// The result of a windowed stream join: `(key, pair, event time)` records and late records.
pub type StreamJoined<'scope, K, P, V, W> =
    WithLate<'scope, (K, P, EventTime), LateJoinRecord<K, V, W>>;

/// An outer join of two tables: `(key, (left value, right value))`, at least one present.
pub type OuterJoined<'scope, K, V, W> = VecCollection<'scope, u64, (K, (Option<V>, Option<W>))>;

/// Windowed joins of two streams `(key, value, event time)`.
pub trait WindowJoin<'scope, K, V>: Sized
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    /// Inner join: pairs of events within `window.window` of each other.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{EventTime, JoinWindow, WindowJoin};
    ///
    /// timely::example(|scope| {
    ///     let clicks = scope.new_collection_from(vec![('a', 1, EventTime(100))]).1;
    ///     let views = scope.new_collection_from(vec![
    ///         ('a', 10, EventTime(105)),
    ///         ('a', 20, EventTime(200)),
    ///     ]).1;
    ///     let expected = scope.new_collection_from(vec![('a', (1, 10), EventTime(105))]).1;
    ///     let joined = clicks.window_join(views, JoinWindow { window: 10, grace: 0 });
    ///     joined.output.assert_eq(expected);
    ///     joined.late.assert_empty();
    /// });
    /// ```
    fn window_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
    ) -> StreamJoined<'scope, K, (V, W), V, W>
    where
        W: ExchangeData,
    {
        let joined = self.window_join_core(other, window, JoinKind::Inner, default_route::<K>);
        WithLate {
            output: joined.output.flat_map(|(k, (v, w), t)| match (v, w) {
                (Some(v), Some(w)) => Some((k, (v, w), t)),
                _ => None,
            }),
            late: joined.late,
        }
    }

    /// Left join: pairs, and `(v, None)` for each left event that expires unmatched.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{EventTime, JoinWindow, WindowJoin};
    ///
    /// timely::example(|scope| {
    ///     // The right event at 500 advances stream time far enough to close the left event.
    ///     let left = scope.new_collection_from(vec![('a', 1, EventTime(100))]).1;
    ///     let right = scope.new_collection_from(vec![('b', 2, EventTime(500))]).1;
    ///     let expected = scope.new_collection_from(vec![('a', (1, None), EventTime(100))]).1;
    ///     left.window_left_join(right, JoinWindow { window: 10, grace: 5 })
    ///         .output
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn window_left_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
    ) -> StreamJoined<'scope, K, (V, Option<W>), V, W>
    where
        W: ExchangeData,
    {
        let joined = self.window_join_core(other, window, JoinKind::Left, default_route::<K>);
        WithLate {
            output: joined
                .output
                .flat_map(|(k, (v, w), t)| v.map(|v| (k, (v, w), t))),
            late: joined.late,
        }
    }

    /// Outer join: pairs, and unmatched events of either side once they expire.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{EventTime, JoinWindow, WindowJoin};
    ///
    /// timely::example(|scope| {
    ///     let left = scope.new_collection_from(vec![('a', 1, EventTime(100))]).1;
    ///     let right = scope.new_collection_from(vec![('b', 2, EventTime(500))]).1;
    ///     // Only the left event has expired; the right one is still waiting for a match.
    ///     let expected = scope.new_collection_from(vec![('a', (Some(1), None), EventTime(100))]).1;
    ///     left.window_outer_join(right, JoinWindow { window: 10, grace: 5 })
    ///         .output
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn window_outer_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
    ) -> StreamJoined<'scope, K, (Option<V>, Option<W>), V, W>
    where
        W: ExchangeData,
    {
        self.window_join_core(other, window, JoinKind::Outer, default_route::<K>)
    }

    /// The general form: `kind` chooses which unmatched events are emitted, and `route(key)`
    /// chooses the worker that owns a key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{EventTime, JoinKind, JoinWindow, Side, WindowJoin};
    ///
    /// timely::example(|scope| {
    ///     let left = scope.new_collection_from(vec![(1u64, 'l', EventTime(100))]).1;
    ///     let right = scope.new_collection_from(vec![(1u64, 'r', EventTime(105))]).1;
    ///     let pairs = scope.new_collection_from(vec![(1u64, (Some('l'), Some('r')), EventTime(105))]).1;
    ///     let window = JoinWindow { window: 10, grace: 0 };
    ///     let joined = left.window_join_core(right, window, JoinKind::Outer, |k: &u64| *k);
    ///     joined.output.assert_eq(pairs);
    ///     joined.late.assert_empty();
    /// });
    /// ```
    fn window_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
        kind: JoinKind,
        route: H,
    ) -> StreamJoined<'scope, K, (Option<V>, Option<W>), V, W>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static;

    /// As [`WindowJoin::window_join_core`], also returning the operator's state as a collection
    /// (to keep in a changelog), and seeded with `restore` at the epoch its records carry (an
    /// engine's restore epoch, before any input): the restored stream time counts as that
    /// epoch's maximum and the restored events are stored again, with their matched flags,
    /// without emitting anything but their state rows. A run restored from the state and stream
    /// time of epoch `e` continues exactly like the original run after `e`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{EventTime, JoinKind, JoinRestore, JoinWindow, Side, WindowJoin};
    ///
    /// timely::example(|scope| {
    ///     // Before the restart, a left event 'a' at t = 10 was stored, unmatched.
    ///     let rows = scope.new_collection_from(vec![(1u8, Side::Left(('a', EventTime(10))), false)]).1;
    ///     let stream_time = scope.new_collection_from(vec![10u64]).1;
    ///     // After it (here in the same epoch as the restore, for brevity), a right event at 12.
    ///     let right_in = scope.new_collection_from(vec![(1u8, 'x', EventTime(12))]).1;
    ///     let (_, left_in) = scope.new_collection::<(u8, char, EventTime), isize>();
    ///     let join = left_in.window_join_restored(
    ///         right_in,
    ///         JoinWindow { window: 5, grace: 0 },
    ///         JoinKind::Inner,
    ///         |k: &u8| u64::from(*k),
    ///         JoinRestore { rows, stream_time },
    ///     );
    ///     // The restored event still joins the new one.
    ///     let pair = (1u8, (Some('a'), Some('x')), EventTime(12));
    ///     join.joined.output.assert_eq(scope.new_collection_from(vec![pair]).1);
    /// });
    /// ```
    fn window_join_restored<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
        kind: JoinKind,
        route: H,
        restore: JoinRestore<'scope, K, V, W>,
    ) -> RestorableJoin<'scope, K, V, W>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static;
}

/// An event of either side: its value and event time.
type Event<V, W> = Side<(V, EventTime), (W, EventTime)>;

/// The values of a result row of the stream⋈stream operator: `(left, right)`.
type Values<V, W> = (Option<V>, Option<W>);

/// The event time of an event of either side.
fn event_time<V, W>(event: &Event<V, W>) -> u64 {
    match event {
        Side::Left((_, t)) | Side::Right((_, t)) => t.0,
    }
}

/// An unexpired stream event: its value, multiplicity, and whether it has matched.
struct Stored<X> {
    value: X,
    count: isize,
    matched: bool,
}

/// The unexpired events of one key, sorted by event time (a key holds few events, so sorted
/// vectors beat trees here).
struct Events<V, W> {
    left: Vec<(u64, Stored<V>)>,
    right: Vec<(u64, Stored<W>)>,
    /// The stream time at which this key's next expiry is scheduled.
    scheduled: Option<u64>,
}

impl<V, W> Default for Events<V, W> {
    fn default() -> Self {
        Events {
            left: Vec::new(),
            right: Vec::new(),
            scheduled: None,
        }
    }
}

impl<V, W> Events<V, W> {
    /// The earliest event time held.
    fn earliest(&self) -> Option<u64> {
        let left = self.left.first().map(|(t, _)| *t);
        let right = self.right.first().map(|(t, _)| *t);
        match (left, right) {
            (Some(l), Some(r)) => Some(l.min(r)),
            (l, r) => l.or(r),
        }
    }

    /// Schedules the key's next expiry at stream time `at`, unless one is due sooner.
    fn schedule<K: Ord>(&mut self, at: u64, key: K, due: &mut BinaryHeap<Reverse<(u64, K)>>) {
        if self.scheduled.is_none_or(|s| at < s) {
            self.scheduled = Some(at);
            due.push(Reverse((at, key)));
        }
    }
}

/// The events of `events` (sorted by time) within `window` of `t`.
fn within<X>(events: &mut [(u64, Stored<X>)], t: u64, window: u64) -> &mut [(u64, Stored<X>)] {
    let lo = events.partition_point(|(x, _)| *x < t.saturating_sub(window));
    let hi = events.partition_point(|(x, _)| *x <= t.saturating_add(window));
    &mut events[lo..hi]
}

/// Stores an event after those at the same or an earlier time.
fn store<X>(events: &mut Vec<(u64, Stored<X>)>, t: u64, value: X, count: isize, matched: bool) {
    let at = events.partition_point(|(x, _)| *x <= t);
    let stored = Stored {
        value,
        count,
        matched,
    };
    events.insert(at, (t, stored));
}

/// What the stream⋈stream operator emits for one key in one epoch.
struct KeyOut<'a, K, V, W> {
    out: &'a mut Vec<(StreamJoinOut<K, V, W>, u64, isize)>,
    key: &'a K,
    time: u64,
}

impl<'a, K: Clone, V, W> KeyOut<'a, K, V, W> {
    /// The output of `key` at epoch `time`, pushed to `out`.
    fn new(out: &'a mut Vec<(StreamJoinOut<K, V, W>, u64, isize)>, key: &'a K, time: u64) -> Self {
        KeyOut { out, key, time }
    }

    /// A result row: a pair, or an unmatched event, at event time `t`.
    fn row(&mut self, values: Values<V, W>, t: u64, count: isize) {
        let row = StreamJoinOut::Row(self.key.clone(), values, EventTime(t));
        self.out.push((row, self.time, count));
    }

    /// A change of the state row of a stored event.
    fn state(&mut self, event: Event<V, W>, matched: bool, count: isize) {
        let row = StreamJoinOut::State((self.key.clone(), event, matched));
        self.out.push((row, self.time, count));
    }
}

/// One side of the stream⋈stream join, facing the other: how its events (values `X`) and the
/// other side's (values `Y`) are written, so that the two sides share one implementation.
struct Half<V, W, X, Y> {
    /// An event of this side.
    mine: fn((X, EventTime)) -> Event<V, W>,
    /// An event of the other side.
    theirs: fn((Y, EventTime)) -> Event<V, W>,
    /// A pair of an event of this side and one of the other, as `(left, right)`.
    pair: fn(&X, &Y) -> Values<V, W>,
    /// An unmatched event of this side, as `(left, right)`.
    alone: fn(X) -> Values<V, W>,
    /// Whether unmatched events of this side are emitted when they expire.
    emit_alone: bool,
}

impl<V: Clone, W: Clone, X: Clone, Y: Clone> Half<V, W, X, Y> {
    /// New events of this side meet the other side's stored events (`theirs`): every pair
    /// within `window` is emitted at the later event time, a stored event's first match flips its
    /// state row to matched, and each new event is stored in `mine` with its state row. Returns
    /// the earliest new event time (`u64::MAX` for none).
    fn meet<K: Clone>(
        &self,
        out: &mut KeyOut<'_, K, V, W>,
        new: Vec<(u64, X, isize)>,
        mine: &mut Vec<(u64, Stored<X>)>,
        theirs: &mut [(u64, Stored<Y>)],
        window: u64,
    ) -> u64 {
        let mut first = u64::MAX;
        for (t, x, d) in new {
            first = first.min(t);
            let mut matched = false;
            for (ty, y) in within(theirs, t, window) {
                if !y.matched {
                    let event = (self.theirs)((y.value.clone(), EventTime(*ty)));
                    out.state(event.clone(), false, -y.count);
                    out.state(event, true, y.count);
                }
                y.matched = true;
                matched = true;
                out.row((self.pair)(&x, &y.value), t.max(*ty), d * y.count);
            }
            out.state((self.mine)((x.clone(), EventTime(t))), matched, d);
            store(mine, t, x, d, matched);
        }
        first
    }

    /// Drops the events of this side whose window has `closed` (the first ones, by time),
    /// retracting their state rows and, if this side emits them, emitting the unmatched ones.
    fn expire<K: Clone>(
        &self,
        out: &mut KeyOut<'_, K, V, W>,
        events: &mut Vec<(u64, Stored<X>)>,
        closed: impl Fn(u64) -> bool,
    ) {
        let n = events.partition_point(|(t, _)| closed(*t));
        for (t, x) in events.drain(..n) {
            out.state(
                (self.mine)((x.value.clone(), EventTime(t))),
                x.matched,
                -x.count,
            );
            if self.emit_alone && !x.matched {
                out.row((self.alone)(x.value), t, x.count);
            }
        }
    }
}

/// What the stream⋈stream operator emits: joined rows, late records, and changes of its state.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum StreamJoinOut<K, V, W> {
    Row(K, Values<V, W>, EventTime),
    Late(LateJoinRecord<K, V, W>),
    State(JoinStateRow<K, V, W>),
}

/// One stored event of a windowed stream join: its key, side, value and event time, and whether
/// it has matched. The operator's state is the set of these rows (with multiplicity).
pub type JoinStateRow<K, V, W> = (K, Side<(V, EventTime), (W, EventTime)>, bool);

/// State to seed a windowed stream join with on restart (see
/// [`WindowJoin::window_join_restored`]).
pub struct JoinRestore<'scope, K: 'static, V: 'static, W: 'static> {
    /// The stored events, as the operator's `state` output last accumulated them.
    pub rows: VecCollection<'scope, u64, JoinStateRow<K, V, W>>,
    /// The stream time reached (the largest counts).
    pub stream_time: VecCollection<'scope, u64, u64>,
}

/// A windowed stream join whose state can be kept and restored.
pub struct RestorableJoin<'scope, K: 'static, V: 'static, W: 'static> {
    /// The join's output and late records, as [`WindowJoin::window_join_core`].
    pub joined: StreamJoined<'scope, K, (Option<V>, Option<W>), V, W>,
    /// The operator's state as a collection: stored events, inserted when stored, updated when
    /// they first match, retracted when they expire.
    pub state: VecCollection<'scope, u64, JoinStateRow<K, V, W>>,
}

impl<'scope, K, V> WindowJoin<'scope, K, V> for VecCollection<'scope, u64, (K, V, EventTime)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn window_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
        kind: JoinKind,
        route: H,
    ) -> StreamJoined<'scope, K, (Option<V>, Option<W>), V, W>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        stream_join(self, other, window, kind, route, None).joined
    }

    fn window_join_restored<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W, EventTime)>,
        window: JoinWindow,
        kind: JoinKind,
        route: H,
        restore: JoinRestore<'scope, K, V, W>,
    ) -> RestorableJoin<'scope, K, V, W>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        stream_join(self, other, window, kind, route, Some(restore))
    }
}

/// The windowed stream⋈stream operator behind every method of [`WindowJoin`].
fn stream_join<'scope, K, V, W, H>(
    left: VecCollection<'scope, u64, (K, V, EventTime)>,
    other: VecCollection<'scope, u64, (K, W, EventTime)>,
    window: JoinWindow,
    kind: JoinKind,
    route: H,
    restore: Option<JoinRestore<'scope, K, V, W>>,
) -> RestorableJoin<'scope, K, V, W>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    W: ExchangeData,
    H: Fn(&K) -> u64 + 'static,
{
    let JoinWindow { window, grace } = window;
    let lefts: Half<V, W, V, W> = Half {
        mine: Side::Left,
        theirs: Side::Right,
        pair: |v, w| (Some(v.clone()), Some(w.clone())),
        alone: |v| (Some(v), None),
        emit_alone: kind != JoinKind::Inner,
    };
    let rights: Half<V, W, W, V> = Half {
        mine: Side::Right,
        theirs: Side::Left,
        pair: |w, v| (Some(v.clone()), Some(w.clone())),
        alone: |w| (None, Some(w)),
        emit_alone: kind == JoinKind::Outer,
    };
    let events = left
        .map(|(k, v, t)| (k, Side::Left((v, t))))
        .concat(other.map(|(k, w, t)| (k, Side::Right((w, t)))));
    let route = Rc::new(route);
    let owner = Rc::clone(&route);
    let aux = aux_input(
        events.clone(),
        |(_, event): &(K, Event<V, W>)| event_time(event),
        restore.map(|restore| (restore.rows, restore.stream_time)),
        move |(k, _, _): &JoinStateRow<K, V, W>| owner(k),
    );
    let pact = sensed(
        Exchange::new(move |((k, _), _, _): &(LateJoinRecord<K, V, W>, u64, isize)| route(k)),
        Hop::JoinRepartition,
        "WindowJoin",
    );
    let out = events
        .inner
        .binary_frontier(aux, pact, Pipeline, "WindowJoin", move |_cap, _info| {
            let mut state: HashMap<K, Events<V, W>> = HashMap::new();
            // Keys by the stream time at which their earliest event expires.
            let mut due: BinaryHeap<Reverse<(u64, K)>> = BinaryHeap::new();
            let mut stream_time = StreamTime::default();
            let mut stash = Stash::new();
            // An event at `t` is open (can still match) while `t + window + grace >= ST`,
            // and is due to expire at stream time `t + window + grace + 1`.
            let open = move |t: u64, st: u64| t.saturating_add(window).saturating_add(grace) >= st;
            let expiry = move |t: u64| {
                t.saturating_add(window)
                    .saturating_add(grace)
                    .saturating_add(1)
            };
            move |(input, frontier), (aux_input, aux_frontier), output| {
                input.for_each(|cap, data| stash.push_appends(&cap, data));
                aux_input.for_each(|cap, data| stash.push_aux(&cap, data));
                while let Some((time, batch)) = stash.pop_complete(&[frontier, aux_frontier]) {
                    let (before, restored) = stream_time.advance(batch.second);
                    let now = stream_time.0;
                    let mut out: Vec<(StreamJoinOut<K, V, W>, u64, isize)> = Vec::new();
                    // Restored events are stored again, as they were, and scheduled.
                    for ((k, event, matched), d) in restored {
                        KeyOut::new(&mut out, &k, time).state(event.clone(), matched, d);
                        let events = state.entry(k.clone()).or_default();
                        let t = event_time(&event);
                        match event {
                            Side::Left((v, _)) => store(&mut events.left, t, v, d, matched),
                            Side::Right((w, _)) => store(&mut events.right, t, w, d, matched),
                        }
                        events.schedule(expiry(t), k, &mut due);
                    }
                    // New, not late, events per key.
                    type Fresh<V, W> = (Vec<(u64, V, isize)>, Vec<(u64, W, isize)>);
                    let mut fresh: BTreeMap<K, Fresh<V, W>> = BTreeMap::new();
                    for ((k, event), d) in batch.first {
                        let t = event_time(&event);
                        if t.saturating_add(grace) < before {
                            out.push((StreamJoinOut::Late((k, event)), time, d));
                            continue;
                        }
                        let entry = fresh.entry(k).or_default();
                        match event {
                            Side::Left((v, _)) => entry.0.push((t, v, d)),
                            Side::Right((w, _)) => entry.1.push((t, w, d)),
                        }
                    }
                    for (k, (new_left, new_right)) in fresh {
                        let events = state.entry(k.clone()).or_default();
                        let mut key_out = KeyOut::new(&mut out, &k, time);
                        // New right events meet the old left ones, and new left events meet
                        // every right one, old and new.
                        let (left, right) = (&mut events.left, &mut events.right);
                        let first = rights.meet(&mut key_out, new_right, right, left, window);
                        let first =
                            first.min(lefts.meet(&mut key_out, new_left, left, right, window));
                        events.schedule(expiry(first), k, &mut due);
                    }
                    // Expire events whose window has closed; emit the unmatched ones.
                    while due.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                        let Some(Reverse((at, k))) = due.pop() else {
                            break;
                        };
                        let Some(events) = state.get_mut(&k) else {
                            continue;
                        };
                        if events.scheduled != Some(at) {
                            continue; // superseded by an earlier schedule
                        }
                        let mut key_out = KeyOut::new(&mut out, &k, time);
                        let closed = |t: u64| !open(t, now);
                        lefts.expire(&mut key_out, &mut events.left, closed);
                        rights.expire(&mut key_out, &mut events.right, closed);
                        events.scheduled = None;
                        match events.earliest() {
                            // (`expiry(t) <= now` only when it saturates: never.)
                            Some(t) if expiry(t) > now => events.schedule(expiry(t), k, &mut due),
                            Some(_) => {}
                            None => {
                                state.remove(&k);
                            }
                        }
                    }
                    output
                        .session(&batch.capability)
                        .give_iterator(out.into_iter());
                }
            }
        })
        .as_collection();
    RestorableJoin {
        joined: WithLate {
            output: out.clone().flat_map(|r| match r {
                StreamJoinOut::Row(k, vw, t) => Some((k, vw, t)),
                _ => None,
            }),
            late: out.clone().flat_map(|r| match r {
                StreamJoinOut::Late(late) => Some(late),
                _ => None,
            }),
        },
        state: out.flat_map(|r| match r {
            StreamJoinOut::State(row) => Some(row),
            _ => None,
        }),
    }
}

/// Joins whose left input is a table (or, for the lookup joins, a stream) of `(key, value)`.
pub trait TableJoin<'scope, K, V>: Sized
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    /// table⋈table inner join: `(k, (v, w))` for every pair of rows with the same key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let left = scope.new_collection_from(vec![('a', 1), ('b', 2)]).1;
    ///     let right = scope.new_collection_from(vec![('a', 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![('a', (1, 'x'))]).1;
    ///     left.table_join(right).assert_eq(expected);
    /// });
    /// ```
    fn table_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        W: ExchangeData,
    {
        self.table_join_core(other, default_route::<K>)
    }

    /// table⋈table left join: every left row, with `None` while the right has no row for its key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let left = scope.new_collection_from(vec![('a', 1), ('b', 2)]).1;
    ///     let right = scope.new_collection_from(vec![('a', 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![('a', (1, Some('x'))), ('b', (2, None))]).1;
    ///     left.table_left_join(right).assert_eq(expected);
    /// });
    /// ```
    fn table_left_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
    {
        self.table_left_join_core(other, default_route::<K>)
    }

    /// table⋈table outer join: every row of either table, paired when both have the key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let left = scope.new_collection_from(vec![('a', 1), ('b', 2)]).1;
    ///     let right = scope.new_collection_from(vec![('a', 'x'), ('c', 'y')]).1;
    ///     let expected = scope.new_collection_from(vec![
    ///         ('a', (Some(1), Some('x'))),
    ///         ('b', (Some(2), None)),
    ///         ('c', (None, Some('y'))),
    ///     ]).1;
    ///     left.table_outer_join(right).assert_eq(expected);
    /// });
    /// ```
    fn table_outer_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
    ) -> OuterJoined<'scope, K, V, W>
    where
        W: ExchangeData,
    {
        self.table_outer_join_core(other, default_route::<K>)
    }

    /// Foreign-key join (KIP-213): each left row `(k, v)` joins the right row keyed `fk(&v)`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     // orders: order id -> (customer id, amount); customers: customer id -> name
    ///     let orders = scope.new_collection_from(vec![(1, (7, 50)), (2, (8, 20))]).1;
    ///     let customers = scope.new_collection_from(vec![(7, 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![(1, ((7, 50), 'x'))]).1;
    ///     orders.fk_join(customers, |&(customer, _)| Some(customer)).assert_eq(expected);
    /// });
    /// ```
    fn fk_join<F, W, L>(
        self,
        other: VecCollection<'scope, u64, (F, W)>,
        fk: L,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        F: ExchangeData + Hash,
        W: ExchangeData,
        L: Fn(&V) -> Option<F> + 'static,
    {
        self.fk_join_core(other, fk, default_route::<F>)
    }

    /// Foreign-key left join: as [`TableJoin::fk_join`], keeping left rows with no right row.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let orders = scope.new_collection_from(vec![(1, (7, 50)), (2, (8, 20))]).1;
    ///     let customers = scope.new_collection_from(vec![(7, 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![
    ///         (1, ((7, 50), Some('x'))),
    ///         (2, ((8, 20), None)),
    ///     ]).1;
    ///     orders.fk_left_join(customers, |&(customer, _)| Some(customer)).assert_eq(expected);
    /// });
    /// ```
    fn fk_left_join<F, W, L>(
        self,
        other: VecCollection<'scope, u64, (F, W)>,
        fk: L,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        F: ExchangeData + Hash,
        W: ExchangeData,
        L: Fn(&V) -> Option<F> + 'static,
    {
        self.fk_left_join_core(other, fk, default_route::<F>)
    }

    /// stream⋈table: each stream event joins the table as of its epoch; table updates emit
    /// nothing. `self` is the stream.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![('a', 1), ('b', 2)]).1;
    ///     let table = scope.new_collection_from(vec![('a', 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![('a', (1, 'x'))]).1;
    ///     events.lookup_join(table).assert_eq(expected);
    /// });
    /// ```
    fn lookup_join<W>(
        self,
        table: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        W: ExchangeData,
    {
        self.lookup_join_core(table, false, default_route::<K>)
            .flat_map(|(k, (v, w))| w.map(|w| (k, (v, w))))
    }

    /// stream⋈table left join: as [`TableJoin::lookup_join`], with `(v, None)` for events whose
    /// key has no row at their epoch.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![('a', 1), ('b', 2)]).1;
    ///     let table = scope.new_collection_from(vec![('a', 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![('a', (1, Some('x'))), ('b', (2, None))]).1;
    ///     events.lookup_left_join(table).assert_eq(expected);
    /// });
    /// ```
    fn lookup_left_join<W>(
        self,
        table: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
    {
        self.lookup_join_core(table, true, default_route::<K>)
    }

    /// The general stream⋈table lookup: `left` keeps unmatched events as `(v, None)`, and
    /// `route(key)` chooses the worker that owns a key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![(1u64, 'e'), (2, 'f')]).1;
    ///     let table = scope.new_collection_from(vec![(1u64, 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![(1u64, ('e', Some('x'))), (2, ('f', None))]).1;
    ///     events.lookup_join_core(table, true, |k: &u64| *k).assert_eq(expected);
    /// });
    /// ```
    fn lookup_join_core<W, H>(
        self,
        table: VecCollection<'scope, u64, (K, W)>,
        left: bool,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static;

    /// table⋈stream, the mirror of [`TableJoin::lookup_join`]: `self` is the table and each
    /// event of `stream` yields `(k, (table value, event value))`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let table = scope.new_collection_from(vec![('a', 'x')]).1;
    ///     let events = scope.new_collection_from(vec![('a', 1), ('b', 2)]).1;
    ///     let expected = scope.new_collection_from(vec![('a', ('x', 1))]).1;
    ///     table.join_stream(events).assert_eq(expected);
    /// });
    /// ```
    fn join_stream<S>(
        self,
        stream: VecCollection<'scope, u64, (K, S)>,
    ) -> VecCollection<'scope, u64, (K, (V, S))>
    where
        S: ExchangeData,
    {
        self.join_stream_core(stream, default_route::<K>)
    }

    /// As [`TableJoin::join_stream`], with `route(key)` choosing the worker that owns a key.
    fn join_stream_core<S, H>(
        self,
        stream: VecCollection<'scope, u64, (K, S)>,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, S))>
    where
        S: ExchangeData,
        H: Fn(&K) -> u64 + 'static;

    /// As [`TableJoin::table_join`], with `route(key)` choosing the worker that owns a key (the
    /// same function on every worker).
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let left = scope.new_collection_from(vec![(1u64, 'a'), (2, 'b')]).1;
    ///     let right = scope.new_collection_from(vec![(1u64, 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![(1u64, ('a', 'x'))]).1;
    ///     left.table_join_core(right, |k: &u64| *k).assert_eq(expected);
    /// });
    /// ```
    fn table_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static;

    /// As [`TableJoin::table_left_join`], with `route(key)` choosing the worker that owns a key.
    fn table_left_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static;

    /// As [`TableJoin::table_outer_join`], with `route(key)` choosing the worker that owns a key.
    fn table_outer_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
        route: H,
    ) -> OuterJoined<'scope, K, V, W>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static;

    /// As [`TableJoin::fk_join`], with `route(foreign key)` choosing the worker that owns a
    /// foreign key: the join happens there, where the right row of that key lives.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::TableJoin;
    ///
    /// timely::example(|scope| {
    ///     let orders = scope.new_collection_from(vec![(1, (7u64, 50)), (2, (8, 20))]).1;
    ///     let customers = scope.new_collection_from(vec![(7u64, 'x')]).1;
    ///     let expected = scope.new_collection_from(vec![(1, ((7u64, 50), 'x'))]).1;
    ///     orders
    ///         .fk_join_core(customers, |&(customer, _)| Some(customer), |c: &u64| *c)
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn fk_join_core<F, W, L, H>(
        self,
        other: VecCollection<'scope, u64, (F, W)>,
        fk: L,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        F: ExchangeData,
        W: ExchangeData,
        L: Fn(&V) -> Option<F> + 'static,
        H: Fn(&F) -> u64 + 'static;

    /// As [`TableJoin::fk_left_join`], with `route(foreign key)` choosing the worker that owns a
    /// foreign key.
    fn fk_left_join_core<F, W, L, H>(
        self,
        other: VecCollection<'scope, u64, (F, W)>,
        fk: L,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        F: ExchangeData,
        W: ExchangeData,
        L: Fn(&V) -> Option<F> + 'static,
        H: Fn(&F) -> u64 + 'static;
}

impl<'scope, K, V> TableJoin<'scope, K, V> for VecCollection<'scope, u64, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn table_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        let route: Route<K> = Rc::new(route);
        let left = arrange_join_side(self, "TableJoin: left", Rc::clone(&route));
        let right = arrange_join_side(other, "TableJoin: right", route);
        left.join_core(right, |k: &K, v: &V, w: &W| {
            Some((k.clone(), (v.clone(), w.clone())))
        })
    }

    fn table_left_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        let route: Route<K> = Rc::new(route);
        let keys = distinct_keys_by_route(other.clone(), "RightKeys", Rc::clone(&route));
        let left = arrange_join_side(self.clone(), "TableLeftJoin: left", Rc::clone(&route));
        let right = arrange_join_side(other, "TableLeftJoin: right", route);
        let matched = left.clone().join_core(right, |k: &K, v: &V, w: &W| {
            Some((k.clone(), (v.clone(), Some(w.clone()))))
        });
        let unmatched = antijoin_arranged(self, left, keys).map(|(k, v)| (k, (v, None)));
        matched.concat(unmatched)
    }

    fn table_outer_join_core<W, H>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
        route: H,
    ) -> OuterJoined<'scope, K, V, W>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        let route: Route<K> = Rc::new(route);
        let left_keys = distinct_keys_by_route(self.clone(), "LeftKeys", Rc::clone(&route));
        let right_keys = distinct_keys_by_route(other.clone(), "RightKeys", Rc::clone(&route));
        let left = arrange_join_side(self.clone(), "TableOuterJoin: left", Rc::clone(&route));
        let right = arrange_join_side(other.clone(), "TableOuterJoin: right", route);
        let matched = left
            .clone()
            .join_core(right.clone(), |k: &K, v: &V, w: &W| {
                Some((k.clone(), (Some(v.clone()), Some(w.clone()))))
            });
        let left_only =
            antijoin_arranged(self, left, right_keys).map(|(k, v)| (k, (Some(v), None)));
        let right_only =
            antijoin_arranged(other, right, left_keys).map(|(k, w)| (k, (None, Some(w))));
        matched.concat(left_only).concat(right_only)
    }

    fn fk_join_core<F, W, L, H>(
        self,
        other: VecCollection<'scope, u64, (F, W)>,
        fk: L,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        F: ExchangeData,
        W: ExchangeData,
        L: Fn(&V) -> Option<F> + 'static,
        H: Fn(&F) -> u64 + 'static,
    {
        let route: Route<F> = Rc::new(route);
        let keyed = self.flat_map(move |(k, v)| fk(&v).map(|f| (f, (k, v))));
        let left = arrange_join_side(keyed, "FkJoin: left", Rc::clone(&route));
        let right = arrange_join_side(other, "FkJoin: right", route);
        left.join_core(right, |_f: &F, (k, v): &(K, V), w: &W| {
            Some((k.clone(), (v.clone(), w.clone())))
        })
    }

    fn fk_left_join_core<F, W, L, H>(
        self,
        other: VecCollection<'scope, u64, (F, W)>,
        fk: L,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        F: ExchangeData,
        W: ExchangeData,
        L: Fn(&V) -> Option<F> + 'static,
        H: Fn(&F) -> u64 + 'static,
    {
        let route: Route<F> = Rc::new(route);
        let fk = Rc::new(fk);
        let fk2 = Rc::clone(&fk);
        let keyed = self
            .clone()
            .flat_map(move |(k, v)| fk(&v).map(|f| (f, (k, v))));
        let right_keys = distinct_keys_by_route(other.clone(), "RightKeys", Rc::clone(&route));
        let left = arrange_join_side(keyed.clone(), "FkLeftJoin: left", Rc::clone(&route));
        let right = arrange_join_side(other, "FkLeftJoin: right", route);
        let matched = left
            .clone()
            .join_core(right, |_f: &F, (k, v): &(K, V), w: &W| {
                Some((k.clone(), (v.clone(), Some(w.clone()))))
            });
        let dangling =
            antijoin_arranged(keyed, left, right_keys).map(|(_f, (k, v))| (k, (v, None)));
        let no_key = self.flat_map(move |(k, v)| match fk2(&v) {
            None => Some((k, (v, None))),
            Some(_) => None,
        });
        matched.concat(dangling).concat(no_key)
    }

    fn lookup_join_core<W, H>(
        self,
        table: VecCollection<'scope, u64, (K, W)>,
        left: bool,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        let route = std::rc::Rc::new(route);
        let route2 = std::rc::Rc::clone(&route);
        let events_pact = sensed(
            Exchange::new(move |((k, _), _, _): &((K, V), u64, isize)| route(k)),
            Hop::JoinRepartition,
            "LookupJoin: events",
        );
        let table_pact = sensed(
            Exchange::new(move |((k, _), _, _): &((K, W), u64, isize)| route2(k)),
            Hop::JoinRepartition,
            "LookupJoin: table",
        );
        self.inner
            .binary_frontier(
                table.inner,
                events_pact,
                table_pact,
                "LookupJoin",
                move |_cap, _info| {
                    let mut rows: HashMap<K, BTreeMap<W, isize>> = HashMap::new();
                    let mut stash = Stash::new();
                    move |(events, events_frontier), (updates, table_frontier), output| {
                        events.for_each(|cap, data| stash.push_appends(&cap, data));
                        updates.for_each(|cap, data| {
                            for (record, t, d) in data.drain(..) {
                                stash.push_second(&cap, t, (record, d));
                            }
                        });
                        while let Some((time, batch)) =
                            stash.pop_complete(&[events_frontier, table_frontier])
                        {
                            // First the table's updates of this epoch, then the lookups.
                            for ((k, w), d) in batch.second {
                                let row = rows.entry(k.clone()).or_default();
                                let count = row.entry(w.clone()).or_default();
                                *count += d;
                                if *count == 0 {
                                    row.remove(&w);
                                    if row.is_empty() {
                                        rows.remove(&k);
                                    }
                                }
                            }
                            let mut session = output.session(&batch.capability);
                            for ((k, v), d) in batch.first {
                                let mut found = false;
                                for (w, n) in rows.get(&k).into_iter().flatten() {
                                    if *n > 0 {
                                        found = true;
                                        let r = (k.clone(), (v.clone(), Some(w.clone())));
                                        session.give((r, time, d * n));
                                    }
                                }
                                if left && !found {
                                    session.give(((k, (v, None)), time, d));
                                }
                            }
                        }
                    }
                },
            )
            .as_collection()
    }

    fn join_stream_core<S, H>(
        self,
        stream: VecCollection<'scope, u64, (K, S)>,
        route: H,
    ) -> VecCollection<'scope, u64, (K, (V, S))>
    where
        S: ExchangeData,
        H: Fn(&K) -> u64 + 'static,
    {
        stream
            .lookup_join_core(self, false, route)
            .flat_map(|(k, (s, v))| v.map(|v| (k, (v, s))))
    }
}
