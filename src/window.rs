//! Event time, windows and windowed tables.
//!
//! Event time is data. By default it is each event's record timestamp ([`Stream::timed`], and
//! the window and join shortcuts on [`Stream`]); [`Stream::event_time`] says where else an
//! event's time (milliseconds) is. Either gives a [`Timed`] stream. A timed stream is windowed with [`Timed::tumbling`],
//! [`Timed::hopping`], [`Timed::sliding`], [`Timed::session`] (or [`Timed::window`]) and
//! aggregated into a windowed table keyed by `(key, window)`; or joined with another timed stream
//! ([`Timed::join`] and friends, in [`crate::join`]).
//!
//! The semantics are those of `faustus-operators` (its `window` and `time` modules):
//!
//! - windows are half-open, `[start, end)`, in event-time milliseconds;
//! - *stream time* is the largest event time seen (by all workers, advanced once per epoch), or,
//!   for windows and joins that [punctuate when idle](Timed::punctuate_when_idle), where the wall
//!   clock has moved it since events stopped moving it;
//! - a window closes once `end + grace <= stream time` (a session `[first, last + gap)`, which
//!   still takes an event at exactly `last + gap`, once `end + grace < stream time`); an event
//!   for a closed window is **late**: it is not counted, and it goes to the dead-letter topic
//!   (`<app>-__errors`) with the reason, its origin and its event time in headers
//!   (`faustus.error.*`), so it is never lost silently;
//! - a window's row stays in the table until `end + expires <= stream time` (`expires` is at
//!   least `grace`; a session's, one millisecond later), then it is removed (a tombstone
//!   downstream);
//! - [`WindowedStream::emit_final`] instead emits each window once, when it closes, as an
//!   append-only stream.
//!
//! Windowed tables keep a changelog keyed by `[key, window]` and their stream time in a second,
//! one-row changelog, so tumbling, hopping and session windows (both emit modes) continue exactly
//! after a restart. Sliding windows are restored from their values only: a new sliding window
//! after a restart misses the events before it (a warning says so at start-up).

use std::rc::Rc;
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::{AsCollection, VecCollection};
use faustus_operators::{
    Emit, EventTime, FoldByKey as _, Stash, Window, WindowConfig, WindowKind, WindowRestore,
    Windows as _,
};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::{Broadcast as _, Map as _};
use timely::dataflow::operators::Concat as _;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use crate::dataflow::{epoch_millis, Data, Dataflow, Failure, Stream, Table};
use crate::dead_letter::DeadLetter;
use crate::poison::catch;
use crate::record::Meta;
use crate::runtime::table::window_owner;
use crate::runtime::{route, Pos};

