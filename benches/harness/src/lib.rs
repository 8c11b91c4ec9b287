//! The faustus benchmark harness: the shared data model of the side-by-side benchmarks.
//!
//! Every system under test (the `ceiling` passthrough, faustus, Kafka Streams, Faust) reads the
//! same input topics and writes the same output topics in the same JSON shapes, so that one
//! checker can compare each system's answer with the model before its timing is trusted. The
//! contract is written out in `benches/README.md` ("The harness contract"); the types here are
//! its Rust form. Keyed records are partitioned like the Java client:
//! [`faustus_connectors::kafka_partition`] (murmur2 of the key bytes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub mod check;
pub mod kafka;
pub mod latency;
pub mod model;
pub mod process;
pub mod procstat;
pub mod report;

/// Fixed base time of the generated Nexmark stream (ms since the Unix epoch), so every load of
/// the same size is byte-for-byte the same.
pub const NEXMARK_BASE_TIME_MS: u64 = 1_700_000_000_000;

/// Commit interval every system runs with, in milliseconds.
pub const COMMIT_INTERVAL_MS: u64 = 100;

/// Size of a W3 q5 hopping window, in milliseconds.
pub const Q5_SIZE_MS: u64 = 10_000;
/// Advance of a W3 q5 hopping window, in milliseconds.
pub const Q5_HOP_MS: u64 = 2_000;
/// Size of a W3 q7 tumbling window, in milliseconds.
pub const Q7_SIZE_MS: u64 = 10_000;
/// The W4 q8 join window: a person and an auction join when their times differ by at most this.
pub const Q8_WITHIN_MS: u64 = 10_000;
/// Grace of every windowed operator: longer than any generated stream, so nothing is late.
pub const GRACE_MS: u64 = 3_600_000;

/// A Nexmark person, as JSON on the `persons` topic (key: the id as a JSON number).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Person {
    /// Person id.
    pub id: u64,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email_address: String,
    /// Credit card number.
    pub credit_card: String,
    /// City.
    pub city: String,
    /// US state, lower case (`or`, `id`, `ca`, ...).
    pub state: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// Padding.
    pub extra: String,
}

/// A Nexmark auction, as JSON on the `auctions` topic (key: the id as a JSON number).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id.
    pub id: u64,
    /// Item name.
    pub item_name: String,
    /// Description.
    pub description: String,
    /// Initial bid.
    pub initial_bid: u64,
    /// Reserve price.
    pub reserve: u64,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// Expiry time, ms since the Unix epoch.
    pub expires: u64,
    /// Id of the selling person.
    pub seller: u64,
    /// Category id (10..=14).
    pub category: u64,
    /// Padding.
    pub extra: String,
}

/// A Nexmark bid, as JSON on the `bids` topic (key: the auction id as a JSON number).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Bid {
    /// Auction id.
    pub auction: u64,
    /// Bidder (person) id.
    pub bidder: u64,
    /// Price.
    pub price: u64,
    /// Channel.
    pub channel: String,
    /// URL.
    pub url: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// Padding.
    pub extra: String,
}

/// W1 q1 output value: the bid with its price converted, `price * 908 / 1000` in integers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q1 {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// `bid.price * 908 / 1000` (integer division).
    pub price: u64,
    /// Event time of the bid.
    pub date_time: u64,
}

/// W1 q2 output value: bids on auctions whose id is a multiple of 123.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q2 {
    /// Auction id (a multiple of 123).
    pub auction: u64,
    /// Price.
    pub price: u64,
}

/// W4 q3 output value: an auction in category 10 whose seller lives in `or`, `id` or `ca`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q3 {
    /// Seller's name.
    pub name: String,
    /// Seller's city.
    pub city: String,
    /// Seller's state.
    pub state: String,
    /// Auction id.
    pub id: u64,
}

/// W4 q8 output value: a person who opened an auction within `Q8_WITHIN_MS` of appearing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q8 {
    /// Person id.
    pub id: u64,
    /// Person's name.
    pub name: String,
    /// Auction id.
    pub auction: u64,
}

/// The `q1` map of W1.
pub fn q1(bid: &Bid) -> Q1 {
    Q1 {
        auction: bid.auction,
        bidder: bid.bidder,
        price: bid.price * 908 / 1000,
        date_time: bid.date_time,
    }
}

/// The `q2` filter of W1.
pub fn q2(bid: &Bid) -> Option<Q2> {
    bid.auction.is_multiple_of(123).then_some(Q2 {
        auction: bid.auction,
        price: bid.price,
    })
}

/// The W4 q3 auction filter.
pub fn q3_auction(auction: &Auction) -> bool {
    auction.category == 10
}

/// The W4 q3 person filter.
pub fn q3_person(person: &Person) -> bool {
    matches!(person.state.as_str(), "or" | "id" | "ca")
}

/// Start of the tumbling window of `size_ms` holding `t`.
pub fn window_start(t: u64, size_ms: u64) -> u64 {
    t - t % size_ms
}

