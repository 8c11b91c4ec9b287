//! Agents on the real broker: concurrency, per-key order, retries and dead letters, manual acks,
//! the actor form, and what `/api/agents/` reports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use faustus::agent::{Agent, AgentStatus, Event, HandlerError, Ordering, Retry};
use faustus::prelude::*;
use faustus::{Guarantee, Producer};

const DEADLINE: Duration = Duration::from_secs(90);

/// Starts an application that runs `agent` (and no dataflow).
fn start_agent<K: Data + Send, V: Data + Send>(
    app_id: &str,
    guarantee: Guarantee,
    agent: Agent<K, V>,
) -> faustus::Running {
    App::new(app_id)
        .brokers(brokers())
        .http(None)
        .guarantee(guarantee)
        .commit_interval(Duration::from_millis(100))
        .agent(agent)
        .start(|_df| {})
        .expect("the app starts")
}

/// Sends `(key, value)` records, in order, to `topic`.
fn send_all(topic: &Topic<String, i64>, records: &[(String, i64)]) {
    let producer = Producer::new(&brokers()).expect("a producer");
    for (k, v) in records {
        producer.send_blocking(topic, k, v).expect("sent");
    }
}

/// `(key, value)` of every committed record of `topic`, per partition in offset order.
fn read_pairs(topic: &str) -> Vec<(String, i64)> {
    read_all(topic)
        .iter()
        .map(|r| {
            (
                serde_json::from_slice(r.key.as_deref().unwrap_or_default()).expect("a JSON key"),
                serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                    .expect("a JSON value"),
            )
        })
        .collect()
}

fn status(app: &faustus::Running, name: &str) -> AgentStatus {
    app.agents()
        .into_iter()
        .find(|a| a.settings.name == name)
        .expect("the agent runs")
}

#[test]
fn out_of_order_handlers_send_each_record_once_and_commit_the_first_unacked_offset() {
    for guarantee in [Guarantee::AtLeastOnce, Guarantee::ExactlyOnce] {
        let app_id = unique("agent-basic");
        let (input, output) = (unique("in"), unique("out"));
        create_topic(&input, 4);
        let (input_topic, output_topic) = (
            Topic::<String, i64>::new(input.clone()),
            Topic::<String, i64>::new(output.clone()).partitions(4),
        );
        let out = output_topic.clone();
        let agent = Agent::new("double", &input_topic)
            .concurrency(8)
            .ordering(Ordering::Unordered)
            .sends_to(&output_topic)
            .handler(move |event: Event<String, i64>| {
                let out = out.clone();
                async move {
                    // Later events of a partition often finish first.
                    let pause = (event.value() * 7919) % 23;
                    tokio::time::sleep(Duration::from_millis(pause as u64)).await;
                    event.send(&out, event.key(), event.value() * 2)?;
                    Ok(())
                }
            });
        let app = start_agent(&app_id, guarantee, agent);
        let records: Vec<(String, i64)> = (0..400).map(|i| (format!("k{}", i % 37), i)).collect();
        send_all(&input_topic, &records);
        let input_ends = record_ends(&input);
        let group = format!("{app_id}-double");
        wait_for("every position committed", DEADLINE, || {
            (group_positions(&group, &input, 4)? == input_ends).then_some(())
        });
        let mut written: Vec<i64> = read_pairs(&output).into_iter().map(|(_, v)| v).collect();
        written.sort();
        let expected: Vec<i64> = (0..400).map(|i| i * 2).collect();
        assert_eq!(written, expected, "{guarantee:?}: each event's record once");
        let s = status(&app, "double");
        assert_eq!(s.handled, 400, "{guarantee:?}");
        assert_eq!(s.dead_lettered, 0);
        app.shutdown().expect("a clean stop");
    }
}