/// Milliseconds of a duration, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<'s, K: Data, V: Data> Stream<'s, K, V> {
    /// The stream with event time: `time(key, value)` is the event's time in milliseconds
    /// (for instance a timestamp field of the value), in place of the record timestamp that
    /// [`Stream::timed`] uses.
    pub fn event_time(self, time: impl Fn(&K, &V) -> u64 + 'static) -> Timed<'s, K, V> {
        // An event whose time function panics is left out here, as a dead letter, so that the
        // windows downstream, which call it again, only see events it has a time for.
        let time = Rc::new(time);
        let check = Rc::clone(&time);
        let coll =
            self.df.guarded(
                self.coll,
                "event_time",
                move |(k, v, m): (K, V, Meta)| match catch(|| check(&k, &v)) {
                    Ok(_) => Ok(Some((k, v, m))),
                    Err(message) => Err(Failure::new(message, m.pos()).with_record(&k, &v)),
                },
            );
        let stream = Stream { df: self.df, coll };
        stream.timed_by(move |k, v, _| time(k, v))
    }

    /// The stream with event time from each event's timestamp: the Kafka record's, as in Kafka
    /// Streams and Faust (see [`crate::record::Meta`]). Windows and stream⋈stream joins made
    /// straight from a stream ([`Stream::window`], [`Stream::tumbling`], ...) use it.
    pub fn timed(self) -> Timed<'s, K, V> {
        self.timed_by(|_, _, meta| meta.event_time())
    }

    fn timed_by(self, time: impl Fn(&K, &V, &Meta) -> u64 + 'static) -> Timed<'s, K, V> {
        Timed {
            df: self.df.clone(),
            stream: self,
            time: Rc::new(time),
            grace: 0,
            within: 0,
            idle: None,
        }
    }

    /// [`Timed::grace`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn grace(self, grace: Duration) -> Timed<'s, K, V> {
        self.timed().grace(grace)
    }

    /// [`Timed::punctuate_when_idle`] on the stream timed by its record timestamps
    /// ([`Stream::timed`]).
    pub fn punctuate_when_idle(self, idle: Duration) -> Timed<'s, K, V> {
        self.timed().punctuate_when_idle(idle)
    }

    /// [`Timed::within`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn within(self, window: Duration) -> Timed<'s, K, V> {
        self.timed().within(window)
    }

    /// [`Timed::tumbling`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn tumbling(self, size: Duration) -> WindowedStream<'s, K, V> {
        self.timed().tumbling(size)
    }

    /// [`Timed::hopping`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn hopping(self, size: Duration, advance: Duration) -> WindowedStream<'s, K, V> {
        self.timed().hopping(size, advance)
    }

    /// [`Timed::sliding`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn sliding(self, size: Duration) -> WindowedStream<'s, K, V> {
        self.timed().sliding(size)
    }

    /// [`Timed::session`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn session(self, gap: Duration) -> WindowedStream<'s, K, V> {
        self.timed().session(gap)
    }

    /// [`Timed::window`] on the stream timed by its record timestamps ([`Stream::timed`]).
    pub fn window(self, kind: WindowKind) -> WindowedStream<'s, K, V> {
        self.timed().window(kind)
    }
}

/// Where an event's time is.
type TimeFn<K, V> = dyn Fn(&K, &V, &Meta) -> u64;

/// A windowed aggregate's fold: adds an event's value to an accumulator.
type FoldFn<A, V> = dyn Fn(&mut A, &V);

/// A late event: its position, key and value as JSON, and event time.
pub(crate) type LateEvent = (Pos, (Vec<u8>, Vec<u8>), EventTime);

/// A stream whose events have an event time; see the [module docs](self).
#[derive(Clone)]
pub struct Timed<'s, K: 'static, V: 'static> {
    pub(crate) df: Dataflow<'s>,
    stream: Stream<'s, K, V>,
    time: Rc<TimeFn<K, V>>,
    grace: u64,
    within: u64,
    /// Wall-clock milliseconds of quiet after which stream time punctuates ([`Timed::punctuate_when_idle`]).
    idle: Option<u64>,
}

