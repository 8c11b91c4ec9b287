//! The checker: an [`OutputState`] fed with the records a system writes to its output topics,
//! compared incrementally (constant work per record) with the [`Model`] of the workload.
//!
//! A stream output matches when its digest (record count and sum of record hashes) equals the
//! model's; a table output matches when every expected key holds its expected value and no other
//! key holds a value (null deletes a key). Records that are not JSON are counted as malformed and
//! never match.
//!
//! A table's update stream is checked too, record by record, not only its last value per key
//! ([`UpdateRule`]): a count's updates per key must rise strictly (W2, W3 q5), a maximum's must
//! not fall (W3 q7), and a join row (W4 q3) must be the expected row of an expected key. A
//! broken update is final: the output can no longer match.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::model::{
    canonical_bytes, json_hash, null_hash, record_hash, Digest, HashKeyed, Model, TopicModel,
};

/// How many differing records or keys a diff names.
const DIFF_EXAMPLES: usize = 5;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    expected: Option<u64>,
    current: Option<u64>,
    /// The highest integer value an update gave this key so far (counts and maxima).
    high: Option<i64>,
}

/// What every update of a table output must satisfy, per key, whatever the final state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateRule {
    /// A count: every non-null update is an integer above the key's previous one (W2, W3 q5).
    Rising,
    /// A running maximum: every non-null update is an integer not below the previous one (W3 q7).
    NotFalling,
    /// A join row: every non-null update is the key's expected value, on an expected key (W4 q3).
    Final,
}

impl UpdateRule {
    /// The rule of the table output named `name` (an output topic suffix).
    pub fn of(name: &str) -> UpdateRule {
        match name {
            "w3-q7" => UpdateRule::NotFalling,
            "w4-q3" => UpdateRule::Final,
            _ => UpdateRule::Rising,
        }
    }
}

impl Slot {
    fn agrees(self) -> bool {
        self.expected.is_some() && self.current == self.expected
    }
    fn extra(self) -> bool {
        self.expected.is_none() && self.current.is_some()
    }
}

#[derive(Debug)]
enum TopicState {
    Stream {
        expected: Digest,
        got: Digest,
        /// `key value` text → expected minus seen count (small answers only).
        balance: Option<HashMap<String, i64>>,
    },
    Table {
        slots: HashKeyed<Slot>,
        expected_keys: u64,
        agreeing: u64,
        extra: u64,
        updates: u64,
        rule: UpdateRule,
        /// Updates that broke `rule`, and the first of them.
        bad_updates: u64,
        first_bad_update: Option<String>,
        /// Key hash → (key text, expected value text) of the model (small answers only).
        expected_text: Option<HashKeyed<(String, String)>>,
        /// Key hash → (key text, current value text) seen (small answers only).
        got_text: Option<HashKeyed<(String, String)>>,
    },
}

/// What a system has written so far, held against the model.
#[derive(Debug)]
pub struct OutputState {
    names: Vec<String>,
    topics: Vec<TopicState>,
    records: u64,
    malformed: u64,
    first_malformed: Option<String>,
}