#[test]
fn per_key_order_holds_with_concurrency_32() {
    let app_id = unique("agent-order");
    let (input, output) = (unique("in"), unique("out"));
    create_topic(&input, 4);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let output_topic = Topic::<String, i64>::new(output.clone()).partitions(4);
    let seen: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let (out, log) = (output_topic.clone(), Arc::clone(&seen));
    let agent = Agent::new("ordered", &input_topic)
        .concurrency(32)
        .sends_to(&output_topic)
        .handler(move |event: Event<String, i64>| {
            let (out, log) = (out.clone(), Arc::clone(&log));
            async move {
                // The first events of a key are the slowest: any overtaking would show.
                let pause = 20u64.saturating_sub(event.value() as u64 / 10);
                tokio::time::sleep(Duration::from_millis(pause)).await;
                log.lock().unwrap().push((event.key(), event.value()));
                event.send(&out, event.key(), event.value())?;
                Ok(())
            }
        });
    let app = start_agent(&app_id, Guarantee::AtLeastOnce, agent);
    let records: Vec<(String, i64)> = (0..200).map(|i| (format!("k{}", i % 10), i)).collect();
    send_all(&input_topic, &records);
    let written = wait_for("every record handled", DEADLINE, || {
        let w = read_pairs(&output);
        (w.len() >= 200).then_some(w)
    });
    let per_key = |pairs: &[(String, i64)]| {
        let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, v) in pairs {
            by_key.entry(k.clone()).or_default().push(*v);
        }
        by_key
    };
    let expected = per_key(&records);
    assert_eq!(
        per_key(&seen.lock().unwrap()),
        expected,
        "handled in key order"
    );
    assert_eq!(per_key(&written), expected, "written in key order");
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_poison_event_is_dead_lettered_after_its_retries_and_the_rest_flows_on() {
    let app_id = unique("agent-poison");
    let (input, output) = (unique("in"), unique("out"));
    create_topic(&input, 2);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let output_topic = Topic::<String, i64>::new(output.clone()).partitions(2);
    let out = output_topic.clone();
    let agent = Agent::new("picky", &input_topic)
        .concurrency(4)
        .timeout(Duration::from_millis(500))
        .retry(Retry {
            retries: 2,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        })
        .sends_to(&output_topic)
        .handler(move |event: Event<String, i64>| {
            let out = out.clone();
            async move {
                // A failing attempt's sends are dropped: these records must never appear.
                if (13..=15).contains(&event.value()) {
                    event.send(&out, event.key(), -event.value())?;
                }
                match event.value() {
                    13 => return Err(HandlerError::new("thirteen is unlucky")),
                    14 => panic!("fourteen"),
                    15 => tokio::time::sleep(Duration::from_secs(5)).await,
                    _ => {}
                }
                event.send_record(&out, &event.key(), Some(&event.value()), vec![])?;
                Ok(())
            }
        });
    let app = start_agent(&app_id, Guarantee::ExactlyOnce, agent);
    let records: Vec<(String, i64)> = (10..20).map(|i| (format!("k{i}"), i)).collect();
    send_all(&input_topic, &records);
    let letters = wait_for("three dead letters", DEADLINE, || {
        let l = read_all(&faustus::dead_letter::topic(&app_id));
        (l.len() >= 3).then_some(l)
    });
    let reasons: BTreeMap<String, String> = letters
        .iter()
        .map(|r| {
            (
                r.headers[faustus::dead_letter::OFFSET].clone(),
                r.headers[faustus::dead_letter::REASON].clone(),
            )
        })
        .collect();
    let all = reasons.values().cloned().collect::<Vec<_>>().join("\n");
    assert!(
        all.contains("failed 3 times; last: thirteen is unlucky"),
        "{all}"
    );
    assert!(all.contains("panicked: fourteen"), "{all}");
    assert!(all.contains("timed out after 500ms"), "{all}");
    assert!(letters
        .iter()
        .all(|r| r.headers[faustus::dead_letter::OPERATOR] == "picky"));
    let group = format!("{app_id}-picky");
    let input_ends = record_ends(&input);
    wait_for("every position committed", DEADLINE, || {
        (group_positions(&group, &input, 2)? == input_ends).then_some(())
    });
    let written: BTreeSet<i64> = read_pairs(&output).into_iter().map(|(_, v)| v).collect();
    let expected: BTreeSet<i64> = [10, 11, 12, 16, 17, 18, 19].into();
    assert_eq!(
        written, expected,
        "the others flowed on; no failed attempt wrote"
    );
    let s = status(&app, "picky");
    assert_eq!(s.dead_lettered, 3);
    assert_eq!(s.failed_attempts, 9);
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_dead_letter_carries_the_record_as_read_even_when_the_first_attempt_is_the_last() {
    for ordering in [Ordering::PerKey, Ordering::Unordered] {
        let app_id = unique("agent-raw");
        let input = unique("in");
        create_topic(&input, 1);
        let input_topic = Topic::<String, i64>::new(input.clone());
        let agent = Agent::new("strict", &input_topic)
            .ordering(ordering)
            .concurrency(2)
            .retry(Retry {
                retries: 0,
                ..Retry::default()
            })
            .handler(|event: Event<String, i64>| async move {
                match event.value() % 2 {
                    0 => Err(HandlerError::new("even")),
                    _ => Ok(()),
                }
            });
        let app = start_agent(&app_id, Guarantee::AtLeastOnce, agent);
        let records: Vec<(String, i64)> = (0..6).map(|i| (format!("k{i}"), i)).collect();
        send_all(&input_topic, &records);
        let letters = wait_for("three dead letters", DEADLINE, || {
            let l = read_all(&faustus::dead_letter::topic(&app_id));
            (l.len() >= 3).then_some(l)
        });
        let carried: BTreeSet<(Vec<u8>, Vec<u8>)> = letters
            .iter()
            .map(|r| {
                (
                    r.key.clone().unwrap_or_default(),
                    r.value.clone().unwrap_or_default(),
                )
            })
            .collect();
        let expected: BTreeSet<(Vec<u8>, Vec<u8>)> = [0, 2, 4]
            .iter()
            .map(|i| (format!("\"k{i}\"").into_bytes(), i.to_string().into_bytes()))
            .collect();
        assert_eq!(carried, expected, "{ordering:?}: the key and value as read");
        app.shutdown().expect("a clean stop");
    }
}

#[test]
fn manual_acks_from_another_task_commit_and_unacked_events_hold_the_position() {
    let app_id = unique("agent-manual");
    let input = unique("in");
    create_topic(&input, 1);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let held: Arc<Mutex<Vec<faustus::agent::Acker>>> = Arc::default();
    let keep = Arc::clone(&held);
    let agent = Agent::new("manual", &input_topic)
        .concurrency(4)
        .ordering(Ordering::Unordered)
        .manual_ack()
        .handler(move |event: Event<String, i64>| {
            let keep = Arc::clone(&keep);
            async move {
                let acker = event.acker();
                if event.value() == 2 {
                    // Acked later, by the test.
                    keep.lock().unwrap().push(acker);
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        acker.ack();
                    });
                }
                Ok(())
            }
        });
    let app = start_agent(&app_id, Guarantee::AtLeastOnce, agent);
    send_all(
        &input_topic,
        &(0..6).map(|i| ("k".to_string(), i)).collect::<Vec<_>>(),
    );
    let group = format!("{app_id}-manual");
    // Offsets 0 and 1 are acked, 2 is not: the position stops at 2 while 3..6 are acked.
    let s = wait_for("acks above the unacked event", DEADLINE, || {
        let s = status(&app, "manual");
        let p = s.partitions.first()?;
        (p.committable == Some(2)
            && p.acked_ranges == vec![(3, 5)]
            && p.in_flight == 1
            && p.blocked_ms.is_some())
        .then_some(s)
    });
    assert_eq!(s.partitions[0].partition, 0);
    wait_for("position 2 committed", DEADLINE, || {
        (group_positions(&group, &input, 1)?.get(&0) == Some(&2)).then_some(())
    });
    let acker = held.lock().unwrap().pop().expect("the held acker");
    assert!(acker.ack(), "the first ack counts");
    assert!(!acker.ack(), "a second ack does not");
    wait_for("every position committed", DEADLINE, || {
        (group_positions(&group, &input, 1)?.get(&0) == Some(&6)).then_some(())
    });
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_full_partition_holds_its_records_pauses_at_its_read_ahead_and_loses_nothing() {
    let app_id = unique("agent-read-ahead");
    let input = unique("in");
    create_topic(&input, 1);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let held: Arc<Mutex<Vec<faustus::agent::Acker>>> = Arc::default();
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (keep, record, released) = (Arc::clone(&held), Arc::clone(&seen), Arc::clone(&release));
    // Each record counts 64 + 3 + 1..3 bytes: the read-ahead holds about ten of them.
    let agent = Agent::new("held", &input_topic)
        .concurrency(100)
        .ordering(Ordering::Unordered)
        .max_in_flight(10)
        .read_ahead_bytes(700)
        .manual_ack()
        .handler(move |event: Event<String, i64>| {
            let (keep, record) = (Arc::clone(&keep), Arc::clone(&record));
            let released = released.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                record.lock().unwrap().push(event.value());
                match released {
                    true => {
                        event.acker().ack();
                    }
                    false => keep.lock().unwrap().push(event.acker()),
                }
                Ok(())
            }
        });
    let app = start_agent(&app_id, Guarantee::AtLeastOnce, agent);
    send_all(
        &input_topic,
        &(0..300).map(|i| ("k".to_string(), i)).collect::<Vec<_>>(),
    );
    let s = wait_for("a full partition, paused", DEADLINE, || {
        let s = status(&app, "held");
        let p = s.partitions.first()?;
        (p.in_flight == 10 && p.buffered >= 5 && p.paused).then_some(s)
    });
    assert_eq!(
        seen.lock().unwrap().len(),
        10,
        "only max_in_flight events reach the code: {s:?}"
    );
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    for acker in held.lock().unwrap().drain(..) {
        assert!(acker.ack());
    }
    let group = format!("{app_id}-held");
    wait_for("every position committed", DEADLINE, || {
        (group_positions(&group, &input, 1)?.get(&0) == Some(&300)).then_some(())
    });
    let mut values = seen.lock().unwrap().clone();
    values.sort();
    assert_eq!(
        values,
        (0..300).collect::<Vec<_>>(),
        "every record handed over once, none lost across the pause"
    );
    let s = status(&app, "held");
    assert!(
        !s.partitions[0].paused && s.partitions[0].buffered == 0,
        "{s:?}"
    );
    app.shutdown().expect("a clean stop");
}

