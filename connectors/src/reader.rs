//! Reading topics: the partition reader behind every source, and reading a topic to its end
//! (changelog restore, progress recovery).
//!
//! ## Contract
//!
//! A [`PartitionReader`] is assigned partitions explicitly, starting at given offsets; it reads
//! only committed data (`read_committed`), hands records out in offset order per partition, and
//! remembers, per partition, the offset after the last record it handed out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::client::KafkaConfig;
use crate::error::{ConnectorError, KafkaContext, Result};

/// One record as read from Kafka.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The record's timestamp in milliseconds, if it has one.
    pub timestamp: Option<i64>,
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// The headers.
    pub headers: Vec<(&'a str, &'a [u8])>,
}

/// A client context that does not report reaching the end of a partition as an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct QuietContext;

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            log::error!("kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for QuietContext {}

/// Reads assigned partitions of one topic from given offsets.
pub struct PartitionReader {
    consumer: BaseConsumer<QuietContext>,
    topic: String,
    next: BTreeMap<i32, i64>,
}

impl PartitionReader {
    /// Starts reading `topic` at the given `(partition, offset)` positions; an offset of `None`
    /// starts at the beginning of the partition.
    pub fn new(config: &KafkaConfig, topic: &str, start: &[(i32, Option<i64>)]) -> Result<Self> {
        let consumer: BaseConsumer<QuietContext> = config
            .consumer()
            .set("enable.partition.eof", "false")
            .create_with_context(QuietContext)
            .context(|| format!("creating a consumer for `{topic}`"))?;
        let mut assignment = TopicPartitionList::new();
        let mut next = BTreeMap::new();
        for &(partition, offset) in start {
            let from = offset.map(Offset::Offset).unwrap_or(Offset::Beginning);
            assignment
                .add_partition_offset(topic, partition, from)
                .context(|| format!("assigning `{topic}`/{partition}"))?;
            next.insert(partition, offset.unwrap_or(0));
        }
        consumer
            .assign(&assignment)
            .context(|| format!("assigning partitions of `{topic}`"))?;
        Ok(PartitionReader {
            consumer,
            topic: topic.to_string(),
            next,
        })
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Per partition, the offset after the last record handed out, or past the markers and
    /// aborted records after it once the end is reached (the resume position).
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.next
    }

    /// Moves each partition's position to the consumer's where that is further: past what holds
    /// no record for this reader (transaction markers, aborted records), which the consumer
    /// skips without handing anything out.
    fn catch_up(&mut self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for element in positions.elements() {
            if let (Offset::Offset(position), Some(next)) =
                (element.offset(), self.next.get_mut(&element.partition()))
            {
                if position > *next {
                    *next = position;
                }
            }
        }
    }

    /// Hands out up to `max` records that are already available, waiting at most `wait` for the
    /// first one. Returns how many were handed out. When there is nothing to hand out, the
    /// positions move past transaction markers and aborted records.
    pub fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        mut f: impl FnMut(RawRecord<'_>),
    ) -> Result<usize> {
        let mut count = 0;
        let mut timeout = wait;
        while count < max {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    // Transient errors (broker down, leader moves) are retried by librdkafka;
                    // report them without failing.
                    log::warn!("reading `{}`: {e}", self.topic);
                    break;
                }
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    f(raw_record(&self.topic, &message));
                    self.next.insert(partition, offset + 1);
                    count += 1;
                }
            }
            timeout = Duration::ZERO;
        }
        if count == 0 {
            // Nothing to hand out: a fully read transactional topic must not look behind.
            self.catch_up();
        }
        Ok(count)
    }
}

/// How long [`read_to_end_counted`] waits without a record, or a partition reaching its end,
/// before it goes on reading with a new client.
const END_STALL: Duration = Duration::from_secs(15);

/// How many records [`read_to_end_counted`] reads between two looks at the clock (for its
/// deadline and [`END_STALL`]) while records flow.
const CLOCK_EVERY: u32 = 1024;

/// A `read_committed` consumer of the partitions in `ends`, each from the offset in `next` (the
/// beginning where it has none).
fn end_consumer(
    config: &KafkaConfig,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    next: &BTreeMap<i32, i64>,
) -> Result<BaseConsumer<QuietContext>> {
    let consumer: BaseConsumer<QuietContext> = config
        .consumer()
        .create_with_context(QuietContext)
        .context(|| format!("creating a consumer for `{topic}`"))?;
    let mut assignment = TopicPartitionList::new();
    for &p in ends.keys() {
        let from = next
            .get(&p)
            .map_or(Offset::Beginning, |&o| Offset::Offset(o));
        assignment
            .add_partition_offset(topic, p, from)
            .context(|| format!("assigning `{topic}`/{p}"))?;
    }
    consumer
        .assign(&assignment)
        .context(|| format!("assigning partitions of `{topic}`"))?;
    Ok(consumer)
}

/// The first wait before [`watermarks`] asks again for a partition without a leader; it doubles
/// up to [`WATERMARK_BACKOFF_MAX`]. A leader is usually elected within tens of milliseconds of a
/// topic's creation, and within seconds of a broker's restart.
const WATERMARK_BACKOFF: Duration = Duration::from_millis(50);

/// The longest wait between two of [`watermarks`]' attempts.
const WATERMARK_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long [`read_to_end_counted`] waits for a record before it checks its positions against
/// the partitions' ends: a reader held back by an open transaction gets nothing, and must look.
const END_POLL: Duration = Duration::from_millis(100);

