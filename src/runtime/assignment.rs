//! Which input partitions each worker of this process reads, how far it got, and its epoch: the
//! sources publish it, `/api/assignment/` reads it.
//!
//! A source updates its entry when it starts and each time it closes an epoch, under a mutex
//! held only to copy a few numbers; the HTTP layer copies the entries out. Neither waits on the
//! other for longer than that copy. The lag needs each partition's high watermark, a network
//! round trip: the HTTP side asks Kafka for it (with its own consumer, off the async runtime),
//! never the source.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use faustus_connectors::{KafkaConfig, QuietContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

/// One partition a worker reads.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct PartitionState {
    /// The partition.
    pub partition: i32,
    /// The offset of the next record to read.
    pub position: i64,
    /// The partition's high watermark (`null` if Kafka did not tell in time).
    pub high_watermark: Option<i64>,
    /// `high_watermark - position` (`null` without a high watermark).
    pub lag: Option<i64>,
}

/// What one source of one worker reads.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct SourceState {
    /// The topic.
    pub topic: String,
    /// The epoch the source is in: records it reads now belong to it. `null` once the source
    /// holds no capability (it reads no partition, or it stopped).
    pub epoch: Option<u64>,
    /// The partitions it reads, in order.
    pub partitions: Vec<PartitionState>,
}

/// The assignment of this process's workers, keyed by `(global worker, topic)`.
#[derive(Default)]
pub(crate) struct Assignments {
    map: Mutex<BTreeMap<(usize, String), SourceState>>,
    kafka: OnceLock<KafkaConfig>,
    consumer: Mutex<Option<BaseConsumer<QuietContext>>>,
}

/// How long to wait for one partition's high watermark. Short, and not configurable: the lag is
/// a hint in an HTTP answer, which reports `null` rather than keep the client waiting.
const WATERMARK_TIMEOUT: Duration = Duration::from_millis(500);

impl Assignments {
    /// Sets the Kafka cluster high watermarks are asked from.
    pub(crate) fn set_kafka(&self, kafka: KafkaConfig) {
        let _ = self.kafka.set(kafka);
    }

    /// Records what worker `worker` reads of `topic`: its epoch and its positions.
    pub(crate) fn publish(
        &self,
        worker: usize,
        topic: &str,
        epoch: Option<u64>,
        positions: &BTreeMap<i32, i64>,
    ) {
        let partitions = positions
            .iter()
            .map(|(&partition, &position)| PartitionState {
                partition,
                position,
                high_watermark: None,
                lag: None,
            })
            .collect();
        let state = SourceState {
            topic: topic.to_string(),
            epoch,
            partitions,
        };
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((worker, topic.to_string()), state);
    }

    /// The sources of global worker `worker`, by topic, without lag.
    pub(crate) fn of_worker(&self, worker: usize) -> Vec<SourceState> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range((worker, String::new())..(worker + 1, String::new()))
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Fills in the high watermark and lag of every partition, asking Kafka. Blocks: call it
    /// off the async runtime.
    pub(crate) fn add_lag(&self, sources: &mut [SourceState]) {
        let Some(kafka) = self.kafka.get() else {
            return;
        };
        let mut consumer = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        if consumer.is_none() {
            // The end of the log, records of open transactions included: the same end as
            // `kafka-consumer-groups.sh` shows (a `read_committed` consumer would be told the
            // last stable offset, and show no lag behind an open transaction).
            match kafka
                .consumer()
                .set("isolation.level", "read_uncommitted")
                .create_with_context(QuietContext)
            {
                Ok(c) => *consumer = Some(c),
                Err(e) => {
                    let e = faustus_connectors::properties::redact_error(e);
                    log::warn!("assignment: cannot create a consumer for watermarks: {e}");
                    return;
                }
            }
        }
        let client = consumer.as_ref().expect("created above");
        let mut failed = false;
        for source in sources {
            for p in &mut source.partitions {
                match client.fetch_watermarks(&source.topic, p.partition, WATERMARK_TIMEOUT) {
                    Ok((_, high)) => {
                        p.high_watermark = Some(high);
                        p.lag = Some((high - p.position).max(0));
                    }
                    Err(_) => failed = true,
                }
            }
        }
        // After a failure, the next look asks with a new client: librdkafka can go on asking a
        // partition's dead former leader (confluentinc/librdkafka#2588).
        if failed {
            *consumer = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_see_their_own_sources() {
        let a = Assignments::default();
        let positions = BTreeMap::from([(0, 5), (2, 7)]);
        a.publish(3, "orders", Some(100), &positions);
        a.publish(3, "clicks", Some(100), &BTreeMap::from([(1, 1)]));
        a.publish(4, "orders", None, &BTreeMap::new());
        let mine = a.of_worker(3);
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[1].topic, "orders");
        assert_eq!(mine[1].epoch, Some(100));
        assert_eq!(mine[1].partitions[1].position, 7);
        let mut without_kafka = mine.clone();
        a.add_lag(&mut without_kafka);
        assert_eq!(without_kafka, mine);
        assert!(a.of_worker(2).is_empty());
        assert_eq!(a.of_worker(4)[0].partitions, vec![]);
    }
}
