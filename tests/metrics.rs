//! Operations against the real broker: `GET /metrics` counts what the application does and
//! passes `promtool check metrics`; a real Prometheus server scrapes it, and answers every query
//! of the Grafana dashboard (`docs/grafana/faustus.json`) with data and every alerting rule
//! (`docs/prometheus/alerts.yml`) without an error; the committed input positions are
//! consumer-group offsets that `kafka-consumer-groups.sh` shows with their lag.
//!
//! A known lag is made deterministically: another producer leaves a transaction open on the
//! input, so `read_committed` sources cannot read past its records (nor past what follows them)
//! until it ends, while the partition's end moves on.

mod common;

use std::collections::{BTreeMap, BTreeSet};
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

/// An application with a hop of every kind: `input` grouped by key into a count (`group_by`,
/// `table`), written to `mid` and read again (`through`), looked up in the counts (a join's
/// repartition) and written to `out`; an agent reads `mid` (`agent`); everything commits
/// (`commit`).
fn start_hops(app_id: &str, input: &str, mid: &str, out: &str, sensors: bool) -> Running {
    use faustus::agent::{Agent, Event};
    let input = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    let mid = Topic::<String, i64>::new(mid.to_string()).key_codec(Str);
    let out = Topic::<String, (i64, i64)>::new(out.to_string()).key_codec(Str);
    let agent = Agent::new("watch", &mid).handler(|_: Event<String, i64>| async { Ok(()) });
    let topics = mid.clone();
    App::new(app_id)
        .brokers(brokers())
        .workers(2)
        .partitions(2)
        .sensors(sensors)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .agent(agent)
        .start(move |df| {
            let events = df.stream(&input);
            let counts = events.clone().group_by(|k, _| k.clone()).count("counts");
            events.to_topic(&topics);
            df.stream(&topics).join(&counts).to_topic(&out);
        })
        .expect("the app starts")
}