impl<'s, K: Data, V: Data> Timed<'s, K, V> {
    /// How far behind stream time an event may be and still count (default: zero). Applies to
    /// the windows and joins made from this stream afterwards.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = ms(grace);
        self
    }

    /// Lets the wall clock move stream time when the input is quiet, so that windows still close
    /// (and emit their final values, and stream joins their unmatched events) when no event
    /// comes to move it. Applies to the windows and joins made from this stream afterwards; in
    /// a join, if both sides set it, the longer idle time counts.
    ///
    /// Once no event has moved stream time for `idle` of wall-clock time, stream time moves on
    /// by `idle`, and again after each further `idle` of quiet: while the input is quiet,
    /// stream time follows the wall clock, in steps of `idle`, from the last event time. The
    /// next event that moves stream time stops it. The punctuated stream time is kept in the
    /// stream-time changelog, so a window closed by punctuation stays closed after a restart;
    /// the idle time counts again from a restart.
    ///
    /// The price is determinism: an event that arrives after a quiet spell may find its window
    /// closed by punctuation (it is late, and goes to the dead-letter topic) where a replay of
    /// the same records without the pause would have counted it. An `idle` of zero is a
    /// configuration error.
    pub fn punctuate_when_idle(mut self, idle: Duration) -> Self {
        if idle.is_zero() {
            self.df.config_error(
                "`punctuate_when_idle` was given an idle time of zero: give the wall-clock time \
                 of quiet after which stream time moves on (for instance 10 seconds)"
                    .into(),
            );
        }
        self.idle = Some(ms(idle));
        self
    }

    /// For stream⋈stream joins: the largest difference of event times of two events that join
    /// (default: zero, equal times only). `left.within(d).join(right)` joins events with
    /// `|t1 - t2| <= d`.
    pub fn within(mut self, window: Duration) -> Self {
        self.within = ms(window);
        self
    }

    /// Sets the join grace period (the same as [`Timed::grace`]); kept for readability in
    /// `left.within(d).join_grace(g).join(right)`.
    pub fn join_grace(self, grace: Duration) -> Self {
        self.grace(grace)
    }

    pub(crate) fn join_window_ms(&self) -> u64 {
        self.within
    }

    pub(crate) fn grace_ms(&self) -> u64 {
        self.grace
    }

    pub(crate) fn idle_ms(&self) -> Option<u64> {
        self.idle
    }

    /// The operator input: `(key, (value, position), event time)`.
    #[allow(clippy::type_complexity)]
    pub(crate) fn events(&self) -> VecCollection<'s, u64, (K, (V, Pos), EventTime)> {
        let time = Rc::clone(&self.time);
        self.stream.coll.clone().map(move |(k, v, m)| {
            let t = time(&k, &v, &m);
            (k, (v, m.pos()), EventTime(t))
        })
    }

    /// As [`Timed::events`], with each event's record timestamp beside its position (what a
    /// stream join stamps its pairs with).
    #[allow(clippy::type_complexity)]
    pub(crate) fn stamped_events(&self) -> VecCollection<'s, u64, (K, (V, (Pos, i64)), EventTime)> {
        let time = Rc::clone(&self.time);
        self.stream.coll.clone().map(move |(k, v, m)| {
            let t = time(&k, &v, &m);
            (k, (v, (m.pos(), m.timestamp)), EventTime(t))
        })
    }

    /// Tumbling windows: `[n·size, (n+1)·size)`.
    pub fn tumbling(self, size: Duration) -> WindowedStream<'s, K, V> {
        self.window(WindowKind::Tumbling { size: ms(size) })
    }

    /// Hopping windows of `size`, one starting every `advance`.
    pub fn hopping(self, size: Duration, advance: Duration) -> WindowedStream<'s, K, V> {
        self.window(WindowKind::Hopping {
            size: ms(size),
            advance: ms(advance),
        })
    }

    /// Sliding windows: for every event at `t`, the window `[t + 1 - size, t + 1)` with every
    /// event of the key in it.
    pub fn sliding(self, size: Duration) -> WindowedStream<'s, K, V> {
        self.window(WindowKind::Sliding { size: ms(size) })
    }

    /// Session windows: events of a key at most `gap` apart (exactly `gap` included, as in
    /// Kafka Streams) are one session `[first, last + gap)`.
    pub fn session(self, gap: Duration) -> WindowedStream<'s, K, V> {
        self.window(WindowKind::Session { gap: ms(gap) })
    }

    /// Windows of any kind.
    pub fn window(self, kind: WindowKind) -> WindowedStream<'s, K, V> {
        let grace = self.grace;
        WindowedStream {
            timed: self,
            config: WindowConfig {
                kind,
                grace,
                expires: grace,
                emit: Emit::EveryUpdate,
            },
        }
    }
}

/// A windowed stream, ready to aggregate into a windowed table; see the [module docs](self).
#[derive(Clone)]
pub struct WindowedStream<'s, K: 'static, V: 'static> {
    timed: Timed<'s, K, V>,
    config: WindowConfig,
}

impl<'s, K: Data, V: Data> WindowedStream<'s, K, V> {
    /// How long (after `end`, in stream time) a window's row is kept; never less than the
    /// grace period. The default is the grace period.
    pub fn expires(mut self, expires: Duration) -> Self {
        self.config.expires = ms(expires).max(self.config.grace);
        self
    }

