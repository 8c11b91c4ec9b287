//! Waiting for a producer's records to be delivered without rust-rdkafka's 100 ms floor.
//!
//! rust-rdkafka's `flush` polls the producer's event queue in slices of 100 ms, and a poll runs
//! to the end of its slice even after the last delivery report has come: a flush with anything
//! in flight takes at least 100 ms, and so does `commit_transaction`, which flushes first. On a
//! producer whose delivery reports another thread handles (`ThreadedProducer`,
//! `FutureProducer`), [`flush_promptly`] waits for that thread instead, and returns within a
//! millisecond of the last report. For an epoch's transaction that is the difference between a
//! commit of a few milliseconds and one of over 100.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaResult;
use rdkafka::producer::{Producer, ProducerContext};

/// The longest pause between two looks at the records in flight.
const MAX_PAUSE: Duration = Duration::from_millis(1);

/// Waits, up to `timeout`, until every record `producer` has sent is delivered or has failed and
/// its delivery report is handled, then flushes (which then has nothing to wait for). Only for
/// producers whose delivery reports a thread of their own handles; an error as `flush`'s when
/// the time runs out.
pub fn flush_promptly<C, P>(producer: &P, timeout: Duration) -> KafkaResult<()>
where
    C: ProducerContext,
    P: Producer<C>,
{
    let deadline = Instant::now() + timeout;
    // A flush with no time to wait still tells librdkafka to send what it holds now; it fails
    // with a timeout at once, which is expected here.
    let _ = producer.flush(Duration::ZERO);
    let mut pause = Duration::from_micros(50);
    while producer.in_flight_count() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
    }
    producer.flush(deadline.saturating_duration_since(Instant::now()))
}

/// [`flush_promptly`], then commits the producer's transaction (whose own flush then returns at
/// once).
pub fn commit_promptly<C, P>(producer: &P, timeout: Duration) -> KafkaResult<()>
where
    C: ProducerContext,
    P: Producer<C>,
{
    let deadline = Instant::now() + timeout;
    flush_promptly(producer, timeout)?;
    producer.commit_transaction(deadline.saturating_duration_since(Instant::now()))
}
