//! Timers: async code on a schedule, run by one process of the cluster.
//!
//! ```no_run
//! use std::time::Duration;
//! use faustus::prelude::*;
//! use faustus::timer::{Tick, Timer};
//!
//! # fn main() -> faustus::Result<()> {
//! let reports = Topic::<String, String>::new("reports");
//! let out = reports.clone();
//! let hourly = Timer::crontab("hourly-report", "0 * * * *")
//!     .sends_to(&reports)
//!     .handler(move |tick: Tick| {
//!         let out = out.clone();
//!         async move {
//!             tick.send(&out, "report".to_string(), format!("{}", tick.slot_millis()))?;
//!             Ok(())
//!         }
//!     });
//! let heartbeat = Timer::every("heartbeat", Duration::from_secs(10))
//!     .handler(|_tick: Tick| async move { Ok(()) });
//! App::new("shop").timer(hourly).timer(heartbeat).run_agents()
//! # }
//! ```
//!
//! ## How it works
//!
//! A timer is an agent (named `timer-<name>`) over an internal topic of one partition,
//! `<app>-timer-<name>`, in its own consumer group `<app>-timer-<name>`. The process that holds
//! partition 0 is the timer's **owner**: it produces one *tick* record per slot into the topic,
//! and, as the agent, handles the ticks like any agent's events. So a tick's sends commit with
//! the agent's position (under `exactly_once`, in one transaction), retries, the timeout and
//! dead letters work as for agents, and `/api/agents/` shows which process holds partition 0.
//!
//! Ticks are produced with one transactional id per timer, `<app>-timer-<name>`: a new owner
//! initialises it (fencing the previous owner's producer and aborting its open transaction),
//! then reads the topic to its end to learn the last slot produced. A slot therefore appears in
//! the topic once, and is handled once.
//!
//! Slots missed while no process owned the timer are not made up, except one: a new owner whose
//! last produced slot is older than the latest slot due fires that latest slot at once (late),
//! then follows the schedule. The same holds for a process that was suspended past several
//! slots. On the very first start (an empty topic) nothing fires late.
//!
//! The owner's death is seen after the group's session timeout: timer consumers use
//! `session.timeout.ms=6000` and `heartbeat.interval.ms=1000` (overridable with the
//! application's consumer properties), so another process takes the timer over within about
//! 6–8 s, and fires the slot it missed meanwhile, if any, at once.

pub mod cron;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faustus_connectors::{
    commit_promptly, flush_promptly, is_fenced, read_to_end, Guarantee, KafkaConfig, Str, TopicSpec,
};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};

use crate::agent::{
    Agent, AgentEnv, AgentSettings, AgentSpec, Event, HandlerFuture, HandlerResult, OnFailure,
    Retry, RunningAgent,
};
use crate::dataflow::Data;
use crate::error::Result;
use crate::record::Headers;
use crate::topic::{RecordError, Topic};

pub use cron::{Cron, CronError, CronField};

/// The shortest interval of [`Timer::every`]: each tick is a Kafka transaction.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The session timeout of a timer's consumer: how long the group waits for a silent owner
/// before the timer moves (the broker's smallest by default).
const SESSION_TIMEOUT_MS: &str = "6000";
/// The heartbeat of a timer's consumer.
const HEARTBEAT_MS: &str = "1000";
/// How long a Kafka call of the owner may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the owner's thread looks at the stop flag while it waits.
const WAKE: Duration = Duration::from_millis(250);
/// How long the owner waits before it tries again after a Kafka error.
const BACKOFF: Duration = Duration::from_secs(1);

/// When a timer fires.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Schedule {
    /// Every `n` milliseconds, at multiples of `n` since 1970 (UTC).
    Every(i64),
    /// At the slots of a cron expression.
    Cron(Cron),
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(n) => write!(f, "every {n} ms"),
            Schedule::Cron(cron) => write!(f, "{cron}"),
        }
    }
}

