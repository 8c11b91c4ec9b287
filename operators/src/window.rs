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
//! * **Session** `gap`: a record's own window is `[t, t + gap)`; a session is a maximal union of
//!   overlapping own windows, so two consecutive records of a key are in one session when less
//!   than `gap` apart, and a session `[first, last + gap)` closes `gap` after its last record.
//!   A record that bridges two sessions merges them (their old rows are retracted).
//!
//! Zero sizes are treated as 1, and an `advance` larger than `size` as `size`.
//!
//! ## Closing, lateness and expiry
//!
//! Stream time `ST` is global and advances per epoch, see [`crate::time`].
//!
//! * A window is **closed** once `end + grace <= ST`. It closes at the end of the first epoch `e`
//!   with `end + grace <= ST(e)`; after that it never changes.
//! * A record of epoch `e` is **late** for a window that was closed before the epoch began
//!   (`end + grace <= ST(e - 1)`). For sessions, a record is late when its own window is closed
//!   or when it overlaps a closed session (it would otherwise reopen it). A late record is
//!   dropped for that window and reported on `late` as `((key, window), (value, event time))`
//!   — once per refused window (so a hopping-window record can be late for some of its windows
//!   and counted for each), with the record's own window for sliding and session windows.
//! * A window **expires** at the end of the first epoch with `end + retention <= ST(e)`, where
//!   `retention = max(expires, grace)` (`max(expires, grace + gap)` for sessions, so that no
//!   record that is not late can ever overlap a forgotten session). Its state is dropped, and in
//!   [`Emit::EveryUpdate`] mode its row is retracted.
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
//! Per key, the accepted records of live windows and the current value of each live window. A
//! window's value is recomputed from its records whenever records are added to it, which keeps
//! any `logic` correct (including session merges) at the price of `O(records in window)` per
//! touched window per epoch. Closing and expiry scan the operator's live windows once per epoch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::Operator;

use crate::epoch::{default_route, epoch_maxima, Stash, StreamTime};
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

    fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
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
    /// Sessions of records separated by less than `gap` ms.
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

/// A late window record: the refused window with the record's value and event time.
pub type LateWindowRecord<K, V> = ((K, Window), (V, EventTime));

/// A windowed table `((key, window), value)` and the late records.
pub type Windowed<'scope, K, V, A> = WithLate<'scope, ((K, Window), A), LateWindowRecord<K, V>>;

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
struct Live<A> {
    value: A,
    closed: bool,
}

/// The state of one key.
struct KeyState<V, A> {
    /// Accepted records of live windows, by event time.
    records: BTreeMap<u64, Vec<V>>,
    windows: BTreeMap<Window, Live<A>>,
}

type WindowOut<K, V, A> = Result<((K, Window), A), LateWindowRecord<K, V>>;

/// Windowed aggregates of a stream `(key, value, event time)`.
pub trait Windows<'scope, K, V> {
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
    fn window_count(self, config: WindowConfig) -> Windowed<'scope, K, V, isize>;

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
        L: FnMut(&K, &Window, &[(EventTime, V)]) -> A + 'static;

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
}

