//! Agents: async code per event, beside the dataflow.
//!
//! An agent reads a Kafka topic through a consumer group and runs async code for each event: it
//! may call a web service, write a database, send records to topics. Agents are the open edge of
//! a faustus program; the dataflow is the deterministic core.
//!
//! ```no_run
//! use std::time::Duration;
//! use faustus::agent::{Agent, Event};
//! use faustus::prelude::*;
//!
//! # fn main() -> faustus::Result<()> {
//! let orders = Topic::<String, i64>::new("orders");
//! let checked = Topic::<String, i64>::new("checked-orders");
//! let out = checked.clone();
//! let agent = Agent::new("check-orders", &orders)
//!     .concurrency(16)
//!     .timeout(Duration::from_secs(5))
//!     .sends_to(&checked)
//!     .handler(move |event: Event<String, i64>| {
//!         let out = out.clone();
//!         async move {
//!             // ... call a service with event.value() ...
//!             event.send(&out, event.key(), event.value())?;
//!             Ok(())
//!         }
//!     });
//! App::new("shop").agent(agent).run(|_df| {})
//! # }
//! ```
//!
//! ## The life of an event
//!
//! ```text
//!  Kafka ──poll──▶ begin(offset) ──▶ handler(event) ──Ok──▶ ack ──▶ committable ──▶ commit
//!                     │                  │  Err/panic/timeout: retry with backoff
//!                     │                  └─ retries exhausted: dead letter, then ack
//!                     └─ in flight ≥ max_in_flight: held (read ahead, up to read_ahead_bytes,
//!                        then the partition is paused)
//! ```
//!
//! - **read**: the agent's consumer (group `<app>-<agent>`, cooperative rebalancing,
//!   `read_committed`) takes each record of its assigned partitions; a record that does not
//!   decode goes to the dead-letter topic at once.
//! - **handle**: the handler runs on tokio, `concurrency` at a time. With
//!   [`Ordering::PerKey`] (the default) events of one key are handled one after the other, in
//!   offset order, and different keys in parallel; with [`Ordering::Unordered`] any event may
//!   overtake another.
//! - **ack**: by default an event is acked when its handler returns `Ok`. With
//!   [`Agent::manual_ack`] the handler acks with [`Event::acker`], from any task, at any time.
//! - **commit**: events complete out of order; the position committed for a partition is its
//!   first unacked offset, every commit interval. Acked offsets above it are kept as ranges.
//!
//! ## Guarantees
//!
//! Records sent with [`Event::send`] are held with the event and written when it is acked; a
//! failed attempt's sends are dropped, so a retried event never writes twice what a failed
//! attempt wrote. Under `exactly_once` an event's records and the position after it commit in
//! one Kafka transaction, and only once every earlier event of its partition is acked: after a
//! crash, the events after the committed position run again and their records were never
//! committed. Under `at_least_once` records are written when an event is acked, and positions
//! are committed after those writes are delivered.
//!
//! Side effects outside Kafka (a web call, a database write) are at-least-once in both modes:
//! an event whose position was not committed runs again after a crash or a rebalance. Make them
//! idempotent with [`Event::idempotency_key`] (`topic/partition/offset`, the same on every
//! attempt).

mod dispatch;

pub(crate) use dispatch::{panic_payload_text, polling_handler};
mod runtime;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::dataflow::Data;
use crate::record::Headers;
use crate::topic::{RecordError, Topic};

pub(crate) use runtime::{
    group_id, start_agents, AgentBoard, AgentEnv, AgentSpec, AgentsHandle, RunningAgent,
};
pub use runtime::{AgentStatus, PartitionStatus};

/// What a handler returns: `Ok` acks the event (unless acks are manual); an error retries it.
pub type HandlerResult = std::result::Result<(), HandlerError>;

/// Why a handler failed: any error, kept as its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError(pub String);

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HandlerError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError(message.into())
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.to_string())
    }
}

/// How events of one partition may overtake each other when `concurrency > 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Events of one key are handled one at a time, in offset order; keys run in parallel.
    #[default]
    PerKey,
    /// Any event may start before an earlier one has finished.
    Unordered,
}

