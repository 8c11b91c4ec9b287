//! `bench-faustus` on every workload against the real broker: small deterministic input from
//! the shared generators, the outputs read back and compared with answers computed here.
//!
//! The broker address comes from `FAUSTUS_TEST_BROKERS` (set by `scripts/test`); without it the
//! repository's broker is started with `scripts/kafka start`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use faustus_bench::process::System;
use faustus_bench::{hopping_starts, window_start, Event, GRACE_MS, Q5_HOP_MS, Q5_SIZE_MS};
use faustus_connectors::{ensure_topics, kafka_partition, read_to_end, TopicSpec};
use faustus_testkit::{brokers, kafka, unique, wait_until, TestProducer};
use serde::Serialize;

/// Nexmark events loaded.
const EVENTS: usize = 30_000;
/// Words loaded, and their vocabulary.
const WORDS: usize = 20_000;
const VOCABULARY: usize = 2_000;
/// How long a workload may take to produce its whole answer.
const DEADLINE: Duration = Duration::from_secs(90);

/// The input topics, loaded once for every test of this file.
struct Input {
    bids: String,
    auctions: String,
    persons: String,
    words: String,
}

fn json<T: Serialize>(x: &T) -> Vec<u8> {
    serde_json::to_vec(x).unwrap()
}

fn input() -> &'static Input {
    static INPUT: OnceLock<Input> = OnceLock::new();
    INPUT.get_or_init(|| {
        let base = unique("bench-app-in");
        let input = Input {
            bids: format!("{base}-bid"),
            auctions: format!("{base}-auction"),
            persons: format!("{base}-person"),
            words: format!("{base}-words"),
        };
        let specs: Vec<TopicSpec> = [&input.bids, &input.auctions, &input.persons, &input.words]
            .iter()
            .map(|t| TopicSpec::new(t.as_str(), 4))
            .collect();
        ensure_topics(&kafka(), &specs).expect("creating the input topics");
        let producer = TestProducer::new();
        let send = |topic: &str, key: Option<Vec<u8>>, value: Vec<u8>, i: usize| {
            let partition = match &key {
                Some(k) => kafka_partition(k, 4) as i32,
                None => (i % 4) as i32,
            };
            producer.send(topic, Some(partition), key.as_deref(), Some(&value));
        };
        for (i, event) in faustus_bench::nexmark_events(EVENTS).enumerate() {
            match event {
                Event::Person(p) => send(&input.persons, Some(json(&p.id)), json(&p), i),
                Event::Auction(a) => send(&input.auctions, Some(json(&a.id)), json(&a), i),
                Event::Bid(b) => send(&input.bids, Some(json(&b.auction)), json(&b), i),
            }
        }
        for (i, word) in faustus_bench::zipf_words(VOCABULARY, WORDS).enumerate() {
            send(&input.words, None, json(&word), i);
        }
        producer.flush();
        input
    })
}

/// Starts `bench-faustus` on `workload`; it is stopped (SIGTERM, then SIGKILL) when dropped.
fn start(workload: &str, prefix: &str) -> System {
    let input = input();
    System::spawn(
        Command::new(env!("CARGO_BIN_EXE_bench-faustus"))
            .args(["--workload", workload, "--guarantee", "exactly_once"])
            .args(["--brokers", &brokers()])
            .args(["--app-id", &unique(&format!("bench-app-{workload}"))])
            .args(["--output-prefix", prefix])
            .args(["--bids", &input.bids, "--auctions", &input.auctions])
            .args(["--persons", &input.persons, "--words", &input.words]),
    )
    .expect("starting bench-faustus")
}

/// Creates the output topics `prefix + suffix` (4 partitions, as the harness does).
fn outputs(prefix: &str, suffixes: &[&str]) {
    let specs: Vec<TopicSpec> = suffixes
        .iter()
        .map(|s| TopicSpec::new(format!("{prefix}{s}"), 4))
        .collect();
    ensure_topics(&kafka(), &specs).expect("creating the output topics");
}

/// The committed records of `topic`: (key, value) JSON bytes, `None` for a missing part.
type Raw = (Option<Vec<u8>>, Option<Vec<u8>>);

fn read(topic: &str) -> Vec<Raw> {
    let mut records = Vec::new();
    read_to_end(
        &kafka(),
        topic,
        &[0, 1, 2, 3],
        Duration::from_secs(30),
        |r| records.push((r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec))),
    )
    .expect("reading an output topic");
    records
}

/// Streams compare as multisets.
fn multiset(mut records: Vec<Raw>) -> Vec<Raw> {
    records.sort();
    records
}

/// Tables compare by their last value per key (a `null` value deletes the key).
fn table(records: Vec<Raw>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut last = BTreeMap::new();
    for (key, value) in records {
        let key = key.expect("table updates have keys");
        match value {
            Some(v) if v != b"null" => {
                last.insert(key, v);
            }
            _ => {
                last.remove(&key);
            }
        }
    }
    last
}

/// Waits until `topic`, read with `view`, equals `expected`.
fn wait_for_answer<T: PartialEq + std::fmt::Debug>(
    topic: &str,
    expected: &T,
    view: impl Fn(Vec<Raw>) -> T,
) {
    let what = format!("`{topic}` to hold the expected answer");
    wait_until(&what, DEADLINE, expected, || view(read(topic)));
}

