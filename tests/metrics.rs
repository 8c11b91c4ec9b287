//! Operations against the real broker: `GET /metrics` counts what the application does and
//! passes `promtool check metrics`; a real Prometheus server scrapes it; the committed input
//! positions are consumer-group offsets that `kafka-consumer-groups.sh` shows with their lag.
//!
//! A known lag is made deterministically: another producer leaves a transaction open on the
//! input, so `read_committed` sources cannot read past its records (nor past what follows them)
//! until it ends, while the partition's end moves on.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use faustus::prelude::*;
use faustus::Running;
use rdkafka::producer::{Producer, ThreadedProducer};

/// How long any wait may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// `n` records `<prefix>-<i mod 7> → 1`.
fn ones(n: usize, prefix: &str) -> Vec<KeyValue> {
    (0..n)
        .map(|i| {
            (
                Some(format!("{prefix}-{}", i % 7).into_bytes()),
                Some(b"1".to_vec()),
            )
        })
        .collect()
}

/// A producer that leaves a transaction open on partition 0 of `topic`, holding `n` records.
fn hold(topic: &str, n: usize) -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    hold_transaction(topic, &ones(n, "held"))
}

/// `GET /metrics` of a running application.
fn scrape(app: &Running) -> String {
    let url = format!("http://{}/metrics", app.http_addr().expect("HTTP is on"));
    let response = reqwest::blocking::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().unwrap()
}