/// A client that asks for the ends of `topic`'s partitions. The end is the high watermark,
/// which a `read_committed` client is never told (it is told the last stable offset, before any
/// open transaction): it asks as `read_uncommitted`.
fn ends_reader(config: &KafkaConfig, topic: &str) -> Result<BaseConsumer<QuietContext>> {
    config
        .consumer()
        .set("isolation.level", "read_uncommitted")
        .create_with_context(QuietContext)
        .context(|| format!("creating a consumer for the ends of `{topic}`"))
}

/// The low and high watermarks of a partition, retrying while the partition has no leader (just
/// created, or the broker restarting) until `deadline`; each request may take the configuration's
/// [`KafkaConfig::request_timeout`].
///
/// Each retry asks with a new `reader`: librdkafka may go on asking the broker that led the
/// partition when it was first asked, after that broker died and the leadership moved to another,
/// until every later call times out too (confluentinc/librdkafka#2588). A new client looks the
/// leader up afresh.
fn watermarks(
    config: &KafkaConfig,
    reader: &mut BaseConsumer<QuietContext>,
    topic: &str,
    partition: i32,
    deadline: Duration,
) -> Result<(i64, i64)> {
    let started = Instant::now();
    let mut backoff = WATERMARK_BACKOFF;
    loop {
        match reader.fetch_watermarks(topic, partition, config.request_timeout) {
            Ok(w) => return Ok(w),
            Err(e) if started.elapsed() < deadline => {
                log::debug!("reading the end of `{topic}`/{partition}: {e}; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(WATERMARK_BACKOFF_MAX);
                *reader = ends_reader(config, topic)?;
            }
            Err(source) => {
                return Err(ConnectorError::Kafka {
                    context: format!("reading the end of `{topic}`/{partition}"),
                    source,
                })
            }
        }
    }
}

/// The record view of a message.
fn raw_record<'a>(topic: &'a str, message: &'a BorrowedMessage<'_>) -> RawRecord<'a> {
    RawRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key: message.key(),
        value: message.payload(),
        headers: message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Reads the committed records of `partitions` of `topic` from the beginning to the end it has
/// now (its high watermark), calling `f` for each, in offset order per partition.
///
/// Transactional topics end in control records, and an open transaction holds
/// `read_committed` readers back until it ends; this waits (up to `deadline`) until the reader's
/// position reaches the high watermark on every partition.
pub fn read_to_end(
    config: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
    deadline: Duration,
    f: impl FnMut(RawRecord<'_>),
) -> Result<u64> {
    read_to_end_counted(config, topic, partitions, deadline, |_| {}, f)
}

/// [`read_to_end`], telling `span` first, once the partitions' ends are known, how many offsets
/// lie between their beginnings and their ends: an upper bound of the records `f` will see
/// (compacted, deleted and transaction-marker offsets hold no record). A restore reports its
/// progress against it.
pub fn read_to_end_counted(
    config: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
    deadline: Duration,
    span: impl FnOnce(u64),
    mut f: impl FnMut(RawRecord<'_>),
) -> Result<u64> {
    if partitions.is_empty() {
        span(0);
        return Ok(0);
    }
    let mut reader = ends_reader(config, topic)?;
    let mut ends = BTreeMap::new();
    let mut offsets = 0u64;
    for &p in partitions {
        let (low, high) = watermarks(config, &mut reader, topic, p, deadline)?;
        if high > low {
            offsets += (high - low) as u64;
            ends.insert(p, high);
        }
    }
    span(offsets);
    if ends.is_empty() {
        return Ok(0);
    }
    // The offset after the last record read, per partition.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut consumer = end_consumer(config, topic, &ends, &next)?;
    let started = Instant::now();
    let mut moved = Instant::now();
    let mut read = 0u64;
    // Records read since the clock was last read: while records flow, the clock is read once
    // per `CLOCK_EVERY` records, not for each.
    let mut unclocked = 0u32;
    while !ends.is_empty() {
        if unclocked >= CLOCK_EVERY {
            unclocked = 0;
            moved = Instant::now();
        }
        if unclocked == 0 && started.elapsed() > deadline {
            return Err(ConnectorError::Timeout(format!(
                "reading `{topic}` to its end: partitions {:?} did not reach their end within {deadline:?} (an open transaction of another instance?)",
                ends.keys().collect::<Vec<_>>()
            )));
        }
        if unclocked == 0 && moved.elapsed() >= END_STALL {
            // Nothing for a while: an open transaction holds the reader back, or librdkafka
            // lost track of a partition's leader after a broker died (see `watermarks`). A new
            // client, from where this one got to, looks the leaders up afresh.
            log::debug!(
                "reading `{topic}` to its end: nothing for {END_STALL:?}; reading on with a new client"
            );
            consumer = end_consumer(config, topic, &ends, &next)?;
            moved = Instant::now();
        }
        match consumer.poll(END_POLL) {
            Some(Ok(message)) => {
                unclocked += 1;
                next.insert(message.partition(), message.offset() + 1);
                f(raw_record(topic, &message));
                read += 1;
                if message.offset() + 1
                    >= ends.get(&message.partition()).copied().unwrap_or(i64::MAX)
                {
                    ends.remove(&message.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {
                if unclocked > 0 {
                    unclocked = 0;
                    moved = Instant::now();
                }
                // At the end of what is committed: check positions against the high watermarks.
                let positions = consumer
                    .position()
                    .context(|| format!("reading positions in `{topic}`"))?;
                for element in positions.elements() {
                    if let Offset::Offset(position) = element.offset() {
                        if ends
                            .get(&element.partition())
                            .is_some_and(|&end| position >= end)
                        {
                            ends.remove(&element.partition());
                            moved = Instant::now();
                        }
                    }
                }
            }
            Some(Err(e)) => log::warn!("reading `{topic}` to its end: {e}"),
        }
    }
    Ok(read)
}