fn events() -> Vec<Event> {
    faustus_bench::nexmark_events(EVENTS).collect()
}

fn bids() -> Vec<faustus_bench::Bid> {
    events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Bid(b) => Some(b),
            _ => None,
        })
        .collect()
}

fn keyed<K: Serialize, V: Serialize>(k: &K, v: &V) -> Raw {
    (Some(json(k)), Some(json(v)))
}

#[test]
fn w0_passes_every_bid_through() {
    let prefix = unique("bench-app-out-w0") + "-";
    outputs(&prefix, &["w0"]);
    let expected = multiset(bids().iter().map(|b| keyed(&b.auction, b)).collect());
    let _app = start("W0", &prefix);
    wait_for_answer(&format!("{prefix}w0"), &expected, multiset);
}

#[test]
fn w1_maps_and_filters_bids() {
    let prefix = unique("bench-app-out-w1") + "-";
    outputs(&prefix, &["w1-q1", "w1-q2"]);
    let bids = bids();
    let q1 = multiset(
        bids.iter()
            .map(|b| keyed(&b.auction, &faustus_bench::q1(b)))
            .collect(),
    );
    let q2 = multiset(
        bids.iter()
            .filter_map(|b| faustus_bench::q2(b).map(|q| keyed(&b.auction, &q)))
            .collect(),
    );
    assert!(!q2.is_empty(), "the input has q2 bids");
    let _app = start("W1", &prefix);
    wait_for_answer(&format!("{prefix}w1-q1"), &q1, multiset);
    wait_for_answer(&format!("{prefix}w1-q2"), &q2, multiset);
}

#[test]
fn w2_counts_words_into_a_table() {
    let prefix = unique("bench-app-out-w2") + "-";
    outputs(&prefix, &["w2"]);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for word in faustus_bench::zipf_words(VOCABULARY, WORDS) {
        *counts.entry(word).or_insert(0) += 1;
    }
    let expected: BTreeMap<Vec<u8>, Vec<u8>> =
        counts.iter().map(|(w, n)| (json(w), json(n))).collect();
    let _app = start("W2", &prefix);
    wait_for_answer(&format!("{prefix}w2"), &expected, table);
}

#[test]
fn w3_counts_hopping_windows_and_takes_tumbling_maxima() {
    let prefix = unique("bench-app-out-w3") + "-";
    outputs(&prefix, &["w3-q5", "w3-q7"]);
    let bids = bids();
    let last = bids.iter().map(|b| b.date_time).max().unwrap();
    assert!(last - bids[0].date_time < GRACE_MS, "nothing is late");
    let mut q5: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut q7: BTreeMap<u64, u64> = BTreeMap::new();
    for b in &bids {
        for ws in hopping_starts(b.date_time, Q5_SIZE_MS, Q5_HOP_MS) {
            *q5.entry((b.auction, ws)).or_insert(0) += 1;
        }
        let max = q7
            .entry(window_start(b.date_time, faustus_bench::Q7_SIZE_MS))
            .or_insert(0);
        *max = (*max).max(b.price);
    }
    let q5: BTreeMap<_, _> = q5.iter().map(|(k, n)| (json(k), json(n))).collect();
    let q7: BTreeMap<_, _> = q7.iter().map(|(k, m)| (json(k), json(m))).collect();
    let _app = start("W3", &prefix);
    wait_for_answer(&format!("{prefix}w3-q5"), &q5, table);
    wait_for_answer(&format!("{prefix}w3-q7"), &q7, table);
}

#[test]
fn w4_joins_auctions_with_their_sellers() {
    let prefix = unique("bench-app-out-w4") + "-";
    outputs(&prefix, &["w4-q3", "w4-q8"]);
    let events = events();
    let persons: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Person(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let auctions: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Auction(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let by_id: BTreeMap<u64, &faustus_bench::Person> = persons.iter().map(|p| (p.id, p)).collect();
    let q3: BTreeMap<_, _> = auctions
        .iter()
        .filter(|a| faustus_bench::q3_auction(a))
        .filter_map(|a| {
            let p = by_id
                .get(&a.seller)
                .filter(|p| faustus_bench::q3_person(p))?;
            let row = faustus_bench::Q3 {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                id: a.id,
            };
            Some((json(&a.id), json(&row)))
        })
        .collect();
    assert!(!q3.is_empty(), "the input has q3 results");
    let q8 = multiset(
        auctions
            .iter()
            .filter_map(|a| {
                let p = by_id.get(&a.seller)?;
                (p.date_time.abs_diff(a.date_time) <= faustus_bench::Q8_WITHIN_MS).then(|| {
                    let row = faustus_bench::Q8 {
                        id: p.id,
                        name: p.name.clone(),
                        auction: a.id,
                    };
                    keyed(&p.id, &row)
                })
            })
            .collect(),
    );
    assert!(!q8.is_empty(), "the input has q8 results");
    let _app = start("W4", &prefix);
    wait_for_answer(&format!("{prefix}w4-q3"), &q3, table);
    wait_for_answer(&format!("{prefix}w4-q8"), &q8, multiset);
}