/// The samples of family `name` in an exposition, as label set → value (`{}` for none).
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, format!("{{{rest}")),
                None => (series, "{}".to_string()),
            };
            (metric == name).then(|| (labels, value.parse().unwrap()))
        })
        .collect()
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn total(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text, name)
        .iter()
        .filter(|(l, _)| labels.iter().all(|want| l.contains(want)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_count_reads_writes_dead_letters_lag_and_commits_and_pass_promtool() {
    let app_id = unique("metrics");
    let input = unique("metrics-in");
    create_topic(&input, 2);
    let app = start_totals(&app_id, &input, Guarantee::ExactlyOnce);
    app.wait_ready(DEADLINE).expect("ready");

    // 40 good records over both partitions, one that does not decode, then 5 records held in
    // an open transaction on partition 0 and 3 more after them: the source can read 41, and
    // partition 0 lags by 8 (the 5 held and the 3 behind them).
    let mut records = ones(40, "k");
    records.push((Some(b"bad".to_vec()), Some(b"{not a number".to_vec())));
    produce(&input, &records);
    let holder = hold(&input, 5);
    produce_to(&input, Some(0), &ones(3, "after"));

    let read = format!("topic=\"{input}\"");
    let counts = |text: &str| {
        (
            total(text, "faustus_records_read_total", &[&read]),
            total(text, "faustus_dead_letters_total", &["reason=\"decode\""]),
            total(
                text,
                "faustus_consumer_lag_records",
                &[&read, "partition=\"0\""],
            ),
            total(text, "faustus_table_entries", &["table=\"totals\""]),
        )
    };
    let started = std::time::Instant::now();
    let text = loop {
        let text = scrape(&app);
        if counts(&text) == (41.0, 1.0, 8.0, 7.0) {
            break text;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the metrics did not count every readable record: (read, dead letters, lag, entries) = {:?}\n{text}",
            counts(&text)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Every partition the app reads has a lag sample; partition 1 is read to its end.
    assert_eq!(
        total(
            &text,
            "faustus_consumer_lag_records",
            &[&read, "partition=\"1\""]
        ),
        0.0,
        "{text}"
    );
    // Commits: at least one, with a duration, and the dead letter among the records written.
    assert!(total(&text, "faustus_commits_total", &[]) >= 1.0, "{text}");
    assert!(total(&text, "faustus_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(total(&text, "faustus_commit_duration_seconds_sum", &[]) > 0.0);
    assert!(
        total(&text, "faustus_committed_epoch", &[]) > 1.0e12,
        "{text}"
    );
    let errors = format!("topic=\"{app_id}-__errors\"");
    assert_eq!(
        total(&text, "faustus_records_written_total", &[&errors]),
        1.0
    );
    assert!(total(&text, "faustus_restore_complete", &[]) == 1.0);
    assert!(total(&text, "process_resident_memory_bytes", &[]) > 0.0);
    // The scrapes before were counted, by route template; epochs closed, empty ones too.
    let text = scrape(&app);
    assert!(
        total(&text, "faustus_epoch_length_seconds_count", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        total(
            &text,
            "faustus_http_requests_total",
            &["route=\"/metrics\"", "status=\"200\""]
        ) >= 1.0,
        "{text}"
    );

    promtool_check(&text);
    // Stop before the held records are aborted: once they are, the 3 records behind them are
    // readable, and a stop racing with that would commit them too.
    app.shutdown().expect("clean shutdown");
    holder
        .abort_transaction(Duration::from_secs(30))
        .expect("abort");

    // A restart restores the 7 keys from the changelog: the restore metrics count them.
    let app = start_totals(&app_id, &input, Guarantee::ExactlyOnce);
    app.wait_ready(DEADLINE).expect("ready after the restore");
    let text = scrape(&app);
    let changelog = format!("changelog=\"{app_id}-totals-changelog\"");
    assert_eq!(
        total(&text, "faustus_restore_keys_total", &[&changelog]),
        7.0,
        "{text}"
    );
    assert!(total(&text, "faustus_restore_records_total", &[&changelog]) >= 7.0);
    assert!(total(&text, "faustus_restore_expected_offsets", &[&changelog]) >= 7.0);
    assert_eq!(total(&text, "faustus_restore_complete", &[]), 1.0);
    assert!(total(&text, "faustus_restore_duration_seconds", &[]) > 0.0);
    app.shutdown().expect("clean shutdown");
}

#[test]
fn agents_report_handled_failed_and_handler_latency() {
    use faustus::agent::{Agent, Event, HandlerError, Retry};
    let app_id = unique("metrics-agent");
    let input = unique("metrics-agent-in");
    create_topic(&input, 2);
    let topic = Topic::<String, i64>::new(input.clone()).key_codec(Str);
    // Odd values fail once, then succeed on the retry.
    let failed_once = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let agent = Agent::new("check", &topic)
        .retry(Retry {
            retries: 1,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        })
        .handler(move |event: Event<String, i64>| {
            let failed_once = std::sync::Arc::clone(&failed_once);
            async move {
                let v = event.value();
                if v % 2 == 1 && failed_once.lock().unwrap().insert(v) {
                    return Err(HandlerError::new("odd, the first time"));
                }
                Ok(())
            }
        });
    let app = App::new(&app_id)
        .brokers(brokers())
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .agent(agent)
        .start(|_df| {})
        .expect("the app starts");
    let records: Vec<KeyValue> = (0..20)
        .map(|i: i64| {
            (
                Some(format!("k{i}").into_bytes()),
                Some(i.to_string().into_bytes()),
            )
        })
        .collect();
    produce(&input, &records);
    let agent = "agent=\"check\"";
    let text = wait_for("the agent's metrics", DEADLINE, || {
        let text = scrape(&app);
        (total(&text, "faustus_agent_events_handled_total", &[agent]) == 20.0
            && total(&text, "faustus_agent_handler_failures_total", &[agent]) == 10.0
            // Acked just after being counted as handled.
            && total(&text, "faustus_agent_events_in_flight", &[agent]) == 0.0)
            .then_some(text)
    });
    assert_eq!(
        total(
            &text,
            "faustus_agent_handler_duration_seconds_count",
            &[agent]
        ),
        30.0,
        "{text}"
    );
    assert_eq!(
        total(&text, "faustus_agent_dead_letters_total", &[agent]),
        0.0
    );
    promtool_check(&text);
    app.shutdown().expect("clean shutdown");
}

/// Runs `promtool check metrics` on an exposition; it must accept it without a lint problem.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test installs the `prometheus` package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The repository's root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kafka-consumer-groups.sh --describe --group <group>`, from the broker's own jars: per
/// `(topic, partition)`, the current offset, log-end offset and lag it shows.
fn describe_group(group: &str) -> BTreeMap<(String, i32), (i64, i64, i64)> {
    let out = Command::new(repo().join("scripts/kafka"))
        .args([
            "run-class",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            &brokers(),
            "--describe",
            "--group",
            group,
        ])
        .output()
        .expect("scripts/kafka run-class runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka-consumer-groups failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    let mut rows = BTreeMap::new();
    for line in stdout.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 || cols[0] != group {
            continue;
        }
        let num = |s: &str| s.parse::<i64>().ok();
        if let (Ok(p), Some(c), Some(e), Some(l)) =
            (cols[2].parse(), num(cols[3]), num(cols[4]), num(cols[5]))
        {
            rows.insert((cols[1].to_string(), p), (c, e, l));
        }
    }
    rows
}

/// The application commits its input positions to the group named after it; once it has
/// stopped, records produced after show as lag in the standard tool.
fn consumer_group_lag(guarantee: Guarantee) {
    let app_id = unique("lag-group");
    let input = unique("lag-group-in");
    create_topic(&input, 2);
    produce(&input, &ones(30, "k"));
    let ends = record_ends(&input);
    let app = start_totals(&app_id, &input, guarantee);
    wait_until(
        "the group's offsets to reach the input's end",
        DEADLINE,
        &Some(ends.clone()),
        || group_positions(&app_id, &input, 2),
    );
    app.shutdown().expect("clean shutdown");
    produce_to(&input, Some(0), &ones(4, "later"));

    let rows = describe_group(&app_id);
    let p0 = rows
        .get(&(input.clone(), 0))
        .unwrap_or_else(|| panic!("partition 0 in {rows:?}"));
    let p1 = rows
        .get(&(input.clone(), 1))
        .unwrap_or_else(|| panic!("partition 1 in {rows:?}"));
    assert_eq!(*p0, (ends[&0], ends[&0] + 4, 4), "{rows:?}");
    assert_eq!(*p1, (ends[&1], ends[&1], 0), "{rows:?}");
}

#[test]
fn exactly_once_commits_show_as_consumer_group_lag() {
    consumer_group_lag(Guarantee::ExactlyOnce);
}

#[test]
fn at_least_once_commits_show_as_consumer_group_lag() {
    consumer_group_lag(Guarantee::AtLeastOnce);
}

/// A Prometheus server of its own, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free now on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Prometheus scraping `target` (host:port) every second.
fn prometheus(target: &str) -> Prometheus {
    let dir = std::env::temp_dir().join(unique("faustus-prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: faustus\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus runs (scripts/test installs the `prometheus` package)");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: TempDir(dir),
    }
}

/// The value of instant query `query` (its first series), if it has one.
fn query(prometheus: &Prometheus, query: &str) -> Option<f64> {
    let response = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url))
        .query(&[("query", query)])
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    let body: serde_json::Value = response.json().ok()?;
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// The log of a Prometheus server, to explain a failure.
fn prometheus_log(p: &Prometheus) -> String {
    std::fs::read_to_string(Path::new(&p._dir.0).join("prometheus.log")).unwrap_or_default()
}

#[test]
fn a_prometheus_server_scrapes_records_read_lag_and_commit_duration() {
    let app_id = unique("scraped");
    let input = unique("scraped-in");
    create_topic(&input, 2);
    let app = start_totals(&app_id, &input, Guarantee::ExactlyOnce);
    produce(&input, &ones(25, "k"));
    let holder = hold(&input, 6);
    let target = app.http_addr().expect("HTTP is on").to_string();
    let mut server = prometheus(&target);

    let read = format!("sum(faustus_records_read_total{{topic=\"{input}\"}})");
    let lag = format!("max(faustus_consumer_lag_records{{topic=\"{input}\"}})");
    let commit = "sum(faustus_commit_duration_seconds_sum)".to_string();
    let commits = "sum(faustus_commit_duration_seconds_count)".to_string();
    let mut seen = BTreeMap::new();
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", prometheus_log(&server));
        }
        for q in [&read, &lag, &commit, &commits] {
            if let Some(v) = query(&server, q) {
                seen.insert(q.clone(), v);
            }
        }
        let value = |q: &String| seen.get(q).copied().unwrap_or(0.0);
        if value(&read) == 25.0
            && value(&lag) == 6.0
            && value(&commit) > 0.0
            && value(&commits) >= 1.0
        {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "Prometheus did not get the app's metrics; last seen {seen:?}\n{}",
            prometheus_log(&server)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    holder
        .abort_transaction(Duration::from_secs(30))
        .expect("abort");
    drop(server);
    app.shutdown().expect("clean shutdown");
}
