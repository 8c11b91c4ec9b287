//! The application: configuration, start-up (topics, fencing, recovery), the timely cluster and
//! the HTTP server.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faustus_connectors::{
    connect, ensure_topics, read_progress, CommitStats, Committer, CommitterConfig, ConnectorError,
    EmbeddedBroker, KafkaConfig, Progress, TopicSpec,
};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Concatenate, Operator as _, Probe as _};
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::worker::Worker;

use crate::agent::{start_agents, Agent, AgentEnv, AgentSpec, AgentStatus, AgentsHandle};
use crate::config::{AppArgs, AppConfig, Guarantee};
use crate::dataflow::{Ctx, Data, Dataflow};
use crate::error::{Error, Result};
use crate::http::{router, HttpState, PeerTimeouts};
use crate::poison::OnPanic;
use crate::runtime::assignment::Assignments;
use crate::runtime::commit::{commit_sink, EpochSink};
use crate::runtime::health::{Health, TableState};
use crate::runtime::table::{Declared, Tables};
use crate::runtime::{CommitItem, Io, RestoreReport, Startup};
use crate::tables::{TableHandle, TableReader};
use crate::timer::Timer;

/// The name of the threads that run async code: the HTTP server and the agents.
pub(crate) const ASYNC_THREAD: &str = "faustus-async";

/// A faustus application: configure it, add its agents, then [`App::run`] it with the closure
/// that builds its dataflow.
#[derive(Debug)]
pub struct App {
    config: AppConfig,
    agents: Agents,
    /// Whether Ctrl-C and SIGTERM stop the app cleanly (see [`App::handle_signals`]).
    handle_signals: bool,
    /// Whether this process runs the chord coordinator (see [`App::chords`]).
    chords: bool,
    /// How long the coordinator keeps ended chords (see [`App::chord_retention`]).
    chord_retention: Duration,
}

/// The agents an application runs, and its timers (agents too, named once the application's
/// id is final).
#[derive(Default)]
struct Agents(Vec<Box<dyn AgentSpec>>, Vec<Timer>);

impl Agents {
    /// Every agent, the timers' included, of application `app_id`.
    fn resolve(self, app_id: &str) -> Vec<Box<dyn AgentSpec>> {
        let Agents(mut specs, timers) = self;
        specs.extend(timers.into_iter().map(|t| t.into_spec(app_id)));
        specs
    }
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|a| &a.settings().name))
            .entries(self.1.iter().map(|t| t.name()))
            .finish()
    }
}

/// What the planning pass learns from the build closure.
pub(crate) struct Planned {
    pub(crate) specs: Vec<TopicSpec>,
    /// The dataflow's input topics.
    pub(crate) sources: Vec<String>,
    pub(crate) out_topics: Vec<String>,
    /// The public tables.
    pub(crate) public: Vec<(String, Declared)>,
    /// Configuration errors in the program's dataflow.
    pub(crate) errors: Vec<String>,
    /// How records of the topics the dataflow reads and writes are encoded from text.
    pub(crate) encoders: BTreeMap<String, crate::topic::TextEncoder>,
}

impl App {
    /// An application with the default configuration ([`AppConfig::new`]).
    pub fn new(app_id: impl Into<String>) -> Self {
        App {
            config: AppConfig::new(app_id),
            agents: Agents::default(),
            handle_signals: true,
            chords: false,
            chord_retention: crate::workflow::DEFAULT_CHORD_RETENTION,
        }
    }