impl Schedule {
    /// The first slot strictly after `millis`.
    fn next_after(&self, millis: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => Some((millis.div_euclid(*n) + 1) * n),
            Schedule::Cron(cron) => cron.next_after(millis),
        }
    }

    /// The last slot at or before `millis`.
    fn at_or_before(&self, millis: i64) -> Option<i64> {
        match self {
            Schedule::Every(n) => Some(millis.div_euclid(*n) * n),
            Schedule::Cron(cron) => cron.at_or_before(millis),
        }
    }

    /// What the owner does on taking the timer, whose last produced slot is `last`, at `now`:
    /// the slot to fire next (at once if it is not after `now`).
    fn resume(&self, last: Option<i64>, now: i64) -> Option<i64> {
        match last {
            // The latest slot due, if it was not fired: once, late.
            Some(last) => match self.at_or_before(now) {
                Some(due) if due > last => Some(due),
                _ => self.next_after(last.max(now)),
            },
            // A new timer starts with the next slot.
            None => self.next_after(now),
        }
    }
}

/// A tick record: the slot it fires for, in milliseconds since 1970.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct TickRecord {
    slot: i64,
}

/// What `/api/agents/` shows of a timer, per process (under `timers`).
#[derive(Clone, Debug, Serialize)]
pub struct TimerStatus {
    /// The timer's name.
    pub name: String,
    /// `every <n> ms`, or the crontab expression.
    pub schedule: String,
    /// The agent that handles its ticks (`timer-<name>`).
    pub agent: String,
    /// Its internal topic.
    pub topic: String,
    /// Whether this process fires it (holds partition 0 of its topic and has taken it).
    pub owner: bool,
    /// The last slot this process knows to be fired (milliseconds since 1970), while it owns
    /// the timer.
    pub last_slot: Option<i64>,
    /// The next slot this process will fire, while it owns the timer.
    pub next_slot: Option<i64>,
}

/// The timers' statuses on this process, shared with the HTTP server.
#[derive(Default)]
pub(crate) struct TimerBoard(Mutex<Vec<Arc<Mutex<TimerStatus>>>>);

impl TimerBoard {
    /// The status of every timer of this process.
    pub(crate) fn snapshot(&self) -> Vec<TimerStatus> {
        let statuses = self.0.lock().unwrap_or_else(|e| e.into_inner());
        statuses
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    fn add(&self, status: Arc<Mutex<TimerStatus>>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(status);
    }
}

/// What a timer's handler is given for each slot: the slot, and what it may do (send records,
/// read tables). Cloning it is cheap.
#[derive(Clone)]
pub struct Tick {
    timer: Arc<str>,
    slot: i64,
    event: Event<String, TickRecord>,
}

impl std::fmt::Debug for Tick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tick")
            .field("timer", &self.timer)
            .field("slot", &self.slot)
            .field("origin", self.event.origin())
            .finish()
    }
}

impl Tick {
    /// The timer's name.
    pub fn timer(&self) -> &str {
        &self.timer
    }

    /// The slot this tick fires for: the scheduled time (a whole minute for a crontab, a
    /// multiple of the interval since 1970 for [`Timer::every`]).
    pub fn slot(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.slot).unwrap_or(0))
    }

    /// The slot, in milliseconds since 1970 (UTC).
    pub fn slot_millis(&self) -> i64 {
        self.slot
    }

    /// When the owner produced the tick (milliseconds since 1970): at the slot, or later when
    /// the tick fires late after a failover.
    pub fn fired_at_millis(&self) -> i64 {
        self.event.timestamp()
    }

    /// `<timer>/<slot millis>`: the same on every attempt and on every process, for making side
    /// effects outside Kafka idempotent.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.timer, self.slot)
    }

    /// Sends `(key, value)` to `topic` when the tick is handled (under `exactly_once`, in the
    /// transaction that commits the tick). Fails, sending nothing, when the record does not
    /// encode.
    pub fn send<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: K,
        value: V,
    ) -> std::result::Result<(), RecordError> {
        self.event.send(topic, key, value)
    }

    /// As [`Tick::send`], with headers, or a tombstone when `value` is `None`.
    pub fn send_record<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: Option<&V>,
        headers: Headers,
    ) -> std::result::Result<(), RecordError> {
        self.event.send_record(topic, key, value, headers)
    }

    /// A handle on the application's public table `name` (see [`Event::table`]).
    pub fn table<K: Data, V: Data>(&self, name: &str) -> Result<crate::TableHandle<K, V>> {
        self.event.table(name)
    }
}

