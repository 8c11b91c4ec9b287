//! proptest strategies for Kafka-shaped input (cargo feature `proptest`).
