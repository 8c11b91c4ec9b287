//! Windows on event time: tumbling, hopping, sliding and session windows, with a grace period,
//! late-record reporting, retention, and two emit modes.
//!
//! The input is a stream of `(key, value, event time)` records (append-only: `d <= 0` is ignored,
//! `d > 0` means `d` records). The output is a *windowed table* keyed by `(key, window)` whose
//! value is `logic(key, window, records)`, computed over the window's records sorted by
//! `(event time, value)`, plus the records refused as late. Windows are half-open,
//! `[start, end)`, in event-time milliseconds.
//!
//! ## Which windows a record belongs to
//!
//! * **Tumbling** `size`: the one window `[n·size, (n+1)·size)` containing `t`.
//! * **Hopping** `size, advance`: every window `[n·advance, n·advance + size)` containing `t`
//!   (`size / advance` of them). Tumbling is hopping with `advance = size`.
//! * **Sliding** `size`: one window per distinct record time, `[t + 1 - size, t + 1)`, the `size`
//!   ms ending at (and including) the record; it holds *every* record of the key in that range,
//!   so a record also joins the existing windows of later records within `size` of it (as Kafka
//!   Streams' sliding windows, without the windows that start right after a record).
//! * **Session** `gap`: records of a key at most `gap` apart in event time are in one session. A
//!   session is a maximal run of the key's records, by event time, each at most `gap` after the
//!   one before (so *exactly* `gap` apart still counts), and more than `gap` separates two
//!   sessions. This is Kafka Streams' rule: its session `[first, last]` takes a record at `t`
//!   when `first - gap <= t <= last + gap`. Here the session's window is `[first, last + gap)`,
//!   and a record at `t` (own window `[t, t + gap)`) joins every session whose window overlaps
//!   or *touches* its own (`start <= t + gap` and `t <= end`). A record that bridges two
//!   sessions merges them (their old rows are retracted).
//!
//! Zero sizes are treated as 1, and an `advance` larger than `size` as `size`.
//!
//! ## Closing, lateness and expiry
//!
//! Stream time `ST` is global and advances per epoch, see [`crate::time`].
//!
//! * A window is **closed** once `end + grace <= ST`. It closes at the end of the first epoch `e`
//!   with `end + grace <= ST(e)`; after that it never changes. A session `[start, end)` still
//!   takes a record at `end` itself, so it closes one millisecond later, once `end + grace < ST`
//!   (Kafka Streams' `last + gap + grace < ST`): in every kind, a record at most `grace` behind
//!   stream time is never late.
//! * A record of epoch `e` is **late** for a window that was closed before the epoch began
//!   (closed by `ST(e - 1)`). For sessions, a record is late when its own window is closed
//!   (`t + gap + grace < ST(e - 1)`) or when it touches a closed session (it would otherwise
//!   reopen it). A late record is dropped for that window and reported on `late` as
//!   `((key, window), (value, event time))` — once per refused window (so a hopping-window
//!   record can be late for some of its windows and counted for each), with the record's own
//!   window for sliding and session windows.
//! * A window **expires** at the end of the first epoch with `end + retention <= ST(e)` (for a
//!   session, one millisecond later: `end + retention < ST(e)`), where
//!   `retention = max(expires, grace)` (`max(expires, grace + gap)` for sessions, so that no
//!   record that is not late can ever touch a forgotten session: it would have
//!   `t + gap + grace >= ST > end + grace + gap`, so `t > end`). Its state is dropped, and in
//!   [`Emit::EveryUpdate`] mode its row is retracted.
//!
//! [`WindowConfig::closes_at`] and [`WindowConfig::expires_at`] give these stream times.
//!
//! ## Emit modes
//!
//! * [`Emit::EveryUpdate`]: the output is a table that changes at the end of every epoch in which
//!   a window's value changed (retract old, insert new), and loses a window's row when it expires.
//! * [`Emit::Final`]: exactly one `+1` row per window, emitted at the epoch it closes, with its
//!   final value, never retracted (not even at expiry): an append-only stream of results.
//!
//! ## State and cost
//!
//! Per key, the current value of each live window and, where needed, the accepted records.
//!
//! * [`Windows::window_aggregate`] recomputes a window's value from its records whenever records
//!   are added to it, which keeps any `logic` correct (including session merges) at the price of
//!   `O(records in window)` per touched window per epoch; it keeps the records of live windows.
//! * [`Windows::window_fold_core`] (and [`Windows::window_count`]) fold each record into the
//!   values of its windows and merge values when sessions merge: `O(windows per record)`, with no
//!   records kept (except for sliding windows, whose new windows start from the records they
//!   cover).
//!
//! Closing, expiry and the pruning of records are scheduled by the stream time at which they fall
//! due (an ordered index by close and expiry time), so an epoch touches only the keys it brings
//! records for and the windows that close or expire, never the whole state. The sessions a record
//! touches are found by a range query: a key's sessions are disjoint and do not touch (more than
//! `gap` separates one's last record from the next one's first), so they are those starting at
//! or before `t + gap`, taken backwards while they end at or after `t`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;