/// The agent a timer runs as.
type TickAgent = Agent<String, TickRecord>;

/// A setting given to the timer's agent.
type Setting = Box<dyn FnOnce(TickAgent) -> TickAgent + Send>;

/// What runs for each slot.
type TickHandler = Arc<dyn Fn(Tick) -> HandlerFuture + Send + Sync>;

/// A timer: async code run on a schedule by one process of the cluster; see the
/// [module docs](self). Add it with [`crate::App::timer`].
pub struct Timer {
    name: String,
    schedule: std::result::Result<Schedule, String>,
    handler: Option<TickHandler>,
    settings: Vec<Setting>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Timer {
    /// A timer named `name` (unique in the application) that fires every `interval`, at the
    /// multiples of `interval` since 1970 (UTC): every process computes the same slots. The
    /// interval is at least [`MIN_INTERVAL`], in whole milliseconds; a bad one stops the
    /// application's start with a message.
    pub fn every(name: &str, interval: Duration) -> Timer {
        let millis = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let schedule = if interval < MIN_INTERVAL
            || !interval.subsec_nanos().is_multiple_of(1_000_000)
        {
            Err(format!(
                "timer `{name}`: the interval {interval:?} must be at least {MIN_INTERVAL:?}, in whole milliseconds"
            ))
        } else {
            Ok(Schedule::Every(millis))
        };
        Timer::new(name, schedule)
    }

    /// A timer named `name` (unique in the application) that fires at the slots of a five-field
    /// cron `expression`, in UTC (see [`cron`]). A bad expression stops the application's
    /// start with a message that names the field at fault.
    pub fn crontab(name: &str, expression: &str) -> Timer {
        let schedule = Cron::parse(expression)
            .map(Schedule::Cron)
            .map_err(|e| format!("timer `{name}`: the crontab `{expression}`: {e}"));
        Timer::new(name, schedule)
    }

    fn new(name: &str, schedule: std::result::Result<Schedule, String>) -> Timer {
        Timer {
            name: name.to_string(),
            schedule,
            handler: None,
            settings: Vec::new(),
        }
    }

    /// The code run for each slot: an async closure returning [`HandlerResult`]; an error,
    /// a panic or a timeout retries it, as for an agent's handler.
    pub fn handler<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Tick) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handler = Some(Arc::new(move |tick| Box::pin(f(tick))));
        self
    }

    /// Retries of a failing handler (default as for agents: 3, from 100 ms doubling up to 10 s).
    pub fn retry(self, retry: Retry) -> Self {
        self.setting(move |a| a.retry(retry))
    }

    /// The longest one attempt may run (default 60 s).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.setting(move |a| a.timeout(timeout))
    }

    /// What happens to a tick whose last retry failed (default: a dead letter).
    pub fn on_failure(self, on_failure: OnFailure) -> Self {
        self.setting(move |a| a.on_failure(on_failure))
    }

    /// Declares a topic the handler sends to, so that it is created at start.
    pub fn sends_to<K: 'static, V: 'static>(self, topic: &Topic<K, V>) -> Self {
        let topic = topic.clone();
        self.setting(move |a| a.sends_to(&topic))
    }

    /// The timer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn setting(mut self, f: impl FnOnce(TickAgent) -> TickAgent + Send + 'static) -> Self {
        self.settings.push(Box::new(f));
        self
    }

    /// The timer as an agent of application `app_id`.
    pub(crate) fn into_spec(self, app_id: &str) -> Box<dyn AgentSpec> {
        let Timer {
            name,
            schedule,
            handler,
            settings,
        } = self;
        let topic_name = topic(app_id, &name);
        let topic = Topic::<String, TickRecord>::new(topic_name.clone())
            .key_codec(Str)
            .partitions(1);
        let mut agent = Agent::new(&format!("timer-{name}"), &topic);
        for setting in settings {
            agent = setting(agent);
        }
        let timer: Arc<str> = Arc::from(name.as_str());
        if let Some(handler) = handler {
            agent = agent.handler(move |event: Event<String, TickRecord>| {
                let tick = Tick {
                    timer: Arc::clone(&timer),
                    slot: event.value_ref().slot,
                    event,
                };
                handler(tick)
            });
        }
        // One tick at a time, in slot order.
        agent = agent.concurrency(1);
        agent.internals.consumer_properties = vec![
            ("session.timeout.ms", SESSION_TIMEOUT_MS.into()),
            ("heartbeat.interval.ms", HEARTBEAT_MS.into()),
        ];
        Box::new(TimerSpec {
            name,
            topic: topic_name,
            schedule,
            agent,
        })
    }
}

