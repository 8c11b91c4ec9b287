//! Workflows on agents: request/reply, chains and chords.
//!
//! Everything here is made of Kafka records between agents, so it inherits the agents'
//! guarantees (see [`crate::agent`]): what a handler sends is written when its event is acked,
//! in the event's transaction under `exactly_once`.
//!
//! - **Request/reply** ([`Workflows::ask`], [`Workflows::ask_all`]): a request is a record with a
//!   reply address in its headers (topic, partition, correlation id). The agent's handler answers
//!   with [`crate::agent::Event::reply`]; an event that carries a reply address and ends without
//!   one gets an empty reply, and one that is dead-lettered (after its retries, or because it
//!   does not decode) gets an error reply, so an asker learns of the failure instead of waiting
//!   for its timeout. Replies go to `<app>-replies`; each asking process reads one of its
//!   partitions.
//! - **Chains** ([`Chain`]): a request whose reply becomes the next step's input. The reply of
//!   step A is written as the request of step B, in A's transaction under `exactly_once`, so a
//!   chain's progress is durable: after a crash it resumes at the step that had not committed.
//! - **Chords** ([`Chord`]): a group of requests and a callback. Each member's reply goes to the
//!   chord coordinator ([`crate::App::chords`]), an agent that counts the replies per chord in
//!   the compacted topic `<app>-chords`; when every member has answered it sends the chord's
//!   result to the callback topic, once per chord under `exactly_once`.
//!
//! ```no_run
//! use std::time::Duration;
//! use faustus::agent::{Agent, Event};
//! use faustus::prelude::*;
//! use faustus::workflow::Workflows;
//!
//! # async fn demo(workflows: Workflows) -> faustus::Result<()> {
//! let squares = Topic::<String, i64>::new("squares");
//! let agent = Agent::new("square", &squares).handler(|event: Event<String, i64>| async move {
//!     event.reply(&(event.value() * event.value()))?;
//!     Ok(())
//! });
//! // ... App::new("maths").agent(agent).start(..) ...
//! let nine: i64 = workflows
//!     .ask(&squares, &"a".to_string(), &3, Duration::from_secs(5))
//!     .await?;
//! # let _ = (agent, nine);
//! # Ok(())
//! # }
//! ```

mod chords;
mod replies;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use faustus_connectors::{ensure_topics, murmur2, KafkaConfig, TopicSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agent::Outgoing;
use crate::error::{Error, Result};
use crate::producer::Producer;
use crate::record::Headers;
use crate::topic::{RecordError, Topic};

pub(crate) use chords::{chord_coordinator, ChordBoard, COORDINATOR as COORDINATOR_NAME};
pub use chords::{
    ChordOutcome, ChordResult, ChordStatus, FailedMember,
    DEFAULT_RETENTION as DEFAULT_CHORD_RETENTION,
};

/// The header naming the topic a request's reply goes to.
pub(crate) const REPLY_TO: &str = "faustus-reply-to";
/// The header naming the partition of [`REPLY_TO`] the reply goes to.
pub(crate) const REPLY_PARTITION: &str = "faustus-reply-partition";
/// The header carrying a request's correlation id, repeated on its reply.
pub(crate) const CORRELATION: &str = "faustus-correlation-id";
/// The header listing a chain's next steps (a JSON array of topic names).
pub(crate) const CHAIN: &str = "faustus-chain";

/// The topic of an application's replies.
pub fn replies_topic(app_id: &str) -> String {
    format!("{app_id}-replies")
}

/// The topic of an application's chord coordinator.
pub fn chords_topic(app_id: &str) -> String {
    format!("{app_id}-chords")
}

/// What a request's handler answered: a value (JSON), nothing, or the error it failed with
/// after its retries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The value the handler replied with (`None`: it ended without replying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Why the request failed (its handler's last error), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A JSON value that can be a field of an agent's key or value type (those are ordered and
/// hashed): ordered and hashed by its JSON text. A chord's results are these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonValue(pub serde_json::Value);

impl JsonValue {
    /// The value as a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> std::result::Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }
}

impl<T: Into<serde_json::Value>> From<T> for JsonValue {
    fn from(value: T) -> Self {
        JsonValue(value.into())
    }
}

impl std::ops::Deref for JsonValue {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

impl std::hash::Hash for JsonValue {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_string().hash(state);
    }
}

impl PartialOrd for JsonValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for JsonValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.to_string().cmp(&other.0.to_string())
    }
}

