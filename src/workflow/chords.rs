//! The chord coordinator: an agent (one actor per partition of `<app>-chords`) that counts the
//! replies of each chord's members and sends the chord's result to its callback once.
//!
//! The partition is the coordinator's whole state: the chords' "open" records, the members'
//! replies, ticks (the coordinator's clock, for deadlines) and "closed" markers. An actor that
//! takes a partition over rebuilds its state by folding the partition's records before its
//! committed position (those were handled already: their callbacks were sent), then folds the
//! rest as events. Under `exactly_once` a chord's callback and its "closed" marker are written in
//! the transaction that commits the record that completed it, so the callback is sent once.
//!
//! ## Retention of ended chords
//!
//! An ended chord's id is kept for the coordinator's retention (default
//! [`DEFAULT_RETENTION`], [`crate::App::chord_retention`]) so that late or repeated records of
//! it (a member that ran twice, a repeated "open") are ignored. Then the chord is forgotten: its
//! id leaves the memory, and its records (open, replies, "closed") are deleted from the
//! compacted topic with tombstones, written with the record that made the retention pass (in
//! its transaction under `exactly_once`). Records of a chord whose "open" never came (replies
//! to a forgotten chord, say) are forgotten the same way, a retention after the first of them.
//! Time is the records' own timestamps, so that rebuilding a partition's state forgets what the
//! first reading forgot. A chord in progress is never forgotten: it ends by its members or its
//! deadline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faustus_connectors::{ConnectorError, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    chords_topic, from_cell, json_string, now_ms, JsonValue, Reply, Workflows, WorkflowsCell,
};
use crate::agent::{Agent, HandlerError, HandlerResult, Outgoing, PartitionEvents};
use crate::codec::Str;
use crate::error::{Error, Result};
use crate::record::Headers;
use crate::topic::Topic;

/// The coordinator agent's name (its consumer group is `<app>-chords`).
pub(crate) const COORDINATOR: &str = "chords";
/// The key suffix of a chord's "open" record.
pub(crate) const OPEN: &str = "open";
/// The key suffix of a chord's "closed" marker.
const CLOSED: &str = "closed";
/// The key of the coordinator's ticks.
const TICK: &str = "/tick";
/// How often an actor ticks while a chord of its partition has a deadline (and until its state
/// is rebuilt).
const TICK_EVERY: Duration = Duration::from_secs(1);
/// How long rebuilding a partition's state may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts at rebuilding a partition's state before the coordinator stops.
const RESTORE_ATTEMPTS: u32 = 5;
/// How long the chord coordinator keeps an ended chord's id by default (see
/// [`crate::App::chord_retention`]).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);

/// The key of a chord's record: `<id>/<part>` (`open`, `closed`, or a member's index).
pub(crate) fn key(id: &str, part: &str) -> String {
    format!("{id}/{part}")
}

/// A chord's "open" record: its size, deadline and callbacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Open {
    pub size: usize,
    /// When it started (milliseconds since 1970).
    pub started: i64,
    /// When it fails if members are missing (milliseconds since 1970).
    pub deadline: Option<i64>,
    pub callback: String,
    pub error_callback: String,
}

/// How a chord ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChordOutcome {
    /// Every member succeeded.
    Done,
    /// A member failed after its retries, or the deadline passed with members missing.
    Failed,
}

/// A member that failed after its retries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FailedMember {
    /// The member's index (its place among the chord's members).
    pub member: usize,
    /// Its handler's last error.
    pub error: String,
}

/// What a chord's callback receives (keyed by the chord's id). It is an agent's value type like
/// any other: a callback is an agent reading `Topic<String, ChordResult>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChordResult {
    /// The chord's id.
    pub chord: String,
    /// How it ended.
    pub outcome: ChordOutcome,
    /// Its members' count.
    pub size: usize,
    /// Each member's reply value, by member index (`None`: no value, failed or missing).
    pub results: Vec<Option<JsonValue>>,
    /// The members that failed.
    pub failed: Vec<FailedMember>,
    /// The members that had not answered at the deadline.
    pub missing: Vec<usize>,
    /// When the chord started (milliseconds since 1970).
    pub started: i64,
}

