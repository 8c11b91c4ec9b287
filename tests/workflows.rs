//! Workflows on the real broker: request/reply, chains and chords in one process (the kill -9
//! tests with several processes are in `tests/workflows_chaos.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use faustus::agent::{Agent, Event, HandlerError, Retry};
use faustus::prelude::*;
use faustus::workflow::{AskError, Chain, Chord, ChordOutcome, ChordResult, JsonValue, Workflows};
use faustus::Guarantee;

const DEADLINE: Duration = Duration::from_secs(90);

/// Few, fast retries: a failing member ends in the dead letters quickly.
fn quick_retry() -> Retry {
    Retry {
        retries: 1,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    }
}

/// An agent that answers each request with `answer(value)`; a value `answer` refuses fails.
fn answering(
    name: &str,
    topic: &Topic<String, i64>,
    answer: fn(i64) -> Result<serde_json::Value, String>,
) -> Agent<String, i64> {
    Agent::new(name, topic)
        .concurrency(8)
        .retry(quick_retry())
        .handler(move |event: Event<String, i64>| async move {
            let value = answer(event.value()).map_err(HandlerError::new)?;
            event.reply(&value)?;
            Ok(())
        })
}

/// Starts an app of `agents` (its chord coordinator included) under `guarantee`, serving HTTP
/// on a free port.
fn start(app_id: &str, guarantee: Guarantee, agents: Vec<Agent<String, i64>>) -> faustus::Running {
    let mut app = App::new(app_id)
        .brokers(brokers())
        .http(Some(([127, 0, 0, 1], 0).into()))
        .guarantee(guarantee)
        .commit_interval(Duration::from_millis(100))
        .chords();
    for agent in agents {
        app = app.agent(agent);
    }
    app.start(|_df| {}).expect("the app starts")
}

/// Every committed chord result of `topic`, by chord id, each with how many times it came.
fn chord_results(topic: &str) -> BTreeMap<String, (usize, ChordResult)> {
    let mut results: BTreeMap<String, (usize, ChordResult)> = BTreeMap::new();
    for record in read_all(topic) {
        let result: ChordResult =
            serde_json::from_slice(record.value.as_deref().expect("a value")).expect("a result");
        let entry = results
            .entry(result.chord.clone())
            .or_insert((0, result.clone()));
        entry.0 += 1;
    }
    results
}

