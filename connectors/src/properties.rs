//! librdkafka client properties given by the user: from a properties file, the environment or
//! code, for every client faustus makes or for its consumers or its producers only.
//!
//! ## Sources, and which one wins
//!
//! - A file in the format of Kafka's own `client.properties` ([`KafkaProperties::read_file`]):
//!   one `key=value` per line (`key: value` and `key value` work too), blank lines and lines
//!   that start with `#` or `!` ignored, a line that ends in `\` continued on the next one,
//!   `\` escapes as in Java's `Properties`. Space around keys and values is trimmed.
//! - The environment ([`KafkaProperties::read_env`]): `FAUSTUS_KAFKA_PROPERTY_<NAME>=value`, where
//!   the name is the property's, upper case, with `_` for `.`:
//!   `FAUSTUS_KAFKA_PROPERTY_SASL_MECHANISM=SCRAM-SHA-512` sets `sasl.mechanism`. (No librdkafka
//!   property has `_` in its name, so the mapping is exact.)
//! - Code ([`KafkaProperties::set`]).
//!
//! A later setting of the same key replaces an earlier one; a program reads the file first, then
//! the environment, so the environment wins.
//!
//! ## Roles
//!
//! A key prefixed `consumer.` applies to consumers only, one prefixed `producer.` to producers
//! only (as in Kafka Streams): `producer.linger.ms=20`, or
//! `FAUSTUS_KAFKA_PROPERTY_PRODUCER_LINGER_MS=20`. Unprefixed keys apply to every client
//! (consumers, producers, admin and metadata clients); a role's own key wins over an unprefixed
//! one.
//!
//! ## Keys faustus owns
//!
//! [`ENGINE_OWNED`] lists what the engine sets itself because its guarantees depend on it
//! (consumer groups, offsets, isolation, transactions); giving one is an error that says so.
//! `bootstrap.servers` is where the brokers are, which a program takes as its brokers (see
//! [`KafkaProperties::take_bootstrap_servers`]).
//!
//! ## Secrets
//!
//! The values of secret keys ([`is_secret`]: anything with `password` or `secret` in its name,
//! `sasl.jaas.config`, `sasl.oauthbearer.config`, `ssl.key.pem`) never appear in a message, a log
//! line or `Debug` output: they show as `[redacted]`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::error::{ConnectorError, Result};

/// The prefix of environment variables that set properties ([`KafkaProperties::read_env`]).
pub const ENV_PREFIX: &str = "FAUSTUS_KAFKA_PROPERTY_";

/// What a redacted value shows as.
pub const REDACTED: &str = "[redacted]";

/// Keys the engine sets itself, and why: giving one is an error.
pub const ENGINE_OWNED: &[(&str, &str)] = &[
    (
        "group.id",
        "faustus names its consumer groups: `<app id>` for the committed positions, `<app id>-<agent>` for agents",
    ),
    (
        "group.instance.id",
        "faustus' consumers are assigned partitions by faustus, and agents' groups by Kafka",
    ),
    (
        "enable.auto.commit",
        "faustus commits positions itself, with the outputs they produced",
    ),
    (
        "enable.auto.offset.store",
        "faustus commits positions itself, with the outputs they produced",
    ),
    (
        "auto.offset.reset",
        "faustus starts every reader where its committed progress says",
    ),
    (
        "isolation.level",
        "faustus reads only committed records (`read_committed`): exactly-once depends on it",
    ),
    (
        "enable.partition.eof",
        "faustus' readers find the ends of partitions with it",
    ),
    (
        "partition.assignment.strategy",
        "agents rely on the cooperative-sticky assignment",
    ),
    (
        "transactional.id",
        "faustus derives transactional ids from the app id (`<app id>-committer`), which fences a previous instance",
    ),
    (
        "transaction.timeout.ms",
        "set it with --transaction-timeout-ms (App::transaction_timeout)",
    ),
];

/// Which clients a property applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Every client: consumers, producers, admin and metadata clients.
    All,
    /// Consumers only (keys prefixed `consumer.`).
    Consumer,
    /// Producers only (keys prefixed `producer.`).
    Producer,
}

