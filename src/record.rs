//! What a stream event carries besides its key and value: [`Meta`].
//!
//! Every event read from Kafka keeps its record's **timestamp** and **headers**, and its
//! [`Pos`] (where it stands in its epoch). Operators that make one event from another keep the
//! event's `Meta` (`map`, `filter`, `flat_map`, stream⋈table joins); [`crate::Stream::to_topic`]
//! writes the timestamp and headers with the record, as Kafka Streams does. Read or change them
//! with [`crate::Stream::map_record`] and [`crate::Stream::peek`].
//!
//! | event | timestamp | headers |
//! |---|---|---|
//! | read from a topic | the Kafka record's (or, if it has none, the epoch's time) | the record's |
//! | `map`, `filter`, `flat_map`, `group_by`, `merge` | kept | kept |
//! | stream⋈table join | the stream event's | the stream event's |
//! | stream⋈stream join | the later of both events' event times | none |
//! | a running aggregate (`scan`) | the input event's | the input event's |
//! | a table's changes, a final window | the epoch's time (when the change was computed) | none |

use serde::{Deserialize, Serialize};

use crate::runtime::Pos;

/// Record headers: `(name, value)` pairs, in order; a name may repeat.
pub type Headers = Vec<(String, Vec<u8>)>;

/// An event's position, timestamp and headers; see the [module docs](self).
///
/// Events order by position first, so the order of an epoch's events is the input order whatever
/// their timestamps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Meta {
    pos: Pos,
    /// The timestamp in milliseconds since 1970 (Kafka's record timestamp).
    pub timestamp: i64,
    /// The headers, written with the event when it goes to a topic.
    pub headers: Headers,
}

impl Meta {
    /// An event at `pos` with `timestamp` and no headers (for a program's own collections, see
    /// [`crate::Stream::from_collection`]).
    pub fn new(pos: Pos, timestamp: i64) -> Meta {
        Meta {
            pos,
            timestamp,
            headers: Headers::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Meta {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Where the event stands in its epoch.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The `index`-th event an operator made from this one (see [`Pos::nth`]).
    pub(crate) fn nth(&self, index: u32) -> Meta {
        Meta {
            pos: self.pos.nth(index),
            timestamp: self.timestamp,
            headers: self.headers.clone(),
        }
    }

    /// The timestamp as an event time (milliseconds, 0 for a timestamp before 1970).
    pub(crate) fn event_time(&self) -> u64 {
        u64::try_from(self.timestamp).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_order_by_position_whatever_their_timestamps() {
        let first = Meta::new(Pos::input(0, 0, 1), 50);
        let second = Meta::new(Pos::input(0, 0, 2), 10).with_header("a", "b");
        assert!(first < second);
        assert_eq!(second.header("a"), Some(&b"b"[..]));
        assert_eq!(second.header("missing"), None);
        let made = second.nth(3);
        assert_eq!(made.pos(), Pos::input(0, 0, 2).nth(3));
        assert_eq!((made.timestamp, made.headers.len()), (10, 1));
        assert_eq!(Meta::new(Pos::Restored, -1).event_time(), 0);
    }
}