    /// An application configured from this process's command line and `FAUSTUS_*` environment
    /// variables (see [`AppArgs`]). `--help` prints the flags; a bad flag prints what is wrong
    /// and exits with status 2.
    pub fn from_command_line(app_id: impl Into<String>) -> Result<Self> {
        /// The flags of a program that has none of its own.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            app: AppArgs,
        }
        let cli = <Cli as clap::Parser>::parse();
        // A program that installed a logger of its own keeps it.
        let _ = crate::logging::init(cli.app.log_format.unwrap_or_default(), "info");
        App::new(app_id).with_args(&cli.app)
    }

    /// Applies command-line flags / environment variables (see [`AppArgs`]).
    pub fn with_args(self, args: &AppArgs) -> Result<Self> {
        Ok(App {
            config: self.config.with_args(args)?,
            ..self
        })
    }

    /// Whether Ctrl-C and SIGTERM stop the application cleanly (sources stop, the epochs in
    /// flight drain and commit), from the moment [`App::start`] serves HTTP; on by default.
    /// Turn it off in a program that handles those signals itself and calls [`Running::stop`];
    /// [`Running::run_until_signal`] then installs the handlers when it is called.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Uses the Kafka cluster at `brokers`, and with it exactly-once processing (change it with
    /// [`App::guarantee`] afterwards).
    pub fn brokers(mut self, brokers: impl Into<String>) -> Self {
        self.config.brokers = Some(brokers.into());
        self.config.guarantee = Guarantee::ExactlyOnce;
        self
    }

    /// Sets the processing guarantee.
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.config.guarantee = guarantee;
        self
    }

    /// How often the dataflow's input topics are checked for added partitions (default 30 s;
    /// `--partition-check-interval-ms` sets it too): when one gains partitions, the application
    /// stops with an error saying so, and a restart reads them.
    pub fn partition_check_interval(mut self, interval: Duration) -> Self {
        self.config.partition_check_interval = interval;
        self
    }

    /// What a panic in one of the program's functions, for one record, does (default:
    /// [`OnPanic::DeadLetter`]; `--on-panic` sets it too). See [`crate::poison`].
    pub fn on_panic(mut self, policy: OnPanic) -> Self {
        self.config.on_panic = policy;
        self
    }

    /// Sets the number of worker threads in this process.
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// Sets the HTTP address (`None`: no server; port 0 picks a free port).
    pub fn http(mut self, addr: Option<SocketAddr>) -> Self {
        self.config.http = addr;
        self
    }

    /// Sets the longest an epoch lasts (100 ms by default): the longest an output waits for its
    /// commit while the application keeps up with its input.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.config.commit_interval = interval;
        self
    }

    /// Sets the shortest an epoch lasts (a tenth of the commit interval by default). An epoch
    /// closes this early when every source took in little during it and every earlier epoch
    /// has reached the committer, so that at a low input rate outputs wait for a short epoch
    /// and one commit rather than for the commit interval. The commit interval itself gives
    /// epochs of a fixed length.
    pub fn min_epoch(mut self, min: Duration) -> Self {
        self.config.min_epoch = Some(min);
        self
    }

    /// Sets where tables are checkpointed on local disk (by default, `faustus` in the system's
    /// temporary directory): a restart reads a table back from there instead of replaying its
    /// changelog, when the files hold what was last committed. See `--state-dir`.
    pub fn state_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.state_dir = Some(dir.into());
        self
    }

    /// Turns local checkpoints off: every restart replays the tables' changelogs.
    pub fn without_checkpoints(mut self) -> Self {
        self.config.state_dir = None;
        self
    }

    /// Sets the partition count of topics faustus creates.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.config.partitions = partitions;
        self
    }

    /// Sets a librdkafka property of every Kafka client the application makes (consumers,
    /// producers, admin and metadata clients), over faustus' own defaults: security settings
    /// (`security.protocol`, `sasl.*`, `ssl.*`) or tuning. A key prefixed `consumer.` or
    /// `producer.` applies to those clients only (`producer.compression.type`). What faustus
    /// owns (consumer groups, offsets, isolation, transactional ids) is refused when the
    /// application starts, as are names and values librdkafka does not accept; secrets never
    /// show in logs or errors. See `--kafka-config` ([`AppArgs`]) for the same from a file.
    pub fn kafka_property(mut self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.config.kafka_properties.set(key, value);
        self
    }

    /// Reads librdkafka properties from a file in the format of Kafka's `client.properties`
    /// (as `--kafka-config` does), over those set before.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the file cannot be read, naming it.
    pub fn kafka_config_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self> {
        self.config
            .kafka_properties
            .read_file(path)
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some((brokers, _)) = self.config.kafka_properties.take_bootstrap_servers() {
            if self.config.brokers.is_none() {
                self = self.brokers(brokers);
            }
        }
        Ok(self)
    }

    /// Sets a librdkafka property of the producers only: [`App::kafka_property`] with
    /// `producer.<key>` (e.g. `batch.size`, `compression.type`, over faustus' `linger.ms=5`).
    /// Settings that break the committer's guarantees (`enable.idempotence=false` under
    /// exactly-once) are refused by librdkafka when the application starts.
    pub fn producer_setting(self, key: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.kafka_property(format!("producer.{}", key.as_ref()), value)
    }

    /// Sets the replicas of each partition of the topics faustus creates (changelogs,
    /// progress, dead letters, outputs); by default 3, or the number of brokers in the cluster
    /// if that is less. More than the cluster's brokers is an error when a topic is created.
    pub fn replication_factor(mut self, replicas: i32) -> Self {
        self.config.replication_factor = Some(replicas);
        self
    }

    /// Sets `min.insync.replicas` of the topics faustus creates: how many replicas must have a
    /// write before it counts (with the producers' `acks=all`); by default 2, or the
    /// replication factor if that is less.
    pub fn min_insync_replicas(mut self, replicas: i32) -> Self {
        self.config.min_insync_replicas = Some(replicas);
        self
    }

    /// Sets how long a Kafka transaction may stay open before the broker aborts it
    /// ([`AppConfig::transaction_timeout`]).
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.config.transaction_timeout = timeout;
        self
    }

    /// Sets how long one blocking step of a commit may take ([`AppConfig::commit_timeout`]).
    pub fn commit_timeout(mut self, timeout: Duration) -> Self {
        self.config.commit_timeout = timeout;
        self
    }

    /// Sets how long start-up may take to read a changelog or the progress topic to its end
    /// ([`AppConfig::restore_timeout`]).
    pub fn restore_timeout(mut self, timeout: Duration) -> Self {
        self.config.restore_timeout = timeout;
        self
    }

    /// Sets how long one Kafka metadata or admin request may take
    /// ([`AppConfig::kafka_request_timeout`]).
    pub fn kafka_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.kafka_request_timeout = timeout;
        self
    }

    /// Sets how long connecting to another process's HTTP API may take
    /// ([`AppConfig::http_peer_connect_timeout`]).
    pub fn http_peer_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.http_peer_connect_timeout = timeout;
        self
    }

    /// Sets how long a request to another process's HTTP API may take
    /// ([`AppConfig::http_peer_timeout`]).
    pub fn http_peer_timeout(mut self, timeout: Duration) -> Self {
        self.config.http_peer_timeout = timeout;
        self
    }

    /// Reports panics (those in the program's functions and agents too, which the application
    /// survives) and the error the application stops with to Sentry, at `dsn`
    /// (`--sentry-dsn` and `FAUSTUS_SENTRY_DSN` set it too). Needs faustus' cargo feature
    /// `sentry`: without it, [`App::start`] fails with a configuration error naming the
    /// feature.
    pub fn sentry_dsn(mut self, dsn: impl Into<String>) -> Self {
        self.config.sentry_dsn = Some(dsn.into());
        self
    }

    /// Turns the sensors on or off (`--sensors`; on by default): hop latency, records per
    /// operator and end-to-end latency in `/metrics`.
    pub fn sensors(mut self, on: bool) -> Self {
        self.config.sensors = on;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Runs the chord coordinator in this process (see [`crate::workflow`]): the agent `chords`,
    /// which reads `<app>-chords` (created compacted, with the application's partition count),
    /// counts the replies of each chord's members and sends each chord's result to its
    /// callback. Chords started by any process complete once some process of the application
    /// runs it; run it in several for failover.
    pub fn chords(mut self) -> Self {
        self.chords = true;
        self
    }

    /// How long the chord coordinator keeps an ended chord's id, to ignore its late or repeated
    /// records, before it forgets the chord and deletes its records from `<app>-chords` with
    /// tombstones (default [`crate::workflow::DEFAULT_CHORD_RETENTION`], one hour). A chord in
    /// progress is kept until it ends.
    pub fn chord_retention(mut self, retention: Duration) -> Self {
        self.chord_retention = retention;
        self
    }

    /// Adds an agent (see [`crate::agent`]): it starts with the application, after its topics
    /// are created, and stops with it.
    pub fn agent<K: Data + Send, V: Data + Send>(mut self, agent: Agent<K, V>) -> Self {
        self.agents.0.push(Box::new(agent));
        self
    }

    /// Adds a timer (see [`crate::timer`]): one process of the cluster runs it on its
    /// schedule, from the application's start to its stop.
    pub fn timer(mut self, timer: Timer) -> Self {
        self.agents.1.push(timer);
        self
    }

    /// Runs the application until Ctrl-C or SIGTERM, then stops cleanly: sources stop, the
    /// epochs in flight drain and commit, and the call returns.
    pub fn run<F>(self, build: F) -> Result<()>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        self.start(build)?.run_until_signal()
    }

    /// Starts the application in the background and returns a handle to it: checks the
    /// configuration and plans the program, starts the HTTP server (so that a deployment can
    /// watch the rest of the start-up), connects to Kafka and creates the topics, fences a
    /// previous instance and reads where it stopped, and spawns the timely cluster, whose
    /// workers restore the tables and run.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a mistake in the configuration or the program (the message says
    /// what to fix); [`Error::Kafka`] when Kafka cannot be reached, a topic is missing, or a
    /// newer instance fenced this one; [`Error::Runtime`] when a thread cannot start.
    pub fn start<F>(self, build: F) -> Result<Running>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        let config = self.config;
        let mut agents = self.agents.resolve(&config.app_id);
        let build = Arc::new(build);
        let mut planned = plan_checked(&config, Arc::clone(&build))?;
        let reporting = crate::report::start(&config)?;
        check_agents(&agents, self.chords)?;
        planned
            .specs
            .extend(workflow_topics(&config, !agents.is_empty(), self.chords));
        for agent in &agents {
            planned.specs.extend(agent.topics(config.partitions));
        }
        let tables = declare_tables(&planned.public);
        let Serving {
            health,
            assignments,
            http_state,
            runtime,
            http,
            kafka,
            signals,
        } = serve_and_connect(&config, &tables, self.handle_signals)?;
        let progress_topic = progress_topic(&config.app_id);
        // Progress records go to partition 0 (the key's partition in a topic of one), which
        // is the only one read back.
        planned.specs.push(TopicSpec {
            required_partitions: Some(1),
            ..TopicSpec::compacted(&progress_topic, 1)
        });
        let partitions = create_topics(&config, &kafka, planned.specs)?;
        workflow_topics_created(&http_state, &partitions);
        let inputs = planned
            .sources
            .iter()
            .filter(|t| !crate::input::is_input(t))
            .map(|t| (t.clone(), partitions.get(t).copied().unwrap_or(0)))
            .collect();
        let metrics = Arc::clone(&http_state.metrics);
        let written = planned.out_topics.iter().cloned().collect();
        let locked = lock_state_dir(&config)?;
        let (committer, progress) = recover(
            &config,
            &kafka.config,
            progress_topic,
            planned.out_topics,
            &metrics,
            locked.as_ref().map(|l| l.generation()),
        )?;
        let stats = committer.as_ref().map(|c| c.stats());
        let checkpoints = locked.and_then(|locked| {
            let metrics = Arc::clone(&metrics);
            locked
                .open(
                    progress.epoch,
                    progress.checkpoint.as_deref(),
                    Arc::new(move || metrics.committed_epoch()),
                )
                .map_err(|e| log::warn!("no local checkpoints: {e}"))
                .ok()
                .map(Arc::new)
        });
        let startup = startup(
            &config,
            kafka.config.clone(),
            partitions,
            progress,
            assignments,
            &health,
            metrics,
        );
        let startup = Arc::new(Startup {
            written,
            checkpoints,
            ..startup
        });
        let kafka_config = kafka.config;
        let retention = self.chords.then_some(self.chord_retention);
        add_coordinator(&mut agents, &config, &http_state, retention);
        let agents = launch_agents(
            agents,
            &config,
            &kafka_config,
            &runtime,
            &health,
            &http_state,
        )?;
        health.workers_started();
        let thread = spawn_cluster(
            &config,
            build,
            startup,
            tables,
            committer.map(EpochSink::Kafka),
        )?;
        watch_partitions(
            kafka_config.clone(),
            inputs,
            config.partition_check_interval,
            Arc::clone(&health),
        )?;

        Ok(Running {
            health,
            tables: Arc::clone(&http_state.tables),
            thread: Some(thread),
            http,
            brokers: kafka.brokers,
            stats,
            runtime,
            processes: config.processes,
            http_state,
            agents,
            kafka: kafka_config,
            signals,
            _embedded: kafka.embedded,
            _reporting: reporting,
        })
    }
}

