//! Timers on the real broker: one process of the cluster fires each slot, once, and another
//! takes over within two intervals when the owner is killed with SIGKILL.
//!
//! Each test runs two processes of the `timers` example (`examples/timers.rs`) with one app id;
//! its `heartbeat` timer sends `(slot, {who, at})` to an output topic per slot.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;

/// One record of the output topic: the slot, who handled it and when (ms since 1970).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Beat {
    slot: i64,
    who: String,
    at: i64,
}

/// The records of `topic`, in slot order (their keys spread them over partitions).
fn beats(topic: &str) -> Vec<Beat> {
    let mut beats: Vec<Beat> = read_all(topic)
        .into_iter()
        .map(|r| {
            let slot = String::from_utf8(r.key.expect("a key")).unwrap();
            let value: serde_json::Value =
                serde_json::from_slice(&r.value.expect("a value")).unwrap();
            Beat {
                slot: slot.parse().unwrap(),
                who: value["who"].as_str().unwrap().to_string(),
                at: value["at"].as_i64().unwrap(),
            }
        })
        .collect();
    beats.sort_by_key(|beat| beat.slot);
    beats
}

/// Every slot appears once and each is one interval after the one before.
fn assert_each_slot_once(beats: &[Beat], every_ms: i64) {
    let mut seen: BTreeMap<i64, &Beat> = BTreeMap::new();
    for beat in beats {
        if let Some(first) = seen.insert(beat.slot, beat) {
            panic!("slot {} fired twice: {first:?} and {beat:?}", beat.slot);
        }
    }
    let slots: Vec<i64> = seen.keys().copied().collect();
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            every_ms,
            "slots {} and {} are not one interval apart: a slot was missed ({beats:?})",
            pair[0],
            pair[1]
        );
    }
}

