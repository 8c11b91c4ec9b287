//! The typed dataflow API: [`Dataflow`], [`Stream`] and [`Table`].
//!
//! A program describes its computation once, in a closure that receives a [`Dataflow`]; faustus
//! runs that closure on every worker of every process. Streams are append-only events; tables
//! hold at most one value per key, and an update retracts the old value.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::{AsCollection, VecCollection};
use faustus_connectors::{OutRecord, TopicSpec};
use faustus_operators::FoldByKey as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::operators::vec::Map as _;
use timely::dataflow::operators::{OkErr, ToStream as _};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use crate::dead_letter::DeadLetter;
use crate::input::Input;
use crate::poison::{catch, json, OnPanic, Poisoned};
use crate::record::{Headers, Meta};
use crate::runtime::source::{source, SourceItem};
use crate::runtime::table::{maintain, Placement, Replicas, Tables};
use crate::runtime::{route, CommitItem, Io, Pos, Startup};
use crate::state::{make_replica, replica_slot, Registrar, ReplicaSlot};
use crate::topic::{RecordError, TextEncoder, Topic};

/// What keys and values in a dataflow must be: cloneable, ordered, hashable, printable and
/// serializable (they move between workers and processes, and to Kafka and HTTP as JSON).
/// Derive `Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize`.
pub trait Data:
    differential_dataflow::ExchangeData + Hash + Serialize + DeserializeOwned + Sync
{
}
impl<T> Data for T where
    T: differential_dataflow::ExchangeData + Hash + Serialize + DeserializeOwned + Sync
{
}

/// What the dataflow declares, collected while it is built.
pub(crate) struct Plan<'s> {
    /// Streams of records and positions for the committer.
    pub outputs: Vec<StreamVec<'s, u64, CommitItem>>,
    /// Output topics by index (index 0 is the dead-letter topic).
    pub out_topics: Vec<String>,
    /// Input topics by source index.
    pub sources: Vec<String>,
    /// Topics to create or check.
    pub specs: BTreeMap<String, TopicSpec>,
    /// Table names in use.
    pub tables: BTreeMap<String, usize>,
    /// Configuration errors found while building (reported by `App::start`).
    pub errors: Vec<String>,
    /// The typed topics the program reads or writes, by name: how the `send` command encodes
    /// a record given as text.
    pub encoders: BTreeMap<String, TextEncoder>,
    /// The clock's ticks, once an operator asked for them ([`Dataflow::clock`]).
    pub clock: Option<StreamVec<'s, u64, u64>>,
}

/// Process-wide facts a dataflow needs while it is built.
pub(crate) struct Ctx {
    pub app_id: String,
    pub partitions: i32,
    pub startup: Arc<Startup>,
    pub tables: Arc<Tables>,
    pub workers: usize,
    /// What a panic in one of the program's functions does.
    pub on_panic: OnPanic,
    /// Input topics by source index, for the origin of a poisoned record (filled as sources
    /// are declared).
    pub sources: RefCell<Vec<String>>,
    /// The frontier of what the committer's worker has taken in: epochs it has passed no longer
    /// count against the sources' share of `--max-uncommitted-bytes`.
    pub committed: ProbeHandle<u64>,
}

/// The dataflow under construction, handed to the program's build closure on every worker.
#[derive(Clone)]
pub struct Dataflow<'s> {
    pub(crate) scope: Scope<'s, u64>,
    pub(crate) ctx: Rc<Ctx>,
    pub(crate) plan: Rc<RefCell<Plan<'s>>>,
}

impl<'s> Dataflow<'s> {
    pub(crate) fn new(scope: Scope<'s, u64>, ctx: Ctx) -> Self {
        let dead_letter = crate::dead_letter::topic(&ctx.app_id);
        let mut specs = BTreeMap::new();
        specs.insert(dead_letter.clone(), TopicSpec::new(&dead_letter, 1));
        Dataflow {
            scope,
            plan: Rc::new(RefCell::new(Plan {
                outputs: Vec::new(),
                out_topics: vec![dead_letter],
                sources: Vec::new(),
                specs,
                tables: BTreeMap::new(),
                errors: Vec::new(),
                encoders: BTreeMap::new(),
                clock: None,
            })),
            ctx: Rc::new(ctx),
        }
    }

    /// This worker's index among all workers of all processes.
    pub fn worker_index(&self) -> usize {
        self.scope.index()
    }