use crate::epoch::{aux_input, default_route, Stash, StreamTime};
use crate::sensor::{sensed, Hop};
use crate::time::{EventTime, WithLate};

/// A half-open window of event time, `[start, end)`, in milliseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: u64,
    /// The first millisecond after the window.
    pub end: u64,
}

impl Window {
    /// True when `t` lies in `[start, end)`.
    pub fn contains(&self, t: u64) -> bool {
        self.start <= t && t < self.end
    }
}

/// How records are assigned to windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size` ms.
    Tumbling {
        /// Window length in ms.
        size: u64,
    },
    /// Fixed windows of `size` ms starting every `advance` ms.
    Hopping {
        /// Window length in ms.
        size: u64,
        /// Distance between window starts in ms.
        advance: u64,
    },
    /// One window of `size` ms ending at each record.
    Sliding {
        /// Window length in ms.
        size: u64,
    },
    /// Sessions of records at most `gap` ms apart.
    Session {
        /// Inactivity gap in ms.
        gap: u64,
    },
}

/// When a windowed aggregate emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Emit {
    /// A windowed table updated at every epoch, retracted at expiry.
    EveryUpdate,
    /// One final row per window when it closes.
    Final,
}

/// The parameters of a windowed aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowConfig {
    /// Window assignment.
    pub kind: WindowKind,
    /// How long after a window's end (in stream time) records are still accepted.
    pub grace: u64,
    /// How long after a window's end (in stream time) its state is kept; at least `grace`.
    pub expires: u64,
    /// Emit mode.
    pub emit: Emit,
}

impl WindowConfig {
    /// The stream time that closes `w`: `end + grace`, or `end + grace + 1` for a session,
    /// which still takes a record at `end` (see the [module docs](crate::window)).
    ///
    /// ```
    /// use faustus_operators::{Emit, Window, WindowConfig, WindowKind};
    ///
    /// let w = Window { start: 0, end: 10 };
    /// let config = |kind| WindowConfig { kind, grace: 5, expires: 0, emit: Emit::Final };
    /// assert_eq!(config(WindowKind::Tumbling { size: 10 }).closes_at(&w), 15);
    /// // With gap 5, the session of records 0..=5 takes one at 10, even at stream time 15.
    /// assert_eq!(config(WindowKind::Session { gap: 5 }).closes_at(&w), 16);
    /// ```
    pub fn closes_at(&self, w: &Window) -> u64 {
        Kind::new(self.kind).horizon(w).saturating_add(self.grace)
    }

    /// The stream time at which `w` expires: its state is dropped and, when emitting every
    /// update, its row retracted. `end + max(expires, grace)`, or for a session
    /// `end + max(expires, grace + gap) + 1`.
    ///
    /// ```
    /// use faustus_operators::{Emit, Window, WindowConfig, WindowKind};
    ///
    /// let w = Window { start: 0, end: 10 };
    /// let config = |kind| WindowConfig { kind, grace: 5, expires: 0, emit: Emit::EveryUpdate };
    /// assert_eq!(config(WindowKind::Tumbling { size: 10 }).expires_at(&w), 15);
    /// assert_eq!(config(WindowKind::Session { gap: 5 }).expires_at(&w), 21);
    /// ```
    pub fn expires_at(&self, w: &Window) -> u64 {
        let kind = Kind::new(self.kind);
        kind.horizon(w).saturating_add(kind.retention(self))
    }
}

/// A late window record: the refused window with the record's value and event time.
pub type LateWindowRecord<K, V> = ((K, Window), (V, EventTime));

/// A windowed table `((key, window), value)` and the late records.
pub type Windowed<'scope, K, V, A> = WithLate<'scope, ((K, Window), A), LateWindowRecord<K, V>>;

/// State to seed a windowed fold with on restart (see [`Windows::window_fold_restored`]).
pub struct WindowRestore<'scope, K: 'static, A: 'static> {
    /// Windows and their values, as the operator last emitted them in
    /// [`Emit::EveryUpdate`] mode (a windowed table's changelog).
    pub rows: VecCollection<'scope, u64, ((K, Window), A)>,
    /// The stream time reached (any worker may hold it; the largest counts).
    pub stream_time: VecCollection<'scope, u64, u64>,
}

