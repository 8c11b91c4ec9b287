//! Workflows under `exactly_once`, with processes killed by SIGKILL on the real broker: a chord
//! of 1,000 members and chains of three steps, run by two processes that are killed at random
//! moments three times and restarted. Each chord's callback must fire exactly once, with a
//! result for every member (so every member ran), and each chain's final output must appear
//! exactly once.
//!
//! The processes are this test binary itself, run again as the ignored test
//! `workflow_process` (configured through environment variables).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use faustus::agent::{Agent, Event};
use faustus::prelude::*;
use faustus::workflow::{Chain, Chord, ChordResult, JsonValue, Workflows};
use faustus::Guarantee;

const PARTITIONS: i32 = 4;
const DEADLINE: Duration = Duration::from_secs(240);

/// The topics of one run, from its prefix.
struct Topics {
    members: Topic<String, i64>,
    callback: Topic<String, ChordResult>,
    summaries: Topic<String, i64>,
    step1: Topic<String, i64>,
    step2: Topic<String, i64>,
    step3: Topic<String, i64>,
    output: Topic<String, i64>,
}

impl Topics {
    fn new(prefix: &str) -> Self {
        let t = |name: &str| format!("{prefix}-{name}");
        Topics {
            members: Topic::new(t("members")),
            callback: Topic::new(t("callback")),
            summaries: Topic::new(t("summaries")),
            step1: Topic::new(t("step1")),
            step2: Topic::new(t("step2")),
            step3: Topic::new(t("step3")),
            output: Topic::new(t("output")),
        }
    }
}

/// An agent that replies `f(value)` to each request, 8 at a time, after 10–29 ms.
fn step(name: &str, topic: &Topic<String, i64>, f: fn(i64) -> i64) -> Agent<String, i64> {
    Agent::new(name, topic)
        .concurrency(8)
        .handler(move |event: Event<String, i64>| async move {
            let pause = 10 + (event.value().unsigned_abs() * 7919) % 20;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            event.reply(&f(event.value()))?;
            Ok(())
        })
}

/// One workflow process: the chord's members, its callback's consumer (which writes one
/// summary per chord), the chain's three steps (the last writes the output) and the chord
/// coordinator, under exactly-once. Runs until killed.
#[test]
#[ignore = "run by the test below, as a separate process"]
fn workflow_process() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let topics = Topics::new(&env("WF_PREFIX"));
    let summaries = topics.summaries.clone();
    let callback = Agent::new("summarize", &topics.callback)
        .sends_to(&topics.summaries)
        .handler(move |event: Event<String, ChordResult>| {
            let summaries = summaries.clone();
            async move {
                let answered = event.value().results.iter().flatten().count() as i64;
                event.send(&summaries, event.key(), answered)?;
                Ok(())
            }
        });
    let output = topics.output.clone();
    let last = Agent::new("step3", &topics.step3)
        .concurrency(8)
        .sends_to(&topics.output)
        .handler(move |event: Event<String, i64>| {
            let output = output.clone();
            async move {
                event.send(&output, event.key(), event.value() * 10)?;
                Ok(())
            }
        });
    App::new(env("WF_APP"))
        .brokers(brokers())
        .guarantee(Guarantee::ExactlyOnce)
        .http(None)
        .partitions(PARTITIONS)
        .commit_interval(Duration::from_millis(100))
        .agent(step("member", &topics.members, |v| v * 2))
        .agent(callback)
        .agent(step("step1", &topics.step1, |v| v + 1))
        .agent(step("step2", &topics.step2, |v| v * 3))
        .agent(last)
        .chords()
        .run_agents()
        .expect("the workflow process runs");
}

