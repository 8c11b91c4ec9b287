//! Inputs without Kafka: streams fed from an iterator or from an async channel.
//!
//! A [`Dataflow`](crate::Dataflow) usually reads topics. An [`Input`] feeds it from the program
//! instead: test data, a file, a socket, an HTTP handler. [`Dataflow::input`](crate::Dataflow::input)
//! makes it a [`Stream`](crate::Stream) like any other, with the same operators.
//!
//! ```
//! use faustus::driver::TestDriver;
//! use faustus::input::Input;
//! use faustus::prelude::*;
//!
//! # fn main() -> faustus::Result<()> {
//! let words = Input::iter("words", || ["a", "b", "a"].map(|w| (w.to_string(), 1i64)));
//! let mut driver = TestDriver::start("words", move |df| {
//!     df.input(&words).sum("word_counts");
//! })?;
//! driver.close_epoch()?;
//! assert_eq!(driver.table::<String, i64>("word_counts")?.get("a"), Some(&2));
//! driver.restart()?; // the items of committed epochs are not read again
//! driver.close_epoch()?;
//! assert_eq!(driver.table::<String, i64>("word_counts")?.get("a"), Some(&2));
//! # Ok(())
//! # }
//! ```
//!
//! ## What each kind guarantees
//!
//! - **[`Input::iter`]**: the iterator is made again at every start, and the items that
//!   committed epochs consumed are skipped (the position, a count of items, commits with the
//!   epoch like a topic's offsets). If the iterator yields the same items in the same order every
//!   time it is made, each item is processed **exactly once** under
//!   [`Guarantee::ExactlyOnce`](crate::Guarantee::ExactlyOnce) and at least once under
//!   `at_least_once`, as a topic's records are. An iterator that yields different items after a
//!   restart (the lines of a file that changed, say) gets none of that: positions are counts, not
//!   identities.
//! - **[`Input::channel`]**: items are taken from the channel into the current epoch.
//!   **At most once across a crash**: an item is processed once if the epoch it was taken into
//!   commits; if the process dies first, the item is gone, since the channel lived in the dead
//!   process. A clean stop commits what was taken. Use a channel for data that can be sent
//!   again from its origin, or that may be lost; for input that must survive a crash, send it to
//!   a topic with a [`Producer`](crate::Producer) and read the topic.
//!
//! A channel is read by the first worker of each process; each process of a cluster has its
//! own channel. An iterator is read by one worker of the cluster. Either way, the stream's
//! records are spread over the workers by key like any stream's once an operator groups them.
//!
//! Records carry the timestamp they were given ([`Input::iter_timed`],
//! [`InputSender::send_at`]), or else their epoch's wall-clock time; window operators use it as
//! event time. Inputs have no dead letters: their items are typed already.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::dataflow::Data;

/// The prefix of an input's name among the sources: Kafka topic names cannot contain `:`, so an
/// input's positions never mix with a topic's.
const PREFIX: &str = "input:";

/// True if source `name` is an input rather than a Kafka topic.
pub(crate) fn is_input(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// One item of an input.
pub(crate) struct Item<K, V> {
    pub key: K,
    pub value: V,
    /// Milliseconds since 1970, if given.
    pub timestamp: Option<i64>,
}

/// Makes an input's iterator.
type MakeIter<K, V> = dyn Fn() -> Box<dyn Iterator<Item = Item<K, V>>> + Send + Sync;

/// Where an input's items come from.
pub(crate) enum Source<K, V> {
    Iter(Arc<MakeIter<K, V>>),
    Channel(Reader<K, V>),
}

impl<K, V> Clone for Source<K, V> {
    fn clone(&self) -> Self {
        match self {
            Source::Iter(make) => Source::Iter(Arc::clone(make)),
            Source::Channel(reader) => Source::Channel(reader.clone()),
        }
    }
}

/// The receiving end of a channel input, shared by the workers that read it.
pub(crate) struct Reader<K, V>(Arc<Mutex<mpsc::Receiver<Item<K, V>>>>);

impl<K, V> Clone for Reader<K, V> {
    fn clone(&self) -> Self {
        Reader(Arc::clone(&self.0))
    }
}

impl<K, V> Reader<K, V> {
    /// The next item, if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<Item<K, V>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_recv()
            .ok()
    }
}

/// A stream's input that is not a Kafka topic: an iterator or a channel (see the
/// [module documentation](self) for what each guarantees). Read it with
/// [`Dataflow::input`](crate::Dataflow::input).
pub struct Input<K, V> {
    name: String,
    pub(crate) source: Source<K, V>,
}