impl OutputState {
    /// An empty output, to be compared with `model` (which it takes over: the expected answer
    /// lives in the state from now on).
    pub fn new(model: Model) -> Self {
        let mut names = Vec::new();
        let mut topics = Vec::new();
        for (name, topic) in model.topics {
            topics.push(match topic {
                TopicModel::Stream { digest, detail } => TopicState::Stream {
                    expected: digest,
                    got: Digest::default(),
                    balance: detail,
                },
                TopicModel::Table { values, detail } => {
                    let expected_keys = values.len() as u64;
                    let slots = values
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                k,
                                Slot {
                                    expected: Some(v),
                                    current: None,
                                    high: None,
                                },
                            )
                        })
                        .collect();
                    let got_text = detail.as_ref().map(|_| HashKeyed::default());
                    TopicState::Table {
                        slots,
                        expected_keys,
                        agreeing: 0,
                        extra: 0,
                        updates: 0,
                        rule: UpdateRule::of(&name),
                        bad_updates: 0,
                        first_bad_update: None,
                        expected_text: detail,
                        got_text,
                    }
                }
            });
            names.push(name);
        }
        OutputState {
            names,
            topics,
            records: 0,
            malformed: 0,
            first_malformed: None,
        }
    }

    /// The output topic suffixes, in the order [`OutputState::apply`] numbers them.
    pub fn topic_suffixes(&self) -> &[String] {
        &self.names
    }

    /// Records applied so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Applies one record read from output topic number `topic` (an index into
    /// [`OutputState::topic_suffixes`]).
    pub fn apply(&mut self, topic: usize, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.records += 1;
        let (Some(key_hash), Some(value_hash)) = (json_hash(key), json_hash(value)) else {
            self.malformed += 1;
            if self.first_malformed.is_none() {
                self.first_malformed = Some(format!(
                    "on {}: key {:?} value {:?}",
                    self.names[topic],
                    key.map(String::from_utf8_lossy),
                    value.map(String::from_utf8_lossy)
                ));
            }
            return;
        };
        // Canonical texts only for small answers (diffs record by record).
        let text = |bytes: Option<&[u8]>| canonical_bytes(bytes).unwrap_or_default();
        match &mut self.topics[topic] {
            TopicState::Stream { got, balance, .. } => {
                got.add(record_hash(key_hash, value_hash));
                if let Some(b) = balance {
                    *b.entry(format!("{} {}", text(key), text(value)))
                        .or_insert(0) -= 1;
                }
            }
            TopicState::Table {
                slots,
                agreeing,
                extra,
                updates,
                rule,
                bad_updates,
                first_bad_update,
                got_text,
                ..
            } => {
                *updates += 1;
                let new = (value_hash != null_hash()).then_some(value_hash);
                let slot = slots.entry(key_hash).or_default();
                let before = *slot;
                slot.current = new;
                if new.is_some() {
                    let broken = match rule {
                        UpdateRule::Final => {
                            (slot.expected != new).then(|| "not the expected row".to_string())
                        }
                        UpdateRule::Rising | UpdateRule::NotFalling => {
                            match value.and_then(|v| serde_json::from_slice::<i64>(v).ok()) {
                                None => Some("not an integer".to_string()),
                                Some(n) => {
                                    let high = slot.high;
                                    slot.high = Some(high.map_or(n, |h| h.max(n)));
                                    match high {
                                        Some(h)
                                            if n < h || (n == h && *rule == UpdateRule::Rising) =>
                                        {
                                            Some(format!("after {h}"))
                                        }
                                        _ => None,
                                    }
                                }
                            }
                        }
                    };
                    if let Some(why) = broken {
                        *bad_updates += 1;
                        if first_bad_update.is_none() {
                            *first_bad_update = Some(format!(
                                "key {} value {} ({why}; update {})",
                                text(key),
                                text(value),
                                *updates
                            ));
                        }
                    }
                }
                let after = *slot;
                *agreeing = *agreeing + u64::from(after.agrees()) - u64::from(before.agrees());
                *extra = *extra + u64::from(after.extra()) - u64::from(before.extra());
                if let Some(texts) = got_text {
                    match new {
                        Some(_) => {
                            texts.insert(key_hash, (text(key), text(value)));
                        }
                        None => {
                            texts.remove(&key_hash);
                        }
                    }
                }
            }
        }
    }

    /// True when every output topic holds exactly the expected answer.
    pub fn matches(&self) -> bool {
        self.malformed == 0
            && self.topics.iter().all(|t| match t {
                TopicState::Stream { expected, got, .. } => expected == got,
                TopicState::Table {
                    expected_keys,
                    agreeing,
                    extra,
                    bad_updates,
                    ..
                } => agreeing == expected_keys && *extra == 0 && *bad_updates == 0,
            })
    }

    /// True when the output can no longer come to match by receiving more records: a stream
    /// holds more records than expected, a table update broke its rule, or a record was
    /// malformed.
    pub fn overshot(&self) -> bool {
        self.malformed > 0
            || self.topics.iter().any(|t| match t {
                TopicState::Stream { expected, got, .. } => got.count > expected.count,
                TopicState::Table { bad_updates, .. } => *bad_updates > 0,
            })
    }

    /// A short human-readable account of how the output differs from the model (counts, then
    /// the first few differing records or keys).
    pub fn diff(&self) -> String {
        let mut parts = Vec::new();
        if self.malformed > 0 {
            parts.push(format!(
                "{} malformed records (first {})",
                self.malformed,
                self.first_malformed.as_deref().unwrap_or("?")
            ));
        }
        for (name, topic) in self.names.iter().zip(&self.topics) {
            match topic {
                TopicState::Stream {
                    expected,
                    got,
                    balance,
                } => {
                    if expected == got {
                        continue;
                    }
                    let mut s =
                        format!("{name}: {} records, expected {}", got.count, expected.count);
                    if got.count == expected.count {
                        s.push_str(" (same count, different records)");
                    }
                    if let Some(b) = balance {
                        let mut off: Vec<(&String, &i64)> =
                            b.iter().filter(|(_, n)| **n != 0).collect();
                        off.sort();
                        for (text, n) in off.into_iter().take(DIFF_EXAMPLES) {
                            let what = if *n > 0 { "missing" } else { "unexpected" };
                            let _ = write!(s, "; {what} {}× {text}", n.abs());
                        }
                    }
                    parts.push(s);
                }
                TopicState::Table {
                    slots,
                    expected_keys,
                    agreeing,
                    extra,
                    updates,
                    bad_updates,
                    first_bad_update,
                    expected_text,
                    got_text,
                    ..
                } => {
                    if *bad_updates > 0 {
                        parts.push(format!(
                            "{name}: {bad_updates} updates out of order or unexpected (first: {})",
                            first_bad_update.as_deref().unwrap_or("?")
                        ));
                    }
                    if agreeing == expected_keys && *extra == 0 {
                        continue;
                    }
                    let missing = slots
                        .values()
                        .filter(|s| s.expected.is_some() && s.current.is_none())
                        .count();
                    let wrong = slots
                        .values()
                        .filter(|s| s.expected.is_some() && s.current.is_some() && !s.agrees())
                        .count();
                    let mut s = format!(
                        "{name}: {agreeing} of {expected_keys} keys right, {missing} missing, \
                         {wrong} with another value, {extra} unexpected ({updates} updates read)"
                    );
                    let mut off: Vec<(&u64, &Slot)> = slots
                        .iter()
                        .filter(|(_, s)| !s.agrees() && (s.expected.is_some() || s.extra()))
                        .collect();
                    off.sort_by_key(|(k, _)| **k);
                    for (k, slot) in off.into_iter().take(DIFF_EXAMPLES) {
                        let key = expected_text
                            .as_ref()
                            .and_then(|t| t.get(k).map(|(key, _)| key.clone()))
                            .or_else(|| {
                                got_text
                                    .as_ref()
                                    .and_then(|t| t.get(k).map(|(key, _)| key.clone()))
                            })
                            .unwrap_or_else(|| format!("#{k:016x}"));
                        let want = match (&slot.expected, expected_text) {
                            (None, _) => "nothing".to_string(),
                            (Some(_), Some(t)) => {
                                t.get(k).map(|(_, v)| v.clone()).unwrap_or_default()
                            }
                            (Some(v), None) => format!("#{v:016x}"),
                        };
                        let have = match (&slot.current, got_text) {
                            (None, _) => "nothing".to_string(),
                            (Some(_), Some(t)) => {
                                t.get(k).map(|(_, v)| v.clone()).unwrap_or_default()
                            }
                            (Some(v), None) => format!("#{v:016x}"),
                        };
                        let _ = write!(s, "; key {key}: expected {want}, got {have}");
                    }
                    parts.push(s);
                }
            }
        }
        if parts.is_empty() {
            "output matches the model".into()
        } else {
            parts.join(" | ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bid, Event, Workload};

    fn bids() -> Vec<Bid> {
        (0..10)
            .map(|i| Bid {
                auction: 1000 + i % 3,
                bidder: i,
                price: 10 * i,
                channel: "c".into(),
                url: "u".into(),
                date_time: 1_000 * i,
                extra: String::new(),
            })
            .collect()
    }

    fn w0_model() -> Model {
        Model::from_events(Workload::W0, bids().into_iter().map(Event::Bid))
    }

    fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).expect("json")
    }

    #[test]
    fn a_right_stream_matches_in_any_order_and_field_order() {
        let mut state = OutputState::new(w0_model());
        assert!(!state.matches());
        for b in bids().iter().rev() {
            // Fields in another order and with spaces: the same canonical JSON.
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&json(b)).expect("object");
            let price = v.remove("price").expect("price");
            v.insert("price".into(), price);
            let text = serde_json::to_string_pretty(&v).expect("json");
            state.apply(
                0,
                Some(b.auction.to_string().as_bytes()),
                Some(text.as_bytes()),
            );
        }
        assert!(state.matches(), "{}", state.diff());
        assert_eq!(state.diff(), "output matches the model");
    }

    #[test]
    fn a_missing_extra_or_changed_stream_record_does_not_match() {
        let all = bids();
        // Missing.
        let mut state = OutputState::new(w0_model());
        for b in &all[1..] {
            state.apply(0, Some(json(&b.auction).as_slice()), Some(&json(b)));
        }
        assert!(!state.matches());
        assert!(
            state.diff().contains("9 records, expected 10"),
            "{}",
            state.diff()
        );
        assert!(state.diff().contains("missing 1×"), "{}", state.diff());
        // Extra (a duplicate).
        let mut state = OutputState::new(w0_model());
        for b in all.iter().chain(&all[..1]) {
            state.apply(0, Some(json(&b.auction).as_slice()), Some(&json(b)));
        }
        assert!(!state.matches());
        assert!(state.overshot());
        // Changed.
        let mut state = OutputState::new(w0_model());
        for (i, b) in all.iter().enumerate() {
            let mut b = b.clone();
            if i == 4 {
                b.price += 1;
            }
            state.apply(0, Some(json(&b.auction).as_slice()), Some(&json(&b)));
        }
        assert!(!state.matches());
        assert!(state.diff().contains("same count"), "{}", state.diff());
        assert!(state.diff().contains("unexpected 1×"), "{}", state.diff());
        // Malformed.
        let mut state = OutputState::new(w0_model());
        state.apply(0, Some(b"1"), Some(b"{not json"));
        assert!(state.overshot());
        assert!(state.diff().contains("malformed"));
    }

    fn w2(words: &[&str]) -> Model {
        Model::from_words(words.iter().map(|w| w.to_string()))
    }

    #[test]
    fn tables_keep_the_last_value_per_key() {
        let mut state = OutputState::new(w2(&["a", "b", "a"]));
        state.apply(0, Some(br#""a""#), Some(b"1"));
        state.apply(0, Some(br#""b""#), Some(b"1"));
        assert!(!state.matches());
        state.apply(0, Some(br#""a""#), Some(b"2"));
        assert!(state.matches(), "{}", state.diff());
        // An extra key, then deleted by a null value (tombstone or JSON null).
        state.apply(0, Some(br#""z""#), Some(b"1"));
        assert!(!state.matches());
        assert!(state.diff().contains("1 unexpected"), "{}", state.diff());
        state.apply(0, Some(br#""z""#), None);
        assert!(state.matches());
        state.apply(0, Some(br#""z""#), Some(b"2"));
        state.apply(0, Some(br#""z""#), Some(b"null"));
        assert!(state.matches());
        assert!(!state.overshot());
        // A deleted expected key.
        state.apply(0, Some(br#""b""#), None);
        assert!(!state.matches());
        assert!(state.diff().contains("1 missing"), "{}", state.diff());
    }

    #[test]
    fn a_count_that_overshoots_or_repeats_is_caught_even_when_it_ends_right() {
        // Overshoot, then back to the right count.
        let mut state = OutputState::new(w2(&["a", "a"]));
        for v in [b"1", b"3", b"2"] {
            state.apply(0, Some(br#""a""#), Some(v));
        }
        assert!(!state.matches());
        assert!(state.overshot());
        assert!(
            state.diff().contains(r#"key "a" value 2 (after 3"#),
            "{}",
            state.diff()
        );
        // A late duplicate of a count.
        let mut state = OutputState::new(w2(&["a", "a"]));
        for v in [b"1", b"2", b"2"] {
            state.apply(0, Some(br#""a""#), Some(v));
        }
        assert!(state.overshot(), "{}", state.diff());
        // A count that skips (coalesced updates) is fine.
        let mut state = OutputState::new(w2(&["a", "a", "a"]));
        for v in [b"1", b"3"] {
            state.apply(0, Some(br#""a""#), Some(v));
        }
        assert!(state.matches(), "{}", state.diff());
    }

    #[test]
    fn a_maximum_may_repeat_but_not_fall() {
        // W3 over the test bids: every bid in window 0, q7's maximum 90.
        let model = Model::from_events(Workload::W3, bids().into_iter().map(Event::Bid));
        let mut state = OutputState::new(model);
        assert_eq!(state.topic_suffixes()[1], "w3-q7");
        for v in [b"50", b"50", b"90"] {
            state.apply(1, Some(b"0"), Some(v));
        }
        assert!(!state.overshot(), "{}", state.diff());
        state.apply(1, Some(b"0"), Some(b"40"));
        assert!(state.overshot());
        assert!(
            state.diff().contains("value 40 (after 90"),
            "{}",
            state.diff()
        );
    }

    #[test]
    fn update_rules_by_output() {
        assert_eq!(UpdateRule::of("w2"), UpdateRule::Rising);
        assert_eq!(UpdateRule::of("w3-q5"), UpdateRule::Rising);
        assert_eq!(UpdateRule::of("w3-q7"), UpdateRule::NotFalling);
        assert_eq!(UpdateRule::of("w4-q3"), UpdateRule::Final);
    }
}
