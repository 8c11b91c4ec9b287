//! The expected answer of each workload, computed from the same generators that loaded the input.
//!
//! Answers are kept compact so that runs over millions of events fit in memory:
//! - a **stream** output (W0, W1, W4 q8) is a multiset of records, kept as a [`Digest`]: the
//!   record count and the wrapping sum of a 64-bit hash of each record's canonical JSON;
//! - a **table** output (W2, W3, W4 q3) is the last value per key, kept as a map from the hash of
//!   the key's canonical JSON to the hash of the value's canonical JSON.
//!
//! Canonical JSON is the JSON text with every object's keys sorted and no whitespace, so two
//! systems that order fields differently still agree. When an answer is small
//! ([`DETAIL_LIMIT`] records or keys), the model also keeps the records' text, so a mismatch can
//! be shown record by record.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;
use serde_json::Value;

use crate::{
    hopping_starts, nexmark_events, q1, q2, q3_auction, q3_person, window_start, Event, Inputs,
    Workload, Q3, Q5_HOP_MS, Q5_SIZE_MS, Q7_SIZE_MS, Q8, Q8_WITHIN_MS,
};

/// Answers up to this many records (streams) or keys (tables), over inputs of up to this many
/// events, keep their text for diffs.
pub const DETAIL_LIMIT: usize = 100_000;

/// A hasher for keys that are already 64-bit hashes: passes them through.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by 64-bit hashes.
pub type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Writes the canonical JSON of `value` (sorted object keys, no whitespace) to `out`.
pub fn canonical_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writing to a Vec");
                out.push(b':');
                canonical_into(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_into(v, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("writing to a Vec"),
    }
}