#[test]
fn the_actor_form_runs_one_task_per_assigned_partition() {
    let app_id = unique("agent-actor");
    let input = unique("in");
    create_topic(&input, 4);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let started: Arc<Mutex<Vec<i32>>> = Arc::default();
    let events: Arc<Mutex<BTreeMap<i32, Vec<i64>>>> = Arc::default();
    let (s, e) = (Arc::clone(&started), Arc::clone(&events));
    let agent = Agent::new("actors", &input_topic).actor(move |mut stream| {
        let (s, e) = (Arc::clone(&s), Arc::clone(&e));
        async move {
            s.lock().unwrap().push(stream.partition());
            while let Some(event) = stream.next().await {
                let partition = event.origin().partition;
                assert_eq!(partition, stream.partition());
                e.lock()
                    .unwrap()
                    .entry(partition)
                    .or_default()
                    .push(event.value());
            }
            Ok(())
        }
    });
    let app = start_agent(&app_id, Guarantee::AtLeastOnce, agent);
    let records: Vec<(String, i64)> = (0..100).map(|i| (format!("k{i}"), i)).collect();
    send_all(&input_topic, &records);
    wait_for("every event seen", DEADLINE, || {
        let n: usize = events.lock().unwrap().values().map(Vec::len).sum();
        (n == 100).then_some(())
    });
    let mut tasks = started.lock().unwrap().clone();
    tasks.sort();
    assert_eq!(tasks, vec![0, 1, 2, 3], "one task per partition");
    for values in events.lock().unwrap().values() {
        assert!(values.windows(2).all(|w| w[0] < w[1]), "offset order");
    }
    let s = status(&app, "actors");
    let partitions: Vec<i32> = s.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(partitions, vec![0, 1, 2, 3]);
    app.shutdown().expect("a clean stop");
}

