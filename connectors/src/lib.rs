//! Kafka for faustus: topic administration, partition readers, the committer (exactly-once via
//! Kafka transactions), changelog and progress recovery, codecs, and an embedded broker for
//! demos. No dataflow code lives here.
//!
//! The surface is flat, in two parts:
//!
//! - for programs and tests that talk to Kafka beside an application (`faustus::connectors`):
//!   [`KafkaConfig`], [`TopicSpec`] with [`ensure_topics`] and [`partition_count`],
//!   [`read_to_end`] (with [`RawRecord`] and [`QuietContext`]), [`DeliveryCounter`] (a
//!   producer context that tells whether a flush delivered everything), [`read_progress`] and
//!   [`Progress`] (what an application has committed), [`CommitStats`], the codecs, and
//!   [`murmur2`] / [`kafka_partition`] (where the Java client puts a key);
//! - the blocking, dataflow-free building blocks the engine is made of: [`PartitionReader`],
//!   [`read_to_end_counted`], the [`Committer`] with its [`CommitterConfig`], [`EpochBatch`] and
//!   [`OutRecord`], and the [`EmbeddedBroker`].
//!
//! ## Features
//!
//! - `fault-injection` (off by default): [`CommitterConfig`] gains `hold_open`, which holds
//!   every commit open for a while so that tests can kill a process inside a transaction.

mod admin;
mod client;
mod codec;
mod committer;
mod embedded;
mod error;
mod reader;

pub use admin::{ensure_topics, partition_count, TopicSpec};
pub use client::KafkaConfig;
pub use codec::{kafka_partition, murmur2, Codec, Json, Raw, Str};
pub use committer::{
    read_progress, CommitStats, Committer, CommitterConfig, DeliveryCounter, EpochBatch, Guarantee,
    OutRecord, Progress,
};
pub use embedded::EmbeddedBroker;
pub use error::{ConnectorError, Result};
pub use reader::{read_to_end, read_to_end_counted, PartitionReader, QuietContext, RawRecord};
