//! The restore probe: how fast faustus restores the W2 counts table from its changelog.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use faustus::connectors::{ensure_topics, KafkaConfig, TopicSpec};
use faustus::App;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use crate::workloads::{self, Topics, Workload, WORD_COUNTS};

/// How long the restore may take before the probe gives up.
const DEADLINE: Duration = Duration::from_secs(1800);

/// Starts `app` (the W2 program, without outputs) on its existing application id, waits until
/// its tables are restored, appends the result to `results` and stops.
pub fn restore_probe(
    app: App,
    app_id: &str,
    topics: Topics,
    fill_keys: Option<u64>,
    results: &Path,
) -> Result<(), String> {
    let changelog = format!("{app_id}-{WORD_COUNTS}-changelog");
    let brokers = app
        .config()
        .brokers
        .clone()
        .ok_or("the restore probe needs --brokers")?;
    if let Some(keys) = fill_keys {
        let kafka = KafkaConfig::new(brokers);
        // Without a preceding W2 run, the words topic may be missing too.
        ensure_topics(&kafka, &[TopicSpec::new(&topics.words, 4)])
            .map_err(|e| format!("creating `{}`: {e}", topics.words))?;
        fill(&kafka, &changelog, app.config().partitions, keys)?;
    }
    let topics = Topics {
        output_prefix: None,
        ..topics
    };
    let started = Instant::now();
    let running = app
        .start(move |df| workloads::build(df, Workload::W2, &topics))
        .map_err(|e| e.to_string())?;
    let report = loop {
        let report = running.restore_report();
        if report.complete {
            break report;
        }
        if running.is_finished() {
            return Err(match running.join() {
                Err(e) => format!("the application stopped while restoring: {e}"),
                Ok(()) => "the application stopped while restoring".into(),
            });
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("the restore took longer than {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let seconds = started.elapsed().as_secs_f64();
    let restored = report.changelogs.get(&changelog).copied().ok_or_else(|| {
        format!("`{changelog}` was not restored (is `{app_id}` the application id of a W2 run?)")
    })?;
    running.shutdown().map_err(|e| e.to_string())?;
    let line = serde_json::json!({
        "kind": "restore",
        "system": "faustus",
        "records": restored.records,
        "keys": restored.keys,
        "seconds": seconds,
        "records_per_sec": restored.records as f64 / seconds,
    });
    println!("{line}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(results)
        .map_err(|e| format!("opening {}: {e}", results.display()))?;
    writeln!(file, "{line}").map_err(|e| format!("writing {}: {e}", results.display()))
}

/// Writes `keys` entries `"w<i>"` → 1 into the changelog `topic` (created compacted with
/// `partitions` partitions if missing), partitioned as faustus writes it (murmur2 of the key).
fn fill(kafka: &KafkaConfig, topic: &str, partitions: i32, keys: u64) -> Result<(), String> {
    ensure_topics(kafka, &[TopicSpec::compacted(topic, partitions)])
        .map_err(|e| format!("creating `{topic}`: {e}"))?;
    let producer: ThreadedProducer<_> = kafka
        .producer()
        .set("batch.size", "1000000")
        .create()
        .map_err(|e| format!("creating a producer: {e}"))?;
    for i in 1..=keys {
        let key = serde_json::to_vec(&faustus_bench::word(i as usize)).expect("strings serialize");
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).key(key.as_slice()).payload(b"1");
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(_), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(format!("writing to `{topic}`: {e}")),
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flushing `{topic}`: {e}"))
}
