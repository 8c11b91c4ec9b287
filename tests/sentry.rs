//! Error reporting to Sentry (the `sentry` feature) on the real broker: a local HTTP server plays
//! the Sentry host of the DSN, and the test reads the envelopes the application sends it. A
//! panic in a dataflow's function (which the engine catches: the record becomes a dead letter)
//! and one in an agent's handler (retried, then dead-lettered) each arrive as an event with the
//! panic's message, while the application goes on.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::Uri;
use common::*;
use faustus::agent::{Agent, Event, Retry};
use faustus::prelude::*;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(120);

/// Held by each test that reports: an application reports through the process's Sentry client,
/// so two at once would send each other's events.
static REPORTING: Mutex<()> = Mutex::new(());

/// Takes [`REPORTING`] (a test that failed holding it leaves it usable).
fn reporting_alone() -> std::sync::MutexGuard<'static, ()> {
    REPORTING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Sentry project id in the test's DSN.
const PROJECT: &str = "42";

/// What the local Sentry host received: each request's path and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A local stand-in for the Sentry host of a DSN, serving while it lives; it holds
/// [`REPORTING`].
struct Host {
    /// The DSN that points at it.
    dsn: String,
    received: Received,
    _runtime: tokio::runtime::Runtime,
    _alone: std::sync::MutexGuard<'static, ()>,
}

/// Serves the Sentry host on a free loopback port: every request is kept and answered 200.
fn sentry_host() -> Host {
    let alone = reporting_alone();
    let runtime = runtime();
    let received = Received::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a free port");
    let port = listener.local_addr().unwrap().port();
    let kept = Arc::clone(&received);
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let kept = Arc::clone(&kept);
        async move {
            kept.lock()
                .unwrap()
                .push((uri.path().to_string(), body.to_vec()));
            "{}"
        }
    });
    runtime.spawn(async move { axum::serve(listener, app).await });
    Host {
        dsn: format!("http://public-key@127.0.0.1:{port}/{PROJECT}"),
        received,
        _runtime: runtime,
        _alone: alone,
    }
}

/// One item of an envelope: its header and its payload, as JSON.
#[derive(Debug)]
struct Item {
    header: Value,
    payload: Value,
}

/// Parses a Sentry envelope: a header line, then items, each a header line and a payload of
/// the header's `length` bytes (or up to the end of the line without one).
fn parse_envelope(body: &[u8]) -> (Value, Vec<Item>) {
    let line = |rest: &[u8]| -> (Vec<u8>, usize) {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        (rest[..end].to_vec(), (end + 1).min(rest.len()))
    };
    let (head, mut at) = line(body);
    let header: Value = serde_json::from_slice(&head).expect("the envelope header is JSON");
    let mut items = Vec::new();
    while at < body.len() {
        let (item_head, used) = line(&body[at..]);
        at += used;
        if item_head.is_empty() {
            continue;
        }
        let item_header: Value =
            serde_json::from_slice(&item_head).expect("an item header is JSON");
        let payload = match item_header["length"].as_u64() {
            Some(length) => {
                let end = at + length as usize;
                let payload = body[at..end].to_vec();
                at = end;
                if body.get(at) == Some(&b'\n') {
                    at += 1;
                }
                payload
            }
            None => {
                let (payload, used) = line(&body[at..]);
                at += used;
                payload
            }
        };
        items.push(Item {
            header: item_header,
            payload: serde_json::from_slice(&payload).expect("an event payload is JSON"),
        });
    }
    (header, items)
}

/// The events received so far whose exception's value contains `text`, checking that each
/// request went to the project's envelope endpoint.
fn events_with(received: &Received, text: &str) -> Vec<Value> {
    let received = received.lock().unwrap().clone();
    let mut events = Vec::new();
    for (path, body) in received {
        assert_eq!(
            path,
            format!("/api/{PROJECT}/envelope/"),
            "an envelope request"
        );
        let (header, items) = parse_envelope(&body);
        for item in items {
            if item.header["type"] != "event" {
                continue;
            }
            // The same UUID, written with hyphens in one place and without in the other.
            let id = |v: &Value| v.as_str().unwrap_or_default().replace('-', "");
            assert_eq!(
                id(&header["event_id"]),
                id(&item.payload["event_id"]),
                "the envelope header names its event"
            );
            let exception = &item.payload["exception"]["values"][0];
            if exception["value"]
                .as_str()
                .is_some_and(|v| v.contains(text))
            {
                events.push(item.payload);
            }
        }
    }
    events
}

/// Stops `running` cleanly (which sends every event still queued), then counts the events
/// received whose exception's value contains `text`.
fn events_after_stop(running: faustus::Running, received: &Received, text: &str) -> usize {
    running.stop();
    running.join().expect("a clean stop");
    events_with(received, text).len()
}

