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
//! The operator's state is the unexpired events of both sides, per key, on the key's owner.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;

use crate::epoch::{default_route, epoch_maxima, Stash, StreamTime};
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
pub trait WindowJoin<'scope, K, V> {
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
        W: ExchangeData;

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
        W: ExchangeData;

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
        W: ExchangeData;

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
}

/// An unexpired stream event: its event time, value, multiplicity, and whether it has matched.
struct Stored<X> {
    time: u64,
    value: X,
    count: isize,
    matched: bool,
}

impl<X> Stored<X> {
    fn new(time: u64, value: X, count: isize) -> Self {
        Stored {
            time,
            value,
            count,
            matched: false,
        }
    }
}

/// The unexpired events of one key.
struct Events<V, W> {
    left: Vec<Stored<V>>,
    right: Vec<Stored<W>>,
}

type StreamJoinOut<K, V, W> =
    Result<(K, (Option<V>, Option<W>), EventTime), LateJoinRecord<K, V, W>>;

impl<'scope, K, V> WindowJoin<'scope, K, V> for VecCollection<'scope, u64, (K, V, EventTime)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
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
        let JoinWindow { window, grace } = window;
        let emit_left = kind != JoinKind::Inner;
        let emit_right = kind == JoinKind::Outer;
        let events = self
            .map(|(k, v, t)| (k, Side::Left((v, t))))
            .concat(other.map(|(k, w, t)| (k, Side::Right((w, t)))));
        let maxima = epoch_maxima(events.clone(), |(_, side): &(K, Side<_, _>)| match side {
            Side::Left((_, t)) | Side::Right((_, t)) => t.0,
        });
        let pact =
            Exchange::new(move |((k, _), _, _): &(LateJoinRecord<K, V, W>, u64, isize)| route(k));
        let out = events
            .inner
            .binary_frontier(maxima, pact, Pipeline, "WindowJoin", move |_cap, _info| {
                let mut state: HashMap<K, Events<V, W>> = HashMap::new();
                let mut stream_time = StreamTime::default();
                let mut stash = Stash::new();
                move |(input, frontier), (max_input, max_frontier), output| {
                    input.for_each(|cap, data| {
                        for (record, t, d) in data.drain(..) {
                            if d > 0 {
                                stash.push_first(&cap, t, (record, d));
                            }
                        }
                    });
                    max_input.for_each(|cap, data| {
                        for (t, m) in data.drain(..) {
                            stash.push_second(&cap, t, (t, m));
                        }
                    });
                    while let Some((time, batch)) = stash.pop_complete(&[frontier, max_frontier]) {
                        let before = stream_time.advance(&batch.second);
                        let now = stream_time.0;
                        let mut out: Vec<(StreamJoinOut<K, V, W>, u64, isize)> = Vec::new();
                        // New, not late, events per key.
                        let mut fresh: BTreeMap<K, Events<V, W>> = BTreeMap::new();
                        for ((k, side), d) in batch.first {
                            let t = match &side {
                                Side::Left((_, t)) | Side::Right((_, t)) => t.0,
                            };
                            if t.saturating_add(grace) < before {
                                out.push((Err((k, side)), time, d));
                                continue;
                            }
                            let entry = fresh.entry(k).or_insert_with(|| Events {
                                left: Vec::new(),
                                right: Vec::new(),
                            });
                            match side {
                                Side::Left((v, t)) => entry.left.push(Stored::new(t.0, v, d)),
                                Side::Right((w, t)) => entry.right.push(Stored::new(t.0, w, d)),
                            }
                        }
                        for (k, mut new) in fresh {
                            let old = state.entry(k.clone()).or_insert_with(|| Events {
                                left: Vec::new(),
                                right: Vec::new(),
                            });
                            let mut pair = |l: &mut Stored<V>, r: &mut Stored<W>| {
                                if l.time.abs_diff(r.time) <= window {
                                    l.matched = true;
                                    r.matched = true;
                                    let t = EventTime(std::cmp::max(l.time, r.time));
                                    let v = (Some(l.value.clone()), Some(r.value.clone()));
                                    out.push((Ok((k.clone(), v, t)), time, l.count * r.count));
                                }
                            };
                            for l in new.left.iter_mut() {
                                for r in old.right.iter_mut().chain(new.right.iter_mut()) {
                                    pair(l, r);
                                }
                            }
                            for r in new.right.iter_mut() {
                                for l in old.left.iter_mut() {
                                    pair(l, r);
                                }
                            }
                            old.left.append(&mut new.left);
                            old.right.append(&mut new.right);
                        }
                        // Expire events whose window has closed; emit the unmatched ones.
                        let open = |t: u64| t.saturating_add(window).saturating_add(grace) >= now;
                        state.retain(|k, events| {
                            events.left.retain(|l| {
                                if open(l.time) {
                                    return true;
                                }
                                if emit_left && !l.matched {
                                    let v = (Some(l.value.clone()), None);
                                    out.push((
                                        Ok((k.clone(), v, EventTime(l.time))),
                                        time,
                                        l.count,
                                    ));
                                }
                                false
                            });
                            events.right.retain(|r| {
                                if open(r.time) {
                                    return true;
                                }
                                if emit_right && !r.matched {
                                    let v = (None, Some(r.value.clone()));
                                    out.push((
                                        Ok((k.clone(), v, EventTime(r.time))),
                                        time,
                                        r.count,
                                    ));
                                }
                                false
                            });
                            !events.left.is_empty() || !events.right.is_empty()
                        });
                        output
                            .session(&batch.capability)
                            .give_iterator(out.into_iter());
                    }
                }
            })
            .as_collection();
        WithLate {
            output: out.clone().flat_map(|r| r.ok()),
            late: out.flat_map(|r| r.err()),
        }
    }
}

