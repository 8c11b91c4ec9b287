//! Metrics: what `GET /metrics` serves, in Prometheus' text format.
//!
//! Every application has its own metrics: a `prometheus` registry and the families below,
//! with no process-global state, so several applications in one process (tests, a program that
//! runs two) each report their own. Families are named `faustus_<what>_<unit>` after
//! Prometheus' conventions: counters end in `_total`, durations are in seconds.
//!
//! Two kinds of values:
//! - **counted where they happen**, in batches: a source adds the records of one poll per
//!   partition, the commit sink the dead letters of one epoch, the committer one commit's
//!   records per topic. No lock and no label lookup per record: each source keeps the counter
//!   of each of its partitions.
//! - **read when scraped**: lag (it needs each partition's high
//!   watermark from Kafka), restore progress, table sizes and agents come from the state the
//!   HTTP API already serves, copied into gauges and counters just before the registry is
//!   encoded.
//!
//! - **sensed on the way**, per batch: the hop latency of every exchange between workers (a
//!   timely message as it arrives, see [`faustus_operators::sensor`]), of every input topic (a
//!   poll's oldest record timestamp) and of every agent hand-off, the records each operator
//!   takes in, and each commit's end-to-end latency. `--sensors off` turns them all off.
//!
//! The reference of every family is [`FAMILIES`], checked against what the registry holds by a
//! test, and against `docs/guide/operations.md` by another.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faustus_connectors::CommitObserver;
use faustus_operators::sensor::{Arrival, Hop, Sensors};
use prometheus::core::{Atomic, GenericCounter};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::agent::AgentStatus;
use crate::runtime::assignment::SourceState;
use crate::RestoreReport;

/// One metric family: its name, type, labels and help text (the reference of `/metrics`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// The name, as exposed.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// The labels.
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
}