#[test]
fn ask_gets_the_reply_a_failure_or_a_timeout() {
    let app_id = unique("wf-ask");
    let squares = Topic::<String, i64>::new(unique("wf-squares")).partitions(3);
    let picky = Topic::<String, i64>::new(unique("wf-picky")).partitions(1);
    let nobody = Topic::<String, i64>::new(unique("wf-nobody")).partitions(1);
    create_topic(nobody.name(), 1);
    let app = start(
        &app_id,
        Guarantee::ExactlyOnce,
        vec![
            answering("square", &squares, |v| Ok((v * v).into())),
            answering("picky", &picky, |v| match v % 2 {
                0 => Ok(v.into()),
                _ => Err(format!("{v} is odd")),
            }),
        ],
    );
    let workflows = app.workflows().expect("workflows");
    let rt = runtime();
    rt.block_on(async {
        let seven = "seven".to_string();
        let n: i64 = workflows
            .ask(&squares, &seven, &7, DEADLINE)
            .await
            .expect("a reply");
        assert_eq!(n, 49);

        // Scatter/gather: the replies come back in the order of the requests.
        let requests = (0..40).map(|i| (format!("k{i}"), i));
        let replies: Vec<Result<i64, AskError>> =
            workflows.ask_all(&squares, requests, DEADLINE).await;
        let replies: Vec<i64> = replies.into_iter().map(|r| r.expect("a reply")).collect();
        assert_eq!(replies, (0..40).map(|i| i * i).collect::<Vec<_>>());

        // A request whose handler fails after its retries gets the error, not a timeout.
        let started = Instant::now();
        let failed = workflows
            .ask::<_, _, i64>(&picky, &"p".to_string(), &3, DEADLINE)
            .await
            .expect_err("a failure");
        assert!(
            matches!(&failed, AskError::Failed(e) if e.contains("3 is odd")),
            "{failed}"
        );
        assert!(started.elapsed() < DEADLINE / 2);

        // Nobody reads `nobody`: the timeout ends the wait.
        let started = Instant::now();
        let timeout = Duration::from_secs(2);
        let lost = workflows
            .ask::<_, _, i64>(&nobody, &"x".to_string(), &1, timeout)
            .await
            .expect_err("no reply");
        assert!(matches!(lost, AskError::Timeout { .. }), "{lost}");
        assert!(started.elapsed() >= timeout);
        assert!(started.elapsed() < timeout + Duration::from_secs(10));
    });
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_request_that_does_not_decode_gets_its_decode_error_and_is_dead_lettered() {
    let app_id = unique("wf-undecodable");
    let squares = Topic::<String, i64>::new(unique("wf-undecodable-squares")).partitions(2);
    let app = start(
        &app_id,
        Guarantee::ExactlyOnce,
        vec![answering("square", &squares, |v| Ok((v * v).into()))],
    );
    let workflows = app.workflows().expect("workflows");
    // The same topic seen with text values: its agent cannot decode "eleven" as an i64.
    let as_text = Topic::<String, String>::new(squares.name().to_string());
    runtime().block_on(async {
        // A hang would end in `Timeout` after the deadline; the decode error comes instead.
        let failed = workflows
            .ask::<_, _, i64>(&as_text, &"k".to_string(), &"eleven".to_string(), DEADLINE)
            .await
            .expect_err("a decode error");
        assert!(
            matches!(&failed, AskError::Failed(e) if e.contains("does not decode")),
            "{failed}"
        );
        // The agent goes on answering requests that decode.
        let n: i64 = workflows
            .ask(&squares, &"k".to_string(), &11, DEADLINE)
            .await
            .expect("a reply");
        assert_eq!(n, 121);
    });
    // The request itself is in the dead letters.
    let dead_letters = faustus::dead_letter::topic(&app_id);
    let letter = wait_for("the dead letter", DEADLINE, || {
        read_all(&dead_letters)
            .into_iter()
            .find(|r| r.value.as_deref() == Some(&b"\"eleven\""[..]))
    });
    assert!(
        letter.headers.contains_key(faustus::dead_letter::REASON),
        "{:?}",
        letter.headers
    );
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_chain_passes_each_reply_on_and_its_last_reply_comes_back() {
    let app_id = unique("wf-chain");
    let add = Topic::<String, i64>::new(unique("wf-add")).partitions(2);
    let double = Topic::<String, i64>::new(unique("wf-double")).partitions(2);
    let show = Topic::<String, i64>::new(unique("wf-show")).partitions(2);
    let app = start(
        &app_id,
        Guarantee::ExactlyOnce,
        vec![
            answering("add", &add, |v| Ok((v + 1).into())),
            answering("double", &double, |v| Ok((v * 2).into())),
            answering("show", &show, |v| Ok(format!("={v}").into())),
        ],
    );
    let workflows = app.workflows().expect("workflows");
    let rt = runtime();
    rt.block_on(async {
        let chain = Chain::new(&add, &"k".to_string(), &20)
            .expect("a chain")
            .then(&double)
            .then(&show);
        assert_eq!(chain.steps().len(), 3);
        let shown: String = workflows
            .ask_chain(&chain, DEADLINE)
            .await
            .expect("a reply");
        assert_eq!(shown, "=42");
    });
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_chord_calls_back_once_with_every_result_and_fails_on_a_failed_member_or_its_deadline() {
    let app_id = unique("wf-chord");
    let work = Topic::<String, i64>::new(unique("wf-work")).partitions(3);
    let lost = Topic::<String, i64>::new(unique("wf-lost")).partitions(1);
    create_topic(lost.name(), 1);
    let done = Topic::<String, ChordResult>::new(unique("wf-done"));
    let failed = Topic::<String, ChordResult>::new(unique("wf-failed"));
    create_topic(done.name(), 2);
    create_topic(failed.name(), 2);
    let app = start(
        &app_id,
        Guarantee::ExactlyOnce,
        vec![answering("work", &work, |v| match v {
            13 => Err("13 is unlucky".into()),
            v => Ok((v * 10).into()),
        })],
    );
    let workflows: Workflows = app.workflows().expect("workflows");
    let members = |chord: Chord, values: std::ops::Range<i64>| {
        values.fold(chord, |c, v| {
            c.member(&work, &format!("m{v}"), &v).expect("a member")
        })
    };
    let good = members(Chord::new("good"), 100..150)
        .callback(&done)
        .error_callback(&failed);
    let unlucky = members(Chord::new("unlucky"), 10..16)
        .callback(&done)
        .error_callback(&failed);
    let late = members(Chord::new("late"), 0..3)
        .member(&lost, &"gone".to_string(), &1)
        .expect("a member")
        .deadline(Duration::from_secs(12))
        .callback(&done)
        .error_callback(&failed);
    let rt = runtime();
    rt.block_on(async {
        for chord in [&good, &unlucky, &late] {
            workflows.start_chord(chord).await.expect("started");
        }
    });
    // Until its deadline, the chord missing a member is in progress, on `/api/workflows/`.
    let base = format!("http://{}", app.http_addr().expect("an HTTP address"));
    wait_for(
        "the late chord in progress on /api/workflows/",
        DEADLINE,
        || {
            let (status, body) = http_get(&format!("{base}/api/workflows/"));
            assert_eq!(status, 200, "{body}");
            let process = &body["processes"][0];
            assert_eq!(process["coordinator"], true, "{body}");
            let chords = process["chords"].as_array()?;
            chords
                .iter()
                .find(|c| c["chord"] == "late" && c["done"] == 3)
                .map(|c| {
                    assert_eq!(c["size"], 4, "{c}");
                    assert_eq!(c["failed"], 0, "{c}");
                    assert!(c["deadline"].as_i64().is_some(), "{c}");
                })
        },
    );
    let page = reqwest::blocking::Client::new()
        .get(format!("{base}/api/workflows/"))
        .header("accept", "text/html")
        .send()
        .and_then(|r| r.text())
        .expect("the workflows page");
    assert!(
        page.contains(r#"<td class="chord">late</td>"#)
            && page.contains(r#"<td class="done">3</td>"#),
        "{page}"
    );
    let outcome = wait_for("the three chords' results", DEADLINE, || {
        let done = chord_results(done.name());
        let failed = chord_results(failed.name());
        (done.len() + failed.len() >= 3).then_some((done, failed))
    });
    // Nothing more comes (a second callback would be a duplicate).
    std::thread::sleep(Duration::from_secs(3));
    let (done_now, failed_now) = (chord_results(done.name()), chord_results(failed.name()));
    assert_eq!((&done_now, &failed_now), (&outcome.0, &outcome.1));

    let (count, result) = &done_now["good"];
    assert_eq!(*count, 1);
    assert_eq!(result.outcome, ChordOutcome::Done);
    let expected: Vec<Option<JsonValue>> = (100..150).map(|v| Some((v * 10).into())).collect();
    assert_eq!(result.results, expected);

    let (count, result) = &failed_now["unlucky"];
    assert_eq!(*count, 1);
    assert_eq!(result.outcome, ChordOutcome::Failed);
    assert_eq!(result.failed.len(), 1);
    assert_eq!(result.failed[0].member, 3);
    assert!(
        result.failed[0].error.contains("13 is unlucky"),
        "{:?}",
        result.failed
    );

    let (count, result) = &failed_now["late"];
    assert_eq!(*count, 1);
    assert_eq!(result.missing, vec![3]);
    assert_eq!(
        result.results[..3],
        [Some(0.into()), Some(10.into()), Some(20.into())]
    );
    assert!(!done_now.contains_key("unlucky") && !done_now.contains_key("late"));
    app.shutdown().expect("a clean stop");
}

#[test]
fn an_ended_chord_is_forgotten_and_its_records_tombstoned_after_the_retention() {
    let app_id = unique("wf-retention");
    let work = Topic::<String, i64>::new(unique("wf-retention-work")).partitions(1);
    let lost = Topic::<String, i64>::new(unique("wf-retention-lost")).partitions(1);
    create_topic(lost.name(), 1);
    let done = Topic::<String, ChordResult>::new(unique("wf-retention-done"));
    create_topic(done.name(), 1);
    // One partition of `<app>-chords`: the second chord's ticks pass the first one's retention.
    let app = App::new(&app_id)
        .brokers(brokers())
        .http(Some(([127, 0, 0, 1], 0).into()))
        .guarantee(Guarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(100))
        .partitions(1)
        .chords()
        .chord_retention(Duration::from_secs(1))
        .agent(answering("work", &work, |v| Ok(v.into())))
        .start(|_df| {})
        .expect("the app starts");
    let workflows = app.workflows().expect("workflows");
    let first = (0..3)
        .fold(Chord::new("first"), |c, v| {
            c.member(&work, &format!("m{v}"), &v).expect("a member")
        })
        .callback(&done);
    // A chord that waits for its deadline: the coordinator ticks meanwhile.
    let waiting = Chord::new("waiting")
        .member(&lost, &"gone".to_string(), &1)
        .expect("a member")
        .deadline(Duration::from_secs(3600))
        .callback(&done);
    let rt = runtime();
    rt.block_on(workflows.start_chord(&first)).expect("started");
    wait_for("the first chord's result", DEADLINE, || {
        chord_results(done.name()).remove("first")
    });
    rt.block_on(workflows.start_chord(&waiting))
        .expect("started");
    let chords = faustus::workflow::chords_topic(&app_id);
    let key = |r: &Record| serde_json::from_slice::<String>(r.key.as_deref()?).ok();
    let tombstones = wait_for("the first chord's tombstones", DEADLINE, || {
        let records = read_all(&chords);
        let tombstones: Vec<(i64, String)> = records
            .iter()
            .filter(|r| r.value.is_none())
            .filter_map(|r| Some((r.offset, key(r)?)))
            .collect();
        (tombstones.len() >= 5).then_some(tombstones)
    });
    let keys: Vec<&str> = tombstones.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "first/open",
            "first/closed",
            "first/0",
            "first/1",
            "first/2"
        ]
    );
    // The coordinator reads its own tombstones back and skips them: none is a dead letter.
    let last = tombstones.iter().map(|(o, _)| *o).max().unwrap_or_default();
    wait_for("the coordinator past the tombstones", DEADLINE, || {
        let positions = group_positions(&format!("{app_id}-chords"), &chords, 1)?;
        (positions.get(&0).copied()? > last).then_some(())
    });
    let base = format!("http://{}", app.http_addr().expect("an HTTP address"));
    let (status, agents) = http_get(&format!("{base}/api/agents/"));
    assert_eq!(status, 200, "{agents}");
    let coordinator = agents["processes"][0]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["settings"]["name"] == "chords")
        .unwrap_or_else(|| panic!("the coordinator: {agents}"));
    assert_eq!(coordinator["dead_lettered"], 0, "{coordinator}");
    // The waiting chord is still in progress, and the first chord called back once.
    let (_, body) = http_get(&format!("{base}/api/workflows/"));
    let in_progress: Vec<&str> = body["processes"][0]["chords"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["chord"].as_str())
        .collect();
    assert_eq!(in_progress, ["waiting"], "{body}");
    assert_eq!(chord_results(done.name())["first"].0, 1);
    app.shutdown().expect("a clean stop");
}

#[test]
fn an_agent_starts_a_chord_in_its_event_transaction() {
    let app_id = unique("wf-kickoff");
    let kickoff = Topic::<String, i64>::new(unique("wf-kickoff-in")).partitions(1);
    let work = Topic::<String, i64>::new(unique("wf-kickoff-work")).partitions(2);
    let results = Topic::<String, ChordResult>::new(unique("wf-kickoff-results"));
    create_topic(kickoff.name(), 1);
    create_topic(results.name(), 1);
    // Each event `(id, n)` starts chord `id` of members `1..=n`.
    let (work2, results2) = (work.clone(), results.clone());
    let starter = Agent::new("kickoff", &kickoff).handler(move |event: Event<String, i64>| {
        let (work, results) = (work2.clone(), results2.clone());
        async move {
            let chord = (1..=event.value())
                .try_fold(Chord::new(event.key()), |c, v| {
                    c.member(&work, &format!("m{v}"), &v)
                })?
                .callback(&results);
            event
                .start_chord(&chord)
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?;
            Ok(())
        }
    });
    let app = start(
        &app_id,
        Guarantee::ExactlyOnce,
        vec![answering("work", &work, |v| Ok((v * 10).into())), starter],
    );
    produce(
        kickoff.name(),
        &[(Some(b"\"batch\"".to_vec()), Some(b"3".to_vec()))],
    );
    let result = wait_for("the chord's result", DEADLINE, || {
        chord_results(results.name()).remove("batch")
    });
    assert_eq!(result.0, 1);
    assert_eq!(result.1.outcome, ChordOutcome::Done);
    assert_eq!(
        result.1.results,
        vec![Some(10.into()), Some(20.into()), Some(30.into())]
    );
    app.shutdown().expect("a clean stop");
}

#[test]
fn a_chord_callback_starts_a_chain_in_its_transaction() {
    let app_id = unique("wf-nest");
    let work = Topic::<String, i64>::new(unique("wf-nest-work")).partitions(2);
    let results = Topic::<String, ChordResult>::new(unique("wf-nest-results")).partitions(1);
    let add = Topic::<String, i64>::new(unique("wf-nest-add")).partitions(2);
    let last = Topic::<String, i64>::new(unique("wf-nest-last")).partitions(2);
    let output = Topic::<String, i64>::new(unique("wf-nest-output")).partitions(1);
    create_topic(output.name(), 1);
    // The callback sums the members' results and starts a chain with the sum: add one, then
    // write ten times that to `output`.
    let (add2, last2) = (add.clone(), last.clone());
    let callback =
        Agent::new("total", &results).handler(move |event: Event<String, ChordResult>| {
            let (add, last) = (add2.clone(), last2.clone());
            async move {
                let sum: i64 = event
                    .value()
                    .results
                    .iter()
                    .flatten()
                    .map(|v| v.decode::<i64>().expect("a number"))
                    .sum();
                let chain = Chain::new(&add, &event.key(), &sum)?.then(&last);
                event.start_chain(&chain);
                Ok(())
            }
        });
    let out = output.clone();
    let write =
        Agent::new("write", &last)
            .sends_to(&output)
            .handler(move |event: Event<String, i64>| {
                let out = out.clone();
                async move {
                    event.send(&out, event.key(), event.value() * 10)?;
                    Ok(())
                }
            });
    let app = App::new(&app_id)
        .brokers(brokers())
        .http(None)
        .guarantee(Guarantee::ExactlyOnce)
        .commit_interval(Duration::from_millis(100))
        .chords()
        .agent(answering("work", &work, |v| Ok((v * 10).into())))
        .agent(answering("add", &add, |v| Ok((v + 1).into())))
        .agent(callback)
        .agent(write)
        .start(|_df| {})
        .expect("the app starts");
    let chord = (1..=4)
        .fold(Chord::new("nested"), |c, v| {
            c.member(&work, &format!("m{v}"), &v).expect("a member")
        })
        .callback(&results);
    runtime()
        .block_on(app.workflows().expect("workflows").start_chord(&chord))
        .expect("started");
    // (10 + 20 + 30 + 40) + 1, times ten.
    let written = wait_for("the chain's output", DEADLINE, || {
        let records = read_all(output.name());
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(written.len(), 1);
    let value: i64 = serde_json::from_slice(written[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(value, 1010);
    app.shutdown().expect("a clean stop");
}
