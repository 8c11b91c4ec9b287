//! The benchmark workloads W0–W4 as faustus programs (see `benches/README.md`, "The harness
//! contract").

use std::time::Duration;

use faustus::prelude::*;
use faustus_bench::{GRACE_MS, Q5_HOP_MS, Q5_SIZE_MS, Q7_SIZE_MS, Q8_WITHIN_MS};

use faustus::agent::{Agent, Event, Ordering};
use faustus_bench::{Auction, Bid, Person, Q1, Q2, Q3, Q8};

/// A workload of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Passthrough: bids decoded and re-encoded.
    #[value(name = "W0")]
    W0,
    /// Stateless map and filter: Nexmark q1 and q2.
    #[value(name = "W1")]
    W1,
    /// Word count into a table with a changelog.
    #[value(name = "W2")]
    W2,
    /// Windows: q5 (hopping) and q7 (tumbling).
    #[value(name = "W3")]
    W3,
    /// Joins: q3 (incremental table⋈table by foreign key) and q8 (windowed stream⋈stream).
    #[value(name = "W4")]
    W4,
}

/// The topics a workload reads and writes.
#[derive(Clone, Debug)]
pub struct Topics {
    /// Bids.
    pub bids: String,
    /// Auctions.
    pub auctions: String,
    /// Persons.
    pub persons: String,
    /// Words.
    pub words: String,
    /// Prefix of the output topics; `None` builds the workload's tables without writing its
    /// outputs (the restore probe).
    pub output_prefix: Option<String>,
}

impl Topics {
    /// The output topic `suffix` (`w0`, `w1-q1`, ...), if outputs are written.
    fn output<K, V>(&self, suffix: &str) -> Option<Topic<K, V>>
    where
        K: Serialize + serde::de::DeserializeOwned + 'static,
        V: Serialize + serde::de::DeserializeOwned + 'static,
    {
        self.output_prefix
            .as_ref()
            .map(|prefix| Topic::new(format!("{prefix}{suffix}")))
    }
}

/// The name of the W2 counts table (its changelog is `<app id>-word-counts-changelog`).
pub const WORD_COUNTS: &str = "word-counts";

/// Builds workload `workload` on `df`.
pub fn build(df: &Dataflow<'_>, workload: Workload, topics: &Topics) {
    match workload {
        Workload::W0 => w0(df, topics),
        Workload::W1 => w1(df, topics),
        Workload::W2 => w2(df, topics),
        Workload::W3 => w3(df, topics),
        Workload::W4 => w4(df, topics),
    }
}

/// W0: every bid, decoded and re-encoded, under its input key.
fn w0(df: &Dataflow<'_>, topics: &Topics) {
    let bids = df.stream(&Topic::<u64, Bid>::new(&topics.bids));
    if let Some(out) = topics.output("w0") {
        bids.to_topic(&out);
    }
}

/// W0 as an agent: every bid, decoded, handed to an async handler that waits `sleep` (zero: a
/// trivial handler; 10 ms: an I/O-bound one), re-encoded and sent under its input key, with
/// `concurrency` handlers at a time, in per-key order unless `unordered`.
pub fn w0_agent(
    topics: &Topics,
    sleep: Duration,
    concurrency: usize,
    unordered: bool,
) -> Agent<u64, Bid> {
    let bids = Topic::<u64, Bid>::new(&topics.bids);
    let out: Option<Topic<u64, Bid>> = topics.output("w0");
    let ordering = match unordered {
        true => Ordering::Unordered,
        false => Ordering::PerKey,
    };
    let mut agent = Agent::new("w0", &bids)
        .concurrency(concurrency)
        .ordering(ordering)
        .max_in_flight(concurrency.max(1024));
    if let Some(out) = &out {
        agent = agent.sends_to(out);
    }
    agent.handler(move |event: Event<u64, Bid>| {
        let out = out.clone();
        async move {
            if !sleep.is_zero() {
                tokio::time::sleep(sleep).await;
            }
            if let Some(out) = &out {
                event.send_record(
                    out,
                    event.key_ref(),
                    Some(event.value_ref()),
                    faustus::Headers::new(),
                )?;
            }
            Ok(())
        }
    })
}

