//! The Kafka side of an agent: one thread per agent owns its group consumer, tracks acks per
//! partition, pauses busy partitions, writes acked events' records and commits positions
//! (a transaction per commit interval under `exactly_once`), and drains revoked partitions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faustus_connectors::{
    commit_promptly, flush_promptly, owned_headers, AckTracker, Guarantee, KafkaConfig, TopicSpec,
};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::runtime::Handle;

use super::dispatch::{Assignment, Completion, Counters, Dispatcher, Incoming, Outcome};
use super::{Agent, AgentSettings, Origin, Outgoing};
use crate::dataflow::Data;
use crate::error::{Error, Result};
use crate::record::Headers;
use crate::topic::{RecordError, Topic};

/// How long a Kafka call of the commit path may take before the agent gives up.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the consumer thread waits for a record before it looks at acks again.
const POLL: Duration = Duration::from_millis(5);
/// Records the consumer thread takes in one go before it looks at acks again.
const POLL_BATCH: usize = 512;

/// What `/api/agents/` shows of one agent.
#[derive(Clone, Debug, Serialize)]
pub struct AgentStatus {
    /// Its settings.
    pub settings: AgentSettings,
    /// `running`, `stopped`, or `failed: <why>`.
    pub state: String,
    /// The partitions assigned to this process.
    pub partitions: Vec<PartitionStatus>,
    /// Handler attempts that succeeded.
    pub handled: u64,
    /// Handler attempts that failed (and were retried, dead-lettered or stopped the agent).
    pub failed_attempts: u64,
    /// Events sent to the dead-letter topic.
    pub dead_lettered: u64,
}

/// One assigned partition of an agent.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: i32,
    /// Events handed to the agent's code and not yet acked.
    pub in_flight: usize,
    /// Records read ahead and held until fewer than `max_in_flight` events are in flight.
    pub buffered: usize,
    /// The position last committed (the next offset to read), if any.
    pub committed: Option<i64>,
    /// The position that would be committed now: the first unacked offset.
    pub committable: Option<i64>,
    /// Acked offsets above the committable position, as inclusive ranges.
    pub acked_ranges: Vec<(i64, i64)>,
    /// Whether fetching is paused (the records read ahead reached `read_ahead_bytes`).
    pub paused: bool,
    /// How long, in milliseconds, the committable position has not moved while events are in
    /// flight (`None` when it moves, or nothing is in flight).
    pub blocked_ms: Option<u64>,
}

/// What every agent of an application shares.
#[derive(Clone)]
pub(crate) struct AgentEnv {
    pub kafka: KafkaConfig,
    pub app_id: String,
    pub guarantee: Guarantee,
    pub commit_interval: Duration,
    /// How long a transaction may stay open before the broker aborts it (a crashed process's
    /// open transaction holds its partitions back that long, unless a restart fences it).
    pub transaction_timeout: Duration,
    pub runtime: Handle,
    pub dead_letter_topic: String,
    /// The HTTP layer's state: what events read tables through.
    pub http: crate::http::HttpState,
    /// The application's stop flag: agents drain, commit and leave their groups when it is set.
    pub stop: Arc<AtomicBool>,
    /// Reports an agent's failure to the application (which then stops).
    pub fail: Arc<dyn Fn(String) + Send + Sync>,
}

/// The consumer group of agent `name` of application `app_id`.
pub(crate) fn group_id(app_id: &str, name: &str) -> String {
    format!("{app_id}-{name}")
}

/// An agent the application runs, type-erased.
pub(crate) trait AgentSpec: Send {
    fn settings(&self) -> &AgentSettings;
    /// Topics to create (or check) before it starts: its input and its outputs.
    fn topics(&self, default_partitions: i32) -> Vec<TopicSpec>;
    /// How the `send` command encodes records of its topics, by topic name.
    fn encoders(&self) -> Vec<(String, crate::topic::TextEncoder)>;
    /// What is wrong with its settings, if anything.
    fn problem(&self) -> Option<String>;
    fn start(self: Box<Self>, env: &AgentEnv) -> Result<RunningAgent>;
}

impl<K: Data + Send, V: Data + Send> AgentSpec for Agent<K, V> {
    fn settings(&self) -> &AgentSettings {
        &self.settings
    }

    fn topics(&self, default_partitions: i32) -> Vec<TopicSpec> {
        let input = TopicSpec {
            partitions: self.topic.partitions,
            ..TopicSpec::new(&self.settings.topic, 1)
        };
        let sinks = self.sinks.iter().map(|(name, partitions)| {
            TopicSpec::new(name, partitions.unwrap_or(default_partitions))
        });
        std::iter::once(input).chain(sinks).collect()
    }

    fn encoders(&self) -> Vec<(String, crate::topic::TextEncoder)> {
        self.encoders.clone()
    }

    fn problem(&self) -> Option<String> {
        check_settings(&self.settings, self.body.is_some())
    }

    fn start(self: Box<Self>, env: &AgentEnv) -> Result<RunningAgent> {
        start_agent(*self, env)
    }
}

/// A running agent (it stops when the application's stop flag is set: it drains its in-flight
/// events up to its drain timeout, commits, and leaves its group).
pub(crate) struct RunningAgent {
    pub status: Arc<Mutex<AgentStatus>>,
    thread: Option<JoinHandle<std::result::Result<(), String>>>,
}

impl RunningAgent {
    /// True once the agent's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the agent to end; its error, if it failed.
    pub fn join(&mut self) -> std::result::Result<(), String> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("the agent's thread panicked".into())),
            None => Ok(()),
        }
    }
}

/// The agents' statuses, shared with the HTTP server, which exists before the agents start.
#[derive(Default)]
pub(crate) struct AgentBoard {
    statuses: std::sync::RwLock<Vec<Arc<Mutex<AgentStatus>>>>,
}