impl App {
    /// Starts only the application's agents (see [`crate::agent`]): no dataflow, so no timely
    /// cluster and no committer of its own. Run as many such processes as the agents need, with
    /// the same configuration: their consumer groups share the partitions out. The HTTP server
    /// serves `/api/agents/` and the readiness endpoints.
    pub fn start_agents(self) -> Result<Running> {
        let config = self.config;
        let mut agents = self.agents.resolve(&config.app_id);
        config.validate()?;
        check_agents(&agents, self.chords)?;
        let reporting = crate::report::start(&config)?;
        if agents.is_empty() && !self.chords {
            return Err(Error::Config(
                "`App::start_agents` was called with no agents: add them with `App::agent` or `App::timer`".into(),
            ));
        }
        let dead_letters = crate::dead_letter::topic(&config.app_id);
        let mut specs = vec![TopicSpec::new(&dead_letters, 1)];
        specs.extend(workflow_topics(&config, true, self.chords));
        for agent in &agents {
            specs.extend(agent.topics(config.partitions));
        }
        let tables = declare_tables(&[]);
        let Serving {
            health,
            http_state,
            runtime,
            http,
            kafka,
            signals,
            ..
        } = serve_and_connect(&config, &tables, self.handle_signals)?;
        let partitions = create_topics(&config, &kafka, specs)?;
        workflow_topics_created(&http_state, &partitions);
        let retention = self.chords.then_some(self.chord_retention);
        add_coordinator(&mut agents, &config, &http_state, retention);
        let agents = launch_agents(
            agents,
            &config,
            &kafka.config,
            &runtime,
            &health,
            &http_state,
        )?;
        // Nothing to restore: ready once the agents run.
        health.workers_started();
        health.restore_complete();
        Ok(Running {
            health,
            tables,
            thread: None,
            http,
            brokers: kafka.brokers,
            stats: None,
            runtime,
            processes: config.processes,
            http_state,
            agents,
            kafka: kafka.config,
            signals,
            _embedded: kafka.embedded,
            _reporting: reporting,
        })
    }

    /// [`App::start_agents`], then runs until Ctrl-C or SIGTERM and stops cleanly (the agents
    /// drain their in-flight events and commit).
    pub fn run_agents(self) -> Result<()> {
        self.start_agents()?.run_until_signal()
    }

    /// Runs one of the program's tool commands ([`crate::cli::Command`]: `tables`, `get`,
    /// `send`, `agents`, `reset`) for this application and the dataflow `build` makes (the same
    /// closure the worker runs: the tools learn its tables and topics from it, without running
    /// it). What the command answers is printed on standard output.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a table, key or topic the program or the running application
    /// does not have; [`Error::NotReady`] when the running application cannot answer yet (or
    /// none answers); [`Error::Config`] for a refused command (a record that does not suit its
    /// topic, `reset` while the application runs or unconfirmed); what Kafka reports.
    pub fn run_tool<F>(self, command: &crate::cli::Command, build: F) -> Result<()>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        self.run_tool_to(command, build, &mut std::io::stdout().lock())
    }

    /// [`App::run_tool`], printing the answer to `out` instead of standard output.
    ///
    /// # Errors
    ///
    /// As [`App::run_tool`].
    pub fn run_tool_to<F>(
        self,
        command: &crate::cli::Command,
        build: F,
        out: &mut dyn std::io::Write,
    ) -> Result<()>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        let mut planned = plan_checked(&self.config, Arc::new(build))?;
        let specs = self.agents.resolve(&self.config.app_id);
        check_agents(&specs, self.chords)?;
        let mut agents = Vec::new();
        for agent in &specs {
            planned.specs.extend(agent.topics(self.config.partitions));
            for (topic, encoder) in agent.encoders() {
                planned.encoders.entry(topic).or_insert(encoder);
            }
            let settings = agent.settings();
            agents.push((
                settings.name.clone(),
                settings.topic.clone(),
                crate::agent::group_id(&self.config.app_id, &settings.name),
            ));
        }
        let program = crate::cli::Program {
            config: &self.config,
            planned,
            agents,
        };
        crate::cli::run(&program, command, out)
    }
}

/// What runs before the application touches its topics: its health, the HTTP server, and the
/// connection to Kafka.
struct Serving {
    health: Arc<Health>,
    assignments: Arc<Assignments>,
    http_state: HttpState,
    runtime: tokio::runtime::Runtime,
    http: Option<SocketAddr>,
    kafka: Kafka,
    /// Whether the stop signals' handlers are installed.
    signals: bool,
}

/// Starts the HTTP server over `tables` (so that a deployment can watch the start-up), then
/// connects to Kafka (or starts the embedded broker).
///
/// With `handle_signals`, Ctrl-C and SIGTERM stop the app cleanly from here on: their handlers
/// are installed before the HTTP server listens, so a signal sent once the app answers is never
/// lost to the default action.
fn serve_and_connect(
    config: &AppConfig,
    tables: &Arc<Tables>,
    handle_signals: bool,
) -> Result<Serving> {
    let health = Arc::new(Health::new(config.workers));
    let assignments = Arc::new(Assignments::default());
    let http_state = http_state(config, tables, &health, &assignments)?;
    let runtime = async_runtime()?;
    if handle_signals {
        stop_on_signal(&runtime, Arc::clone(health.stop_flag()));
    }
    let http = start_http(&runtime, config, &http_state)?;
    // The overview's history starts with the process (the lag, once Kafka is reached).
    runtime.spawn(crate::http::sample(http_state.clone(), http.is_some()));
    let kafka = connect_kafka(config)?;
    assignments.set_kafka(kafka.config.clone());
    let _ = http_state
        .workflows
        .set(crate::workflow::Workflows::connect(
            &kafka.config,
            &config.app_id,
            config.partitions,
        )?);
    Ok(Serving {
        health,
        assignments,
        http_state,
        runtime,
        http,
        kafka,
        signals: handle_signals,
    })
}

