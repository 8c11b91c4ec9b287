//! The benchmark's records, as a faustus program declares them: the fields (and field order) of
//! the contract's types in `faustus_bench`, with the derives faustus asks of data (ordered,
//! hashable), so that decoding and re-encoding gives back the same JSON.

use serde::{Deserialize, Serialize};

/// A Nexmark person (topic `bench-person`, keyed by id).
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
    /// US state, lower case.
    pub state: String,
    /// Event time, ms since the Unix epoch.
    pub date_time: u64,
    /// Padding.
    pub extra: String,
}

/// A Nexmark auction (topic `bench-auction`, keyed by id).
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
    /// Category id.
    pub category: u64,
    /// Padding.
    pub extra: String,
}

/// A Nexmark bid (topic `bench-bid`, keyed by auction id).
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

/// W1 q1: a bid with its price converted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q1 {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// `price * 908 / 1000`.
    pub price: u64,
    /// Event time of the bid.
    pub date_time: u64,
}

/// W1 q2: a bid on an auction whose id is a multiple of 123.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q2 {
    /// Auction id.
    pub auction: u64,
    /// Price.
    pub price: u64,
}

/// W4 q3: an auction in category 10 with its seller in `or`, `id` or `ca`.
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

/// W4 q8: a person who opened an auction within 10 s of appearing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Q8 {
    /// Person id.
    pub id: u64,
    /// Person's name.
    pub name: String,
    /// Auction id.
    pub auction: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use faustus_bench::Event;

    /// Decoding a contract record into this crate's type and encoding it again gives the same
    /// bytes.
    fn same_json<C: Serialize, T: Serialize + serde::de::DeserializeOwned>(record: &C) {
        let bytes = serde_json::to_vec(record).unwrap();
        let ours: T = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json::to_vec(&ours).unwrap(), bytes);
    }

    #[test]
    fn records_round_trip_to_the_contracts_json() {
        for event in faustus_bench::nexmark_events(2_000) {
            match event {
                Event::Person(p) => same_json::<_, Person>(&p),
                Event::Auction(a) => same_json::<_, Auction>(&a),
                Event::Bid(b) => {
                    same_json::<_, Bid>(&b);
                    same_json::<_, Q1>(&faustus_bench::q1(&b));
                }
            }
        }
        same_json::<_, Q2>(&faustus_bench::Q2 {
            auction: 246,
            price: 7,
        });
        same_json::<_, Q3>(&faustus_bench::Q3 {
            name: "n".into(),
            city: "c".into(),
            state: "or".into(),
            id: 1,
        });
        same_json::<_, Q8>(&faustus_bench::Q8 {
            id: 1,
            name: "n".into(),
            auction: 2,
        });
    }
}