impl Role {
    /// The role of a key as written (`consumer.x`, `producer.x` or `x`) and the librdkafka key.
    pub fn split(key: &str) -> (Role, &str) {
        if let Some(rest) = key.strip_prefix("consumer.") {
            (Role::Consumer, rest)
        } else if let Some(rest) = key.strip_prefix("producer.") {
            (Role::Producer, rest)
        } else {
            (Role::All, key)
        }
    }

    /// The prefix of the role's keys.
    fn prefix(self) -> &'static str {
        match self {
            Role::All => "",
            Role::Consumer => "consumer.",
            Role::Producer => "producer.",
        }
    }
}

/// Where a property was set, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Line `line` (from 1) of properties file `path`.
    File {
        /// The file.
        path: PathBuf,
        /// The line the key is on.
        line: usize,
    },
    /// Environment variable `name`.
    Env(String),
    /// Command-line flag `flag`.
    Flag(String),
    /// The program's code.
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}, line {line}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Code => f.write_str("set in the program"),
        }
    }
}

/// True for keys whose values are secrets: never printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("jaas")
        || key.ends_with("sasl.oauthbearer.config")
        || key.ends_with("ssl.key.pem")
}

/// `value`, or [`REDACTED`] when `key` is a secret.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        REDACTED
    } else {
        value
    }
}

/// One property: its value and where it was set.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    origin: Origin,
}

/// librdkafka client properties given by the user, by role: see the [module docs](self).
/// `Debug` and [`fmt::Display`] show secrets as `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties {
    entries: BTreeMap<(Role, String), Entry>,
}