/// What happens to an event whose handler still fails after every retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The event goes to the dead-letter topic with the reason, is acked, and the agent goes
    /// on.
    #[default]
    DeadLetter,
    /// The agent stops, with the event's error; its position is not committed past the event.
    Stop,
}

/// The boxed future of a handler.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// What runs for each event (type-erased over the agent's key and value types).
pub(crate) type Handler<K, V> = Arc<dyn Fn(Event<K, V>) -> HandlerFuture + Send + Sync>;

/// What runs for each assigned partition in the actor form.
pub(crate) type Actor<K, V> = Arc<dyn Fn(PartitionEvents<K, V>) -> HandlerFuture + Send + Sync>;

/// The agent's code: a handler per event, or an actor per partition.
pub(crate) enum Body<K, V> {
    Handler(Handler<K, V>),
    Actor(Actor<K, V>),
}

impl<K, V> Clone for Body<K, V> {
    fn clone(&self) -> Self {
        match self {
            Body::Handler(h) => Body::Handler(Arc::clone(h)),
            Body::Actor(a) => Body::Actor(Arc::clone(a)),
        }
    }
}

/// Retry settings: `retries` more attempts after the first, waiting `backoff`, doubled after
/// every failure up to `max_backoff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// The first wait.
    #[serde(with = "millis")]
    pub backoff: Duration,
    /// The longest wait.
    #[serde(with = "millis")]
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            retries: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// An agent's settings, as `/api/agents/` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct AgentSettings {
    /// The agent's name (its consumer group is `<app>-<name>`).
    pub name: String,
    /// The topic it reads.
    pub topic: String,
    /// Handlers running at once.
    pub concurrency: usize,
    /// How events may overtake each other.
    pub ordering: Ordering,
    /// Events handed to the code and not acked, per partition; further records are held.
    pub max_in_flight: usize,
    /// Bytes of records held per partition (read ahead of the code) before the partition is
    /// paused; it resumes at half.
    pub read_ahead_bytes: usize,
    /// Whether the handler acks explicitly.
    pub manual_ack: bool,
    /// Retries of a failing handler.
    pub retry: Retry,
    /// The longest a handler attempt may run, in milliseconds.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// What happens after the last retry.
    pub on_failure: OnFailure,
    /// How long a revoked partition's in-flight events may finish, in milliseconds.
    #[serde(with = "millis")]
    pub drain_timeout: Duration,
    /// Whether the agent runs one actor per partition.
    pub actor: bool,
    /// Whether tombstones (records without a value) are acked without reaching the code,
    /// instead of going to the dead letters.
    pub skip_tombstones: bool,
}

/// An agent: async code for each event of a topic; see the [module docs](self).
pub struct Agent<K: 'static, V: 'static> {
    pub(crate) settings: AgentSettings,
    pub(crate) topic: Topic<K, V>,
    pub(crate) body: Option<Body<K, V>>,
    pub(crate) sinks: Vec<(String, Option<i32>)>,
    /// How the `send` command encodes records of the topics it reads and declares.
    pub(crate) encoders: Vec<(String, crate::topic::TextEncoder)>,
    /// Fault injection: every how many transactions one is aborted instead of committed.
    #[cfg(feature = "fault-injection")]
    pub(crate) abort_every: Option<u32>,
    /// What the engine adds to agents it makes itself (timers).
    pub(crate) internals: Internals,
}

/// Told of the partitions assigned (`true`) or about to be revoked (`false`).
pub(crate) type OnAssignment = Arc<dyn Fn(&[i32], bool) + Send + Sync>;

