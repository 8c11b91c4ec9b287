//! Table maintenance: each table's changes per epoch, its changelog, and its read replica.
//!
//! Every table passes through one maintainer operator. Updates are routed by the stable key
//! hash (so the worker that holds a key's replica is computable outside the dataflow), buffered
//! per epoch, and, once the epoch is complete, consolidated into at most one change per key:
//! the key's new value, or its removal. Each change
//!
//! - is applied to the worker's read replica, for a public table (what HTTP and typed readers
//!   read: epoch-consistent, never touching the dataflow's own state),
//! - becomes a changelog record (JSON key, JSON value or a tombstone) for the committer, when the
//!   table has a changelog,
//! - is emitted as the table's change stream.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use faustus_operators::sensor::sensed;
use faustus_operators::{Hop, Stash, Window};
use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::{OkErr, Operator};
use timely::dataflow::StreamVec;

use super::checkpoint::Checkpoints;
use super::health::{Health, TableState};
use super::{route, try_json, CommitItem, Pos};
use crate::dataflow::Data;
use crate::state::{changelog_record, ReplicaSlot};

/// One worker's part of a table's read replica.
pub(crate) type Shard<K, A> = Arc<Replica<K, A>>;

/// One worker's part of a table's read replica: its entries, and whether it has taken in the
/// restored table yet.
pub(crate) struct Replica<K, A> {
    entries: RwLock<BTreeMap<K, A>>,
    ready: AtomicBool,
}

