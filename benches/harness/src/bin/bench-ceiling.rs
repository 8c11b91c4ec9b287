//! `bench-ceiling`: the benchmark's ceiling, a plain Kafka consume → produce passthrough of the
//! bids with no processing at all (key and value bytes as they are), to measure what this
//! machine and broker can do. W0 only.
//!
//! Takes the contract's flags (`benches/README.md`). Two threads, each a consumer and a producer
//! of its own over half of the partitions. `at_least_once`: every 100 ms the producer is flushed,
//! then the consumer's offsets are committed. `exactly_once`: a transactional producer per
//! thread; every 100 ms the consumer's positions are added to the transaction and it commits.
//! Runs until SIGTERM/SIGKILL.

use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use faustus_bench::kafka::{self, Error};
use faustus_bench::{Guarantee, Workload, COMMIT_INTERVAL_MS};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Exit code for "workload not supported".
const UNSUPPORTED: i32 = 3;
/// Consumer/producer pairs.
const THREADS: i32 = 2;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug, Clone)]
#[command(about = "The ceiling: a plain Kafka passthrough of the bids (W0 only)")]
struct Args {
    /// The workload (W0 only).
    #[arg(long)]
    workload: Workload,
    /// at_least_once or exactly_once.
    #[arg(long)]
    guarantee: Guarantee,
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Application id: the consumer group and the transactional ids' prefix.
    #[arg(long)]
    app_id: String,
    /// Output topic prefix.
    #[arg(long)]
    output_prefix: String,
    /// The bids topic.
    #[arg(long, default_value = "bench-bid")]
    bids: String,
    /// The persons topic (unused).
    #[arg(long)]
    persons: Option<String>,
    /// The auctions topic (unused).
    #[arg(long)]
    auctions: Option<String>,
    /// The words topic (unused).
    #[arg(long)]
    words: Option<String>,
    /// Drop every Nth record: a deliberately wrong system, to check that the harness rejects
    /// a wrong answer (0: never).
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Write every Nth record twice: a deliberately wrong system (0: never).
    #[arg(long, default_value_t = 0)]
    duplicate_every: u64,
}

fn passthrough(args: &Args, thread: i32, partitions: i32) -> Result<(), Error> {
    let output = format!("{}w0", args.output_prefix);
    let consumer: BaseConsumer = kafka::consumer(&args.brokers, &args.app_id, args.guarantee)
        .set("enable.auto.offset.store", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in (0..partitions).filter(|p| p % THREADS == thread) {
        assignment.add_partition_offset(&args.bids, p, Offset::Stored)?;
    }
    consumer.assign(&assignment)?;
    let mut config = kafka::producer(&args.brokers);
    let eos = args.guarantee == Guarantee::ExactlyOnce;
    if eos {
        config.set("transactional.id", format!("{}-{thread}", args.app_id));
    }
    let producer: BaseProducer = config.create()?;
    if eos {
        producer.init_transactions(TIMEOUT)?;
        producer.begin_transaction()?;
    }
    let interval = Duration::from_millis(COMMIT_INTERVAL_MS);
    let mut last_commit = Instant::now();
    let mut dirty = false;
    // Next offset to commit per partition.
    let mut positions: Vec<(i32, i64)> = Vec::new();
    let mut seen = 0u64;
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(10)) {
            // Consumer errors are reports (a coordinator that moved, a broker that is still
            // starting): librdkafka retries on its own, so the loop goes on.
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("bench-ceiling: consumer: {e} (retrying)");
                    continue;
                }
            };
            seen += 1;
            let copies = if args.drop_every > 0 && seen.is_multiple_of(args.drop_every) {
                0
            } else if args.duplicate_every > 0 && seen.is_multiple_of(args.duplicate_every) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut record: BaseRecord<'_, [u8], [u8]> =
                    BaseRecord::to(&output).partition(m.partition());
                if let Some(k) = m.key() {
                    record = record.key(k);
                }
                if let Some(v) = m.payload() {
                    record = record.payload(v);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => return Err(format!("producing to `{output}`: {e}").into()),
                    }
                }
            }
            match positions.iter_mut().find(|(p, _)| *p == m.partition()) {
                Some(entry) => entry.1 = m.offset() + 1,
                None => positions.push((m.partition(), m.offset() + 1)),
            }
            dirty = true;
        }
        producer.poll(Duration::ZERO);
        if dirty && last_commit.elapsed() >= interval {
            let mut offsets = TopicPartitionList::new();
            for &(p, next) in &positions {
                offsets.add_partition_offset(&args.bids, p, Offset::Offset(next))?;
            }
            if eos {
                let group = consumer
                    .group_metadata()
                    .ok_or("the consumer has no group metadata")?;
                producer.send_offsets_to_transaction(&offsets, &group, TIMEOUT)?;
                producer.commit_transaction(TIMEOUT)?;
                producer.begin_transaction()?;
            } else {
                producer.flush(TIMEOUT)?;
                consumer.commit(&offsets, CommitMode::Async)?;
            }
            last_commit = Instant::now();
            dirty = false;
        }
    }
}

fn main() {
    let args = Args::parse();
    if args.workload != Workload::W0 {
        eprintln!("bench-ceiling: the ceiling runs W0 only");
        std::process::exit(UNSUPPORTED);
    }
    let partitions = match kafka::partitions(&args.brokers, &args.bids) {
        Ok(Some(n)) => n,
        Ok(None) => {
            eprintln!("bench-ceiling: error: no topic `{}`", args.bids);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bench-ceiling: error: {e}");
            std::process::exit(1);
        }
    };
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let args = args.clone();
            thread::spawn(move || passthrough(&args, t, partitions))
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("bench-ceiling: error: {e}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("bench-ceiling: a thread panicked");
                std::process::exit(1);
            }
        }
    }
}