impl KafkaProperties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if no property is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` (`consumer.`/`producer.` prefixed for one role) to `value`, as set in code.
    pub fn set(&mut self, key: impl AsRef<str>, value: impl Into<String>) -> &mut Self {
        self.set_from(key.as_ref(), value.into(), Origin::Code)
    }

    /// Sets `key` to `value`, set at `origin`.
    pub fn set_from(&mut self, key: &str, value: String, origin: Origin) -> &mut Self {
        let (role, name) = Role::split(key.trim());
        self.entries
            .insert((role, name.to_string()), Entry { value, origin });
        self
    }

    /// The value of `key` (as written, with its role prefix, if any).
    pub fn get(&self, key: &str) -> Option<&str> {
        let (role, name) = Role::split(key);
        self.entries
            .get(&(role, name.to_string()))
            .map(|e| e.value.as_str())
    }

    /// Adds every setting of `other`, which win over these.
    pub fn extend(&mut self, other: &KafkaProperties) -> &mut Self {
        for (k, v) in &other.entries {
            self.entries.insert(k.clone(), v.clone());
        }
        self
    }

    /// Reads the properties file `path` (Kafka's `client.properties` format: see the
    /// [module docs](self)) over these.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::PropertiesFile`] when the file cannot be read or a line has no key.
    pub fn read_file(&mut self, path: impl AsRef<Path>) -> Result<&mut Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConnectorError::PropertiesFile {
            path: path.display().to_string(),
            reason: format!("cannot read it: {e}"),
        })?;
        let settings = parse(&text).map_err(|bad| ConnectorError::PropertiesFile {
            path: path.display().to_string(),
            reason: format!("line {}: {}", bad.line, bad.reason),
        })?;
        for Setting { line, key, value } in settings {
            let origin = Origin::File {
                path: path.to_path_buf(),
                line,
            };
            self.set_from(&key, value, origin);
        }
        Ok(self)
    }

    /// Reads the `FAUSTUS_KAFKA_PROPERTY_*` variables among `vars` (for a program,
    /// `std::env::vars_os()`) over these: `FAUSTUS_KAFKA_PROPERTY_SASL_MECHANISM=SCRAM-SHA-512`
    /// sets `sasl.mechanism`, `FAUSTUS_KAFKA_PROPERTY_PRODUCER_LINGER_MS=20` sets
    /// `producer.linger.ms`.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Property`] for a variable whose value is not UTF-8, or that names no
    /// property.
    pub fn read_env(
        &mut self,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<&mut Self> {
        let mut found: Vec<(String, OsString)> = vars
            .into_iter()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        found.sort();
        for (name, value) in found {
            let key = name[ENV_PREFIX.len()..].replace('_', ".").to_lowercase();
            let value = value.into_string().map_err(|_| ConnectorError::Property {
                key: key.clone(),
                origin: format!("environment variable {name}"),
                reason: "the value is not UTF-8".into(),
            })?;
            if key.is_empty() || key.starts_with('.') || key.ends_with('.') {
                return Err(ConnectorError::Property {
                    key,
                    origin: format!("environment variable {name}"),
                    reason: format!(
                        "name no property after {ENV_PREFIX} (e.g. {ENV_PREFIX}SASL_MECHANISM for `sasl.mechanism`)"
                    ),
                });
            }
            self.set_from(&key, value, Origin::Env(name));
        }
        Ok(self)
    }

    /// Removes `bootstrap.servers` (of every client: a role's own is an error in
    /// [`KafkaProperties::validate`]) and returns its value and where it was set: a
    /// program takes it as its brokers.
    pub fn take_bootstrap_servers(&mut self) -> Option<(String, Origin)> {
        self.entries
            .remove(&(Role::All, "bootstrap.servers".to_string()))
            .map(|entry| (entry.value, entry.origin))
    }

    /// Checks every property: not one faustus owns ([`ENGINE_OWNED`]), and a name and value
    /// librdkafka accepts. Settings that only clash with each other are found when a client is
    /// created.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Property`], naming the key, where it was set, and what is wrong; a
    /// secret's value is never part of it.
    pub fn validate(&self) -> Result<()> {
        for ((role, key), entry) in &self.entries {
            let error = |reason: String| ConnectorError::Property {
                key: format!("{}{key}", role.prefix()),
                origin: entry.origin.to_string(),
                reason,
            };
            if key == "bootstrap.servers" {
                return Err(error(
                    "give the brokers with --brokers (or `bootstrap.servers` in the properties file, for every client)".into(),
                ));
            }
            if let Some((_, why)) = ENGINE_OWNED.iter().find(|(k, _)| k == key) {
                return Err(error(format!("faustus sets it itself: {why}; remove it")));
            }
            if let Some(hint) = java_only(key) {
                return Err(error(format!(
                    "this is a setting of Kafka's Java client, which librdkafka does not know: {hint}"
                )));
            }
            let mut config = ClientConfig::new();
            config.set(key, &entry.value);
            if let Err(e) = config.create_native_config() {
                return Err(error(describe_config_error(key, &entry.value, &e)));
            }
        }
        Ok(())
    }

    /// The properties of `role` (for [`Role::All`], those of every client), in key order.
    pub fn of_role(&self, role: Role) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter(move |((r, _), _)| *r == role)
            .map(|((_, k), e)| (k.as_str(), e.value.as_str()))
    }

    /// Sets the properties that apply to `role` on `config`: those of every client, then the
    /// role's own.
    pub fn apply(&self, config: &mut ClientConfig, role: Role) {
        for (k, v) in self.of_role(Role::All) {
            config.set(k, v);
        }
        if role != Role::All {
            for (k, v) in self.of_role(role) {
                config.set(k, v);
            }
        }
    }
}

impl fmt::Display for KafkaProperties {
    /// `key=value` pairs separated by `, ` (keys with their role prefix), secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ((role, key), entry)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}{key}={}", role.prefix(), shown(key, &entry.value))?;
        }
        Ok(())
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|((role, key), entry)| {
                (format!("{}{key}", role.prefix()), shown(key, &entry.value))
            }))
            .finish()
    }
}

/// For settings of Kafka's Java client that librdkafka names differently, what to use instead.
fn java_only(key: &str) -> Option<&'static str> {
    Some(match key {
        "sasl.jaas.config" => {
            "give the user and password as `sasl.username` and `sasl.password` instead"
        }
        "ssl.truststore.location" | "ssl.truststore.password" | "ssl.truststore.type" => {
            "give the CA certificate(s) as a PEM file in `ssl.ca.location` instead"
        }
        "ssl.keystore.type" => "librdkafka reads PKCS#12 key stores (`ssl.keystore.location`)",
        _ => return None,
    })
}

/// librdkafka's complaint about `key=value`, without the value when it is a secret.
fn describe_config_error(key: &str, value: &str, error: &KafkaError) -> String {
    let reason = match error {
        KafkaError::ClientConfig(_, description, _, _) => description.clone(),
        other => other.to_string(),
    };
    if is_secret(key) && !value.is_empty() {
        reason.replace(value, REDACTED)
    } else {
        reason
    }
}

