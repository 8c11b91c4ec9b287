//! Application configuration: from code, from command-line flags, or from the environment.

use std::net::SocketAddr;
use std::time::Duration;

pub use faustus_connectors::Guarantee;
use faustus_connectors::{KafkaConfig, KafkaProperties, Origin};

use crate::error::{Error, Result};

/// The default epoch length ([`AppConfig::commit_interval`]).
pub(crate) const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Command-line flags (each also read from a `FAUSTUS_*` environment variable) that configure an
/// application. Flatten them into a program's own flags with `#[command(flatten)]`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AppArgs {
    /// Application id: names the progress, changelog and dead-letter topics and the
    /// transactional id. Defaults to the id the program gives.
    #[arg(global = true, long, env = "FAUSTUS_APP_ID")]
    pub app_id: Option<String>,
    /// Kafka bootstrap servers (`host:port,...`). Without it, an embedded in-process broker is
    /// started (demos only: at-least-once).
    #[arg(global = true, long, env = "FAUSTUS_BROKERS")]
    pub brokers: Option<String>,
    /// Worker threads in this process.
    #[arg(global = true, long, env = "FAUSTUS_WORKERS")]
    pub workers: Option<usize>,
    /// Processes in the cluster.
    #[arg(global = true, long, env = "FAUSTUS_PROCESSES")]
    pub processes: Option<usize>,
    /// This process's index in `--hosts`, from 0.
    #[arg(global = true, long, env = "FAUSTUS_PROCESS_ID")]
    pub process_id: Option<usize>,
    /// Dataflow addresses of all processes (`host:port,...`), one per process, in order.
    #[arg(global = true, long, env = "FAUSTUS_HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// HTTP address to serve tables on (`off` disables the server).
    #[arg(global = true, long, env = "FAUSTUS_HTTP")]
    pub http: Option<String>,
    /// HTTP addresses of all processes (`host:port` or a base URL like
    /// `http://host:port/prefix`), one per process, in process-id order: where a process forwards
    /// requests for keys another process owns, and asks for the parts of a listing it does not
    /// hold.
    #[arg(global = true, long, env = "FAUSTUS_HTTP_PEERS", value_delimiter = ',')]
    pub http_peers: Vec<String>,
    /// Commit interval in milliseconds: the longest an epoch lasts.
    #[arg(global = true, long, env = "FAUSTUS_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
    /// The shortest epoch in milliseconds, when input is sparse and everything before has been
    /// committed (default: a tenth of the commit interval; the commit interval itself gives
    /// epochs of a fixed length).
    #[arg(global = true, long, env = "FAUSTUS_MIN_EPOCH_MS")]
    pub min_epoch_ms: Option<u64>,
    /// Processing guarantee: `exactly_once` (the default with a real broker) or
    /// `at_least_once`.
    #[arg(global = true, long, env = "FAUSTUS_GUARANTEE")]
    pub guarantee: Option<Guarantee>,
    /// Partitions for topics faustus creates (changelogs, and declared topics without a count).
    #[arg(global = true, long, env = "FAUSTUS_PARTITIONS")]
    pub partitions: Option<i32>,
    /// How long a Kafka transaction may stay open before the broker aborts it, in milliseconds
    /// (default 60000; at most the broker's `transaction.max.timeout.ms`, 900000 by default).
    #[arg(global = true, long, env = "FAUSTUS_TRANSACTION_TIMEOUT_MS")]
    pub transaction_timeout_ms: Option<u64>,
    /// How long one step of a commit may block, in milliseconds (default 120000): committing or
    /// aborting a transaction, flushing an epoch's outputs; and how long start-up keeps trying
    /// to fence a previous instance while the broker cannot be reached.
    #[arg(global = true, long, env = "FAUSTUS_COMMIT_TIMEOUT_MS")]
    pub commit_timeout_ms: Option<u64>,
    /// How long start-up may take to read a changelog, or the progress topic, to its end, in
    /// milliseconds (default 300000). Must exceed the transaction timeout.
    #[arg(global = true, long, env = "FAUSTUS_RESTORE_TIMEOUT_MS")]
    pub restore_timeout_ms: Option<u64>,
    /// How long one Kafka metadata or admin request may take, in milliseconds (default 30000):
    /// looking topics up, creating them, asking where partitions end.
    #[arg(global = true, long, env = "FAUSTUS_KAFKA_REQUEST_TIMEOUT_MS")]
    pub kafka_request_timeout_ms: Option<u64>,
    /// How long connecting to another process's HTTP API may take, in milliseconds (default
    /// 2000).
    #[arg(global = true, long, env = "FAUSTUS_HTTP_PEER_CONNECT_TIMEOUT_MS")]
    pub http_peer_connect_timeout_ms: Option<u64>,
    /// How long a request to another process's HTTP API may take in all, in milliseconds
    /// (default 10000); a peer that does not answer in time makes the answer 503.
    #[arg(global = true, long, env = "FAUSTUS_HTTP_PEER_TIMEOUT_MS")]
    pub http_peer_timeout_ms: Option<u64>,
    /// How logs are printed: `text` (the default) or `json` (one object per line, with the
    /// current span's fields). `RUST_LOG` filters either. See `faustus::logging`.
    #[arg(global = true, long, env = "FAUSTUS_LOG_FORMAT")]
    pub log_format: Option<crate::logging::LogFormat>,
    /// A Kafka client properties file (the format of Kafka's `client.properties`) with
    /// librdkafka properties for every client faustus makes, e.g. `security.protocol`,
    /// `sasl.username`, `ssl.ca.location`; keys prefixed `consumer.` or `producer.` apply to
    /// those clients only; `bootstrap.servers` gives the brokers when `--brokers` does not.
    /// `FAUSTUS_KAFKA_PROPERTY_<NAME>` environment variables (`SASL_MECHANISM` for
    /// `sasl.mechanism`) override the file, and `--kafka-property` overrides both.
    #[arg(global = true, long, env = "FAUSTUS_KAFKA_CONFIG", value_name = "FILE")]
    pub kafka_config: Option<std::path::PathBuf>,
    /// One librdkafka property, `KEY=VALUE` (repeat the flag for more), as in `--kafka-config`.
    #[arg(global = true, long, value_name = "KEY=VALUE")]
    pub kafka_property: Vec<String>,
    /// Replicas of each partition of the topics faustus creates (changelogs, progress, dead
    /// letters, outputs). Default: 3, or the number of brokers in the cluster if that is less.
    #[arg(global = true, long, env = "FAUSTUS_REPLICATION_FACTOR")]
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` of the topics faustus creates: replicas that must have a write
    /// before it counts. Default: 2, or the replication factor if that is less.
    #[arg(global = true, long, env = "FAUSTUS_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i32>,
    /// What a panic in one of the program's functions (a `map`, `filter`, `fold`... closure)
    /// does for the record it ran on: `dead_letter` (the default: the record goes to the
    /// dead-letter topic with the panic's message, and the application goes on) or `stop` (the
    /// application stops without committing that record's epoch).
    #[arg(global = true, long, env = "FAUSTUS_ON_PANIC")]
    pub on_panic: Option<crate::poison::OnPanic>,
    /// How often the dataflow's input topics are checked for added partitions, in milliseconds
    /// (default 30000). A dataflow reads the partitions its inputs had when it started: when one
    /// gains partitions, the application stops (its epochs in flight commit) with an error
    /// saying so, and a restart reads the new partitions from their beginning.
    #[arg(global = true, long, env = "FAUSTUS_PARTITION_CHECK_INTERVAL_MS")]
    pub partition_check_interval_ms: Option<u64>,
    /// How many bytes of input the dataflow may hold before it is committed, and how many bytes
    /// of output may wait for their commit (default 67108864, 64 MiB, for each). When commits
    /// fall behind (a slow broker), sources stop reading until they catch up, so memory stays
    /// bounded instead of growing with the backlog.
    #[arg(global = true, long, env = "FAUSTUS_MAX_UNCOMMITTED_BYTES")]
    pub max_uncommitted_bytes: Option<u64>,
    /// Where tables are checkpointed on local disk, so that a restart reads them back instead of
    /// replaying their changelogs (default: `faustus` in the system's temporary directory; each
    /// application uses its own directory in it). `off` turns checkpoints off. A process of a
    /// multi-process cluster keeps none. A directory given here that cannot be made stops the
    /// start; the default one only turns checkpoints off.
    #[arg(global = true, long, env = "FAUSTUS_STATE_DIR", value_name = "DIR|off")]
    pub state_dir: Option<std::path::PathBuf>,
    /// The sensors: hop latency, records per operator and end-to-end latency in `/metrics`
    /// (`on`, the default, or `off`).
    #[arg(global = true, long, env = "FAUSTUS_SENSORS", value_name = "on|off",
        value_parser = clap::builder::BoolishValueParser::new())]
    pub sensors: Option<bool>,
    /// Report panics and the error the application stops with to Sentry, at this DSN (from the
    /// Sentry project's settings, `https://<key>@<host>/<project>`). Needs faustus' cargo
    /// feature `sentry`.
    #[arg(global = true, long, env = "FAUSTUS_SENTRY_DSN", value_name = "DSN")]
    pub sentry_dsn: Option<String>,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Application id.
    pub app_id: String,
    /// Bootstrap servers; `None` runs the embedded broker.
    pub brokers: Option<String>,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// This process's index.
    pub process_id: usize,
    /// Dataflow addresses of the processes.
    pub hosts: Vec<String>,
    /// HTTP address, or `None` for no server.
    pub http: Option<SocketAddr>,
    /// Base URLs of every process's HTTP API, in process-id order (empty: none configured).
    pub http_peers: Vec<String>,
    /// The longest an epoch lasts.
    pub commit_interval: Duration,
    /// The shortest an epoch lasts: an epoch closes this early when input is sparse and every
    /// earlier epoch has reached the committer (`None`: a tenth of the commit interval). Equal
    /// to the commit interval, every epoch lasts the commit interval.
    pub min_epoch: Option<Duration>,
    /// Guarantee.
    pub guarantee: Guarantee,
    /// Partitions for created topics.
    pub partitions: i32,
    /// librdkafka properties for the clients faustus creates, over faustus' own defaults: for
    /// every client, or (`consumer.`/`producer.` prefixed) for consumers or producers only (see
    /// [`crate::App::kafka_property`] and `--kafka-config`). Secrets never show in `Debug`.
    pub kafka_properties: KafkaProperties,
    /// Replicas of each partition of the topics faustus creates; `None`: 3, or the number of
    /// brokers in the cluster if that is less.
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` of the topics faustus creates; `None`: 2, or the replication
    /// factor if that is less.
    pub min_insync_replicas: Option<i32>,
    /// What a panic in one of the program's functions, for one record, does (default: the
    /// record becomes a dead letter; see [`crate::poison`]).
    pub on_panic: crate::poison::OnPanic,
    /// How often the dataflow's input topics are checked for added partitions (default 30 s);
    /// see [`AppArgs::partition_check_interval_ms`].
    pub partition_check_interval: Duration,
    /// How many bytes of input the dataflow may hold before it is committed, and of output may
    /// wait for their commit (default 64 MiB each); see
    /// [`AppArgs::max_uncommitted_bytes`].
    pub max_uncommitted_bytes: u64,
    /// How long a Kafka transaction may stay open before the broker aborts it
    /// (`transaction.timeout.ms`; default 60 s). A commit that takes longer (say, while the
    /// broker restarts) is redone with a new producer. Between 1 s (librdkafka's minimum) and
    /// 15 min (the brokers' default `transaction.max.timeout.ms`; a broker refuses more).
    pub transaction_timeout: Duration,
    /// How long one blocking step of a commit may take before it counts as failed and is
    /// retried (default 120 s): committing or aborting a transaction, flushing an epoch's
    /// outputs under at-least-once. At start, fencing a previous instance is retried for this
    /// long while the broker cannot be reached; then start-up fails.
    pub commit_timeout: Duration,
    /// How long start-up may take to read a changelog (each worker its partitions) or the
    /// progress topic to its end (default 300 s); then the application fails. A transaction that
    /// a crashed instance left open holds the reader back until the broker aborts it, so it
    /// must exceed [`AppConfig::transaction_timeout`].
    pub restore_timeout: Duration,
    /// How long one Kafka metadata or admin request may take (default 30 s): looking topics up,
    /// creating them and waiting for them to appear, asking where partitions end.
    pub kafka_request_timeout: Duration,
    /// How long connecting to another process's HTTP API may take (default 2 s).
    pub http_peer_connect_timeout: Duration,
    /// How long a request to another process's HTTP API may take in all, connecting included
    /// (default 10 s); a peer that does not answer in time makes the answer 503.
    pub http_peer_timeout: Duration,
    /// Where tables are checkpointed on local disk (see [`AppArgs::state_dir`]); `None`: no
    /// checkpoints, every restart replays the changelogs.
    pub state_dir: Option<std::path::PathBuf>,
    /// Whether the sensors are on (default: on): hop latency, records per operator and
    /// end-to-end latency in `/metrics`; see [`AppArgs::sensors`].
    pub sensors: bool,
    /// Where panics and the error the application stops with are reported (a Sentry DSN;
    /// default: nowhere); see [`AppArgs::sentry_dsn`].
    pub sentry_dsn: Option<String>,
}

/// One millisecond: the shortest timeout that is not "none".
const MILLISECOND: Duration = Duration::from_millis(1);
/// The smallest `--max-uncommitted-bytes`: 1 MiB.
const MIN_UNCOMMITTED_BYTES: u64 = 1 << 20;
/// One minute.
const MINUTE: Duration = Duration::from_secs(60);
/// One hour.
const HOUR: Duration = Duration::from_secs(3600);

/// Where tables are checkpointed unless configured otherwise: `faustus` in the system's
/// temporary directory.
pub(crate) fn default_state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("faustus")
}

impl AppConfig {
    /// The shortest an epoch lasts: [`AppConfig::min_epoch`], or a tenth of the commit interval.
    pub fn shortest_epoch(&self) -> Duration {
        self.min_epoch
            .unwrap_or(self.commit_interval / crate::runtime::MIN_EPOCH_DIVISOR)
    }

    /// Defaults for an application id: embedded broker, one worker, one process, HTTP on
    /// 127.0.0.1:6066, epochs of 10 to 100 ms, 4 partitions; the timeouts as each field says.
    pub fn new(app_id: impl Into<String>) -> Self {
        AppConfig {
            app_id: app_id.into(),
            brokers: None,
            workers: 1,
            processes: 1,
            process_id: 0,
            hosts: Vec::new(),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 6066))),
            http_peers: Vec::new(),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            min_epoch: None,
            guarantee: Guarantee::AtLeastOnce,
            partitions: 4,
            kafka_properties: KafkaProperties::new(),
            replication_factor: None,
            min_insync_replicas: None,
            on_panic: crate::poison::OnPanic::DeadLetter,
            partition_check_interval: Duration::from_secs(30),
            max_uncommitted_bytes: 64 << 20,
            transaction_timeout: Duration::from_secs(60),
            commit_timeout: Duration::from_secs(120),
            restore_timeout: Duration::from_secs(300),
            kafka_request_timeout: KafkaConfig::DEFAULT_REQUEST_TIMEOUT,
            http_peer_connect_timeout: Duration::from_secs(2),
            http_peer_timeout: Duration::from_secs(10),
            state_dir: Some(default_state_dir()),
            sensors: true,
            sentry_dsn: None,
        }
    }

    /// Applies flags over this configuration and validates the result.
    pub fn with_args(mut self, args: &AppArgs) -> Result<Self> {
        let explicit_guarantee = args.guarantee;
        if let Some(id) = &args.app_id {
            self.app_id = id.clone();
        }
        if args.brokers.is_some() {
            self.brokers = args.brokers.clone();
        }
        self.read_kafka_properties(args)?;
        if let Some(rf) = args.replication_factor {
            self.replication_factor = Some(rf);
        }
        if let Some(min) = args.min_insync_replicas {
            self.min_insync_replicas = Some(min);
        }
        self.on_panic = args.on_panic.unwrap_or(self.on_panic);
        self.sensors = args.sensors.unwrap_or(self.sensors);
        match &args.state_dir {
            Some(dir) if dir.as_os_str() == "off" => self.state_dir = None,
            Some(dir) => self.state_dir = Some(dir.clone()),
            None => {}
        }
        if args.sentry_dsn.is_some() {
            self.sentry_dsn = args.sentry_dsn.clone();
        }
        self.max_uncommitted_bytes = args
            .max_uncommitted_bytes
            .unwrap_or(self.max_uncommitted_bytes);
        self.workers = args.workers.unwrap_or(self.workers);
        self.processes = args.processes.unwrap_or(self.processes);
        self.process_id = args.process_id.unwrap_or(self.process_id);
        if !args.hosts.is_empty() {
            self.hosts = args.hosts.clone();
        }
        if let Some(http) = &args.http {
            self.http = parse_http(http)?;
        }
        if !args.http_peers.is_empty() {
            self.http_peers = args.http_peers.clone();
        }
        if let Some(ms) = args.commit_interval_ms {
            self.commit_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = args.min_epoch_ms {
            self.min_epoch = Some(Duration::from_millis(ms));
        }
        self.partitions = args.partitions.unwrap_or(self.partitions);
        let millis = |ms: Option<u64>, default: Duration| ms.map_or(default, Duration::from_millis);
        self.transaction_timeout = millis(args.transaction_timeout_ms, self.transaction_timeout);
        self.commit_timeout = millis(args.commit_timeout_ms, self.commit_timeout);
        self.restore_timeout = millis(args.restore_timeout_ms, self.restore_timeout);
        self.kafka_request_timeout =
            millis(args.kafka_request_timeout_ms, self.kafka_request_timeout);
        self.http_peer_connect_timeout = millis(
            args.http_peer_connect_timeout_ms,
            self.http_peer_connect_timeout,
        );
        self.http_peer_timeout = millis(args.http_peer_timeout_ms, self.http_peer_timeout);
        self.partition_check_interval = millis(
            args.partition_check_interval_ms,
            self.partition_check_interval,
        );
        self.guarantee = match (explicit_guarantee, &self.brokers) {
            (Some(g), _) => g,
            (None, Some(_)) => Guarantee::ExactlyOnce,
            (None, None) => Guarantee::AtLeastOnce,
        };
        self.validate()?;
        Ok(self)
    }

    /// Reads the Kafka client properties of `--kafka-config`, then of the environment
    /// (`FAUSTUS_KAFKA_PROPERTY_*`), then of `--kafka-property`, each over the ones before; the
    /// file's `bootstrap.servers` is taken as the brokers if none are given otherwise.
    fn read_kafka_properties(&mut self, args: &AppArgs) -> Result<()> {
        let config = |e: faustus_connectors::ConnectorError| Error::Config(e.to_string());
        let properties = &mut self.kafka_properties;
        if let Some(path) = &args.kafka_config {
            properties.read_file(path).map_err(config)?;
        }
        properties.read_env(std::env::vars_os()).map_err(config)?;
        for setting in &args.kafka_property {
            let Some((key, value)) = setting.split_once('=') else {
                return Err(Error::Config(format!(
                    "--kafka-property `{}` must be KEY=VALUE",
                    faustus_connectors::properties::shown(setting, setting)
                )));
            };
            properties.set_from(
                key.trim(),
                value.trim().to_string(),
                Origin::Flag("--kafka-property".into()),
            );
        }
        if let Some((brokers, origin)) = properties.take_bootstrap_servers() {
            match &self.brokers {
                None => self.brokers = Some(brokers),
                Some(given) if *given != brokers => log::info!(
                    "using the brokers {given}, not bootstrap.servers={brokers} ({origin})"
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the configuration; the error says what to fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.app_id.is_empty()
            || !self
                .app_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return bad(format!(
                "--app-id `{}` must be non-empty and use only letters, digits, `.`, `_` and `-` (it names Kafka topics)",
                self.app_id
            ));
        }
        crate::report::validate(self)?;
        if self.workers == 0 {
            return bad("--workers must be at least 1".into());
        }
        if self.processes == 0 {
            return bad("--processes must be at least 1".into());
        }
        if self.process_id >= self.processes {
            return bad(format!(
                "--process-id {} is out of range for --processes {} (ids start at 0)",
                self.process_id, self.processes
            ));
        }
        if self.processes > 1 && self.hosts.len() != self.processes {
            return bad(format!(
                "--hosts lists {} addresses but --processes is {}: give one `host:port` per process",
                self.hosts.len(),
                self.processes
            ));
        }
        if !self.http_peers.is_empty() && self.http_peers.len() != self.processes {
            return bad(format!(
                "--http-peers lists {} addresses but --processes is {}: give one HTTP `host:port` per process, in process-id order",
                self.http_peers.len(),
                self.processes
            ));
        }
        for peer in &self.http_peers {
            peer_url(peer).map_err(Error::Config)?;
        }
        if self.commit_interval.is_zero() {
            return bad("--commit-interval-ms must be at least 1".into());
        }
        match self.min_epoch {
            Some(min) if min.is_zero() => {
                return bad("--min-epoch-ms must be at least 1".into());
            }
            Some(min) if min > self.commit_interval => {
                return bad(format!(
                    "--min-epoch-ms ({} ms) must be at most --commit-interval-ms ({} ms): it is the shortest epoch, the commit interval the longest",
                    min.as_millis(),
                    self.commit_interval.as_millis()
                ));
            }
            _ => {}
        }
        if self.partitions < 1 {
            return bad("--partitions must be at least 1".into());
        }
        self.kafka_properties
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some(rf) = self.replication_factor {
            if !(1..=i16::MAX as i32).contains(&rf) {
                return bad(format!("--replication-factor must be at least 1, not {rf}"));
            }
        }
        if let Some(min) = self.min_insync_replicas {
            if !(1..=i16::MAX as i32).contains(&min) {
                return bad(format!(
                    "--min-insync-replicas must be at least 1, not {min}"
                ));
            }
            if let Some(rf) = self.replication_factor.filter(|rf| min > *rf) {
                return bad(format!(
                    "--min-insync-replicas {min} is more than --replication-factor {rf}: no write could ever succeed"
                ));
            }
        }
        if self.brokers.is_none() && self.guarantee == Guarantee::ExactlyOnce {
            return bad("exactly_once needs a real Kafka broker (--brokers): the embedded demo broker does not hide aborted transactions".into());
        }
        self.validate_timeouts()
    }

    /// Checks the timeouts: each within its bounds, and the ones that wait for another to pass
    /// longer than it.
    fn validate_timeouts(&self) -> Result<()> {
        // Each timeout, its flag, and its bounds: librdkafka refuses a transaction timeout under
        // 1 s, and brokers one over their `transaction.max.timeout.ms` (15 min unless raised); a
        // big changelog may take hours to read; an HTTP client waits minutes at most.
        let bounds = [
            (
                self.transaction_timeout,
                "--transaction-timeout-ms",
                Duration::from_secs(1),
                15 * MINUTE,
            ),
            (
                self.commit_timeout,
                "--commit-timeout-ms",
                MILLISECOND,
                HOUR,
            ),
            (
                self.restore_timeout,
                "--restore-timeout-ms",
                MILLISECOND,
                24 * HOUR,
            ),
            (
                self.kafka_request_timeout,
                "--kafka-request-timeout-ms",
                MILLISECOND,
                HOUR,
            ),
            (
                self.http_peer_connect_timeout,
                "--http-peer-connect-timeout-ms",
                MILLISECOND,
                10 * MINUTE,
            ),
            (
                self.http_peer_timeout,
                "--http-peer-timeout-ms",
                MILLISECOND,
                10 * MINUTE,
            ),
            (
                self.partition_check_interval,
                "--partition-check-interval-ms",
                MILLISECOND * 100,
                HOUR,
            ),
        ];
        for (value, flag, min, max) in bounds {
            if value < min || value > max {
                return Err(Error::Config(format!(
                    "{flag} must be between {} and {} (milliseconds), not {}",
                    min.as_millis(),
                    max.as_millis(),
                    value.as_millis()
                )));
            }
        }
        if self.max_uncommitted_bytes < MIN_UNCOMMITTED_BYTES {
            return Err(Error::Config(format!(
                "--max-uncommitted-bytes must be at least {MIN_UNCOMMITTED_BYTES} (1 MiB), not {}",
                self.max_uncommitted_bytes
            )));
        }
        if self.restore_timeout <= self.transaction_timeout {
            return Err(Error::Config(format!(
                "--restore-timeout-ms {} must exceed --transaction-timeout-ms {}: a transaction a crashed instance left open holds the restore back until the broker aborts it",
                self.restore_timeout.as_millis(),
                self.transaction_timeout.as_millis()
            )));
        }
        if self.http_peer_connect_timeout > self.http_peer_timeout {
            return Err(Error::Config(format!(
                "--http-peer-connect-timeout-ms {} must not exceed --http-peer-timeout-ms {} (the whole request, connecting included)",
                self.http_peer_connect_timeout.as_millis(),
                self.http_peer_timeout.as_millis()
            )));
        }
        Ok(())
    }
}

/// The base URL of a process's HTTP API from an `--http-peers` entry: `host:port` (meaning
/// `http://host:port`) or an `http://` URL, without a trailing slash.
pub(crate) fn peer_url(peer: &str) -> std::result::Result<String, String> {
    let url = if peer.contains("://") {
        peer.to_string()
    } else {
        format!("http://{peer}")
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--http-peers `{peer}`: only http:// addresses are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(format!(
            "--http-peers `{peer}` is not an address like 127.0.0.1:6066 (host and port)"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn parse_http(value: &str) -> Result<Option<SocketAddr>> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        Error::Config(format!(
            "--http `{value}` is not an address like 127.0.0.1:6066 (or `off`)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_are_on_unless_turned_off() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            app: AppArgs,
        }
        let sensors = |argv: &[&str]| {
            let cli = <Cli as clap::Parser>::try_parse_from(argv).expect("flags parse");
            AppConfig::new("x").with_args(&cli.app).unwrap().sensors
        };
        assert!(sensors(&["app"]));
        assert!(!sensors(&["app", "--sensors", "off"]));
        assert!(sensors(&["app", "--sensors", "on"]));
    }

    #[test]
    fn bad_flags_say_what_to_fix() {
        let args = AppArgs {
            process_id: Some(2),
            processes: Some(2),
            hosts: vec!["a:1".into(), "b:2".into()],
            ..AppArgs::default()
        };
        let err = AppConfig::new("x")
            .with_args(&args)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--process-id 2 is out of range"), "{err}");
        let args = AppArgs {
            guarantee: Some(Guarantee::ExactlyOnce),
            ..AppArgs::default()
        };
        let err = AppConfig::new("x")
            .with_args(&args)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a real Kafka broker"), "{err}");
        let args = AppArgs {
            http: Some("nope".into()),
            ..AppArgs::default()
        };
        assert!(AppConfig::new("x").with_args(&args).is_err());
    }

    /// The configuration error `args` give.
    fn config_error(args: &AppArgs) -> String {
        AppConfig::new("x").with_args(args).unwrap_err().to_string()
    }

    #[test]
    fn the_shortest_epoch_defaults_to_a_tenth_of_the_interval_and_may_not_exceed_it() {
        let args = AppArgs {
            commit_interval_ms: Some(250),
            ..AppArgs::default()
        };
        let config = AppConfig::new("x").with_args(&args).unwrap();
        assert_eq!(config.shortest_epoch(), Duration::from_millis(25));
        let args = AppArgs {
            commit_interval_ms: Some(250),
            min_epoch_ms: Some(250),
            ..AppArgs::default()
        };
        let config = AppConfig::new("x").with_args(&args).unwrap();
        assert_eq!(config.shortest_epoch(), Duration::from_millis(250));
        let err = config_error(&AppArgs {
            min_epoch_ms: Some(101),
            ..AppArgs::default()
        });
        assert!(
            err.contains("--min-epoch-ms (101 ms) must be at most --commit-interval-ms (100 ms)"),
            "{err}"
        );
        let err = config_error(&AppArgs {
            min_epoch_ms: Some(0),
            ..AppArgs::default()
        });
        assert!(err.contains("--min-epoch-ms must be at least 1"), "{err}");
    }

    #[test]
    fn kafka_properties_come_from_the_file_then_the_flags_and_may_give_the_brokers() {
        let path = std::env::temp_dir().join(format!(
            "faustus-config-test-{}.properties",
            std::process::id()
        ));
        std::fs::write(
            &path,
            "bootstrap.servers=b:9093\nsecurity.protocol=SASL_SSL\nsasl.password=hunter2\n\
             producer.linger.ms=7\nclient.id=from-the-file\n",
        )
        .unwrap();
        let args = AppArgs {
            kafka_config: Some(path.clone()),
            kafka_property: vec!["client.id=from-the-flag".into()],
            ..AppArgs::default()
        };
        let config = AppConfig::new("x").with_args(&args).unwrap();
        assert_eq!(config.brokers.as_deref(), Some("b:9093"));
        assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
        let properties = &config.kafka_properties;
        assert_eq!(properties.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(properties.get("producer.linger.ms"), Some("7"));
        assert_eq!(properties.get("client.id"), Some("from-the-flag"));
        assert_eq!(properties.get("bootstrap.servers"), None);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");

        // --brokers wins over the file's bootstrap.servers.
        let args = AppArgs {
            brokers: Some("a:9092".into()),
            kafka_config: Some(path.clone()),
            ..AppArgs::default()
        };
        let config = AppConfig::new("x").with_args(&args).unwrap();
        assert_eq!(config.brokers.as_deref(), Some("a:9092"));

        for (setting, wanted) in [
            ("enable.auto.commit=true", "faustus sets it itself"),
            (
                "no.such.property=1",
                "`no.such.property` (flag --kafka-property)",
            ),
            ("sasl.password", "must be KEY=VALUE"),
        ] {
            let args = AppArgs {
                brokers: Some("a:9092".into()),
                kafka_property: vec![setting.into()],
                ..AppArgs::default()
            };
            let err = config_error(&args);
            assert!(err.contains(wanted), "{setting}: {err}");
        }
        std::fs::write(
            &path,
            "security.protocol=SASL_SSL\nsasl.mechanisms.typo=PLAIN\n",
        )
        .unwrap();
        let args = AppArgs {
            brokers: Some("a:9092".into()),
            kafka_config: Some(path.clone()),
            ..AppArgs::default()
        };
        let err = config_error(&args);
        assert!(
            err.contains("`sasl.mechanisms.typo`")
                && err.contains(&path.display().to_string())
                && err.contains("line 2"),
            "{err}"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn replication_settings_are_checked() {
        let args = AppArgs {
            replication_factor: Some(2),
            min_insync_replicas: Some(3),
            ..AppArgs::default()
        };
        let err = config_error(&args);
        assert!(
            err.contains("--min-insync-replicas 3 is more than --replication-factor 2"),
            "{err}"
        );
        let args = AppArgs {
            replication_factor: Some(0),
            ..AppArgs::default()
        };
        let err = config_error(&args);
        assert!(
            err.contains("--replication-factor must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn http_peers_need_one_address_per_process() {
        let args = AppArgs {
            processes: Some(2),
            hosts: vec!["a:1".into(), "b:2".into()],
            http_peers: vec!["127.0.0.1:8001".into()],
            ..AppArgs::default()
        };
        let error = |args: &AppArgs| match AppConfig::new("x").with_args(args) {
            Ok(_) => panic!("{args:?} is accepted"),
            Err(e) => e.to_string(),
        };
        let err = error(&args);
        assert!(err.contains("--http-peers lists 1 addresses"), "{err}");
        let err = error(&AppArgs {
            http_peers: vec!["no-port".into()],
            ..AppArgs::default()
        });
        assert!(err.contains("`no-port` is not an address"), "{err}");
        assert_eq!(
            peer_url("http://h:1/embedded/").unwrap(),
            "http://h:1/embedded"
        );
        assert_eq!(peer_url("h:1").unwrap(), "http://h:1");
    }

    #[test]
    fn bad_timeouts_say_what_to_fix() {
        let cases = [
            (
                AppArgs {
                    transaction_timeout_ms: Some(0),
                    ..AppArgs::default()
                },
                "--transaction-timeout-ms must be between 1000 and 900000",
            ),
            (
                AppArgs {
                    commit_timeout_ms: Some(0),
                    ..AppArgs::default()
                },
                "--commit-timeout-ms must be between 1 and",
            ),
            (
                AppArgs {
                    http_peer_timeout_ms: Some(u64::MAX),
                    ..AppArgs::default()
                },
                "--http-peer-timeout-ms must be between",
            ),
            (
                AppArgs {
                    restore_timeout_ms: Some(30_000),
                    ..AppArgs::default()
                },
                "must exceed --transaction-timeout-ms 60000",
            ),
            (
                AppArgs {
                    http_peer_connect_timeout_ms: Some(20_000),
                    ..AppArgs::default()
                },
                "must not exceed --http-peer-timeout-ms",
            ),
        ];
        for (args, expected) in cases {
            match AppConfig::new("x").with_args(&args) {
                Ok(_) => panic!("{args:?} is accepted"),
                Err(e) => assert!(e.to_string().contains(expected), "{e}"),
            }
        }
        let config = AppConfig::new("x")
            .with_args(&AppArgs {
                transaction_timeout_ms: Some(5_000),
                restore_timeout_ms: Some(6_000),
                kafka_request_timeout_ms: Some(7_000),
                ..AppArgs::default()
            })
            .unwrap();
        assert_eq!(config.transaction_timeout, Duration::from_secs(5));
        assert_eq!(config.restore_timeout, Duration::from_secs(6));
        assert_eq!(config.kafka_request_timeout, Duration::from_secs(7));
        assert_eq!(config.commit_timeout, Duration::from_secs(120));
    }

    #[test]
    fn a_real_broker_defaults_to_exactly_once() {
        let args = AppArgs {
            brokers: Some("127.0.0.1:9092".into()),
            ..AppArgs::default()
        };
        let config = AppConfig::new("x").with_args(&args).unwrap();
        assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
        let config = AppConfig::new("x").with_args(&AppArgs::default()).unwrap();
        assert_eq!(config.guarantee, Guarantee::AtLeastOnce);
    }
}
