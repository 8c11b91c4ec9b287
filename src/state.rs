//! State: the one primitive every table of the engine is made of, and the door for a program's own
//! differential code.
//!
//! A [`State`] is a named, keyed collection that faustus makes durable. It owns:
//!
//! ```text
//!                      ┌────────────────────── State "name" ───────────────────────┐
//!  changelog topic ──▶ │ restore: the last record per key, at the restore epoch      │──▶ restored()
//!  <app>-name-changelog│                                                             │
//!                      │ keep(collection):                                           │
//!   your collection ──▶│   route by murmur2(JSON key) ─▶ net change per key & epoch  │──▶ Table
//!                      │     ├─▶ changelog records ─┐                                │
//!                      │     ├─▶ read copy (only if the table is made public) ──▶ HTTP│
//!                      │     └─▶ change stream      │                                │
//!                      │ log(changes): records written as given (an operation log)   │
//!                      │ dead letters: keys or values that do not encode             │
//!                      └────────────────────────────┼────────────────────────────────┘
//!                                                   ▼
//!                    committer: one Kafka transaction per epoch, with the outputs and the
//!                    input positions that produced them (exactly-once)
//! ```
//!
//! - **Route.** A key lives on worker `murmur2(JSON of the key) % workers`, so that the HTTP layer
//!   finds its owner from the key alone.
//! - **Restore.** On start, [`State::restored`] holds what the changelog held (the last value per
//!   key), at the restore epoch, before any new input: feed it to the operator that rebuilds the
//!   state (a fold's seed, a join's stored events, an iteration's starting point).
//! - **Changelog.** [`State::keep`] writes, per epoch, the net change of each key of the kept
//!   collection (its new value, or a tombstone) to the compacted topic `<app>-<name>-changelog`;
//!   [`State::log`] writes records as they are given instead (an operation log, as set and list
//!   tables keep). Records of the restore epoch are not written again.
//! - **Commit.** Changelog records join the epoch's transaction: a crash never leaves a
//!   changelog ahead of, or behind, the outputs and positions of the same epoch.
//! - **Read copy.** A kept table that is made [`Table::public`] keeps an epoch-consistent copy on
//!   every worker for HTTP and [`crate::TableReader`]; a private one keeps none.
//! - **Dead letters.** A key or value that cannot be encoded as JSON goes to the dead-letter
//!   topic with the reason, and the epoch goes on.
//!
//! Folds, upserts, windows, stream⋈stream joins, set and list tables and `scan` are each a
//! `State` around an operator of `faustus-operators`; joins of tables are tables without a
//! changelog ([`Table::from_collection`]), recomputed from their restored inputs.
//!
//! A program's own differential code uses the same door:
//!
//! ```no_run
//! use differential_dataflow::operators::Iterate as _;
//! use faustus::prelude::*;
//!
//! # fn build(df: &Dataflow<'_>, follows: &Topic<u64, u64>) {
//! let reach = df.state::<u64, Vec<u64>>("reach");
//! // Down: the new follows, and the closure the last run committed.
//! let edges = df
//!     .stream(follows)
//!     .collection()
//!     .map(|(a, b, _pos)| (a, b))
//!     .concat(reach.restored().flat_map(|(a, bs)| bs.into_iter().map(move |b| (a, b))))
//!     .distinct();
//! let closure = edges.clone().iterate(|scope, inner| {
//!     let edges = edges.enter(scope);
//!     inner
//!         .map(|(a, b)| (b, a))
//!         .join_map(edges.clone(), |_b, a, c| (*a, *c))
//!         .concat(edges)
//!         .distinct()
//! });
//! let table = closure.reduce(|_a, reached, out: &mut Vec<(Vec<u64>, isize)>| {
//!     out.push((reached.iter().map(|(b, _)| **b).collect(), 1))
//! });
//! // Up: routed, changelogged, committed exactly-once, served over HTTP.
//! reach.keep(table).public();
//! # }
//! ```

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::{AsCollection, VecCollection};
use faustus_connectors::OutRecord;
use timely::dataflow::operators::vec::Map as _;

use crate::dataflow::{Data, Dataflow, Table};
use crate::dead_letter::DeadLetter;
use crate::runtime::restore::restore_source;
use crate::runtime::table::{Placement, Replica, Tables};
use crate::runtime::{route, try_json, CommitItem, Pos};

/// A named, keyed state with a changelog: see the [module docs](self).
pub struct State<'s, K: 'static, V: 'static> {
    df: Dataflow<'s>,
    name: String,
    changelog: Changelog,
    restored: VecCollection<'s, u64, (K, V)>,
    owner: fn(&K) -> u64,
    register: Registrar<K, V>,
}

/// A state's changelog topic.
struct Changelog {
    /// Its index among the application's output topics.
    pub index: u32,
    /// Its name.
    pub topic: String,
}

/// How a table's replica shard is served over HTTP.
pub(crate) type Registrar<K, A> =
    fn(&Tables, &str, usize, usize, usize, crate::runtime::table::Shard<K, A>);

impl<'s> Dataflow<'s> {
    /// Claims state `name` (names are unique among a program's tables and states) with its
    /// changelog `<app>-<name>-changelog`: see [`State`].
    pub fn state<K: Data, V: Data>(&self, name: &str) -> State<'s, K, V> {
        self.claim_table(name);
        let topic = format!("{}-{}-changelog", self.ctx.app_id, name);
        let index = self.out_topic(&topic, None, true);
        let restored =
            restore_source::<K, V>(self.scope, Arc::clone(&self.ctx.startup), topic.clone())
                .as_collection();
        State {
            df: self.clone(),
            name: name.to_string(),
            changelog: Changelog { index, topic },
            restored,
            owner: route::<K>,
            register: Tables::register::<K, V>,
        }
    }
}