/// Starts `agents` on the application's async runtime; they stop with the application.
fn launch_agents(
    agents: Vec<Box<dyn AgentSpec>>,
    config: &AppConfig,
    kafka: &KafkaConfig,
    runtime: &tokio::runtime::Runtime,
    health: &Arc<Health>,
    http_state: &HttpState,
) -> Result<AgentsHandle> {
    let env = AgentEnv {
        kafka: kafka.clone(),
        app_id: config.app_id.clone(),
        guarantee: config.guarantee,
        commit_interval: config.commit_interval,
        // A crashed process's open transaction holds its partitions back until the broker
        // aborts it: agents keep that short, as Kafka Streams does under exactly-once.
        transaction_timeout: config.transaction_timeout.min(AGENT_TRANSACTION_TIMEOUT),
        runtime: runtime.handle().clone(),
        dead_letter_topic: crate::dead_letter::topic(&config.app_id),
        http: http_state.clone(),
        stop: Arc::clone(health.stop_flag()),
        fail: {
            let health = Arc::clone(health);
            Arc::new(move |message| health.fail(message))
        },
    };
    start_agents(agents, &env, Arc::clone(&http_state.agents))
}

/// The longest an agent's transaction may stay open (see [`launch_agents`]).
const AGENT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The workflow topics the application creates: the replies to its requests when it runs
/// agents, and the chord coordinator's (compacted) when it runs one.
fn workflow_topics(config: &AppConfig, agents: bool, chords: bool) -> Vec<TopicSpec> {
    let mut specs = Vec::new();
    if agents || chords {
        specs.push(TopicSpec::new(
            crate::workflow::replies_topic(&config.app_id),
            config.partitions,
        ));
    }
    if chords {
        specs.push(TopicSpec::compacted(
            crate::workflow::chords_topic(&config.app_id),
            config.partitions,
        ));
    }
    specs
}

/// Tells the workflows handle the partition counts of the workflow topics the application
/// created (so that it does not create or check them again).
fn workflow_topics_created(http_state: &HttpState, partitions: &BTreeMap<String, i32>) {
    if let Some(workflows) = http_state.workflows.get() {
        workflows.known_topics(partitions);
    }
}

/// Adds the chord coordinator to `agents` when the application runs one (`retention`: how long
/// it keeps ended chords).
fn add_coordinator(
    agents: &mut Vec<Box<dyn AgentSpec>>,
    config: &AppConfig,
    http_state: &HttpState,
    retention: Option<Duration>,
) {
    if let Some(retention) = retention {
        agents.push(Box::new(crate::workflow::chord_coordinator(
            &config.app_id,
            Arc::clone(&http_state.workflows),
            Arc::clone(&http_state.chords),
            retention,
        )));
    }
}

/// Checks the agents' settings and that their names are unique (and not the chord
/// coordinator's, when it runs).
fn check_agents(agents: &[Box<dyn AgentSpec>], chords: bool) -> Result<()> {
    let mut problems: Vec<String> = agents.iter().filter_map(|a| a.problem()).collect();
    let mut names = std::collections::BTreeSet::new();
    if chords {
        names.insert(crate::workflow::COORDINATOR_NAME);
    }
    for agent in agents {
        let name = agent.settings().name.as_str();
        if !names.insert(name) {
            let whose = match chords && name == crate::workflow::COORDINATOR_NAME {
                true => " (`chords` is the chord coordinator's)",
                false => "",
            };
            problems.push(format!(
                "two agents are named `{name}`: agent names must be unique (they name consumer groups){whose}"
            ));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Error::Config(problems.join("; "))),
    }
}

/// Checks the configuration, then plans the program ([`plan`]); a mistake in either is an
/// [`Error::Config`] that says what to fix.
pub(crate) fn plan_checked<F>(config: &AppConfig, build: Arc<F>) -> Result<Planned>
where
    F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static + ?Sized,
{
    config.validate()?;
    let planned = plan(config, build);
    if !planned.errors.is_empty() {
        return Err(Error::Config(planned.errors.join("; ")));
    }
    Ok(planned)
}

/// This process's public tables, declared before any worker registers its part: until then
/// each answers "starting", never "absent".
pub(crate) fn declare_tables(public: &[(String, Declared)]) -> Arc<Tables> {
    let tables = Arc::new(Tables::default());
    for (name, declared) in public {
        tables.declare(name, declared.changelog.clone(), declared.replicas_type);
    }
    tables
}

/// What the HTTP API serves: this process's tables, health and assignment, and how it reaches
/// the other processes (`--http-peers` and the peer timeouts).
fn http_state(
    config: &AppConfig,
    tables: &Arc<Tables>,
    health: &Arc<Health>,
    assignments: &Arc<Assignments>,
) -> Result<HttpState> {
    let peers = config
        .http_peers
        .iter()
        .map(|p| crate::config::peer_url(p).map_err(Error::Config))
        .collect::<Result<_>>()?;
    let state = HttpState::new(
        Arc::clone(tables),
        Arc::clone(health),
        Arc::clone(assignments),
        config.process_id,
        config.processes,
        config.workers,
        peers,
    );
    state.metrics.set_sensors(config.sensors);
    Ok(state
        .with_peer_timeouts(PeerTimeouts {
            connect: config.http_peer_connect_timeout,
            request: config.http_peer_timeout,
        })
        .of_app(&config.app_id, config.guarantee))
}

/// The application's async runtime (HTTP server, agents, signals).
fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(ASYNC_THREAD)
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("starting the async runtime: {e}")))
}

/// Starts the HTTP server on `runtime`, unless `--http off`; returns the address it listens on.
/// It starts before anything touches Kafka, so that a deployment can watch the start-up and the
/// restore, and a port in use fails at once.
fn start_http(
    runtime: &tokio::runtime::Runtime,
    config: &AppConfig,
    state: &HttpState,
) -> Result<Option<SocketAddr>> {
    let Some(addr) = config.http else {
        return Ok(None);
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| Error::Config(format!("--http {addr}: cannot listen there: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Runtime(format!("HTTP listener: {e}")))?;
    let app = router(state.clone());
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            log::error!("HTTP server stopped: {e}");
        }
    });
    Ok(Some(local))
}

/// The Kafka cluster an application uses.
struct Kafka {
    /// The embedded broker, when no brokers are configured; it lives as long as the app.
    embedded: Option<EmbeddedBroker>,
    /// The bootstrap servers (the embedded broker's, when it runs).
    brokers: String,
    /// How every client reaches them.
    config: KafkaConfig,
    /// How many brokers the cluster's metadata lists.
    cluster_size: usize,
}

/// Connects to the configured brokers, or starts the embedded broker when there are none.
fn connect_kafka(config: &AppConfig) -> Result<Kafka> {
    let (embedded, brokers) = match &config.brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let broker = EmbeddedBroker::start()?;
            let brokers = broker.bootstrap_servers();
            log::warn!(
                "no --brokers given: running on an embedded in-process broker ({brokers}), for demos only (at-least-once)"
            );
            (Some(broker), brokers)
        }
    };
    let mut kafka = KafkaConfig::new(&brokers).with_properties(config.kafka_properties.clone());
    kafka.request_timeout = config.kafka_request_timeout;
    let cluster_size = connect(&kafka)?;
    // Secrets show as [redacted].
    match config.kafka_properties.is_empty() {
        true => log::info!("Kafka at {brokers}: {cluster_size} broker(s)"),
        false => log::info!(
            "Kafka at {brokers}: {cluster_size} broker(s); client properties: {}",
            config.kafka_properties
        ),
    }
    Ok(Kafka {
        embedded,
        brokers,
        config: kafka,
        cluster_size,
    })
}

/// The topic where application `app_id` commits its positions.
pub(crate) fn progress_topic(app_id: &str) -> String {
    format!("{app_id}-__progress")
}

