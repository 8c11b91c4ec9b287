//! Agents under `exactly_once`, killed with SIGKILL on the real broker: while many handlers are
//! in flight and completing out of order, and while a second process shares the partitions.
//! Every input must have exactly one output in the sink topic, and every event must have been
//! handled at least once.
//!
//! The agent processes are this test binary itself, run again as the ignored test
//! `agent_process` (configured through environment variables).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use faustus::agent::{Agent, Event, Ordering};
use faustus::prelude::*;
use faustus::{Guarantee, Producer};
use rdkafka::consumer::{BaseConsumer, Consumer};

const AGENT: &str = "relay";
const PARTITIONS: i32 = 4;
const DEADLINE: Duration = Duration::from_secs(180);

/// One agent process: relays `input` to `output` under exactly-once, 64 handlers at a time,
/// each taking 0–30 ms, and notes every event it handles in a file. Runs until killed.
#[test]
#[ignore = "run by the tests below, as a separate process"]
fn agent_process() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (input, output, handled) = (
        Topic::<String, i64>::new(env("AGENT_INPUT")),
        Topic::<String, i64>::new(env("AGENT_OUTPUT")),
        env("AGENT_HANDLED"),
    );
    let out = output.clone();
    let agent = Agent::new(AGENT, &input)
        .concurrency(64)
        .ordering(Ordering::Unordered)
        .sends_to(&output)
        .handler(move |event: Event<String, i64>| {
            let (out, handled) = (out.clone(), handled.clone());
            async move {
                let pause = (event.value() * 7919) % 31;
                tokio::time::sleep(Duration::from_millis(pause as u64)).await;
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&handled)?;
                // One write per line: appends from concurrent handlers do not interleave.
                file.write_all(format!("{}\n", event.value()).as_bytes())?;
                event.send(&out, event.key(), event.value())?;
                Ok(())
            }
        });
    let http = env("AGENT_HTTP").parse().expect("an HTTP address");
    App::new(env("AGENT_APP"))
        .brokers(brokers())
        .guarantee(Guarantee::ExactlyOnce)
        .http(Some(http))
        .commit_interval(Duration::from_millis(100))
        .agent(agent)
        .run_agents()
        .expect("the agent process runs");
}

/// The test's names and files.
struct Setup {
    app: String,
    input: String,
    output: String,
    handled: std::path::PathBuf,
}

impl Setup {
    fn new(name: &str) -> Self {
        let setup = Setup {
            app: unique(name),
            input: unique("relay-in"),
            output: unique("relay-out"),
            handled: std::env::temp_dir().join(format!("{}.handled", unique(name))),
        };
        create_topic(&setup.input, PARTITIONS);
        create_topic(&setup.output, PARTITIONS);
        setup
    }

