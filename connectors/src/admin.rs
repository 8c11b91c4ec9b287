//! Topic administration: make sure the topics a program needs exist.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::KafkaConfig;
use crate::error::{ConnectorError, KafkaContext, Result};

/// A topic faustus needs, and how to create it if it is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name.
    pub name: String,
    /// Partitions to create it with; `None` means it must already exist.
    pub partitions: Option<i32>,
    /// Compacted (`cleanup.policy=compact`), for changelogs and progress.
    pub compacted: bool,
    /// Further topic settings to create it with (e.g. `retention.ms`).
    pub config: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic created with `partitions` partitions when missing.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions: Some(partitions),
            compacted: false,
            config: Vec::new(),
        }
    }

    /// The same topic, created with the topic setting `key=value` as well.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// A compacted topic created with `partitions` partitions when missing.
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            compacted: true,
            ..TopicSpec::new(name, partitions)
        }
    }
}

/// How often [`ensure_topics`] looks again for the topics it created (creation is
/// asynchronous): often enough that start-up does not wait for nothing, rarely enough that
/// the metadata requests cost the broker nothing.
const TOPIC_POLL: Duration = Duration::from_millis(50);

/// The number of partitions of `topic`, or `None` if it does not exist.
pub fn partition_count(config: &KafkaConfig, topic: &str) -> Result<Option<i32>> {
    Ok(topic_state(config, topic)?.map(|(partitions, _)| partitions))
}

/// The partition count of `topic` and whether every partition has a leader (a topic that was
/// just created cannot be read or written until they all do).
fn topic_state(config: &KafkaConfig, topic: &str) -> Result<Option<(i32, bool)>> {
    let consumer: BaseConsumer = config
        .client()
        .set("allow.auto.create.topics", "false")
        .create()
        .context(|| "creating a metadata client".into())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), config.request_timeout)
        .context(|| format!("fetching metadata of `{topic}`"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| match t.error() {
            None => Some((
                t.partitions().len() as i32,
                t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none()),
            )),
            Some(_) => None,
        }))
}

/// Creates the topics that are missing and returns every topic's partition count, in order.
/// A topic may be named more than once (a program's output that an agent also reads): a missing
/// one is created once, as the first spec that gives a partition count says. A missing topic
/// that no spec gives a partition count is an error that names it.
pub fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<Vec<i32>> {
    let mut missing: Vec<&TopicSpec> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for spec in topics {
        if !seen.insert(spec.name.as_str()) || partition_count(config, &spec.name)?.is_some() {
            continue;
        }
        let sized = topics
            .iter()
            .find(|s| s.name == spec.name && s.partitions.is_some());
        match sized {
            Some(sized) => missing.push(sized),
            None => return Err(ConnectorError::MissingTopic(spec.name.clone())),
        }
    }
    if !missing.is_empty() {
        let admin: AdminClient<DefaultClientContext> = config
            .client()
            .create()
            .context(|| "creating an admin client".into())?;
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|spec| {
                let topic = NewTopic::new(
                    &spec.name,
                    spec.partitions.unwrap_or(1),
                    TopicReplication::Fixed(1),
                );
                let topic = if spec.compacted {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                };
                spec.config
                    .iter()
                    .fold(topic, |topic, (key, value)| topic.set(key, value))
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(config.request_timeout));
        let results = futures::executor::block_on(admin.create_topics(&new, &options))
            .context(|| "creating topics".into())?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(ConnectorError::Kafka {
                        context: format!("creating topic `{name}`"),
                        source: rdkafka::error::KafkaError::AdminOp(code),
                    })
                }
            }
        }
    }
    // Wait until every topic is visible with its partitions, each with a leader (creation is
    // asynchronous).
    let deadline = std::time::Instant::now() + config.request_timeout;
    let mut counts = Vec::with_capacity(topics.len());
    for spec in topics {
        loop {
            match topic_state(config, &spec.name)? {
                Some((n, true)) if n > 0 => {
                    counts.push(n);
                    break;
                }
                _ if std::time::Instant::now() > deadline => {
                    return Err(ConnectorError::Timeout(format!(
                        "waiting for topic `{}` to appear",
                        spec.name
                    )))
                }
                _ => std::thread::sleep(TOPIC_POLL),
            }
        }
    }
    Ok(counts)
}