/// What the engine adds to an agent it makes itself (a timer, [`crate::timer`]).
#[derive(Clone, Default)]
pub(crate) struct Internals {
    /// Consumer properties of this agent's consumer, under the user's consumer properties.
    pub consumer_properties: Vec<(&'static str, String)>,
    /// Called on the consumer thread with the partitions assigned (`true`) or about to be
    /// revoked (`false`).
    pub on_assignment: Option<OnAssignment>,
}

impl<K: Data + Send, V: Data + Send> Agent<K, V> {
    /// An agent named `name` (unique in the application) reading `topic`. Give it its code with
    /// [`Agent::handler`] or [`Agent::actor`].
    pub fn new(name: &str, topic: &Topic<K, V>) -> Self {
        Agent {
            settings: AgentSettings {
                name: name.to_string(),
                topic: topic.name().to_string(),
                concurrency: 1,
                ordering: Ordering::PerKey,
                max_in_flight: 1024,
                read_ahead_bytes: 8 << 20,
                manual_ack: false,
                retry: Retry::default(),
                timeout: Duration::from_secs(60),
                on_failure: OnFailure::DeadLetter,
                drain_timeout: Duration::from_secs(30),
                actor: false,
                skip_tombstones: false,
            },
            topic: topic.clone(),
            body: None,
            sinks: Vec::new(),
            encoders: vec![(topic.name().to_string(), topic.text_encoder())],
            #[cfg(feature = "fault-injection")]
            abort_every: None,
            internals: Internals::default(),
        }
    }

    /// Fault injection for tests (cargo feature `fault-injection`): under `exactly_once`, every
    /// `n`-th transaction is aborted instead of committed, as a rebalance or a timeout would
    /// abort it, and its events are handled again.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn fault_abort_every(mut self, n: u32) -> Self {
        self.abort_every = Some(n.max(1));
        self
    }

    /// The code run for each event: an async closure returning [`HandlerResult`].
    pub fn handler<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Event<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.body = Some(Body::Handler(Arc::new(move |e| Box::pin(f(e)))));
        self.settings.actor = false;
        self
    }

    /// The actor form (Faust's `isolated_partitions`): one task per assigned partition, which
    /// owns that partition's events: `while let Some(event) = events.next().await { .. }`. A
    /// task starts when the partition is assigned and its stream ends when the partition is
    /// revoked. An event is acked when the actor takes the next one, or with
    /// [`Event::acker`]; with [`Agent::manual_ack`], only with the acker. An actor that returns
    /// an error or panics stops the agent (its partition's unacked events are not committed).
    pub fn actor<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(PartitionEvents<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.body = Some(Body::Actor(Arc::new(move |e| Box::pin(f(e)))));
        self.settings.actor = true;
        self
    }

    /// How many handlers run at once (default 1). Ignored by the actor form, which runs one task
    /// per partition.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n;
        self
    }

    /// How events may overtake each other (default [`Ordering::PerKey`]).
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.settings.ordering = ordering;
        self
    }

    /// Events handed to the code and not yet acked, per partition (default 1024). Records read
    /// beyond it are held, up to [`Agent::read_ahead_bytes`].
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.settings.max_in_flight = n;
        self
    }

    /// Bytes of records (keys and values, plus 64 bytes each) held per partition while
    /// `max_in_flight` events are in flight (default 8 MiB). When they reach it the partition is
    /// paused: nothing more is fetched until half of it has been handed to the code. Memory per
    /// partition is bounded by this and by `max_in_flight` events.
    pub fn read_ahead_bytes(mut self, bytes: usize) -> Self {
        self.settings.read_ahead_bytes = bytes;
        self
    }

    /// The handler acks each event itself, with [`Event::acker`] (possibly later, from another
    /// task); returning `Ok` does not ack.
    pub fn manual_ack(mut self) -> Self {
        self.settings.manual_ack = true;
        self
    }

    /// Tombstones (records without a value: deletions in a compacted topic) are acked without
    /// reaching the code; by default they go to the dead letters, as records that do not decode.
    pub fn skip_tombstones(mut self) -> Self {
        self.settings.skip_tombstones = true;
        self
    }

    /// Retries of a failing handler (default: 3, from 100 ms doubling up to 10 s).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.settings.retry = retry;
        self
    }

    /// The longest one attempt may run (default 60 s); a slower attempt fails and is retried.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// What happens to an event whose last retry failed (default: a dead letter).
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.settings.on_failure = on_failure;
        self
    }

    /// How long the events of a revoked partition may finish before they are given up without
    /// being committed (default 30 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Declares a topic the agent sends to, so that it is created at start (like a dataflow's
    /// output topics). Sends to topics that exist need no declaration.
    pub fn sends_to<K2, V2>(mut self, topic: &Topic<K2, V2>) -> Self
    where
        K2: 'static,
        V2: 'static,
    {
        self.sinks
            .push((topic.name().to_string(), topic.partitions));
        self.encoders
            .push((topic.name().to_string(), topic.text_encoder()));
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }
}