    /// The number of workers in all processes.
    pub fn peers(&self) -> usize {
        self.scope.peers()
    }

    /// The timely scope the dataflow is built in, for a program's own timely or differential
    /// operators (its time is the epoch, a `u64`). Bring their results back with
    /// [`Stream::from_collection`], [`Table::from_collection`] or [`Dataflow::state`], which give
    /// them routing, changelogs, exactly-once output and HTTP.
    pub fn scope(&self) -> Scope<'s, u64> {
        self.scope
    }

    /// The wall clock, one tick per epoch on worker 0 (see [`crate::runtime::clock`]); one
    /// clock serves every operator that asks.
    pub(crate) fn clock(&self) -> StreamVec<'s, u64, u64> {
        let mut plan = self.plan.borrow_mut();
        plan.clock
            .get_or_insert_with(|| {
                crate::runtime::clock::clock(
                    self.scope,
                    Arc::clone(&self.ctx.startup),
                    self.ctx.committed.clone(),
                )
            })
            .clone()
    }

    /// Notes a configuration error, reported when the application starts.
    pub(crate) fn config_error(&self, message: String) {
        self.plan.borrow_mut().errors.push(message);
    }

    /// Logs `message` as a warning, once per application run (on the first worker, not while
    /// planning).
    pub(crate) fn warn_once(&self, message: &str) {
        if self.scope.index() == 0 && !self.ctx.startup.planning {
            log::warn!("{message}");
        }
    }

    /// The dead-letter topic: records that failed to decode, with the reason in headers.
    pub fn dead_letter_topic(&self) -> String {
        crate::dead_letter::topic(&self.ctx.app_id)
    }

    /// The events of `topic`, as a stream. A record that does not decode (or has no value) goes
    /// to the dead-letter topic.
    pub fn stream<K: Data, V: Data>(&self, topic: &Topic<K, V>) -> Stream<'s, K, V> {
        self.know(topic);
        let t = topic.clone();
        self.source(topic.name(), topic.partitions, move |record| {
            match t.decode_record(record.key, record.value)? {
                (key, Some(value)) => Ok((key, value)),
                (_, None) => Err(RecordError::Tombstone),
            }
        })
    }

    /// The events of several topics of the same types, as one stream (Kafka Streams'
    /// `builder.stream(List.of(...))`, Faust's `app.topic("a", "b")`). Each topic is a source of
    /// its own; within an epoch, events order by topic (in the order given), partition and
    /// offset. No topics is a configuration error.
    pub fn streams<K: Data, V: Data>(&self, topics: &[Topic<K, V>]) -> Stream<'s, K, V> {
        let mut streams = topics.iter().map(|t| self.stream(t));
        let Some(first) = streams.next() else {
            self.config_error("`Dataflow::streams` was given no topics: name at least one".into());
            let none = Vec::<((K, V, Meta), u64, isize)>::new().to_stream(self.scope);
            return Stream::from_collection(self, none.as_collection());
        };
        streams.fold(first, Stream::merge)
    }

    /// The table kept from `topic` (upsert: the last value per key wins, a null value deletes
    /// the key), named `name`, with its changelog.
    pub fn table<K: Data, V: Data>(&self, topic: &Topic<K, V>, name: &str) -> Table<'s, K, V> {
        self.know(topic);
        let t = topic.clone();
        self.source(topic.name(), topic.partitions, move |record| {
            t.decode_record(record.key, record.value)
        })
        .upsert(name)
    }

    /// A source of decoded `(key, value)` records from `topic`.
    fn source<K: Data, V: Data>(
        &self,
        topic: &str,
        partitions: Option<i32>,
        decode: impl FnMut(&faustus_connectors::RawRecord<'_>) -> Result<(K, V), RecordError> + 'static,
    ) -> Stream<'s, K, V> {
        let index = {
            let mut plan = self.plan.borrow_mut();
            plan.sources.push(topic.to_string());
            self.ctx.sources.borrow_mut().push(topic.to_string());
            plan.specs
                .entry(topic.to_string())
                .or_insert_with(|| TopicSpec {
                    partitions,
                    ..TopicSpec::new(topic, 1)
                });
            (plan.sources.len() - 1) as u32
        };
        let items: StreamVec<'s, u64, SourceItem<(K, V)>> = source(
            self.scope,
            Arc::clone(&self.ctx.startup),
            index,
            topic.to_string(),
            self.ctx.committed.clone(),
            decode,
        );
        self.stream_of(items)
    }

    /// The stream of a source's records; its positions and dead letters go to the committer.
    fn stream_of<K: Data, V: Data>(
        &self,
        items: StreamVec<'s, u64, SourceItem<(K, V)>>,
    ) -> Stream<'s, K, V> {
        let (data, commits) = items.ok_err(|x| x);
        self.plan.borrow_mut().outputs.push(commits);
        Stream {
            df: self.clone(),
            coll: data.as_collection().map(|((k, v), meta)| (k, v, meta)),
        }
    }

    /// The items of `input`, an iterator or a channel, as a stream (see [`crate::input`] for
    /// what each guarantees). Reading the same input twice is a configuration error.
    pub fn input<K: Data, V: Data>(&self, input: &Input<K, V>) -> Stream<'s, K, V> {
        let name = input.source_name();
        let index = {
            let mut plan = self.plan.borrow_mut();
            if input.name().is_empty() {
                plan.errors
                    .push("an `Input` has an empty name: give it a name".to_string());
            } else if plan.sources.contains(&name) {
                plan.errors.push(format!(
                    "input `{}` is read twice: read it once and clone the stream",
                    input.name()
                ));
            }
            plan.sources.push(name.clone());
            self.ctx.sources.borrow_mut().push(name.clone());
            (plan.sources.len() - 1) as u32
        };
        let items = crate::runtime::input::input_source(
            self.scope,
            Arc::clone(&self.ctx.startup),
            index,
            name,
            input.source.clone(),
            self.ctx.workers,
            self.ctx.committed.clone(),
        );
        self.stream_of(items)
    }

    /// Notes how records of `topic` are encoded from text (see [`Plan::encoders`]).
    pub(crate) fn know<K: 'static, V: 'static>(&self, topic: &Topic<K, V>) {
        self.plan
            .borrow_mut()
            .encoders
            .entry(topic.name().to_string())
            .or_insert_with(|| topic.text_encoder());
    }

    /// The index of output topic `name`, registering it (created with `partitions` if missing).
    pub(crate) fn out_topic(&self, name: &str, partitions: Option<i32>, compacted: bool) -> u32 {
        let mut plan = self.plan.borrow_mut();
        let default = self.ctx.partitions;
        plan.specs
            .entry(name.to_string())
            .or_insert_with(|| TopicSpec {
                compacted,
                ..TopicSpec::new(name, partitions.unwrap_or(default))
            });
        match plan.out_topics.iter().position(|t| t == name) {
            Some(i) => i as u32,
            None => {
                plan.out_topics.push(name.to_string());
                (plan.out_topics.len() - 1) as u32
            }
        }
    }

    /// Claims a table name (they must be unique: they name changelog topics and HTTP paths). A
    /// name that is not valid, or taken, is a configuration error that `App::start` reports
    /// (the build goes on, so that every such error is found in one pass).
    pub(crate) fn claim_table(&self, name: &str) {
        let valid = !name.is_empty()
            && name.len() <= 200
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        let mut plan = self.plan.borrow_mut();
        if !valid {
            plan.errors.push(format!(
                "table name `{name}` must be 1 to 200 letters, digits, `.`, `_` and `-` (it names a Kafka topic and an HTTP path)"
            ));
        }
        *plan.tables.entry(name.to_string()).or_insert(0) += 1;
    }

    /// Gives back a claimed table name (a table renamed before the dataflow runs).
    fn release_table(&self, name: &str) {
        let mut plan = self.plan.borrow_mut();
        if let Some(n) = plan.tables.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                plan.tables.remove(name);
            }
        }
    }

    /// The configuration errors of the dataflow built so far.
    pub(crate) fn errors(&self) -> Vec<String> {
        let plan = self.plan.borrow();
        let mut errors = plan.errors.clone();
        for (name, _) in plan.tables.iter().filter(|(_, n)| **n > 1) {
            errors.push(format!(
                "two tables are named `{name}`: table names must be unique (two joins of the same tables get the same name: rename one with `Table::named`)"
            ));
        }
        errors
    }

    pub(crate) fn push_output(&self, output: StreamVec<'s, u64, CommitItem>) {
        self.plan.borrow_mut().outputs.push(output);
    }

    /// Sends the events an operator's function failed on, `(key, value, meta, message)`, to the
    /// committer as dead letters of `operator` (or the order to stop: see [`Dataflow::guarded`]).
    pub(crate) fn push_failed<K: Data, V: Data>(
        &self,
        operator: &str,
        failed: VecCollection<'s, u64, (K, V, Meta, String)>,
    ) {
        let ctx = Rc::clone(&self.ctx);
        let operator = operator.to_string();
        let items = failed.inner.flat_map(move |((k, v, m, message), _t, r)| {
            (r > 0).then(|| {
                Failure::new(message, m.pos())
                    .with_record(&k, &v)
                    .into_item(&operator, &ctx)
            })
        });
        self.push_output(items);
    }

    /// Replaces each record of `coll` by the records `f` returns for it. `f` runs the program's
    /// function inside [`catch`]; when it fails, the record yields nothing and the
    /// [`Failure`] becomes a dead letter of `operator` (or, under [`OnPanic::Stop`], stops the
    /// application) in the record's epoch. A retraction whose function fails yields no letter:
    /// its insertion did.
    pub(crate) fn guarded<D, D2, I>(
        &self,
        coll: VecCollection<'s, u64, D>,
        operator: &str,
        mut f: impl FnMut(D) -> Result<I, Failure> + 'static,
    ) -> VecCollection<'s, u64, D2>
    where
        D: Data,
        D2: Data,
        I: IntoIterator<Item = D2>,
    {
        let ctx = Rc::clone(&self.ctx);
        let operator = operator.to_string();
        let (records, failures) = coll
            .inner
            .flat_map(move |(d, t, r)| {
                let (records, failure) = match f(d) {
                    Ok(records) => (Some(records.into_iter().map(move |d| Ok((d, t, r)))), None),
                    Err(failure) if r > 0 => {
                        let item = failure.into_item(&operator, &ctx);
                        (None, Some(Err(item)))
                    }
                    Err(_) => (None, None),
                };
                records.into_iter().flatten().chain(failure)
            })
            .ok_err(|x| x);
        self.push_output(failures);
        records.as_collection()
    }
}