impl<K, V> Clone for Input<K, V> {
    fn clone(&self) -> Self {
        Input {
            name: self.name.clone(),
            source: self.source.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Input<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.source {
            Source::Iter(_) => "iter",
            Source::Channel(_) => "channel",
        };
        f.debug_struct("Input")
            .field("name", &self.name)
            .field("kind", &kind)
            .finish()
    }
}

impl<K: Data, V: Data> Input<K, V> {
    /// An input of the `(key, value)` items of the iterator that `items` makes. `items` is
    /// called at every start: to be processed exactly once, its items must be the same, in the
    /// same order, every time.
    pub fn iter<F, I>(name: &str, items: F) -> Self
    where
        F: Fn() -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (K, V)>,
        I::IntoIter: 'static,
    {
        Self::from_items(name, move || {
            Box::new(items().into_iter().map(|(key, value)| Item {
                key,
                value,
                timestamp: None,
            }))
        })
    }

    /// Like [`Input::iter`], with a timestamp (milliseconds since 1970) per item: the event time
    /// of windows and stream joins.
    pub fn iter_timed<F, I>(name: &str, items: F) -> Self
    where
        F: Fn() -> I + Send + Sync + 'static,
        I: IntoIterator<Item = (K, V, i64)>,
        I::IntoIter: 'static,
    {
        Self::from_items(name, move || {
            Box::new(items().into_iter().map(|(key, value, t)| Item {
                key,
                value,
                timestamp: Some(t),
            }))
        })
    }

    fn from_items(
        name: &str,
        make: impl Fn() -> Box<dyn Iterator<Item = Item<K, V>>> + Send + Sync + 'static,
    ) -> Self {
        Input {
            name: name.to_string(),
            source: Source::Iter(Arc::new(make)),
        }
    }

    /// An input fed through a channel that holds up to `capacity` items (at least 1) not yet
    /// taken by the dataflow: a sender waits while it is full. Returns the sending end, which
    /// can be cloned and moved to any task or thread, and the input.
    pub fn channel(name: &str, capacity: usize) -> (InputSender<K, V>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sender = InputSender {
            tx,
            name: name.to_string(),
        };
        let input = Input {
            name: name.to_string(),
            source: Source::Channel(Reader(Arc::new(Mutex::new(rx)))),
        };
        (sender, input)
    }
}

impl<K, V> Input<K, V> {
    /// The input's name, as the program gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of its source: the name with a prefix no Kafka topic can have. Metrics and the
    /// committed positions name the input so.
    pub fn source_name(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }
}

/// The sending end of a channel input ([`Input::channel`]). Cloning it makes another sender of
/// the same channel.
pub struct InputSender<K, V> {
    tx: mpsc::Sender<Item<K, V>>,
    name: String,
}

impl<K, V> Clone for InputSender<K, V> {
    fn clone(&self) -> Self {
        InputSender {
            tx: self.tx.clone(),
            name: self.name.clone(),
        }
    }
}

impl<K, V> fmt::Debug for InputSender<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputSender")
            .field("name", &self.name)
            .finish()
    }
}

impl<K, V> InputSender<K, V> {
    /// Sends one item, timestamped with the epoch it is taken into; waits while the channel is
    /// full. It returns once the item is in the channel, before the dataflow has taken it.
    pub async fn send(&self, key: K, value: V) -> Result<(), InputClosed> {
        self.send_item(key, value, None).await
    }

    /// Sends one item with timestamp `timestamp` (milliseconds since 1970).
    pub async fn send_at(&self, key: K, value: V, timestamp: i64) -> Result<(), InputClosed> {
        self.send_item(key, value, Some(timestamp)).await
    }

    /// Sends one item from code that is not async, blocking the thread while the channel is
    /// full.
    ///
    /// # Panics
    ///
    /// When called on a thread that runs async tasks (inside a tokio runtime): use
    /// [`InputSender::send`] there.
    pub fn blocking_send(&self, key: K, value: V) -> Result<(), InputClosed> {
        self.tx
            .blocking_send(Item {
                key,
                value,
                timestamp: None,
            })
            .map_err(|_| self.closed())
    }

    async fn send_item(&self, key: K, value: V, timestamp: Option<i64>) -> Result<(), InputClosed> {
        self.tx
            .send(Item {
                key,
                value,
                timestamp,
            })
            .await
            .map_err(|_| self.closed())
    }

    fn closed(&self) -> InputClosed {
        InputClosed {
            name: self.name.clone(),
        }
    }
}

/// A send to a channel input whose [`Input`] is gone: every copy of it was dropped, with the
/// application or test driver that held it. The item was not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputClosed {
    name: String,
}

impl fmt::Display for InputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input `{}` is closed: the application or driver that read it is gone",
            self.name
        )
    }
}

impl std::error::Error for InputClosed {}