impl<'s, K: Data, V: Data> State<'s, K, V> {
    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the state's changelog topic.
    pub fn changelog_topic(&self) -> &str {
        &self.changelog.topic
    }

    /// What the changelog held when the application started: the last value per key, at the
    /// restore epoch (before any new input). Empty on a first start.
    pub fn restored(&self) -> VecCollection<'s, u64, (K, V)> {
        self.restored.clone()
    }

    /// Keeps `table` (at most one value per key) as this state: each epoch's net change per key
    /// goes to the changelog, and to the read copy if the table is made public.
    pub fn keep(self, table: VecCollection<'s, u64, (K, V)>) -> Table<'s, K, V> {
        let owner = self.owner;
        self.kept(table, Placement::Route(owner))
    }

    /// The route of this state's keys to the worker that keeps them.
    pub(crate) fn owner(&self) -> fn(&K) -> u64 {
        self.owner
    }

    /// As [`State::keep`], for a `table` whose updates are each already on the worker that
    /// [`State::owner`] routes its key to (a fold keyed by that route): they are not routed
    /// again.
    pub(crate) fn keep_placed(self, table: VecCollection<'s, u64, (K, V)>) -> Table<'s, K, V> {
        self.kept(table, Placement::Placed)
    }

    /// `table` kept as this state, its updates reaching their workers as `placement` says.
    fn kept(
        self,
        table: VecCollection<'s, u64, (K, V)>,
        placement: Placement<K>,
    ) -> Table<'s, K, V> {
        Table::maintained(
            self.df,
            &self.name,
            table,
            Some(self.changelog.index),
            Some(self.changelog.topic),
            placement,
            self.register,
        )
    }

    /// Writes `changes`, `(key, Some(value))` or `(key, None)` (a tombstone), to the changelog
    /// as they are: an operation log that [`State::restored`] gives back, compacted to the last
    /// record per key. Changes of the restore epoch are not written again.
    pub fn log(&self, changes: VecCollection<'s, u64, (K, Option<V>)>) {
        let (index, name) = (self.changelog.index, self.name.clone());
        let restore_epoch = self.df.ctx.startup.resume_epoch;
        let records = changes.inner.flat_map(move |((k, v), time, _d)| {
            (time > restore_epoch).then(|| changelog_record(&name, index, &k, v.as_ref()))
        });
        self.df.push_output(records);
    }

    /// The table that this state's operation log restores (a set or list table, whose changelog
    /// holds operations rather than values), named after the state.
    pub fn restores<K2: Data, V2: Data>(
        self,
        table: VecCollection<'s, u64, (K2, V2)>,
    ) -> Table<'s, K2, V2> {
        Table::maintained(
            self.df,
            &self.name,
            table,
            None,
            Some(self.changelog.topic),
            Placement::Route(route::<K2>),
            Tables::register::<K2, V2>,
        )
    }

    /// Routes keys with `owner` instead of the stable hash of the whole key (a windowed table
    /// routes by its key without the window), and serves the read copy with `register`.
    pub(crate) fn routed(mut self, owner: fn(&K) -> u64, register: Registrar<K, V>) -> Self {
        self.owner = owner;
        self.register = register;
        self
    }
}

/// The changelog record of state `name` for key `k`: the value, or a tombstone; a dead letter
/// when either does not encode.
pub(crate) fn changelog_record<K: Data, V: Data>(
    name: &str,
    topic: u32,
    k: &K,
    v: Option<&V>,
) -> CommitItem {
    let key = match try_json(k) {
        Ok(key) => key,
        Err(e) => {
            return DeadLetter::new(
                format!("the key of `{name}` does not encode as JSON: {e}"),
                Some(format!("{k:?}").into_bytes()),
                v.map(|v| format!("{v:?}").into_bytes()),
            )
            .operator(name)
            .into_item(Pos::Changelog)
        }
    };
    let value = match v.map(try_json).transpose() {
        Ok(value) => value,
        Err(e) => {
            return DeadLetter::new(
                format!("a value of `{name}` does not encode as JSON: {e}"),
                Some(key),
                v.map(|v| format!("{v:?}").into_bytes()),
            )
            .operator(name)
            .into_item(Pos::Changelog)
        }
    };
    CommitItem::Record(
        Pos::Changelog,
        OutRecord {
            topic,
            key: Some(key),
            value,
            headers: Vec::new(),
            timestamp: None,
        },
    )
}

/// A table's read copy, made only when the table is made public.
pub(crate) type ReplicaSlot<K, A> = Rc<RefCell<Option<crate::runtime::table::Shard<K, A>>>>;

/// A new, empty read-copy slot.
pub(crate) fn replica_slot<K, A>() -> ReplicaSlot<K, A> {
    Rc::new(RefCell::new(None))
}

/// Makes the read copy in `slot` (once), and returns it.
pub(crate) fn make_replica<K, A>(slot: &ReplicaSlot<K, A>) -> crate::runtime::table::Shard<K, A> {
    Arc::clone(
        slot.borrow_mut()
            .get_or_insert_with(|| Arc::new(Replica::new())),
    )
}
