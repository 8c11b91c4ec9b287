//! Test plumbing against the real Kafka broker, shared by the engine's integration tests
//! (`tests/common`) and the benchmark harness's and bench app's tests: where the broker is, names
//! no other run uses, producing and reading back records, and waiting for a condition.
//!
//! The broker address comes from `FAUSTUS_TEST_BROKERS` (set by `scripts/test`); without it the
//! repository's own broker is started with `scripts/kafka start` (which reuses a running one).
//! The broker's TLS + SASL/SCRAM listener is described by the client properties file of
//! [`secure_config`].
//! Every helper panics on failure: they are for tests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use faustus_connectors::{ensure_topics, partition_count, read_to_end, KafkaConfig, TopicSpec};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

/// The test broker's bootstrap address, resolved once per test process.
pub fn brokers() -> String {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS
        .get_or_init(|| {
            if let Ok(b) = std::env::var("FAUSTUS_TEST_BROKERS") {
                return b;
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
            let out = Command::new(script)
                .arg("start")
                .stderr(Stdio::inherit())
                .output()
                .expect("running scripts/kafka start");
            assert!(out.status.success(), "scripts/kafka start failed");
            String::from_utf8(out.stdout)
                .expect("scripts/kafka start prints UTF-8")
                .lines()
                .last()
                .expect("scripts/kafka start prints the address last")
                .trim()
                .to_string()
        })
        .clone()
}

/// The client properties file (`bootstrap.servers`, SASL_SSL with SCRAM-SHA-512, the CA) of
/// the test broker's secure listener, resolved once per test process: `FAUSTUS_TEST_SECURE_CONFIG`
/// (set by `scripts/test`); without it and without `FAUSTUS_TEST_BROKERS`, the repository's
/// broker is started, or checked, with `scripts/kafka start --secure`, and
/// `scripts/kafka secure-config` names the file.
pub fn secure_config() -> PathBuf {
    static CONFIG: OnceLock<PathBuf> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            if let Ok(path) = std::env::var("FAUSTUS_TEST_SECURE_CONFIG") {
                return PathBuf::from(path);
            }
            assert!(
                std::env::var_os("FAUSTUS_TEST_BROKERS").is_none(),
                "FAUSTUS_TEST_BROKERS is set but FAUSTUS_TEST_SECURE_CONFIG is not: set it to the \
                 client properties of that broker's secure listener (for the repository's broker, \
                 `scripts/kafka start --secure` sets it up and `scripts/kafka secure-config` prints it)"
            );
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka");
            let status = Command::new(&script)
                .args(["start", "--secure"])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
                .expect("running scripts/kafka start --secure");
            assert!(status.success(), "scripts/kafka start --secure failed");
            let out = Command::new(&script)
                .arg("secure-config")
                .stderr(Stdio::inherit())
                .output()
                .expect("running scripts/kafka secure-config");
            assert!(out.status.success(), "scripts/kafka secure-config failed");
            PathBuf::from(
                String::from_utf8(out.stdout)
                    .expect("a UTF-8 path")
                    .trim()
                    .to_string(),
            )
        })
        .clone()
}

/// A Kafka configuration for the test broker.
pub fn kafka() -> KafkaConfig {
    KafkaConfig::new(brokers())
}

/// A name no other test run uses: `prefix-<process id>-<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A record to produce: optional key, optional value (`None` is a tombstone).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(topic: &str, partitions: i32) {
    ensure_topics(&kafka(), &[TopicSpec::new(topic, partitions)]).expect("creating a topic");
}

/// A producer to the test broker.
pub struct TestProducer(ThreadedProducer<DefaultProducerContext>);

impl TestProducer {
    /// A producer with the connectors' producer settings.
    pub fn new() -> Self {
        TestProducer(kafka().producer().create().expect("a producer"))
    }

    /// Sends a record to `partition` of `topic` (by key if `None`), waiting while the producer's
    /// queue is full.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        while let Err((_, back)) = self.0.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until every record sent is acknowledged.
    pub fn flush(self) {
        faustus_connectors::flush_promptly(&self.0, Duration::from_secs(60)).expect("flush");
    }
}

impl Default for TestProducer {
    fn default() -> Self {
        TestProducer::new()
    }
}

/// Produces records (key, value) to `topic` and waits until all are acknowledged.
pub fn produce(topic: &str, records: &[KeyValue]) {
    produce_to(topic, None, records)
}

/// Produces records to one partition of `topic` (or by key when `partition` is `None`) and waits
/// until all are acknowledged.
pub fn produce_to(topic: &str, partition: Option<i32>, records: &[KeyValue]) {
    let producer = TestProducer::new();
    for (key, value) in records {
        producer.send(topic, partition, key.as_deref(), value.as_deref());
    }
    producer.flush();
}

/// One record read back.
#[derive(Clone, Debug)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Its headers, values decoded as UTF-8 (lossily).
    pub headers: BTreeMap<String, String>,
}

/// All committed records of `topic`, per partition in offset order (none if it does not exist
/// yet). A topic that was just created may not be readable at once: this retries for a while.
pub fn read_all(topic: &str) -> Vec<Record> {
    let mut attempts = 0;
    loop {
        match try_read_all(topic) {
            Ok(records) => return records,
            Err(e) if attempts < 20 => {
                attempts += 1;
                eprintln!("reading {topic}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("reading {topic} to its end: {e}"),
        }
    }
}

fn try_read_all(topic: &str) -> faustus_connectors::Result<Vec<Record>> {
    let config = kafka();
    let Some(partitions) = partition_count(&config, topic)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    read_to_end(
        &config,
        topic,
        &(0..partitions).collect::<Vec<_>>(),
        Duration::from_secs(120),
        |r| {
            out.push(Record {
                partition: r.partition,
                offset: r.offset,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            })
        },
    )?;
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// The table a compacted topic converges to: last value per key, tombstones remove.
pub fn last_values(records: &[Record]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut table = BTreeMap::new();
    for r in records {
        let key = r.key.clone().unwrap_or_default();
        match &r.value {
            Some(v) => {
                table.insert(key, v.clone());
            }
            None => {
                table.remove(&key);
            }
        }
    }
    table
}

/// Waits until `check` returns `Some`, polling every 100 ms, or panics with `what` after
/// `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `actual()` equals `expected`, polling every 100 ms, or panics after `timeout`
/// with what it saw last.
pub fn wait_until<T: PartialEq + Debug>(
    what: &str,
    timeout: Duration,
    expected: &T,
    mut actual: impl FnMut() -> T,
) {
    let started = Instant::now();
    loop {
        let now = actual();
        if &now == expected {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}: expected {expected:?}, last saw {now:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