/// Where a request's answer goes: the reply address and, for a chain, its next steps.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ReplyAddress {
    /// The final reply's topic, partition and correlation id.
    reply: Option<(String, Option<i32>, String)>,
    /// The chain's next steps (topic names), first first.
    chain: Vec<String>,
    /// The request's key: the next step of a chain gets it.
    key: Option<Vec<u8>>,
}

impl ReplyAddress {
    /// The address a request's headers carry, if any.
    pub(crate) fn from_headers(headers: &Headers, key: Option<&[u8]>) -> Option<Self> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let reply = header(REPLY_TO).map(|topic| {
            (
                topic.to_string(),
                header(REPLY_PARTITION).and_then(|p| p.parse().ok()),
                header(CORRELATION).unwrap_or_default().to_string(),
            )
        });
        let chain: Vec<String> = header(CHAIN)
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        if reply.is_none() && chain.is_empty() {
            return None;
        }
        Some(ReplyAddress {
            reply,
            chain,
            key: key.map(<[u8]>::to_vec),
        })
    }

    /// The record that carries `reply` on: the chain's next request when there is a next step
    /// and the reply is not an error, otherwise the reply itself (none when nobody asked).
    pub(crate) fn record(&self, reply: Reply) -> Option<Outgoing> {
        if let (Some((next, rest)), None) = (self.chain.split_first(), &reply.error) {
            let value = reply.value.unwrap_or(serde_json::Value::Null);
            return Some(Outgoing {
                topic: Arc::from(next.as_str()),
                partition: None,
                key: self.key.clone(),
                value: Some(serde_json::to_vec(&value).unwrap_or_default()),
                headers: request_headers(self.reply.as_ref(), rest),
            });
        }
        let (topic, partition, correlation) = self.reply.as_ref()?;
        Some(Outgoing {
            topic: Arc::from(topic.as_str()),
            partition: *partition,
            key: Some(json_string(correlation)),
            value: Some(serde_json::to_vec(&reply).unwrap_or_default()),
            headers: vec![(CORRELATION.into(), correlation.as_bytes().to_vec())],
        })
    }
}

/// A string as a JSON key.
fn json_string(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

/// The headers of a request: its reply address, and a chain's remaining steps.
fn request_headers(reply: Option<&(String, Option<i32>, String)>, chain: &[String]) -> Headers {
    let mut headers = Headers::new();
    if let Some((topic, partition, correlation)) = reply {
        headers.push((REPLY_TO.into(), topic.as_bytes().to_vec()));
        if let Some(p) = partition {
            headers.push((REPLY_PARTITION.into(), p.to_string().into_bytes()));
        }
        headers.push((CORRELATION.into(), correlation.as_bytes().to_vec()));
    }
    if !chain.is_empty() {
        headers.push((CHAIN.into(), serde_json::to_vec(chain).unwrap_or_default()));
    }
    headers
}

/// Why an [`Workflows::ask`] gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum AskError {
    /// No reply came within the timeout (no agent reads the topic, or it is slower).
    Timeout {
        /// The topic asked.
        topic: String,
        /// How long the asker waited.
        after: Duration,
    },
    /// The request's handler failed after its retries (the request was dead-lettered).
    Failed(String),
    /// The reply is not a value of the asked type (or the agent ended without replying).
    Reply(String),
    /// The request could not be sent.
    Send(String),
}

impl fmt::Display for AskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Timeout { topic, after } => {
                write!(f, "no reply from `{topic}` within {after:?}")
            }
            AskError::Failed(e) => write!(f, "the request failed: {e}"),
            AskError::Reply(e) => write!(f, "the reply does not decode: {e}"),
            AskError::Send(e) => write!(f, "the request was not sent: {e}"),
        }
    }
}

impl std::error::Error for AskError {}

impl From<AskError> for Error {
    fn from(e: AskError) -> Self {
        match e {
            AskError::Timeout { .. } => Error::NotReady(e.to_string()),
            other => Error::Runtime(other.to_string()),
        }
    }
}