/// Joins whose left input is a table (or, for the lookup joins, a stream) of `(key, value)`.
pub trait TableJoin<'scope, K, V> {
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
        W: ExchangeData;

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
        W: ExchangeData;

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
        W: ExchangeData;

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
        L: Fn(&V) -> Option<F> + 'static;

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
        L: Fn(&V) -> Option<F> + 'static;

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
        W: ExchangeData;

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
        W: ExchangeData;

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
        S: ExchangeData;
}

impl<'scope, K, V> TableJoin<'scope, K, V> for VecCollection<'scope, u64, (K, V)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn table_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, W))>
    where
        W: ExchangeData,
    {
        self.join(other)
    }

    fn table_left_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
    {
        let keys = other.clone().map(|(k, _)| k).distinct();
        let matched = self
            .clone()
            .join(other)
            .map(|(k, (v, w))| (k, (v, Some(w))));
        let unmatched = self.antijoin(keys).map(|(k, v)| (k, (v, None)));
        matched.concat(unmatched)
    }

    fn table_outer_join<W>(
        self,
        other: VecCollection<'scope, u64, (K, W)>,
    ) -> OuterJoined<'scope, K, V, W>
    where
        W: ExchangeData,
    {
        let left_keys = self.clone().map(|(k, _)| k).distinct();
        let right_keys = other.clone().map(|(k, _)| k).distinct();
        let matched = self
            .clone()
            .join(other.clone())
            .map(|(k, (v, w))| (k, (Some(v), Some(w))));
        let left_only = self.antijoin(right_keys).map(|(k, v)| (k, (Some(v), None)));
        let right_only = other.antijoin(left_keys).map(|(k, w)| (k, (None, Some(w))));
        matched.concat(left_only).concat(right_only)
    }

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
        self.flat_map(move |(k, v)| fk(&v).map(|f| (f, (k, v))))
            .join(other)
            .map(|(_f, ((k, v), w))| (k, (v, w)))
    }

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
        let fk = std::rc::Rc::new(fk);
        let fk2 = std::rc::Rc::clone(&fk);
        let keyed = self
            .clone()
            .flat_map(move |(k, v)| fk(&v).map(|f| (f, (k, v))));
        let right_keys = other.clone().map(|(f, _)| f).distinct();
        let matched = keyed
            .clone()
            .join(other)
            .map(|(_f, ((k, v), w))| (k, (v, Some(w))));
        let dangling = keyed
            .antijoin(right_keys)
            .map(|(_f, (k, v))| (k, (v, None)));
        let no_key = self.flat_map(move |(k, v)| match fk2(&v) {
            None => Some((k, (v, None))),
            Some(_) => None,
        });
        matched.concat(dangling).concat(no_key)
    }

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

    fn lookup_left_join<W>(
        self,
        table: VecCollection<'scope, u64, (K, W)>,
    ) -> VecCollection<'scope, u64, (K, (V, Option<W>))>
    where
        W: ExchangeData,
    {
        self.lookup_join_core(table, true, default_route::<K>)
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
        let events_pact = Exchange::new(move |((k, _), _, _): &((K, V), u64, isize)| route(k));
        let table_pact = Exchange::new(move |((k, _), _, _): &((K, W), u64, isize)| route2(k));
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
                        events.for_each(|cap, data| {
                            for (record, t, d) in data.drain(..) {
                                if d > 0 {
                                    stash.push_first(&cap, t, (record, d));
                                }
                            }
                        });
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

    fn join_stream<S>(
        self,
        stream: VecCollection<'scope, u64, (K, S)>,
    ) -> VecCollection<'scope, u64, (K, (V, S))>
    where
        S: ExchangeData,
    {
        stream
            .lookup_join_core(self, false, default_route::<K>)
            .flat_map(|(k, (s, v))| v.map(|v| (k, (v, s))))
    }
}