/// The normalized window assignment.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Fixed { size: u64, advance: u64 },
    Sliding { size: u64 },
    Session { gap: u64 },
}

impl Kind {
    fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Tumbling { size } => {
                let size = size.max(1);
                Kind::Fixed {
                    size,
                    advance: size,
                }
            }
            WindowKind::Hopping { size, advance } => {
                let size = size.max(1);
                Kind::Fixed {
                    size,
                    advance: advance.clamp(1, size),
                }
            }
            WindowKind::Sliding { size } => Kind::Sliding { size: size.max(1) },
            WindowKind::Session { gap } => Kind::Session { gap: gap.max(1) },
        }
    }

    fn retention(&self, config: &WindowConfig) -> u64 {
        match self {
            Kind::Session { gap } => config.expires.max(config.grace.saturating_add(*gap)),
            _ => config.expires.max(config.grace),
        }
    }

    /// The record's own window: for sliding and session windows, the one it creates.
    fn own(&self, t: u64) -> Window {
        match *self {
            Kind::Fixed { size, advance } => {
                let start = t - t % advance;
                Window {
                    start,
                    end: start.saturating_add(size),
                }
            }
            Kind::Sliding { size } => Window {
                start: t.saturating_add(1).saturating_sub(size),
                end: t.saturating_add(1),
            },
            Kind::Session { gap } => Window {
                start: t,
                end: t.saturating_add(gap),
            },
        }
    }

    /// Every fixed window containing `t`, latest start first.
    fn fixed(size: u64, advance: u64, t: u64) -> Vec<Window> {
        let mut windows = Vec::new();
        let mut start = t - t % advance;
        loop {
            let end = start.saturating_add(size);
            if end <= t {
                break;
            }
            windows.push(Window { start, end });
            if start < advance {
                break;
            }
            start -= advance;
        }
        windows
    }

    /// The first event time past the records `w` can take, from which grace and retention count:
    /// `end`, or `end + 1` for a session, which takes a record at `end` (exactly `gap` after
    /// its last one).
    fn horizon(&self, w: &Window) -> u64 {
        match self {
            Kind::Session { .. } => w.end.saturating_add(1),
            _ => w.end,
        }
    }

    /// The last event time at which a record at `t` can still be needed by a live window.
    fn last_end(&self, t: u64) -> u64 {
        match *self {
            Kind::Fixed { .. } => self.own(t).end,
            Kind::Sliding { size } => t.saturating_add(size),
            Kind::Session { .. } => u64::MAX, // pruned with its session
        }
    }
}

/// A live window: its current value and whether it has closed.
///
/// The value is `None` only while a recomputed window waits for its recomputation, within the
/// epoch that changed it.
struct Live<A> {
    value: Option<A>,
    closed: bool,
}

/// The state of one key.
struct KeyState<V, A> {
    /// Accepted records, by event time: kept when values are recomputed from records, and for
    /// sliding windows (a new window starts from the records it covers).
    records: BTreeMap<u64, Vec<V>>,
    /// The key's live windows. Session windows of a key are disjoint.
    windows: BTreeMap<Window, Live<A>>,
}

impl<V, A> KeyState<V, A> {
    fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.records.is_empty()
    }
}

/// How window values are maintained.
enum Agg<K, V, A> {
    /// Recomputed from the window's records whenever records are added.
    Recompute(Box<LogicFn<K, V, A>>),
    /// Folded incrementally, record by record.
    Fold {
        init: A,
        fold: Box<FoldFn<V, A>>,
        merge: Box<MergeFn<A>>,
    },
}

impl<K, V, A> Agg<K, V, A> {
    /// Values folded with `fold` from `init`, merged with `merge`.
    fn fold<F, M>(init: A, fold: F, merge: M) -> Self
    where
        F: FnMut(&mut A, EventTime, &V) + 'static,
        M: FnMut(&mut A, A) + 'static,
    {
        Agg::Fold {
            init,
            fold: Box::new(fold),
            merge: Box::new(merge),
        }
    }
}

type LogicFn<K, V, A> = dyn FnMut(&K, &Window, &[(EventTime, V)]) -> A;
type FoldFn<V, A> = dyn FnMut(&mut A, EventTime, &V);
type MergeFn<A> = dyn FnMut(&mut A, A);

/// Work scheduled at a stream time: closing or expiring a window, or dropping a key's records
/// that no window can need any more.
enum Due<K> {
    Window(K, Window),
    Prune(K),
}

/// The key's records in `[start, end)`, in `(event time, value)` order.
fn content<V: Clone>(records: &BTreeMap<u64, Vec<V>>, w: &Window) -> Vec<(EventTime, V)> {
    records
        .range(w.start..w.end)
        .flat_map(|(t, vs)| vs.iter().map(|v| (EventTime(*t), v.clone())))
        .collect()
}

