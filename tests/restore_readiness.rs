//! A restarted application tells "restoring" from "absent": while its table is read back from
//! the changelog, lookups and listings answer 503 with the restore's progress and `Retry-After`
//! (never 404, never a partial page), `/api/ready` answers 503 and `/api/live` 200, and typed
//! reads answer `NotReady`; once restored, the same reads answer with the exact values.
//!
//! The application keeps no local checkpoint, so it restores from the changelog. The restore is
//! held open, deterministically, by a transaction that another producer leaves open on the
//! changelog: `read_committed` readers (the restore) cannot read past it until it ends. The test then commits it, and the record it holds must be in the restored table.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use faustus::prelude::*;
use faustus::{ReadError, Running, TableState};
use rdkafka::producer::{Producer, ThreadedProducer};
use serde_json::Value;

/// How long any wait may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// The key the held transaction adds to the changelog.
const LATE_KEY: &str = "account-late";

/// The application under test, restoring from its changelog (a local checkpoint would let it
/// skip the changelog, and the transaction that holds the restore open).
fn start(app_id: &str, input: &str) -> Running {
    start_totals_app_with(
        app_id,
        input,
        Guarantee::ExactlyOnce,
        App::without_checkpoints,
    )
}

/// `GET url`: status, `Retry-After` and JSON body.
fn get(url: &str) -> (u16, Option<u64>, Value) {
    let response = reqwest::blocking::Client::new()
        .get(url)
        .header("accept", "application/json")
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
    (status, retry, response.json().unwrap_or(Value::Null))
}

/// A producer that leaves a transaction open on partition 0 of `topic`, holding one record.
fn hold_late_key(topic: &str) -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let key = serde_json::to_vec(LATE_KEY).unwrap();
    hold_transaction(topic, &[(Some(key), Some(b"7".to_vec()))])
}

