//! The faustus benchmark harness: the shared data model of the side-by-side benchmarks.
//!
//! Every system under test (the `ceiling` passthrough, faustus, Kafka Streams, Faust) reads the
//! same input topics and writes the same output topics in the same JSON shapes, so that one
//! checker can compare each system's answer with the model before its timing is trusted. The
//! contract is written out in `benches/README.md` ("The harness contract"); the types here are
//! its Rust form.

use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Q2 {
    /// Auction id (a multiple of 123).
    pub auction: u64,
    /// Price.
    pub price: u64,
}

/// W4 q3 output value: an auction in category 10 whose seller lives in `or`, `id` or `ca`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    (bid.auction % 123 == 0).then_some(Q2 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_cover_the_time() {
        assert_eq!(hopping_starts(10_500, 10_000, 2_000), vec![2_000, 4_000, 6_000, 8_000, 10_000]);
        assert_eq!(hopping_starts(10_000, 10_000, 2_000), vec![2_000, 4_000, 6_000, 8_000, 10_000]);
        assert_eq!(window_start(19_999, 10_000), 10_000);
    }
}
