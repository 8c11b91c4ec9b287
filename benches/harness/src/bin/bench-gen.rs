//! `bench-gen`: creates the benchmark's input topics and loads them with the deterministic
//! Nexmark events and words (see `benches/README.md`).
//!
//! ```text
//! bench-gen --brokers HOST:PORT [--events N] [--words N --vocab V [--all-words]] [--suffix S]
//! ```
//!
//! A topic that already holds exactly the expected number of records is left as it is; one that
//! holds anything else is deleted and loaded again.

use std::time::{Duration, Instant};

use clap::Parser;
use faustus_bench::kafka::{self, Error};
use faustus_bench::{nexmark_events, Event, Inputs};
use faustus_connectors::kafka_partition;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Parser, Debug)]
#[command(about = "Creates and loads the benchmark's input topics")]
struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// What to load.
    #[command(flatten)]
    inputs: Inputs,
}

type Record = (Option<Vec<u8>>, Vec<u8>, i32);

/// Loads topics from one pass over `records` (each tagged with the index of its topic in
/// `topics`, given with its expected record count). A topic that already holds exactly its
/// expected count is left as it is; one that holds anything else is recreated.
fn load(
    brokers: &str,
    topics: &[(String, u64)],
    records: impl Iterator<Item = (usize, Record)>,
) -> Result<(), Error> {
    let mut wanted = vec![false; topics.len()];
    for (i, (topic, expected)) in topics.iter().enumerate() {
        match kafka::record_count(brokers, topic)? {
            Some(n) if n == *expected => {
                eprintln!("bench-gen: {topic} already holds its {n} records");
                continue;
            }
            Some(n) => {
                eprintln!("bench-gen: {topic} holds {n} records, not {expected}: recreating it");
                kafka::delete_topics(brokers, std::slice::from_ref(topic))?;
            }
            None => {}
        }
        kafka::create_topics(brokers, std::slice::from_ref(topic))?;
        wanted[i] = true;
    }
    if !wanted.contains(&true) {
        return Ok(());
    }
    let started = Instant::now();
    let producer: ThreadedProducer<DefaultProducerContext> = kafka::client(brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "50")
        .set("batch.size", "1048576")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let mut sent = vec![0u64; topics.len()];
    for (i, (key, value, partition)) in records {
        if !wanted[i] {
            continue;
        }
        let topic = topics[i].0.as_str();
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
            .payload(value.as_slice())
            .partition(partition);
        if let Some(k) = &key {
            record = record.key(k.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(format!("producing to `{topic}`: {e}").into()),
            }
        }
        sent[i] += 1;
    }
    producer
        .flush(Duration::from_secs(300))
        .map_err(|e| format!("flushing the producer: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    for (i, (topic, expected)) in topics.iter().enumerate() {
        if !wanted[i] {
            continue;
        }
        let count = kafka::record_count(brokers, topic)?.unwrap_or(0);
        if count != sent[i] || sent[i] != *expected {
            return Err(format!(
                "`{topic}` holds {count} records after producing {} (expected {expected})",
                sent[i]
            )
            .into());
        }
        eprintln!("bench-gen: loaded {count} records into {topic} ({secs:.1} s for this pass)");
    }
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializing a generated record")
}

fn keyed(key: u64, value: Vec<u8>) -> Record {
    let key = json(&key);
    let partition = kafka_partition(&key, faustus_bench::PARTITIONS as u32) as i32;
    (Some(key), value, partition)
}

fn run(args: Args) -> Result<(), Error> {
    if args.inputs.all_words && args.inputs.words < args.inputs.vocab {
        return Err(format!(
            "--all-words needs --words ({}) >= --vocab ({})",
            args.inputs.words, args.inputs.vocab
        )
        .into());
    }
    if args.inputs.words > 0 && args.inputs.vocab == 0 {
        return Err("--vocab must be at least 1".into());
    }
    let inputs = args.inputs.clone();
    let brokers = args.brokers.as_str();
    if inputs.events > 0 {
        let counts = faustus_bench::model::InputCounts::of(&inputs);
        let topics = [
            (inputs.persons_topic(), counts.persons),
            (inputs.auctions_topic(), counts.auctions),
            (inputs.bids_topic(), counts.bids),
        ];
        load(
            brokers,
            &topics,
            nexmark_events(inputs.events).map(|e| match e {
                Event::Person(p) => (0, keyed(p.id, json(&p))),
                Event::Auction(a) => (1, keyed(a.id, json(&a))),
                Event::Bid(b) => (2, keyed(b.auction, json(&b))),
            }),
        )?;
    }
    if inputs.words > 0 {
        let partitions = faustus_bench::PARTITIONS as usize;
        load(
            brokers,
            &[(inputs.words_topic(), inputs.words as u64)],
            inputs
                .word_stream()
                .enumerate()
                .map(|(i, w)| (0, (None, json(&w), (i % partitions) as i32))),
        )?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("bench-gen: error: {e}");
        std::process::exit(1);
    }
}
