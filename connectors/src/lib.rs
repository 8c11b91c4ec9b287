//! Kafka for faustus: topic administration, partition readers, the committer (exactly-once via
//! Kafka transactions), changelog and progress recovery, codecs, and an embedded broker for
//! demos. No dataflow code lives here.

pub mod acks;
pub mod admin;
pub mod client;
pub mod codec;
pub mod committer;
pub mod embedded;
pub mod error;
pub mod reader;

pub use acks::{AckError, AckTracker};
pub use admin::{ensure_topics, partition_count, TopicSpec};
pub use client::KafkaConfig;
pub use codec::{kafka_partition, murmur2, Codec, CodecError, Json, Raw, Str};
pub use committer::{
    read_progress, CommitStats, Committer, CommitterConfig, DeliveryCounter, EpochBatch, Guarantee,
    OutRecord, Progress,
};
pub use embedded::EmbeddedBroker;
pub use error::{ConnectorError, Result};
pub use reader::{read_to_end, read_to_end_counted, PartitionReader, QuietContext, RawRecord};