/// Why the program's function failed on one record (see [`Dataflow::guarded`]).
pub(crate) struct Failure {
    message: String,
    pos: Pos,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Failure {
    /// A failure with the panic's `message`, of the record at `pos`.
    pub(crate) fn new(message: String, pos: Pos) -> Self {
        Failure {
            message,
            pos,
            key: None,
            value: None,
        }
    }

    /// The failure of a record whose key and value the operator still holds.
    pub(crate) fn with_record<K: Data, V: Data>(mut self, key: &K, value: &V) -> Self {
        self.key = Some(json(key));
        self.value = Some(json(value));
        self
    }

    /// The failure of a record whose key the operator still holds.
    pub(crate) fn with_key<K: Data>(mut self, key: &K) -> Self {
        self.key = Some(json(key));
        self
    }

    fn into_item(self, operator: &str, ctx: &Ctx) -> CommitItem {
        Poisoned {
            operator,
            message: self.message,
            pos: self.pos,
            key: self.key,
            value: self.value,
        }
        .into_item(ctx.on_panic, &ctx.sources.borrow())
    }
}

/// An append-only stream of `(key, value)` events, each with its [`Meta`] (position, timestamp
/// and headers; see [`crate::record`]).
#[derive(Clone)]
pub struct Stream<'s, K: 'static, V: 'static> {
    pub(crate) df: Dataflow<'s>,
    pub(crate) coll: VecCollection<'s, u64, (K, V, Meta)>,
}