/// Redacts the value of a secret key from a Kafka client error (librdkafka's configuration
/// errors carry the value): pass every error of creating a client through it before showing it.
pub fn redact_error(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, description, key, value) if is_secret(&key) => {
            let description = if value.is_empty() {
                description
            } else {
                description.replace(&value, REDACTED)
            };
            KafkaError::ClientConfig(code, description, key, REDACTED.into())
        }
        other => other,
    }
}

/// One `key=value` of a properties file, on line `line` (from 1).
struct Setting {
    line: usize,
    key: String,
    value: String,
}

/// A line of a properties file that is not a setting, and why.
struct BadLine {
    line: usize,
    reason: String,
}

/// The settings of a properties file, or the first line that is not one.
fn parse(text: &str) -> std::result::Result<Vec<Setting>, BadLine> {
    let mut settings = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let start = line.trim_start();
        if start.is_empty() || start.starts_with('#') || start.starts_with('!') {
            continue;
        }
        // A line that ends in an odd number of backslashes goes on on the next line, whose
        // leading space is dropped.
        let mut logical = start.to_string();
        while ends_in_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let key = unescape(key.trim());
        if key.is_empty() {
            return Err(BadLine {
                line: index + 1,
                reason: "no key before the `=`".into(),
            });
        }
        settings.push(Setting {
            line: index + 1,
            key,
            value: unescape(value.trim()),
        });
    }
    Ok(settings)
}

/// True if `line` ends in an odd number of backslashes.
fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// The key and the value of a logical line: the key ends at the first unescaped `=`, `:` or
/// space; then space, at most one `=` or `:`, and space separate it from the value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..i], &line[i + 1..]),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (&line[..i], rest);
            }
            _ => {}
        }
    }
    (line, "")
}

