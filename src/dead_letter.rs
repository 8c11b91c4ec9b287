//! Dead letters: what faustus could not process, kept rather than lost.
//!
//! A record that does not decode, an event later than its window allows, a key or value that
//! cannot be encoded, a record on which one of the program's functions panicked (see
//! [`crate::poison`]): each goes to the application's dead-letter topic, [`topic`]
//! (`<app>-__errors`), in the same transaction as the epoch's other output. The record's key and
//! value are written unchanged where there were any (as JSON, or their debug form, where faustus
//! made them); why and where from are in headers, named here.

use faustus_connectors::OutRecord;

use crate::runtime::{CommitItem, Pos};

/// Why the record is a dead letter (always present).
pub const REASON: &str = "faustus.error.reason";
/// What kind of failure it is (always present): [`DECODE`], [`LATE`], [`ENCODE`] or [`PANIC`]. The
/// `reason` label of the metric `faustus_dead_letters_total`.
pub const KIND: &str = "faustus.error.kind";
/// An input record that did not decode.
pub const DECODE: &str = "decode";
/// An event later than a window allows.
pub const LATE: &str = "late";
/// A key or value faustus made that does not encode.
pub const ENCODE: &str = "encode";
/// A record on which one of the program's functions panicked (the reason has the panic's
/// message and where it was raised; [`crate::poison`]).
pub const PANIC: &str = "panic";
/// The input topic the record came from.
pub const TOPIC: &str = "faustus.error.topic";
/// Its partition there.
pub const PARTITION: &str = "faustus.error.partition";
/// Its offset there.
pub const OFFSET: &str = "faustus.error.offset";
/// Its event time (milliseconds), for late events.
pub const EVENT_TIME: &str = "faustus.error.event_time";
/// The table or operator that refused it.
pub const OPERATOR: &str = "faustus.error.operator";

/// The dead-letter topic of application `app_id`.
pub fn topic(app_id: &str) -> String {
    format!("{app_id}-__errors")
}

/// The index of the dead-letter topic among an application's output topics.
pub(crate) const TOPIC_INDEX: u32 = 0;

/// A dead letter under construction.
pub(crate) struct DeadLetter {
    reason: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    panicked: bool,
}

impl DeadLetter {
    /// A dead letter holding `key` and `value`, for `reason`.
    pub(crate) fn new(
        reason: impl Into<String>,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Self {
        DeadLetter {
            reason: reason.into(),
            key,
            value,
            headers: Vec::new(),
            panicked: false,
        }
    }

    /// Where it came from: input topic, partition and offset.
    pub(crate) fn origin(mut self, topic: &str, partition: i32, offset: i64) -> Self {
        self.headers.push((TOPIC.into(), topic.as_bytes().to_vec()));
        self.headers
            .push((PARTITION.into(), partition.to_string().into_bytes()));
        self.headers
            .push((OFFSET.into(), offset.to_string().into_bytes()));
        self
    }

    /// Its event time.
    pub(crate) fn event_time(mut self, millis: u64) -> Self {
        self.headers
            .push((EVENT_TIME.into(), millis.to_string().into_bytes()));
        self
    }

    /// The table or operator that refused it.
    pub(crate) fn operator(mut self, name: &str) -> Self {
        self.headers
            .push((OPERATOR.into(), name.as_bytes().to_vec()));
        self
    }

    /// Marks it as a record on which one of the program's functions panicked.
    pub(crate) fn panicked(mut self) -> Self {
        self.panicked = true;
        self
    }

    /// Its kind: a panic's record is marked, a late event has an event time, an input record that did not decode has an
    /// origin, anything else is something faustus made that does not encode.
    fn kind(&self) -> &'static str {
        let has = |name: &str| self.headers.iter().any(|(h, _)| h == name);
        if self.panicked {
            PANIC
        } else if has(EVENT_TIME) {
            LATE
        } else if has(TOPIC) {
            DECODE
        } else {
            ENCODE
        }
    }

    /// The record for the committer, ordered at `pos` in its epoch.
    pub(crate) fn into_item(self, pos: Pos) -> CommitItem {
        let kind = self.kind();
        let mut headers = vec![
            (REASON.to_string(), self.reason.into_bytes()),
            (KIND.to_string(), kind.as_bytes().to_vec()),
        ];
        headers.extend(self.headers);
        CommitItem::Record(
            pos,
            OutRecord {
                topic: TOPIC_INDEX,
                key: self.key,
                value: self.value,
                headers,
                timestamp: None,
            },
        )
    }
}
