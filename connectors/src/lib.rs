//! Kafka for faustus: topic administration, partition readers, the committer (exactly-once via
//! Kafka transactions), changelog and progress recovery, codecs, and an embedded broker for
//! demos. No dataflow code lives here.
//!
//! Every item is re-exported here, flat; the modules hold the explanations (the commit protocol,
//! the reader's contract, acknowledgements). The items are of two kinds:
//!
//! - for programs and tests that talk to Kafka beside an application (`faustus::connectors`):
//!   [`KafkaConfig`] with the user's [`KafkaProperties`] (from a `client.properties` file, the
//!   environment or code; secrets redacted), [`connect`] (reach the brokers, or say why not),
//!   [`TopicSpec`] with [`ensure_topics`] and [`partition_count`],
//!   [`read_to_end`] (with [`RawRecord`] and [`QuietContext`]), [`DeliveryCounter`] (a
//!   producer context that tells whether a flush delivered everything), [`read_progress`] and
//!   [`Progress`] (what an application has committed), [`CommitStats`], the codecs (with
//!   [`CodecError`]), and [`murmur2`] / [`kafka_partition`] (where the Java client puts a key);
//! - the blocking, dataflow-free building blocks the engine is made of: [`PartitionReader`],
//!   [`read_to_end_counted`], the [`Committer`] with its [`CommitterConfig`], [`EpochBatch`] and
//!   [`OutRecord`], [`is_fenced`] (a producer fenced by a newer one of its transactional id),
//!   the [`AckTracker`] (with [`AckError`]) of agents, and the [`EmbeddedBroker`].
//!
//! ## Features
//!
//! - `fault-injection` (off by default): [`CommitterConfig`] gains `hold_open`, which holds
//!   every commit open for a while so that tests can kill a process inside a transaction.

pub mod acks;
pub mod admin;
pub mod client;
pub mod codec;
pub mod committer;
pub mod delivery;
pub mod embedded;
pub mod error;
pub mod properties;
pub mod reader;

pub use acks::{AckError, AckTracker};
pub use admin::{
    connect, delete_groups, delete_topics, ensure_topics, existing_topics, group_members,
    partition_count, TopicSpec,
};
pub use client::KafkaConfig;
pub use codec::{json_from_slice, kafka_partition, murmur2, Codec, CodecError, Json, Raw, Str};
pub use committer::{
    is_fenced, owned_headers, read_progress, CheckpointGeneration, CommitObserver, CommitStats,
    Committer, CommitterConfig, DeliveryCounter, EpochBatch, Guarantee, OutRecord, Progress,
};
pub use delivery::{commit_promptly, flush_promptly};
pub use embedded::EmbeddedBroker;
pub use error::{ConnectorError, Result};
pub use properties::{is_secret, KafkaProperties, Origin, Role};
pub use reader::{read_to_end, read_to_end_counted, PartitionReader, QuietContext, RawRecord};