/// Creates the topics of `specs` that are missing, as a worker of this configuration would
/// (for the program's tool commands).
pub(crate) fn create_topics_for_tool(
    config: &AppConfig,
    kafka: &KafkaConfig,
    specs: Vec<TopicSpec>,
) -> Result<()> {
    let kafka = Kafka {
        embedded: None,
        brokers: kafka.brokers.clone(),
        config: kafka.clone(),
        cluster_size: connect(kafka)?,
    };
    create_topics(config, &kafka, specs).map(drop)
}

/// The replication factor and `min.insync.replicas` of the topics faustus creates, on a
/// cluster of `brokers` brokers: as configured, or 3 (at most the brokers) and 2 (at most the
/// replication factor).
fn replication(config: &AppConfig, brokers: usize) -> Result<(i32, i32)> {
    let brokers = i32::try_from(brokers).unwrap_or(i32::MAX);
    let replicas = config.replication_factor.unwrap_or(brokers.clamp(1, 3));
    let min_insync = config.min_insync_replicas.unwrap_or(replicas.min(2));
    if min_insync > replicas {
        return Err(Error::Config(format!(
            "--min-insync-replicas {min_insync} is more than the replication factor {replicas}: no write could ever succeed; lower it, or raise --replication-factor"
        )));
    }
    Ok((replicas, min_insync))
}

/// Creates the topics the program needs, where missing, replicated as configured
/// ([`replication`]), and checks those that exist; returns every topic's partition count.
fn create_topics(
    config: &AppConfig,
    kafka: &Kafka,
    specs: Vec<TopicSpec>,
) -> Result<BTreeMap<String, i32>> {
    let (replicas, min_insync) = replication(config, kafka.cluster_size)?;
    let mut specs: Vec<TopicSpec> = specs
        .into_iter()
        .map(|s| s.replicated(replicas, min_insync))
        .collect();
    if let Some(broker) = &kafka.embedded {
        for spec in &mut specs {
            if let Some(n) = spec.partitions {
                let _ = broker.create_topic(&spec.name, n);
            }
            // The mock cluster keeps no topic settings: nothing to check.
            spec.compacted = false;
        }
    }
    let counts = ensure_topics(&kafka.config, &specs).map_err(|e| match e {
        ConnectorError::Replication(message) => Error::Config(format!(
            "{message}; the cluster's metadata lists {} broker(s)",
            kafka.cluster_size
        )),
        other => other.into(),
    })?;
    Ok(specs.into_iter().map(|s| s.name).zip(counts).collect())
}