impl<K, A> Replica<K, A> {
    /// An empty replica that is not ready.
    pub(crate) fn new() -> Self {
        Replica {
            entries: RwLock::new(BTreeMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// The entries, to read.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<K, A>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The entries, to change.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<K, A>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// True once the replica holds the restored table (the restore epoch has passed).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the replica as holding the restored table.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// A table's change stream: `(key, new value or None, order)`.
pub(crate) type Changes<'s, K, A> = VecCollection<'s, u64, (K, Option<A>, Pos)>;

/// Where a table's updates come from, and so how they reach the worker that keeps their key.
pub(crate) enum Placement<K> {
    /// From any worker: each update crosses to worker `owner(key)`.
    Route(fn(&K) -> u64),
    /// Each already on worker `owner(key)` (a fold keyed by the table's own `owner`): the
    /// updates stay on their worker.
    Placed,
}

/// Maintains `table`: returns its change stream and the records for the committer.
///
/// `placement` says how updates reach the worker that keeps their key: routed by `owner(key)`
/// (the stable key hash, or for windowed tables the hash of the key without its window, so that
/// a key's windows share a replica), or already there.
/// Changes at or before `restore_epoch` (the table restored from its changelog, or recomputed
/// from restored tables) write no changelog records and are not among the changes: they are
/// already in the changelog, and what reads the changes saw them before the restart (an
/// aggregate of them restores from its own changelog; outputs of those epochs were committed).
/// Once the restore epoch has passed, the replica is marked ready: it holds the restored table.
/// With `checkpoint` (the run's checkpoints and the changelog topic), each epoch's changes are
/// also written to the worker's local checkpoint before the epoch goes on to the committer, the
/// restored table as the checkpoint's base (see [`super::checkpoint`]).
pub(crate) fn maintain<'s, K, A>(
    table: VecCollection<'s, u64, (K, A)>,
    replica: ReplicaSlot<K, A>,
    changelog: Option<u32>,
    name: &str,
    placement: Placement<K>,
    restore_epoch: u64,
    checkpoint: Option<(Arc<Checkpoints>, String)>,
) -> (Changes<'s, K, A>, StreamVec<'s, u64, CommitItem>)
where
    K: Data,
    A: Data,
{
    let maintainer = Maintainer {
        replica,
        changelog,
        name: name.to_string(),
        restore_epoch,
        checkpoint,
    };
    match placement {
        Placement::Route(owner) => maintainer.build(
            table,
            sensed(
                Exchange::new(move |((k, _), _, _): &((K, A), u64, isize)| owner(k)),
                Hop::Table,
                name,
            ),
        ),
        Placement::Placed => maintainer.build(table, sensed(Pipeline, Hop::Table, name)),
    }
}

/// What a table's maintainer operator needs, whatever brings its updates.
struct Maintainer<K, A> {
    replica: ReplicaSlot<K, A>,
    changelog: Option<u32>,
    name: String,
    restore_epoch: u64,
    checkpoint: Option<(Arc<Checkpoints>, String)>,
}

impl<K: Data, A: Data> Maintainer<K, A> {
    /// The maintainer operator on `table`, whose updates arrive through `pact`.
    fn build<'s, P>(
        self,
        table: VecCollection<'s, u64, (K, A)>,
        pact: P,
    ) -> (Changes<'s, K, A>, StreamVec<'s, u64, CommitItem>)
    where
        P: ParallelizationContract<u64, Vec<((K, A), u64, isize)>>,
    {
        type Item<K, A> = Result<((K, Option<A>, Pos), u64, isize), CommitItem>;
        let Maintainer {
            replica,
            changelog,
            name,
            restore_epoch,
            checkpoint,
        } = self;
        // The restored table is the checkpoint's base, as of the last committed epoch.
        let base_epoch = restore_epoch.saturating_sub(1);
        let (index, peers) = (table.inner.scope().index(), table.inner.scope().peers());
        let mut writer =
            checkpoint.and_then(|(c, topic)| c.writer(&topic, index, peers, base_epoch));
        let (changes, records) = table
            .inner
            .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Item<K, A>>>, _, _, _>(
                pact,
                &format!("Table({name})"),
                move |_cap, _info| {
                    let mut stash: Stash<((K, A), isize), ()> = Stash::new();
                    let mut ready = false;
                    move |(input, frontier), output| {
                        input.for_each(|cap, data| {
                            for (kv, t, d) in data.drain(..) {
                                stash.push_first(&cap, t, (kv, d));
                            }
                        });
                        while let Some((time, batch)) = stash.pop_complete(&[frontier]) {
                            let changes = if time <= restore_epoch
                                && batch.first.iter().all(|(_, d)| *d == 1)
                            {
                                // The restored table, each key once (a table holds one
                                // entry per key, and a key restored twice comes with the
                                // retraction of its first entry): nothing to net out, and
                                // no changes or records whose order would matter.
                                batch.first.into_iter().map(|((k, a), _)| (k, Some(a))).collect()
                            } else {
                                net_changes(batch.first)
                            };
                            if changes.is_empty() {
                                continue;
                            }
                            let mut session = output.session(&batch.capability);
                            // A private table keeps no read copy.
                            let shard = replica.borrow().clone();
                            let mut copy = shard.as_ref().map(|s| s.write());
                            let changelog = changelog.filter(|_| time > restore_epoch);
                            // The checkpoint's label of the epoch's changes.
                            let label = if time > restore_epoch { time } else { base_epoch };
                            for (k, new) in changes {
                                if let Some(topic) = changelog {
                                    let record = changelog_record(&name, topic, &k, new.as_ref());
                                    if let (Some(w), CommitItem::Record(_, r)) =
                                        (writer.as_mut(), &record)
                                    {
                                        w.push(
                                            label,
                                            r.key.as_deref().unwrap_or_default(),
                                            r.value.as_deref(),
                                        );
                                    }
                                    session.give(Err(record));
                                } else if let Some(w) = writer.as_mut() {
                                    // The restored table: in the changelog already, so no
                                    // record, but the checkpoint's base, whole or not at all.
                                    match (try_json(&k), new.as_ref().map(try_json).transpose()) {
                                        (Ok(key), Ok(value)) => {
                                            w.push(label, &key, value.as_deref())
                                        }
                                        (Err(e), _) | (_, Err(e)) => w.fail(&format!(
                                            "a restored entry of `{name}` does not encode: {e}"
                                        )),
                                    }
                                }
                                if let Some(copy) = copy.as_mut() {
                                    match &new {
                                        Some(v) => copy.insert(k.clone(), v.clone()),
                                        None => copy.remove(&k),
                                    };
                                }
                                // A restored entry is state, not a change: what reads the
                                // changes (aggregates with changelogs of their own, outputs)
                                // has it already.
                                if time > restore_epoch {
                                    session.give(Ok(((k, new, Pos::Changelog), time, 1)));
                                }
                            }
                            if let Some(w) = writer.as_mut() {
                                w.flush(label);
                            }
                        }
                        if !ready && !frontier.less_equal(&restore_epoch) {
                            ready = true;
                            if let Some(w) = writer.as_mut() {
                                w.base_done(base_epoch);
                            }
                            if let Some(shard) = replica.borrow().as_ref() {
                                shard.set_ready();
                            }
                        }
                    }
                },
            )
            .ok_err(|x| x);
        (changes.as_collection(), records)
    }
}

/// The net change per key of one epoch's updates: `Some(new value)` or `None` (removed), in
/// the order of a fixed hash of the keys (the same on every run).
fn net_changes<K: ExchangeData + Hash, A: ExchangeData>(
    updates: Vec<((K, A), isize)>,
) -> Vec<(K, Option<A>)> {
    // One sort of one vector, where every entry of the table arrives at once at the restore
    // epoch. Sorting by the keys' hashes first compares integers, and keys only where their
    // hashes are equal (mostly: the same key); each key's updates still end up together, in
    // (key, value) order.
    let hasher = foldhash::fast::FixedState::default();
    let mut updates: Vec<(u64, (K, A), isize)> = updates
        .into_iter()
        .map(|(kv, d)| (hasher.hash_one(&kv.0), kv, d))
        .collect();
    updates.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut per_key: Vec<(K, Option<A>)> = Vec::with_capacity(updates.len());
    // The hash of the last key in `per_key`: keys are compared only where hashes are equal.
    let mut last_hash = None;
    let mut updates = updates.into_iter().peekable();
    while let Some((hash, (k, a), mut d)) = updates.next() {
        while let Some((_, _, more)) =
            updates.next_if(|(h, kv, _)| *h == hash && kv.0 == k && kv.1 == a)
        {
            d += more;
        }
        // Per key, as (key, value) pairs come in order: the last value with a positive sum
        // wins; a negative sum alone removes the key.
        let same_key = per_key
            .last_mut()
            .filter(|(last, _)| last_hash == Some(hash) && *last == k);
        match (same_key, d) {
            (_, 0) => {}
            (Some(entry), d) if d > 0 => entry.1 = Some(a),
            (Some(_), _) => {}
            (None, d) => {
                per_key.push((k, (d > 0).then_some(a)));
                last_hash = Some(hash);
            }
        }
    }
    per_key
}

/// The answer to a key lookup.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The key's value.
    Found(serde_json::Value),
    /// The key is not in the table.
    Missing,
    /// The key does not parse as the table's key type.
    BadKey(String),
    /// Another process owns the key.
    Remote(usize),
    /// A worker of this process owns the key, but has not registered its replica yet (the
    /// dataflow is still being built): not ready.
    Unregistered,
}

/// A key and its value, both as JSON.
pub(crate) type JsonEntry = (serde_json::Value, serde_json::Value);

/// A table's replica as the HTTP layer sees it: untyped. Keys travel as JSON values; only the
/// view knows the key type, so ordering keys (for pages across processes) happens here.
pub(crate) trait TableView: Send + Sync {
    /// True once every worker of this process holds its part of the restored table.
    fn ready(&self) -> bool;
    /// Looks a key (as written in a URL) up.
    fn get(&self, key: &str) -> Lookup;
    /// Parses a key as written in a URL into its JSON form.
    fn parse(&self, raw: &str) -> Result<serde_json::Value, String>;
    /// The first `limit` entries held by this process in key order, after key `after` (JSON)
    /// if given, and how many entries this process holds in all.
    fn local_entries(
        &self,
        after: Option<&serde_json::Value>,
        limit: usize,
    ) -> Result<(Vec<JsonEntry>, usize), String>;
    /// Merges parts (each in key order) into the first `limit` entries in key order.
    fn merge(&self, parts: Vec<Vec<JsonEntry>>, limit: usize) -> Result<Vec<JsonEntry>, String>;
    /// Entries held by this process's shards.
    fn entries(&self) -> usize;
    /// For registration.
    fn as_any(&self) -> &dyn Any;
    /// The typed replicas behind the view (for typed readers).
    fn replicas(&self) -> &dyn Any;
}

/// A table's shards in this process.
pub(crate) struct Replicas<K, A> {
    shards: RwLock<BTreeMap<usize, Shard<K, A>>>,
    peers: usize,
    workers: usize,
    /// The route of a key to its worker (as in [`maintain`]).
    owner: fn(&K) -> u64,
}

impl<K, A> Replicas<K, A> {
    fn new(peers: usize, workers: usize, owner: fn(&K) -> u64) -> Self {
        Replicas {
            shards: RwLock::new(BTreeMap::new()),
            peers,
            workers,
            owner,
        }
    }