/// A request already encoded: topic, key, value.
#[derive(Clone, Debug)]
struct Request {
    topic: String,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Request {
    fn new<K: 'static, V: 'static>(
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
    ) -> std::result::Result<Self, RecordError> {
        let (key, value) = topic.encode_record(key, Some(value))?;
        Ok(Request {
            topic: topic.name().to_string(),
            key,
            value: value.unwrap_or_default(),
        })
    }

    fn outgoing(&self, headers: Headers) -> Outgoing {
        Outgoing {
            topic: Arc::from(self.topic.as_str()),
            partition: None,
            key: Some(self.key.clone()),
            value: Some(self.value.clone()),
            headers,
        }
    }
}

/// A chain: a first request, whose reply becomes the input of the next step, and so on. The
/// steps after the first read JSON values (the previous step's reply) and keep the first
/// request's key; each step answers with [`crate::agent::Event::reply`].
#[derive(Clone, Debug)]
pub struct Chain {
    first: Request,
    steps: Vec<String>,
}

impl Chain {
    /// A chain starting with `(key, value)` sent to `topic`. Fails when the record does not
    /// encode.
    pub fn new<K: 'static, V: 'static>(
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
    ) -> std::result::Result<Self, RecordError> {
        Ok(Chain {
            first: Request::new(topic, key, value)?,
            steps: Vec::new(),
        })
    }

    /// Adds a step: the previous step's reply is sent to `topic`.
    pub fn then<K: 'static, V: 'static>(mut self, topic: &Topic<K, V>) -> Self {
        self.steps.push(topic.name().to_string());
        self
    }

    /// The chain's steps, first first.
    pub fn steps(&self) -> Vec<&str> {
        std::iter::once(self.first.topic.as_str())
            .chain(self.steps.iter().map(String::as_str))
            .collect()
    }

    pub(crate) fn outgoing(&self, reply: Option<&(String, Option<i32>, String)>) -> Outgoing {
        self.first.outgoing(request_headers(reply, &self.steps))
    }
}

/// A chord: requests (its members) and a callback that receives every member's reply once they
/// have all answered; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Chord {
    id: String,
    members: Vec<Request>,
    deadline: Option<Duration>,
    callback: Option<String>,
    error_callback: Option<String>,
}

impl Chord {
    /// A chord with id `id`, unique in the application (a second chord with an id already used
    /// is ignored by the coordinator).
    pub fn new(id: impl Into<String>) -> Self {
        Chord {
            id: id.into(),
            members: Vec::new(),
            deadline: None,
            callback: None,
            error_callback: None,
        }
    }

    /// Adds a member: `(key, value)` sent to `topic`, whose agent answers with
    /// [`crate::agent::Event::reply`] (or ends without a reply: an empty result).
    pub fn member<K: 'static, V: 'static>(
        mut self,
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
    ) -> std::result::Result<Self, RecordError> {
        self.members.push(Request::new(topic, key, value)?);
        Ok(self)
    }

    /// The chord fails if members are still missing `deadline` after it starts.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Where the chord's result goes once every member has succeeded (key: the chord's id).
    pub fn callback(mut self, topic: &Topic<String, ChordResult>) -> Self {
        self.callback = Some(topic.name().to_string());
        self
    }

    /// Where the chord's result goes when a member failed after its retries, or the deadline
    /// passed (default: the callback topic).
    pub fn error_callback(mut self, topic: &Topic<String, ChordResult>) -> Self {
        self.error_callback = Some(topic.name().to_string());
        self
    }