fn spawn(app: &str, prefix: &str) -> Child {
    Command::new(std::env::current_exe().expect("this test binary"))
        .args(["workflow_process", "--exact", "--ignored", "--nocapture"])
        .env("FAUSTUS_TEST_BROKERS", brokers())
        .env("WF_APP", app)
        .env("WF_PREFIX", prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a workflow process")
}

fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// How many times each key of `topic` came, with its last value.
fn counted(topic: &str) -> BTreeMap<String, (usize, Vec<u8>)> {
    let mut counts: BTreeMap<String, (usize, Vec<u8>)> = BTreeMap::new();
    for r in read_all(topic) {
        let key: String =
            serde_json::from_slice(r.key.as_deref().unwrap_or_default()).expect("a JSON key");
        let entry = counts.entry(key).or_default();
        entry.0 += 1;
        entry.1 = r.value.unwrap_or_default();
    }
    counts
}

/// The sum of the positions consumer group `group` has committed on `topic`.
fn committed(group: &str, topic: &str) -> i64 {
    group_positions(group, topic, PARTITIONS)
        .map(|p| p.values().sum())
        .unwrap_or(0)
}

/// A pseudo-random number in `0..n` from `seed` (the moments of the kills).
fn pick(seed: &mut u64, n: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % n
}

#[test]
fn chords_and_chains_fire_exactly_once_while_processes_are_killed() {
    let app = unique("wf-chaos");
    let prefix = unique("wf");
    let topics = Topics::new(&prefix);
    for t in [
        topics.members.name(),
        topics.callback.name(),
        topics.summaries.name(),
        topics.step1.name(),
        topics.step2.name(),
        topics.step3.name(),
        topics.output.name(),
    ] {
        create_topic(t, PARTITIONS);
    }
    let mut processes = [spawn(&app, &prefix), spawn(&app, &prefix)];
    let workflows = Workflows::connect(&kafka(), &app, PARTITIONS).expect("workflows");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    // One chord of 1,000 members, and ten of 10.
    let chord = |id: String, members: i64| {
        (0..members)
            .fold(Chord::new(id), |c, v| {
                c.member(&topics.members, &format!("m{v}"), &v)
                    .expect("a member")
            })
            .callback(&topics.callback)
    };
    let mut chords = vec![(chord("big".into(), 1000), 1000)];
    chords.extend((0..10).map(|i| (chord(format!("small-{i}"), 10), 10)));
    let chains = 200;
    rt.block_on(async {
        for (chord, _) in &chords {
            workflows.start_chord(chord).await.expect("a chord started");
        }
        for i in 0..chains {
            let chain = Chain::new(&topics.step1, &format!("c{i}"), &i)
                .expect("a chain")
                .then(&topics.step2)
                .then(&topics.step3);
            workflows
                .start_chain(&chain)
                .await
                .expect("a chain started");
        }
    });
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let members_group = format!("{app}-member");
    let mut handled_at_kill = 0;
    let mut done_at_first_kill = None;
    for round in 0..3 {
        // Once members are being handled again (the processes are at work), a random moment,
        // then a random process.
        wait_for("members handled since the last kill", DEADLINE, || {
            let handled = committed(&members_group, topics.members.name());
            (handled > handled_at_kill).then_some(())
        });
        std::thread::sleep(Duration::from_millis(pick(&mut seed, 1500)));
        handled_at_kill = committed(&members_group, topics.members.name());
        done_at_first_kill.get_or_insert_with(|| counted(topics.summaries.name()).len());
        let victim = pick(&mut seed, 2) as usize;
        eprintln!("round {round}: {handled_at_kill} members committed; killing process {victim}");
        kill(&mut processes[victim]);
        processes[victim] = spawn(&app, &prefix);
    }
    // The first kill came while chords were in progress.
    assert!(
        done_at_first_kill < Some(chords.len()),
        "the chords were done before any kill"
    );
    let everything = wait_for(
        "every chord's summary and every chain's output",
        DEADLINE,
        || {
            let summaries = counted(topics.summaries.name());
            let outputs = counted(topics.output.name());
            (summaries.len() == chords.len() && outputs.len() == chains as usize)
                .then_some((summaries, outputs))
        },
    );
    // A late duplicate would come within a commit interval or a restart: give it time.
    std::thread::sleep(Duration::from_secs(5));
    for process in &mut processes {
        kill(process);
    }
    let (summaries, outputs) = (
        counted(topics.summaries.name()),
        counted(topics.output.name()),
    );
    assert_eq!(summaries.len(), everything.0.len());
    let callbacks = counted(topics.callback.name());
    for (chord, size) in &chords {
        let (times, answered) = &summaries[chord.id()];
        assert_eq!(*times, 1, "chord {} summarized {times} times", chord.id());
        let answered: i64 = serde_json::from_slice(answered).expect("a count");
        assert_eq!(answered, *size, "chord {}: every member ran", chord.id());
        assert_eq!(
            callbacks[chord.id()].0,
            1,
            "chord {} called back twice",
            chord.id()
        );
        let result: ChordResult =
            serde_json::from_slice(&callbacks[chord.id()].1).expect("a result");
        let expected: Vec<Option<JsonValue>> = (0..*size).map(|v| Some((v * 2).into())).collect();
        assert_eq!(result.results, expected);
    }
    for i in 0..chains {
        let (times, value) = &outputs[&format!("c{i}")];
        assert_eq!(*times, 1, "chain c{i}'s output came {times} times");
        let value: i64 = serde_json::from_slice(value).expect("a value");
        assert_eq!(value, (i + 1) * 3 * 10);
    }
}