/// Resolves `\` escapes: `\t`, `\n`, `\r`, `\f`, `\uXXXX`, and `\x` for any other `x`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(u) if hex.len() == 4 => {
                        out.push(u);
                        chars.nth(3);
                    }
                    _ => out.push('u'),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile_path::TempFile, KafkaProperties) {
        let f = tempfile_path::TempFile::new(text);
        let mut p = KafkaProperties::new();
        p.read_file(&f.0).expect("a readable file");
        (f, p)
    }

    /// A file in the temporary directory, deleted when dropped.
    mod tempfile_path {
        pub struct TempFile(pub std::path::PathBuf);
        impl TempFile {
            pub fn new(text: &str) -> Self {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let path = std::env::temp_dir().join(format!(
                    "faustus-props-{}-{nanos}.properties",
                    std::process::id()
                ));
                std::fs::write(&path, text).unwrap();
                TempFile(path)
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn the_client_properties_format_is_read_as_kafka_reads_it() {
        let (_f, p) = file(
            "# a comment\n\
             ! another\n\
             \n\
             security.protocol=SASL_SSL\n\
             \u{20}  sasl.mechanism : SCRAM-SHA-512  \n\
             sasl.username faustus\n\
             sasl.password = p=ss:w\\\\rd\n\
             ssl.ca.location=/etc/ca\\\n\
             \u{20}   .pem\n\
             client.id=a\\u00e9b\n\
             producer.linger.ms=20\n\
             consumer.fetch.wait.max.ms=5\n\
             linger.ms=1\n\
             linger.ms=2\n\
             empty.value=\n",
        );
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("sasl.username"), Some("faustus"));
        assert_eq!(p.get("sasl.password"), Some("p=ss:w\\rd"));
        assert_eq!(p.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(p.get("client.id"), Some("aéb"));
        assert_eq!(p.get("producer.linger.ms"), Some("20"));
        assert_eq!(p.get("consumer.fetch.wait.max.ms"), Some("5"));
        assert_eq!(p.get("linger.ms"), Some("2"), "a later line wins");
        assert_eq!(p.get("empty.value"), Some(""));
        assert_eq!(p.get("# a comment"), None);
        let producer: Vec<_> = p.of_role(Role::Producer).collect();
        assert_eq!(producer, vec![("linger.ms", "20")]);
    }

    #[test]
    fn a_line_without_a_key_names_the_file_and_the_line() {
        let f = tempfile_path::TempFile::new("a=1\n=2\n");
        let error = KafkaProperties::new().read_file(&f.0).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&f.0.display().to_string()), "{message}");
        assert!(message.contains("line 2"), "{message}");
        let missing = KafkaProperties::new()
            .read_file("/nonexistent/client.properties")
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("/nonexistent/client.properties") && missing.contains("cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn the_environment_names_properties_with_underscores_and_wins_over_the_file() {
        let (_f, mut p) = file("sasl.mechanism=PLAIN\nlinger.ms=1\n");
        let vars = [
            ("FAUSTUS_KAFKA_PROPERTY_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("FAUSTUS_KAFKA_PROPERTY_PRODUCER_LINGER_MS", "20"),
            ("FAUSTUS_KAFKA_REQUEST_TIMEOUT_MS", "5"),
            ("FAUSTUS_KAFKA_HOME", "/x"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        p.read_env(vars).unwrap();
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("producer.linger.ms"), Some("20"));
        assert_eq!(p.get("linger.ms"), Some("1"));
        assert_eq!(p.get("request.timeout.ms"), None);
        assert_eq!(p.get("home"), None);
        let empty = [(
            OsString::from("FAUSTUS_KAFKA_PROPERTY_"),
            OsString::from("x"),
        )];
        assert!(KafkaProperties::new().read_env(empty).is_err());
    }

    #[test]
    fn secrets_never_show() {
        let mut p = KafkaProperties::new();
        p.set("sasl.password", "hunter2")
            .set("ssl.key.password", "k3y")
            .set("ssl.keystore.password", "st0re")
            .set("sasl.oauthbearer.client.secret", "s3cret")
            .set("sasl.jaas.config", "x required password=\"j4as\";")
            .set("producer.sasl.password", "pr0d")
            .set("sasl.username", "faustus");
        let shown = format!("{p} {p:?}");
        for secret in ["hunter2", "k3y", "st0re", "s3cret", "j4as", "pr0d"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("sasl.username=faustus"), "{shown}");
        assert!(shown.contains("sasl.password=[redacted]"), "{shown}");
        // librdkafka's complaint about a value of a secret key does not repeat it.
        let config_error = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"hunter2\" for configuration property \"sasl.password\"".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let redacted = redact_error(config_error).to_string();
        assert!(!redacted.contains("hunter2"), "{redacted}");
    }

    #[test]
    fn unknown_owned_and_invalid_properties_are_errors_that_name_them() {
        let (f, p) = file("security.protocol=SASL_SSL\nno.such.property=1\n");
        let message = p.validate().unwrap_err().to_string();
        assert!(message.contains("`no.such.property`"), "{message}");
        assert!(message.contains(&f.0.display().to_string()), "{message}");
        assert!(message.contains("line 2"), "{message}");

        let mut p = KafkaProperties::new();
        p.set("linger.ms", "soon");
        let message = p.validate().unwrap_err().to_string();
        assert!(message.contains("`linger.ms`"), "{message}");

        for owned in [
            "enable.auto.commit",
            "consumer.isolation.level",
            "transactional.id",
        ] {
            let mut p = KafkaProperties::new();
            p.set(owned, "x");
            let message = p.validate().unwrap_err().to_string();
            assert!(message.contains(&format!("`{owned}`")), "{message}");
            assert!(message.contains("faustus sets it itself"), "{message}");
        }

        let mut p = KafkaProperties::new();
        p.set("sasl.jaas.config", "secret stuff");
        let message = p.validate().unwrap_err().to_string();
        assert!(message.contains("sasl.username"), "{message}");
        assert!(!message.contains("secret stuff"), "{message}");

        let mut p = KafkaProperties::new();
        p.set("security.protocol", "SASL_SSL")
            .set("producer.compression.type", "lz4")
            .set("consumer.fetch.max.bytes", "1048576");
        p.validate().expect("valid properties");
    }

    #[test]
    fn bootstrap_servers_is_taken_out_as_the_brokers() {
        let (_f, mut p) = file("bootstrap.servers=b:9093\nclient.id=x\n");
        let (brokers, origin) = p.take_bootstrap_servers().unwrap();
        assert_eq!(brokers, "b:9093");
        assert!(matches!(origin, Origin::File { line: 1, .. }));
        assert_eq!(p.get("bootstrap.servers"), None);
        p.validate().unwrap();
    }
}