/// Starts of the hopping windows (`size_ms`, advancing `hop_ms`) holding `t`, oldest first.
pub fn hopping_starts(t: u64, size_ms: u64, hop_ms: u64) -> Vec<u64> {
    let last = t - t % hop_ms;
    let mut starts = Vec::new();
    let mut s = last as i128;
    while s > t as i128 - size_ms as i128 {
        if s >= 0 {
            starts.push(s as u64);
        }
        s -= hop_ms as i128;
    }
    starts.reverse();
    starts
}

/// One generated Nexmark event, converted to the contract's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new person (topic `bench-person`).
    Person(Person),
    /// A new auction (topic `bench-auction`).
    Auction(Auction),
    /// A bid (topic `bench-bid`).
    Bid(Bid),
}

impl Event {
    /// Event time, ms since the Unix epoch.
    pub fn date_time(&self) -> u64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// The first `n` events of the benchmark's Nexmark stream: nexmark 0.2.0's default configuration
/// with `base_time` fixed to [`NEXMARK_BASE_TIME_MS`], so the same `n` always gives the same events.
pub fn nexmark_events(n: usize) -> impl Iterator<Item = Event> {
    let config = nexmark::config::NexmarkConfig {
        base_time: NEXMARK_BASE_TIME_MS,
        ..Default::default()
    };
    nexmark::EventGenerator::new(config)
        .take(n)
        .map(|event| match event {
            nexmark::event::Event::Person(p) => Event::Person(Person {
                id: p.id as u64,
                name: p.name,
                email_address: p.email_address,
                credit_card: p.credit_card,
                city: p.city,
                state: p.state,
                date_time: p.date_time,
                extra: p.extra,
            }),
            nexmark::event::Event::Auction(a) => Event::Auction(Auction {
                id: a.id as u64,
                item_name: a.item_name,
                description: a.description,
                initial_bid: a.initial_bid as u64,
                reserve: a.reserve as u64,
                date_time: a.date_time,
                expires: a.expires,
                seller: a.seller as u64,
                category: a.category as u64,
                extra: a.extra,
            }),
            nexmark::event::Event::Bid(b) => Event::Bid(Bid {
                auction: b.auction as u64,
                bidder: b.bidder as u64,
                price: b.price as u64,
                channel: b.channel,
                url: b.url,
                date_time: b.date_time,
                extra: b.extra,
            }),
        })
}

/// Seed of the word generator.
pub const WORDS_SEED: u64 = 0x5eed_f00d;

/// A Zipf (exponent 1.0) sampler over ranks `1..=vocabulary`, driven by a fixed-seed splitmix64,
/// so the same `(vocabulary, n)` always gives the same words.
#[derive(Clone, Debug)]
pub struct ZipfWords {
    cdf: Vec<f64>,
    state: u64,
}

impl ZipfWords {
    /// A sampler over `vocabulary` words (at least 1).
    pub fn new(vocabulary: usize) -> Self {
        assert!(vocabulary > 0, "the vocabulary must hold at least one word");
        let mut cdf = Vec::with_capacity(vocabulary);
        let mut total = 0.0;
        for rank in 1..=vocabulary {
            total += 1.0 / rank as f64;
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        ZipfWords {
            cdf,
            state: WORDS_SEED,
        }
    }

    /// The next rank, in `1..=vocabulary`.
    pub fn next_rank(&mut self) -> usize {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) + 1
    }
}

/// The word of a rank: `w<rank>`.
pub fn word(rank: usize) -> String {
    format!("w{rank}")
}

/// The first `n` words of the benchmark's word stream over `vocabulary` words.
pub fn zipf_words(vocabulary: usize, n: usize) -> impl Iterator<Item = String> {
    let mut sampler = ZipfWords::new(vocabulary);
    (0..n).map(move |_| word(sampler.next_rank()))
}

/// The first `n` words of the scale-point stream over `vocabulary` words: every word of the
/// vocabulary once, in a fixed shuffled order, then Zipf draws (as [`zipf_words`]), so the stream
/// holds exactly `vocabulary` distinct words when `n >= vocabulary`.
pub fn all_words(vocabulary: usize, n: usize) -> impl Iterator<Item = String> {
    let mut order: Vec<usize> = (1..=vocabulary).collect();
    let mut state = WORDS_SEED ^ 0xa11_c0de;
    for i in (1..order.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        order.swap(i, (z % (i as u64 + 1)) as usize);
    }
    let mut sampler = ZipfWords::new(vocabulary);
    order
        .into_iter()
        .map(word)
        .chain(std::iter::repeat_with(move || word(sampler.next_rank())))
        .take(n)
}

/// A workload of the side-by-side benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// Passthrough of the bids.
    W0,
    /// Stateless map and filter (q1, q2).
    W1,
    /// Word count into a table with its changelog.
    W2,
    /// Windows (q5 hopping, q7 tumbling).
    W3,
    /// Joins (q3 incremental table join, q8 windowed stream join).
    W4,
}

impl Workload {
    /// Every workload, in order.
    pub const ALL: [Workload; 5] = [
        Workload::W0,
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
    ];