type WindowOut<K, V, A> = Result<((K, Window), A), LateWindowRecord<K, V>>;

/// Windowed aggregates of a stream `(key, value, event time)`.
pub trait Windows<'scope, K, V>: Sized
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    /// The number of records per `(key, window)`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{Emit, EventTime, Window, WindowConfig, WindowKind, Windows};
    ///
    /// timely::example(|scope| {
    ///     let clicks = scope.new_collection_from(vec![
    ///         ('a', (), EventTime(3)),
    ///         ('a', (), EventTime(7)),
    ///         ('a', (), EventTime(12)),
    ///     ]).1;
    ///     let config = WindowConfig {
    ///         kind: WindowKind::Tumbling { size: 10 },
    ///         grace: 100,
    ///         expires: 100,
    ///         emit: Emit::EveryUpdate,
    ///     };
    ///     let expected = scope.new_collection_from(vec![
    ///         (('a', Window { start: 0, end: 10 }), 2isize),
    ///         (('a', Window { start: 10, end: 20 }), 1),
    ///     ]).1;
    ///     let counts = clicks.window_count(config);
    ///     counts.output.assert_eq(expected);
    ///     counts.late.assert_empty();
    /// });
    /// ```
    fn window_count(self, config: WindowConfig) -> Windowed<'scope, K, V, isize> {
        self.window_fold_core(
            config,
            "WindowCount",
            default_route::<K>,
            0isize,
            |count, _t, _v| *count += 1,
            |count, other| *count += other,
        )
    }

    /// `logic(key, window, records)` per `(key, window)`, over the window's records sorted by
    /// `(event time, value)`.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{Emit, EventTime, Window, WindowConfig, WindowKind, Windows};
    ///
    /// timely::example(|scope| {
    ///     // Sessions with a 5 ms gap: 1 and 4 are one session; 20 starts another.
    ///     let events = scope.new_collection_from(vec![
    ///         ('a', 10u64, EventTime(1)),
    ///         ('a', 20, EventTime(4)),
    ///         ('a', 5, EventTime(20)),
    ///     ]).1;
    ///     let config = WindowConfig {
    ///         kind: WindowKind::Session { gap: 5 },
    ///         grace: 0,
    ///         expires: 1000,
    ///         emit: Emit::Final,
    ///     };
    ///     // Stream time reaches 20, closing the first session [1, 9); the second is still open.
    ///     let expected = scope.new_collection_from(vec![
    ///         (('a', Window { start: 1, end: 9 }), 30u64),
    ///     ]).1;
    ///     events
    ///         .window_aggregate(config, "sum", |_key, _window, records| {
    ///             records.iter().map(|(_t, v)| *v).sum::<u64>()
    ///         })
    ///         .output
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn window_aggregate<A, L>(
        self,
        config: WindowConfig,
        name: &str,
        logic: L,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        L: FnMut(&K, &Window, &[(EventTime, V)]) -> A + 'static,
    {
        self.window_aggregate_core(config, name, default_route::<K>, logic)
    }

    /// As [`Windows::window_aggregate`], with `route(key)` choosing the worker that owns a key.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{Emit, EventTime, Window, WindowConfig, WindowKind, Windows};
    ///
    /// timely::example(|scope| {
    ///     // Hopping windows of 10 ms every 5 ms: the record at 7 is in [0, 10) and [5, 15).
    ///     let events = scope.new_collection_from(vec![(1u64, 'x', EventTime(7))]).1;
    ///     let config = WindowConfig {
    ///         kind: WindowKind::Hopping { size: 10, advance: 5 },
    ///         grace: 0,
    ///         expires: 0,
    ///         emit: Emit::EveryUpdate,
    ///     };
    ///     let expected = scope.new_collection_from(vec![
    ///         ((1u64, Window { start: 0, end: 10 }), vec!['x']),
    ///         ((1u64, Window { start: 5, end: 15 }), vec!['x']),
    ///     ]).1;
    ///     events
    ///         .window_aggregate_core(config, "values", |k: &u64| *k, |_k, _w, records| {
    ///             records.iter().map(|(_t, v)| *v).collect::<Vec<char>>()
    ///         })
    ///         .output
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn window_aggregate_core<A, L, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        logic: L,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        L: FnMut(&K, &Window, &[(EventTime, V)]) -> A + 'static,
        H: Fn(&K) -> u64 + 'static;

    /// An incremental windowed aggregate: each window's value starts at `init`, every accepted
    /// record is folded in with `fold(value, event time, record)`, and when a record bridges
    /// session windows their values are combined with `merge(into, other)`. The state keeps only
    /// these values (plus, for sliding windows, the records a new window starts from), and adding
    /// a record costs `O(windows it falls in)`, whatever the window's size. `route(key)` chooses
    /// the worker that owns a key.
    ///
    /// `fold` and `merge` must not depend on the order of records: the result is then the same
    /// table as [`Windows::window_aggregate_core`] with a `logic` that folds the window's records
    /// in order (count, sum, min, max qualify; use `window_aggregate` for anything else).
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{Emit, EventTime, Window, WindowConfig, WindowKind, Windows};
    ///
    /// timely::example(|scope| {
    ///     let events = scope.new_collection_from(vec![
    ///         (1u64, 10u64, EventTime(1)),
    ///         (1, 20, EventTime(4)),
    ///         (1, 5, EventTime(20)),
    ///     ]).1;
    ///     let config = WindowConfig {
    ///         kind: WindowKind::Session { gap: 5 },
    ///         grace: 0,
    ///         expires: 1000,
    ///         emit: Emit::EveryUpdate,
    ///     };
    ///     let expected = scope.new_collection_from(vec![
    ///         ((1u64, Window { start: 1, end: 9 }), 30u64),
    ///         ((1u64, Window { start: 20, end: 25 }), 5),
    ///     ]).1;
    ///     events
    ///         .window_fold_core(
    ///             config,
    ///             "sum",
    ///             |k: &u64| *k,
    ///             0u64,
    ///             |sum, _t, v| *sum += *v,
    ///             |sum, other| *sum += other,
    ///         )
    ///         .output
    ///         .assert_eq(expected);
    /// });
    /// ```
    fn window_fold_core<A, F, M, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        init: A,
        fold: F,
        merge: M,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        F: FnMut(&mut A, EventTime, &V) + 'static,
        M: FnMut(&mut A, A) + 'static,
        H: Fn(&K) -> u64 + 'static;

    /// As [`Windows::window_fold_core`], seeded with `restore` at the epoch its records carry
    /// (an engine's restore epoch, before any input): the restored stream time counts as that
    /// epoch's maximum, each restored window is live again with its value (closed if the
    /// restored stream time has closed it) and, when emitting every update, is emitted at that
    /// epoch. Restoring values is exact for tumbling, hopping and session windows; sliding
    /// windows also need the records a new window starts from, which values do not carry, so
    /// they are not restorable this way.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use faustus_operators::{Emit, EventTime, Window, WindowConfig, WindowKind, WindowRestore, Windows};
    ///
    /// timely::example(|scope| {
    ///     let w = Window { start: 0, end: 10 };
    ///     let rows = scope.new_collection_from(vec![((1u8, w), 2i64)]).1;
    ///     let stream_time = scope.new_collection_from(vec![4u64]).1;
    ///     // A new event (here in the restore's epoch, for brevity).
    ///     let events_in = scope.new_collection_from(vec![(1u8, (), EventTime(5))]).1;
    ///     let config = WindowConfig {
    ///         kind: WindowKind::Tumbling { size: 10 },
    ///         grace: 0,
    ///         expires: 100,
    ///         emit: Emit::EveryUpdate,
    ///     };
    ///     let counts = events_in.window_fold_restored(
    ///         config, "count", |k: &u8| u64::from(*k), 0i64, |n, _t, _v| *n += 1, |n, m| *n += m,
    ///         WindowRestore { rows, stream_time },
    ///     );
    ///     // The restored count of 2, plus the new event.
    ///     counts.output.assert_eq(scope.new_collection_from(vec![((1u8, w), 3i64)]).1);
    /// });
    /// ```
    #[allow(clippy::too_many_arguments)]
    fn window_fold_restored<A, F, M, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        init: A,
        fold: F,
        merge: M,
        restore: WindowRestore<'scope, K, A>,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        F: FnMut(&mut A, EventTime, &V) + 'static,
        M: FnMut(&mut A, A) + 'static,
        H: Fn(&K) -> u64 + 'static;
}