/// The internal topic (and consumer group, and transactional id) of timer `name` of
/// application `app_id`.
pub(crate) fn topic(app_id: &str, name: &str) -> String {
    format!("{app_id}-timer-{name}")
}

/// A timer as the application runs it: its agent, and its owner's thread.
struct TimerSpec {
    name: String,
    topic: String,
    schedule: std::result::Result<Schedule, String>,
    agent: TickAgent,
}

impl AgentSpec for TimerSpec {
    fn settings(&self) -> &AgentSettings {
        AgentSpec::settings(&self.agent)
    }

    fn topics(&self, default_partitions: i32) -> Vec<TopicSpec> {
        let mut topics = AgentSpec::topics(&self.agent, default_partitions);
        // Compacted by the timer's name: the last tick stays, which is what a new owner reads.
        // A tick is kept at least a day, so one not yet handled is never compacted away.
        topics[0] = TopicSpec {
            compacted: true,
            config: vec![
                ("min.compaction.lag.ms".into(), "86400000".into()),
                ("segment.ms".into(), "3600000".into()),
            ],
            required_partitions: Some(1),
            ..TopicSpec::new(&self.topic, 1)
        };
        topics
    }

    fn encoders(&self) -> Vec<(String, crate::topic::TextEncoder)> {
        AgentSpec::encoders(&self.agent)
    }

    fn problem(&self) -> Option<String> {
        if let Err(e) = &self.schedule {
            return Some(e.clone());
        }
        if self.agent.body.is_none() {
            return Some(format!(
                "timer `{}` has no code: give it a `handler(..)`",
                self.name
            ));
        }
        AgentSpec::problem(&self.agent)
    }

    fn start(self: Box<Self>, env: &AgentEnv) -> Result<RunningAgent> {
        let TimerSpec {
            name,
            topic,
            schedule,
            mut agent,
        } = *self;
        let schedule = schedule.map_err(crate::Error::Config)?;
        let (tx, events) = channel();
        let tx = Mutex::new(tx);
        agent.internals.on_assignment = Some(Arc::new(move |partitions: &[i32], assigned| {
            if partitions.contains(&0) {
                let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(assigned);
            }
        }));
        let status = Arc::new(Mutex::new(TimerStatus {
            name: name.clone(),
            schedule: schedule.to_string(),
            agent: agent.name().to_string(),
            topic: topic.clone(),
            owner: false,
            last_slot: None,
            next_slot: None,
        }));
        let running = AgentSpec::start(Box::new(agent), env)?;
        env.http.timers.add(Arc::clone(&status));
        let owner = Owner {
            name: name.clone(),
            topic,
            schedule,
            kafka: env.kafka.clone(),
            guarantee: env.guarantee,
            transaction_timeout: env.transaction_timeout,
            transactional_id: crate::timer::topic(&env.app_id, &name),
            stop: Arc::clone(&env.stop),
            events,
            wanted: false,
            held: None,
            retry_at: None,
            status,
        };
        std::thread::Builder::new()
            .name(format!("timer-{name}"))
            .spawn(move || owner.run())
            .map_err(|e| crate::Error::Runtime(format!("spawning a timer's thread: {e}")))?;
        Ok(running)
    }
}

/// The side of a timer that produces its ticks, on the process that holds partition 0.
struct Owner {
    name: String,
    topic: String,
    schedule: Schedule,
    kafka: KafkaConfig,
    guarantee: Guarantee,
    transaction_timeout: Duration,
    transactional_id: String,
    stop: Arc<AtomicBool>,
    /// Assignments (`true`) and revocations (`false`) of partition 0.
    events: Receiver<bool>,
    /// Whether this process holds partition 0.
    wanted: bool,
    /// The producer while this process owns the timer, and the next slot to fire.
    held: Option<(ThreadedProducer<DefaultProducerContext>, i64)>,
    /// When to try again after a Kafka error.
    retry_at: Option<Instant>,
    /// What `/api/agents/` shows.
    status: Arc<Mutex<TimerStatus>>,
}