#[test]
fn sensors_observe_every_hop_and_the_commits_and_turn_off() {
    let app_id = unique("sensors");
    let (input, mid, out) = (
        unique("sensors-in"),
        unique("sensors-mid"),
        unique("sensors-out"),
    );
    create_topic(&input, 2);
    let app = start_hops(&app_id, &input, &mid, &out, true);
    app.wait_ready(DEADLINE).expect("ready");
    produce(&input, &ones(30, "k"));

    let series = |hop: &str, operator: &str| format!("hop=\"{hop}\",operator=\"{operator}\"");
    let group_by = series("group_by", "counts");
    let agent = series("agent", "watch");
    let text = wait_for("every record past every hop", DEADLINE, || {
        let text = scrape(&app);
        (total(&text, "faustus_operator_records_total", &[&group_by]) == 30.0
            && total(&text, "faustus_operator_records_total", &[&agent]) == 30.0
            && total(
                &text,
                "faustus_records_read_total",
                &[&format!("topic=\"{mid}\"")],
            ) == 30.0)
            .then_some(text)
    });
    for (hop, operator) in [
        ("source", input.as_str()),
        ("group_by", "counts"),
        ("table", "counts"),
        ("through", mid.as_str()),
        ("join_repartition", "LookupJoin: events"),
        ("commit", "committer"),
        ("agent", "watch"),
    ] {
        let labels = series(hop, operator);
        assert!(
            total(&text, "faustus_hop_latency_seconds_count", &[&labels]) >= 1.0,
            "no latency of hop {hop} of {operator}:\n{text}"
        );
        // Latencies are real durations: not negative, and far less than a day.
        let sum = total(&text, "faustus_hop_latency_seconds_sum", &[&labels]);
        assert!((0.0..86_400.0).contains(&sum), "{hop} {operator}: {sum}");
    }
    assert!(
        total(
            &text,
            "faustus_operator_records_total",
            &[&series("join_repartition", "LookupJoin: events")]
        ) >= 30.0
    );
    assert!(total(&text, "faustus_end_to_end_latency_seconds_count", &[]) >= 1.0);
    let end_to_end = total(&text, "faustus_end_to_end_latency_seconds_sum", &[]);
    assert!(end_to_end > 0.0, "{text}");
    promtool_check(&text);
    app.shutdown().expect("clean shutdown");

    // Turned off, no sensor observes anything.
    let app = start_hops(&unique("sensors-off"), &input, &mid, &out, false);
    app.wait_ready(DEADLINE).expect("ready");
    let text = wait_for("the records read", DEADLINE, || {
        let text = scrape(&app);
        let read = format!("topic=\"{input}\"");
        (total(&text, "faustus_records_read_total", &[&read]) == 30.0
            && total(&text, "faustus_commits_total", &[]) >= 1.0)
            .then_some(text)
    });
    assert!(
        samples(&text, "faustus_hop_latency_seconds_count").is_empty(),
        "{text}"
    );
    assert!(
        samples(&text, "faustus_operator_records_total").is_empty(),
        "{text}"
    );
    assert_eq!(
        total(&text, "faustus_end_to_end_latency_seconds_count", &[]),
        0.0
    );
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

/// Starts Prometheus scraping `target` (host:port) every second, evaluating the alerting rules
/// of `rules` (if any) every second too.
fn prometheus(target: &str, rules: Option<&Path>) -> Prometheus {
    let dir = std::env::temp_dir().join(unique("faustus-prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    let rule_files = match rules {
        Some(path) => format!("rule_files: ['{}']\n", path.display()),
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
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

/// The job name under which the test's Prometheus scrapes the app.
const JOB: &str = "faustus";

/// A GET of Prometheus' HTTP API (`path` from `/api/v1/`): the `data` of its answer, `Ok` if
/// its status is `success`, else `Err` with the whole answer; `None` while Prometheus does
/// not answer (it is starting).
fn api(
    prometheus: &Prometheus,
    path: &str,
    params: &[(&str, &str)],
) -> Option<Result<serde_json::Value, String>> {
    let response = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/{path}", prometheus.url))
        .query(params)
        .timeout(Duration::from_secs(10))
        .send()
        .ok()?;
    let body: serde_json::Value = response.json().ok()?;
    Some(if body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(body.to_string())
    })
}

/// The value of instant query `query` (its first series), if it has one.
fn query(prometheus: &Prometheus, query: &str) -> Option<f64> {
    let data =
        api(prometheus, "query", &[("query", query)])?.unwrap_or_else(|e| panic!("{query}: {e}"));
    data["result"][0]["value"][1].as_str()?.parse().ok()
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
    let mut server = prometheus(&target, None);

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

/// What a Grafana variable stands for in the test: the built-in intervals, and the job and
/// instance of the app the test's Prometheus scrapes.
fn variables(instance: &str) -> Vec<(&'static str, String)> {
    vec![
        ("__rate_interval", "1m".to_string()),
        ("__interval", "15s".to_string()),
        ("__range", "1h".to_string()),
        ("job", JOB.to_string()),
        ("instance", instance.to_string()),
    ]
}

/// `expr` with Grafana's variables (`$name` and `${name}`) replaced by their values in `vars`;
/// `Err` names a variable that `vars` lacks.
fn substitute(expr: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or(format!("unclosed ${{ in {expr}"))?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or(format!("`${name}` in {expr}"))?;
        out.push_str(&value.1);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The metric names (`faustus_*`, `process_*`, `up`) and the label names an expression uses:
/// labels in selectors and in `by`, `without`, `on`, `ignoring` and `group_*` lists.
fn names_in(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let chars: Vec<char> = expr.chars().collect();
    let (mut i, mut braces, mut label_list) = (0, 0, false);
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if braces > 0 || label_list {
                labels.insert(word.clone());
            } else if word.starts_with("faustus_") || word.starts_with("process_") || word == "up" {
                metrics.insert(word.clone());
            }
            last_word = word;
            continue;
        }
        if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            last_word.clear();
            continue;
        }
        match c {
            '{' => braces += 1,
            '}' => braces -= 1,
            '(' => {
                label_list = matches!(
                    last_word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                )
            }
            ')' => label_list = false,
            _ => {}
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    (metrics, labels)
}

/// The process collector's families (docs/guide/operations.md), which have no labels.
const PROCESS_FAMILIES: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_threads",
    "process_start_time_seconds",
];

/// Checks that `expr` (variables substituted) uses only metric families the app exports and
/// labels those families have (with Prometheus' `job` and `instance`, and `le` of histograms).
fn assert_real_families(what: &str, expr: &str) {
    let (metrics, labels) = names_in(expr);
    let mut known: BTreeSet<&str> = ["job", "instance"].into();
    for metric in &metrics {
        if metric == "up" || PROCESS_FAMILIES.contains(&metric.as_str()) {
            continue;
        }
        let family = faustus::metrics::FAMILIES
            .iter()
            .find(|f| {
                f.name == metric
                    || (f.kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| metric.strip_suffix(s) == Some(f.name)))
            })
            .unwrap_or_else(|| panic!("{what}: `{metric}` is no metric faustus exports: {expr}"));
        known.extend(family.labels);
        if family.kind == "histogram" {
            known.insert("le");
        }
    }
    for label in &labels {
        assert!(
            known.contains(label.as_str()),
            "{what}: no family it uses has label `{label}`: {expr}"
        );
    }
}

/// Whether a query's `data` holds a sample with a number (not NaN): a vector with a series, or
/// a scalar.
fn has_data(data: &serde_json::Value) -> bool {
    let number = |v: &serde_json::Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(|x| !x.is_nan())
    };
    match data["resultType"].as_str() {
        Some("scalar") => number(&data["result"]),
        _ => data["result"]
            .as_array()
            .is_some_and(|series| series.iter().any(|s| number(&s["value"]))),
    }
}

/// Every query of the dashboard, as (what, query), with its variables still in: each panel
/// target's `expr`, and each variable's `label_values(selector, label)` as
/// `count by (label) (selector)`. Checks on the way that the JSON is a Grafana dashboard whose
/// panels are laid out on the grid without overlapping, read the datasource variable, and use
/// only variables it defines.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    assert!(dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let defined: Vec<&str> = variables
        .iter()
        .map(|v| v["name"].as_str().expect("a variable's name"))
        .collect();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    let mut queries = Vec::new();
    for v in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], datasource, "{v}");
        let definition = v["query"]["query"].as_str().expect("a variable's query");
        let inner = definition
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("a label_values query: {definition}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        queries.push((
            format!("variable `{}`", v["name"].as_str().unwrap()),
            format!("count by ({}) ({selector})", label.trim()),
        ));
    }
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a panel's title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id"
        );
        let g = &panel["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().expect("x"),
            g["y"].as_u64().expect("y"),
            g["w"].as_u64().expect("w"),
            g["h"].as_u64().expect("h"),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {g}");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            if let Some(other) = cells.insert(cell, title.to_string()) {
                panic!("panels `{other}` and `{title}` overlap at {cell:?}");
            }
        }
        let kind = panel["type"].as_str().expect("a panel's type");
        assert!(
            ["row", "timeseries", "stat"].contains(&kind),
            "{title}: {kind}"
        );
        if kind == "row" {
            continue;
        }
        assert_eq!(panel["datasource"], datasource, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}");
            assert!(
                ref_ids.insert(t["refId"].as_str().expect("a refId")),
                "{title}"
            );
            let expr = t["expr"].as_str().expect("an expr");
            queries.push((
                format!("panel `{title}` ({})", t["refId"].as_str().unwrap()),
                expr.to_string(),
            ));
        }
    }
    for (what, q) in &queries {
        let mut rest = q.as_str();
        while let Some(at) = rest.find('$') {
            let name: String = rest[at + 1..]
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                name.starts_with("__") || defined.contains(&name.as_str()),
                "{what} uses `${name}`, which the dashboard does not define"
            );
            rest = &rest[at + 1..];
        }
    }
    queries
}