    /// The chord's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its members' count.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The records that start it: the coordinator's "open" record, then the members' requests.
    fn records(&self, chords: &str, partitions: i32) -> Result<Vec<Outgoing>> {
        let callback = self.callback.clone().ok_or_else(|| {
            Error::Config(format!(
                "chord `{}` has no callback topic: give it one with `Chord::callback`",
                self.id
            ))
        })?;
        if self.members.is_empty() {
            return Err(Error::Config(format!("chord `{}` has no members", self.id)));
        }
        if self.id.is_empty() || self.id.contains('/') {
            return Err(Error::Config(format!(
                "chord id `{}` must be non-empty and must not contain `/`",
                self.id
            )));
        }
        let partition = chord_partition(&self.id, partitions);
        let open = chords::Open {
            size: self.members.len(),
            started: now_ms(),
            deadline: self
                .deadline
                .map(|d| now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
            error_callback: self
                .error_callback
                .clone()
                .unwrap_or_else(|| callback.clone()),
            callback,
        };
        let mut records = vec![Outgoing {
            topic: Arc::from(chords),
            partition: Some(partition),
            key: Some(json_string(&chords::key(&self.id, chords::OPEN))),
            value: Some(serde_json::to_vec(&open).unwrap_or_default()),
            headers: Headers::new(),
        }];
        for (i, member) in self.members.iter().enumerate() {
            let reply = (
                chords.to_string(),
                Some(partition),
                chords::key(&self.id, &i.to_string()),
            );
            records.push(member.outgoing(request_headers(Some(&reply), &[])));
        }
        Ok(records)
    }
}

/// The partition of `<app>-chords` that chord `id`'s records go to.
pub(crate) fn chord_partition(id: &str, partitions: i32) -> i32 {
    ((murmur2(&json_string(id)) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

/// Milliseconds since 1970.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a program asks and starts workflows through: from [`crate::Running::workflows`], from
/// an agent's event ([`crate::agent::Event::workflows`]), or [`Workflows::connect`] outside an
/// application. Cloning it is cheap.
#[derive(Clone)]
pub struct Workflows {
    inner: Arc<Inner>,
}

struct Inner {
    app_id: String,
    kafka: KafkaConfig,
    partitions: i32,
    /// The producer, created at the first send.
    producer: OnceLock<Producer>,
    /// The reply reader, started at the first ask.
    replies: OnceLock<replies::Replies>,
    /// The partition counts of the workflow topics, once created or found.
    topics: std::sync::Mutex<BTreeMap<String, i32>>,
}

impl Workflows {
    /// Workflows of application `app_id` on the Kafka cluster `kafka`, creating the workflow
    /// topics it needs with `partitions` partitions when they are missing.
    pub fn connect(kafka: &KafkaConfig, app_id: &str, partitions: i32) -> Result<Self> {
        Ok(Workflows {
            inner: Arc::new(Inner {
                app_id: app_id.to_string(),
                kafka: kafka.clone(),
                partitions,
                producer: OnceLock::new(),
                replies: OnceLock::new(),
                topics: Default::default(),
            }),
        })
    }

    /// The application's id.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// As [`Workflows::topic`], on a blocking thread the first time (it asks Kafka then).
    async fn topic_async(&self, name: &str, compacted: bool) -> Result<i32> {
        if let Some(p) = self.known_partitions(name) {
            return Ok(p);
        }
        let (workflows, name) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || workflows.topic(&name, compacted))
            .await
            .unwrap_or_else(|e| Err(Error::Runtime(format!("creating a workflow topic: {e}"))))
    }

    /// The partitions of workflow topic `name`, if known already.
    fn known_partitions(&self, name: &str) -> Option<i32> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    /// The partitions of workflow topic `name`, creating it (compacted when asked) if missing
    /// (blocking: it asks Kafka the first time).
    fn topic(&self, name: &str, compacted: bool) -> Result<i32> {
        if let Some(p) = self.known_partitions(name) {
            return Ok(p);
        }
        let spec = match compacted {
            true => TopicSpec::compacted(name, self.inner.partitions),
            false => TopicSpec::new(name, self.inner.partitions),
        };
        let partitions = ensure_topics(&self.inner.kafka, &[spec])?
            .first()
            .copied()
            .unwrap_or(self.inner.partitions);
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), partitions);
        Ok(partitions)
    }

    /// Records the partition counts of the workflow topics among `partitions` (the application
    /// created them).
    pub(crate) fn known_topics(&self, partitions: &BTreeMap<String, i32>) {
        let mut topics = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        for name in [
            replies_topic(&self.inner.app_id),
            chords_topic(&self.inner.app_id),
        ] {
            if let Some(p) = partitions.get(&name) {
                topics.insert(name, *p);
            }
        }
    }

    /// As [`Workflows::replies`], on a blocking thread the first time (it asks Kafka then).
    async fn replies_async(&self) -> Result<&replies::Replies> {
        if let Some(r) = self.inner.replies.get() {
            return Ok(r);
        }
        let workflows = self.clone();
        tokio::task::spawn_blocking(move || workflows.replies().map(drop))
            .await
            .unwrap_or_else(|e| Err(Error::Runtime(format!("starting the reply reader: {e}"))))?;
        self.replies()
    }

    /// The reply reader (started at the first call; blocking then).
    fn replies(&self) -> Result<&replies::Replies> {
        if let Some(r) = self.inner.replies.get() {
            return Ok(r);
        }
        let topic = replies_topic(&self.inner.app_id);
        let partitions = self.topic(&topic, false)?;
        let started = replies::Replies::start(&self.inner.kafka, &topic, partitions)?;
        Ok(self.inner.replies.get_or_init(|| started))
    }

    /// Sends `(key, value)` to `topic` as a request and waits up to `timeout` for its reply,
    /// decoded as an `R`. The agent reading `topic` answers with
    /// [`crate::agent::Event::reply`].
    pub async fn ask<K: 'static, V: 'static, R: DeserializeOwned>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
        timeout: Duration,
    ) -> std::result::Result<R, AskError> {
        let request = Request::new(topic, key, value).map_err(|e| AskError::Send(e.to_string()))?;
        self.ask_request(
            &request.topic.clone(),
            |reply| request.outgoing(request_headers(Some(reply), &[])),
            timeout,
        )
        .await
    }