/// A process of the `timers` example in application `app_id`, named `who`, its heartbeat every
/// `every_ms`, writing to `output`, serving HTTP on `port`.
fn start(app_id: &str, who: &str, every_ms: i64, output: &str, port: u16) -> Process {
    let args: Vec<String> = [
        "--app-id",
        app_id,
        "--who",
        who,
        "--every-ms",
        &every_ms.to_string(),
        "--output-topic",
        output,
        "--http",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Process::example("timers", &args, &[])
}

/// The members of the heartbeat's consumer group.
fn members(app_id: &str) -> usize {
    faustus::connectors::group_members(&kafka(), &format!("{app_id}-timer-heartbeat")).unwrap_or(0)
}

/// The first entry that `named` picks from the lists `list` (`agents` or `timers`) of the
/// `/api/agents/` of the process at `port`.
fn agents_entry(
    port: u16,
    list: &str,
    named: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/api/agents/"));
    if status != 200 {
        return None;
    }
    body["processes"]
        .as_array()?
        .iter()
        .flat_map(|p| p[list].as_array().into_iter().flatten())
        .find(|entry| named(entry))
        .cloned()
}

/// The partitions the `timer-heartbeat` agent of the process at `port` holds, as its
/// `/api/agents/` shows them.
fn heartbeat_partitions(port: u16) -> Option<Vec<i64>> {
    let agent = agents_entry(port, "agents", |a| {
        a["settings"]["name"] == "timer-heartbeat"
    })?;
    Some(
        agent["partitions"]
            .as_array()?
            .iter()
            .filter_map(|p| p["partition"].as_i64())
            .collect(),
    )
}

/// Whether the process at `port` fires the heartbeat, as the `timers` of its `/api/agents/`
/// show it.
fn heartbeat_owner(port: u16) -> Option<bool> {
    let timer = agents_entry(port, "timers", |t| t["name"] == "heartbeat")?;
    assert_eq!(timer["schedule"], "every 2000 ms", "{timer}");
    let owner = timer["owner"].as_bool()?;
    assert_eq!(owner, timer["next_slot"].is_i64(), "{timer}");
    Some(owner)
}

/// Starts `a`, waits for its first tick, then starts `b` and waits until both are in the
/// timer's group: `a` owns the timer.
fn two_processes(app_id: &str, every_ms: i64, output: &str) -> (Process, Process, [u16; 2]) {
    let ports = [free_port(), free_port()];
    let a = start(app_id, "a", every_ms, output, ports[0]);
    wait_for("a's first tick", Duration::from_secs(120), || {
        (!beats(output).is_empty()).then_some(())
    });
    let b = start(app_id, "b", every_ms, output, ports[1]);
    wait_for(
        "both processes in the timer's group",
        Duration::from_secs(120),
        || (members(app_id) == 2).then_some(()),
    );
    (a, b, ports)
}

#[test]
fn a_timer_fires_each_slot_once_on_one_process() {
    let app_id = unique("timers-one");
    let output = unique("timer-ticks");
    let every_ms = 2_000;
    let (mut a, mut b, ports) = two_processes(&app_id, every_ms, &output);
    // The owner is the process whose timer agent holds partition 0.
    wait_for("a to show partition 0", Duration::from_secs(60), || {
        (heartbeat_partitions(ports[0])? == [0]).then_some(())
    });
    assert_eq!(heartbeat_partitions(ports[1]), Some(vec![]));
    assert_eq!(heartbeat_owner(ports[0]), Some(true));
    assert_eq!(heartbeat_owner(ports[1]), Some(false));
    let before = beats(&output).len();
    let all = wait_for("five more ticks", Duration::from_secs(120), || {
        let all = beats(&output);
        (all.len() >= before + 5).then_some(all)
    });
    assert_each_slot_once(&all, every_ms);
    let from_b: Vec<&Beat> = all.iter().filter(|beat| beat.who != "a").collect();
    assert!(from_b.is_empty(), "ticks not from the owner: {from_b:?}");
    assert!(a.terminate().success(), "{}", a.log_text());
    assert!(b.terminate().success(), "{}", b.log_text());
}

#[test]
fn another_process_fires_within_two_intervals_when_the_owner_is_killed() {
    let app_id = unique("timers-failover");
    let output = unique("timer-ticks");
    let every_ms = 10_000;
    let (mut a, mut b, _ports) = two_processes(&app_id, every_ms, &output);
    // Right after one of a's ticks is committed, so that no tick of a is under way.
    let seen = beats(&output).len();
    wait_for("a's next tick", Duration::from_secs(60), || {
        (beats(&output).len() > seen).then_some(())
    });
    a.kill9();
    let killed = now_millis();
    let started = Instant::now();
    let first_of_b = wait_for("b's first tick", Duration::from_secs(120), || {
        beats(&output).into_iter().find(|beat| beat.who == "b")
    });
    let took = first_of_b.at - killed;
    eprintln!(
        "b fired slot {} {took} ms after the owner was killed",
        first_of_b.slot
    );
    assert!(
        took <= 2 * every_ms,
        "b fired {took} ms after the owner was killed (seen after {:?}); expected within two intervals\n{}",
        started.elapsed(),
        b.log_text()
    );
    // b goes on with the next slots, and no slot fired twice or was skipped.
    let all = wait_for("b's second tick", Duration::from_secs(60), || {
        let all = beats(&output);
        (all.iter().filter(|beat| beat.who == "b").count() >= 2).then_some(all)
    });
    assert_each_slot_once(&all, every_ms);
    let last_of_a = all
        .iter()
        .filter(|beat| beat.who == "a")
        .map(|beat| beat.slot)
        .max();
    assert_eq!(Some(first_of_b.slot - every_ms), last_of_a, "{all:?}");
    assert!(b.terminate().success(), "{}", b.log_text());
}

#[test]
fn slots_missed_while_the_application_was_down_are_not_made_up_except_the_latest() {
    let app_id = unique("timers-missed");
    let output = unique("timer-ticks");
    let every_ms = 2_000;
    let mut a = start(&app_id, "a", every_ms, &output, free_port());
    wait_for("a's first tick", Duration::from_secs(120), || {
        (!beats(&output).is_empty()).then_some(())
    });
    assert!(a.terminate().success(), "{}", a.log_text());
    let before = beats(&output);
    let last = before.iter().map(|beat| beat.slot).max().unwrap();
    // Three slots pass with no process running.
    wait_for("three slots to pass", Duration::from_secs(60), || {
        (now_millis() > last + 3 * every_ms).then_some(())
    });
    let restarted = now_millis();
    let mut again = start(&app_id, "again", every_ms, &output, free_port());
    let all = wait_for(
        "three ticks after the restart",
        Duration::from_secs(120),
        || {
            let all = beats(&output);
            (all.iter().filter(|beat| beat.who == "again").count() >= 3).then_some(all)
        },
    );
    let after: Vec<&Beat> = all.iter().filter(|beat| beat.who == "again").collect();
    let first = after[0];
    // The slots of the pause did not fire, except (at most) the latest one due when the new
    // process took the timer: none before the one due when it started.
    let due_at_restart = restarted.div_euclid(every_ms) * every_ms;
    assert!(due_at_restart >= last + 3 * every_ms);
    assert!(
        first.slot >= due_at_restart,
        "restarted at {restarted}: {all:?}"
    );
    assert!(first.at >= first.slot, "{first:?}");
    for pair in after.windows(2) {
        assert_eq!(pair[1].slot - pair[0].slot, every_ms, "{all:?}");
    }
    let mut slots: Vec<i64> = all.iter().map(|beat| beat.slot).collect();
    slots.dedup();
    assert_eq!(slots.len(), all.len(), "a slot fired twice: {all:?}");
    assert!(again.terminate().success(), "{}", again.log_text());
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
