//! The program's own command line: `worker` runs the application, and the other commands are
//! the tools around it, as Faust's `faust` command gives every Faust app.
//!
//! A program adds them next to [`AppArgs`](crate::AppArgs), and hands every command but
//! `worker` to [`App::run_tool`](crate::App::run_tool) with the same dataflow it runs:
//!
//! ```no_run
//! use clap::Parser;
//! use faustus::cli::Command;
//! use faustus::prelude::*;
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     app: AppArgs,
//!     #[command(subcommand)]
//!     command: Option<Command>,
//! }
//!
//! fn main() -> faustus::Result<()> {
//!     let args = Args::parse();
//!     let app = App::new("counts").with_args(&args.app)?;
//!     let words = Topic::<String, String>::new("words").key_codec(Str).value_codec(Str);
//!     let dataflow = move |df: &Dataflow<'_>| {
//!         df.stream(&words).map(|_, w| (w, 1i64)).sum("counts").public();
//!     };
//!     match args.command.unwrap_or_default() {
//!         Command::Worker => app.run(dataflow),
//!         tool => app.run_tool(&tool, dataflow),
//!     }
//! }
//! ```
//!
//! Then `counts tables`, `counts get counts hello`, `counts send words hello`, `counts agents`
//! and `counts reset`. The flags ([`AppArgs`](crate::AppArgs), or their `FAUSTUS_*` variables)
//! say where the brokers are and where the running application serves HTTP; they go before
//! or after the command.
//!
//! `tables`, `get` and `agents` ask the running application over its HTTP API (`--http`, and
//! `--http-peers` in a cluster); `send` and `reset` talk to Kafka (`--brokers`), and `reset`
//! refuses while any process of the application answers or any of its agents is in its group.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use faustus_connectors::KafkaConfig;
use serde_json::Value;

use crate::app::Planned;
use crate::config::AppConfig;
use crate::error::{Error, Result};

/// How long one request to the running application may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What a faustus program is asked to do.
#[derive(clap::Subcommand, Clone, Debug, Default, PartialEq, Eq)]
pub enum Command {
    /// Run the application (the default).
    #[default]
    Worker,
    /// List the application's tables: their changelog topics, and, from the running
    /// application, their state and entries.
    Tables,
    /// Print the value of `key` in `table`, as the running application holds it (JSON).
    Get {
        /// The table.
        table: String,
        /// The key, as in the table's HTTP path (`/api/table/<table>/<key>/`).
        key: String,
    },
    /// Send one record to a topic of the program, encoded by the topic's codecs: the key and
    /// the value are given in the codec's text form (JSON for JSON topics, the text itself for
    /// string ones), and one that does not decode as the topic's type is refused.
    Send {
        /// The topic.
        topic: String,
        /// The record's key (none: a null key).
        #[arg(long)]
        key: Option<String>,
        /// The record's value.
        value: String,
    },
    /// List the program's agents: their topics and groups, and, from the running application,
    /// the partitions each is active for.
    Agents,
    /// Delete the application's state so that its next start begins from the start of its
    /// inputs: its changelog and progress topics, and the consumer groups of its committed
    /// positions and of its agents. Output and dead-letter topics are kept. Refused while the
    /// application runs.
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

impl Command {
    /// Whether this is `worker`, which runs the application rather than a tool.
    pub fn is_worker(&self) -> bool {
        matches!(self, Command::Worker)
    }
}

/// What a tool knows of the program: its configuration and its planned dataflow and agents.
pub(crate) struct Program<'a> {
    pub config: &'a AppConfig,
    pub planned: Planned,
    /// The agents: name, input topic, consumer group.
    pub agents: Vec<(String, String, String)>,
}

/// Runs a tool command; what it prints goes to `out`.
pub(crate) fn run(program: &Program<'_>, command: &Command, out: &mut dyn Write) -> Result<()> {
    let result = match command {
        Command::Worker => Err(Error::Config(
            "`worker` runs the application: call `App::run` or `App::start` for it".into(),
        )),
        Command::Tables => tables(program, out),
        Command::Get { table, key } => get(program, table, key, out),
        Command::Send { topic, key, value } => send(program, topic, key.as_deref(), value, out),
        Command::Agents => agents(program, out),
        Command::Reset { yes } => reset(program, *yes, out),
    };
    out.flush().map_err(io)?;
    result
}

fn io(e: std::io::Error) -> Error {
    Error::Runtime(format!("writing the answer: {e}"))
}

