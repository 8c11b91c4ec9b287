//! Topic administration: reach the brokers, and make sure the topics a program needs exist and
//! are set up as it needs them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
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
    /// Compacted (`cleanup.policy=compact`), for changelogs and progress. An existing topic
    /// that should be compacted and is not is an error ([`ConnectorError::TopicConfig`]).
    pub compacted: bool,
    /// Further topic settings to create it with (e.g. `retention.ms`, `min.insync.replicas`).
    pub config: Vec<(String, String)>,
    /// Replicas of each partition, to create it with; `None`: the brokers'
    /// `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// The partition count an existing topic must have (the progress topic: exactly 1); `None`:
    /// any.
    pub required_partitions: Option<i32>,
}

impl TopicSpec {
    /// A topic created with `partitions` partitions when missing.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions: Some(partitions),
            compacted: false,
            config: Vec::new(),
            replication_factor: None,
            required_partitions: None,
        }
    }

    /// A topic that must exist already (faustus never creates it).
    pub fn existing(name: impl Into<String>) -> Self {
        TopicSpec {
            partitions: None,
            ..TopicSpec::new(name, 1)
        }
    }

    /// The same topic, created with the topic setting `key=value` as well.
    pub fn with_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((key.into(), value.into()));
        self
    }

    /// The same topic, created with `replicas` replicas of each partition and at least
    /// `min_insync` of them in sync for a write to succeed (`min.insync.replicas`).
    pub fn replicated(mut self, replicas: i32, min_insync: i32) -> Self {
        self.replication_factor = Some(replicas);
        self.config.retain(|(k, _)| k != "min.insync.replicas");
        self.config
            .push(("min.insync.replicas".into(), min_insync.to_string()));
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

/// How long one metadata request of [`connect`] waits before it looks at what the client
/// reported: the time a refused connection takes to fail.
const CONNECT_SLICE: Duration = Duration::from_millis(500);

/// The topic [`connect`] asks the metadata of: any name does (the answer lists the brokers
/// whether the topic exists or not), and one topic keeps the answer small on a cluster of many.
const CONNECT_TOPIC: &str = "__faustus-connect";

/// How long [`connect`] serves its client's events after each metadata request (error
/// reports, and the log lines queued before them).
const CONNECT_DRAIN: Duration = Duration::from_millis(50);

/// What [`connect`]'s client heard from librdkafka: the first refusal (authentication or TLS),
/// and the last other error that says why.
#[derive(Default)]
struct ConnectContext {
    refusal: Mutex<Option<String>>,
    last: Mutex<Option<String>>,
}

impl ClientContext for ConnectContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let hint = match error.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
                | RDKafkaErrorCode::IllegalSASLState,
            ) => Some(
                "authentication failed: check `security.protocol`, `sasl.mechanism`, `sasl.username` and `sasl.password`",
            ),
            Some(RDKafkaErrorCode::SSL) => Some(
                "TLS failed: check `ssl.ca.location` (the certificate of the CA that signed the brokers' certificates) and `security.protocol`",
            ),
            _ => None,
        };
        match hint {
            Some(hint) => {
                let mut refusal = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
                refusal.get_or_insert_with(|| format!("{hint} ({reason})"));
            }
            None => {
                // "n/n brokers are down" says less than the error that took them down.
                let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_none()
                    || error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown)
                {
                    *last = Some(reason.into());
                }
            }
        }
    }
}

impl ConsumerContext for ConnectContext {}