/// A record an event sends, written when the event is acked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub topic: Arc<str>,
    /// The partition, when it is chosen (otherwise the key's).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Headers,
}

/// Where an event came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The topic (shared by the events of the agent).
    #[serde(serialize_with = "serialize_str")]
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

fn serialize_str<S: serde::Serializer>(s: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(s)
}

/// One event handed to an agent: its key, value, origin, timestamp and headers, and what it may
/// do (send records, ack).
/// Cloning it is cheap: clones share the record.
pub struct Event<K, V> {
    record: Arc<EventRecord<K, V>>,
    acker: Acker,
    http: Arc<crate::http::HttpState>,
}

/// What an event was read as: shared by its clones (one per attempt).
pub(crate) struct EventRecord<K, V> {
    pub key: K,
    pub value: V,
    pub origin: Origin,
    pub timestamp: i64,
    pub headers: Headers,
}

impl<K, V> Clone for Event<K, V> {
    fn clone(&self) -> Self {
        Event {
            record: Arc::clone(&self.record),
            acker: self.acker.clone(),
            http: Arc::clone(&self.http),
        }
    }
}

impl<K: Clone, V: Clone> Event<K, V> {
    /// The key.
    pub fn key(&self) -> K {
        self.record.key.clone()
    }

    /// The value.
    pub fn value(&self) -> V {
        self.record.value.clone()
    }
}

impl<K, V> Event<K, V> {
    pub(crate) fn new(
        record: EventRecord<K, V>,
        acker: Acker,
        http: Arc<crate::http::HttpState>,
    ) -> Self {
        Event {
            record: Arc::new(record),
            acker,
            http,
        }
    }

    /// The key, borrowed.
    pub fn key_ref(&self) -> &K {
        &self.record.key
    }

    /// The value, borrowed.
    pub fn value_ref(&self) -> &V {
        &self.record.value
    }

    /// The topic, partition and offset the event was read from.
    pub fn origin(&self) -> &Origin {
        &self.record.origin
    }

    /// `topic/partition/offset`: the same on every attempt and after every restart, for making
    /// side effects outside Kafka idempotent.
    pub fn idempotency_key(&self) -> String {
        let o = &self.record.origin;
        format!("{}/{}/{}", o.topic, o.partition, o.offset)
    }

    /// The record's timestamp (milliseconds since 1970).
    pub fn timestamp(&self) -> i64 {
        self.record.timestamp
    }

    /// The record's headers.
    pub fn headers(&self) -> &Headers {
        &self.record.headers
    }

    /// Sends `(key, value)` to `topic` when the event is acked (under `exactly_once`, in the
    /// transaction that commits the event's position). Fails, sending nothing, when the record
    /// does not encode.
    pub fn send<K2: 'static, V2: 'static>(
        &self,
        topic: &Topic<K2, V2>,
        key: K2,
        value: V2,
    ) -> std::result::Result<(), RecordError> {
        self.send_record(topic, &key, Some(&value), Headers::new())
    }

    /// As [`Event::send`], with headers, or a tombstone when `value` is `None`.
    pub fn send_record<K2: 'static, V2: 'static>(
        &self,
        topic: &Topic<K2, V2>,
        key: &K2,
        value: Option<&V2>,
        headers: Headers,
    ) -> std::result::Result<(), RecordError> {
        let (key, value) = topic.encode_record(key, value)?;
        let mut outbox = self.acker.inner.outbox();
        outbox.push(Outgoing {
            topic: Arc::clone(&topic.name),
            partition: None,
            key: Some(key),
            value,
            headers,
        });
        Ok(())
    }