#[test]
fn lookups_during_a_restore_are_503_and_exact_after_it() {
    let app_id = unique("restore-ready");
    let input = unique("restore-ready-orders");
    create_topic(&input, 2);
    let amounts: Vec<(String, i64)> = (0..400)
        .map(|i| (format!("account-{i:03}"), i64::from(i % 37) + 1))
        .collect();
    let model: BTreeMap<String, i64> = amounts.iter().cloned().collect();

    // A first run fills the table (and its changelog), then stops.
    let running = start(&app_id, &input);
    running.wait_ready(DEADLINE).expect("a new app is ready");
    produce(&input, &amount_records(&amounts));
    let base = format!("http://{}", running.http_addr().unwrap());
    let model_json: BTreeMap<String, Value> = model
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(*v)))
        .collect();
    wait_for("the first run's table", DEADLINE, || {
        (http_table(&base, "totals")? == model_json).then_some(())
    });
    running.shutdown().expect("a clean stop");

    // Another producer's transaction holds the changelog's partition 0 open.
    let changelog = format!("{app_id}-totals-changelog");
    let holder = hold_late_key(&changelog);

    let running = start(&app_id, &input);
    let base = format!("http://{}", running.http_addr().unwrap());
    let reader = running.table::<String, i64>("totals").unwrap();
    // Whatever the order workers reach the changelog in, the table is not ready while the
    // transaction is open.
    assert!(!running.is_ready());
    let some_keys: Vec<&String> = model.keys().step_by(40).collect();
    for key in &some_keys {
        let (status, retry, body) = get(&format!("{base}/api/table/totals/{key}/"));
        assert_eq!(status, 503, "{key} during the restore: {body}");
        assert!(
            matches!(body["state"].as_str(), Some("restoring" | "starting")),
            "{body}"
        );
        assert!(
            body["error"].as_str().unwrap().contains("not ready"),
            "{body}"
        );
        let retry = retry.expect("a Retry-After header");
        assert!((1..=30).contains(&retry), "{retry}");
        match reader.get(key) {
            Err(ReadError::NotReady { table, state }) => {
                assert_eq!(table, "totals");
                assert!(!state.is_ready());
            }
            other => panic!("an in-process read during the restore gave {other:?}"),
        }
    }
    let (status, retry, body) = get(&format!("{base}/api/table/totals/?size=1000"));
    assert_eq!(status, 503, "a listing during the restore: {body}");
    assert!(retry.is_some() && body.get("results").is_none(), "{body}");
    // The bound on the records to read is known once both workers have looked up where their
    // partitions end (until then it is absent, or the table is still "starting"): wait for
    // that, then it must cover every key.
    let body = wait_for(
        "both workers to know their changelog ends",
        DEADLINE,
        || {
            let (status, _, body) = get(&format!("{base}/api/table/"));
            assert_eq!(status, 200, "{body}");
            body["tables"]["totals"]["restore"]["expected_records"]
                .is_u64()
                .then_some(body)
        },
    );
    assert_eq!(body["tables"]["totals"]["state"], "restoring", "{body}");
    let progress = &body["tables"]["totals"]["restore"];
    let expected = progress["expected_records"].as_u64().expect("a bound");
    assert!(expected > model.len() as u64, "{progress}");
    assert!(
        progress["records"].as_u64().unwrap() <= expected,
        "{progress}"
    );
    let (status, retry, body) = get(&format!("{base}/api/ready"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert!(retry.is_some());
    let (status, _, body) = get(&format!("{base}/api/live"));
    assert_eq!((status, &body["live"]), (200, &Value::Bool(true)), "{body}");
    match running.table_state("totals") {
        Some(TableState::Restoring(p)) => assert_eq!(p.expected_records, Some(expected)),
        other => panic!("the table's state during the restore: {other:?}"),
    }
    let waited = running.wait_ready(Duration::from_millis(500));
    assert!(
        matches!(&waited, Err(faustus::Error::NotReady(m)) if m.contains("restoring")),
        "{waited:?}"
    );
    // Still restoring: nothing has been answered from a half-read table.
    assert!(!running.is_ready());

    // The transaction stays open longer than a reader waits before it reads on with a new
    // client (15 s without a record): the new client goes on from where the old one got to,
    // so nothing is read twice (the record count below) and nothing is missed.
    std::thread::sleep(Duration::from_secs(20));
    assert!(!running.is_ready());
    // The transaction commits: the restore reads it, and the app becomes ready.
    holder
        .commit_transaction(Duration::from_secs(30))
        .expect("commit_transaction");
    running
        .wait_ready(DEADLINE)
        .expect("ready after the restore");
    let (status, _, body) = get(&format!("{base}/api/ready"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tables"]["totals"]["state"], "ready", "{body}");
    let mut want = model.clone();
    want.insert(LATE_KEY.to_string(), 7);
    let served = http_table(&base, "totals").expect("every page answers once ready");
    let served: BTreeMap<String, i64> = served
        .into_iter()
        .map(|(k, v)| (k, v.as_i64().unwrap()))
        .collect();
    assert_eq!(served, want);
    for key in some_keys {
        let (status, _, body) = get(&format!("{base}/api/table/totals/{key}/"));
        assert_eq!(
            (status, &body[key.as_str()]),
            (200, &Value::from(model[key]))
        );
        assert_eq!(reader.get(key), Ok(Some(model[key])));
    }
    assert_eq!(reader.get(&LATE_KEY.to_string()), Ok(Some(7)));
    // Absent is absent once the table is ready.
    assert_eq!(reader.get(&"nobody".to_string()), Ok(None));
    assert_eq!(get(&format!("{base}/api/table/totals/nobody/")).0, 404);
    let report = running.restore_report();
    assert!(report.complete);
    let restored = report.changelogs[&changelog];
    assert_eq!(restored.keys, want.len() as u64);
    assert_eq!(
        restored.records,
        want.len() as u64,
        "one changelog record per key, each read once"
    );
    assert_eq!(restored.workers, 2);
    running.shutdown().expect("a clean stop");
}

#[test]
fn a_reader_of_the_wrong_types_or_table_is_a_configuration_error() {
    let input = unique("restore-ready-types");
    create_topic(&input, 1);
    let running = start(&unique("restore-types"), &input);
    assert!(matches!(
        running.table::<String, String>("totals"),
        Err(faustus::Error::Config(m)) if m.contains("does not hold")
    ));
    assert!(matches!(
        running.table::<String, i64>("nope"),
        Err(faustus::Error::Config(m)) if m.contains("no public table")
    ));
    assert!(running.table_state("nope").is_none());
    running.wait_ready(DEADLINE).expect("ready");
    assert_eq!(running.table_state("totals"), Some(TableState::Ready));
    running.shutdown().expect("a clean stop");
}