impl<'s, K: Data, V: Data> Stream<'s, K, V> {
    /// Transforms each event.
    pub fn map<K2: Data, V2: Data>(
        self,
        f: impl Fn(K, V) -> (K2, V2) + 'static,
    ) -> Stream<'s, K2, V2> {
        let coll = self
            .df
            .guarded(self.coll, "map", move |(k, v, m): (K, V, Meta)| {
                let pos = m.pos();
                match catch(|| f(k, v)) {
                    Ok((k, v)) => Ok(Some((k, v, m))),
                    Err(message) => Err(Failure::new(message, pos)),
                }
            });
        Stream { df: self.df, coll }
    }

    /// Transforms each event, reading and changing its timestamp and headers (what
    /// [`Stream::to_topic`] writes with it).
    ///
    /// ```no_run
    /// # use faustus::prelude::*;
    /// # fn build(df: &Dataflow<'_>, orders: &Topic<String, i64>, out: &Topic<String, i64>) {
    /// df.stream(orders)
    ///     .map_record(|k, amount, meta| {
    ///         let source = meta.header("source").map(<[u8]>::to_vec).unwrap_or_default();
    ///         meta.headers = vec![("origin".to_string(), source)];
    ///         (k, amount)
    ///     })
    ///     .to_topic(out);
    /// # }
    /// ```
    pub fn map_record<K2: Data, V2: Data>(
        self,
        f: impl Fn(K, V, &mut Meta) -> (K2, V2) + 'static,
    ) -> Stream<'s, K2, V2> {
        let coll = self.df.guarded(
            self.coll,
            "map_record",
            move |(k, v, mut m): (K, V, Meta)| {
                let pos = m.pos();
                match catch(|| f(k, v, &mut m)) {
                    Ok((k, v)) => Ok(Some((k, v, m))),
                    Err(message) => Err(Failure::new(message, pos)),
                }
            },
        );
        Stream { df: self.df, coll }
    }

    /// Calls `f` on each event and passes the events on unchanged (for logging or metrics; Kafka
    /// Streams' `peek`). `f` runs on the worker that holds the event, once per run: an epoch that
    /// is replayed after a crash calls it again.
    pub fn peek(self, f: impl Fn(&K, &V, &Meta) + 'static) -> Stream<'s, K, V> {
        let coll = self.df.guarded(
            self.coll,
            "peek",
            move |(k, v, m): (K, V, Meta)| match catch(|| f(&k, &v, &m)) {
                Ok(()) => Ok(Some((k, v, m))),
                Err(message) => Err(Failure::new(message, m.pos()).with_record(&k, &v)),
            },
        );
        Stream { df: self.df, coll }
    }

    /// The events of both streams (Kafka Streams' `merge`). Within an epoch, events keep the
    /// order of their inputs' positions.
    pub fn merge(self, other: Stream<'s, K, V>) -> Stream<'s, K, V> {
        Stream {
            df: self.df,
            coll: self.coll.concat(other.coll),
        }
    }

    /// Transforms each event's value.
    pub fn map_values<V2: Data>(self, f: impl Fn(V) -> V2 + 'static) -> Stream<'s, K, V2> {
        self.map(move |k, v| (k, f(v)))
    }

    /// Keeps the events for which `f` is true.
    pub fn filter(self, f: impl Fn(&K, &V) -> bool + 'static) -> Stream<'s, K, V> {
        let coll = self.df.guarded(
            self.coll,
            "filter",
            move |(k, v, m): (K, V, Meta)| match catch(|| f(&k, &v)) {
                Ok(keep) => Ok(keep.then_some((k, v, m))),
                Err(message) => Err(Failure::new(message, m.pos()).with_record(&k, &v)),
            },
        );
        Stream { df: self.df, coll }
    }

    /// Replaces each event by any number of events.
    pub fn flat_map<K2: Data, V2: Data, I>(
        self,
        f: impl Fn(K, V) -> I + 'static,
    ) -> Stream<'s, K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let coll = self
            .df
            .guarded(self.coll, "flat_map", move |(k, v, m): (K, V, Meta)| {
                let pos = m.pos();
                // The function's iterator runs inside the catch too: a lazy one panics there.
                match catch(|| f(k, v).into_iter().collect::<Vec<_>>()) {
                    Ok(records) => Ok(records
                        .into_iter()
                        .enumerate()
                        .map(move |(i, (k, v))| (k, v, m.nth(i as u32)))),
                    Err(message) => Err(Failure::new(message, pos)),
                }
            });
        Stream { df: self.df, coll }
    }

    /// Re-keys each event (Faust's `group_by`): the new key decides which worker aggregates it.
    pub fn group_by<K2: Data>(self, f: impl Fn(&K, &V) -> K2 + 'static) -> Stream<'s, K2, V> {
        let coll = self.df.guarded(
            self.coll,
            "group_by",
            move |(k, v, m): (K, V, Meta)| match catch(|| f(&k, &v)) {
                Ok(key) => Ok(Some((key, v, m))),
                Err(message) => Err(Failure::new(message, m.pos()).with_record(&k, &v)),
            },
        );
        Stream { df: self.df, coll }
    }

    /// Writes every event to `topic`, in the order the events were read, with its timestamp and
    /// headers.
    pub fn to_topic(&self, topic: &Topic<K, V>) {
        self.df.know(topic);
        let index = self.df.out_topic(topic.name(), topic.partitions, false);
        let t = topic.clone();
        let records = self.coll.inner.clone().map(move |((k, v, meta), _t, _d)| {
            out_record(
                &t,
                index,
                &k,
                Some(&v),
                meta.pos(),
                meta.timestamp,
                meta.headers,
            )
        });
        self.df.push_output(records);
    }

    /// Folds the events of each key into a table named `name`: the entry becomes
    /// `f(key, entry, value)`. The table has a changelog and survives restarts.
    pub fn fold<A: Data>(
        self,
        name: &str,
        f: impl Fn(&K, Option<&A>, V) -> A + 'static,
    ) -> Table<'s, K, A> {
        self.fold_core(name, move |k, a, v| Some(f(k, a, v)))
    }

    /// Like [`Stream::fold`], where `None` removes the key.
    pub fn fold_core<A: Data>(
        self,
        name: &str,
        f: impl Fn(&K, Option<&A>, V) -> Option<A> + 'static,
    ) -> Table<'s, K, A> {
        let state = self.df.state::<K, A>(name);
        let folded = self.coll.try_scan_by_key(
            state.restored(),
            state.owner(),
            name,
            false,
            move |k, a, v| catch(|| f(k, a, v)),
        );
        self.df.push_failed(&format!("fold({name})"), folded.failed);
        // The fold keeps each key on the worker the state routes it to.
        state.keep_placed(folded.table)
    }

    /// A running aggregate: folds the events of each key like [`Stream::fold`], and also returns
    /// the stream of results, one event per input event (the key's entry right after that event,
    /// in input order; Kafka Streams' `aggregate(...).toStream()` without caching). The table has
    /// a changelog and survives restarts; the running stream continues from the restored entry.
    ///
    /// ```no_run
    /// # use faustus::prelude::*;
    /// # fn build(df: &Dataflow<'_>, orders: &Topic<String, i64>) {
    /// let (totals, running) = df
    ///     .stream(orders)
    ///     .scan("running_total", |_, total: Option<&i64>, amount| total.copied().unwrap_or(0) + amount);
    /// running.to_topic(&Topic::new("running-totals"));
    /// totals.public();
    /// # }
    /// ```
    pub fn scan<A: Data>(
        self,
        name: &str,
        f: impl Fn(&K, Option<&A>, V) -> A + 'static,
    ) -> (Table<'s, K, A>, Stream<'s, K, A>) {
        let state = self.df.state::<K, A>(name);
        let folded = self.coll.try_scan_by_key(
            state.restored(),
            state.owner(),
            name,
            true,
            move |k, a, v| catch(|| Some(f(k, a, v))),
        );
        self.df.push_failed(&format!("scan({name})"), folded.failed);
        let running = Stream {
            df: self.df.clone(),
            coll: folded.running.flat_map(|(k, a, p)| a.map(|a| (k, a, p))),
        };
        (state.keep_placed(folded.table), running)
    }

    /// Counts the events per key.
    pub fn count(self, name: &str) -> Table<'s, K, i64> {
        self.fold(name, |_, n: Option<&i64>, _| n.copied().unwrap_or(0) + 1)
    }

    /// Combines the values of each key with `f` (the first value is taken as it is).
    pub fn reduce(self, name: &str, f: impl Fn(&V, V) -> V + 'static) -> Table<'s, K, V> {
        self.fold(name, move |_, acc: Option<&V>, v| match acc {
            Some(acc) => f(acc, v),
            None => v,
        })
    }

    /// Sums the values of each key.
    pub fn sum(self, name: &str) -> Table<'s, K, V>
    where
        V: std::ops::Add<Output = V>,
    {
        self.reduce(name, |acc, v| acc.clone() + v)
    }

    /// The differential collection behind the stream: `(key, value, meta)` with multiplicity 1,
    /// at the epoch the event was read.
    pub fn collection(&self) -> VecCollection<'s, u64, (K, V, Meta)> {
        self.coll.clone()
    }

    /// The stream of a program's own collection of events `(key, value, meta)`: the way back
    /// from [`Stream::collection`]. A stream is append-only: records with a multiplicity of
    /// `d > 0` count `d` times, and folds ignore retractions. Positions order the events of an
    /// epoch (keep the input's, or make them with [`Pos::nth`] and [`Meta::new`]).
    pub fn from_collection(df: &Dataflow<'s>, coll: VecCollection<'s, u64, (K, V, Meta)>) -> Self {
        Stream {
            df: df.clone(),
            coll,
        }
    }
}