    /// The workload's output topics, as suffixes of the output prefix `P`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Workload::W0 => &["w0"],
            Workload::W1 => &["w1-q1", "w1-q2"],
            Workload::W2 => &["w2"],
            Workload::W3 => &["w3-q5", "w3-q7"],
            Workload::W4 => &["w4-q3", "w4-q8"],
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "W0" => Ok(Workload::W0),
            "W1" => Ok(Workload::W1),
            "W2" => Ok(Workload::W2),
            "W3" => Ok(Workload::W3),
            "W4" => Ok(Workload::W4),
            other => Err(format!(
                "unknown workload `{other}` (expected W0, W1, W2, W3 or W4)"
            )),
        }
    }
}

/// A processing guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Guarantee {
    /// At-least-once.
    AtLeastOnce,
    /// Exactly-once (Kafka transactions; consumers read committed).
    ExactlyOnce,
}

impl Guarantee {
    /// The flag value: `at_least_once` or `exactly_once`.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once",
        }
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Guarantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "at_least_once" => Ok(Guarantee::AtLeastOnce),
            "exactly_once" => Ok(Guarantee::ExactlyOnce),
            other => Err(format!(
                "unknown guarantee `{other}` (expected at_least_once or exactly_once)"
            )),
        }
    }
}

/// Partitions of every input and output topic.
pub const PARTITIONS: i32 = 4;

/// Which input a run reads: a Nexmark prefix, a word stream, and the topic-name suffix they were
/// loaded under (so a smaller prefix can sit beside the full load). The same flags select what
/// `bench-gen` loads and what `bench-run` reads.
#[derive(Clone, Debug, PartialEq, Eq, Default, clap::Args)]
pub struct Inputs {
    /// Nexmark events (persons, auctions and bids together; W0, W1, W3, W4; 0: none).
    #[arg(long, default_value_t = 0)]
    pub events: usize,
    /// Words (W2; 0: none).
    #[arg(long, default_value_t = 0)]
    pub words: usize,
    /// Word vocabulary.
    #[arg(long, default_value_t = 100_000)]
    pub vocab: usize,
    /// The scale-point word stream `bench-words-all-<V>` (every word of the
    /// vocabulary once, then Zipf draws) instead of the Zipf-only one.
    #[arg(long)]
    pub all_words: bool,
    /// Appended to every input topic's name (e.g. `-faust` for a shorter prefix beside the
    /// full load; empty for the full load).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub suffix: String,
}

impl Inputs {
    /// The persons topic: `bench-person` + suffix.
    pub fn persons_topic(&self) -> String {
        format!("bench-person{}", self.suffix)
    }
    /// The auctions topic: `bench-auction` + suffix.
    pub fn auctions_topic(&self) -> String {
        format!("bench-auction{}", self.suffix)
    }
    /// The bids topic: `bench-bid` + suffix.
    pub fn bids_topic(&self) -> String {
        format!("bench-bid{}", self.suffix)
    }
    /// The words topic: `bench-words-<V>` (Zipf) or `bench-words-all-<V>` (scale point), + suffix.
    pub fn words_topic(&self) -> String {
        if self.all_words {
            format!("bench-words-all-{}{}", self.vocab, self.suffix)
        } else {
            format!("bench-words-{}{}", self.vocab, self.suffix)
        }
    }
    /// The word stream these inputs hold.
    pub fn word_stream(&self) -> Box<dyn Iterator<Item = String>> {
        if self.all_words {
            Box::new(all_words(self.vocab, self.words))
        } else {
            Box::new(zipf_words(self.vocab, self.words))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_cover_the_time() {
        assert_eq!(
            hopping_starts(10_500, 10_000, 2_000),
            vec![2_000, 4_000, 6_000, 8_000, 10_000]
        );
        assert_eq!(
            hopping_starts(10_000, 10_000, 2_000),
            vec![2_000, 4_000, 6_000, 8_000, 10_000]
        );
        assert_eq!(window_start(19_999, 10_000), 10_000);
    }

    #[test]
    fn generators_are_deterministic() {
        let a: Vec<_> = nexmark_events(500).collect();
        let b: Vec<_> = nexmark_events(500).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|e| matches!(e, Event::Person(_))));
        assert!(a.iter().any(|e| matches!(e, Event::Auction(_))));
        assert!(a.iter().all(|e| e.date_time() >= NEXMARK_BASE_TIME_MS));
        let w: Vec<_> = zipf_words(1000, 10_000).collect();
        assert_eq!(w, zipf_words(1000, 10_000).collect::<Vec<_>>());
        let top = w.iter().filter(|x| *x == "w1").count();
        let tenth = w.iter().filter(|x| *x == "w10").count();
        let all: Vec<_> = all_words(100, 150).collect();
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 100);
        assert_eq!(all, all_words(100, 150).collect::<Vec<_>>());
        assert!(
            top > 5 * tenth / 2,
            "w1 {top} vs w10 {tenth}: not Zipf-like"
        );
    }
}