/// Runs promtool with `args` in the repository; it must succeed.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("promtool runs (scripts/test installs the `prometheus` package)");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The app of the dashboard test: the totals table (`start_totals`) and an agent on `events`
/// whose handler fails every attempt on a negative value (so it is retried once, then
/// dead-lettered).
fn start_dashboard_app(app_id: &str, input: &str, events: &str) -> Running {
    use faustus::agent::{Agent, Event, HandlerError, Retry};
    let topic = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    let events = Topic::<String, i64>::new(events.to_string()).key_codec(Str);
    let agent = Agent::new("check", &events)
        .retry(Retry {
            retries: 1,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        })
        .handler(|event: Event<String, i64>| async move {
            if event.value() < 0 {
                return Err(HandlerError::new("negative"));
            }
            Ok(())
        });
    App::new(app_id)
        .brokers(brokers())
        .guarantee(Guarantee::ExactlyOnce)
        .workers(2)
        .partitions(2)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .agent(agent)
        .start(move |df| {
            df.stream(&topic).sum("totals").public();
        })
        .expect("the app starts")
}

#[test]
fn every_dashboard_panel_and_alert_rule_queries_a_real_prometheus() {
    // The alerting rules load, and their unit tests (alerts.test.yml) pass.
    promtool(&["check", "rules", "docs/prometheus/alerts.yml"]);
    promtool(&["test", "rules", "docs/prometheus/alerts.test.yml"]);
    let text = std::fs::read_to_string(repo().join("docs/grafana/faustus.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard's JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 30, "{queries:?}");
    let with_instance = |instance: &str| -> Vec<(String, String)> {
        let vars = variables(instance);
        queries
            .iter()
            .map(|(what, q)| {
                let q = substitute(q, &vars).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_real_families(what, &q);
                (what.clone(), q)
            })
            .collect()
    };
    with_instance("127.0.0.1:6066");

    // A first run fills the table's changelog, so the second restores something.
    let app_id = unique("dashboard");
    let input = unique("dashboard-in");
    let events = unique("dashboard-events");
    create_topic(&input, 2);
    create_topic(&events, 2);
    let app = start_dashboard_app(&app_id, &input, &events);
    produce(&input, &ones(14, "k"));
    wait_for("the first run's table", DEADLINE, || {
        (total(&scrape(&app), "faustus_table_entries", &[]) == 7.0).then_some(())
    });
    app.shutdown().expect("clean shutdown");

    let app = start_dashboard_app(&app_id, &input, &events);
    let target = app.http_addr().expect("HTTP is on").to_string();
    let base = format!("http://{target}");
    let rules = repo().join("docs/prometheus/alerts.yml");
    let mut server = prometheus(&target, Some(&rules));
    let queries = with_instance(&target);

    // Work for every panel, all the while: records read, written and dead-lettered (one does
    // not decode), events handled, failed and dead-lettered (one is negative), table reads.
    // Rates and quantiles need it in every window, and a counter's first sample is no increase.
    let producer = TestProducer::new();
    let mut round = 0;
    let mut without_data: BTreeMap<&str, (&str, String)> = BTreeMap::new();
    let started = std::time::Instant::now();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", prometheus_log(&server));
        }
        round += 1;
        for i in 0..4 {
            let key = format!("k-{}", (round + i) % 7);
            producer.send(&input, None, Some(key.as_bytes()), Some(b"1"));
            let value = if i == 0 { -1 } else { round };
            producer.send(
                &events,
                None,
                Some(key.as_bytes()),
                Some(value.to_string().as_bytes()),
            );
        }
        producer.send(&input, None, Some(b"bad"), Some(b"{not a number"));
        http_get(&format!("{base}/api/table/totals/k-{}", round % 7));

        without_data.clear();
        for (what, q) in &queries {
            let answer = match api(&server, "query", &[("query", q)]) {
                None => "Prometheus does not answer yet".to_string(),
                Some(Err(e)) => panic!("{what}: Prometheus refuses {q}: {e}"),
                Some(Ok(data)) if has_data(&data) => continue,
                Some(Ok(data)) => data.to_string(),
            };
            without_data.insert(what, (q, answer));
        }
        if without_data.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{} dashboard queries return no data:\n{}\n{}",
            without_data.len(),
            without_data
                .iter()
                .map(|(what, (q, answer))| format!("{what}: {q}\n  -> {answer}"))
                .collect::<Vec<_>>()
                .join("\n"),
            prometheus_log(&server)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The alerting rules: Prometheus loaded every one, each query parses, and each evaluates
    // without an error against the app's series.
    let alerts = std::fs::read_to_string(&rules).unwrap();
    let expected = alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let rules = wait_for("every rule evaluated", DEADLINE, || {
        let data = api(&server, "rules", &[("type", "alert")])?.expect("the rules");
        let rules: Vec<serde_json::Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        for r in &rules {
            assert_ne!(r["health"], "err", "{r}");
        }
        (rules.len() == expected && rules.iter().all(|r| r["health"] == "ok")).then_some(rules)
    });
    for r in &rules {
        let what = format!("alert `{}`", r["name"].as_str().unwrap());
        let q = r["query"].as_str().expect("a rule's query");
        assert_real_families(&what, q);
        if let Err(e) = api(&server, "query", &[("query", q)]).expect("Prometheus answers") {
            panic!("{what}: Prometheus refuses {q}: {e}");
        }
    }

    producer.flush();
    drop(server);
    app.shutdown().expect("clean shutdown");
}