/// The canonical JSON text of `value`.
pub fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    canonical_into(value, &mut out);
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The canonical JSON text of raw JSON bytes, or `None` if they are not JSON. `None` bytes (no
/// key, or a tombstone) are `null`.
pub fn canonical_bytes(bytes: Option<&[u8]>) -> Option<String> {
    match bytes {
        None => Some("null".to_string()),
        Some(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .map(|v| canonical(&v)),
    }
}

/// The splitmix64 finalizer: a well-mixed 64-bit function of `z`.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combines two hashes, order-sensitively.
fn mix2(a: u64, b: u64) -> u64 {
    mix(a.rotate_left(23) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

const TAG_NULL: u64 = 0x6e75_6c6c;
const TAG_BOOL: u64 = 0x626f_6f6c;
const TAG_UINT: u64 = 0x7569_6e74;
const TAG_NEG: u64 = 0x6e65_6769;
const TAG_FLOAT: u64 = 0x666c_6f61;
const TAG_STR: u64 = 0x7374_7269;
const TAG_ARRAY: u64 = 0x6172_7261;
const TAG_OBJECT: u64 = 0x6f62_6a65;

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = mix2(TAG_STR, bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix2(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = mix2(h, u64::from_le_bytes(last));
    }
    h
}

/// Hashes a JSON value as it is parsed, without building it: equal for equal canonical JSON
/// (object fields in any order, any whitespace or string escaping), integers apart from floats.
struct JsonHash;

impl<'de> serde::de::DeserializeSeed<'de> for JsonHash {
    type Value = u64;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonHash {
    type Value = u64;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<u64, E> {
        Ok(mix2(TAG_BOOL, u64::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<u64, E> {
        Ok(mix2(TAG_UINT, v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<u64, E> {
        Ok(if v >= 0 {
            mix2(TAG_UINT, v as u64)
        } else {
            mix2(TAG_NEG, v as u64)
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<u64, E> {
        Ok(mix2(TAG_FLOAT, v.to_bits()))
    }
    fn visit_str<E>(self, v: &str) -> Result<u64, E> {
        Ok(hash_bytes(v.as_bytes()))
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(mix(TAG_NULL))
    }
    fn visit_none<E>(self) -> Result<u64, E> {
        Ok(mix(TAG_NULL))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut h = TAG_ARRAY;
        let mut n = 0u64;
        while let Some(item) = seq.next_element_seed(JsonHash)? {
            h = mix2(h, item);
            n += 1;
        }
        Ok(mix2(h, n))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut sum = 0u64;
        let mut n = 0u64;
        while let Some(key) = map.next_key_seed(JsonHash)? {
            let value = map.next_value_seed(JsonHash)?;
            sum = sum.wrapping_add(mix2(key, value));
            n += 1;
        }
        Ok(mix2(mix2(TAG_OBJECT, n), sum))
    }
}

/// The hash of the JSON in `bytes` (`None` bytes, i.e. no key or a tombstone, hash as `null`),
/// or `None` if they are not one JSON value. Equal canonical JSON gives equal hashes.
pub fn json_hash(bytes: Option<&[u8]>) -> Option<u64> {
    use serde::de::DeserializeSeed;
    let Some(bytes) = bytes else {
        return Some(null_hash());
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let h = JsonHash.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(h)
}

/// The hash of JSON `null`.
pub fn null_hash() -> u64 {
    mix(TAG_NULL)
}

/// The hash of a stream record from the hashes of its key and value.
pub fn record_hash(key: u64, value: u64) -> u64 {
    mix2(mix2(0x7265_636f, key), value)
}

/// An order-insensitive digest of a multiset of records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Digest {
    /// Number of records.
    pub count: u64,
    /// Wrapping sum of the records' hashes.
    pub sum: u64,
}

impl Digest {
    /// Adds a record with the given hash.
    pub fn add(&mut self, hash: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }
}

/// The expected answer on one output topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicModel {
    /// A stream: a multiset of records; `detail` maps `key value` texts to their multiplicity
    /// when the stream is small.
    Stream {
        /// The multiset's digest.
        digest: Digest,
        /// Records' texts (`<key> <value>`) and counts, for small answers.
        detail: Option<HashMap<String, i64>>,
    },
    /// A table: the last value per key (a deleted key is absent).
    Table {
        /// Key hash to value hash.
        values: HashKeyed<u64>,
        /// Key hash to (key text, value text), for small answers.
        detail: Option<HashKeyed<(String, String)>>,
    },
}

impl TopicModel {
    fn stream() -> Self {
        TopicModel::Stream {
            digest: Digest::default(),
            detail: Some(HashMap::new()),
        }
    }

    fn table() -> Self {
        TopicModel::Table {
            values: HashKeyed::default(),
            detail: Some(HashKeyed::default()),
        }
    }

    /// Adds a stream record, or sets a table key (`None` deletes it).
    fn put<K: Serialize, V: Serialize>(&mut self, key: &K, value: Option<&V>) {
        let key = serde_json::to_vec(key).expect("serializing a key");
        let value = value.map(|v| serde_json::to_vec(v).expect("serializing a value"));
        let key_hash = json_hash(Some(&key)).expect("our own JSON");
        let value_hash = json_hash(value.as_deref()).expect("our own JSON");
        let text = |bytes: Option<&[u8]>| canonical_bytes(bytes).expect("our own JSON");
        match self {
            TopicModel::Stream { digest, detail } => {
                digest.add(record_hash(key_hash, value_hash));
                if digest.count as usize > DETAIL_LIMIT {
                    *detail = None;
                }
                if let Some(d) = detail {
                    let record = format!("{} {}", text(Some(&key)), text(value.as_deref()));
                    *d.entry(record).or_insert(0) += 1;
                }
            }
            TopicModel::Table { values, detail } => {
                if value.is_some() && value_hash != null_hash() {
                    values.insert(key_hash, value_hash);
                    if values.len() > DETAIL_LIMIT {
                        *detail = None;
                    }
                    if let Some(d) = detail {
                        d.insert(key_hash, (text(Some(&key)), text(value.as_deref())));
                    }
                } else {
                    values.remove(&key_hash);
                    if let Some(d) = detail {
                        d.remove(&key_hash);
                    }
                }
            }
        }
    }

    /// Records (streams) or keys (tables) expected.
    pub fn len(&self) -> u64 {
        match self {
            TopicModel::Stream { digest, .. } => digest.count,
            TopicModel::Table { values, .. } => values.len() as u64,
        }
    }

    /// True when nothing is expected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The expected answer of one workload: one [`TopicModel`] per output topic, in the order of
/// [`Workload::outputs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// The workload.
    pub workload: Workload,
    /// Output topic suffix and its expected answer.
    pub topics: Vec<(String, TopicModel)>,
}

/// Input records each workload reads, from the topics it reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputCounts {
    /// Persons.
    pub persons: u64,
    /// Auctions.
    pub auctions: u64,
    /// Bids.
    pub bids: u64,
    /// Words.
    pub words: u64,
}

impl InputCounts {
    /// Counts the records of the given inputs by running the generators.
    pub fn of(inputs: &Inputs) -> Self {
        let mut c = InputCounts {
            words: inputs.words as u64,
            ..Default::default()
        };
        for event in nexmark_events(inputs.events) {
            c.count(&event);
        }
        c
    }

    /// Counts one Nexmark event.
    pub fn count(&mut self, event: &Event) {
        match event {
            Event::Person(_) => self.persons += 1,
            Event::Auction(_) => self.auctions += 1,
            Event::Bid(_) => self.bids += 1,
        }
    }

    /// The input records `workload` reads (its "events" for events per second): bids for W0,
    /// W1 and W3, words for W2, persons and auctions for W4.
    pub fn events_of(&self, workload: Workload) -> u64 {
        match workload {
            Workload::W0 | Workload::W1 | Workload::W3 => self.bids,
            Workload::W2 => self.words,
            Workload::W4 => self.persons + self.auctions,
        }
    }
}

impl Model {
    /// Computes the expected answer of `workload` over `inputs`.
    pub fn compute(workload: Workload, inputs: &Inputs) -> Model {
        Self::compute_and_count(workload, inputs).0
    }

    /// Computes the expected answer of `workload` over `inputs`, and counts the input records
    /// on the way (the Nexmark counts only for the workloads that read Nexmark events).
    pub fn compute_and_count(workload: Workload, inputs: &Inputs) -> (Model, InputCounts) {
        let mut counts = InputCounts {
            words: inputs.words as u64,
            ..Default::default()
        };
        let mut model = match workload {
            Workload::W2 => Self::from_words(inputs.word_stream()),
            _ => Self::from_events(
                workload,
                nexmark_events(inputs.events).inspect(|e| counts.count(e)),
            ),
        };
        if counts.events_of(workload) > DETAIL_LIMIT as u64 {
            // Big inputs may bring many output updates: keep the checker's work per record
            // to hashing.
            model.drop_detail();
        }
        (model, counts)
    }

    /// The W2 answer over a word stream: the count per word.
    pub fn from_words(words: impl Iterator<Item = String>) -> Model {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for w in words {
            *counts.entry(w).or_insert(0) += 1;
        }
        let mut table = TopicModel::table();
        for (w, n) in counts {
            table.put(&w, Some(&n));
        }
        Model {
            workload: Workload::W2,
            topics: vec![("w2".into(), table)],
        }
    }

    /// The answer of a Nexmark workload (W0, W1, W3, W4) over an event stream.
    ///
    /// # Panics
    /// For W2, which reads words (use [`Model::from_words`]).
    pub fn from_events(workload: Workload, events: impl Iterator<Item = Event>) -> Model {
        let mut topics: Vec<(String, TopicModel)> = workload
            .outputs()
            .iter()
            .map(|name| {
                let model = match *name {
                    "w0" | "w1-q1" | "w1-q2" | "w4-q8" => TopicModel::stream(),
                    _ => TopicModel::table(),
                };
                (name.to_string(), model)
            })
            .collect();
        match workload {
            Workload::W0 => {
                for event in events {
                    if let Event::Bid(b) = event {
                        topics[0].1.put(&b.auction, Some(&b));
                    }
                }
            }
            Workload::W1 => {
                for event in events {
                    if let Event::Bid(b) = event {
                        topics[0].1.put(&b.auction, Some(&q1(&b)));
                        if let Some(out) = q2(&b) {
                            topics[1].1.put(&b.auction, Some(&out));
                        }
                    }
                }
            }
            Workload::W2 => panic!("W2 reads words: use Model::from_words"),
            Workload::W3 => {
                let mut q5: HashMap<(u64, u64), u64> = HashMap::new();
                let mut q7: HashMap<u64, u64> = HashMap::new();
                for event in events {
                    if let Event::Bid(b) = event {
                        for start in hopping_starts(b.date_time, Q5_SIZE_MS, Q5_HOP_MS) {
                            *q5.entry((b.auction, start)).or_insert(0) += 1;
                        }
                        let max = q7.entry(window_start(b.date_time, Q7_SIZE_MS)).or_insert(0);
                        *max = (*max).max(b.price);
                    }
                }
                for ((auction, start), n) in q5 {
                    topics[0].1.put(&[auction, start], Some(&n));
                }
                for (start, price) in q7 {
                    topics[1].1.put(&start, Some(&price));
                }
            }
            Workload::W4 => {
                let mut persons = HashMap::new();
                let mut auctions = Vec::new();
                for event in events {
                    match event {
                        Event::Person(p) => {
                            persons.insert(p.id, p);
                        }
                        Event::Auction(a) => auctions.push(a),
                        Event::Bid(_) => {}
                    }
                }
                for a in &auctions {
                    let Some(p) = persons.get(&a.seller) else {
                        continue;
                    };
                    if q3_auction(a) && q3_person(p) {
                        let out = Q3 {
                            name: p.name.clone(),
                            city: p.city.clone(),
                            state: p.state.clone(),
                            id: a.id,
                        };
                        topics[0].1.put(&a.id, Some(&out));
                    }
                    if a.date_time.abs_diff(p.date_time) <= Q8_WITHIN_MS {
                        let out = Q8 {
                            id: p.id,
                            name: p.name.clone(),
                            auction: a.id,
                        };
                        topics[1].1.put(&p.id, Some(&out));
                    }
                }
            }
        }
        Model { workload, topics }
    }

    /// Forgets the records' texts: diffs then name keys by hash, and checking a record costs
    /// only its hashing.
    pub fn drop_detail(&mut self) {
        for (_, t) in &mut self.topics {
            match t {
                TopicModel::Stream { detail, .. } => *detail = None,
                TopicModel::Table { detail, .. } => *detail = None,
            }
        }
    }

    /// A one-line summary: records or keys expected per output topic.
    pub fn summary(&self) -> String {
        self.topics
            .iter()
            .map(|(name, t)| match t {
                TopicModel::Stream { .. } => format!("{name}: {} records", t.len()),
                TopicModel::Table { .. } => format!("{name}: {} keys", t.len()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Auction, Bid, Person};

    fn bid(auction: u64, price: u64, t: u64) -> Event {
        Event::Bid(Bid {
            auction,
            bidder: 7,
            price,
            channel: "c".into(),
            url: "u".into(),
            date_time: t,
            extra: String::new(),
        })
    }

    fn person(id: u64, state: &str, t: u64) -> Event {
        Event::Person(Person {
            id,
            name: format!("p{id}"),
            email_address: String::new(),
            credit_card: String::new(),
            city: "town".into(),
            state: state.into(),
            date_time: t,
            extra: String::new(),
        })
    }

    fn auction(id: u64, seller: u64, category: u64, t: u64) -> Event {
        Event::Auction(Auction {
            id,
            item_name: String::new(),
            description: String::new(),
            initial_bid: 1,
            reserve: 1,
            date_time: t,
            expires: t + 1,
            seller,
            category,
            extra: String::new(),
        })
    }

    fn table_texts(model: &Model, topic: usize) -> Vec<(String, String)> {
        match &model.topics[topic].1 {
            TopicModel::Table {
                detail: Some(d), ..
            } => {
                let mut v: Vec<_> = d.values().cloned().collect();
                v.sort();
                v
            }
            other => panic!("not a detailed table: {other:?}"),
        }
    }

    fn stream_texts(model: &Model, topic: usize) -> Vec<(String, i64)> {
        match &model.topics[topic].1 {
            TopicModel::Stream {
                detail: Some(d), ..
            } => {
                let mut v: Vec<_> = d.iter().map(|(k, n)| (k.clone(), *n)).collect();
                v.sort();
                v
            }
            other => panic!("not a detailed stream: {other:?}"),
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": 2, "a": null}], "a": "x" }"#).expect("json");
        assert_eq!(canonical(&v), r#"{"a":"x","b":[1,{"a":null,"z":2}]}"#);
        assert_eq!(canonical_bytes(Some(b"nope")), None);
        let h = |t: &str| json_hash(Some(t.as_bytes()));
        assert_eq!(
            h(r#"{ "b": [1, {"z": 2, "a": null}], "a": "x" }"#),
            h(r#"{"a":"\u0078","b":[1,{"a":null,"z":2}]}"#)
        );
        assert_ne!(h(r#"{"a":1,"b":2}"#), h(r#"{"a":2,"b":1}"#));
        assert_ne!(h("[1,2]"), h("[2,1]"));
        assert_ne!(h("1"), h("1.0"));
        assert_ne!(h(r#""1""#), h("1"));
        assert_eq!(h("1 2"), None);
        assert_eq!(json_hash(None), h("null"));
        assert_eq!(canonical_bytes(None).as_deref(), Some("null"));
    }

    #[test]
    fn word_counts() {
        let words = ["a", "b", "a", "c", "a", "b"].map(String::from);
        let model = Model::from_words(words.into_iter());
        assert_eq!(
            table_texts(&model, 0),
            vec![
                (r#""a""#.into(), "3".into()),
                (r#""b""#.into(), "2".into()),
                (r#""c""#.into(), "1".into())
            ]
        );
    }

    #[test]
    fn stateless_map_and_filter() {
        let events = vec![bid(246, 1000, 0), bid(5, 10, 0)];
        let model = Model::from_events(Workload::W1, events.into_iter());
        assert_eq!(
            stream_texts(&model, 0),
            vec![
                (
                    r#"246 {"auction":246,"bidder":7,"date_time":0,"price":908}"#.into(),
                    1
                ),
                (
                    r#"5 {"auction":5,"bidder":7,"date_time":0,"price":9}"#.into(),
                    1
                )
            ]
        );
        assert_eq!(
            stream_texts(&model, 1),
            vec![(r#"246 {"auction":246,"price":1000}"#.into(), 1)]
        );
    }

    #[test]
    fn windows() {
        // Bids of auction 1 at 1 s and 11 s, auction 2 at 3 s; prices 5, 9, 7.
        let events = vec![bid(1, 5, 1_000), bid(2, 7, 3_000), bid(1, 9, 11_000)];
        let model = Model::from_events(Workload::W3, events.into_iter());
        let q5 = table_texts(&model, 0);
        // The bid at 1 s lies in the windows starting at -8 s..0 s, of which only 0 is >= 0;
        // the bid at 3 s in 0 and 2 s; the bid at 11 s in 2, 4, 6, 8 and 10 s.
        let expect: Vec<(String, String)> = [
            ("[1,0]", "1"),
            ("[1,10000]", "1"),
            ("[1,2000]", "1"),
            ("[1,4000]", "1"),
            ("[1,6000]", "1"),
            ("[1,8000]", "1"),
            ("[2,0]", "1"),
            ("[2,2000]", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(q5, expect);
        assert_eq!(
            table_texts(&model, 1),
            vec![("0".into(), "7".into()), ("10000".into(), "9".into())]
        );
    }

    #[test]
    fn joins() {
        let events = vec![
            person(1, "or", 0),
            person(2, "ny", 0),
            auction(10, 1, 10, 5_000), // q3 (or, category 10) and q8 (5 s apart)
            auction(11, 1, 11, 20_000), // neither: category 11, 20 s apart
            auction(12, 2, 10, 10_000), // q8 only (ny), exactly 10 s apart
            auction(13, 3, 10, 0),     // unknown seller
        ];
        let model = Model::from_events(Workload::W4, events.into_iter());
        assert_eq!(
            table_texts(&model, 0),
            vec![(
                "10".into(),
                r#"{"city":"town","id":10,"name":"p1","state":"or"}"#.into()
            )]
        );
        assert_eq!(
            stream_texts(&model, 1),
            vec![
                (r#"1 {"auction":10,"id":1,"name":"p1"}"#.into(), 1),
                (r#"2 {"auction":12,"id":2,"name":"p2"}"#.into(), 1)
            ]
        );
    }

    #[test]
    fn passthrough_counts_bids() {
        let events: Vec<Event> = nexmark_events(1_000).collect();
        let bids = events.iter().filter(|e| matches!(e, Event::Bid(_))).count();
        let model = Model::from_events(Workload::W0, events.into_iter());
        assert_eq!(model.topics[0].1.len(), bids as u64);
        let counts = InputCounts::of(&Inputs {
            events: 1_000,
            ..Default::default()
        });
        assert_eq!(counts.bids, bids as u64);
        assert_eq!(counts.persons + counts.auctions + counts.bids, 1_000);
    }
}