    /// True once every worker of this process has registered its shard and that shard holds
    /// the restored table.
    pub(crate) fn ready(&self) -> bool {
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
        shards.len() == self.workers && shards.values().all(|s| s.is_ready())
    }

    /// The route of `key` (to its worker).
    pub(crate) fn route(&self, key: &K) -> u64 {
        (self.owner)(key)
    }

    /// Where the worker that owns `route` is: its shard here, or another process.
    pub(crate) fn locate(&self, route: u64) -> Located<K, A> {
        let owner = (route % self.peers as u64) as usize;
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
        if let Some(shard) = shards.get(&owner) {
            return Located::Here(Arc::clone(shard));
        }
        // Every registered shard is this process's: one of them tells which process this is.
        let here = shards.keys().next().map(|worker| worker / self.workers);
        match owner / self.workers {
            process if Some(process) == here => Located::Unregistered,
            process => Located::Elsewhere(process),
        }
    }
}

/// Where a key's replica is.
pub(crate) enum Located<K, A> {
    /// In this process.
    Here(Shard<K, A>),
    /// In this process, but its worker has not registered it yet.
    Unregistered,
    /// In another process.
    Elsewhere(usize),
}

/// Parses a key as written in a URL: as JSON, or else as a JSON string.
pub(crate) fn parse_key<K: DeserializeOwned>(raw: &str) -> Result<K, String> {
    serde_json::from_str::<K>(raw)
        .or_else(|_| serde_json::from_value::<K>(serde_json::Value::String(raw.to_string())))
        .map_err(|e| format!("`{raw}` is not a valid key for this table: {e}"))
}

/// A key as JSON, as a typed key.
fn typed_key<K: DeserializeOwned>(key: &serde_json::Value) -> Result<K, String> {
    K::deserialize(key).map_err(|e| format!("`{key}` is not a valid key for this table: {e}"))
}

impl<K, A> TableView for Replicas<K, A>
where
    K: ExchangeData + Hash + Serialize + DeserializeOwned + Sync,
    A: ExchangeData + Serialize + Sync,
{
    fn ready(&self) -> bool {
        Replicas::ready(self)
    }

    fn get(&self, raw: &str) -> Lookup {
        let key: K = match parse_key(raw) {
            Ok(k) => k,
            Err(e) => return Lookup::BadKey(e),
        };
        match self.locate((self.owner)(&key)) {
            Located::Here(shard) => match shard.read().get(&key) {
                Some(v) => Lookup::Found(serde_json::to_value(v).expect("values serialize")),
                None => Lookup::Missing,
            },
            Located::Unregistered => Lookup::Unregistered,
            Located::Elsewhere(process) => Lookup::Remote(process),
        }
    }

    fn parse(&self, raw: &str) -> Result<serde_json::Value, String> {
        let key: K = parse_key(raw)?;
        Ok(serde_json::to_value(key).expect("keys serialize"))
    }

    fn local_entries(
        &self,
        after: Option<&serde_json::Value>,
        limit: usize,
    ) -> Result<(Vec<JsonEntry>, usize), String> {
        use std::ops::Bound::{Excluded, Unbounded};
        let after: Option<K> = after.map(typed_key).transpose()?;
        let lower = after.map_or(Unbounded, Excluded);
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
        let mut merged: Vec<(K, A)> = Vec::new();
        let mut count = 0;
        for shard in shards.values() {
            // Copy out under the lock, serialize after it: the dataflow waits on this lock.
            let shard = shard.read();
            count += shard.len();
            merged.extend(
                shard
                    .range((lower.clone(), Unbounded))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        drop(shards);
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        merged.truncate(limit);
        let entries = merged
            .into_iter()
            .map(|(k, v)| {
                (
                    serde_json::to_value(k).expect("keys serialize"),
                    serde_json::to_value(v).expect("values serialize"),
                )
            })
            .collect();
        Ok((entries, count))
    }

    fn merge(&self, parts: Vec<Vec<JsonEntry>>, limit: usize) -> Result<Vec<JsonEntry>, String> {
        let mut all: Vec<(K, JsonEntry)> = Vec::new();
        for entry in parts.into_iter().flatten() {
            all.push((typed_key(&entry.0)?, entry));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.dedup_by(|a, b| a.0 == b.0);
        all.truncate(limit);
        Ok(all.into_iter().map(|(_, e)| e).collect())
    }

    fn entries(&self) -> usize {
        let shards = self.shards.read().unwrap_or_else(|e| e.into_inner());
        shards.values().map(|s| s.read().len()).sum()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn replicas(&self) -> &dyn Any {
        self
    }
}

/// The route of a windowed table's key: its key without the window, so that a key's windows
/// live on one worker.
pub(crate) fn window_owner<K: Serialize + std::fmt::Debug>(key: &(K, Window)) -> u64 {
    route(&key.0)
}

/// A windowed table's shards: entries keyed by `(key, window)`; a lookup by the plain key
/// answers `{"windows": [{"window": .., "value": ..}, ...], "current": <the latest window>}`.
pub(crate) struct WindowedReplicas<K, A> {
    windows: Replicas<(K, Window), A>,
}

impl<K, A> TableView for WindowedReplicas<K, A>
where
    K: ExchangeData + Hash + Serialize + DeserializeOwned + Sync,
    A: ExchangeData + Serialize + Sync,
{
    fn ready(&self) -> bool {
        self.windows.ready()
    }

    fn get(&self, raw: &str) -> Lookup {
        // A whole `[key, window]` answers with that window's value.
        if parse_key::<(K, Window)>(raw).is_ok() {
            return self.windows.get(raw);
        }
        let key: K = match parse_key(raw) {
            Ok(k) => k,
            Err(e) => return Lookup::BadKey(e),
        };
        let shard = match self.windows.locate(route(&key)) {
            Located::Here(shard) => shard,
            Located::Unregistered => return Lookup::Unregistered,
            Located::Elsewhere(process) => return Lookup::Remote(process),
        };
        let first = (key.clone(), Window { start: 0, end: 0 });
        let windows: Vec<serde_json::Value> = shard
            .read()
            .range(first..)
            .take_while(|((k, _), _)| *k == key)
            .map(|((_, w), v)| serde_json::json!({"window": w, "value": v}))
            .collect();
        match windows.last().cloned() {
            None => Lookup::Missing,
            Some(current) => Lookup::Found(serde_json::json!({
                "windows": windows,
                "current": current,
            })),
        }
    }

    fn parse(&self, raw: &str) -> Result<serde_json::Value, String> {
        self.windows.parse(raw)
    }

    fn local_entries(
        &self,
        after: Option<&serde_json::Value>,
        limit: usize,
    ) -> Result<(Vec<JsonEntry>, usize), String> {
        self.windows.local_entries(after, limit)
    }

    fn merge(&self, parts: Vec<Vec<JsonEntry>>, limit: usize) -> Result<Vec<JsonEntry>, String> {
        self.windows.merge(parts, limit)
    }

    fn entries(&self) -> usize {
        self.windows.entries()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn replicas(&self) -> &dyn Any {
        &self.windows
    }
}

/// The public tables of this process: declared (from the planning pass, before any worker
/// runs) with their changelogs, and their views once the workers have registered their shards.
#[derive(Default)]
pub(crate) struct Tables {
    map: RwLock<BTreeMap<String, Declared>>,
}

/// A public table, as far as this process knows it.
#[derive(Clone)]
pub(crate) struct Declared {
    /// Its replicas, once a worker has registered one.
    pub view: Option<Arc<dyn TableView>>,
    /// Its changelog topic (none for a table computed from other tables).
    pub changelog: Option<String>,
    /// The type of its [`Replicas`] (what a typed reader checks its types against).
    pub replicas_type: TypeId,
}

impl Declared {
    /// Where the table stands on this process.
    pub(crate) fn state(&self, health: &Health) -> TableState {
        let ready = self.view.as_ref().is_some_and(|v| v.ready());
        health.state(Some(ready), self.changelog.as_deref())
    }
}

impl Tables {
    /// Declares public table `name`, restored from `changelog` (none for a table computed from
    /// other tables).
    pub(crate) fn declare(&self, name: &str, changelog: Option<String>, replicas_type: TypeId) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.entry(name.to_string())
            .and_modify(|d| {
                d.changelog.clone_from(&changelog);
                d.replicas_type = replicas_type;
            })
            .or_insert(Declared {
                view: None,
                changelog,
                replicas_type,
            });
    }

    /// Every declared table, without its replicas (what the planning pass hands on).
    pub(crate) fn declarations(&self) -> Vec<(String, Declared)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(name, d)| {
                let declared = Declared {
                    view: None,
                    ..d.clone()
                };
                (name.clone(), declared)
            })
            .collect()
    }

    /// Registers worker `worker`'s shard of table `name`.
    pub(crate) fn register<K, A>(
        &self,
        name: &str,
        worker: usize,
        peers: usize,
        workers: usize,
        shard: Shard<K, A>,
    ) where
        K: ExchangeData + Hash + Serialize + DeserializeOwned + Sync,
        A: ExchangeData + Serialize + Sync,
    {
        self.register_view(
            name,
            worker,
            shard,
            || Replicas::<K, A>::new(peers, workers, route::<K>),
            |view: &Replicas<K, A>| view,
        );
    }

    /// Registers worker `worker`'s shard of windowed table `name`: a lookup by a plain key
    /// answers with all of the key's windows.
    pub(crate) fn register_windowed<K, A>(
        &self,
        name: &str,
        worker: usize,
        peers: usize,
        workers: usize,
        shard: Shard<(K, Window), A>,
    ) where
        K: ExchangeData + Hash + Serialize + DeserializeOwned + Sync,
        A: ExchangeData + Serialize + Sync,
    {
        self.register_view(
            name,
            worker,
            shard,
            || WindowedReplicas {
                windows: Replicas::new(peers, workers, window_owner::<K>),
            },
            |view: &WindowedReplicas<K, A>| &view.windows,
        );
    }

    /// Adds a shard to the view of table `name`, creating the view with `make` if needed.
    fn register_view<K: 'static, A: 'static, V: TableView + 'static>(
        &self,
        name: &str,
        worker: usize,
        shard: Shard<K, A>,
        make: impl FnOnce() -> V,
        replicas: impl Fn(&V) -> &Replicas<K, A>,
    ) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let view = map
            .entry(name.to_string())
            .or_insert_with(|| Declared {
                view: None,
                changelog: None,
                replicas_type: TypeId::of::<Replicas<K, A>>(),
            })
            .view
            .get_or_insert_with(|| Arc::new(make()));
        match view.as_any().downcast_ref::<V>() {
            Some(view) => {
                replicas(view)
                    .shards
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(worker, shard);
            }
            None => log::error!("table `{name}` registered twice with different types"),
        }
    }

    /// A public table by name.
    pub(crate) fn get(&self, name: &str) -> Option<Declared> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every public table with the entries this process holds of it (0 before its shards
    /// register).
    pub(crate) fn sizes(&self) -> Vec<(String, usize)> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
        map.into_iter()
            .map(|(name, d)| (name, d.view.map_or(0, |v| v.entries())))
            .collect()
    }

    /// Where every public table stands on this process.
    pub(crate) fn states(&self, health: &Health) -> BTreeMap<String, TableState> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
        map.into_iter()
            .map(|(name, declared)| {
                let state = declared.state(health);
                (name, state)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::net_changes;

    #[test]
    fn net_changes_keep_one_change_per_key() {
        let updates = vec![
            (("b".to_string(), 2), 1),
            (("a".to_string(), 1), -1),
            (("a".to_string(), 2), 1),
            (("c".to_string(), 5), -1),
            (("d".to_string(), 7), 1),
            (("d".to_string(), 7), -1),
            (("b".to_string(), 1), -1),
        ];
        let mut changes = net_changes(updates);
        changes.sort();
        assert_eq!(
            changes,
            vec![
                ("a".to_string(), Some(2)),
                ("b".to_string(), Some(2)),
                ("c".to_string(), None),
            ]
        );
    }
}