/// Checks the dataflow's input topics every `interval` and stops the application, saying why,
/// once one has more partitions than `inputs` (the counts its sources started with): sources
/// read a fixed set of partitions, and a restart picks the new ones up (from their beginning,
/// as no position was ever committed for them). Ends when the application stops.
fn watch_partitions(
    kafka: KafkaConfig,
    inputs: BTreeMap<String, i32>,
    interval: Duration,
    health: Arc<Health>,
) -> Result<()> {
    if inputs.is_empty() {
        return Ok(());
    }
    let watch = move || {
        let step = interval.min(Duration::from_millis(100));
        loop {
            let due = Instant::now() + interval;
            while Instant::now() < due {
                if health.stopping() {
                    return;
                }
                std::thread::sleep(step);
            }
            for (topic, started) in &inputs {
                match faustus_connectors::admin::partition_count(&kafka, topic) {
                    Ok(Some(now)) if now > *started => {
                        health.fail(format!(
                            "input topic `{topic}` now has {now} partitions; this application started with {started} and reads only those. It stops (its epochs in flight commit): restart it to read the {} new partition(s) from their beginning",
                            now - started
                        ));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("checking the partitions of `{topic}`: {e}"),
                }
            }
        }
    };
    std::thread::Builder::new()
        .name("faustus-partitions".into())
        .spawn(watch)
        .map(drop)
        .map_err(|e| Error::Runtime(format!("starting the partition watch: {e}")))
}

/// Fences any previous instance, then reads what it committed: process 0 starts the committer,
/// which does both; the other processes only read the progress.
fn recover(
    config: &AppConfig,
    kafka: &KafkaConfig,
    progress_topic: String,
    out_topics: Vec<String>,
    metrics: &Arc<crate::metrics::Metrics>,
    checkpoint: Option<Arc<faustus_connectors::CheckpointGeneration>>,
) -> Result<(Option<Committer>, Progress)> {
    if config.process_id != 0 {
        let progress =
            read_progress(kafka, &progress_topic, config.restore_timeout)?.unwrap_or_default();
        return Ok((None, progress));
    }
    #[cfg(not(feature = "fault-injection"))]
    warn_without_fault_injection();
    let committer = CommitterConfig {
        app_id: config.app_id.clone(),
        guarantee: config.guarantee,
        progress_topic,
        observer: Some(metrics.commit_observer(&out_topics)),
        checkpoint,
        topics: out_topics,
        // Standard lag tools read the committed positions from the group named after the app.
        consumer_group: Some(config.app_id.clone()),
        transaction_timeout: config.transaction_timeout,
        commit_timeout: config.commit_timeout,
        progress_timeout: config.restore_timeout,
        max_queued_bytes: config.max_uncommitted_bytes,
        #[cfg(feature = "fault-injection")]
        hold_open: fault_commit_hold()?,
    };
    let (committer, progress) = Committer::start(kafka, committer)?;
    Ok((Some(committer), progress))
}

/// Locks the application's local state directory for this run's checkpoints (see
/// [`crate::runtime::checkpoint`]): `None` when checkpoints are off or cannot be kept (a
/// multi-process cluster, the embedded broker; logged: a directory that another process holds,
/// or the default directory that cannot be made). A directory the configuration names that
/// cannot be made is an error that says what to fix.
fn lock_state_dir(config: &AppConfig) -> Result<Option<crate::runtime::checkpoint::Locked>> {
    use crate::runtime::checkpoint::{Locked, Unavailable};
    let Some(dir) = config.state_dir.as_ref() else {
        return Ok(None);
    };
    if config.processes > 1 || config.brokers.is_none() {
        return Ok(None);
    }
    match Locked::lock(dir, &config.app_id) {
        Ok(locked) => Ok(Some(locked)),
        Err(Unavailable::Unusable(why)) if *dir != crate::config::default_state_dir() => {
            Err(Error::Config(format!(
                "--state-dir {}: {why}; give a directory this process can write, or \
                 `--state-dir off` to keep no local checkpoints",
                dir.display()
            )))
        }
        Err(why) => {
            log::warn!("no local checkpoints: {why}; tables restore from their changelogs");
            Ok(None)
        }
    }
}

/// What every worker learns before the dataflow runs: where to resume (after the epoch of
/// `progress`), the topics' partition counts, how to reach Kafka (the topics the dataflow
/// writes are the caller's to fill in).
fn startup(
    config: &AppConfig,
    kafka: KafkaConfig,
    partitions: BTreeMap<String, i32>,
    progress: Progress,
    assignments: Arc<Assignments>,
    health: &Arc<Health>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Startup {
    log::info!(
        "starting `{}` after epoch {} ({:?}, {} worker(s) x {} process(es))",
        config.app_id,
        progress.epoch,
        config.guarantee,
        config.workers,
        config.processes
    );
    Startup {
        planning: false,
        resume_epoch: progress.epoch + 1,
        offsets: progress.offsets,
        partitions,
        io: Io::Kafka(kafka),
        commit_interval: config.commit_interval,
        min_epoch: config.shortest_epoch(),
        restore_timeout: config.restore_timeout,
        assignments,
        health: Arc::clone(health),
        metrics,
        max_uncommitted_bytes: config.max_uncommitted_bytes,
        written: Default::default(),
        checkpoints: None,
    }
}

/// The timely configuration: this process's workers, and its peers in a cluster.
fn timely_config(config: &AppConfig) -> timely::Config {
    match config.processes {
        1 => timely::Config::process(config.workers),
        _ => timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: config.workers,
                process: config.process_id,
                addresses: config.hosts.clone(),
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        },
    }
}

/// Spawns the thread that runs this process's timely workers ([`run_worker`]) and returns the
/// first error of any of them; worker 0 of process 0 gets the committer.
pub(crate) fn spawn_cluster<F>(
    config: &AppConfig,
    build: Arc<F>,
    startup: Arc<Startup>,
    tables: Arc<Tables>,
    committer: Option<EpochSink>,
) -> Result<JoinHandle<Result<()>>>
where
    F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static + ?Sized,
{
    let timely_config = timely_config(config);
    crate::poison::install_hook();
    let committer = Arc::new(Mutex::new(committer));
    let app_id = config.app_id.clone();
    let (workers, partitions, on_panic) = (config.workers, config.partitions, config.on_panic);
    std::thread::Builder::new()
        .name("faustus-cluster".into())
        .spawn(move || -> Result<()> {
            let guards = timely::execute(timely_config, move |worker| {
                run_worker(
                    worker,
                    &build,
                    Ctx {
                        app_id: app_id.clone(),
                        partitions,
                        startup: Arc::clone(&startup),
                        tables: Arc::clone(&tables),
                        workers,
                        on_panic,
                        sources: RefCell::default(),
                        committed: ProbeHandle::new(),
                    },
                    &committer,
                )
            })
            .map_err(|e| Error::Runtime(format!("starting the timely cluster: {e}")))?;
            let mut first_error = None;
            for result in guards.join() {
                let outcome = result.map_err(Error::Runtime).and_then(|r| r);
                if let Err(e) = outcome {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .map_err(|e| Error::Runtime(format!("spawning the cluster thread: {e}")))
}

/// The longest a worker parks when it has nothing to do. Operators that wait for something
/// outside the dataflow (Kafka, the clock) schedule their own activations, so this only bounds
/// how long an idle worker goes without a look at its operators.
const WORKER_PARK: Duration = Duration::from_millis(10);

/// Builds the dataflow on one worker and runs it to completion.
fn run_worker<F>(
    worker: &mut Worker,
    build: &Arc<F>,
    ctx: Ctx,
    committer: &Arc<Mutex<Option<EpochSink>>>,
) -> Result<()>
where
    F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static + ?Sized,
{
    let cell = Rc::new(RefCell::new(if worker.index() == 0 {
        committer.lock().unwrap_or_else(|e| e.into_inner()).take()
    } else {
        None
    }));
    let startup = Arc::clone(&ctx.startup);
    let _notice = PanicNotice(Arc::clone(&startup));
    let sink_cell = Rc::clone(&cell);
    // The sensors of the exchanges (`crate::metrics`); a test driver's epochs are not times.
    let sensors = match startup.io {
        Io::Kafka(_) => startup.metrics.dataflow_sensors(startup.resume_epoch),
        Io::Driver(_) => None,
    };
    worker.dataflow::<u64, _, _>(|scope| {
        faustus_operators::with_sensors(sensors, || {
            let df = Dataflow::new(scope, ctx);
            build(&df);
            let mut plan = df.plan.borrow_mut();
            let outputs = std::mem::take(&mut plan.outputs);
            // Everything for the committer goes to worker 0; the probe after that exchange
            // tells the sources which epochs worker 0 has taken in (see `runtime::source`,
            // backpressure).
            let items = to_committer(scope.concatenate(outputs)).probe_with(&df.ctx.committed);
            commit_sink(items, sink_cell, plan.sources.clone(), Arc::clone(&startup));
        });
    });
    while worker.step_or_park(Some(WORKER_PARK)) {}
    let committer = cell.borrow_mut().take();
    if let Some(committer) = committer {
        committer.finish()?;
    }
    Ok(())
}

/// Sends every committer-bound item to worker 0, sensed as the `commit` hop.
fn to_committer<'s>(items: StreamVec<'s, u64, CommitItem>) -> StreamVec<'s, u64, CommitItem> {
    let pact = faustus_operators::sensor::sensed(
        Exchange::new(|_: &CommitItem| 0),
        faustus_operators::Hop::Commit,
        "committer",
    );
    items.unary(pact, "ToCommitter", |_, _| {
        |input, output| input.for_each(|cap, data| output.session(&cap).give_container(data))
    })
}

/// Under a test driver, a worker that panics (in the program's code) fails the run, so that the
/// driver reports it instead of waiting for an epoch that never completes. (A Kafka
/// application's panics end the process: see [`Running::run_until_signal`].)
struct PanicNotice(Arc<Startup>);

impl Drop for PanicNotice {
    fn drop(&mut self) {
        if std::thread::panicking() && matches!(self.0.io, Io::Driver(_)) {
            self.0
                .fail("a worker panicked (its message is above)".into());
        }
    }
}

/// Runs the build closure on a throwaway single worker to learn the topics the program uses.
fn plan<F>(config: &AppConfig, build: Arc<F>) -> Planned
where
    F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static + ?Sized,
{
    let startup = Arc::new(Startup::planning());
    let (app_id, partitions, on_panic) =
        (config.app_id.clone(), config.partitions, config.on_panic);
    let worker_startup = Arc::clone(&startup);
    timely::execute_directly(move |worker| {
        let ctx = Ctx {
            app_id,
            partitions,
            startup: worker_startup,
            tables: Arc::new(Tables::default()),
            workers: 1,
            on_panic,
            sources: RefCell::default(),
            committed: ProbeHandle::new(),
        };
        worker.dataflow::<u64, _, _>(|scope| {
            let df = Dataflow::new(scope, ctx);
            build(&df);
            let errors = df.errors();
            let mut plan = df.plan.borrow_mut();
            // Connect the outputs so the dataflow is complete; nothing flows in planning.
            let outputs = std::mem::take(&mut plan.outputs);
            let items = scope.concatenate(outputs);
            commit_sink(
                items,
                Rc::new(RefCell::new(None)),
                plan.sources.clone(),
                startup,
            );
            let mut sources = plan.sources.clone();
            sources.sort();
            sources.dedup();
            Planned {
                specs: plan.specs.values().cloned().collect(),
                sources,
                out_topics: plan.out_topics.clone(),
                public: df.ctx.tables.declarations(),
                errors,
                encoders: std::mem::take(&mut plan.encoders),
            }
        })
    })
}

/// The environment variable of the commit hold (fault injection, for tests).
const FAULT_COMMIT_HOLD: &str = "FAUSTUS_FAULT_COMMIT_HOLD_MS";

/// Fault injection for tests (cargo feature `fault-injection`): `FAUSTUS_FAULT_COMMIT_HOLD_MS`
/// holds every commit open that long, so that a test's `kill -9` lands inside an open
/// transaction.
#[cfg(feature = "fault-injection")]
fn fault_commit_hold() -> Result<Duration> {
    match std::env::var(FAULT_COMMIT_HOLD) {
        Err(_) => Ok(Duration::ZERO),
        Ok(ms) => ms.parse().map(Duration::from_millis).map_err(|_| {
            Error::Config(format!(
                "{FAULT_COMMIT_HOLD}=`{ms}` is not a number of milliseconds"
            ))
        }),
    }
}

/// Without the `fault-injection` feature commits are never held: a `FAUSTUS_FAULT_COMMIT_HOLD_MS`
/// in the environment is ignored, with a warning, so that a test that counts on it is not
/// fooled silently.
#[cfg(not(feature = "fault-injection"))]
fn warn_without_fault_injection() {
    if let Ok(ms) = std::env::var(FAULT_COMMIT_HOLD) {
        log::warn!(
            "{FAULT_COMMIT_HOLD}={ms} is ignored: this build of faustus has no fault injection (cargo feature `fault-injection`)"
        );
    }
}

/// The exit code of a process of a cluster that stops because it lost its connection to
/// another process (which stopped or crashed): the cluster must be restarted whole. See
/// `docs/guide/availability.md` on running a cluster under a supervisor.
pub const EXIT_PEER_LOST: i32 = 3;

/// The process a panic on one of timely's connection threads (`timely:send-<n>` and
/// `timely:recv-<n>`, `n` the other process) says is gone.
fn lost_peer(info: &std::panic::PanicHookInfo<'_>) -> Option<usize> {
    let thread = std::thread::current();
    let name = thread.name()?;
    let peer = name
        .strip_prefix("timely:send-")
        .or_else(|| name.strip_prefix("timely:recv-"))?;
    crate::agent::panic_payload_text(info.payload())
        .starts_with("timely communication error")
        .then(|| peer.parse().ok())?
}

/// Installs the handlers of Ctrl-C and SIGTERM on `runtime`: either signal sets `stop`, and the
/// application stops cleanly.
fn stop_on_signal(runtime: &tokio::runtime::Runtime, stop: Arc<AtomicBool>) {
    let signals = {
        let _context = runtime.enter();
        StopSignals::install()
    };
    runtime.spawn(async move {
        signals.recv().await;
        log::info!("stopping: draining the epochs in flight");
        stop.store(true, Ordering::Relaxed);
    });
}

/// The handlers of the signals that stop an application cleanly: Ctrl-C (SIGINT) and SIGTERM.
/// A signal delivered after [`StopSignals::install`] is kept until [`StopSignals::recv`].
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Installs the handlers; needs the async runtime's context. A handler that cannot be
    /// installed is logged, and that signal keeps its default action.
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let handler = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::warn!("cannot handle {name}, which keeps its default action: {e}");
                    None
                }
            };
            StopSignals {
                term: handler(SignalKind::terminate(), "SIGTERM"),
                interrupt: handler(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Waits for one of the signals.
    async fn recv(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => {}
                _ = next(self.interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How often [`Running::wait_ready`] looks at the application's state: a fraction of a typical
/// restore, and no load on anything.
const READY_POLL: Duration = Duration::from_millis(20);

/// How often, in a cluster, [`Running::run_until_signal`] looks for a fatal error of its own.
const FATAL_POLL: Duration = Duration::from_millis(200);

/// How long a process of a cluster that failed waits before it exits: long enough for its
/// sources to stop and its log to say why, short enough that a supervisor restarts the cluster
/// soon.
const FATAL_EXIT_DELAY: Duration = Duration::from_secs(5);

/// A running application.
pub struct Running {
    health: Arc<Health>,
    tables: Arc<Tables>,
    thread: Option<JoinHandle<Result<()>>>,
    http: Option<SocketAddr>,
    brokers: String,
    stats: Option<Arc<CommitStats>>,
    runtime: tokio::runtime::Runtime,
    processes: usize,
    http_state: HttpState,
    agents: AgentsHandle,
    kafka: KafkaConfig,
    /// Whether the start installed the stop signals' handlers.
    signals: bool,
    _embedded: Option<EmbeddedBroker>,
    /// The error reporting client (`App::sentry_dsn`), last: it sends what the rest reported
    /// as the application stops.
    _reporting: Option<crate::report::Reporting>,
}

impl Running {
    /// The address the HTTP server listens on, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The HTTP API over this application's public tables, to serve in a program's own axum
    /// service: nest it under any prefix (`Router::new().nest("/faustus", running.router())`).
    /// It is the router the built-in server (`--http`) serves; with `--http off` it is the only
    /// way to reach the tables. See `examples/embed.rs`.
    pub fn router(&self) -> axum::Router {
        router(self.http_state.clone())
    }

    /// The bootstrap servers in use (the embedded broker's, when it runs).
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// How this process restored its tables from their changelogs: records read and keys
    /// restored per changelog, and whether the restore is complete (every table whole, the
    /// restore epoch through the dataflow). Lets a program (or a benchmark) wait for, and time,
    /// the restore after a start.
    pub fn restore_report(&self) -> RestoreReport {
        self.health.restore_report()
    }

    /// True once every table of this process is restored (the restore epoch has passed through
    /// the whole dataflow, and every public table's read copy holds it) and the application
    /// runs: its tables answer with their contents. False while it restores, and again once it
    /// stops or fails.
    pub fn is_ready(&self) -> bool {
        self.health.is_ready(&self.tables.states(&self.health))
    }

    /// Waits until the application is ready ([`Running::is_ready`]), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] when the deadline passes, with what is still restoring;
    /// [`Error::Runtime`] when the application fails or stops first.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let tables = self.tables.states(&self.health);
            if self.health.is_ready(&tables) {
                return Ok(());
            }
            if let Some(fatal) = self.health.fatal() {
                return Err(Error::Runtime(fatal));
            }
            if self.health.stopping() {
                return Err(Error::Runtime(
                    "the application stopped before it was ready".into(),
                ));
            }
            if std::time::Instant::now() >= deadline {
                let state = self.health.process_state(&tables);
                return Err(Error::NotReady(format!(
                    "after {timeout:?}, {}",
                    state.describe("the application")
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Where public table `name` stands on this process (`None`: no public table of that name).
    pub fn table_state(&self, name: &str) -> Option<TableState> {
        self.tables.get(name).map(|t| t.state(&self.health))
    }

    /// A typed reader of public table `name` on this process: [`TableReader::get`] tells a key
    /// that is absent from a table that is not restored yet.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when there is no public table `name`, or its keys and values are not
    /// `K` and `V` (a windowed table's keys are `(K, Window)`).
    pub fn table<K: Data, V: Data>(&self, name: &str) -> Result<TableReader<K, V>> {
        TableReader::new(name, &self.tables, Arc::clone(&self.health))
    }

    /// An async handle on public table `name` that reads any key, from whichever process keeps
    /// it (see [`TableHandle`]).
    pub fn table_handle<K: Data, V: Data>(&self, name: &str) -> Result<TableHandle<K, V>> {
        Ok(TableHandle::new(self.table(name)?, self.http_state.clone()))
    }

    /// The committer's statistics (in process 0).
    pub fn commit_stats(&self) -> Option<Arc<CommitStats>> {
        self.stats.clone()
    }

    /// The flag that stops the application when set.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(self.health.stop_flag())
    }

    /// Asks the application to stop: sources stop reading, and the epochs in flight drain.
    pub fn stop(&self) {
        self.health.stop_flag().store(true, Ordering::Relaxed);
    }

    /// True once the application has stopped (after [`Running::stop`] or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished()) && self.agents.all_finished()
    }

    /// A producer for typed sends to this application's brokers (the embedded one too), with
    /// its client settings (see [`crate::producer`]).
    pub fn producer(&self) -> Result<crate::Producer> {
        crate::Producer::with_config(&self.kafka)
    }

    /// How this application's clients reach Kafka: its brokers and client properties (security
    /// settings included), for a program's own Kafka clients beside it.
    pub fn kafka_config(&self) -> &KafkaConfig {
        &self.kafka
    }

    /// What each agent of this process is doing: its partitions, in-flight events, positions
    /// and counts (see [`crate::agent`]).
    pub fn agents(&self) -> Vec<AgentStatus> {
        self.agents.statuses()
    }

    /// The application's workflows: ask agents, start chains and chords (see
    /// [`crate::workflow`]).
    pub fn workflows(&self) -> Result<crate::workflow::Workflows> {
        crate::workflow::from_cell(&self.http_state.workflows)
    }

    /// Waits until the application has stopped, and returns why it stopped if it failed (and
    /// reports that error to Sentry, with [`App::sentry_dsn`]).
    pub fn join(mut self) -> Result<()> {
        let outcome = self.wait();
        if let Err(e) = &outcome {
            crate::report::error(e);
        }
        outcome
    }

    fn wait(&mut self) -> Result<()> {
        let outcome = match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(Error::Runtime("a worker panicked".into()))),
            None => Ok(()),
        };
        // The agents saw the stop flag too (a stop, or a fatal error, sets it); their failures
        // are already in the fatal error.
        let _ = self.agents.join();
        let fatal = self.health.take_fatal();
        match (outcome, fatal) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(message)) => Err(Error::Runtime(message)),
            (Ok(()), None) => Ok(()),
        }
    }

    /// Waits for Ctrl-C or SIGTERM, then stops cleanly (sources stop, the epochs in flight drain
    /// and commit) and returns. Any panic from then on ends the process: recovery on restart
    /// never depends on a clean stop.
    pub fn run_until_signal(self) -> Result<()> {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(peer) = lost_peer(info) {
                // timely's connection threads panic when another process of the cluster goes
                // away: say so plainly, and end with a code a supervisor can act on.
                eprintln!(
                    "error: the connection to process {peer} of this cluster was lost ({}): that process stopped or crashed. A cluster runs whole, so this process stops too (exit code {EXIT_PEER_LOST}); restart every process of the cluster.",
                    crate::agent::panic_payload_text(info.payload())
                );
                std::process::exit(EXIT_PEER_LOST);
            }
            default_hook(info);
            // A panic in async code (an agent's handler, an HTTP request) ends its task, and the
            // task's owner handles it: an agent retries the event, then dead-letters it. So does
            // one in a handler's first poll, on the agent's consumer thread.
            if std::thread::current().name() != Some(ASYNC_THREAD)
                && !crate::agent::polling_handler()
                && !crate::poison::catching()
            {
                std::process::abort();
            }
        }));
        if !self.signals {
            stop_on_signal(&self.runtime, self.stop_flag());
        }
        // A fatal error stops this process's sources, but the other processes of a cluster
        // would wait for them forever: give the drain a moment, then end the process, so that
        // the others fail too (their connections to it drop) and everything restarts cleanly.
        if self.processes > 1 {
            let health = Arc::clone(&self.health);
            std::thread::spawn(move || loop {
                std::thread::sleep(FATAL_POLL);
                if let Some(message) = health.fatal() {
                    std::thread::sleep(FATAL_EXIT_DELAY);
                    eprintln!("error: {message}");
                    std::process::exit(1);
                }
            });
        }
        let stats = self.commit_stats();
        let outcome = self.join();
        if let (Ok(()), Some(stats)) = (&outcome, stats) {
            log::info!(
                "stopped cleanly after committing epoch {}",
                stats.committed_epoch()
            );
        }
        outcome
    }

    /// Stops the application and waits for it.
    pub fn shutdown(self) -> Result<()> {
        self.stop();
        self.join()
    }
}

