//! The chord coordinator: an agent (one actor per partition of `<app>-chords`) that counts the
//! replies of each chord's members and sends the chord's result to its callback once.
//!
//! The partition is the coordinator's whole state: the chords' "open" records, the members'
//! replies, ticks (the coordinator's clock, for deadlines) and "closed" markers. An actor that
//! takes a partition over rebuilds its state by folding the partition's records before its
//! committed position (those were handled already: their callbacks were sent), then folds the
//! rest as events. Under `exactly_once` a chord's callback and its "closed" marker are written in
//! the transaction that commits the record that completed it, so the callback is sent once.

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
                    serde_json::to_vec(&serde_json::json!({ "outcome": self.result.outcome }))
                        .unwrap_or_default(),
                ),
                headers: Headers::new(),
            },
        ]
    }
}

/// The chords of one partition: the fold of its records.
#[derive(Default)]
pub(crate) struct Book {
    chords: HashMap<String, Pending>,
    closed: BTreeSet<String>,
}

impl Book {
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
        if self.closed.contains(id) {
            return Vec::new();
        }
        match part {
            OPEN => {
                let Ok(open) = serde_json::from_value::<Open>(value.clone()) else {
                    return Vec::new();
                };
                self.chords
                    .entry(id.to_string())
                    .or_default()
                    .open
                    .get_or_insert(open);
            }
            CLOSED => {
                self.chords.remove(id);
                self.closed.insert(id.to_string());
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
                self.chords
                    .entry(id.to_string())
                    .or_default()
                    .replies
                    .entry(index)
                    .or_insert(reply);
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
        let open = pending.open?;
        self.closed.insert(id.to_string());
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
) -> Agent<String, String> {
    // Values are read as their JSON text (a `Value` is not ordered, as agent types must be).
    let topic = Topic::<String, String>::new(chords_topic(app_id)).value_codec(Str);
    board.running.store(true, Ordering::SeqCst);
    Agent::new(COORDINATOR, &topic).manual_ack().actor(
        move |events: PartitionEvents<String, String>| {
            let cell = Arc::clone(&cell);
            let board = Arc::clone(&board);
            async move {
                let workflows = from_cell(&cell).map_err(|e| HandlerError(e.to_string()))?;
                coordinate(events, workflows, board).await
            }
        },
    )
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
                let restored =
                    match restore(&workflows, &topic, partition, event.origin().offset).await {
                        Ok(restored) => Arc::new(Mutex::new(restored)),
                        Err(e) => break Err(HandlerError(e.to_string())),
                    };
                board.set(partition, Some(Arc::clone(&restored)));
                book.insert(restored).clone()
            }
        };
        let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
        let value = serde_json::from_str::<Value>(event.value_ref()).unwrap_or(Value::Null);
        for fired in book.apply(event.key_ref(), &value) {
            log::info!(
                "chord `{}`: {:?}, sent to `{}`",
                fired.result.chord,
                fired.result.outcome,
                fired.to
            );
            for record in fired.records(&topic, partition) {
                event.push_outgoing(record);
            }
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
async fn restore(workflows: &Workflows, topic: &str, partition: i32, upto: i64) -> Result<Book> {
    let mut attempt = 0;
    loop {
        let kafka = workflows.kafka().clone();
        let topic_name = topic.to_string();
        let read = tokio::task::spawn_blocking(move || {
            let mut book = Book::default();
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
                    // Their callbacks were sent when they were handled.
                    drop(book.apply(&key, &value));
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
        let mut book = Book::default();
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
        let mut book = Book::default();
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
        let mut book = Book::default();
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
        let mut book = Book::default();
        book.apply("c/open", &open(1, None));
        assert!(book.apply("c/closed", &serde_json::json!({})).is_empty());
        assert!(book.apply("c/0", &ok(1)).is_empty());
    }

    #[test]
    fn the_records_of_a_fired_chord_are_its_result_and_its_closed_marker() {
        let mut book = Book::default();
        book.apply("c/open", &open(1, None));
        let fired = book.apply("c/0", &ok(1)).pop().unwrap();
        let [result, marker] = fired.records("app-chords", 3);
        assert_eq!(&*result.topic, "done");
        assert_eq!(result.key.as_deref(), Some(&b"\"c\""[..]));
        assert_eq!(marker.partition, Some(3));
        let mut again = Book::default();
        again.apply("c/open", &open(1, None));
        let key: String = serde_json::from_slice(marker.key.as_deref().unwrap()).unwrap();
        let value: Value = serde_json::from_slice(marker.value.as_deref().unwrap()).unwrap();
        again.apply(&key, &value);
        assert!(again.apply("c/0", &ok(1)).is_empty());
    }
}
