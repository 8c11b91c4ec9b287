//! Helpers for integration tests against the real Kafka broker: the broker plumbing shared with
//! the benchmark harness's tests (from `faustus-testkit`), and the engine's own fixtures.
//!
//! The broker address comes from `FAUSTUS_TEST_BROKERS` (set by `scripts/test`); without it the
//! helpers start the repository's broker with `scripts/kafka start`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use faustus_testkit::{
    brokers, create_topic, kafka, last_values, produce, produce_to, read_all, secure_config,
    unique, wait_for, wait_until, KeyValue, Record, TestProducer,
};

/// The positions consumer group `group` has committed for partitions `0..partitions` of
/// `topic` (partitions without one are absent); `None` while Kafka does not answer (a crashed
/// member's open transaction holds them back until the broker aborts it).
pub fn group_positions(group: &str, topic: &str, partitions: i32) -> Option<BTreeMap<i32, i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = kafka()
        .client()
        .set("group.id", group)
        .create()
        .expect("a consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .ok()?;
    Some(
        committed
            .elements()
            .iter()
            .filter_map(|e| {
                e.offset()
                    .to_raw()
                    .filter(|o| *o >= 0)
                    .map(|o| (e.partition(), o))
            })
            .collect(),
    )
}

/// Per partition of `topic`, one past its last record (for a topic written without
/// transactions: its end).
pub fn record_ends(topic: &str) -> BTreeMap<i32, i64> {
    read_all(topic)
        .iter()
        .map(|r| (r.partition, r.offset + 1))
        .collect()
}

/// An order as the quickstart reads it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub account: String,
    pub amount: i64,
}

/// `n` deterministic orders over `accounts` accounts, and the expected total per account.
pub fn orders(n: usize, accounts: usize, seed: u64) -> (Vec<Order>, BTreeMap<String, i64>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut totals = BTreeMap::new();
    let orders: Vec<Order> = (0..n)
        .map(|_| {
            let account = format!("account-{}", next() % accounts as u64);
            let amount = (next() % 100) as i64 + 1;
            *totals.entry(account.clone()).or_insert(0) += amount;
            Order { account, amount }
        })
        .collect();
    (orders, totals)
}

/// Encodes orders as the quickstart's topic holds them (key = account, JSON value).
pub fn order_records(orders: &[Order]) -> Vec<KeyValue> {
    orders
        .iter()
        .map(|o| {
            (
                Some(o.account.clone().into_bytes()),
                Some(serde_json::to_vec(o).unwrap()),
            )
        })
        .collect()
}

/// The `String → i64` table in the changelog of table `table` of application `app_id` (JSON
/// keys and values).
pub fn changelog_table(app_id: &str, table: &str) -> BTreeMap<String, i64> {
    last_values(&read_all(&format!("{app_id}-{table}-changelog")))
        .iter()
        .map(|(k, v)| {
            (
                serde_json::from_slice(k).expect("changelog keys are JSON"),
                serde_json::from_slice(v).expect("changelog values are JSON"),
            )
        })
        .collect()
}

/// Per key, the updates in `topic` (string keys, JSON numbers) must strictly increase (the
/// amounts are positive): an update written twice, or a restart that restored the wrong state,
/// breaks that.
pub fn assert_updates_increase(topic: &str) {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for record in read_all(topic) {
        let key = String::from_utf8(record.key.expect("updates have keys")).unwrap();
        let value: i64 =
            serde_json::from_slice(&record.value.expect("updates have values")).unwrap();
        let previous = last.insert(key.clone(), value).unwrap_or(0);
        assert!(
            value > previous,
            "{key}: update {value} after {previous} (partition {}, offset {})",
            record.partition,
            record.offset
        );
    }
}

/// Decodes a `String → i64` table from a topic of string keys and JSON numbers.
pub fn decode_totals(table: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeMap<String, i64> {
    table
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                serde_json::from_slice(v).unwrap(),
            )
        })
        .collect()
}

/// The quickstart example binary (cargo builds examples before integration tests).
pub fn quickstart_binary() -> PathBuf {
    example_binary("quickstart")
}

/// The binary of example `name`, under `target/<profile>/examples` (cargo builds examples
/// before integration tests).
pub fn example_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("examples").join(name);
    assert!(
        binary.exists(),
        "{} does not exist: run the tests with `cargo test` (which builds examples)",
        binary.display()
    );
    binary
}