impl<'s, K: Data, V: Data> Stream<'s, K, Option<V>> {
    /// The table of the last value per key, where `None` deletes the key (an upsert table),
    /// named `name`, with its changelog.
    pub fn upsert(self, name: &str) -> Table<'s, K, V> {
        self.fold_core(name, |_, _, v| v)
    }
}

/// A table: at most one value per key, kept up to date as its inputs change.
#[derive(Clone)]
pub struct Table<'s, K: 'static, A: 'static> {
    pub(crate) df: Dataflow<'s>,
    pub(crate) name: String,
    pub(crate) coll: VecCollection<'s, u64, (K, A)>,
    changes: VecCollection<'s, u64, (K, Option<A>, Pos)>,
    /// The read copy, made when the table is made public.
    replica: ReplicaSlot<K, A>,
    register: Registrar<K, A>,
    /// The changelog topic the table is restored from, if any.
    changelog: Option<String>,
}

impl<'s, K: Data, A: Data> Table<'s, K, A> {
    /// A table whose updates reach the worker that keeps their key as `placement` says: writes
    /// its net changes to changelog `writes` (an output topic index), is restored from changelog
    /// `restored_from` (for the restore's progress), and is served by `register` once made
    /// public.
    pub(crate) fn maintained(
        df: Dataflow<'s>,
        name: &str,
        coll: VecCollection<'s, u64, (K, A)>,
        writes: Option<u32>,
        restored_from: Option<String>,
        placement: Placement<K>,
        register: Registrar<K, A>,
    ) -> Self {
        let replica = replica_slot();
        if let Io::Driver(harness) = &df.ctx.startup.io {
            // A test driver reads every table, public or not.
            harness.register_table(name, Arc::new(make_replica(&replica)));
        }
        let restore_epoch = df.ctx.startup.resume_epoch;
        // A table that writes the changelog it restores from is checkpointed with it.
        let checkpoint = match (writes, &restored_from, &df.ctx.startup.checkpoints) {
            (Some(_), Some(topic), Some(checkpoints)) => {
                Some((Arc::clone(checkpoints), topic.clone()))
            }
            _ => None,
        };
        let (changes, records) = maintain(
            coll.clone(),
            Rc::clone(&replica),
            writes,
            name,
            placement,
            restore_epoch,
            checkpoint,
        );
        df.push_output(records);
        Table {
            df,
            name: name.to_string(),
            coll,
            changes,
            replica,
            register,
            changelog: restored_from,
        }
    }