/// Makes sure this configuration gets into the cluster, and returns how many brokers its
/// metadata lists. Tries for [`KafkaConfig::request_timeout`] while the brokers cannot be
/// reached, but stops at once, naming the broker and the cause, when they refuse the client:
/// authentication failed (a wrong password, user or mechanism), or TLS did (a broker
/// certificate that no CA in `ssl.ca.location` signed).
///
/// # Errors
///
/// [`ConnectorError::Connect`] with the broker, what it reported and what to check.
pub fn connect(config: &KafkaConfig) -> Result<usize> {
    let failed = |reason: String| ConnectorError::Connect {
        brokers: config.brokers.clone(),
        reason,
    };
    let consumer: BaseConsumer<ConnectContext> = config
        .client()
        .set("allow.auto.create.topics", "false")
        .create_with_context(ConnectContext::default())
        .map_err(|e| {
            failed(format!(
                "the client cannot be created: {}",
                crate::properties::redact_error(e)
            ))
        })?;
    let deadline = Instant::now() + config.request_timeout;
    loop {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(CONNECT_SLICE);
        let outcome = consumer.fetch_metadata(Some(CONNECT_TOPIC), slice);
        // Hand the client's error reports to the context: a poll returns at each one, and
        // goes on past log lines until its time is up.
        let drained = Instant::now() + CONNECT_DRAIN;
        while let Some(left) = drained.checked_duration_since(Instant::now()) {
            let _ = consumer.poll(left);
        }
        let context = consumer.context();
        if let Some(refusal) = context
            .refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(failed(refusal));
        }
        match outcome {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(metadata.brokers().len()),
            outcome if Instant::now() >= deadline => {
                let last = context
                    .last
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                    .or_else(|| outcome.err().map(|e| e.to_string()))
                    .unwrap_or_else(|| "the metadata lists no broker".into());
                return Err(failed(format!(
                    "no answer within {:?} (--kafka-request-timeout-ms): check the addresses, and `security.protocol` (a TLS listener needs SSL or SASL_SSL); the client's last error: {last}",
                    config.request_timeout
                )));
            }
            _ => {}
        }
    }
}

/// The number of partitions of `topic`, or `None` if it does not exist.
pub fn partition_count(config: &KafkaConfig, topic: &str) -> Result<Option<i32>> {
    Ok(topic_state(config, topic)?.map(|t| t.partitions))
}

/// What the metadata says of an existing topic.
struct TopicState {
    /// Its partition count.
    partitions: i32,
    /// Whether every partition has a leader (a topic that was just created cannot be read or
    /// written until they all do).
    led: bool,
    /// The fewest replicas any partition has.
    replicas: usize,
}

/// A client to ask the cluster's metadata with (it never creates a topic by asking).
fn metadata_client(config: &KafkaConfig) -> Result<BaseConsumer> {
    config
        .client()
        .set("allow.auto.create.topics", "false")
        .create()
        .context(|| "creating a metadata client".into())
}