/// Checks the event of a panic the application survived: a handled `panic` exception of level
/// `error`, tagged with the application's id, with the stack where it was raised.
fn assert_handled_panic(event: &Value, app_id: &str) {
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], "panic", "{event:#}");
    assert_eq!(exception["mechanism"]["type"], "panic", "{event:#}");
    assert_eq!(exception["mechanism"]["handled"], true, "{event:#}");
    // `error` is the protocol's default level, which the SDK leaves out.
    assert_eq!(
        event["level"].as_str().unwrap_or("error"),
        "error",
        "{event:#}"
    );
    assert_eq!(event["tags"]["app_id"], app_id, "{event:#}");
    assert!(
        exception["value"]
            .as_str()
            .is_some_and(|v| v.contains("tests/sentry.rs:")),
        "the message says where the panic was raised: {event:#}"
    );
    assert!(
        exception["stacktrace"]["frames"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "the event has the panic's stack: {event:#}"
    );
}

#[test]
fn a_panic_in_a_dataflow_function_is_reported_to_sentry_and_dead_lettered() {
    let host = sentry_host();
    let received = &host.received;
    let app_id = unique("sentry-map");
    let (input, output) = (unique("sentry-in"), unique("sentry-out"));
    create_topic(&input, 1);
    let records: Vec<(String, i64)> = [("a", 1), ("b", 2), ("a", 13), ("b", 4)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    produce(&input, &amount_records(&records));

    let (input_topic, output_topic) = (
        Topic::<String, i64>::new(input.clone()).key_codec(Str),
        Topic::<String, i64>::new(output.clone()).key_codec(Str),
    );
    let running = App::new(app_id.clone())
        .brokers(brokers())
        .workers(2)
        .partitions(2)
        .http(None)
        .sentry_dsn(host.dsn.clone())
        .start(move |df| {
            df.stream(&input_topic)
                .map(|account, amount| {
                    assert!(amount != 13, "unlucky amount {amount} for {account}");
                    (account, amount)
                })
                .sum("totals")
                .to_topic(&output_topic);
        })
        .expect("the app starts");

    let events = wait_for("Sentry to receive the panic's event", DEADLINE, || {
        let events = events_with(received, "unlucky amount 13 for a");
        (!events.is_empty()).then_some(events)
    });
    assert_handled_panic(&events[0], &app_id);

    let dead_letters = format!("{app_id}-__errors");
    let letters = wait_for("the dead letter", DEADLINE, || {
        let letters = read_all(&dead_letters);
        (!letters.is_empty()).then_some(letters)
    });
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    assert_eq!(letters[0].headers["faustus.error.kind"], "panic");
    assert_eq!(letters[0].headers["faustus.error.offset"], "2");
    // The application went on: every other record is summed.
    wait_for("the totals of the other records", DEADLINE, || {
        let totals = last_values(&read_all(&output));
        let a: Option<i64> = totals
            .get(b"a".as_slice())
            .map(|v| serde_json::from_slice(v).unwrap());
        let b: Option<i64> = totals
            .get(b"b".as_slice())
            .map(|v| serde_json::from_slice(v).unwrap());
        (a == Some(1) && b == Some(6)).then_some(())
    });
    assert_eq!(
        events_after_stop(running, received, "unlucky amount 13 for a"),
        1,
        "the panic is reported once"
    );
}

#[test]
fn a_panic_in_an_agent_is_reported_to_sentry_and_dead_lettered() {
    let host = sentry_host();
    let received = &host.received;
    let app_id = unique("sentry-agent");
    let input = unique("sentry-agent-in");
    create_topic(&input, 1);
    let topic = Topic::<String, i64>::new(input.clone());
    let agent = Agent::new("checker", &topic)
        .retry(Retry {
            retries: 1,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        })
        .handler(|event: Event<String, i64>| async move {
            assert!(event.value() != 13, "agent refuses {}", event.value());
            Ok(())
        });
    let running = App::new(app_id.clone())
        .brokers(brokers())
        .http(None)
        .sentry_dsn(host.dsn.clone())
        .agent(agent)
        .start_agents()
        .expect("the app starts");
    let producer = faustus::Producer::new(&brokers()).expect("a producer");
    for value in [1, 13, 2] {
        producer
            .send_blocking(&topic, &"k".to_string(), &value)
            .expect("sent");
    }

    wait_for("the agent to dead-letter the event", DEADLINE, || {
        let status = running
            .agents()
            .into_iter()
            .find(|a| a.settings.name == "checker")?;
        (status.dead_lettered == 1 && status.handled == 2 && status.failed_attempts == 2)
            .then_some(())
    });
    // Two attempts (the first and one retry), each a panic, each an event.
    let events = wait_for("Sentry to receive both attempts' panics", DEADLINE, || {
        let events = events_with(received, "agent refuses 13");
        (events.len() >= 2).then_some(events)
    });
    for event in &events {
        assert_handled_panic(event, &app_id);
    }
    assert_eq!(
        events_after_stop(running, received, "agent refuses 13"),
        2,
        "each attempt is reported once"
    );
}

#[test]
fn a_dsn_that_does_not_parse_stops_the_start_with_what_to_fix() {
    let Err(error) = App::new(unique("sentry-bad"))
        .http(None)
        .sentry_dsn("not a dsn")
        .start(|_df| {})
    else {
        panic!("a bad DSN is a configuration error, yet the application started");
    };
    let error = error.to_string();
    assert!(
        error.starts_with("configuration:")
            && error.contains("`not a dsn`")
            && error.contains("FAUSTUS_SENTRY_DSN"),
        "{error}"
    );
}