    /// Lets the wall clock move stream time when the input is quiet, as
    /// [`Timed::punctuate_when_idle`] does.
    pub fn punctuate_when_idle(mut self, idle: Duration) -> Self {
        self.timed = self.timed.punctuate_when_idle(idle);
        self
    }

    /// Emits one final row per window when it closes, as an append-only stream, instead of a
    /// table updated at every epoch.
    pub fn emit_final(self) -> FinalWindows<'s, K, V> {
        FinalWindows { windows: self }
    }

    /// The number of events per `(key, window)`.
    pub fn count(self, name: &str) -> Table<'s, (K, Window), i64> {
        self.aggregate(name, 0i64, |n, _| *n += 1, |n, m| *n += m)
    }

    /// The sum of the values per `(key, window)`.
    pub fn sum(self, name: &str) -> Table<'s, (K, Window), V>
    where
        V: Default + std::ops::AddAssign,
    {
        self.aggregate(
            name,
            V::default(),
            |acc, v| *acc += v.clone(),
            |a, b| *a += b,
        )
    }

    /// A windowed aggregate: each window starts at `init`, `fold(acc, value)` adds an event, and
    /// `merge(acc, other)` combines two windows' values when an event bridges two sessions.
    /// `fold` and `merge` must not depend on the order of events (sum, count, min, max do).
    ///
    /// The table has a changelog (`<app>-<name>-changelog`, keyed by `[key, window]`) and its
    /// stream time is kept in a second one (`<app>-<name>.stream-time-changelog`), so tumbling,
    /// hopping and session windows are restored exactly after a restart. Sliding windows are
    /// restored from their values only, which loses the records a new window starts from: a
    /// warning says so at start-up.
    pub fn aggregate<A: Data>(
        self,
        name: &str,
        init: A,
        fold: impl Fn(&mut A, &V) + 'static,
        merge: impl Fn(&mut A, A) + 'static,
    ) -> Table<'s, (K, Window), A> {
        self.restored(name, init, fold, merge).0
    }

    /// The every-update windowed table with its changelogs, and the stream time per epoch
    /// (on every worker).
    fn restored<A: Data>(
        self,
        name: &str,
        init: A,
        fold: impl Fn(&mut A, &V) + 'static,
        merge: impl Fn(&mut A, A) + 'static,
    ) -> (Table<'s, (K, Window), A>, StreamVec<'s, u64, u64>) {
        let fold: Rc<FoldFn<A, V>> = Rc::new(fold);
        let this = self.fold_checked(name, &init, Rc::clone(&fold));
        this.restored_checked(name, init, move |a: &mut A, v: &V| fold(a, v), merge)
    }

    /// The stream without the events on which `fold` panics when it folds them into `init`:
    /// those become dead letters of `aggregate(<name>)` (see [`crate::poison`]). The window
    /// operator folds the others again, into their windows' accumulators.
    fn fold_checked<A: Data>(mut self, name: &str, init: &A, fold: Rc<FoldFn<A, V>>) -> Self {
        let df = self.timed.df.clone();
        let init = init.clone();
        let stream = self.timed.stream;
        let coll = df.guarded(
            stream.coll,
            &format!("aggregate({name})"),
            move |(k, v, m): (K, V, Meta)| match catch(|| fold(&mut init.clone(), &v)) {
                Ok(()) => Ok(Some((k, v, m))),
                Err(message) => Err(Failure::new(message, m.pos()).with_record(&k, &v)),
            },
        );
        self.timed.stream = Stream {
            df: stream.df,
            coll,
        };
        self
    }

    fn restored_checked<A: Data>(
        self,
        name: &str,
        init: A,
        fold: impl Fn(&mut A, &V) + 'static,
        merge: impl Fn(&mut A, A) + 'static,
    ) -> (Table<'s, (K, Window), A>, StreamVec<'s, u64, u64>) {
        let df = self.timed.df.clone();
        if matches!(self.config.kind, WindowKind::Sliding { .. }) {
            df.warn_once(&format!(
                "the sliding windows of `{name}` are restored from their values only: after a \
                 restart, new windows miss the events that came before it"
            ));
        }
        let state = df.state::<(K, Window), A>(name).routed(
            window_owner::<K>,
            |tables, name, worker, peers, workers, shard| {
                tables.register_windowed::<K, A>(name, worker, peers, workers, shard)
            },
        );
        let times = self.timed.events().map(|(_, (_, pos), t)| (t, pos));
        let (stream_time, per_epoch) = kept_stream_time(&df, name, times, self.timed.idle);
        let restore = WindowRestore {
            rows: state.restored(),
            stream_time,
        };
        let output = self.run(name, init, fold, merge, Some(restore));
        (state.keep(output), per_epoch)
    }

    /// Runs the window operator; late events go to the dead-letter topic.
    fn run<A: Data>(
        self,
        name: &str,
        init: A,
        fold: impl Fn(&mut A, &V) + 'static,
        merge: impl Fn(&mut A, A) + 'static,
        restore: Option<WindowRestore<'s, K, A>>,
    ) -> VecCollection<'s, u64, ((K, Window), A)> {
        let df = self.timed.df.clone();
        let events = self.timed.events();
        let fold = move |acc: &mut A, _t, (v, _p): &(V, Pos)| fold(acc, v);
        let windowed = match restore {
            Some(restore) => events.window_fold_restored(
                self.config,
                name,
                route::<K>,
                init,
                fold,
                merge,
                restore,
            ),
            None => events.window_fold_core(self.config, name, route::<K>, init, fold, merge),
        };
        late_letters(
            &df,
            windowed
                .late
                .map(|((k, _w), ((v, p), t))| (p, json_late(&k, &v), t)),
            name,
            "late: the event's window had closed (stream time had passed its end + grace)",
        );
        windowed.output
    }
}