/// An admin client.
fn admin_client(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>> {
    config
        .client()
        .create()
        .context(|| "creating an admin client".into())
}

/// What was done of an admin operation on several names: the names it was done for, skipping
/// those Kafka reports `absent`; any other error names the first that failed, and `what` was
/// being done to it.
fn done(
    results: Vec<Result<String, (String, RDKafkaErrorCode)>>,
    absent: RDKafkaErrorCode,
    what: &str,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for result in results {
        match result {
            Ok(name) => done.push(name),
            Err((_, code)) if code == absent => {}
            Err((name, code)) => {
                return Err(ConnectorError::Kafka {
                    context: format!("{what} `{name}`"),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(done)
}

/// What the metadata says of `topic`; `None` if it does not exist.
fn topic_state(config: &KafkaConfig, topic: &str) -> Result<Option<TopicState>> {
    let metadata = metadata_client(config)?
        .fetch_metadata(Some(topic), config.request_timeout)
        .context(|| format!("fetching metadata of `{topic}`"))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| match t.error() {
            None => Some(TopicState {
                partitions: t.partitions().len() as i32,
                led: t
                    .partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none()),
                replicas: t
                    .partitions()
                    .iter()
                    .map(|p| p.replicas().len())
                    .min()
                    .unwrap_or(0),
            }),
            Some(_) => None,
        }))
}

/// Creates the topics that are missing and returns every topic's partition count, in order.
/// A topic may be named more than once (a program's output that an agent also reads): a missing
/// one is created once, as the first spec that gives a partition count says. A missing topic
/// that no spec gives a partition count is an error that names it.
///
/// Topics that exist are checked first: one that a spec wants compacted must be
/// (`cleanup.policy` includes `compact`), and one that a spec gives
/// [`TopicSpec::required_partitions`] must have that many partitions. One with fewer replicas
/// than a spec asks for is only a warning (its replicas can only be added by reassigning its
/// partitions).
///
/// # Errors
///
/// [`ConnectorError::MissingTopic`], [`ConnectorError::TopicConfig`] (what is wrong with an
/// existing topic and how to fix it), and what Kafka reports.
pub fn ensure_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<Vec<i32>> {
    let mut missing: Vec<&TopicSpec> = Vec::new();
    let mut compacted: Vec<&str> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for spec in topics {
        if !seen.insert(spec.name.as_str()) {
            continue;
        }
        let specs = || topics.iter().filter(|s| s.name == spec.name);
        let Some(state) = topic_state(config, &spec.name)? else {
            match specs().find(|s| s.partitions.is_some()) {
                Some(sized) => missing.push(sized),
                None => return Err(ConnectorError::MissingTopic(spec.name.clone())),
            }
            continue;
        };
        if let Some(required) = specs().find_map(|s| s.required_partitions) {
            if state.partitions != required {
                return Err(ConnectorError::TopicConfig {
                    topic: spec.name.clone(),
                    problem: format!(
                        "has {} partitions, but faustus needs exactly {required}",
                        state.partitions
                    ),
                    fix: format!(
                        "recreate it with {required} (faustus creates it when it is missing)"
                    ),
                });
            }
        }
        if let Some(wanted) = specs().filter_map(|s| s.replication_factor).max() {
            if (state.replicas as i32) < wanted {
                log::warn!(
                    "topic `{}` has {} replica(s) per partition, fewer than the {wanted} configured: it survives the loss of fewer brokers (add replicas with kafka-reassign-partitions.sh)",
                    spec.name,
                    state.replicas
                );
            }
        }
        if specs().any(|s| s.compacted) {
            compacted.push(&spec.name);
        }
    }
    check_compacted(config, &compacted)?;
    if !missing.is_empty() {
        create(config, &missing)?;
    }
    // Wait until every topic is visible with its partitions, each with a leader (creation is
    // asynchronous).
    let deadline = Instant::now() + config.request_timeout;
    let mut counts = Vec::with_capacity(topics.len());
    for spec in topics {
        loop {
            match topic_state(config, &spec.name)? {
                Some(TopicState {
                    partitions,
                    led: true,
                    ..
                }) if partitions > 0 => {
                    counts.push(partitions);
                    break;
                }
                _ if Instant::now() > deadline => {
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

/// Checks that the existing `topics` are compacted. A client that may not describe topic
/// configurations (no `DescribeConfigs` permission) skips the check, with a warning.
fn check_compacted(config: &KafkaConfig, topics: &[&str]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin_client(config)?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(config.request_timeout));
    let results = futures::executor::block_on(admin.describe_configs(&resources, &options))
        .context(|| "describing the configuration of topics".into())?;
    for (topic, result) in topics.iter().zip(results) {
        let resource = match result {
            Ok(resource) => resource,
            Err(code) => {
                log::warn!(
                    "cannot check that topic `{topic}` is compacted ({code}); it must be (cleanup.policy=compact)"
                );
                continue;
            }
        };
        let policy = resource
            .get("cleanup.policy")
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        if !policy.split(',').any(|p| p.trim() == "compact") {
            return Err(ConnectorError::TopicConfig {
                topic: topic.to_string(),
                problem: format!(
                    "has cleanup.policy={policy}, but faustus needs it compacted: it keeps the latest record of every key, and deleting old segments loses state"
                ),
                fix: format!(
                    "make it compacted: kafka-configs.sh --bootstrap-server {} --alter --entity-type topics --entity-name {topic} --add-config cleanup.policy=compact",
                    config.brokers
                ),
            });
        }
    }
    Ok(())
}

/// Creates the `missing` topics.
fn create(config: &KafkaConfig, missing: &[&TopicSpec]) -> Result<()> {
    let admin = admin_client(config)?;
    let new: Vec<NewTopic> = missing
        .iter()
        .map(|spec| {
            // -1: the brokers' default.replication.factor.
            let replication = TopicReplication::Fixed(spec.replication_factor.unwrap_or(-1));
            let topic = NewTopic::new(&spec.name, spec.partitions.unwrap_or(1), replication);
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
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                let replicas = missing
                    .iter()
                    .find(|s| s.name == name)
                    .and_then(|s| s.replication_factor)
                    .map_or("the brokers' default".to_string(), |r| r.to_string());
                return Err(ConnectorError::Replication(format!(
                    "creating topic `{name}` with {replicas} replicas per partition: the cluster has fewer brokers available; lower the replication factor (--replication-factor)"
                )));
            }
            Err((name, RDKafkaErrorCode::InvalidConfig)) => {
                return Err(ConnectorError::Kafka {
                    context: format!(
                    "creating topic `{name}` (check --min-insync-replicas and the topic settings)"
                ),
                    source: KafkaError::AdminOp(RDKafkaErrorCode::InvalidConfig),
                })
            }
            Err((name, code)) => {
                return Err(ConnectorError::Kafka {
                    context: format!("creating topic `{name}`"),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

/// The members of consumer group `group` right now: none when it is empty or does not exist.
///
/// # Errors
///
/// What Kafka reports when it cannot be asked.
pub fn group_members(config: &KafkaConfig, group: &str) -> Result<usize> {
    let groups = metadata_client(config)?
        .fetch_group_list(Some(group), config.request_timeout)
        .context(|| format!("describing consumer group `{group}`"))?;
    Ok(groups
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .map(|g| g.members().len())
        .sum())
}

/// Of `topics`, those that exist.
///
/// # Errors
///
/// What Kafka reports when it cannot be asked.
pub fn existing_topics(config: &KafkaConfig, topics: &[String]) -> Result<Vec<String>> {
    let mut existing = Vec::new();
    for topic in topics {
        if topic_state(config, topic)?.is_some() {
            existing.push(topic.clone());
        }
    }
    Ok(existing)
}

/// Deletes `topics` (those that do not exist are skipped), and waits until the metadata no
/// longer lists them, so that a program started next creates them anew.
///
/// # Errors
///
/// What Kafka reports, naming the topic; [`ConnectorError::Timeout`] when they are still listed
/// after [`KafkaConfig::request_timeout`].
pub fn delete_topics(config: &KafkaConfig, topics: &[String]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(config.request_timeout));
    let results =
        futures::executor::block_on(admin_client(config)?.delete_topics(&names, &options))
            .context(|| "deleting topics".into())?;
    done(
        results,
        RDKafkaErrorCode::UnknownTopicOrPartition,
        "deleting topic",
    )?;
    let deadline = Instant::now() + config.request_timeout;
    for topic in topics {
        while topic_state(config, topic)?.is_some() {
            if Instant::now() >= deadline {
                return Err(ConnectorError::Timeout(format!(
                    "after {:?} (--kafka-request-timeout-ms): the deleted topic `{topic}` is still listed",
                    config.request_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Deletes consumer groups and their committed offsets; of `groups`, returns those that
/// existed. A group with members cannot be deleted: Kafka refuses, and so does this.
///
/// # Errors
///
/// What Kafka reports, naming the group.
pub fn delete_groups(config: &KafkaConfig, groups: &[String]) -> Result<Vec<String>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(config.request_timeout));
    let results =
        futures::executor::block_on(admin_client(config)?.delete_groups(&names, &options))
            .context(|| "deleting consumer groups".into())?;
    done(
        results,
        RDKafkaErrorCode::GroupIdNotFound,
        "deleting consumer group",
    )
}