macro_rules! families {
    ($($id:ident: $name:literal, $kind:literal, [$($label:literal),*], $help:literal;)*) => {
        $(const $id: Family = Family {
            name: $name,
            kind: $kind,
            labels: &[$($label),*],
            help: $help,
        };)*
        /// Every metric family faustus exports, besides the process collector's `process_*`.
        pub const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    RECORDS_READ: "faustus_records_read_total", "counter", ["topic", "partition"],
        "Records read from input partitions by this process's sources (dead letters included).";
    RECORDS_WRITTEN: "faustus_records_written_total", "counter", ["topic"],
        "Records committed to output, changelog and dead-letter topics by this process's committer.";
    DEAD_LETTERS: "faustus_dead_letters_total", "counter", ["reason"],
        "Records sent to the dead-letter topic by the dataflow, by reason: decode, late, encode or panic.";
    CONSUMER_LAG: "faustus_consumer_lag_records", "gauge", ["topic", "partition"],
        "Records in an input partition after the position this process's source has read to.";
    UNCOMMITTED_INPUT: "faustus_uncommitted_input_bytes", "gauge", [],
        "Bytes of input this process's sources read in epochs that have not reached the committer yet (sources pause at --max-uncommitted-bytes).";
    COMMIT_QUEUE: "faustus_commit_queue_bytes", "gauge", [],
        "Bytes of output handed to the committer and not yet committed (the commit sink waits at --max-uncommitted-bytes).";
    INPUT_POSITION: "faustus_input_position", "gauge", ["topic", "partition"],
        "The offset of the next record a source reads from an input partition.";
    EPOCH_LENGTH: "faustus_epoch_length_seconds", "histogram", [],
        "Time between the starts of consecutive epochs handed to the committer.";
    COMMIT_DURATION: "faustus_commit_duration_seconds", "histogram", [],
        "Time one commit takes: a transaction under exactly_once, a flush and progress record under at_least_once.";
    COMMITS: "faustus_commits_total", "counter", [],
        "Commits completed.";
    COMMIT_ABORTS: "faustus_commit_aborts_total", "counter", [],
        "Commit attempts that failed and were aborted (exactly_once) or retried (at_least_once).";
    PRODUCER_REPLACEMENTS: "faustus_commit_producer_replacements_total", "counter", [],
        "Committer producers replaced after a fatal error (the broker aborted a transaction; the new producer fences the old).";
    COMMITTED_EPOCH: "faustus_committed_epoch", "gauge", [],
        "The last committed epoch (milliseconds since 1970 at its start).";
    COMMITTED_AGE: "faustus_committed_epoch_age_seconds", "gauge", [],
        "Seconds from the start of the last committed epoch to the scrape.";
    RESTORE_RECORDS: "faustus_restore_records_total", "counter", ["changelog"],
        "Changelog records read while restoring tables at start-up.";
    RESTORE_KEYS: "faustus_restore_keys_total", "counter", ["changelog"],
        "Keys restored from a changelog at start-up.";
    RESTORE_EXPECTED: "faustus_restore_expected_offsets", "gauge", ["changelog"],
        "Offsets the restore has to read from a changelog (an upper bound of its records).";
    RESTORE_SECONDS: "faustus_restore_duration_seconds", "gauge", [],
        "Seconds the restore took (0 until it is complete).";
    RESTORE_COMPLETE: "faustus_restore_complete", "gauge", [],
        "1 once every table is restored, else 0.";
    TABLE_ENTRIES: "faustus_table_entries", "gauge", ["table"],
        "Entries of a public table held by this process's workers.";
    HTTP_REQUESTS: "faustus_http_requests_total", "counter", ["method", "route", "status"],
        "HTTP requests answered, by route template and status.";
    HTTP_DURATION: "faustus_http_request_duration_seconds", "histogram", ["method", "route"],
        "Time to answer an HTTP request, by route template.";
    AGENT_IN_FLIGHT: "faustus_agent_events_in_flight", "gauge", ["agent"],
        "Events handed to an agent's code and not yet acked.";
    AGENT_BUFFERED: "faustus_agent_events_buffered", "gauge", ["agent"],
        "Records an agent has read ahead and not yet handed to its code.";
    AGENT_HANDLED: "faustus_agent_events_handled_total", "counter", ["agent"],
        "Handler attempts that succeeded.";
    AGENT_FAILED: "faustus_agent_handler_failures_total", "counter", ["agent"],
        "Handler attempts that failed (then retried, dead-lettered, or fatal).";
    AGENT_DEAD_LETTERS: "faustus_agent_dead_letters_total", "counter", ["agent"],
        "Events an agent sent to the dead-letter topic.";
    AGENT_HANDLER_DURATION: "faustus_agent_handler_duration_seconds", "histogram", ["agent"],
        "Time one handler attempt takes.";
    HOP_LATENCY: "faustus_hop_latency_seconds", "histogram", ["hop", "operator"],
        "Time from when records entered the dataflow (their epoch's start) to their arrival at the worker of an operator after a hop: group_by, join_repartition, table, commit; for source, through (a topic this app writes and reads again) and agent, from the record's timestamp to its read or hand-off (one observation per batch read, from its oldest record).";
    OPERATOR_RECORDS: "faustus_operator_records_total", "counter", ["hop", "operator"],
        "Records that arrived at an operator after a hop (its rate is the operator's records per second).";
    END_TO_END_LATENCY: "faustus_end_to_end_latency_seconds", "histogram", [],
        "Time from the start of a committed epoch (its first input read) to the end of its commit.";
}

/// Buckets of commit and epoch durations: 1 ms to 30 s.
const SLOW_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of hop and end-to-end latencies: 1 ms to 5 min (a topic read again, or an agent,
/// may be minutes behind its input's timestamps).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Buckets of HTTP and handler durations: 100 µs to 10 s.
const FAST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// An application's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    pub records_read: IntCounterVec,
    pub records_written: IntCounterVec,
    pub dead_letters: IntCounterVec,
    consumer_lag: IntGaugeVec,
    input_position: IntGaugeVec,
    pub uncommitted_input: IntGauge,
    pub commit_queue: IntGauge,
    pub epoch_length: Histogram,
    commit_duration: Histogram,
    commits: IntCounter,
    commit_aborts: IntCounter,
    producer_replacements: IntCounter,
    committed_epoch: IntGauge,
    committed_age: Gauge,
    restore_records: IntCounterVec,
    restore_keys: IntCounterVec,
    restore_expected: IntGaugeVec,
    restore_seconds: Gauge,
    restore_complete: IntGauge,
    table_entries: IntGaugeVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    agent_in_flight: IntGaugeVec,
    agent_buffered: IntGaugeVec,
    agent_handled: IntCounterVec,
    agent_failed: IntCounterVec,
    agent_dead_letters: IntCounterVec,
    pub agent_handler_duration: HistogramVec,
    hop_latency: HistogramVec,
    operator_records: IntCounterVec,
    end_to_end_latency: Histogram,
    /// Whether the sensors are on (see [`Metrics::set_sensors`]).
    sensors: AtomicBool,
    /// The most recent dead letters, of the dataflow and of the agents (for the overview).
    pub recent_dead_letters: crate::overview::DeadLetterLog,
    /// Serializes [`Metrics::refresh`] (it turns totals into counter increments).
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The registry refuses a family only for a name or label that is not valid, or one registered
/// twice: both are mistakes in [`FAMILIES`], which a test catches.
fn registered<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric families are valid and distinct");
    c
}

fn opts(f: Family) -> Opts {
    Opts::new(f.name, f.help)
}

fn counter_vec(r: &Registry, f: Family) -> IntCounterVec {
    registered(
        r,
        IntCounterVec::new(opts(f), f.labels).expect("valid family"),
    )
}

fn gauge_vec(r: &Registry, f: Family) -> IntGaugeVec {
    registered(
        r,
        IntGaugeVec::new(opts(f), f.labels).expect("valid family"),
    )
}

fn histogram_vec(r: &Registry, f: Family, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
    registered(r, HistogramVec::new(opts, f.labels).expect("valid family"))
}

fn histogram(r: &Registry, f: Family, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
    registered(r, Histogram::with_opts(opts).expect("valid family"))
}

impl Metrics {
    /// The metrics of a new application, with the process collector (CPU, memory, open files).
    pub(crate) fn new() -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        Metrics {
            records_read: counter_vec(&r, RECORDS_READ),
            records_written: counter_vec(&r, RECORDS_WRITTEN),
            dead_letters: counter_vec(&r, DEAD_LETTERS),
            consumer_lag: gauge_vec(&r, CONSUMER_LAG),
            input_position: gauge_vec(&r, INPUT_POSITION),
            uncommitted_input: registered(
                &r,
                IntGauge::with_opts(opts(UNCOMMITTED_INPUT)).expect("valid"),
            ),
            commit_queue: registered(&r, IntGauge::with_opts(opts(COMMIT_QUEUE)).expect("valid")),
            epoch_length: histogram(&r, EPOCH_LENGTH, SLOW_BUCKETS),
            commit_duration: histogram(&r, COMMIT_DURATION, SLOW_BUCKETS),
            commits: registered(&r, IntCounter::with_opts(opts(COMMITS)).expect("valid")),
            commit_aborts: registered(
                &r,
                IntCounter::with_opts(opts(COMMIT_ABORTS)).expect("valid"),
            ),
            producer_replacements: registered(
                &r,
                IntCounter::with_opts(opts(PRODUCER_REPLACEMENTS)).expect("valid"),
            ),
            committed_epoch: registered(
                &r,
                IntGauge::with_opts(opts(COMMITTED_EPOCH)).expect("valid"),
            ),
            committed_age: registered(&r, Gauge::with_opts(opts(COMMITTED_AGE)).expect("valid")),
            restore_records: counter_vec(&r, RESTORE_RECORDS),
            restore_keys: counter_vec(&r, RESTORE_KEYS),
            restore_expected: gauge_vec(&r, RESTORE_EXPECTED),
            restore_seconds: registered(
                &r,
                Gauge::with_opts(opts(RESTORE_SECONDS)).expect("valid"),
            ),
            restore_complete: registered(
                &r,
                IntGauge::with_opts(opts(RESTORE_COMPLETE)).expect("valid"),
            ),
            table_entries: gauge_vec(&r, TABLE_ENTRIES),
            http_requests: counter_vec(&r, HTTP_REQUESTS),
            http_duration: histogram_vec(&r, HTTP_DURATION, FAST_BUCKETS),
            agent_in_flight: gauge_vec(&r, AGENT_IN_FLIGHT),
            agent_buffered: gauge_vec(&r, AGENT_BUFFERED),
            agent_handled: counter_vec(&r, AGENT_HANDLED),
            agent_failed: counter_vec(&r, AGENT_FAILED),
            agent_dead_letters: counter_vec(&r, AGENT_DEAD_LETTERS),
            agent_handler_duration: histogram_vec(&r, AGENT_HANDLER_DURATION, FAST_BUCKETS),
            hop_latency: histogram_vec(&r, HOP_LATENCY, LATENCY_BUCKETS),
            operator_records: counter_vec(&r, OPERATOR_RECORDS),
            end_to_end_latency: histogram(&r, END_TO_END_LATENCY, LATENCY_BUCKETS),
            sensors: AtomicBool::new(true),
            recent_dead_letters: crate::overview::dead_letter_log(),
            refreshing: Mutex::new(()),
            registry: r,
        }
    }

    /// The counter of records read from `partition` of `topic` (a source keeps it, and adds
    /// each poll's count).
    pub(crate) fn read_counter(&self, topic: &str, partition: i32) -> IntCounter {
        self.records_read
            .with_label_values(&[topic, &partition.to_string()])
    }

    /// Turns the sensors (hop latency, operator records, end-to-end latency) on or off; they
    /// are on unless turned off. Call it before the dataflow and the agents start.
    pub(crate) fn set_sensors(&self, on: bool) {
        self.sensors.store(on, Ordering::Relaxed);
    }

    /// Whether the sensors are on.
    pub(crate) fn sensors_on(&self) -> bool {
        self.sensors.load(Ordering::Relaxed)
    }

    /// The sensor of hop `hop` (a label: `source`, `through`, `agent`) of `operator`, when the
    /// sensors are on.
    pub(crate) fn hop_sensor(&self, hop: &str, operator: &str) -> Option<HopSensor> {
        self.sensors_on().then(|| HopSensor {
            latency: self.hop_latency.with_label_values(&[hop, operator]),
            records: self.operator_records.with_label_values(&[hop, operator]),
        })
    }

    /// The sensors of a worker's dataflow, when they are on: each exchange's batches observe
    /// the time since their epoch began, except the epochs up to `restore_epoch` (restored
    /// state, whose epoch began when the last run committed), and count their records.
    pub(crate) fn dataflow_sensors(self: &Arc<Self>, restore_epoch: u64) -> Option<Sensors> {
        if !self.sensors_on() {
            return None;
        }
        let metrics = Arc::clone(self);
        Some(Rc::new(move |hop: Hop, operator: &str| {
            let sensor = metrics.hop_sensor(hop.name(), operator)?;
            Some(Rc::new(move |epoch: u64, records: u64| {
                sensor.records.inc_by(records);
                if epoch > restore_epoch {
                    sensor.observe_since(epoch as i64);
                }
            }) as Arrival)
        }))
    }

    /// The totals the overview samples: records read and written, dead letters of the dataflow,
    /// commits. Sums over the families' children: call it every few seconds, not per record.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            records_read: sum(&self.records_read),
            records_written: sum(&self.records_written),
            dead_letters: sum(&self.dead_letters),
            commits: self.commits.get(),
        }
    }

    /// The last committed epoch (milliseconds since 1970 at its start), once there is one.
    pub(crate) fn committed_epoch(&self) -> Option<u64> {
        u64::try_from(self.committed_epoch.get())
            .ok()
            .filter(|&e| e > 0)
    }

    /// Records an HTTP answer.
    pub(crate) fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// Copies what is read when scraped into the registry: the sources' positions and lag
    /// (`sources` with their lag filled in), the restore's progress, table sizes and agents.
    pub(crate) fn refresh(&self, scrape: Scrape) {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        for source in &scrape.sources {
            for p in &source.partitions {
                let labels = [source.topic.as_str(), &p.partition.to_string()];
                self.input_position
                    .with_label_values(&labels)
                    .set(p.position);
                match p.lag {
                    Some(lag) => self.consumer_lag.with_label_values(&labels).set(lag),
                    // Not known now (Kafka did not answer): no series rather than a stale one.
                    None => {
                        let _ = self.consumer_lag.remove_label_values(&labels);
                    }
                }
            }
        }
        let restore = &scrape.restore;
        for (changelog, r) in &restore.changelogs {
            let labels = [changelog.as_str()];
            catch_up(&self.restore_records.with_label_values(&labels), r.records);
            catch_up(&self.restore_keys.with_label_values(&labels), r.keys);
            self.restore_expected
                .with_label_values(&labels)
                .set(i64::try_from(r.expected_offsets).unwrap_or(i64::MAX));
        }
        self.restore_seconds.set(restore.seconds);
        self.restore_complete.set(i64::from(restore.complete));
        for (table, entries) in &scrape.tables {
            self.table_entries
                .with_label_values(&[table])
                .set(i64::try_from(*entries).unwrap_or(i64::MAX));
        }
        for agent in &scrape.agents {
            let labels = [agent.settings.name.as_str()];
            let in_flight: usize = agent.partitions.iter().map(|p| p.in_flight).sum();
            let buffered: usize = agent.partitions.iter().map(|p| p.buffered).sum();
            self.agent_in_flight
                .with_label_values(&labels)
                .set(in_flight as i64);
            self.agent_buffered
                .with_label_values(&labels)
                .set(buffered as i64);
            catch_up(
                &self.agent_handled.with_label_values(&labels),
                agent.handled,
            );
            catch_up(
                &self.agent_failed.with_label_values(&labels),
                agent.failed_attempts,
            );
            catch_up(
                &self.agent_dead_letters.with_label_values(&labels),
                agent.dead_lettered,
            );
        }
        let epoch = self.committed_epoch.get();
        if epoch > 0 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as f64;
            self.committed_age
                .set(((now - epoch as f64) / 1000.0).max(0.0));
        }
    }

    /// The registry in Prometheus' text format, and its content type.
    pub(crate) fn encode(&self) -> (String, Vec<u8>) {
        let encoder = TextEncoder::new();
        let mut out = Vec::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            log::error!("encoding metrics: {e}");
        }
        (encoder.format_type().to_string(), out)
    }

    /// The committer's observer: it counts commits and records written per topic, `topics`
    /// being the committer's topics by index.
    pub(crate) fn commit_observer(self: &Arc<Self>, topics: &[String]) -> Arc<dyn CommitObserver> {
        let written = topics
            .iter()
            .map(|t| self.records_written.with_label_values(&[t]))
            .collect();
        Arc::new(CommitMetrics {
            metrics: Arc::clone(self),
            written,
        })
    }
}

