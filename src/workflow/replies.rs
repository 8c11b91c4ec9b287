//! The reply reader: the replies to this process's requests, read from one partition of
//! `<app>-replies`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faustus_connectors::{ConnectorError, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::Reply;
use crate::error::{Error, Result};

/// How long the reader waits for a record before it looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Requests waiting for their replies, by correlation id.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Reply>>>>;

/// Reads the replies of one partition of the reply topic and hands each to the request that
/// waits for it; replies nobody waits for (another process's, or a request that timed out)
/// are skipped. It stops when dropped.
pub(crate) struct Replies {
    topic: String,
    partition: i32,
    /// This reader's prefix of correlation ids (unique per process and start).
    prefix: String,
    next: AtomicU64,
    waiting: Waiting,
    stop: Arc<AtomicBool>,
}

impl Replies {
    /// Starts reading partition `hash(process) % partitions` of `topic` from its end: only
    /// replies to requests sent after this returns are awaited.
    pub(crate) fn start(kafka: &KafkaConfig, topic: &str, partitions: i32) -> Result<Self> {
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let prefix = format!("{:x}-{unique:x}", std::process::id());
        let partition =
            (faustus_connectors::murmur2(prefix.as_bytes()) % partitions.max(1) as u32) as i32;
        let kafka_error = |context: &str, source| {
            Error::Kafka(ConnectorError::Kafka {
                context: format!("the reply reader of `{topic}`: {context}"),
                source,
            })
        };
        let consumer: BaseConsumer = kafka
            .consumer()
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| kafka_error("creating its consumer", e))?;
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, kafka.request_timeout)
            .map_err(|e| kafka_error("reading the partition's end", e))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(high))
            .map_err(|e| kafka_error("assigning its partition", e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error("assigning its partition", e))?;
        let waiting: Waiting = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let waiting = Arc::clone(&waiting);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("faustus-replies".into())
                .spawn(move || read(&consumer, &waiting, &stop))
                .map_err(|e| Error::Runtime(format!("spawning the reply reader: {e}")))?;
        }
        Ok(Replies {
            topic: topic.to_string(),
            partition,
            prefix,
            next: AtomicU64::new(0),
            waiting,
            stop,
        })
    }

    /// A new request's reply address, and the reply to come.
    pub(crate) fn expect(&self) -> ((String, Option<i32>, String), oneshot::Receiver<Reply>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let correlation = format!("{}-{n}", self.prefix);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(correlation.clone(), tx);
        ((self.topic.clone(), Some(self.partition), correlation), rx)
    }

    /// Stops waiting for `correlation`'s reply.
    pub(crate) fn forget(&self, correlation: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(correlation);
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The reader's loop.
fn read(consumer: &BaseConsumer, waiting: &Waiting, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                let Some(correlation) = message
                    .key()
                    .and_then(|k| serde_json::from_slice::<String>(k).ok())
                else {
                    continue;
                };
                let Some(tx) = waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&correlation)
                else {
                    continue;
                };
                let reply = message
                    .payload()
                    .map(serde_json::from_slice::<Reply>)
                    .unwrap_or_else(|| Ok(Reply::default()))
                    .unwrap_or_else(|e| Reply {
                        value: None,
                        error: Some(format!("the reply is not a faustus reply: {e}")),
                    });
                let _ = tx.send(reply);
            }
            Some(Err(e)) => log::warn!("reply reader: {e}"),
            None => {}
        }
    }
}