    /// Starts an agent process serving HTTP on `port`.
    fn spawn(&self, port: u16) -> Child {
        Command::new(std::env::current_exe().expect("this test binary"))
            .args(["agent_process", "--exact", "--ignored", "--nocapture"])
            .env("FAUSTUS_TEST_BROKERS", brokers())
            .env("AGENT_APP", &self.app)
            .env("AGENT_INPUT", &self.input)
            .env("AGENT_OUTPUT", &self.output)
            .env("AGENT_HANDLED", &self.handled)
            .env("AGENT_HTTP", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting an agent process")
    }

    /// Produces `values` in the background, a few at a time.
    fn produce(&self, values: std::ops::Range<i64>) -> std::thread::JoinHandle<()> {
        let topic = Topic::<String, i64>::new(self.input.clone());
        std::thread::spawn(move || {
            let producer = Producer::new(&brokers()).expect("a producer");
            for v in values {
                producer
                    .send_blocking(&topic, &format!("k{}", v % 97), &v)
                    .expect("sent");
                if v % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    }

    /// Waits until the agent's group has committed every input record.
    fn wait_committed(&self) {
        let ends = record_ends(&self.input);
        let group = format!("{}-{AGENT}", self.app);
        wait_for("every input committed", DEADLINE, || {
            let committed = group_positions(&group, &self.input, PARTITIONS)?;
            let done = ends
                .iter()
                .all(|(p, end)| committed.get(p).is_some_and(|o| o >= end));
            done.then_some(())
        });
    }

    /// Checks exactly one output per input, and at least one handling of each.
    fn check(&self, n: i64) {
        let mut outputs: BTreeMap<i64, usize> = BTreeMap::new();
        for r in read_all(&self.output) {
            let v: i64 = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .expect("a JSON value");
            *outputs.entry(v).or_default() += 1;
        }
        let missing: Vec<i64> = (0..n).filter(|v| !outputs.contains_key(v)).collect();
        let twice: Vec<(&i64, &usize)> = outputs.iter().filter(|(_, c)| **c > 1).collect();
        assert!(missing.is_empty(), "lost outputs: {missing:?}");
        assert!(twice.is_empty(), "duplicated outputs: {twice:?}");
        assert_eq!(outputs.len() as i64, n);
        let handled: BTreeSet<i64> = std::fs::read_to_string(&self.handled)
            .expect("the handled file")
            .lines()
            .map(|l| l.parse().expect("a value"))
            .collect();
        assert_eq!(
            handled,
            (0..n).collect(),
            "every event handled at least once"
        );
    }
}

/// The partitions each agent process holds, from its `/api/agents/` (none if it does not
/// answer).
fn partitions(port: u16) -> Vec<i64> {
    let url = format!("http://127.0.0.1:{port}/api/agents/");
    let Ok(response) = reqwest::blocking::get(url) else {
        return Vec::new();
    };
    let Ok(body) = response.json::<serde_json::Value>() else {
        return Vec::new();
    };
    body["processes"][0]["agents"][0]["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["partition"].as_i64())
        .collect()
}

/// The partitions of `topic` the consumer group `group` assigns to each of its members, as
/// Kafka has them (each member's assignment, decoded from the consumer protocol).
fn group_assignment(group: &str, topic: &str) -> BTreeSet<Vec<i64>> {
    let consumer: BaseConsumer = kafka().client().create().expect("a client");
    let Ok(list) = consumer.fetch_group_list(Some(group), Duration::from_secs(10)) else {
        return BTreeSet::new();
    };
    list.groups()
        .iter()
        .flat_map(|g| g.members())
        .map(|m| assigned_partitions(m.assignment().unwrap_or_default(), topic))
        .collect()
}

/// The partitions of `topic` in a consumer-protocol assignment: version (i16), then topics
/// (i32 count; each a name, i16 length + bytes, and its partitions, i32 count + i32s), then user
/// data.
fn assigned_partitions(bytes: &[u8], topic: &str) -> Vec<i64> {
    let mut at = 2;
    let mut take = |n: usize| {
        let part = bytes.get(at..at + n).unwrap_or_default();
        at += n;
        part
    };
    let int = |b: &[u8]| b.iter().fold(0i64, |n, byte| (n << 8) | i64::from(*byte));
    let mut partitions = Vec::new();
    let topics = int(take(4));
    for _ in 0..topics {
        let len = int(take(2)) as usize;
        let name = String::from_utf8_lossy(take(len)).into_owned();
        let count = int(take(4));
        for _ in 0..count {
            let p = int(take(4));
            if name == topic {
                partitions.push(p);
            }
        }
    }
    partitions.sort();
    partitions
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

#[test]
fn kill_9_with_handlers_in_flight_loses_nothing_and_writes_each_output_once() {
    let setup = Setup::new("agents-kill");
    let n = 3000;
    let port = free_port();
    let mut child = setup.spawn(port);
    let producing = setup.produce(0..n);
    for _ in 0..3 {
        // Kill it once it is working: partitions assigned and events handled.
        wait_for("the agent at work", DEADLINE, || {
            let working = partitions(port).len() as i32 == PARTITIONS
                && std::fs::metadata(&setup.handled).is_ok_and(|m| m.len() > 0);
            working.then_some(())
        });
        std::thread::sleep(Duration::from_millis(700));
        kill(&mut child);
        child = setup.spawn(port);
    }
    producing.join().expect("produced");
    setup.wait_committed();
    kill(&mut child);
    setup.check(n);
}

#[test]
fn a_second_process_joins_then_the_first_is_killed_and_nothing_is_lost_or_doubled() {
    let setup = Setup::new("agents-scale");
    let n = 3000;
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = setup.spawn(port_a);
    let producing = setup.produce(0..n);
    wait_for("the first process holds every partition", DEADLINE, || {
        (partitions(port_a).len() as i32 == PARTITIONS).then_some(())
    });
    let mut b = setup.spawn(port_b);
    let started = Instant::now();
    wait_for("the partitions shared by both processes", DEADLINE, || {
        let (pa, pb) = (partitions(port_a), partitions(port_b));
        (!pa.is_empty() && !pb.is_empty() && (pa.len() + pb.len()) as i32 == PARTITIONS)
            .then_some(())
    });
    eprintln!("rebalanced in {:?}", started.elapsed());
    // What each process says it holds is what Kafka's group assigns to its members.
    let group = format!("{}-{AGENT}", setup.app);
    wait_for(
        "/api/agents/ matching the group's assignment",
        DEADLINE,
        || {
            let (mut pa, mut pb) = (partitions(port_a), partitions(port_b));
            pa.sort();
            pb.sort();
            let shown: BTreeSet<Vec<i64>> = [pa, pb].into();
            (shown == group_assignment(&group, &setup.input)).then_some(())
        },
    );
    kill(&mut a);
    wait_for("the second process holds every partition", DEADLINE, || {
        (partitions(port_b).len() as i32 == PARTITIONS).then_some(())
    });
    producing.join().expect("produced");
    setup.wait_committed();
    kill(&mut b);
    setup.check(n);
}