/// W1: q1 (every bid with its price converted) and q2 (bids on auctions `% 123 == 0`).
fn w1(df: &Dataflow<'_>, topics: &Topics) {
    let bids = df.stream(&Topic::<u64, Bid>::new(&topics.bids));
    let q1 = bids.clone().map_values(|b| Q1 {
        auction: b.auction,
        bidder: b.bidder,
        price: b.price * 908 / 1000,
        date_time: b.date_time,
    });
    let q2 = bids.filter(|_, b| b.auction % 123 == 0).map_values(|b| Q2 {
        auction: b.auction,
        price: b.price,
    });
    if let Some(out) = topics.output("w1-q1") {
        q1.to_topic(&out);
    }
    if let Some(out) = topics.output("w1-q2") {
        q2.to_topic(&out);
    }
}

/// W2: the count per word, a table with its changelog; its updates go to the output.
fn w2(df: &Dataflow<'_>, topics: &Topics) {
    let words = Topic::<(), String>::new(&topics.words);
    let counts = df
        .stream(&words)
        .map(|(), word| (word, ()))
        .count(WORD_COUNTS);
    if let Some(out) = topics.output::<String, i64>("w2") {
        counts.to_topic(&out);
    }
}

/// W3: q5, bids per auction per hopping window (10 s, advancing 2 s), keyed
/// `[auction, window start]`; q7, the highest price per tumbling 10 s window over all bids,
/// keyed by the window start. Event time is the bid's `date_time`.
fn w3(df: &Dataflow<'_>, topics: &Topics) {
    let grace = Duration::from_millis(GRACE_MS);
    let bids = df.stream(&Topic::<u64, Bid>::new(&topics.bids));
    let q5 = bids
        .clone()
        .map_values(|b| b.date_time)
        .event_time(|_, t| *t)
        .grace(grace)
        .hopping(
            Duration::from_millis(Q5_SIZE_MS),
            Duration::from_millis(Q5_HOP_MS),
        )
        .count("q5");
    let q7 = bids
        .map(|_, b| ((), (b.date_time, b.price)))
        .event_time(|_, (t, _)| *t)
        .grace(grace)
        .tumbling(Duration::from_millis(Q7_SIZE_MS))
        .aggregate(
            "q7",
            0u64,
            |max, (_, price)| *max = (*max).max(*price),
            |max, other| *max = (*max).max(other),
        );
    // Window rows leave the tables (a `null` value) only when they expire, an hour of stream
    // time after they close.
    if let Some(out) = topics.output::<(u64, u64), Option<i64>>("w3-q5") {
        q5.changes()
            .map(|(auction, window), count| ((auction, window.start), count))
            .to_topic(&out);
    }
    if let Some(out) = topics.output::<u64, Option<u64>>("w3-q7") {
        q7.changes()
            .map(|((), window), max| (window.start, max))
            .to_topic(&out);
    }
}

/// W4: q3, the incremental join of auctions in category 10 (a table keyed by id) with their
/// sellers among the persons in `or`, `id` or `ca` (a table keyed by id), by foreign key
/// `seller`; q8, persons joined with the auctions they open within 10 s (a windowed
/// stream⋈stream join on person id = seller).
fn w4(df: &Dataflow<'_>, topics: &Topics) {
    let persons = df.stream(&Topic::<u64, Person>::new(&topics.persons));
    let auctions = df.stream(&Topic::<u64, Auction>::new(&topics.auctions));

    let category_10 = auctions
        .clone()
        .filter(|_, a| a.category == 10)
        .map(|id, a| (id, Some(a)))
        .upsert("q3-auctions");
    let sellers = persons
        .clone()
        .filter(|_, p| matches!(p.state.as_str(), "or" | "id" | "ca"))
        .map(|id, p| (id, Some(p)))
        .upsert("q3-persons");
    let q3 = category_10.fk_join(&sellers, |a: &Auction| Some(a.seller));
    if let Some(out) = topics.output::<u64, Option<Q3>>("w4-q3") {
        q3.changes()
            .map_values(|row| {
                row.map(|(a, p)| Q3 {
                    name: p.name,
                    city: p.city,
                    state: p.state,
                    id: a.id,
                })
            })
            .to_topic(&out);
    }

    let grace = Duration::from_millis(GRACE_MS);
    let q8 = persons
        .event_time(|_, p| p.date_time)
        .within(Duration::from_millis(Q8_WITHIN_MS))
        .grace(grace)
        .join(
            "q8-person-auctions",
            auctions
                .map(|_, a| (a.seller, a))
                .event_time(|_, a| a.date_time),
        )
        .map(|id, (p, a)| {
            (
                id,
                Q8 {
                    id: p.id,
                    name: p.name,
                    auction: a.id,
                },
            )
        });
    if let Some(out) = topics.output("w4-q8") {
        q8.to_topic(&out);
    }
}