/// Windows that emit once, when they close; see [`WindowedStream::emit_final`].
#[derive(Clone)]
pub struct FinalWindows<'s, K: 'static, V: 'static> {
    windows: WindowedStream<'s, K, V>,
}

impl<'s, K: Data, V: Data> FinalWindows<'s, K, V> {
    /// The number of events per `(key, window)`, once per window when it closes.
    pub fn count(self, name: &str) -> Stream<'s, (K, Window), i64> {
        self.aggregate(name, 0i64, |n, _| *n += 1, |n, m| *n += m)
    }

    /// As [`WindowedStream::aggregate`], once per window when it closes.
    pub fn aggregate<A: Data>(
        self,
        name: &str,
        init: A,
        fold: impl Fn(&mut A, &V) + 'static,
        merge: impl Fn(&mut A, A) + 'static,
    ) -> Stream<'s, (K, Window), A> {
        let df = self.windows.timed.df.clone();
        let config = self.windows.config;
        let (table, stream_time) = self.windows.restored(name, init, fold, merge);
        let output = finalize(table.coll.clone(), stream_time, config);
        // Final rows are emitted after the epoch's input: order them after it. Like a table's
        // changes, they are stamped with the epoch's time: a window's own times may be far in the
        // past (replayed history, event times of a test), and Kafka would soon delete records
        // stamped there by retention.
        let coll = output.inner.map(|(((k, w), a), t, d)| {
            (
                ((k, w), a, Meta::new(Pos::AfterInput, epoch_millis(t))),
                t,
                d,
            )
        });
        Stream {
            df,
            coll: coll.as_collection(),
        }
    }
}

/// A row of a windowed table.
type WindowRow<K, A> = ((K, Window), A);