/// The chaos example binary, built by `cargo build --example chaos` (a no-op when `cargo test`
/// has just built examples; a filtered run such as `cargo test --test chaos` builds none, and
/// an old binary would test old code).
pub fn chaos_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--example", "chaos"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "cargo build --example chaos failed");
    let binary = dir.join("examples").join("chaos");
    assert!(binary.exists(), "{} does not exist", binary.display());
    binary
}

/// What `scripts/chaos` reported: its result line (`records=N lost=L duplicated=D kills=K
/// broker_kills=B commit_kills=C`, and on a cluster `leader_kills=L coordinator_kills=T`).
pub struct ChaosOutcome {
    /// The result line.
    pub line: String,
    counters: Vec<(String, u64)>,
}

impl ChaosOutcome {
    /// The counter `name` of the result line (a panic if it has none, or `?`).
    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no `{name}` in `{}`", self.line))
    }
}

/// Runs `scripts/chaos <args>` with the chaos binary and `env`, killed after `limit_s` seconds
/// (it cleans up on SIGTERM) so that a run that hangs fails instead of hanging the suite. Prints
/// its output; panics unless it passed and printed a result line.
pub fn run_chaos(args: &[&str], env: &[(&str, String)], limit_s: u64) -> ChaosOutcome {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("timeout")
        .args(["--kill-after=60", &limit_s.to_string()])
        .arg(root.join("scripts/chaos"))
        .args(args)
        .env("CHAOS_BIN", chaos_binary())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running scripts/chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}{stdout}");
    let line = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        line.starts_with("records="),
        "scripts/chaos {args:?} printed no result line (status {})",
        output.status
    );
    assert!(
        output.status.success(),
        "scripts/chaos {args:?} failed ({}): {line}",
        output.status
    );
    let counters = line
        .split_whitespace()
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect();
    ChaosOutcome { line, counters }
}

/// Flags that point a quickstart process at application `app_id` and its topics, HTTP off, then
/// `extra`.
pub fn quickstart_flags(app_id: &str, input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--app-id",
        app_id,
        "--input-topic",
        input,
        "--output-topic",
        output,
        "--http",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

/// A quickstart process under test; killed when dropped.
pub struct Process {
    pub child: Child,
    /// The file its standard error (its log) goes to.
    pub log: PathBuf,
}

impl Process {
    /// Starts the quickstart with `args` (plus `--brokers`, `--no-generate`).
    pub fn quickstart(args: &[String]) -> Process {
        Process::quickstart_env(args, &[])
    }

    /// Starts the quickstart with `args` and extra environment variables.
    pub fn quickstart_env(args: &[String], env: &[(&str, &str)]) -> Process {
        let mut all = vec!["--no-generate".to_string()];
        all.extend_from_slice(args);
        Process::example("quickstart", &all, env)
    }

    /// Starts example `name` with `--brokers <the test broker>`, `args` and extra environment
    /// variables; its log goes to a file in the temporary directory.
    pub fn example(name: &str, args: &[String], env: &[(&str, &str)]) -> Process {
        let mut all = vec!["--brokers".to_string(), brokers()];
        all.extend_from_slice(args);
        Process::example_with(name, &all, env)
    }

    /// Starts example `name` with only `args` (no `--brokers`) and extra environment
    /// variables; its log goes to the file [`Process::log`] names.
    pub fn example_with(name: &str, args: &[String], env: &[(&str, &str)]) -> Process {
        let path = std::env::temp_dir().join(format!("faustus-test-{}.log", unique(name)));
        let log = std::fs::File::create(&path).expect("log file");
        let child = Command::new(example_binary(name))
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting example {name}: {e}"));
        Process { child, log: path }
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for it to exit by itself; its exit status, or `None` if it still
    /// runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (with a deadline) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the process did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET url` with an `Accept` header: the status and the body as JSON (`Null` if it is not).
pub fn http_get(url: &str) -> (u16, serde_json::Value) {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client")
    });
    match client.get(url).header("accept", "application/json").send() {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().unwrap_or(serde_json::Value::Null))
        }
        Err(e) => (0, serde_json::Value::String(e.to_string())),
    }
}