    /// Table `name` computed from a program's own collection (at most one value per key, else
    /// the last value in key order counts): no changelog of its own, so after a restart it is
    /// recomputed from its inputs, which must be restored (tables, [`crate::State`]s). Joins of
    /// tables are such tables. For a table with a changelog, use [`Dataflow::state`].
    pub fn from_collection(
        df: &Dataflow<'s>,
        name: &str,
        coll: VecCollection<'s, u64, (K, A)>,
    ) -> Self {
        df.claim_table(name);
        Table::maintained(
            df.clone(),
            name,
            coll,
            None,
            None,
            Placement::Route(route::<K>),
            Tables::register::<K, A>,
        )
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames a table that has no changelog of its own (a join of tables, a table from a
    /// collection): its HTTP path and the name it is listed by. A table with a changelog is
    /// named where it is made (the name is its changelog's). Call it before
    /// [`Table::public`].
    pub fn named(mut self, name: &str) -> Self {
        if self.changelog.is_some() {
            self.df.plan.borrow_mut().errors.push(format!(
                "table `{}` has a changelog: it cannot be renamed `{name}`; name it where it is made",
                self.name
            ));
            return self;
        }
        self.df.release_table(&self.name);
        self.df.claim_table(name);
        if let Io::Driver(harness) = &self.df.ctx.startup.io {
            harness.rename_table(&self.name, name);
        }
        self.name = name.to_string();
        self
    }

    /// Serves the table over HTTP (`/api/table/<name>/...`). Tables are private unless marked.
    pub fn public(self) -> Self {
        let ctx = &self.df.ctx;
        let shard = make_replica(&self.replica);
        ctx.tables.declare(
            &self.name,
            self.changelog.clone(),
            TypeId::of::<Replicas<K, A>>(),
        );
        (self.register)(
            &ctx.tables,
            &self.name,
            self.df.scope.index(),
            self.df.scope.peers(),
            ctx.workers,
            shard,
        );
        self
    }

    /// The table's changes: per epoch and key, the new value, or `None` when the key is removed,
    /// timestamped with the epoch's time. A restart's restore is not a change: after it, the
    /// stream goes on with the changes made since, so an aggregate of it counts each change once.
    pub fn changes(&self) -> Stream<'s, K, Option<A>> {
        let coll = self
            .changes
            .inner
            .clone()
            .map(|((k, v, pos), t, d)| ((k, v, Meta::new(pos, epoch_millis(t))), t, d));
        Stream {
            df: self.df.clone(),
            coll: coll.as_collection(),
        }
    }

    /// Writes the table's changes to `topic`: the new value, or a tombstone when a key is
    /// removed (so a compacted topic converges to the table), timestamped with the epoch's time.
    pub fn to_topic(&self, topic: &Topic<K, A>) {
        self.df.know(topic);
        let index = self.df.out_topic(topic.name(), topic.partitions, false);
        let t = topic.clone();
        let records = self
            .changes
            .inner
            .clone()
            .map(move |((k, v, pos), time, _d)| {
                out_record(
                    &t,
                    index,
                    &k,
                    v.as_ref(),
                    pos,
                    epoch_millis(time),
                    Headers::new(),
                )
            });
        self.df.push_output(records);
    }

    /// The differential collection behind the table: `(key, value)` pairs.
    pub fn collection(&self) -> VecCollection<'s, u64, (K, A)> {
        self.coll.clone()
    }