/// Final emission from a windowed table: each window once, with its value, at the epoch whose
/// stream time closes it ([`WindowConfig::closes_at`]), as the window operator's own final mode
/// does. Its state is the table's open windows, which the table's restore brings back; windows
/// that closed before a restart close again at the restore epoch, whose output is dropped.
fn finalize<'s, K: Data, A: Data>(
    rows: VecCollection<'s, u64, ((K, Window), A)>,
    stream_time: StreamVec<'s, u64, u64>,
    config: WindowConfig,
) -> VecCollection<'s, u64, ((K, Window), A)> {
    rows.inner
        .binary_frontier(
            stream_time,
            Pipeline,
            Pipeline,
            "FinalWindows",
            move |_cap, _info| {
                // Per epoch: the window rows, and the stream times.
                let mut stash: Stash<(WindowRow<K, A>, isize), u64> = Stash::new();
                let mut open: HashMap<(K, Window), A> = HashMap::new();
                let mut closing: BTreeMap<u64, Vec<(K, Window)>> = BTreeMap::new();
                let mut now = 0u64;
                move |(rows, rows_frontier), (times, times_frontier), output| {
                    rows.for_each(|cap, data| {
                        for (row, t, d) in data.drain(..) {
                            stash.push_first(&cap, t, (row, d));
                        }
                    });
                    times.for_each(|cap, data| {
                        let Some(t) = cap.least().copied() else {
                            return;
                        };
                        for st in data.drain(..) {
                            stash.push_second(&cap, t, st);
                        }
                    });
                    while let Some((time, batch)) =
                        stash.pop_complete(&[rows_frontier, times_frontier])
                    {
                        let (cap, rows) = (batch.capability, batch.first);
                        let st = batch.second.into_iter().max().unwrap_or(0);
                        // New rows first (an update's new row replaces its old one), then
                        // the windows this stream time closes, then retractions: a window that
                        // expires in the epoch it closes is retracted after its final value.
                        let (inserted, retracted): (Vec<_>, Vec<_>) =
                            rows.into_iter().partition(|(_, d)| *d > 0);
                        for ((kw, a), _) in inserted {
                            let at = config.closes_at(&kw.1);
                            closing.entry(at).or_default().push(kw.clone());
                            open.insert(kw, a);
                        }
                        now = now.max(st);
                        let mut session = output.session(&cap);
                        while let Some(entry) = closing.first_entry() {
                            if *entry.key() > now {
                                break;
                            }
                            for kw in entry.remove() {
                                if let Some(a) = open.remove(&kw) {
                                    session.give(((kw, a), time, 1isize));
                                }
                            }
                        }
                        for ((kw, a), _) in retracted {
                            if open.get(&kw) == Some(&a) {
                                open.remove(&kw);
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}

/// Keeps the stream time (the largest event time seen, or the punctuated time when `idle` is set:
/// see [`Timed::punctuate_when_idle`]) in a table of its own, with a changelog. Returns what the
/// operator keeping stream time takes it from besides its own events (the restored value, at the
/// restore epoch, and each punctuation, at its epoch), and the kept value after every epoch that
/// changed it, sent to every worker.
pub(crate) fn kept_stream_time<'s>(
    df: &Dataflow<'s>,
    name: &str,
    times: VecCollection<'s, u64, (EventTime, Pos)>,
    idle: Option<u64>,
) -> (VecCollection<'s, u64, u64>, StreamVec<'s, u64, u64>) {
    let state = df.state::<(), u64>(&format!("{name}.stream-time"));
    let restored = state.restored();
    let maxima = times
        .inner
        .unary(Pipeline, "StreamTimeMaxima", |_cap, _info| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let mut maxima: BTreeMap<u64, (u64, Pos)> = BTreeMap::new();
                    for ((t, pos), time, d) in data.drain(..) {
                        if d > 0 {
                            let m = maxima.entry(time).or_insert((t.0, pos));
                            *m = (*m).max((t.0, pos));
                        }
                    }
                    for (time, (max, pos)) in maxima {
                        output
                            .session(&cap.delayed(&time, 0))
                            .give((((), max, pos), time, 1isize));
                    }
                });
            }
        })
        .as_collection();
    let mut moved = restored.clone().map(|((), t)| t);
    let maxima = match idle {
        None => maxima,
        Some(idle) => {
            let punctuated = punctuate(df, &maxima, &restored, idle);
            moved = moved.concat(punctuated.clone().map(|((), t, _)| t));
            maxima.concat(punctuated)
        }
    };
    let kept = maxima.fold_by_key(restored, route::<()>, state.name(), |_, old, t| {
        Some(old.map_or(t, |old| (*old).max(t)))
    });
    let per_epoch = kept
        .inner
        .clone()
        .flat_map(|(((), t), _time, d)| (d > 0).then_some(t))
        .broadcast();
    state.keep(kept);
    (moved, per_epoch)
}