/// The running application's HTTP API, as this configuration names it.
struct Api {
    /// Base URLs: this process's `--http` first, then `--http-peers`.
    urls: Vec<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// What asking the running application gave.
enum Answer {
    /// It answered: the status and the JSON body.
    Json(u16, Value),
    /// No process answers at any address; the reasons.
    Down(String),
}

impl Api {
    fn new(config: &AppConfig) -> Result<Self> {
        let mut urls = Vec::new();
        if let Some(addr) = config.http {
            // An address that binds every interface is asked on this host's.
            let host = match addr.ip().is_unspecified() {
                true => "127.0.0.1".to_string(),
                false => addr.ip().to_string(),
            };
            urls.push(format!("http://{host}:{}", addr.port()));
        }
        for peer in &config.http_peers {
            if !urls.contains(peer) {
                urls.push(peer.clone());
            }
        }
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| Error::Runtime(format!("making an HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("starting an async runtime: {e}")))?;
        Ok(Api {
            urls,
            client,
            runtime,
        })
    }

    /// Where it is asked, for messages.
    fn addresses(&self) -> String {
        match self.urls.is_empty() {
            true => "nowhere (--http off and no --http-peers)".into(),
            false => self.urls.join(", "),
        }
    }

    /// `GET <path>` from the first process that answers.
    fn get(&self, path: &str) -> Answer {
        let mut failures = Vec::new();
        for base in &self.urls {
            let url = format!("{base}{path}");
            let asked = self.runtime.block_on(async {
                let response = self
                    .client
                    .get(&url)
                    .header("accept", "application/json")
                    .send()
                    .await?;
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                Ok::<_, reqwest::Error>((status, body))
            });
            match asked {
                Ok((status, body)) => return Answer::Json(status, body),
                Err(e) => failures.push(format!("{base}: {}", describe(&e))),
            }
        }
        match failures.is_empty() {
            true => Answer::Down("no HTTP address is configured (--http off)".into()),
            false => Answer::Down(failures.join("; ")),
        }
    }
}

/// A short reason for a failed request.
fn describe(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "nothing listens there".into()
    } else if e.is_timeout() {
        format!("no answer within {HTTP_TIMEOUT:?}")
    } else {
        e.to_string()
    }
}

/// The tables of the program: public ones from the plan, private ones from their changelogs.
fn table_names(program: &Program<'_>) -> BTreeMap<String, (String, bool)> {
    let prefix = format!("{}-", program.config.app_id);
    let mut tables = BTreeMap::new();
    for spec in program.planned.specs.iter().filter(|s| s.compacted) {
        if let Some(name) = spec
            .name
            .strip_prefix(&prefix)
            .and_then(|n| n.strip_suffix("-changelog"))
        {
            tables.insert(name.to_string(), (spec.name.clone(), false));
        }
    }
    for (name, declared) in &program.planned.public {
        // A table without a changelog (one a program's own operators keep) is rebuilt from
        // its inputs at each start.
        let changelog = declared.changelog.clone().unwrap_or_else(|| "-".into());
        tables.insert(name.clone(), (changelog, true));
    }
    tables
}

fn tables(program: &Program<'_>, out: &mut dyn Write) -> Result<()> {
    let tables = table_names(program);
    if tables.is_empty() {
        writeln!(out, "this program has no tables").map_err(io)?;
        return Ok(());
    }
    let api = Api::new(program.config)?;
    let live = match api.get("/api/table/") {
        Answer::Json(200, body) => Some(body),
        Answer::Json(status, body) => {
            eprintln!(
                "the application answered {status} at {}: {}",
                api.addresses(),
                body["error"].as_str().unwrap_or("(no message)")
            );
            None
        }
        Answer::Down(why) => {
            eprintln!("no running application answers ({why}): states and entries are unknown");
            None
        }
    };
    let rows: Vec<[String; 4]> = tables
        .iter()
        .map(|(name, (changelog, public))| {
            let (state, entries) = match (&live, public) {
                (_, false) => ("private (not served)".to_string(), "-".to_string()),
                (None, true) => ("-".to_string(), "-".to_string()),
                (Some(body), true) => (
                    body["tables"][name]["state"]
                        .as_str()
                        .unwrap_or("-")
                        .to_string(),
                    body["entries"][name]
                        .as_u64()
                        .map_or("-".to_string(), |n| n.to_string()),
                ),
            };
            [name.clone(), state, entries, changelog.clone()]
        })
        .collect();
    write_rows(out, ["TABLE", "STATE", "ENTRIES", "CHANGELOG"], &rows)
}

/// Writes rows in aligned columns under a header.
fn write_rows<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec())).map_err(io)?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect())).map_err(io)?;
    }
    Ok(())
}

