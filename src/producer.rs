//! Typed sends from anywhere in a program: [`Producer`].
//!
//! Inside an agent's handler, send with [`crate::agent::Event::send`] instead: those records are
//! tied to the event (written when it is acked, in its transaction under `exactly_once`). A
//! `Producer` writes at once, at least once: a generator, a test, a web handler that accepts
//! orders.
//!
//! ```no_run
//! # async fn demo() -> faustus::Result<()> {
//! use faustus::prelude::*;
//! use faustus::Producer;
//!
//! let orders = Topic::<String, i64>::new("orders");
//! let producer = Producer::new("127.0.0.1:9092")?;
//! let (partition, offset) = producer.send(&orders, &"ann".to_string(), &30).await?;
//! producer.send_blocking(&orders, &"bob".to_string(), &12)?;   // outside async code
//! # let _ = (partition, offset);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use faustus_connectors::{owned_headers, ConnectorError, KafkaConfig};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};
use crate::record::Headers;
use crate::topic::Topic;

/// How long a record may wait in the producer's queue (full under load) before the send fails.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes typed records to Kafka; cheap to clone (clones share one client).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    /// A producer for the brokers at `brokers` (`host:port,...`), with faustus' producer
    /// settings (idempotent, murmur2 partitioning as the Java client).
    pub fn new(brokers: &str) -> Result<Self> {
        Self::with_config(&KafkaConfig::new(brokers))
    }

    /// A producer with a full client configuration (security settings, producer overrides).
    pub fn with_config(config: &KafkaConfig) -> Result<Self> {
        let inner = config
            .producer()
            .create()
            .map_err(|source| ConnectorError::Kafka {
                context: "creating a producer".into(),
                source: faustus_connectors::properties::redact_error(source),
            })?;
        Ok(Producer { inner })
    }

    /// Sends `(key, value)` to `topic`, and waits until Kafka has it: its partition and offset.
    pub async fn send<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(i32, i64)> {
        self.send_record(topic, key, Some(value), None, Headers::new())
            .await
    }

    /// As [`Producer::send`], with a timestamp (milliseconds since 1970; `None` for now) and
    /// headers, or a tombstone when `value` is `None`.
    pub async fn send_record<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: Option<&V>,
        timestamp: Option<i64>,
        headers: Headers,
    ) -> Result<(i32, i64)> {
        let encoded = Encoded::new(topic, key, value, timestamp, headers)?;
        let delivered = self.inner.send(encoded.record(), QUEUE_TIMEOUT).await;
        delivered
            .map(|d| (d.partition, d.offset))
            .map_err(|(source, _)| send_error(topic.name(), source))
    }

    /// [`Producer::send`] for code that is not async: it blocks the calling thread until Kafka
    /// has the record.
    pub fn send_blocking<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
    ) -> Result<(i32, i64)> {
        self.enqueue(topic, key, value)?.wait()
    }

    /// Hands `(key, value)` to the producer without waiting for Kafka (blocking only while the
    /// producer's queue is full): many records can be on their way at once. The returned
    /// [`Pending`] tells how the send ended; a generator keeps a bounded number of them.
    pub fn enqueue<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: &V,
    ) -> Result<Pending> {
        self.enqueue_record(topic, key, Some(value), None, Headers::new())
    }

    /// As [`Producer::enqueue`], with a timestamp and headers, or a tombstone when `value` is
    /// `None`.
    pub fn enqueue_record<K: 'static, V: 'static>(
        &self,
        topic: &Topic<K, V>,
        key: &K,
        value: Option<&V>,
        timestamp: Option<i64>,
        headers: Headers,
    ) -> Result<Pending> {
        let encoded = Encoded::new(topic, key, value, timestamp, headers)?;
        let started = std::time::Instant::now();
        let mut record = encoded.record();
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => {
                    return Ok(Pending {
                        topic: topic.name().to_string(),
                        delivery,
                    })
                }
                Err((e, back))
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && started.elapsed() < QUEUE_TIMEOUT =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((source, _)) => return Err(send_error(topic.name(), source)),
            }
        }
    }

    /// Sends a record already encoded for `topic` (a null key when `key` is `None`), and
    /// blocks until Kafka has it: its partition and offset.
    pub(crate) fn send_bytes(
        &self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<(i32, i64)> {
        let mut record = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic).payload(&value);
        if let Some(key) = &key {
            record = record.key(key);
        }
        let delivered = futures::executor::block_on(self.inner.send(record, QUEUE_TIMEOUT));
        delivered
            .map(|d| (d.partition, d.offset))
            .map_err(|(source, _)| send_error(topic, source))
    }

    /// Sends a record already encoded (an agent's [`crate::agent::Outgoing`] form: topic,
    /// partition if fixed, key, value, headers) and waits until Kafka has it.
    pub(crate) async fn send_outgoing(
        &self,
        record: &crate::agent::Outgoing,
    ) -> Result<(i32, i64)> {
        let mut future: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic);
        if let Some(key) = &record.key {
            future = future.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future = future.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            future = future.partition(partition);
        }
        if let Some(headers) = owned_headers(&record.headers) {
            future = future.headers(headers);
        }
        self.inner
            .send(future, QUEUE_TIMEOUT)
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(source, _)| send_error(&record.topic, source))
    }

    /// Waits until every record sent so far is delivered.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        faustus_connectors::flush_promptly(&self.inner, timeout).map_err(|source| {
            Error::Kafka(ConnectorError::Kafka {
                context: "flushing a producer".into(),
                source,
            })
        })
    }
}