    /// Faust's scatter/gather: asks `topic` once per `(key, value)`, all at once, and returns
    /// the replies in the order of the requests (each its own result; `timeout` applies to
    /// each).
    pub async fn ask_all<K: 'static, V: 'static, R: DeserializeOwned>(
        &self,
        topic: &Topic<K, V>,
        requests: impl IntoIterator<Item = (K, V)>,
        timeout: Duration,
    ) -> Vec<std::result::Result<R, AskError>> {
        let asks = requests
            .into_iter()
            .map(|(k, v)| async move { self.ask::<K, V, R>(topic, &k, &v, timeout).await });
        futures::future::join_all(asks).await
    }

    /// Starts `chain` and waits up to `timeout` for its last step's reply.
    pub async fn ask_chain<R: DeserializeOwned>(
        &self,
        chain: &Chain,
        timeout: Duration,
    ) -> std::result::Result<R, AskError> {
        let first = chain.first.topic.clone();
        self.ask_request(&first, |reply| chain.outgoing(Some(reply)), timeout)
            .await
    }

    async fn ask_request<R: DeserializeOwned>(
        &self,
        topic: &str,
        request: impl FnOnce(&(String, Option<i32>, String)) -> Outgoing,
        timeout: Duration,
    ) -> std::result::Result<R, AskError> {
        let replies = self
            .replies_async()
            .await
            .map_err(|e| AskError::Send(e.to_string()))?;
        let (address, waiting) = replies.expect();
        let record = request(&address);
        if let Err(e) = self.send(&record).await {
            replies.forget(&address.2);
            return Err(AskError::Send(e.to_string()));
        }
        let reply = match tokio::time::timeout(timeout, waiting).await {
            Ok(Ok(reply)) => reply,
            _ => {
                replies.forget(&address.2);
                return Err(AskError::Timeout {
                    topic: topic.to_string(),
                    after: timeout,
                });
            }
        };
        if let Some(error) = reply.error {
            return Err(AskError::Failed(error));
        }
        serde_json::from_value(reply.value.unwrap_or(serde_json::Value::Null))
            .map_err(|e| AskError::Reply(e.to_string()))
    }

    /// Starts `chain` without waiting for it (its last step's reply goes nowhere): once this
    /// returns, its first request is in Kafka.
    pub async fn start_chain(&self, chain: &Chain) -> Result<()> {
        self.send(&chain.outgoing(None)).await.map(drop)
    }

    /// Starts `chord`: once this returns, its records are in Kafka, and the coordinator
    /// ([`crate::App::chords`]) of any process of the application completes it.
    pub async fn start_chord(&self, chord: &Chord) -> Result<()> {
        let records = self.chord_records(chord).await?;
        let sends = records.iter().map(|r| self.send(r));
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        Ok(())
    }

    /// The records that start `chord` (creating the chords topic if missing, on a blocking
    /// thread).
    pub(crate) async fn chord_records(&self, chord: &Chord) -> Result<Vec<Outgoing>> {
        let topic = chords_topic(&self.inner.app_id);
        let partitions = self.topic_async(&topic, true).await?;
        chord.records(&topic, partitions)
    }

    /// Sends `record` and waits until Kafka has it.
    pub(crate) async fn send(&self, record: &Outgoing) -> Result<(i32, i64)> {
        self.producer()?.send_outgoing(record).await
    }