    /// A handle on the application's public table `name`, which reads any key, from whichever
    /// process keeps it (see [`crate::TableHandle`]). Fails if there is no such public table, or
    /// its types are not `K2` and `V2`.
    pub fn table<K2: Data, V2: Data>(
        &self,
        name: &str,
    ) -> crate::Result<crate::TableHandle<K2, V2>> {
        let reader =
            crate::TableReader::new(name, &self.http.tables, Arc::clone(&self.http.health))?;
        Ok(crate::TableHandle::new(reader, (*self.http).clone()))
    }

    /// Answers the request this event carries (see [`crate::workflow`]): `value` goes to the
    /// asker, or on to a chain's next step, when the event is acked (under `exactly_once`, in
    /// its transaction). The first reply of an attempt counts; an event that carries no request
    /// ignores it. Fails, sending nothing, when `value` is not JSON.
    pub fn reply<R: Serialize>(&self, value: &R) -> std::result::Result<(), RecordError> {
        let value = serde_json::to_value(value).map_err(|e| {
            RecordError::Value(faustus_connectors::CodecError::new(
                "json",
                format!("a reply that is not JSON: {e}"),
            ))
        })?;
        self.acker.inner.reply(crate::workflow::Reply {
            value: Some(value),
            error: None,
        });
        Ok(())
    }

    /// True when the event is a request (it carries a reply address or a chain).
    pub fn is_request(&self) -> bool {
        self.acker.inner.is_request()
    }

    /// The application's workflows: ask other agents, start chains and chords at once (outside
    /// the event's transaction).
    pub fn workflows(&self) -> crate::Result<crate::workflow::Workflows> {
        crate::workflow::from_cell(&self.http.workflows)
    }

    /// Starts `chain` when the event is acked (under `exactly_once`, in its transaction).
    pub fn start_chain(&self, chain: &crate::workflow::Chain) {
        self.push_outgoing(chain.outgoing(None));
    }

    /// Starts `chord` when the event is acked (under `exactly_once`, in its transaction): a
    /// chord callback may start the next chord, or a chain. Fails when the chord is refused (no
    /// callback, no members) or the chords topic cannot be created. The first call of a
    /// process that does not run the coordinator asks Kafka for that topic, on a blocking
    /// thread.
    pub async fn start_chord(&self, chord: &crate::workflow::Chord) -> crate::Result<()> {
        for record in self.workflows()?.chord_records(chord).await? {
            self.push_outgoing(record);
        }
        Ok(())
    }

    /// Adds a record, already encoded, to what the event writes when it is acked.
    pub(crate) fn push_outgoing(&self, record: Outgoing) {
        self.acker.inner.outbox().push(record);
    }

    /// The handle that acks this event; see [`Agent::manual_ack`]. It can be moved to another
    /// task and used later.
    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }
}

/// Acks one event (see [`Agent::manual_ack`]). Cloneable and `Send`; the first `ack` counts.
#[derive(Clone)]
pub struct Acker {
    pub(crate) inner: Arc<dispatch::AckSlot>,
}

impl Acker {
    /// Acks the event: the records it sent are written, and its position may be committed once
    /// every earlier event of its partition is acked. Returns false if it was already acked (or
    /// its partition was revoked meanwhile).
    pub fn ack(&self) -> bool {
        self.inner.ack()
    }

    /// True once the event is acked.
    pub fn is_acked(&self) -> bool {
        self.inner.is_acked()
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acker")
            .field("acked", &self.is_acked())
            .finish()
    }
}

/// The events of one partition, for the actor form ([`Agent::actor`]).
pub struct PartitionEvents<K, V> {
    partition: i32,
    receiver: tokio::sync::mpsc::UnboundedReceiver<Event<K, V>>,
    previous: Option<Acker>,
    manual: bool,
}

impl<K, V> PartitionEvents<K, V> {
    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The next event, or `None` once the partition is revoked or the agent stops. Taking an
    /// event acks the one before (unless acks are manual).
    pub async fn next(&mut self) -> Option<Event<K, V>> {
        if let Some(previous) = self.previous.take() {
            if !self.manual {
                previous.ack();
            }
        }
        let event = self.receiver.recv().await?;
        self.previous = Some(event.acker());
        Some(event)
    }
}
