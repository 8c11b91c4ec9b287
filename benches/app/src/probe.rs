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

/// What the probe does besides timing the restore.
pub struct Probe {
    /// Entries to write into the changelog first (see `--fill-keys`).
    pub fill_keys: Option<u64>,
    /// Kill the process with SIGKILL once one more epoch is committed (see
    /// `--kill-after-commit`).
    pub kill_after_commit: bool,
}

/// Starts `app` (the W2 program, without outputs) on its existing application id, waits until
/// its tables are restored, appends the result to `results` and stops (or, as `probe` says,
/// commits one more word and kills itself).
pub fn restore_probe(
    app: App,
    app_id: &str,
    topics: Topics,
    probe: Probe,
    results: &Path,
) -> Result<(), String> {
    let Probe {
        fill_keys,
        kill_after_commit,
    } = probe;
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
    let words = topics.words.clone();
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
    let line = serde_json::json!({
        "kind": "restore",
        "system": "faustus",
        "records": restored.records,
        "keys": restored.keys,
        "from_checkpoint": restored.checkpoint,
        "seconds": seconds,
        "records_per_sec": restored.records as f64 / seconds,
    });
    println!("{line}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(results)
        .map_err(|e| format!("opening {}: {e}", results.display()))?;
    writeln!(file, "{line}").map_err(|e| format!("writing {}: {e}", results.display()))?;
    if kill_after_commit {
        commit_one_word(&running, &words)?;
        eprintln!("bench-faustus: committed; killing this process with SIGKILL");
        let status = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        return Err(format!(
            "kill -9 of this process did not kill it: {status:?}"
        ));
    }
    running.shutdown().map_err(|e| e.to_string())
}

/// Writes one word to `words` and waits until an epoch after the restore is committed (so that
/// the committed progress names this run's local checkpoint).
fn commit_one_word(running: &faustus::Running, words: &str) -> Result<(), String> {
    let stats = running
        .commit_stats()
        .ok_or("this process has no committer")?;
    let restored = stats.committed_epoch();
    let producer: ThreadedProducer<_> = running
        .kafka_config()
        .producer()
        .create()
        .map_err(|e| format!("creating a producer: {e}"))?;
    producer
        .send(BaseRecord::<'_, [u8], [u8]>::to(words).payload(b"\"w1\""))
        .map_err(|(e, _)| format!("writing to `{words}`: {e}"))?;
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("flushing `{words}`: {e}"))?;
    let started = Instant::now();
    while stats.committed_epoch() <= restored {
        if started.elapsed() > Duration::from_secs(120) {
            return Err("no epoch was committed within 120 s of the word".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
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