/// Milliseconds since 1970 now.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Owner {
    fn run(mut self) {
        while !self.stop.load(AtomicOrdering::SeqCst) {
            let wait = match &self.held {
                Some((_, next)) => {
                    Duration::from_millis(u64::try_from(next - now_millis()).unwrap_or(0))
                }
                None => WAKE,
            };
            match self.events.recv_timeout(wait.min(WAKE)) {
                Ok(assigned) => self.ownership(assigned),
                Err(RecvTimeoutError::Timeout) => {}
                // The agent's consumer is gone: the application stops.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if !self.take_events() {
                break;
            }
            if self.wanted
                && self.held.is_none()
                && self.retry_at.is_none_or(|t| t <= Instant::now())
            {
                if let Err(e) = self.acquire() {
                    log::warn!(
                        "timer `{}`: taking the timer: {e}; trying again in {BACKOFF:?}",
                        self.name
                    );
                    self.retry_at = Some(Instant::now() + BACKOFF);
                }
                if !self.take_events() {
                    break;
                }
            }
            self.fire_due();
            self.publish();
        }
        self.held = None;
        self.publish();
    }

    /// Shows whether this process owns the timer, and its next slot.
    fn publish(&self) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.owner = self.held.is_some();
        status.next_slot = self.held.as_ref().map(|(_, next)| *next);
        if self.held.is_none() {
            status.last_slot = None;
        }
    }

    /// Takes in the assignments and revocations that arrived; false once the agent is gone.
    fn take_events(&mut self) -> bool {
        loop {
            match self.events.try_recv() {
                Ok(assigned) => self.ownership(assigned),
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn ownership(&mut self, assigned: bool) {
        // A new assignment is taken afresh: another process may have fired meanwhile.
        self.held = None;
        self.retry_at = None;
        self.wanted = assigned;
        if !assigned {
            log::info!(
                "timer `{}`: partition 0 revoked: this process no longer fires it",
                self.name
            );
        }
    }

    /// Takes the timer: fences the previous owner's producer, reads the last slot produced,
    /// and plans the next.
    fn acquire(&mut self) -> std::result::Result<(), String> {
        let mut config = self.kafka.producer();
        if self.guarantee == Guarantee::ExactlyOnce {
            config.set("transactional.id", &self.transactional_id).set(
                "transaction.timeout.ms",
                self.transaction_timeout.as_millis().to_string(),
            );
        }
        let producer: ThreadedProducer<DefaultProducerContext> = config
            .create()
            .map_err(|e| format!("creating its producer: {e}"))?;
        if self.guarantee == Guarantee::ExactlyOnce {
            producer
                .init_transactions(KAFKA_TIMEOUT)
                .map_err(|e| format!("initialising transactions: {e}"))?;
        }
        let mut last: Option<i64> = None;
        read_to_end(&self.kafka, &self.topic, &[0], KAFKA_TIMEOUT, |record| {
            let slot = record
                .value
                .and_then(|v| serde_json::from_slice::<TickRecord>(v).ok())
                .map(|t| t.slot);
            last = last.max(slot);
        })
        .map_err(|e| format!("reading its last tick: {e}"))?;
        let now = now_millis();
        let next = self.schedule.resume(last, now).unwrap_or(i64::MAX);
        log::info!(
            "timer `{}`: this process fires it now (last slot {}; next {}{})",
            self.name,
            last.map_or("none".into(), |l| l.to_string()),
            next,
            if next <= now { ", late" } else { "" }
        );
        self.held = Some((producer, next));
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_slot = last;
        Ok(())
    }

    /// Fires the latest slot due, if one is.
    fn fire_due(&mut self) {
        let Some((producer, next)) = &self.held else {
            return;
        };
        let now = now_millis();
        if *next > now {
            return;
        }
        // Slots passed while the process was held up are not made up: the latest one fires.
        let slot = self.schedule.at_or_before(now).unwrap_or(*next).max(*next);
        match self.produce(producer, slot) {
            Ok(()) => {
                self.status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .last_slot = Some(slot);
                let next = self.schedule.next_after(slot).unwrap_or(i64::MAX);
                if let Some((_, n)) = &mut self.held {
                    *n = next;
                }
            }
            Err((fenced, e)) => {
                self.held = None;
                if fenced {
                    log::warn!(
                        "timer `{}`: fenced by another process that took the timer: {e}",
                        self.name
                    );
                    self.wanted = false;
                } else {
                    log::warn!(
                        "timer `{}`: producing the tick of slot {slot}: {e}; taking the timer again in {BACKOFF:?}",
                        self.name
                    );
                    self.retry_at = Some(Instant::now() + BACKOFF);
                }
            }
        }
    }

    /// Writes the tick of `slot` (in a transaction under `exactly_once`); on failure, whether
    /// the producer was fenced, and the error.
    fn produce(
        &self,
        producer: &ThreadedProducer<DefaultProducerContext>,
        slot: i64,
    ) -> std::result::Result<(), (bool, String)> {
        let value = serde_json::to_vec(&TickRecord { slot })
            .map_err(|e| (false, format!("encoding a tick: {e}")))?;
        let failed = |what: &str, e: KafkaError| (fenced(&e), format!("{what}: {e}"));
        let transactional = self.guarantee == Guarantee::ExactlyOnce;
        if transactional {
            producer
                .begin_transaction()
                .map_err(|e| failed("beginning a transaction", e))?;
        }
        let record = BaseRecord::<[u8], [u8]>::to(&self.topic)
            .partition(0)
            .key(self.name.as_bytes())
            .payload(value.as_slice());
        let sent = producer
            .send(record)
            .map_err(|(e, _)| failed("sending", e))
            .and_then(|()| match transactional {
                true => {
                    commit_promptly(producer, KAFKA_TIMEOUT).map_err(|e| failed("committing", e))
                }
                false => flush_promptly(producer, KAFKA_TIMEOUT).map_err(|e| failed("flushing", e)),
            });
        if sent.is_err() && transactional {
            let _ = producer.abort_transaction(KAFKA_TIMEOUT);
        }
        sent
    }
}

/// Whether a producer error says another producer of the same transactional id took over.
fn fenced(e: &KafkaError) -> bool {
    is_fenced(e) || matches!(e, KafkaError::Transaction(t) if t.is_fatal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slots_are_multiples_of_the_interval() {
        let s = Schedule::Every(10_000);
        assert_eq!(s.next_after(12_345), Some(20_000));
        assert_eq!(s.next_after(20_000), Some(30_000));
        assert_eq!(s.at_or_before(20_000), Some(20_000));
        assert_eq!(s.at_or_before(29_999), Some(20_000));
    }

    #[test]
    fn a_new_owner_fires_at_most_one_missed_slot() {
        let s = Schedule::Every(10_000);
        // A new timer waits for its first slot.
        assert_eq!(s.resume(None, 12_345), Some(20_000));
        // The last slot was fired: the next one.
        assert_eq!(s.resume(Some(10_000), 12_345), Some(20_000));
        // Slots 20 000 .. 50 000 were missed: only the latest fires, at once.
        assert_eq!(s.resume(Some(10_000), 55_000), Some(50_000));
        // A last slot ahead of the clock (another process's clock runs ahead): after it.
        assert_eq!(s.resume(Some(30_000), 12_345), Some(40_000));
    }

    #[test]
    fn bad_schedules_are_start_up_errors_that_name_the_problem() {
        use crate::prelude::*;
        let handler = |_tick: Tick| async move { Ok(()) };
        let error = |timer: Timer| {
            App::new("bad-timers")
                .timer(timer)
                .start_agents()
                .err()
                .expect("refused")
                .to_string()
        };
        let e = error(Timer::crontab("t", "0 24 * * *").handler(handler));
        assert!(e.contains("timer `t`"), "{e}");
        assert!(
            e.contains("the hour field (0-23): 24 is out of range"),
            "{e}"
        );
        let e = error(Timer::every("t", Duration::from_millis(10)).handler(handler));
        assert!(e.contains("must be at least 100ms"), "{e}");
        let e = error(Timer::every("t", Duration::from_secs(1)));
        assert!(e.contains("timer `t` has no code"), "{e}");
    }
}