/// A chord in progress, as `/api/workflows/` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChordStatus {
    /// The chord's id.
    pub chord: String,
    /// The partition of `<app>-chords` it lives in.
    pub partition: i32,
    /// Its members' count (`None` until its "open" record is read).
    pub size: Option<usize>,
    /// Members that succeeded.
    pub done: usize,
    /// Members that failed.
    pub failed: usize,
    /// When it fails if members are missing (milliseconds since 1970).
    pub deadline: Option<i64>,
    /// When it started (milliseconds since 1970).
    pub started: Option<i64>,
}

/// A chord's state.
#[derive(Default)]
struct Pending {
    open: Option<Open>,
    replies: BTreeMap<usize, Reply>,
    /// When its first record was folded in (record time).
    since: i64,
}

impl Pending {
    /// Its members' count: its size, or the replies' indices when its "open" is missing.
    fn members(&self) -> usize {
        let replied = self.replies.keys().next_back().map_or(0, |m| m + 1);
        self.open.as_ref().map_or(0, |o| o.size).max(replied)
    }
}

/// A chord that just ended: its result, and where it goes.
#[derive(Debug, PartialEq)]
struct Fired {
    result: ChordResult,
    to: String,
}

impl Fired {
    /// Its records: the result to the callback, and the "closed" marker.
    fn records(&self, chords: &str, partition: i32) -> [Outgoing; 2] {
        [
            Outgoing {
                topic: Arc::from(self.to.as_str()),
                partition: None,
                key: Some(json_string(&self.result.chord)),
                value: Some(serde_json::to_vec(&self.result).unwrap_or_default()),
                headers: Headers::new(),
            },
            Outgoing {
                topic: Arc::from(chords),
                partition: Some(partition),
                key: Some(json_string(&key(&self.result.chord, CLOSED))),
                value: Some(
                    serde_json::to_vec(&serde_json::json!({
                        "outcome": self.result.outcome,
                        "size": self.result.size,
                    }))
                    .unwrap_or_default(),
                ),
                headers: Headers::new(),
            },
        ]
    }
}

/// A chord forgotten after the retention: the keys of its records, to delete.
#[derive(Debug, PartialEq)]
struct Forgotten {
    id: String,
    /// Its members' count (its member keys are `0..members`).
    members: usize,
}

impl Forgotten {
    /// Its tombstones: "open", each member's reply, "closed".
    fn records(&self, chords: &str, partition: i32) -> Vec<Outgoing> {
        let members = (0..self.members).map(|m| m.to_string());
        [OPEN.to_string(), CLOSED.to_string()]
            .into_iter()
            .chain(members)
            .map(|part| Outgoing {
                topic: Arc::from(chords),
                partition: Some(partition),
                key: Some(json_string(&key(&self.id, &part))),
                value: None,
                headers: Headers::new(),
            })
            .collect()
    }
}

/// What folding one record did: the chords it ended and those it forgot.
#[derive(Debug, Default)]
struct Folded {
    fired: Vec<Fired>,
    forgotten: Vec<Forgotten>,
}

impl Folded {
    /// The records to write: the ended chords' results and markers, the tombstones.
    fn records(&self, chords: &str, partition: i32) -> Vec<Outgoing> {
        let fired = self.fired.iter().flat_map(|f| f.records(chords, partition));
        let forgotten = self
            .forgotten
            .iter()
            .flat_map(|f| f.records(chords, partition));
        fired.chain(forgotten).collect()
    }
}

/// The chords of one partition: the fold of its records.
pub(crate) struct Book {
    chords: HashMap<String, Pending>,
    /// The ended chords' ids, with their members' count.
    closed: HashMap<String, usize>,
    /// What may be forgotten, by when it may be (record time, milliseconds since 1970): ended
    /// chords, and chords without an "open" (which are forgotten only if they still have none).
    expiry: BTreeSet<(i64, String)>,
    /// How long an ended chord is kept, in milliseconds.
    retention: i64,
    /// The latest record time folded in (milliseconds since 1970).
    now: i64,
}

impl Book {
    /// An empty book that keeps ended chords for `retention`.
    fn new(retention: Duration) -> Self {
        Book {
            chords: HashMap::new(),
            closed: HashMap::new(),
            expiry: BTreeSet::new(),
            retention: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            now: i64::MIN,
        }
    }