fn get(program: &Program<'_>, table: &str, key: &str, out: &mut dyn Write) -> Result<()> {
    let public: Vec<&String> = program.planned.public.iter().map(|(n, _)| n).collect();
    if !public.iter().any(|n| *n == table) {
        let private = table_names(program).contains_key(table);
        return Err(Error::NotFound(match private {
            true => format!(
                "table `{table}` is private: only public tables (`.public()`) are served; public tables: {}",
                list(&public)
            ),
            false => format!(
                "this program has no table `{table}`; public tables: {}",
                list(&public)
            ),
        }));
    }
    let api = Api::new(program.config)?;
    let path = format!(
        "/api/table/{}/{}/",
        encode_segment(table),
        encode_segment(key)
    );
    match api.get(&path) {
        Answer::Json(200, body) => {
            let value = body.get(key).cloned().unwrap_or(body);
            writeln!(out, "{value}").map_err(io)
        }
        Answer::Json(404, _) => Err(Error::NotFound(format!(
            "table `{table}` has no key `{key}`"
        ))),
        Answer::Json(503, body) => Err(Error::NotReady(format!(
            "table `{table}` cannot answer yet ({}); ask again{}",
            body["error"].as_str().unwrap_or("not ready"),
            body["retry_after_s"]
                .as_u64()
                .map_or(String::new(), |s| format!(" in {s} s"))
        ))),
        Answer::Json(status, body) => Err(Error::Runtime(format!(
            "the application answered {status}: {}",
            body["error"].as_str().unwrap_or("(no message)")
        ))),
        Answer::Down(why) => Err(Error::NotReady(format!(
            "no running application answers ({why}): start the worker, or say where it serves with --http"
        ))),
    }
}