impl AgentBoard {
    /// The status of every agent of this process.
    pub fn snapshot(&self) -> Vec<AgentStatus> {
        self.statuses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    pub(crate) fn add(&self, status: Arc<Mutex<AgentStatus>>) {
        self.statuses
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(status);
    }
}

/// Every agent of an application.
#[derive(Default)]
pub(crate) struct AgentsHandle {
    pub agents: Vec<RunningAgent>,
    board: Arc<AgentBoard>,
}

impl AgentsHandle {
    /// Waits for every agent to end; the first failure.
    pub fn join(&mut self) -> std::result::Result<(), String> {
        let mut first = Ok(());
        for agent in &mut self.agents {
            if let Err(e) = agent.join() {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// True once every agent has ended.
    pub fn all_finished(&self) -> bool {
        self.agents.iter().all(RunningAgent::is_finished)
    }

    /// The status of every agent.
    pub fn statuses(&self) -> Vec<AgentStatus> {
        self.board.snapshot()
    }
}

/// Starts `specs`, after checking their settings, showing their statuses on `board`.
pub(crate) fn start_agents(
    specs: Vec<Box<dyn AgentSpec>>,
    env: &AgentEnv,
    board: Arc<AgentBoard>,
) -> Result<AgentsHandle> {
    let mut handle = AgentsHandle {
        agents: Vec::new(),
        board,
    };
    for spec in specs {
        let agent = spec.start(env)?;
        handle.board.add(Arc::clone(&agent.status));
        handle.agents.push(agent);
    }
    Ok(handle)
}

/// Checks an agent's settings: what to fix, if anything.
pub(crate) fn check_settings(settings: &AgentSettings, has_body: bool) -> Option<String> {
    let name = &settings.name;
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid_name {
        return Some(format!(
            "agent name `{name}` must be letters, digits, `.`, `_` and `-` (it names a consumer group)"
        ));
    }
    if !has_body {
        return Some(format!(
            "agent `{name}` has no code: give it a `handler(..)` or an `actor(..)`"
        ));
    }
    if settings.concurrency == 0 || settings.concurrency > 10_000 {
        return Some(format!(
            "agent `{name}`: concurrency must be 1 to 10000, not {}",
            settings.concurrency
        ));
    }
    if settings.max_in_flight == 0 {
        return Some(format!("agent `{name}`: max_in_flight must be at least 1"));
    }
    if settings.read_ahead_bytes == 0 {
        return Some(format!(
            "agent `{name}`: read_ahead_bytes must be at least 1"
        ));
    }
    if settings.timeout.is_zero() {
        return Some(format!(
            "agent `{name}`: the handler timeout must be above zero"
        ));
    }
    None
}

fn start_agent<K: Data + Send, V: Data + Send>(
    agent: Agent<K, V>,
    env: &AgentEnv,
) -> Result<RunningAgent> {
    #[cfg(feature = "fault-injection")]
    let abort_every = agent.abort_every;
    let Agent {
        settings,
        topic,
        body,
        internals,
        ..
    } = agent;
    // The settings were checked with every agent's (`App`'s `check_agents`), before Kafka.
    let body = body.ok_or_else(|| Error::Config("an agent without code".into()))?;
    let settings = Arc::new(settings);
    let name = settings.name.clone();
    let counters = Arc::new(Counters {
        handler_duration: Some(
            env.http
                .metrics
                .agent_handler_duration
                .with_label_values(&[&name]),
        ),
        hand_off: env.http.metrics.hop_sensor("agent", &name),
        ..Counters::default()
    });
    let (completions_tx, completions) = channel();
    let dispatcher = Dispatcher::new(
        body,
        Arc::clone(&settings),
        env.runtime.clone(),
        completions_tx,
        Arc::clone(&counters),
        env.dead_letter_topic.clone(),
        env.http.clone(),
    );
    let producer = Arc::new(make_producer(env, &name)?);
    let committer = match env.guarantee {
        Guarantee::ExactlyOnce => Some(Committer::start(Arc::clone(&producer), &name)?),
        Guarantee::AtLeastOnce => None,
    };
    let status = Arc::new(Mutex::new(AgentStatus {
        settings: (*settings).clone(),
        state: "running".into(),
        partitions: Vec::new(),
        handled: 0,
        failed_attempts: 0,
        dead_lettered: 0,
    }));
    let core = Core {
        settings: Arc::clone(&settings),
        topic,
        guarantee: env.guarantee,
        producer,
        committer,
        unsent: Vec::new(),
        in_transaction: false,
        epoch: 1,
        sent: [0; DELIVERY_EPOCHS],
        delivered_through: 0,
        awaiting: VecDeque::new(),
        parts: BTreeMap::new(),
        next_generation: 0,
        completions,
        dispatcher,
        counters,
        status: Arc::clone(&status),
        fatal: None,
        #[cfg(feature = "fault-injection")]
        fault: (abort_every, 0),
    };
    let context = AgentContext {
        core: Mutex::new(core),
        on_assignment: internals.on_assignment,
    };
    let drain_ms = u64::try_from(settings.drain_timeout.as_millis()).unwrap_or(u64::MAX / 2);
    // A revoked partition may take the drain timeout: stay in the group meanwhile.
    let max_poll_interval = (drain_ms.saturating_add(60_000))
        .min(i32::MAX as u64)
        .to_string();
    let mut defaults = vec![
        // Keep fetching while the local queue drains (as the dataflow's readers do):
        // otherwise librdkafka stops fetching for a second whenever its queue passes a
        // threshold.
        ("fetch.wait.max.ms", "10"),
        ("queued.min.messages", "100000"),
        ("fetch.queue.backoff.ms", "1"),
        ("max.poll.interval.ms", max_poll_interval.as_str()),
    ];
    defaults.extend(
        internals
            .consumer_properties
            .iter()
            .map(|(k, v)| (*k, v.as_str())),
    );
    let consumer: BaseConsumer<AgentContext<K, V>> = env
        .kafka
        .consumer_with(&defaults)
        .set("group.id", group_id(&env.app_id, &name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(context)
        .map_err(|e| kafka_error(format!("agent `{name}`: creating its consumer"), e))?;
    consumer
        .subscribe(&[settings.topic.as_str()])
        .map_err(|e| kafka_error(format!("agent `{name}`: subscribing"), e))?;
    let interval = env.commit_interval;
    let thread = {
        let stop = Arc::clone(&env.stop);
        let fail = Arc::clone(&env.fail);
        let status = Arc::clone(&status);
        let runtime = env.runtime.clone();
        std::thread::Builder::new()
            .name(format!("agent-{name}"))
            .spawn(move || {
                // Handlers are first polled here (see `Dispatcher::dispatch`): in the runtime's
                // context, so that they may spawn tasks and set timers.
                let _context = runtime.enter();
                let result = consume(&consumer, &stop, interval);
                let mut status = status.lock().unwrap_or_else(|e| e.into_inner());
                status.state = match &result {
                    Ok(()) => "stopped".into(),
                    Err(e) => format!("failed: {e}"),
                };
                status.partitions.clear();
                drop(status);
                if let Err(e) = &result {
                    fail(format!("agent `{name}` failed: {e}"));
                }
                result
            })
            .map_err(|e| Error::Runtime(format!("spawning an agent's thread: {e}")))?
    };
    Ok(RunningAgent {
        status,
        thread: Some(thread),
    })
}

/// The producer an agent writes with: transactional under `exactly_once`. Its transactional id
/// is new for every start (`<app>-<agent>-<unique>`), so that identical processes can be added
/// freely; zombies are fenced by the consumer group instead (KIP-447): once a process's
/// partitions have moved, its transaction cannot commit their positions.
fn make_producer(env: &AgentEnv, name: &str) -> Result<ThreadedProducer<Deliveries>> {
    let mut config = env.kafka.producer();
    if env.guarantee == Guarantee::ExactlyOnce {
        // The transaction's commit says whether its records were delivered: the agent counts
        // failed deliveries only, without a callback per delivered record.
        config.set("delivery.report.only.error", "true");
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        config
            .set(
                "transactional.id",
                format!("{}-{name}-{}-{unique:x}", env.app_id, std::process::id()),
            )
            .set(
                "transaction.timeout.ms",
                env.transaction_timeout.as_millis().to_string(),
            );
    }
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .map_err(|e| kafka_error(format!("agent `{name}`: creating its producer"), e))?;
    if env.guarantee == Guarantee::ExactlyOnce {
        producer
            .init_transactions(KAFKA_TIMEOUT)
            .map_err(|e| kafka_error(format!("agent `{name}`: initialising transactions"), e))?;
    }
    Ok(producer)
}

/// The consumer thread's loop.
fn consume<K: Data + Send, V: Data + Send>(
    consumer: &BaseConsumer<AgentContext<K, V>>,
    stop: &AtomicBool,
    interval: Duration,
) -> std::result::Result<(), String> {
    let mut last_commit = Instant::now();
    loop {
        {
            let mut core = consumer.context().lock();
            core.drain(consumer, None);
            core.dispatcher.flush();
            // A failed agent leaves at once: the revocation as the consumer closes does not wait
            // for events in flight (it sees the failure), and commits nothing past them.
            if let Some(fatal) = core.fatal.clone() {
                return Err(fatal);
            }
            if let Some(failure) = core.dispatcher.actor_failure() {
                core.fatal.get_or_insert(failure.clone());
                return Err(failure);
            }
            if stop.load(AtomicOrdering::SeqCst) {
                let all: Vec<i32> = core.parts.keys().copied().collect();
                return core.revoke(consumer, &all);
            }
            // Under `exactly_once`: the last transaction's outcome, if it has come.
            core.finish_commit(consumer, false)?;
            let committing = core.committer.as_ref().is_some_and(Committer::busy);
            if last_commit.elapsed() >= interval && !committing {
                core.commit(consumer, false)?;
                core.watch_blocked();
                core.publish_status();
                last_commit = Instant::now();
            }
        }
        let mut wait = POLL;
        for _ in 0..POLL_BATCH {
            match consumer.poll(wait) {
                Some(Ok(message)) => {
                    let mut core = consumer.context().lock();
                    core.take(consumer, &message);
                }
                Some(Err(e)) => log::warn!("agent consumer: {e}"),
                None => break,
            }
            wait = Duration::ZERO;
        }
        consumer.context().lock().dispatcher.flush();
    }
}

/// The consumer's context: the agent's state, reached by the loop and by rebalance callbacks
/// (both on the consumer thread).
struct AgentContext<K: 'static, V: 'static> {
    core: Mutex<Core<K, V>>,
    /// Told of assignments and revocations (see [`super::Internals`]).
    on_assignment: Option<super::OnAssignment>,
}

impl<K, V> AgentContext<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Core<K, V>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Data + Send, V: Data + Send> ClientContext for AgentContext<K, V> {}

impl<K: Data + Send, V: Data + Send> ConsumerContext for AgentContext<K, V> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if let Some(hook) = &self.on_assignment {
                hook(&partitions, false);
            }
            let mut core = self.lock();
            if let Err(e) = core.revoke(consumer, &partitions) {
                core.fatal.get_or_insert(e);
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        // A refused commit's positions are committed again with the next ones.
        if let Err(e) = result {
            log::warn!("agent commit of {offsets:?} refused: {e}");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut core = self.lock();
            for element in tpl.elements() {
                core.assign(element.partition());
            }
            core.publish_status();
            if let Some(hook) = &self.on_assignment {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                hook(&partitions, true);
            }
        }
    }
}

/// One assigned partition.
struct Part {
    assignment: Arc<Assignment>,
    /// Made at the first record handed to the code (its offset is where this assignment
    /// starts).
    tracker: Option<AckTracker>,
    /// Records read while `max_in_flight` events were in flight, in offset order, and their
    /// size in bytes (keys and values).
    backlog: VecDeque<OwnedMessage>,
    backlog_bytes: usize,
    /// Under `exactly_once`: records of acked events above the committable position, written
    /// once every earlier event is acked.
    held: BTreeMap<i64, Vec<Outgoing>>,
    committed: Option<i64>,
    /// Under `at_least_once`: the position whose commit waits for its records' delivery.
    requested: Option<i64>,
    paused: bool,
    /// Since when the committable position has not moved while events are in flight, and when
    /// that was last logged.
    blocked: Option<Blocked>,
}

/// A partition whose committable position does not move while events are in flight.
struct Blocked {
    at: i64,
    since: Instant,
    warned: Option<Instant>,
}

/// How long a partition may stay blocked before the agent says so in its log (then again as
/// long again later): an event that is never acked stalls its partition, never silently.
const BLOCKED_WARNING: Duration = Duration::from_secs(60);

/// An agent's state on its consumer thread.
struct Core<K: 'static, V: 'static> {
    settings: Arc<AgentSettings>,
    topic: Topic<K, V>,
    guarantee: Guarantee,
    producer: Arc<ThreadedProducer<Deliveries>>,
    /// Under `exactly_once`: the thread that commits transactions while this one reads on.
    committer: Option<Committer>,
    /// Under `exactly_once`: records of acked events that became ready while a transaction was
    /// committing; they open the next one.
    unsent: Vec<Outgoing>,
    in_transaction: bool,
    /// Under `at_least_once`: the commit interval records are sent in now, how many records
    /// each interval of the ring has sent (the producer's context counts their deliveries),
    /// the last interval whose records are all delivered, and the positions noted at the end
    /// of each interval, waiting for its records' delivery.
    epoch: u64,
    sent: [u64; DELIVERY_EPOCHS],
    delivered_through: u64,
    awaiting: VecDeque<(u64, Vec<(i32, i64)>)>,
    parts: BTreeMap<i32, Part>,
    next_generation: u64,
    completions: Receiver<Completion>,
    dispatcher: Dispatcher<K, V>,
    counters: Arc<Counters>,
    status: Arc<Mutex<AgentStatus>>,
    /// The first error that stops the agent.
    fatal: Option<String>,
    /// Fault injection: abort every how many transactions, and the transactions so far.
    #[cfg(feature = "fault-injection")]
    fault: (Option<u32>, u32),
}

impl<K: Data + Send, V: Data + Send> Core<K, V> {
    fn assign(&mut self, partition: i32) {
        self.next_generation += 1;
        log::info!(
            "agent `{}`: assigned `{}` partition {partition}",
            self.settings.name,
            self.settings.topic
        );
        self.parts.insert(
            partition,
            Part {
                assignment: Arc::new(Assignment {
                    partition,
                    generation: self.next_generation,
                    revoked: AtomicBool::new(false),
                }),
                tracker: None,
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                held: BTreeMap::new(),
                committed: None,
                requested: None,
                paused: false,
                blocked: None,
            },
        );
    }

    /// Takes one record: hands it to the agent's code, or holds it while its partition has
    /// `max_in_flight` events in flight (pausing the partition once `read_ahead_bytes` are held).
    ///
    /// Pausing is the last resort, not the normal brake: librdkafka drops what it had fetched
    /// for a paused partition, and a resumed partition may wait up to a second for its next
    /// fetch when every partition was paused.
    fn take(&mut self, consumer: &BaseConsumer<AgentContext<K, V>>, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
        if !self.parts.contains_key(&partition) {
            self.assign(partition);
        }
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        let full = part
            .tracker
            .as_ref()
            .is_some_and(|t| t.in_flight() >= self.settings.max_in_flight);
        if full || !part.backlog.is_empty() {
            part.backlog_bytes += record_bytes(message);
            part.backlog.push_back(message.detach());
            if part.backlog_bytes >= self.settings.read_ahead_bytes && !part.paused {
                part.paused = pause(consumer, &self.settings.topic, partition, true);
            }
            return;
        }
        self.start(message);
    }

    /// Hands the records held for `partition` to the code while there is room in flight, and
    /// resumes the partition once half of its read-ahead is free.
    fn feed(&mut self, consumer: &BaseConsumer<AgentContext<K, V>>, partition: i32) {
        loop {
            let Some(part) = self.parts.get_mut(&partition) else {
                return;
            };
            let room = part
                .tracker
                .as_ref()
                .is_none_or(|t| t.in_flight() < self.settings.max_in_flight);
            if !room {
                break;
            }
            let Some(message) = part.backlog.pop_front() else {
                break;
            };
            part.backlog_bytes -= record_bytes(&message);
            self.start(&message);
        }
        if let Some(part) = self.parts.get_mut(&partition) {
            if part.paused && part.backlog_bytes <= self.settings.read_ahead_bytes / 2 {
                part.paused = !pause(consumer, &self.settings.topic, partition, false);
            }
        }
    }

    /// Starts one event: decodes its record and hands it to the agent's code (or to the dead
    /// letters).
    fn start(&mut self, message: &impl Message) {
        let (partition, offset) = (message.partition(), message.offset());
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        let tracker = part.tracker.get_or_insert_with(|| AckTracker::new(offset));
        if let Err(e) = tracker.begin(offset) {
            log::warn!(
                "agent `{}`: partition {partition}: skipping offset {offset}: {e}",
                self.settings.name
            );
            return;
        }
        let origin = Origin {
            topic: Arc::clone(&self.topic.name),
            partition,
            offset,
        };
        let assignment = Arc::clone(&part.assignment);
        let timestamp = message.timestamp().to_millis().unwrap_or(0);
        let decoded = self
            .topic
            .decode_record(message.key(), message.payload())
            .and_then(|(k, v)| v.map(|v| (k, v)).ok_or(RecordError::Tombstone));
        match decoded {
            Ok((key, value)) => {
                let incoming = Incoming {
                    key,
                    value,
                    origin,
                    timestamp,
                    headers: headers(message),
                    raw_key: message.key(),
                    raw_value: message.payload(),
                };
                self.dispatcher.dispatch(&assignment, incoming);
            }
            Err(RecordError::Tombstone) if self.settings.skip_tombstones => {
                self.dispatcher.skip(&assignment, &origin);
            }
            Err(e) => {
                let raw = (
                    message.key().map(<[u8]>::to_vec),
                    message.payload().map(<[u8]>::to_vec),
                );
                // A request that does not decode still has an asker waiting for its reply.
                let reply =
                    crate::workflow::ReplyAddress::from_headers(&headers(message), message.key());
                self.dispatcher
                    .dead_letter_undecodable(&assignment, &origin, raw, &e, reply);
            }
        }
    }

    /// Takes in the completions that arrived (waiting up to `wait` for the first).
    fn drain(&mut self, consumer: &BaseConsumer<AgentContext<K, V>>, wait: Option<Duration>) {
        let mut first = wait;
        loop {
            let completion = match first.take() {
                Some(wait) => match self.completions.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                },
                None => match self.completions.try_recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            self.complete(consumer, completion);
        }
    }

    fn complete(&mut self, consumer: &BaseConsumer<AgentContext<K, V>>, completion: Completion) {
        let Completion {
            partition,
            generation,
            offset,
            outcome,
            records,
        } = completion;
        let Some(part) = self.parts.get_mut(&partition) else {
            return;
        };
        if part.assignment.generation != generation {
            return;
        }
        let Some(tracker) = part.tracker.as_mut() else {
            return;
        };
        if let Outcome::Fatal(reason) = outcome {
            self.fatal.get_or_insert(reason);
            return;
        }
        if let Err(e) = tracker.ack(offset) {
            log::warn!("agent `{}`: partition {partition}: {e}", self.settings.name);
            return;
        }
        let committable = tracker.committable();
        let in_flight = tracker.in_flight();
        match self.guarantee {
            Guarantee::AtLeastOnce => {
                // Counted before they go: a record that fails to go leaves its interval
                // undelivered, so no position is committed past it (and the agent stops).
                let slot = self.epoch as usize % DELIVERY_EPOCHS;
                self.sent[slot] += records.len() as u64;
                if let Err(e) = send_all(&self.producer, &records, slot) {
                    self.fatal.get_or_insert(e);
                }
            }
            Guarantee::ExactlyOnce => {
                if !records.is_empty() {
                    part.held.insert(offset, records);
                }
                let ready: Vec<i64> = part.held.range(..committable).map(|(o, _)| *o).collect();
                let committing = self.committer.as_ref().is_some_and(Committer::busy);
                for o in ready {
                    let Some(records) = part.held.remove(&o) else {
                        continue;
                    };
                    if committing {
                        self.unsent.extend(records);
                        continue;
                    }
                    if !self.in_transaction {
                        if let Err(e) = self.producer.begin_transaction() {
                            self.fatal
                                .get_or_insert(format!("beginning a transaction: {e}"));
                            return;
                        }
                        self.in_transaction = true;
                    }
                    if let Err(e) = send_all(&self.producer, &records, UNCOUNTED) {
                        self.fatal.get_or_insert(e);
                        return;
                    }
                }
            }
        }
        if in_flight < self.settings.max_in_flight {
            self.feed(consumer, partition);
        }
    }

    /// Commits every partition's committable position (with the records written since the last
    /// commit, under `exactly_once`).
    ///
    /// Under `at_least_once`, a commit that is not `sync` only notes the positions: they are
    /// committed once the records sent before them are delivered (see
    /// [`Core::commit_delivered`]), while reading goes on. A `sync` one (a revocation, the
    /// stop) waits for every record and commits before it returns.
    fn commit(
        &mut self,
        consumer: &BaseConsumer<AgentContext<K, V>>,
        sync: bool,
    ) -> std::result::Result<(), String> {
        if self.guarantee == Guarantee::ExactlyOnce {
            self.finish_commit(consumer, sync)?;
            if self.committer.as_ref().is_some_and(Committer::busy) {
                // The last transaction is still committing: these positions go with the next.
                return Ok(());
            }
        }
        let mut offsets = TopicPartitionList::new();
        let mut moved = Vec::new();
        for (&partition, part) in &self.parts {
            let Some(committable) = part.tracker.as_ref().map(AckTracker::committable) else {
                continue;
            };
            if part.requested.or(part.committed) != Some(committable) {
                offsets
                    .add_partition_offset(
                        &self.settings.topic,
                        partition,
                        Offset::Offset(committable),
                    )
                    .map_err(|e| format!("committing: {e}"))?;
                moved.push((partition, committable));
            }
        }
        match self.guarantee {
            Guarantee::AtLeastOnce => {
                let moved = match sync {
                    // Every position, in case an earlier asynchronous commit was refused.
                    true => self
                        .parts
                        .iter()
                        .filter_map(|(&p, part)| Some((p, part.tracker.as_ref()?.committable())))
                        .collect(),
                    false => moved,
                };
                for &(partition, position) in &moved {
                    if let Some(part) = self.parts.get_mut(&partition) {
                        part.requested = Some(position);
                    }
                }
                if !moved.is_empty() {
                    self.awaiting.push_back((self.epoch, moved));
                }
                // Records sent from now on belong to the next interval.
                self.epoch += 1;
                if sync {
                    flush_promptly(&*self.producer, KAFKA_TIMEOUT)
                        .map_err(|e| format!("flushing the agent's records: {e}"))?;
                    return self.commit_delivered(consumer, CommitMode::Sync);
                }
                // The ring of per-interval counts is full: wait for the oldest interval.
                let deadline = Instant::now() + KAFKA_TIMEOUT;
                while self.epoch - self.delivered_through >= DELIVERY_EPOCHS as u64 {
                    self.advance_delivered();
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "the agent's records sent {} commit intervals ago are still not delivered after {KAFKA_TIMEOUT:?}",
                            DELIVERY_EPOCHS
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.commit_delivered(consumer, CommitMode::Async)
            }
            Guarantee::ExactlyOnce => {
                if moved.is_empty() && !self.in_transaction {
                    return Ok(());
                }
                if !self.in_transaction {
                    self.producer
                        .begin_transaction()
                        .map_err(|e| format!("beginning a transaction: {e}"))?;
                    self.in_transaction = true;
                }
                let group = consumer
                    .group_metadata()
                    .ok_or("the consumer has no group metadata")?;
                if self.injected_abort() {
                    log::warn!(
                        "agent `{}`: aborting this transaction (fault injection)",
                        self.settings.name
                    );
                    self.abort_and_rewind(consumer)?;
                    return Ok(());
                }
                let offsets = (!moved.is_empty()).then_some(offsets);
                let committer = self
                    .committer
                    .as_mut()
                    .ok_or("an exactly-once agent without its committer")?;
                committer.begin(offsets, group, moved)?;
                // Reading and handling go on while the transaction commits; a stop or a
                // revocation waits for it.
                if sync {
                    self.finish_commit(consumer, true)?;
                }
                Ok(())
            }
        }
    }

    /// Under `exactly_once`: takes the outcome of the transaction being committed, if there is
    /// one and it is known (waiting for it with `wait`). Committed, its positions are noted and
    /// the records that waited for it open the next transaction; refused in a way that leaves
    /// it to be aborted (a rebalance, a timeout), it is aborted and every partition is read
    /// again from its last commit.
    fn finish_commit(
        &mut self,
        consumer: &BaseConsumer<AgentContext<K, V>>,
        wait: bool,
    ) -> std::result::Result<(), String> {
        let Some(committer) = self.committer.as_mut() else {
            return Ok(());
        };
        let Some((moved, outcome)) = committer.outcome(wait)? else {
            return Ok(());
        };
        self.in_transaction = false;
        match outcome {
            Ok(()) => {
                for (partition, committable) in moved {
                    if let Some(part) = self.parts.get_mut(&partition) {
                        part.committed = Some(committable);
                    }
                }
            }
            // A rebalance under way (the group's generation moved on), a timeout: the
            // transaction is aborted, and its events are handled again.
            Err((_, e)) if requires_abort(&e) => {
                log::warn!(
                    "agent `{}`: the transaction is aborted ({e}); the events since the last commit are handled again",
                    self.settings.name
                );
                return self.abort_and_rewind(consumer);
            }
            Err((what, e)) => return Err(transaction_error(what, &e)),
        }
        if !self.unsent.is_empty() {
            self.producer
                .begin_transaction()
                .map_err(|e| format!("beginning a transaction: {e}"))?;
            self.in_transaction = true;
            let unsent = std::mem::take(&mut self.unsent);
            send_all(&self.producer, &unsent, UNCOUNTED)?;
        }
        Ok(())
    }

    /// Moves `delivered_through` over the closed commit intervals whose records are all
    /// delivered.
    fn advance_delivered(&mut self) {
        let deliveries = self.producer.context();
        while self.delivered_through + 1 < self.epoch {
            let slot = (self.delivered_through + 1) as usize % DELIVERY_EPOCHS;
            if deliveries.delivered(slot) != self.sent[slot] {
                break;
            }
            self.delivered_through += 1;
        }
    }

    /// Under `at_least_once`: commits the positions noted at the end of the intervals whose
    /// records are all delivered (after a flush, all of them). A commit refused during a
    /// rebalance is logged and tried again at the next one: the events it covers are done, only
    /// their positions wait.
    fn commit_delivered(
        &mut self,
        consumer: &BaseConsumer<AgentContext<K, V>>,
        mode: CommitMode,
    ) -> std::result::Result<(), String> {
        if matches!(mode, CommitMode::Sync) {
            self.delivered_through = self.epoch - 1;
        } else {
            self.advance_delivered();
        }
        let failed = self.producer.context().failed();
        if failed > 0 {
            return Err(format!(
                "{failed} of the agent's records were not delivered; positions are not committed past them"
            ));
        }
        let mut latest = BTreeMap::new();
        while let Some((epoch, _)) = self.awaiting.front() {
            if *epoch > self.delivered_through {
                break;
            }
            let Some((_, moved)) = self.awaiting.pop_front() else {
                break;
            };
            latest.extend(moved);
        }
        // Only partitions still held: a revoked one's position was committed as it went.
        latest.retain(|partition, _| self.parts.contains_key(partition));
        if latest.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (&partition, &position) in &latest {
            offsets
                .add_partition_offset(&self.settings.topic, partition, Offset::Offset(position))
                .map_err(|e| format!("committing: {e}"))?;
        }
        if let Err(e) = consumer.commit(&offsets, mode) {
            log::warn!(
                "agent `{}`: committing positions {latest:?}: {e}; trying again at the next commit",
                self.settings.name
            );
            for partition in latest.keys() {
                if let Some(part) = self.parts.get_mut(partition) {
                    part.requested = None;
                }
            }
            return Ok(());
        }
        for (partition, position) in latest {
            if let Some(part) = self.parts.get_mut(&partition) {
                part.committed = Some(position);
                if part.requested == Some(position) {
                    part.requested = None;
                }
            }
        }
        Ok(())
    }

    /// Whether fault injection aborts this transaction.
    fn injected_abort(&mut self) -> bool {
        #[cfg(feature = "fault-injection")]
        if let (Some(every), done) = &mut self.fault {
            *done += 1;
            return (*done).is_multiple_of(*every);
        }
        false
    }

    /// Aborts the open transaction and reads every partition again from its last commit.
    fn abort_and_rewind(
        &mut self,
        consumer: &BaseConsumer<AgentContext<K, V>>,
    ) -> std::result::Result<(), String> {
        self.producer
            .abort_transaction(KAFKA_TIMEOUT)
            .map_err(|e| transaction_error("aborting", &e))?;
        self.in_transaction = false;
        self.rewind(consumer);
        Ok(())
    }

    /// Reads every partition again from its last committed position, after an aborted
    /// transaction dropped the records written since: events in flight are given up (their acks
    /// are refused), held records dropped, and the partitions start a new assignment.
    fn rewind(&mut self, consumer: &BaseConsumer<AgentContext<K, V>>) {
        self.unsent.clear();
        let partitions: Vec<i32> = self.parts.keys().copied().collect();
        for partition in partitions {
            let Some(part) = self.parts.remove(&partition) else {
                continue;
            };
            part.assignment.revoked.store(true, AtomicOrdering::SeqCst);
            self.dispatcher.revoke(partition);
            if part.paused {
                pause(consumer, &self.settings.topic, partition, false);
            }
            self.assign(partition);
            let Some(position) = part
                .committed
                .or_else(|| part.tracker.as_ref().map(AckTracker::start))
            else {
                // Nothing was read: the consumer is still where the assignment began.
                continue;
            };
            if let Err(e) = consumer.seek(
                &self.settings.topic,
                partition,
                Offset::Offset(position),
                KAFKA_TIMEOUT,
            ) {
                self.fatal.get_or_insert(format!(
                    "agent `{}`: rewinding `{}` partition {partition} to offset {position}: {e}",
                    self.settings.name, self.settings.topic
                ));
            }
        }
        self.publish_status();
    }

    /// Gives up `partitions`: waits for their in-flight events up to the drain timeout, commits
    /// what is committable, and forgets them (events still running are not committed, and their
    /// acks are dropped).
    fn revoke(
        &mut self,
        consumer: &BaseConsumer<AgentContext<K, V>>,
        partitions: &[i32],
    ) -> std::result::Result<(), String> {
        let deadline = Instant::now() + self.settings.drain_timeout;
        // Held records are not started: where the partitions go, they are read again. A paused
        // partition is resumed while it is still assigned: the consumer keeps a partition's pause
        // across a revocation, so one assigned back to this process would never be read again.
        for partition in partitions {
            if let Some(part) = self.parts.get_mut(partition) {
                part.backlog.clear();
                part.backlog_bytes = 0;
                if part.paused {
                    part.paused = !pause(consumer, &self.settings.topic, *partition, false);
                }
            }
        }
        loop {
            let pending: usize = partitions
                .iter()
                .filter_map(|p| self.parts.get(p)?.tracker.as_ref())
                .map(AckTracker::in_flight)
                .sum();
            let now = Instant::now();
            if pending == 0 {
                break;
            }
            if now >= deadline || self.fatal.is_some() {
                log::warn!(
                    "agent `{}`: giving up {pending} events of revoked partitions {partitions:?} after {:?}; they will run again where the partitions go",
                    self.settings.name,
                    self.settings.drain_timeout
                );
                break;
            }
            self.dispatcher.flush();
            self.drain(
                consumer,
                Some((deadline - now).min(Duration::from_millis(50))),
            );
        }
        let committed = self.commit(consumer, true);
        for partition in partitions {
            if let Some(part) = self.parts.remove(partition) {
                part.assignment.revoked.store(true, AtomicOrdering::SeqCst);
            }
            self.dispatcher.revoke(*partition);
            log::info!(
                "agent `{}`: revoked `{}` partition {partition}",
                self.settings.name,
                self.settings.topic
            );
        }
        self.publish_status();
        committed
    }

    /// Notes the partitions whose committable position has not moved while events are in
    /// flight, and logs those blocked for long.
    fn watch_blocked(&mut self) {
        let now = Instant::now();
        for (&partition, part) in &mut self.parts {
            let Some(tracker) = &part.tracker else {
                continue;
            };
            let (at, in_flight) = (tracker.committable(), tracker.in_flight());
            match &mut part.blocked {
                _ if in_flight == 0 => part.blocked = None,
                Some(b) if b.at == at => {
                    let due = b.warned.map_or(b.since, |w| w) + BLOCKED_WARNING;
                    if now >= due {
                        b.warned = Some(now);
                        log::warn!(
                            "agent `{}`: `{}` partition {partition} has not moved past offset {at} for {:?} ({in_flight} events in flight): the event at {at} is not acked (a handler still running or retrying, or a manual ack not given)",
                            self.settings.name,
                            self.settings.topic,
                            now - b.since,
                        );
                    }
                }
                _ => {
                    part.blocked = Some(Blocked {
                        at,
                        since: now,
                        warned: None,
                    })
                }
            }
        }
    }

    fn publish_status(&self) {
        let partitions = self
            .parts
            .iter()
            .map(|(&partition, part)| PartitionStatus {
                partition,
                in_flight: part.tracker.as_ref().map_or(0, AckTracker::in_flight),
                buffered: part.backlog.len(),
                committed: part.committed,
                committable: part.tracker.as_ref().map(AckTracker::committable),
                acked_ranges: part
                    .tracker
                    .as_ref()
                    .map(AckTracker::acked_ranges)
                    .unwrap_or_default(),
                paused: part.paused,
                blocked_ms: part
                    .blocked
                    .as_ref()
                    .map(|b| u64::try_from(b.since.elapsed().as_millis()).unwrap_or(u64::MAX)),
            })
            .collect();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.partitions = partitions;
        status.handled = self.counters.handled.load(AtomicOrdering::Relaxed);
        status.failed_attempts = self.counters.failed_attempts.load(AtomicOrdering::Relaxed);
        status.dead_lettered = self.counters.dead_lettered.load(AtomicOrdering::Relaxed);
    }
}

/// A record's headers.
fn headers(message: &impl Message) -> Headers {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// A record's size as the read-ahead counts it: its key and value, and 64 bytes for the rest.
fn record_bytes(message: &impl Message) -> usize {
    64 + message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len)
}

/// Pauses (or resumes) fetching one partition; true if it worked.
fn pause<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    paused: bool,
) -> bool {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let result = if paused {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            log::warn!("pausing or resuming `{topic}` partition {partition}: {e}");
            false
        }
    }
}

/// A transaction's commit as the committer thread does it: its positions (none when only
/// records moved) and the consumer group they belong to.
struct CommitJob {
    offsets: Option<TopicPartitionList>,
    group: ConsumerGroupMetadata,
}

/// How a transaction's commit ended: what failed, and how.
type CommitOutcome = std::result::Result<(), (&'static str, KafkaError)>;

/// A committed (or refused) transaction: the positions it moved, and how its commit ended.
type Finished = (Vec<(i32, i64)>, CommitOutcome);

/// Under `exactly_once`, an agent's committer: a thread that sends a transaction's positions
/// and commits it, so that the consumer thread goes on reading and handling events meanwhile
/// (records acked in the meantime wait for the next transaction). One transaction commits at
/// a time.
struct Committer {
    jobs: Sender<CommitJob>,
    outcomes: Receiver<CommitOutcome>,
    /// The positions of the transaction being committed, while one is.
    committing: Option<Vec<(i32, i64)>>,
}

impl Committer {
    /// Starts the thread of agent `name`, committing `producer`'s transactions.
    fn start(producer: Arc<ThreadedProducer<Deliveries>>, name: &str) -> Result<Self> {
        let (jobs, job_rx) = channel::<CommitJob>();
        let (outcome_tx, outcomes) = channel();
        std::thread::Builder::new()
            .name(format!("agent-{name}-commit"))
            .spawn(move || {
                for job in job_rx {
                    let outcome = match &job.offsets {
                        Some(offsets) => producer
                            .send_offsets_to_transaction(offsets, &job.group, KAFKA_TIMEOUT)
                            .map_err(|e| ("sending positions", e)),
                        None => Ok(()),
                    }
                    .and_then(|()| {
                        commit_promptly(&*producer, KAFKA_TIMEOUT).map_err(|e| ("committing", e))
                    });
                    if outcome_tx.send(outcome).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Runtime(format!("spawning an agent's committer thread: {e}")))?;
        Ok(Committer {
            jobs,
            outcomes,
            committing: None,
        })
    }

    /// Whether a transaction is being committed.
    fn busy(&self) -> bool {
        self.committing.is_some()
    }

    /// Commits the open transaction, with `offsets` moving the partitions to `moved`.
    fn begin(
        &mut self,
        offsets: Option<TopicPartitionList>,
        group: ConsumerGroupMetadata,
        moved: Vec<(i32, i64)>,
    ) -> std::result::Result<(), String> {
        debug_assert!(
            self.committing.is_none(),
            "one transaction commits at a time"
        );
        self.jobs
            .send(CommitJob { offsets, group })
            .map_err(|_| "the agent's committer thread has stopped".to_string())?;
        self.committing = Some(moved);
        Ok(())
    }

    /// The positions and outcome of the transaction being committed, once it is known
    /// (waiting for it with `wait`); `None` while there is none or it is still committing.
    fn outcome(&mut self, wait: bool) -> std::result::Result<Option<Finished>, String> {
        if self.committing.is_none() {
            return Ok(None);
        }
        let outcome = if wait {
            self.outcomes.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            self.outcomes.try_recv()
        };
        match outcome {
            Ok(outcome) => Ok(self.committing.take().map(|moved| (moved, outcome))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                Err("the agent's committer thread has stopped".to_string())
            }
        }
    }
}

/// How many commit intervals' records may await delivery at once under `at_least_once`; beyond
/// that, the commit waits for the oldest.
const DELIVERY_EPOCHS: usize = 64;

/// The opaque of a record whose delivery is not counted per interval (`exactly_once`).
const UNCOUNTED: usize = usize::MAX;

/// The agent producer's context: failed deliveries, and under `at_least_once` how many records
/// of each commit interval (a ring of [`DELIVERY_EPOCHS`]) were delivered. Only the producer's
/// polling thread writes it; the consumer thread counts what it sent itself ([`Core`]'s
/// `sent`), so that the two threads share no counter they both write.
struct Deliveries {
    failed: AtomicU64,
    delivered: [AtomicU64; DELIVERY_EPOCHS],
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            failed: AtomicU64::new(0),
            delivered: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Deliveries {
    /// Records that failed to be delivered so far.
    fn failed(&self) -> u64 {
        self.failed.load(AtomicOrdering::Acquire)
    }

    /// Records of the intervals of ring slot `slot` delivered (or failed) so far.
    fn delivered(&self, slot: usize) -> u64 {
        self.delivered[slot].load(AtomicOrdering::Acquire)
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, slot: usize) {
        if let Err((e, _)) = result {
            log::error!("agent record not delivered: {e}");
            // Counted before the interval's count moves, so that a commit never passes it.
            self.failed.fetch_add(1, AtomicOrdering::AcqRel);
        }
        if slot != UNCOUNTED {
            self.delivered[slot].fetch_add(1, AtomicOrdering::Release);
        }
    }
}

/// Hands records to the producer (waiting while its queue is full), with `slot` as their
/// opaque: their ring slot of [`Deliveries`], or [`UNCOUNTED`].
fn send_all(
    producer: &ThreadedProducer<Deliveries>,
    records: &[Outgoing],
    slot: usize,
) -> std::result::Result<(), String> {
    for record in records {
        let mut base: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&record.topic, slot);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(headers) = owned_headers(&record.headers) {
            base = base.headers(headers);
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        // Read only when the queue is full: most records go at the first try.
        let mut started = None;
        loop {
            match producer.send(base) {
                Ok(()) => break,
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        && started.get_or_insert_with(Instant::now).elapsed() < KAFKA_TIMEOUT =>
                {
                    base = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(format!("writing to `{}`: {e}", record.topic)),
            }
        }
    }
    Ok(())
}

/// Whether a transaction's error leaves it to be aborted (and the producer usable after).
fn requires_abort(e: &rdkafka::error::KafkaError) -> bool {
    match e {
        rdkafka::error::KafkaError::Transaction(e) => e.txn_requires_abort() && !e.is_fatal(),
        _ => false,
    }
}

/// A transaction error, saying when this instance was fenced by a newer one.
fn transaction_error(what: &str, e: &rdkafka::error::KafkaError) -> String {
    if faustus_connectors::is_fenced(e) {
        format!("{what} the transaction: fenced (another process of this agent's group has taken its partitions): {e}")
    } else {
        format!("{what} the transaction: {e}")
    }
}

/// A Kafka client error while doing `context`.
fn kafka_error(context: String, source: rdkafka::error::KafkaError) -> Error {
    let source = faustus_connectors::properties::redact_error(source);
    Error::Kafka(faustus_connectors::ConnectorError::Kafka { context, source })
}