    /// Folds in one record, written at `time` (milliseconds since 1970): the chords it ended,
    /// and those whose retention it ended.
    fn fold(&mut self, key: &str, value: &Value, time: i64) -> Folded {
        self.now = self.now.max(time);
        let fired = self.apply(key, value);
        Folded {
            fired,
            forgotten: self.forget(),
        }
    }

    /// Forgets the ended chords (and those without an "open") older than the retention.
    fn forget(&mut self) -> Vec<Forgotten> {
        let mut forgotten = Vec::new();
        while let Some((at, _)) = self.expiry.first() {
            if at.saturating_add(self.retention) > self.now {
                break;
            }
            let Some((_, id)) = self.expiry.pop_first() else {
                break;
            };
            if let Some(members) = self.closed.remove(&id) {
                forgotten.push(Forgotten { id, members });
            } else if self.chords.get(&id).is_some_and(|c| c.open.is_none()) {
                let members = self.chords.remove(&id).map_or(0, |c| c.members());
                forgotten.push(Forgotten { id, members });
            }
        }
        forgotten
    }

    /// Marks chord `id`, of `members` members, ended.
    fn close(&mut self, id: &str, members: usize) {
        self.closed.insert(id.to_string(), members);
        self.expiry.insert((self.now, id.to_string()));
    }

    /// Chord `id`'s state, noting when a new one may be forgotten if no "open" comes.
    fn pending(&mut self, id: &str) -> &mut Pending {
        let now = self.now;
        self.chords.entry(id.to_string()).or_insert_with(|| {
            self.expiry.insert((now, id.to_string()));
            Pending {
                since: now,
                ..Pending::default()
            }
        })
    }

    /// Chord `id`, whose first record came at `since`, has its "open" or has ended: it is no
    /// longer forgotten for lack of an "open".
    fn keep(&mut self, id: &str, since: i64) {
        self.expiry.remove(&(since, id.to_string()));
    }

    /// Folds one record in: the chords it ended.
    fn apply(&mut self, key: &str, value: &Value) -> Vec<Fired> {
        if key == TICK {
            return match value.get("now").and_then(Value::as_i64) {
                Some(now) => self.expire(now),
                None => Vec::new(),
            };
        }
        let Some((id, part)) = key.rsplit_once('/') else {
            return Vec::new();
        };
        if self.closed.contains_key(id) {
            return Vec::new();
        }
        match part {
            OPEN => {
                let Ok(open) = serde_json::from_value::<Open>(value.clone()) else {
                    return Vec::new();
                };
                let pending = self.pending(id);
                pending.open.get_or_insert(open);
                let since = pending.since;
                self.keep(id, since);
            }
            CLOSED => {
                let mut members = value
                    .get("size")
                    .and_then(Value::as_u64)
                    .map_or(0, |size| usize::try_from(size).unwrap_or(0));
                if let Some(pending) = self.chords.remove(id) {
                    self.keep(id, pending.since);
                    members = members.max(pending.members());
                }
                self.close(id, members);
                return Vec::new();
            }
            member => {
                let (Ok(index), Ok(reply)) = (
                    member.parse::<usize>(),
                    serde_json::from_value::<Reply>(value.clone()),
                ) else {
                    return Vec::new();
                };
                // The first reply of a member counts (a member may run twice).
                self.pending(id).replies.entry(index).or_insert(reply);
            }
        }
        let complete = self.chords.get(id).is_some_and(|c| {
            c.open
                .as_ref()
                .is_some_and(|o| c.replies.range(..o.size).count() >= o.size)
        });
        match complete {
            true => self.fire(id).into_iter().collect(),
            false => Vec::new(),
        }
    }