/// `names` as `a, b, c`, or `none`.
fn list(names: &[&String]) -> String {
    match names.is_empty() {
        true => "none".into(),
        false => names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Percent-encodes one path segment.
fn encode_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// The Kafka client configuration, or why a tool cannot reach Kafka.
fn kafka(config: &AppConfig, command: &str) -> Result<KafkaConfig> {
    let Some(brokers) = &config.brokers else {
        return Err(Error::Config(format!(
            "`{command}` needs the brokers (--brokers or FAUSTUS_BROKERS): a worker without them runs an embedded broker that only its own process can reach"
        )));
    };
    let mut kafka = KafkaConfig::new(brokers).with_properties(config.kafka_properties.clone());
    kafka.request_timeout = config.kafka_request_timeout;
    faustus_connectors::connect(&kafka)?;
    Ok(kafka)
}

fn send(
    program: &Program<'_>,
    topic: &str,
    key: Option<&str>,
    value: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let Some(encode) = program.planned.encoders.get(topic) else {
        let known: Vec<&String> = program.planned.encoders.keys().collect();
        return Err(Error::NotFound(format!(
            "this program has no topic `{topic}`; its topics: {}",
            list(&known)
        )));
    };
    let (key, value) = encode(key, value)
        .map_err(|e| Error::Config(format!("the record does not suit topic `{topic}`: {e}")))?;
    let kafka = kafka(program.config, "send")?;
    // The topic is created as the worker would create it, when it is missing.
    let specs: Vec<_> = program
        .planned
        .specs
        .iter()
        .filter(|s| s.name == topic)
        .cloned()
        .collect();
    crate::app::create_topics_for_tool(program.config, &kafka, specs)?;
    let producer = crate::Producer::with_config(&kafka)?;
    let (partition, offset) = producer.send_bytes(topic, key, value)?;
    writeln!(
        out,
        "sent to `{topic}`: partition {partition}, offset {offset}"
    )
    .map_err(io)
}

fn agents(program: &Program<'_>, out: &mut dyn Write) -> Result<()> {
    if program.agents.is_empty() {
        writeln!(out, "this program has no agents").map_err(io)?;
        return Ok(());
    }
    let api = Api::new(program.config)?;
    // Agent name → (state, partitions active on each process).
    let mut live: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    match api.get("/api/agents/") {
        Answer::Json(200, body) => {
            for process in body["processes"].as_array().into_iter().flatten() {
                let id = process["process"].as_u64().unwrap_or(0);
                for agent in process["agents"].as_array().into_iter().flatten() {
                    let name = agent["settings"]["name"].as_str().unwrap_or_default();
                    let entry = live.entry(name.to_string()).or_default();
                    entry.0 = agent["state"].as_str().unwrap_or("-").to_string();
                    let partitions: Vec<String> = agent["partitions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["partition"].as_i64())
                        .map(|p| p.to_string())
                        .collect();
                    if !partitions.is_empty() {
                        entry
                            .1
                            .push(format!("process {id}: {}", partitions.join(",")));
                    }
                }
            }
        }
        Answer::Json(status, _) => eprintln!(
            "the application answered {status} at {}: states and partitions are unknown",
            api.addresses()
        ),
        Answer::Down(why) => {
            eprintln!("no running application answers ({why}): states and partitions are unknown")
        }
    }
    let rows: Vec<[String; 5]> = program
        .agents
        .iter()
        .map(|(name, topic, group)| {
            let (state, partitions) = live
                .get(name)
                .map(|(s, p)| {
                    let p = match p.is_empty() {
                        true => "none".to_string(),
                        false => p.join("; "),
                    };
                    (s.clone(), p)
                })
                .unwrap_or(("-".into(), "-".into()));
            [
                name.clone(),
                topic.clone(),
                group.clone(),
                state,
                partitions,
            ]
        })
        .collect();
    write_rows(
        out,
        ["AGENT", "TOPIC", "GROUP", "STATE", "PARTITIONS"],
        &rows,
    )
}

fn reset(program: &Program<'_>, yes: bool, out: &mut dyn Write) -> Result<()> {
    let config = program.config;
    let api = Api::new(config)?;
    if let Answer::Json(..) = api.get("/api/live") {
        return Err(Error::Config(format!(
            "the application `{}` is running (it answers at {}): stop every process of it, then reset",
            config.app_id,
            api.addresses()
        )));
    }
    let kafka = kafka(config, "reset")?;
    let mut groups = vec![config.app_id.clone()];
    groups.extend(program.agents.iter().map(|(_, _, group)| group.clone()));
    for group in &groups {
        let members = faustus_connectors::group_members(&kafka, group)?;
        if members > 0 {
            return Err(Error::Config(format!(
                "consumer group `{group}` has {members} member(s): an agent of the application is running; stop every process of it, then reset"
            )));
        }
    }
    let mut topics: Vec<String> = program
        .planned
        .specs
        .iter()
        .filter(|s| s.compacted)
        .map(|s| s.name.clone())
        .collect();
    topics.push(crate::app::progress_topic(&config.app_id));
    topics.sort();
    topics.dedup();
    let topics = faustus_connectors::existing_topics(&kafka, &topics)?;
    writeln!(
        out,
        "reset of application `{}` at {}:",
        config.app_id, kafka.brokers
    )
    .map_err(io)?;
    for topic in &topics {
        writeln!(out, "  delete topic {topic}").map_err(io)?;
    }
    for group in &groups {
        writeln!(
            out,
            "  delete consumer group {group} (committed positions), if it exists"
        )
        .map_err(io)?;
    }
    writeln!(
        out,
        "  keep its output topics and its dead letters ({})",
        crate::dead_letter::topic(&config.app_id)
    )
    .map_err(io)?;
    if !yes {
        confirm(&config.app_id, out)?;
    }
    faustus_connectors::delete_topics(&kafka, &topics)?;
    let deleted = faustus_connectors::delete_groups(&kafka, &groups)?;
    writeln!(
        out,
        "deleted {} topic(s) and {} consumer group(s): the next start reads its inputs from the beginning",
        topics.len(),
        deleted.len()
    )
    .map_err(io)
}

/// Asks the person at the terminal to type the application id; anything else, or no terminal,
/// is a refusal.
fn confirm(app_id: &str, out: &mut dyn Write) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Config(
            "reset deletes the state above and asks first; without a terminal to ask on, confirm with --yes".into(),
        ));
    }
    write!(out, "type the application id (`{app_id}`) to go on: ").map_err(io)?;
    out.flush().map_err(io)?;
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::Runtime(format!("reading the answer: {e}")))?;
    match answer.trim() == app_id {
        true => Ok(()),
        false => Err(Error::Config("not confirmed: nothing was deleted".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("account-1"), "account-1");
        assert_eq!(encode_segment("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn rows_are_aligned_under_the_header() {
        let mut out = Vec::new();
        write_rows(
            &mut out,
            ["A", "BB"],
            &[["long".into(), "x".into()], ["s".into(), "".into()]],
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A     BB\nlong  x\ns\n");
    }

    #[test]
    fn the_default_command_is_worker() {
        assert!(Command::default().is_worker());
        assert!(!Command::Tables.is_worker());
    }
}