/// Starts an in-process application on the test broker that sums the amounts (JSON `i64`
/// values, string keys) of `input` per key into the public table `totals`, served over HTTP on
/// a free loopback port (see [`faustus::Running::http_addr`]).
pub fn start_totals_app(input: &str) -> faustus::Running {
    use faustus::prelude::*;
    let topic = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    App::new(unique("totals-app"))
        .brokers(brokers())
        .workers(2)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .start(move |df| {
            df.stream(&topic).sum("totals").public();
        })
        .expect("the totals app starts")
}

/// Records `(key, amount)` as [`start_totals_app`] reads them.
pub fn amount_records(amounts: &[(String, i64)]) -> Vec<KeyValue> {
    amounts
        .iter()
        .map(|(k, a)| {
            (
                Some(k.clone().into_bytes()),
                Some(a.to_string().into_bytes()),
            )
        })
        .collect()
}

/// Every entry of table `table` served at `base` (`http://host:port`), read page by page with
/// the `after` cursor; `None` if any page does not answer 200.
pub fn http_table(base: &str, table: &str) -> Option<BTreeMap<String, serde_json::Value>> {
    let mut entries = BTreeMap::new();
    let mut url = format!("{base}/api/table/{table}/?size=1000");
    loop {
        let (status, body) = http_get(&url);
        if status != 200 {
            return None;
        }
        for (k, v) in body["results"].as_object()? {
            entries.insert(k.clone(), v.clone());
        }
        match body["next_after"].as_str() {
            Some(after) => {
                let after: String = after.bytes().map(|b| format!("%{b:02X}")).collect();
                url = format!("{base}/api/table/{table}/?size=1000&after={after}");
            }
            None => return Some(entries),
        }
    }
}

/// Writes `amounts` to `input`, starts [`start_totals_app`] on it, and waits until its table,
/// over HTTP, is the sum of every amount per key (not merely as many keys: a key can show an
/// early partial sum); returns the app and its base URL (`http://host:port`).
pub fn start_filled_totals_app(
    input: &str,
    amounts: &[(String, i64)],
) -> (faustus::Running, String) {
    produce(input, &amount_records(amounts));
    let running = start_totals_app(input);
    let base = format!("http://{}", running.http_addr().expect("HTTP is on"));
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for (k, a) in amounts {
        *sums.entry(k.clone()).or_insert(0) += a;
    }
    let expected: BTreeMap<String, serde_json::Value> = sums
        .into_iter()
        .map(|(k, sum)| (k, serde_json::json!(sum)))
        .collect();
    wait_for(
        "the table to hold every sum",
        Duration::from_secs(120),
        || (http_table(&base, "totals")? == expected).then_some(()),
    );
    (running, base)
}

/// Starts an application that sums `input` (string keys, JSON numbers) into the public table
/// `totals`: 2 workers, 2 partitions per created topic, HTTP on a free port.
pub fn start_totals(app_id: &str, input: &str, guarantee: faustus::Guarantee) -> faustus::Running {
    start_totals_app_with(app_id, input, guarantee, |app| app)
}

/// As [`start_totals`], with `configure` applied to the application before it starts.
pub fn start_totals_app_with(
    app_id: &str,
    input: &str,
    guarantee: faustus::Guarantee,
    configure: impl FnOnce(faustus::App) -> faustus::App,
) -> faustus::Running {
    use faustus::prelude::*;
    let topic = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    configure(App::new(app_id))
        .brokers(brokers())
        .guarantee(guarantee)
        .workers(2)
        .partitions(2)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .start(move |df| {
            df.stream(&topic).sum("totals").public();
        })
        .expect("the app starts")
}

/// A producer that leaves a transaction open on partition 0 of `topic`, holding `records`:
/// `read_committed` readers cannot read past them (nor past anything after them) until it
/// ends.
pub fn hold_transaction(
    topic: &str,
    records: &[KeyValue],
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let producer: ThreadedProducer<_> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("transactional.id", unique("holder"))
        // The broker's largest (scripts/kafka): the test ends the transaction itself.
        .set("transaction.timeout.ms", "300000")
        .create()
        .expect("a transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    producer.begin_transaction().expect("begin_transaction");
    for (key, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).partition(0);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        producer
            .send(record)
            .map_err(|(e, _)| e)
            .expect("a record in the open transaction");
    }
    producer.flush(Duration::from_secs(30)).expect("flushed");
    producer
}

/// A two-thread tokio runtime for a test's async steps (the app and the blocking helpers stay
/// outside it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