    /// Ends the chords whose deadline is at or before `now`.
    fn expire(&mut self, now: i64) -> Vec<Fired> {
        let mut due: Vec<String> = self
            .chords
            .iter()
            .filter(|(_, c)| {
                c.open
                    .as_ref()
                    .and_then(|o| o.deadline)
                    .is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        due.sort();
        due.iter().filter_map(|id| self.fire(id)).collect()
    }

    /// Ends chord `id` with what it has.
    fn fire(&mut self, id: &str) -> Option<Fired> {
        let pending = self.chords.remove(id)?;
        self.keep(id, pending.since);
        let members = pending.members();
        let open = pending.open?;
        self.close(id, members);
        let mut result = ChordResult {
            chord: id.to_string(),
            outcome: ChordOutcome::Done,
            size: open.size,
            results: vec![None; open.size],
            failed: Vec::new(),
            missing: Vec::new(),
            started: open.started,
        };
        for member in 0..open.size {
            match pending.replies.get(&member) {
                Some(Reply { error: Some(e), .. }) => result.failed.push(FailedMember {
                    member,
                    error: e.clone(),
                }),
                Some(reply) => result.results[member] = reply.value.clone().map(JsonValue),
                None => result.missing.push(member),
            }
        }
        let to = match result.failed.is_empty() && result.missing.is_empty() {
            true => open.callback,
            false => {
                result.outcome = ChordOutcome::Failed;
                open.error_callback
            }
        };
        Some(Fired { result, to })
    }

    /// Whether a chord in progress has a deadline (the actor ticks meanwhile).
    fn has_deadlines(&self) -> bool {
        self.chords
            .values()
            .any(|c| c.open.as_ref().is_some_and(|o| o.deadline.is_some()))
    }

    fn statuses(&self, partition: i32) -> Vec<ChordStatus> {
        self.chords
            .iter()
            .map(|(id, c)| ChordStatus {
                chord: id.clone(),
                partition,
                size: c.open.as_ref().map(|o| o.size),
                done: c.replies.values().filter(|r| r.error.is_none()).count(),
                failed: c.replies.values().filter(|r| r.error.is_some()).count(),
                deadline: c.open.as_ref().and_then(|o| o.deadline),
                started: c.open.as_ref().map(|o| o.started),
            })
            .collect()
    }
}

/// The chords this process coordinates, for `/api/workflows/`.
#[derive(Default)]
pub(crate) struct ChordBoard {
    books: Mutex<BTreeMap<i32, Arc<Mutex<Book>>>>,
    /// Whether this process runs the coordinator.
    pub running: AtomicBool,
}

impl ChordBoard {
    /// The chords in progress, by partition then id.
    pub(crate) fn snapshot(&self) -> Vec<ChordStatus> {
        let books: Vec<(i32, Arc<Mutex<Book>>)> = self
            .books
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(p, b)| (*p, Arc::clone(b)))
            .collect();
        let mut all = Vec::new();
        for (partition, book) in books {
            let mut statuses = book
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .statuses(partition);
            statuses.sort_by(|a, b| a.chord.cmp(&b.chord));
            all.extend(statuses);
        }
        all
    }

    /// The partitions this process coordinates.
    pub(crate) fn partitions(&self) -> Vec<i32> {
        self.books
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn set(&self, partition: i32, book: Option<Arc<Mutex<Book>>>) {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        match book {
            Some(book) => books.insert(partition, book),
            None => books.remove(&partition),
        };
    }
}

/// The coordinator agent of application `app_id`.
pub(crate) fn chord_coordinator(
    app_id: &str,
    cell: WorkflowsCell,
    board: Arc<ChordBoard>,
    retention: Duration,
) -> Agent<String, String> {
    // Values are read as their JSON text (a `Value` is not ordered, as agent types must be).
    let topic = Topic::<String, String>::new(chords_topic(app_id)).value_codec(Str);
    board.running.store(true, Ordering::SeqCst);
    // Its tombstones come back to it: they are skipped, not dead-lettered.
    Agent::new(COORDINATOR, &topic)
        .manual_ack()
        .skip_tombstones()
        .actor(move |events: PartitionEvents<String, String>| {
            let cell = Arc::clone(&cell);
            let board = Arc::clone(&board);
            async move {
                let workflows = from_cell(&cell).map_err(|e| HandlerError(e.to_string()))?;
                coordinate(events, workflows, board, retention).await
            }
        })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One partition's actor.
async fn coordinate(
    mut events: PartitionEvents<String, String>,
    workflows: Workflows,
    board: Arc<ChordBoard>,
    retention: Duration,
) -> HandlerResult {
    let partition = events.partition();
    let topic = chords_topic(workflows.app_id());
    // Ticks until the state is rebuilt (the first record read starts that), then while a
    // chord has a deadline.
    let ticking = Arc::new(AtomicBool::new(true));
    let _ticker = AbortOnDrop(tokio::spawn(tick(
        workflows.clone(),
        topic.clone(),
        partition,
        Arc::clone(&ticking),
    )));
    let mut book: Option<Arc<Mutex<Book>>> = None;
    let result = loop {
        let Some(event) = events.next().await else {
            break Ok(());
        };
        let book = match &book {
            Some(book) => Arc::clone(book),
            None => {
                let restored = match restore(
                    &workflows,
                    &topic,
                    partition,
                    event.origin().offset,
                    retention,
                )
                .await
                {
                    Ok(restored) => Arc::new(Mutex::new(restored)),
                    Err(e) => break Err(HandlerError(e.to_string())),
                };
                board.set(partition, Some(Arc::clone(&restored)));
                book.insert(restored).clone()
            }
        };
        let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
        let value = serde_json::from_str::<Value>(event.value_ref()).unwrap_or(Value::Null);
        let folded = book.fold(event.key_ref(), &value, event.timestamp());
        for fired in &folded.fired {
            log::info!(
                "chord `{}`: {:?}, sent to `{}`",
                fired.result.chord,
                fired.result.outcome,
                fired.to
            );
        }
        for record in folded.records(&topic, partition) {
            event.push_outgoing(record);
        }
        ticking.store(book.has_deadlines(), Ordering::SeqCst);
        drop(book);
        event.acker().ack();
    };
    board.set(partition, None);
    result
}

/// Sends ticks to `partition` while `ticking` says so.
async fn tick(workflows: Workflows, topic: String, partition: i32, ticking: Arc<AtomicBool>) {
    loop {
        if ticking.load(Ordering::SeqCst) {
            let record = Outgoing {
                topic: Arc::from(topic.as_str()),
                partition: Some(partition),
                key: Some(json_string(TICK)),
                value: Some(
                    serde_json::to_vec(&serde_json::json!({ "now": now_ms() })).unwrap_or_default(),
                ),
                headers: Headers::new(),
            };
            if let Err(e) = workflows.send(&record).await {
                log::warn!("chord coordinator: a tick to partition {partition}: {e}");
            }
        }
        tokio::time::sleep(TICK_EVERY).await;
    }
}

/// Rebuilds partition `partition`'s state from its records before offset `upto`, retrying.
async fn restore(
    workflows: &Workflows,
    topic: &str,
    partition: i32,
    upto: i64,
    retention: Duration,
) -> Result<Book> {
    let mut attempt = 0;
    loop {
        let kafka = workflows.kafka().clone();
        let topic_name = topic.to_string();
        let read = tokio::task::spawn_blocking(move || {
            let mut book = Book::new(retention);
            read_prefix(&kafka, &topic_name, partition, upto, &mut book).map(|n| (book, n))
        })
        .await
        .unwrap_or_else(|e| Err(Error::Runtime(format!("rebuilding chords: {e}"))));
        match read {
            Ok((book, records)) => {
                log::info!(
                    "chord coordinator: partition {partition}: {records} records read up to offset {upto}, {} chords in progress",
                    book.chords.len()
                );
                return Ok(book);
            }
            Err(e) if attempt + 1 < RESTORE_ATTEMPTS => {
                attempt += 1;
                log::warn!("chord coordinator: partition {partition}: rebuilding its state: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(Error::Runtime(format!(
                    "the chord coordinator could not rebuild partition {partition} of `{topic}` after {RESTORE_ATTEMPTS} attempts: {e}"
                )))
            }
        }
    }
}

/// Folds the committed records of `partition` before offset `upto` into `book` (their
/// callbacks were sent when they were handled): how many.
fn read_prefix(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    upto: i64,
    book: &mut Book,
) -> Result<u64> {
    if upto <= 0 {
        return Ok(0);
    }
    let kafka_error = |source| {
        Error::Kafka(ConnectorError::Kafka {
            context: format!("reading `{topic}` partition {partition}"),
            source,
        })
    };
    let consumer: BaseConsumer = kafka.consumer().create().map_err(kafka_error)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(kafka_error)?;
    consumer.assign(&assignment).map_err(kafka_error)?;
    let started = Instant::now();
    let mut records = 0;
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                if message.offset() >= upto {
                    return Ok(records);
                }
                records += 1;
                let key = message
                    .key()
                    .and_then(|k| serde_json::from_slice::<String>(k).ok());
                let value = message
                    .payload()
                    .and_then(|v| serde_json::from_slice::<Value>(v).ok());
                if let (Some(key), Some(value)) = (key, value) {
                    // Their callbacks and tombstones were sent when they were handled.
                    let time = message.timestamp().to_millis().unwrap_or(0);
                    drop(book.fold(&key, &value, time));
                }
                if message.offset() + 1 >= upto {
                    return Ok(records);
                }
            }
            // Everything committed is read: the rest before `upto` was aborted or compacted.
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(records),
            Some(Err(e)) => return Err(kafka_error(e)),
            None if started.elapsed() > RESTORE_TIMEOUT => {
                return Err(Error::Runtime(format!(
                    "reading `{topic}` partition {partition} up to offset {upto} took over {RESTORE_TIMEOUT:?}"
                )))
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(size: usize, deadline: Option<i64>) -> Value {
        serde_json::to_value(Open {
            size,
            started: 0,
            deadline,
            callback: "done".into(),
            error_callback: "failed".into(),
        })
        .unwrap()
    }

    fn ok(v: i64) -> Value {
        serde_json::json!({ "value": v })
    }

    #[test]
    fn a_chord_fires_once_when_its_last_member_answers_in_any_order() {
        let mut book = Book::new(DEFAULT_RETENTION);
        assert!(book.apply("c/1", &ok(10)).is_empty());
        assert!(book.apply("c/open", &open(3, None)).is_empty());
        assert!(
            book.apply("c/1", &ok(99)).is_empty(),
            "a second reply of a member"
        );
        assert!(book.apply("c/0", &ok(0)).is_empty());
        let fired = book.apply("c/2", &ok(20));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].to, "done");
        let r = &fired[0].result;
        assert_eq!(r.outcome, ChordOutcome::Done);
        assert_eq!(
            r.results,
            vec![Some(0.into()), Some(10.into()), Some(20.into())]
        );
        // Late duplicates and a repeated open do nothing once it fired.
        assert!(book.apply("c/2", &ok(20)).is_empty());
        assert!(book.apply("c/open", &open(3, None)).is_empty());
        assert!(book.chords.is_empty());
    }

    #[test]
    fn a_failed_member_fails_the_chord_once_every_member_has_answered() {
        let mut book = Book::new(DEFAULT_RETENTION);
        book.apply("c/open", &open(2, None));
        assert!(book
            .apply("c/0", &serde_json::json!({ "error": "boom" }))
            .is_empty());
        let fired = book.apply("c/1", &ok(1));
        assert_eq!(fired[0].to, "failed");
        assert_eq!(fired[0].result.outcome, ChordOutcome::Failed);
        assert_eq!(
            fired[0].result.failed,
            vec![FailedMember {
                member: 0,
                error: "boom".into()
            }]
        );
    }

    #[test]
    fn a_deadline_fails_the_chord_with_its_missing_members() {
        let mut book = Book::new(DEFAULT_RETENTION);
        book.apply("c/open", &open(3, Some(1_000)));
        book.apply("c/1", &ok(1));
        assert!(book.has_deadlines());
        assert!(book
            .apply(TICK, &serde_json::json!({ "now": 999 }))
            .is_empty());
        let fired = book.apply(TICK, &serde_json::json!({ "now": 1_000 }));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].result.missing, vec![0, 2]);
        assert_eq!(fired[0].to, "failed");
        assert!(!book.has_deadlines());
    }

    #[test]
    fn a_closed_marker_ends_a_chord_without_firing_it() {
        let mut book = Book::new(DEFAULT_RETENTION);
        book.apply("c/open", &open(1, None));
        assert!(book.apply("c/closed", &serde_json::json!({})).is_empty());
        assert!(book.apply("c/0", &ok(1)).is_empty());
    }

    #[test]
    fn the_records_of_a_fired_chord_are_its_result_and_its_closed_marker() {
        let mut book = Book::new(DEFAULT_RETENTION);
        book.apply("c/open", &open(1, None));
        let fired = book.apply("c/0", &ok(1)).pop().unwrap();
        let [result, marker] = fired.records("app-chords", 3);
        assert_eq!(&*result.topic, "done");
        assert_eq!(result.key.as_deref(), Some(&b"\"c\""[..]));
        assert_eq!(marker.partition, Some(3));
        let mut again = Book::new(DEFAULT_RETENTION);
        again.apply("c/open", &open(1, None));
        let key: String = serde_json::from_slice(marker.key.as_deref().unwrap()).unwrap();
        let value: Value = serde_json::from_slice(marker.value.as_deref().unwrap()).unwrap();
        again.apply(&key, &value);
        assert!(again.apply("c/0", &ok(1)).is_empty());
    }

    /// The keys of `records`, all tombstones.
    fn tombstoned(records: &[Outgoing]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                assert_eq!(r.value, None, "a tombstone");
                serde_json::from_slice(r.key.as_deref().unwrap()).unwrap()
            })
            .collect()
    }

    #[test]
    fn an_ended_chord_is_forgotten_and_tombstoned_after_the_retention() {
        let mut book = Book::new(Duration::from_secs(60));
        book.fold("c/open", &open(2, None), 1_000);
        book.fold("c/0", &ok(0), 2_000);
        let folded = book.fold("c/1", &ok(1), 3_000);
        assert_eq!(folded.fired.len(), 1);
        // Within the retention, a late reply and a repeated open are ignored and kept in mind.
        let folded = book.fold("c/1", &ok(5), 62_999);
        assert!(folded.fired.is_empty() && folded.forgotten.is_empty());
        assert!(book.fold("c/open", &open(2, None), 62_999).fired.is_empty());
        assert!(book.closed.contains_key("c") && book.chords.is_empty());
        // A record of another chord, a retention after `c` ended, forgets `c`.
        let folded = book.fold("d/open", &open(1, None), 63_000);
        assert_eq!(
            folded.forgotten,
            vec![Forgotten {
                id: "c".into(),
                members: 2
            }]
        );
        assert_eq!(
            tombstoned(&folded.records("app-chords", 0)),
            ["c/open", "c/closed", "c/0", "c/1"]
        );
        assert!(
            book.closed.is_empty() && book.expiry.is_empty(),
            "{:?}",
            book.expiry
        );
        assert!(book.chords.contains_key("d"), "`d` is in progress");
    }

    #[test]
    fn a_chord_in_progress_is_never_forgotten() {
        let mut book = Book::new(Duration::from_secs(1));
        book.fold("c/open", &open(2, None), 0);
        book.fold("c/0", &ok(0), 0);
        let folded = book.fold("other/open", &open(5, None), 1_000_000);
        assert!(folded.forgotten.is_empty());
        let fired = book.fold("c/1", &ok(1), 1_000_001).fired;
        assert_eq!(fired.len(), 1, "it still completes");
        assert_eq!(
            fired[0].result.results,
            vec![Some(0.into()), Some(1.into())]
        );
    }

    #[test]
    fn replies_without_an_open_are_forgotten_after_the_retention() {
        let mut book = Book::new(Duration::from_secs(10));
        // A reply to a chord forgotten long ago.
        book.fold("gone/3", &ok(3), 0);
        assert_eq!(book.chords.len(), 1);
        let folded = book.fold(TICK, &serde_json::json!({ "now": 10_000 }), 10_000);
        assert_eq!(
            tombstoned(&folded.records("t", 0)),
            [
                "gone/open",
                "gone/closed",
                "gone/0",
                "gone/1",
                "gone/2",
                "gone/3"
            ]
        );
        assert!(book.chords.is_empty() && book.expiry.is_empty());
        // A reply that comes before its open is kept once the open comes.
        book.fold("early/0", &ok(0), 20_000);
        book.fold("early/open", &open(2, None), 20_001);
        assert!(book
            .fold("x/open", &open(1, None), 40_000)
            .forgotten
            .is_empty());
        assert_eq!(book.chords["early"].replies.len(), 1);
    }

    #[test]
    fn a_closed_marker_read_when_rebuilding_is_forgotten_like_the_chord_it_ended() {
        // The chord ended live (its members' records were compacted away since); the marker
        // says how many members it had.
        let mut live = Book::new(Duration::from_secs(10));
        live.fold("c/open", &open(3, None), 0);
        let mut rebuilt = Book::new(Duration::from_secs(10));
        let marker = serde_json::json!({ "outcome": "failed", "size": 3 });
        rebuilt.fold("c/closed", &marker, 5);
        assert!(rebuilt.fold("c/0", &ok(0), 6).fired.is_empty());
        let folded = rebuilt.fold("d/open", &open(1, None), 10_005);
        assert_eq!(
            folded.forgotten,
            vec![Forgotten {
                id: "c".into(),
                members: 3
            }]
        );
    }
}