/// A record on its way to Kafka ([`Producer::enqueue`]): await it, or [`Pending::wait`].
pub struct Pending {
    topic: String,
    delivery: DeliveryFuture,
}

impl Pending {
    /// Blocks until Kafka has the record (or the send failed): its partition and offset.
    pub fn wait(self) -> Result<(i32, i64)> {
        futures::executor::block_on(self)
    }
}

impl std::future::Future for Pending {
    type Output = Result<(i32, i64)>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let topic = self.topic.clone();
        std::pin::Pin::new(&mut self.delivery)
            .poll(cx)
            .map(|delivered| match delivered {
                Ok(Ok(d)) => Ok((d.partition, d.offset)),
                Ok(Err((source, _))) => Err(send_error(&topic, source)),
                Err(_) => Err(Error::Runtime(format!(
                    "sending to `{topic}`: the producer was dropped"
                ))),
            })
    }
}

/// A record encoded for its topic.
struct Encoded<'t> {
    topic: &'t str,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    timestamp: Option<i64>,
    headers: Headers,
}

impl<'t> Encoded<'t> {
    fn new<K: 'static, V: 'static>(
        topic: &'t Topic<K, V>,
        key: &K,
        value: Option<&V>,
        timestamp: Option<i64>,
        headers: Headers,
    ) -> Result<Self> {
        let (key, value) = topic
            .encode_record(key, value)
            .map_err(|e| Error::Config(format!("a record for `{}`: {e}", topic.name())))?;
        Ok(Encoded {
            topic: topic.name(),
            key,
            value,
            timestamp,
            headers,
        })
    }

    fn record(&self) -> FutureRecord<'_, [u8], [u8]> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(self.topic).key(self.key.as_slice());
        if let Some(value) = &self.value {
            record = record.payload(value.as_slice());
        }
        if let Some(timestamp) = self.timestamp {
            record = record.timestamp(timestamp);
        }
        if let Some(headers) = owned_headers(&self.headers) {
            record = record.headers(headers);
        }
        record
    }
}

/// A failed send to `topic`.
fn send_error(topic: &str, source: rdkafka::error::KafkaError) -> Error {
    Error::Kafka(ConnectorError::Kafka {
        context: format!("sending to `{topic}`"),
        source,
    })
}