/// The punctuations of a stream time whose epoch maxima are `maxima` and whose restored value is
/// `restored`: the stream time the wall clock moves it to, at each epoch where it does (see
/// [`Punctuation`]). One worker computes them from the clock's ticks, so every worker, and the
/// stream-time changelog, get the same ones.
fn punctuate<'s>(
    df: &Dataflow<'s>,
    maxima: &VecCollection<'s, u64, ((), u64, Pos)>,
    restored: &VecCollection<'s, u64, ((), u64)>,
    idle: u64,
) -> VecCollection<'s, u64, ((), u64, Pos)> {
    let owner = route::<()>(&());
    let times = maxima
        .inner
        .clone()
        .flat_map(|(((), t, _), time, d)| (d > 0).then_some((t, time)))
        .concat(
            restored
                .inner
                .clone()
                .flat_map(|(((), t), time, d)| (d > 0).then_some((t, time))),
        );
    times
        .binary_frontier(
            df.clock(),
            Exchange::new(move |_: &(u64, u64)| owner),
            Exchange::new(move |_: &u64| owner),
            "Punctuate",
            move |_cap, _info| {
                let mut stash: Stash<u64, u64> = Stash::new();
                let mut punctuation = Punctuation::new(idle);
                move |(times, times_frontier), (ticks, ticks_frontier), output| {
                    times.for_each(|cap, data| {
                        for (t, time) in data.drain(..) {
                            stash.push_first(&cap, time, t);
                        }
                    });
                    ticks.for_each(|cap, data| {
                        let Some(time) = cap.least().copied() else {
                            return;
                        };
                        for wall in data.drain(..) {
                            stash.push_second(&cap, time, wall);
                        }
                    });
                    while let Some((time, batch)) =
                        stash.pop_complete(&[times_frontier, ticks_frontier])
                    {
                        let wall = batch.second.into_iter().max();
                        if let Some(t) = punctuation.epoch(batch.first, wall) {
                            output.session(&batch.capability).give((
                                ((), t, Pos::AfterInput),
                                time,
                                1isize,
                            ));
                        }
                    }
                }
            },
        )
        .as_collection()
}

/// Where the wall clock moves a stream time that events have stopped moving (see
/// [`Timed::punctuate_when_idle`]), epoch by epoch.
#[derive(Clone, Debug)]
struct Punctuation {
    /// Wall-clock milliseconds of quiet per step.
    idle: u64,
    /// The stream time, once an event (or a restore) has set it.
    now: Option<u64>,
    /// The stream time events last moved it to, and the wall clock then (at the first tick after).
    anchor: Option<(u64, u64)>,
}

impl Punctuation {
    fn new(idle: u64) -> Self {
        Punctuation {
            idle: idle.max(1),
            now: None,
            anchor: None,
        }
    }

    /// Takes in a complete epoch: the event times (and restored stream times) in it, and the wall
    /// clock at it if it ticked. Returns the stream time the epoch punctuates to, if it does.
    fn epoch(&mut self, times: impl IntoIterator<Item = u64>, wall: Option<u64>) -> Option<u64> {
        let before = self.now;
        for t in times {
            self.now = Some(self.now.map_or(t, |now| now.max(t)));
        }
        let now = self.now?;
        if self.now != before {
            self.anchor = wall.map(|wall| (now, wall));
            return None;
        }
        let wall = wall?;
        let Some((from, since)) = self.anchor else {
            self.anchor = Some((now, wall));
            return None;
        };
        let steps = wall.saturating_sub(since) / self.idle;
        let punctuated = from.saturating_add(steps.saturating_mul(self.idle));
        (punctuated > now).then(|| {
            self.now = Some(punctuated);
            punctuated
        })
    }
}