#[test]
fn handlers_read_the_dataflows_tables() {
    let app_id = unique("agent-tables");
    let (rates, input, output) = (unique("rates"), unique("in"), unique("out"));
    create_topic(&rates, 2);
    create_topic(&input, 2);
    let rates_topic = Topic::<String, i64>::new(rates.clone());
    let input_topic = Topic::<String, i64>::new(input.clone());
    let output_topic = Topic::<String, i64>::new(output.clone()).partitions(2);
    send_all(
        &rates_topic,
        &[("EUR".into(), 100), ("USD".into(), 92), ("GBP".into(), 117)],
    );
    let out = output_topic.clone();
    let agent = Agent::new("convert", &input_topic)
        .concurrency(4)
        .sends_to(&output_topic)
        .handler(move |event: Event<String, i64>| {
            let out = out.clone();
            async move {
                // Until the table is restored and has the rate, the attempt fails and retries.
                let rates = event.table::<String, i64>("rates")?;
                let Some(rate) = rates.get(&event.key()).await? else {
                    event.send(&out, event.key(), -1)?;
                    return Ok(());
                };
                event.send(&out, event.key(), event.value() * rate)?;
                Ok(())
            }
        });
    let rates_in = rates_topic.clone();
    let app = App::new(&app_id)
        .brokers(brokers())
        .http(None)
        .commit_interval(Duration::from_millis(100))
        .agent(agent)
        .start(move |df| {
            df.table(&rates_in, "rates").public();
        })
        .expect("the app starts");
    app.wait_ready(DEADLINE).expect("ready");
    // The rates are in the table before the orders are sent.
    let table = app.table::<String, i64>("rates").expect("the table");
    wait_for("the rates", DEADLINE, || {
        (table.get(&"GBP".to_string()) == Ok(Some(117))).then_some(())
    });
    send_all(
        &input_topic,
        &[("EUR".into(), 3), ("GBP".into(), 2), ("JPY".into(), 5)],
    );
    let written = wait_for("three conversions", DEADLINE, || {
        let w = read_pairs(&output);
        (w.len() >= 3).then_some(w)
    });
    let written: BTreeSet<(String, i64)> = written.into_iter().collect();
    let expected: BTreeSet<(String, i64)> =
        [("EUR".into(), 300), ("GBP".into(), 234), ("JPY".into(), -1)].into();
    assert_eq!(written, expected);
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_failure_under_the_stop_policy_stops_the_application_with_the_error() {
    let app_id = unique("agent-stop");
    let input = unique("in");
    create_topic(&input, 1);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let agent = Agent::new("strict", &input_topic)
        .on_failure(faustus::agent::OnFailure::Stop)
        .retry(Retry {
            retries: 1,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        })
        .handler(|event: Event<String, i64>| async move {
            match event.value() {
                2 => Err(HandlerError::new("two is not allowed")),
                _ => Ok(()),
            }
        });
    let app = start_agent(&app_id, Guarantee::AtLeastOnce, agent);
    send_all(
        &input_topic,
        &(0..5).map(|i| ("k".to_string(), i)).collect::<Vec<_>>(),
    );
    wait_for("the application stopped", DEADLINE, || {
        app.is_finished().then_some(())
    });
    let error = app.join().expect_err("the agent's failure").to_string();
    assert!(
        error.contains("agent `strict` failed") && error.contains("two is not allowed"),
        "{error}"
    );
    // The position is not committed past the failed event.
    let group = format!("{app_id}-strict");
    let positions = group_positions(&group, &input, 1).expect("the group's positions");
    assert!(positions.get(&0).is_none_or(|p| *p <= 2), "{positions:?}");
}

/// Starts an agents-only process of application `app_id` (no dataflow): several of them share
/// the agent's partitions through its consumer group.
fn start_agents_only<K: Data + Send, V: Data + Send>(
    app_id: &str,
    agent: Agent<K, V>,
) -> faustus::Running {
    App::new(app_id)
        .brokers(brokers())
        .http(None)
        .guarantee(Guarantee::AtLeastOnce)
        .commit_interval(Duration::from_millis(100))
        .agent(agent)
        .start_agents()
        .expect("the agents start")
}

/// `(key, value)` records of one partition: values `partition * 1000 + i` for `i` in `range`.
fn partition_records(partition: i32, range: std::ops::Range<i64>) -> Vec<KeyValue> {
    range
        .map(|i| {
            (
                Some(serde_json::to_vec("k").unwrap()),
                Some(serde_json::to_vec(&(i64::from(partition) * 1000 + i)).unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_paused_partition_that_is_revoked_and_assigned_again_is_read_again() {
    let app_id = unique("agent-pause-revoke");
    let input = unique("in");
    create_topic(&input, 2);
    let input_topic = Topic::<String, i64>::new(input.clone());
    let group = format!("{app_id}-held");
    for partition in 0..2 {
        produce_to(
            &input,
            Some(partition),
            &partition_records(partition, 0..300),
        );
    }

    // Process A holds every event it gets (manual acks, not given), so both its partitions fill
    // their read-ahead and pause.
    let held: Arc<Mutex<Vec<faustus::agent::Acker>>> = Arc::default();
    let seen: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (keep, record, released) = (Arc::clone(&held), Arc::clone(&seen), Arc::clone(&release));
    let a = start_agents_only(
        &app_id,
        Agent::new("held", &input_topic)
            .concurrency(100)
            .ordering(Ordering::Unordered)
            .max_in_flight(10)
            .read_ahead_bytes(700)
            .drain_timeout(Duration::from_secs(1))
            .manual_ack()
            .handler(move |event: Event<String, i64>| {
                let (keep, record) = (Arc::clone(&keep), Arc::clone(&record));
                let released = released.load(std::sync::atomic::Ordering::SeqCst);
                async move {
                    record.lock().unwrap().insert(event.value());
                    match released {
                        true => {
                            event.acker().ack();
                        }
                        false => keep.lock().unwrap().push(event.acker()),
                    }
                    Ok(())
                }
            }),
    );
    wait_for("both of A's partitions paused", DEADLINE, || {
        let s = status(&a, "held");
        (s.partitions.len() == 2 && s.partitions.iter().all(|p| p.paused)).then_some(())
    });

    // Process B joins the group: one of A's paused partitions moves to B, which handles it all.
    let b_seen: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let b_record = Arc::clone(&b_seen);
    let b = start_agents_only(
        &app_id,
        Agent::new("held", &input_topic).handler(move |event: Event<String, i64>| {
            b_record.lock().unwrap().insert(event.value());
            async { Ok(()) }
        }),
    );
    let moved = wait_for("one partition moved from A to B", DEADLINE, || {
        let (sa, sb) = (status(&a, "held"), status(&b, "held"));
        (sa.partitions.len() == 1 && sb.partitions.len() == 1).then(|| sb.partitions[0].partition)
    });
    wait_for("B to commit all of its partition", DEADLINE, || {
        (group_positions(&group, &input, 2)?.get(&moved) == Some(&300)).then_some(())
    });

    // B leaves: the partition A had paused comes back to A, which must read it again.
    b.shutdown().expect("B stops cleanly");
    wait_for("A to have both partitions again", DEADLINE, || {
        (status(&a, "held").partitions.len() == 2).then_some(())
    });
    for partition in 0..2 {
        produce_to(
            &input,
            Some(partition),
            &partition_records(partition, 300..350),
        );
    }
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    for acker in held.lock().unwrap().drain(..) {
        // Acks of the events A gave up with the revoked partition are refused.
        acker.ack();
    }
    wait_for("both partitions committed to their end", DEADLINE, || {
        let positions = group_positions(&group, &input, 2)?;
        (positions.get(&0) == Some(&350) && positions.get(&1) == Some(&350)).then_some(())
    });
    let mut all = seen.lock().unwrap().clone();
    all.extend(b_seen.lock().unwrap().iter());
    let expected: BTreeSet<i64> = (0..2)
        .flat_map(|p| (0..350).map(move |i| p * 1000 + i))
        .collect();
    assert_eq!(all, expected, "every record handled at least once");
    let kept: BTreeSet<i64> = (300..350).map(|i| i64::from(moved) * 1000 + i).collect();
    assert!(
        kept.is_subset(&seen.lock().unwrap()),
        "A handled the records written to the partition it got back"
    );
    let s = status(&a, "held");
    assert!(s.partitions.iter().all(|p| !p.paused), "{s:?}");
    a.shutdown().expect("A stops cleanly");
}

#[test]
fn an_aborted_transaction_hands_its_events_over_again_and_each_output_is_written_once() {
    let app_id = unique("agent-abort");
    let (input, output) = (unique("in"), unique("out"));
    create_topic(&input, 2);
    let (input_topic, output_topic) = (
        Topic::<String, i64>::new(input.clone()),
        Topic::<String, i64>::new(output.clone()).partitions(2),
    );
    let out = output_topic.clone();
    // Every second transaction is aborted, as a rebalance that moved the group's generation on
    // would abort it: its records vanish, and its events must be handled again.
    let agent = Agent::new("relay", &input_topic)
        .concurrency(8)
        .ordering(Ordering::Unordered)
        .sends_to(&output_topic)
        .fault_abort_every(2)
        .handler(move |event: Event<String, i64>| {
            let out = out.clone();
            async move {
                let pause = (event.value() * 7919) % 23;
                tokio::time::sleep(Duration::from_millis(pause as u64)).await;
                event.send(&out, event.key(), event.value())?;
                Ok(())
            }
        });
    let app = start_agent(&app_id, Guarantee::ExactlyOnce, agent);
    let records: Vec<(String, i64)> = (0..400).map(|i| (format!("k{}", i % 37), i)).collect();
    send_all(&input_topic, &records);
    let input_ends = record_ends(&input);
    let group = format!("{app_id}-relay");
    wait_for("every position committed", DEADLINE, || {
        (group_positions(&group, &input, 2)? == input_ends).then_some(())
    });
    let mut written: Vec<i64> = read_pairs(&output).into_iter().map(|(_, v)| v).collect();
    written.sort();
    assert_eq!(
        written,
        (0..400).collect::<Vec<_>>(),
        "each event's record committed once"
    );
    let s = status(&app, "relay");
    assert!(
        s.handled > 400,
        "the aborted transactions' events were handled again: {s:?}"
    );
    app.shutdown().expect("a clean stop");
}