impl Drop for Running {
    /// A running application that goes out of scope is stopped and waited for.
    fn drop(&mut self) {
        if self.thread.is_some() || !self.agents.all_finished() {
            self.stop();
            if let Err(e) = self.wait() {
                log::error!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    /// Starts a program whose dataflow `build` makes; the error `App::start` gives.
    fn start_error<F>(build: F) -> String
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        match App::new("plan-errors").http(None).start(build) {
            Err(Error::Config(message)) => message,
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("the program started"),
        }
    }

    #[test]
    fn bad_table_names_are_configuration_errors_not_panics() {
        let orders = Topic::<String, i64>::new("orders").key_codec(Str);
        let o = orders.clone();
        let message = start_error(move |df| {
            df.stream(&o).count("totals");
            df.stream(&o).count("totals");
        });
        assert!(
            message.contains("two tables are named `totals`"),
            "{message}"
        );
        let o = orders.clone();
        let message = start_error(move |df| {
            df.stream(&o).count("no spaces/allowed");
        });
        assert!(message.contains("`no spaces/allowed`"), "{message}");
        // Two joins of the same tables: the second one is renamed, or it is an error.
        let o = orders.clone();
        let message = start_error(move |df| {
            let a = df.stream(&o).count("a");
            let b = df.stream(&o).sum("b");
            a.join(&b).public();
            a.join(&b).public();
        });
        assert!(message.contains("`a-join-b`"), "{message}");
        assert!(message.contains("Table::named"), "{message}");
        let message = start_error(move |df| {
            let a = df.stream(&orders).count("a");
            a.clone().named("renamed");
            let b = df.stream(&orders).sum("b");
            a.join(&b).public();
            a.join(&b).named("a-join-b-again").public();
            df.stream(&orders).count("bad name");
        });
        assert!(message.contains("has a changelog"), "{message}");
        assert!(!message.contains("a-join-b`"), "{message}");
    }

    #[test]
    fn replication_defaults_to_three_replicas_and_two_in_sync_at_most_the_brokers() {
        let config = AppConfig::new("x");
        let defaults: Vec<_> = [1, 2, 3, 5]
            .iter()
            .map(|&brokers| replication(&config, brokers).unwrap())
            .collect();
        assert_eq!(defaults, vec![(1, 1), (2, 2), (3, 2), (3, 2)]);
        let mut config = AppConfig::new("x");
        config.replication_factor = Some(5);
        assert_eq!(replication(&config, 1).unwrap(), (5, 2));
        config.min_insync_replicas = Some(4);
        assert_eq!(replication(&config, 1).unwrap(), (5, 4));
        config.replication_factor = None;
        let err = replication(&config, 1).unwrap_err().to_string();
        assert!(err.contains("more than the replication factor 1"), "{err}");
    }

    #[test]
    fn a_kafka_config_file_in_code_sets_properties_and_the_brokers() {
        let path = std::env::temp_dir().join(format!(
            "faustus-app-test-{}.properties",
            std::process::id()
        ));
        std::fs::write(&path, "bootstrap.servers=b:9093\nsecurity.protocol=SSL\n").unwrap();
        let app = App::new("x")
            .kafka_config_file(&path)
            .unwrap()
            .producer_setting("linger.ms", "20");
        let _ = std::fs::remove_file(&path);
        let config = app.config();
        assert_eq!(config.brokers.as_deref(), Some("b:9093"));
        assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(
            config.kafka_properties.get("security.protocol"),
            Some("SSL")
        );
        assert_eq!(
            config.kafka_properties.get("producer.linger.ms"),
            Some("20")
        );
        let missing = App::new("x")
            .kafka_config_file(&path)
            .unwrap_err()
            .to_string();
        assert!(missing.contains(&path.display().to_string()), "{missing}");
    }

    #[test]
    fn bad_agents_are_configuration_errors_that_say_what_to_fix() {
        use crate::agent::{Agent, Event};
        let orders = Topic::<String, i64>::new("orders");
        let handler = |_: Event<String, i64>| async { Ok(()) };
        let error = |app: App| match app.http(None).start(|_| {}) {
            Err(Error::Config(message)) => message,
            Err(other) => panic!("not a configuration error: {other}"),
            Ok(_) => panic!("the program started"),
        };
        let message = error(
            App::new("bad-agents")
                .agent(Agent::new("a", &orders).concurrency(0).handler(handler))
                .agent(Agent::new("b", &orders))
                .agent(Agent::new("c", &orders).handler(handler))
                .agent(Agent::new("c", &orders).handler(handler))
                .agent(Agent::new("no spaces", &orders).handler(handler)),
        );
        for wanted in [
            "agent `a`: concurrency must be 1 to 10000, not 0",
            "agent `b` has no code",
            "two agents are named `c`",
            "agent name `no spaces`",
        ] {
            assert!(message.contains(wanted), "no `{wanted}` in: {message}");
        }
    }
}