impl<'scope, K, V> Windows<'scope, K, V> for VecCollection<'scope, u64, (K, V, EventTime)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn window_aggregate_core<A, L, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        logic: L,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        L: FnMut(&K, &Window, &[(EventTime, V)]) -> A + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        windowed(
            self,
            config,
            name,
            route,
            Agg::Recompute(Box::new(logic)),
            None,
        )
    }

    fn window_fold_core<A, F, M, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        init: A,
        fold: F,
        merge: M,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        F: FnMut(&mut A, EventTime, &V) + 'static,
        M: FnMut(&mut A, A) + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        windowed(
            self,
            config,
            name,
            route,
            Agg::fold(init, fold, merge),
            None,
        )
    }

    fn window_fold_restored<A, F, M, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        init: A,
        fold: F,
        merge: M,
        restore: WindowRestore<'scope, K, A>,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        F: FnMut(&mut A, EventTime, &V) + 'static,
        M: FnMut(&mut A, A) + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        let agg = Agg::fold(init, fold, merge);
        windowed(self, config, name, route, agg, Some(restore))
    }
}

/// The per-epoch work of one key: the windows it changed, with their values before the epoch.
struct Touched<A> {
    /// Values before the epoch (`None`: the window did not exist), when emitting every update.
    before: BTreeMap<Window, Option<A>>,
    /// Windows to recompute from records.
    dirty: BTreeSet<Window>,
    /// Windows created in the epoch, to schedule.
    created: Vec<Window>,
    every_update: bool,
}