/// The sensor of one hop of one operator: its latency histogram and its records counter.
#[derive(Clone, Debug)]
pub(crate) struct HopSensor {
    latency: Histogram,
    records: IntCounter,
}

impl HopSensor {
    /// Observes the time from `millis` (since 1970) to now; a time in the future counts as 0,
    /// and none (0 or less: a record without a timestamp) is not observed.
    pub(crate) fn observe_since(&self, millis: i64) {
        if millis <= 0 {
            return;
        }
        let late = now_millis().saturating_sub(millis).max(0);
        self.latency.observe(late as f64 / 1000.0);
    }

    /// Counts `n` records.
    pub(crate) fn count(&self, n: u64) {
        self.records.inc_by(n);
    }
}

/// Milliseconds since 1970.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Counter totals of a process (see [`Metrics::totals`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Records read by the sources.
    pub records_read: u64,
    /// Records written by the committer.
    pub records_written: u64,
    /// Dead letters of the dataflow.
    pub dead_letters: u64,
    /// Commits completed.
    pub commits: u64,
}

/// The sum of every child of a counter family.
fn sum(family: &IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    family
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Moves a counter up to `total` (a total kept elsewhere, read when scraped).
fn catch_up<P: Atomic<T = u64>>(counter: &GenericCounter<P>, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// What [`Metrics::refresh`] reads.
#[derive(Default)]
pub(crate) struct Scrape {
    /// This process's sources, with lag where Kafka told it.
    pub sources: Vec<SourceState>,
    /// The restore's progress.
    pub restore: RestoreReport,
    /// Public tables and their entries on this process.
    pub tables: Vec<(String, usize)>,
    /// This process's agents.
    pub agents: Vec<AgentStatus>,
}

/// The committer's observer (see [`Metrics::commit_observer`]).
struct CommitMetrics {
    metrics: Arc<Metrics>,
    /// Records written, by the committer's topic index.
    written: Vec<IntCounter>,
}

impl std::fmt::Debug for CommitMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitMetrics").finish_non_exhaustive()
    }
}