    /// The Kafka configuration.
    pub(crate) fn kafka(&self) -> &KafkaConfig {
        &self.inner.kafka
    }

    /// The producer (created at the first call).
    pub(crate) fn producer(&self) -> Result<&Producer> {
        if let Some(p) = self.inner.producer.get() {
            return Ok(p);
        }
        let created = Producer::with_config(&self.inner.kafka)?;
        Ok(self.inner.producer.get_or_init(|| created))
    }
}

impl fmt::Debug for Workflows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflows")
            .field("app_id", &self.inner.app_id)
            .finish()
    }
}

/// The application's workflows handle, set once it has connected to Kafka.
pub(crate) type WorkflowsCell = Arc<OnceLock<Workflows>>;

/// The handle in `cell`, or an error saying it is not there yet.
pub(crate) fn from_cell(cell: &WorkflowsCell) -> Result<Workflows> {
    cell.get().cloned().ok_or_else(|| {
        Error::NotReady(
            "workflows are not available before the application connects to Kafka".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_record_without_a_reply_address_needs_no_reply() {
        assert_eq!(
            ReplyAddress::from_headers(&headers(&[("x", "y")]), None),
            None
        );
    }

    #[test]
    fn a_reply_goes_to_the_address_with_its_correlation_id() {
        let address = ReplyAddress::from_headers(
            &headers(&[
                (REPLY_TO, "app-replies"),
                (REPLY_PARTITION, "2"),
                (CORRELATION, "p-7"),
            ]),
            Some(b"\"k\""),
        )
        .expect("an address");
        let reply = Reply {
            value: Some(serde_json::json!(49)),
            error: None,
        };
        let record = address.record(reply.clone()).expect("a record");
        assert_eq!(&*record.topic, "app-replies");
        assert_eq!(record.partition, Some(2));
        assert_eq!(record.key.as_deref(), Some(&b"\"p-7\""[..]));
        let sent: Reply = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(sent, reply);
    }

    #[test]
    fn a_chain_step_sends_its_reply_to_the_next_step_with_the_rest_of_the_chain() {
        let address = ReplyAddress::from_headers(
            &headers(&[
                (REPLY_TO, "app-replies"),
                (CORRELATION, "p-1"),
                (CHAIN, "[\"b\",\"c\"]"),
            ]),
            Some(b"\"k\""),
        )
        .expect("an address");
        let record = address
            .record(Reply {
                value: Some(serde_json::json!({"n": 2})),
                error: None,
            })
            .expect("a record");
        assert_eq!(&*record.topic, "b");
        assert_eq!(record.key.as_deref(), Some(&b"\"k\""[..]));
        assert_eq!(record.value.as_deref(), Some(&b"{\"n\":2}"[..]));
        let next = ReplyAddress::from_headers(&record.headers, record.key.as_deref()).unwrap();
        assert_eq!(next.chain, vec!["c".to_string()]);
        assert_eq!(next.reply, address.reply);
        // An error skips the rest of the chain and goes to the asker.
        let failed = address
            .record(Reply {
                value: None,
                error: Some("boom".into()),
            })
            .unwrap();
        assert_eq!(&*failed.topic, "app-replies");
    }

    #[test]
    fn a_chord_is_checked_before_it_starts() {
        let t = Topic::<String, i64>::new("t");
        let chord = Chord::new("c1").member(&t, &"a".into(), &1).unwrap();
        let e = chord.records("app-chords", 4).unwrap_err().to_string();
        assert!(e.contains("no callback"), "{e}");
        let cb = Topic::<String, ChordResult>::new("cb");
        let e = Chord::new("c/1")
            .callback(&cb)
            .member(&t, &"a".into(), &1)
            .unwrap();
        assert!(e
            .records("x", 4)
            .unwrap_err()
            .to_string()
            .contains("must not contain"));
        let ok = Chord::new("c1")
            .callback(&cb)
            .member(&t, &"a".into(), &1)
            .unwrap();
        let records = ok.records("app-chords", 4).unwrap();
        assert_eq!(records.len(), 2);
        let p = chord_partition("c1", 4);
        assert_eq!(records[0].partition, Some(p));
        let member = ReplyAddress::from_headers(&records[1].headers, None).unwrap();
        assert_eq!(
            member.reply,
            Some(("app-chords".into(), Some(p), "c1/0".into()))
        );
    }
}