impl<A: Clone> Touched<A> {
    /// Remembers `w`'s value before the epoch, the first time `w` is touched.
    fn snapshot<V>(&mut self, ks: &KeyState<V, A>, w: Window) {
        if self.every_update && !self.before.contains_key(&w) {
            let old = ks
                .windows
                .get(&w)
                .map(|l| l.value.clone().expect("computed"));
            self.before.insert(w, old);
        }
    }
}

/// Adds the record `(t, v)` to window `w`, creating the window if needed.
fn add<K, V, A: Clone>(
    agg: &mut Agg<K, V, A>,
    ks: &mut KeyState<V, A>,
    touched: &mut Touched<A>,
    w: Window,
    t: u64,
    v: &V,
) {
    touched.snapshot(ks, w);
    let live = ks.windows.entry(w).or_insert_with(|| {
        touched.created.push(w);
        Live {
            value: match agg {
                Agg::Recompute(_) => None,
                Agg::Fold { init, .. } => Some(init.clone()),
            },
            closed: false,
        }
    });
    match agg {
        Agg::Recompute(_) => {
            touched.dirty.insert(w);
        }
        Agg::Fold { fold, .. } => fold(live.value.as_mut().expect("folded"), EventTime(t), v),
    }
}

/// The windowed aggregate operator behind every method of [`Windows`].
fn windowed<'scope, K, V, A, H>(
    input: VecCollection<'scope, u64, (K, V, EventTime)>,
    config: WindowConfig,
    name: &str,
    route: H,
    mut agg: Agg<K, V, A>,
    restore: Option<WindowRestore<'scope, K, A>>,
) -> Windowed<'scope, K, V, A>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
    A: ExchangeData,
    H: Fn(&K) -> u64 + 'static,
{
    let kind = Kind::new(config.kind);
    let retention = kind.retention(&config);
    // The stream times at which a window closes and expires (see `WindowConfig::closes_at`).
    let closes_at = move |w: &Window| config.closes_at(w);
    let expires_at = move |w: &Window| config.expires_at(w);
    let every_update = config.emit == Emit::EveryUpdate;
    let recompute = matches!(agg, Agg::Recompute(_));
    let keep_records = recompute || matches!(kind, Kind::Sliding { .. });
    let route = std::rc::Rc::new(route);
    let owner = std::rc::Rc::clone(&route);
    let aux = aux_input(
        input.clone(),
        |(_, _, t): &(K, V, EventTime)| t.0,
        restore.map(|restore| (restore.rows, restore.stream_time)),
        move |((k, _), _): &((K, Window), A)| owner(k),
    );
    let pact = sensed(
        Exchange::new(move |((k, _, _), _, _): &((K, V, EventTime), u64, isize)| route(k)),
        Hop::GroupBy,
        name,
    );
    let out = input
        .inner
        .binary_frontier(aux, pact, Pipeline, name, move |_cap, _info| {
            let mut state: HashMap<K, KeyState<V, A>> = HashMap::new();
            // Closing, expiry and pruning, by the stream time at which they are due.
            let mut due: BTreeMap<u64, Vec<Due<K>>> = BTreeMap::new();
            let mut stream_time = StreamTime::default();
            let mut stash = Stash::new();
            move |(input, frontier), (aux_input, aux_frontier), output| {
                input.for_each(|cap, data| stash.push_appends(&cap, data));
                aux_input.for_each(|cap, data| stash.push_aux(&cap, data));
                while let Some((time, batch)) = stash.pop_complete(&[frontier, aux_frontier]) {
                    let (before, restored) = stream_time.advance(batch.second);
                    let now = stream_time.0;
                    let closed_by = |w: &Window, st: u64| closes_at(w) <= st;
                    let mut out: Vec<(WindowOut<K, V, A>, u64, isize)> = Vec::new();

                    // Restored windows are live again, closed if the restored stream time
                    // closed them, and scheduled for closing or expiry.
                    for (((k, w), a), _) in restored {
                        let closed = closed_by(&w, now);
                        if every_update {
                            out.push((Ok(((k.clone(), w), a.clone())), time, 1));
                        }
                        let ks = state.entry(k.clone()).or_insert_with(|| KeyState {
                            records: BTreeMap::new(),
                            windows: BTreeMap::new(),
                        });
                        let live = Live {
                            value: Some(a),
                            closed,
                        };
                        ks.windows.insert(w, live);
                        let at = if closed {
                            expires_at(&w)
                        } else {
                            closes_at(&w)
                        };
                        due.entry(at).or_default().push(Due::Window(k, w));
                    }

                    let mut groups: BTreeMap<K, Vec<(u64, V)>> = BTreeMap::new();
                    for ((k, v, t), d) in batch.first {
                        let group = groups.entry(k).or_default();
                        for _ in 1..d {
                            group.push((t.0, v.clone()));
                        }
                        group.push((t.0, v));
                    }
                    for (k, mut records) in groups {
                        records.sort();
                        let ks = state.entry(k.clone()).or_insert_with(|| KeyState {
                            records: BTreeMap::new(),
                            windows: BTreeMap::new(),
                        });
                        let mut touched = Touched {
                            before: BTreeMap::new(),
                            dirty: BTreeSet::new(),
                            created: Vec::new(),
                            every_update,
                        };
                        let mut latest = None;
                        for (t, v) in records {
                            let mut late = |w: Window, v: V| {
                                out.push((Err(((k.clone(), w), (v, EventTime(t)))), time, 1));
                            };
                            let accepted = match kind {
                                Kind::Fixed { size, advance } => {
                                    let mut any = false;
                                    for w in Kind::fixed(size, advance, t) {
                                        if closed_by(&w, before) {
                                            late(w, v.clone());
                                        } else {
                                            any = true;
                                            add(&mut agg, ks, &mut touched, w, t, &v);
                                        }
                                    }
                                    any
                                }
                                Kind::Sliding { .. } => {
                                    let own = kind.own(t);
                                    if closed_by(&own, before) {
                                        late(own, v.clone());
                                        continue;
                                    }
                                    let values = ks.records.entry(t).or_default();
                                    let at = values.partition_point(|x| x <= &v);
                                    values.insert(at, v.clone());
                                    latest = Some(t);
                                    // A new window starts from every record it covers,
                                    // this one included.
                                    let mut fresh = false;
                                    if !ks.windows.contains_key(&own) {
                                        fresh = true;
                                        touched.snapshot(ks, own);
                                        touched.created.push(own);
                                        let value = match &mut agg {
                                            Agg::Recompute(_) => {
                                                touched.dirty.insert(own);
                                                None
                                            }
                                            Agg::Fold { init, fold, .. } => {
                                                let mut acc = init.clone();
                                                for (t, v) in content(&ks.records, &own) {
                                                    fold(&mut acc, t, &v);
                                                }
                                                Some(acc)
                                            }
                                        };
                                        let live = Live {
                                            value,
                                            closed: false,
                                        };
                                        ks.windows.insert(own, live);
                                    }
                                    // Every window containing t starts at or after own.start.
                                    let from = Window {
                                        start: own.start,
                                        end: 0,
                                    };
                                    let to = Window {
                                        start: t.saturating_add(1),
                                        end: 0,
                                    };
                                    let containing: Vec<Window> = ks
                                        .windows
                                        .range(from..to)
                                        .map(|(w, _)| *w)
                                        .filter(|w| w.contains(t) && !(fresh && *w == own))
                                        .collect();
                                    for w in containing {
                                        add(&mut agg, ks, &mut touched, w, t, &v);
                                    }
                                    // Already stored.
                                    false
                                }
                                Kind::Session { .. } => {
                                    let own = kind.own(t);
                                    // The record joins every session whose window overlaps or
                                    // touches `own` (`w.start <= t + gap` and `t <= w.end`:
                                    // records at most `gap` apart share a session). Sessions
                                    // are disjoint and never touch, so these are the last ones
                                    // starting at or before `own.end`, back to the first that
                                    // ends at or after `own.start`.
                                    let upto = Window {
                                        start: own.end,
                                        end: u64::MAX,
                                    };
                                    let touching: Vec<(Window, bool)> = ks
                                        .windows
                                        .range(..=upto)
                                        .rev()
                                        .take_while(|(w, _)| w.end >= own.start)
                                        .map(|(w, l)| (*w, l.closed))
                                        .collect();
                                    if closed_by(&own, before)
                                        || touching.iter().any(|(_, closed)| *closed)
                                    {
                                        late(own, v.clone());
                                        continue;
                                    }
                                    let mut merged = own;
                                    for (w, _) in &touching {
                                        merged.start = merged.start.min(w.start);
                                        merged.end = merged.end.max(w.end);
                                    }
                                    if touching.len() != 1 || touching[0].0 != merged {
                                        // The record creates or extends a session, or bridges
                                        // several: they become one window.
                                        let mut acc: Option<A> = None;
                                        for (w, _) in touching {
                                            touched.snapshot(ks, w);
                                            let old = ks.windows.remove(&w).expect("live");
                                            if let (Agg::Fold { merge, .. }, Some(value)) =
                                                (&mut agg, old.value)
                                            {
                                                match acc.as_mut() {
                                                    Some(acc) => merge(acc, value),
                                                    None => acc = Some(value),
                                                }
                                            }
                                        }
                                        if let Agg::Fold { init, .. } = &agg {
                                            let value = acc.unwrap_or_else(|| init.clone());
                                            touched.snapshot(ks, merged);
                                            touched.created.push(merged);
                                            let live = Live {
                                                value: Some(value),
                                                closed: false,
                                            };
                                            ks.windows.insert(merged, live);
                                        }
                                    }
                                    add(&mut agg, ks, &mut touched, merged, t, &v);
                                    true
                                }
                            };
                            if accepted && keep_records {
                                let values = ks.records.entry(t).or_default();
                                let at = values.partition_point(|x| x <= &v);
                                values.insert(at, v);
                            }
                        }
                        if let Agg::Recompute(logic) = &mut agg {
                            for w in std::mem::take(&mut touched.dirty) {
                                if let Some(live) = ks.windows.get_mut(&w) {
                                    live.value = Some(logic(&k, &w, &content(&ks.records, &w)));
                                }
                            }
                        }
                        for (w, old) in std::mem::take(&mut touched.before) {
                            let new = ks.windows.get(&w).and_then(|l| l.value.as_ref());
                            if old.as_ref() != new {
                                if let Some(old) = old {
                                    out.push((Ok(((k.clone(), w), old)), time, -1));
                                }
                                if let Some(new) = new {
                                    out.push((Ok(((k.clone(), w), new.clone())), time, 1));
                                }
                            }
                        }
                        for w in touched.created {
                            if ks.windows.contains_key(&w) {
                                let at = closes_at(&w);
                                due.entry(at).or_default().push(Due::Window(k.clone(), w));
                            }
                        }
                        if let Some(t) = latest {
                            // Sliding records outlive their own windows: drop them once no
                            // window can contain them.
                            let at = kind.last_end(t).saturating_add(retention);
                            due.entry(at).or_default().push(Due::Prune(k.clone()));
                        }
                    }

                    // Close, expire and prune what the new stream time has reached.
                    while let Some(entry) = due.first_entry() {
                        if *entry.key() > now {
                            break;
                        }
                        for item in entry.remove() {
                            let k = match item {
                                Due::Prune(k) => k,
                                Due::Window(k, w) => {
                                    let Some(ks) = state.get_mut(&k) else {
                                        continue;
                                    };
                                    let Some(live) = ks.windows.get_mut(&w) else {
                                        continue;
                                    };
                                    let expiry = expires_at(&w);
                                    if !live.closed {
                                        live.closed = true;
                                        if !every_update {
                                            let value = live.value.clone().expect("computed");
                                            out.push((Ok(((k.clone(), w), value)), time, 1));
                                        }
                                        if expiry > now {
                                            let again = Due::Window(k, w);
                                            due.entry(expiry).or_default().push(again);
                                            continue;
                                        }
                                    } else if expiry > now {
                                        continue;
                                    }
                                    let live = ks.windows.remove(&w).expect("live");
                                    if every_update {
                                        let value = live.value.expect("computed");
                                        out.push((Ok(((k.clone(), w), value)), time, -1));
                                    }
                                    if let Kind::Session { .. } = kind {
                                        let mut rest = ks.records.split_off(&w.start);
                                        let mut after = rest.split_off(&w.end);
                                        ks.records.append(&mut after);
                                    }
                                    k
                                }
                            };
                            let Some(ks) = state.get_mut(&k) else {
                                continue;
                            };
                            if !matches!(kind, Kind::Session { .. }) {
                                while let Some((&t, _)) = ks.records.first_key_value() {
                                    if kind.last_end(t).saturating_add(retention) > now {
                                        break;
                                    }
                                    ks.records.pop_first();
                                }
                            }
                            if ks.is_empty() {
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
    WithLate {
        output: out.clone().flat_map(|r| r.ok()),
        late: out.flat_map(|r| r.err()),
    }
}