impl CommitObserver for CommitMetrics {
    fn committed(&self, epoch: u64, duration: Duration, records: &[u64]) {
        let m = &self.metrics;
        m.commit_duration.observe(duration.as_secs_f64());
        m.commits.inc();
        if m.sensors_on() {
            let late = now_millis().saturating_sub(i64::try_from(epoch).unwrap_or(i64::MAX));
            m.end_to_end_latency.observe(late.max(0) as f64 / 1000.0);
        }
        m.committed_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
        for (counter, &n) in self.written.iter().zip(records) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    fn aborted(&self) {
        self.metrics.commit_aborts.inc();
    }

    fn producer_replaced(&self) {
        self.metrics.producer_replacements.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The family names in an exposition, from its `# TYPE` lines.
    fn exposed(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn every_family_in_the_reference_is_exposed_with_its_type() {
        let m = Arc::new(Metrics::new());
        // Families with labels appear once they have a child.
        m.read_counter("in", 0).inc_by(3);
        m.records_written.with_label_values(&["out"]).inc();
        m.dead_letters.with_label_values(&["decode"]).inc();
        m.epoch_length.observe(0.1);
        m.http_request("GET", "/metrics", 200, Duration::from_millis(1));
        m.agent_handler_duration
            .with_label_values(&["a"])
            .observe(0.001);
        m.commit_observer(&["out".into()])
            .committed(1_000, Duration::from_millis(5), &[2]);
        let mut restore = RestoreReport::default();
        restore.changelogs.insert("c".into(), Default::default());
        m.refresh(Scrape {
            sources: vec![SourceState {
                topic: "in".into(),
                epoch: None,
                partitions: vec![crate::runtime::assignment::PartitionState {
                    partition: 0,
                    position: 3,
                    high_watermark: Some(5),
                    lag: Some(2),
                }],
            }],
            restore,
            tables: vec![("t".into(), 4)],
            agents: vec![],
        });
        // Agents come from `/api/agents/`'s status; here, straight in.
        m.agent_in_flight.with_label_values(&["a"]).set(1);
        m.agent_buffered.with_label_values(&["a"]).set(0);
        m.agent_handled.with_label_values(&["a"]).inc();
        m.agent_failed.with_label_values(&["a"]).inc();
        m.agent_dead_letters.with_label_values(&["a"]).inc();
        let sensors = m.dataflow_sensors(0).expect("sensors are on by default");
        let arrival = sensors(Hop::GroupBy, "counts").expect("an arrival");
        arrival(now_millis() as u64 - 20, 7);
        let (content_type, body) = m.encode();
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(body).unwrap();
        let exposed = exposed(&text);
        for f in FAMILIES {
            assert!(
                exposed.contains(&(f.name.to_string(), f.kind.to_string())),
                "{} ({}) is not exposed:\n{text}",
                f.name,
                f.kind
            );
        }
        let faustus = exposed.iter().filter(|(n, _)| n.starts_with("faustus_"));
        assert_eq!(faustus.count(), FAMILIES.len(), "{text}");
        assert!(text.contains("faustus_records_read_total{partition=\"0\",topic=\"in\"} 3"));
        assert!(text.contains("faustus_consumer_lag_records{partition=\"0\",topic=\"in\"} 2"));
        assert!(text.contains("faustus_records_written_total{topic=\"out\"} 3"));
        assert!(text.contains("faustus_table_entries{table=\"t\"} 4"));
        assert!(
            text.contains("faustus_operator_records_total{hop=\"group_by\",operator=\"counts\"} 7")
        );
        assert!(text
            .contains("faustus_hop_latency_seconds_count{hop=\"group_by\",operator=\"counts\"} 1"));
        assert!(
            text.contains("faustus_end_to_end_latency_seconds_count 1"),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn a_lag_kafka_did_not_tell_leaves_no_series_rather_than_a_stale_one() {
        let m = Metrics::new();
        let scrape = |lag: Option<i64>| Scrape {
            sources: vec![SourceState {
                topic: "in".into(),
                epoch: None,
                partitions: vec![crate::runtime::assignment::PartitionState {
                    partition: 0,
                    position: 3,
                    high_watermark: lag.map(|l| 3 + l),
                    lag,
                }],
            }],
            restore: RestoreReport::default(),
            tables: vec![],
            agents: vec![],
        };
        let text = |m: &Metrics| String::from_utf8(m.encode().1).unwrap();
        m.refresh(scrape(Some(7)));
        assert!(text(&m).contains("faustus_consumer_lag_records{partition=\"0\",topic=\"in\"} 7"));
        m.refresh(scrape(None));
        assert!(
            !text(&m).contains("faustus_consumer_lag_records{"),
            "{}",
            text(&m)
        );
        assert!(
            text(&m).contains("faustus_input_position"),
            "the position is still known"
        );
    }

    #[test]
    fn sensors_turned_off_observe_nothing_and_restored_epochs_count_without_latency() {
        let m = Arc::new(Metrics::new());
        let sensors = m.dataflow_sensors(1_000).unwrap();
        let arrival = sensors(Hop::Table, "t").unwrap();
        arrival(1_000, 3);
        let latency = m.hop_latency.with_label_values(&["table", "t"]);
        assert_eq!(
            m.operator_records.with_label_values(&["table", "t"]).get(),
            3
        );
        assert_eq!(
            latency.get_sample_count(),
            0,
            "the restore epoch has no latency"
        );
        arrival(1_001, 1);
        assert_eq!(latency.get_sample_count(), 1);
        // A record without a timestamp has no latency.
        let agent = m.hop_sensor("agent", "a").unwrap();
        agent.observe_since(0);
        agent.observe_since(now_millis() - 5);
        let latency = m.hop_latency.with_label_values(&["agent", "a"]);
        assert_eq!(latency.get_sample_count(), 1);
        m.set_sensors(false);
        assert!(m.dataflow_sensors(0).is_none());
        assert!(m.hop_sensor("agent", "a").is_none());
        m.commit_observer(&[])
            .committed(1_000, Duration::from_millis(5), &[]);
        assert_eq!(m.end_to_end_latency.get_sample_count(), 0);
    }

    #[test]
    fn totals_sum_every_child() {
        let m = Arc::new(Metrics::new());
        assert_eq!(m.totals(), Totals::default());
        assert_eq!(m.committed_epoch(), None);
        m.read_counter("in", 0).inc_by(3);
        m.read_counter("in", 1).inc_by(4);
        m.read_counter("other", 0).inc();
        m.dead_letters.with_label_values(&["decode"]).inc_by(2);
        m.dead_letters.with_label_values(&["late"]).inc();
        m.commit_observer(&["out".into(), "changes".into()])
            .committed(1_000, Duration::from_millis(5), &[2, 5]);
        let totals = m.totals();
        assert_eq!(
            totals,
            Totals {
                records_read: 8,
                records_written: 7,
                dead_letters: 3,
                commits: 1,
            }
        );
        assert_eq!(m.committed_epoch(), Some(1_000));
    }

    #[test]
    fn totals_read_when_scraped_only_move_counters_up() {
        let m = Metrics::new();
        let counter = m.agent_handled.with_label_values(&["a"]);
        catch_up(&counter, 5);
        catch_up(&counter, 3);
        assert_eq!(counter.get(), 5);
        catch_up(&counter, 9);
        assert_eq!(counter.get(), 9);
    }

    #[test]
    fn the_operations_guide_lists_every_family_as_the_code_defines_it() {
        let guide = include_str!("../docs/guide/operations.md");
        let rows: Vec<Family> = guide
            .lines()
            .filter(|l| l.starts_with("| `faustus_"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
                assert_eq!(cells.len(), 4, "{l}");
                let name = cells[0].trim_matches('`');
                let family = FAMILIES
                    .iter()
                    .find(|f| f.name == name)
                    .unwrap_or_else(|| panic!("the guide lists `{name}`, which the code lacks"));
                let labels: Vec<String> = family.labels.iter().map(|l| format!("`{l}`")).collect();
                assert_eq!(cells[1], family.kind, "{name}");
                assert_eq!(cells[2], labels.join(", "), "{name}");
                assert_eq!(cells[3], family.help, "{name}");
                *family
            })
            .collect();
        assert_eq!(rows, FAMILIES, "the guide's table, in the code's order");
    }
}