impl<'scope, K, V> Windows<'scope, K, V> for VecCollection<'scope, u64, (K, V, EventTime)>
where
    K: ExchangeData + Hash,
    V: ExchangeData,
{
    fn window_count(self, config: WindowConfig) -> Windowed<'scope, K, V, isize> {
        self.window_aggregate(config, "WindowCount", |_k, _w, records| {
            records.len() as isize
        })
    }

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

    fn window_aggregate_core<A, L, H>(
        self,
        config: WindowConfig,
        name: &str,
        route: H,
        mut logic: L,
    ) -> Windowed<'scope, K, V, A>
    where
        A: ExchangeData,
        L: FnMut(&K, &Window, &[(EventTime, V)]) -> A + 'static,
        H: Fn(&K) -> u64 + 'static,
    {
        let kind = Kind::new(config.kind);
        let grace = config.grace;
        let retention = kind.retention(&config);
        let every_update = config.emit == Emit::EveryUpdate;
        let maxima = epoch_maxima(self.clone(), |(_, _, t): &(K, V, EventTime)| t.0);
        let pact =
            Exchange::new(move |((k, _, _), _, _): &((K, V, EventTime), u64, isize)| route(k));
        let out = self
            .inner
            .binary_frontier(maxima, pact, Pipeline, name, move |_cap, _info| {
                let mut state: HashMap<K, KeyState<V, A>> = HashMap::new();
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
                        let closed_by = |w: &Window, st: u64| w.end.saturating_add(grace) <= st;
                        let mut out: Vec<(WindowOut<K, V, A>, u64, isize)> = Vec::new();

                        let mut groups: BTreeMap<K, Vec<(u64, V)>> = BTreeMap::new();
                        for ((k, v, t), d) in batch.first {
                            let group = groups.entry(k).or_default();
                            for _ in 0..d {
                                group.push((t.0, v.clone()));
                            }
                        }
                        for (k, mut records) in groups {
                            records.sort();
                            let ks = state.entry(k.clone()).or_insert_with(|| KeyState {
                                records: BTreeMap::new(),
                                windows: BTreeMap::new(),
                            });
                            let mut touched: BTreeSet<Window> = BTreeSet::new();
                            let mut dirty = false;
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
                                                touched.insert(w);
                                            }
                                        }
                                        any
                                    }
                                    Kind::Sliding { .. } => {
                                        let own = kind.own(t);
                                        if closed_by(&own, before) {
                                            late(own, v.clone());
                                            false
                                        } else {
                                            touched.insert(own);
                                            for w in ks.windows.keys() {
                                                if w.contains(t) {
                                                    touched.insert(*w);
                                                }
                                            }
                                            true
                                        }
                                    }
                                    Kind::Session { .. } => {
                                        let own = kind.own(t);
                                        let blocked = closed_by(&own, before)
                                            || ks
                                                .windows
                                                .iter()
                                                .any(|(w, l)| l.closed && w.overlaps(&own));
                                        if blocked {
                                            late(own, v.clone());
                                            false
                                        } else {
                                            dirty = true;
                                            true
                                        }
                                    }
                                };
                                if accepted {
                                    let values = ks.records.entry(t).or_default();
                                    let at = values.partition_point(|x| x <= &v);
                                    values.insert(at, v);
                                }
                            }
                            let mut set = |w: Window, ks: &mut KeyState<V, A>, out: &mut Vec<_>| {
                                let content: Vec<(EventTime, V)> = ks
                                    .records
                                    .range(w.start..w.end)
                                    .flat_map(|(t, vs)| {
                                        vs.iter().map(|v| (EventTime(*t), v.clone()))
                                    })
                                    .collect();
                                let value = logic(&k, &w, &content);
                                let live = Live {
                                    value: value.clone(),
                                    closed: false,
                                };
                                let old = ks.windows.insert(w, live);
                                if every_update && old.as_ref().map(|o| &o.value) != Some(&value) {
                                    if let Some(old) = old {
                                        out.push((Ok(((k.clone(), w), old.value)), time, -1));
                                    }
                                    out.push((Ok(((k.clone(), w), value)), time, 1));
                                }
                            };
                            if let Kind::Session { gap } = kind {
                                if dirty {
                                    // Recompute the open sessions from the records outside
                                    // closed sessions.
                                    let closed: Vec<Window> = ks
                                        .windows
                                        .iter()
                                        .filter(|(_, l)| l.closed)
                                        .map(|(w, _)| *w)
                                        .collect();
                                    let mut sessions: Vec<Window> = Vec::new();
                                    for &t in ks.records.keys() {
                                        if closed.iter().any(|w| w.contains(t)) {
                                            continue;
                                        }
                                        let end = t.saturating_add(gap);
                                        match sessions.last_mut() {
                                            Some(last) if t < last.end => {
                                                last.end = last.end.max(end)
                                            }
                                            _ => sessions.push(Window { start: t, end }),
                                        }
                                    }
                                    // Sessions that merged away are retracted; the rest
                                    // are (re)computed, emitting only changed values.
                                    let gone: Vec<Window> = ks
                                        .windows
                                        .iter()
                                        .filter(|(w, l)| !l.closed && !sessions.contains(w))
                                        .map(|(w, _)| *w)
                                        .collect();
                                    for w in gone {
                                        if let Some(old) = ks.windows.remove(&w) {
                                            if every_update {
                                                let row = ((k.clone(), w), old.value);
                                                out.push((Ok(row), time, -1));
                                            }
                                        }
                                    }
                                    for w in sessions {
                                        set(w, ks, &mut out);
                                    }
                                }
                            } else {
                                for w in touched {
                                    set(w, ks, &mut out);
                                }
                            }
                        }

                        // Close and expire windows against the new stream time.
                        state.retain(|k, ks| {
                            let mut expired = Vec::new();
                            for (w, live) in ks.windows.iter_mut() {
                                if !live.closed && closed_by(w, now) {
                                    live.closed = true;
                                    if !every_update {
                                        let row = ((k.clone(), *w), live.value.clone());
                                        out.push((Ok(row), time, 1));
                                    }
                                }
                                if w.end.saturating_add(retention) <= now {
                                    expired.push(*w);
                                }
                            }
                            for w in expired {
                                if let Some(live) = ks.windows.remove(&w) {
                                    if every_update {
                                        out.push((Ok(((k.clone(), w), live.value)), time, -1));
                                    }
                                }
                                if let Kind::Session { .. } = kind {
                                    let keep = ks.records.split_off(&w.start);
                                    let mut keep_after = keep;
                                    let after = keep_after.split_off(&w.end);
                                    ks.records.extend(after);
                                }
                            }
                            if !matches!(kind, Kind::Session { .. }) {
                                ks.records.retain(|t, _| {
                                    kind.last_end(*t).saturating_add(retention) > now
                                });
                            }
                            !ks.windows.is_empty() || !ks.records.is_empty()
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