    /// The table of `f(value)` for every row, named `<name>-map` (rename it with
    /// [`Table::named`]). It has no changelog: after a restart it is recomputed from this table.
    pub fn map_values<B: Data>(&self, f: impl Fn(&K, A) -> B + 'static) -> Table<'s, K, B> {
        let operator = format!("map_values({})", self.name);
        let coll = self.df.guarded(
            self.coll.clone(),
            &operator,
            move |(k, a): (K, A)| match catch(|| f(&k, a)) {
                Ok(b) => Ok(Some((k, b))),
                Err(message) => Err(Failure::new(message, Pos::AfterInput).with_key(&k)),
            },
        );
        Table::from_collection(&self.df, &format!("{}-map", self.name), coll)
    }

    /// The table of the rows for which `f` is true, named `<name>-filter` (rename it with
    /// [`Table::named`]). A row that stops passing is removed (a tombstone downstream). It has
    /// no changelog: after a restart it is recomputed from this table.
    pub fn filter(&self, f: impl Fn(&K, &A) -> bool + 'static) -> Table<'s, K, A> {
        let operator = format!("filter({})", self.name);
        let coll = self.df.guarded(
            self.coll.clone(),
            &operator,
            move |(k, a): (K, A)| match catch(|| f(&k, &a)) {
                Ok(keep) => Ok(keep.then_some((k, a))),
                Err(message) => Err(Failure::new(message, Pos::AfterInput).with_record(&k, &a)),
            },
        );
        Table::from_collection(&self.df, &format!("{}-filter", self.name), coll)
    }
}

/// An epoch's time in milliseconds since 1970 (epochs are wall-clock milliseconds rounded down
/// to the commit interval).
pub(crate) fn epoch_millis(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// The record `(k, v)` (a tombstone for `None`) for output topic `index`, `topic`, or a dead
/// letter saying why it does not encode.
fn out_record<K: Data, V: Data>(
    topic: &Topic<K, V>,
    index: u32,
    k: &K,
    v: Option<&V>,
    pos: Pos,
    timestamp: i64,
    headers: Headers,
) -> CommitItem {
    match topic.encode_record(k, v) {
        Ok((key, value)) => CommitItem::Record(
            pos,
            OutRecord {
                topic: index,
                key: Some(key),
                value,
                headers,
                timestamp: Some(timestamp),
            },
        ),
        Err(e) => {
            let reason = format!("a record for topic `{}` does not encode: {e}", topic.name());
            log::warn!("dead letter: {reason}");
            DeadLetter::new(
                reason,
                Some(format!("{k:?}").into_bytes()),
                v.map(|v| format!("{v:?}").into_bytes()),
            )
            .operator(&format!("to_topic({})", topic.name()))
            .into_item(pos)
        }
    }
}