/// A late event's key and value for the dead-letter topic: their JSON, or their debug form if
/// they have none.
pub(crate) fn json_late<K: Data, V: Data>(k: &K, v: &V) -> (Vec<u8>, Vec<u8>) {
    (json_or_debug(k), json_or_debug(v))
}

/// JSON, or the debug form of what has no JSON.
fn json_or_debug<T: Data>(x: &T) -> Vec<u8> {
    serde_json::to_vec(x).unwrap_or_else(|_| format!("{x:?}").into_bytes())
}

/// Sends late events `(position, (key JSON, value JSON), event time)` to the dead-letter topic,
/// with `reason`, their origin and the refusing `operator` (a windowed table's or a stream join's
/// name) in headers. An event late for several operators (or for several
/// hopping windows of one) is written once per refusal.
pub(crate) fn late_letters<'s>(
    df: &Dataflow<'s>,
    late: VecCollection<'s, u64, LateEvent>,
    operator: &str,
    reason: &'static str,
) {
    let operator = operator.to_string();
    let sources = df.plan.borrow().sources.clone();
    let records = late.inner.map(move |((pos, (key, value), t), _time, _d)| {
        let (source, partition, offset) = pos.origin().unwrap_or((u32::MAX, -1, -1));
        let topic = sources.get(source as usize).cloned().unwrap_or_default();
        log::debug!("late event from `{topic}`/{partition}@{offset}: {reason}");
        DeadLetter::new(reason, Some(key), Some(value))
            .origin(&topic, partition, offset)
            .event_time(t.0)
            .operator(&operator)
            .into_item(pos)
    });
    df.push_output(records);
}

#[cfg(test)]
mod tests {
    use super::Punctuation;

    #[test]
    fn quiet_stream_time_follows_the_wall_clock_in_steps_of_the_idle_time() {
        let mut p = Punctuation::new(1_000);
        // Events move stream time to 200 at wall time 50: the anchor.
        assert_eq!(p.epoch([100, 200], Some(50)), None);
        assert_eq!(p.epoch([], Some(1_049)), None, "less than idle");
        assert_eq!(p.epoch([], Some(1_050)), Some(1_200), "one idle step");
        assert_eq!(p.epoch([], Some(2_000)), None, "the same step");
        assert_eq!(p.epoch([], None), None, "no tick, no punctuation");
        assert_eq!(
            p.epoch([], Some(4_100)),
            Some(4_200),
            "several steps at once"
        );
    }

    #[test]
    fn an_event_that_moves_stream_time_restarts_the_idle_time() {
        let mut p = Punctuation::new(1_000);
        assert_eq!(p.epoch([200], Some(0)), None);
        assert_eq!(p.epoch([], Some(1_000)), Some(1_200));
        // Older events do not move stream time, nor the anchor.
        assert_eq!(p.epoch([900], Some(1_500)), None);
        assert_eq!(p.epoch([], Some(2_000)), Some(2_200));
        // A newer one does: the next step is an idle time after it.
        assert_eq!(p.epoch([5_000], Some(2_100)), None);
        assert_eq!(p.epoch([], Some(3_099)), None);
        assert_eq!(p.epoch([], Some(3_100)), Some(6_000));
    }

    #[test]
    fn nothing_punctuates_before_an_event_or_a_restore_sets_stream_time() {
        let mut p = Punctuation::new(10);
        assert_eq!(p.epoch([], Some(0)), None);
        assert_eq!(p.epoch([], Some(1_000)), None);
        // A restored stream time (at the restore epoch, which has no tick) counts from the
        // first tick after it.
        assert_eq!(p.epoch([7_000], None), None);
        assert_eq!(p.epoch([], Some(5_000)), None);
        assert_eq!(p.epoch([], Some(5_025)), Some(7_020));
    }
}
