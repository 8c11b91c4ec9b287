//! Tables over HTTP in a cluster of two processes of two workers, against the real broker: every
//! key has the same answer from both processes, paging through 10,000 keys from either process
//! yields each key exactly once in key order, private tables and bad keys are refused, the
//! assignment covers every input partition once, and a stopped owner gives 503 while the other
//! process keeps serving its own keys.
//!
//! The processes run `examples/embed.rs`, so the API is nested under `/faustus` in the program's
//! own service, and `--http-peers` carries that prefix.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEYS: usize = 10_000;
const PREFIX: &str = "/faustus";

/// The process that owns `key` in a cluster of 2 processes of 2 workers.
fn owner_process(key: &str) -> usize {
    let bytes = serde_json::to_vec(key).unwrap();
    (faustus::connectors::murmur2(&bytes) % 4) as usize / 2
}

/// Pages through `user_to_amount` from `base` with pages of `size`, following the `next` links,
/// or with `cursor` the `next_after` keys; returns the entries in the order received, or why not
/// (a failed request, a key out of order or repeated).
fn page_through(base: &str, size: usize, cursor: bool) -> Result<Vec<(String, Value)>, String> {
    let mut all: Vec<(String, Value)> = Vec::new();
    let mut url = format!("{base}/api/table/user_to_amount/?size={size}");
    let origin = base.trim_end_matches(PREFIX);
    for page in 1.. {
        let (status, body) = http_get(&url);
        if status != 200 {
            return Err(format!("{url}: {status} {body}"));
        }
        assert_eq!(body["page"], json!(if cursor { 1 } else { page }), "{url}");
        let results = body["results"].as_object().expect("results");
        assert!(results.len() <= size);
        for (k, v) in results {
            if let Some((last, _)) = all.last() {
                // While the table still changes, keys inserted before the current page shift
                // it: a reason to page again, not a failure (the final pass must be clean).
                if k <= last {
                    return Err(format!("{k} after {last} ({url})"));
                }
            }
            all.push((k.clone(), v.clone()));
        }
        match (body["next"].as_str(), body["next_after"].as_str()) {
            (Some(_), Some(after)) if cursor => {
                url = format!("{base}/api/table/user_to_amount/?size={size}&after={after}")
            }
            (Some(next), _) => url = format!("{origin}{next}"),
            (None, _) => break,
        }
    }
    Ok(all)
}

#[test]
fn two_processes_serve_every_key_and_every_page() {
    let input = unique("http-orders");
    create_topic(&input, 4);
    // 10,000 accounts, each with two orders; amounts 1..=7.
    let mut orders = Vec::new();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for round in 0..2 {
        for i in 0..KEYS {
            let account = format!("account-{i:05}");
            let amount = ((i + round) % 7 + 1) as i64;
            *expected.entry(account.clone()).or_insert(0) += amount;
            orders.push(Order { account, amount });
        }
    }
    produce(&input, &order_records(&orders));

    let app_id = unique("http-cluster");
    let hosts: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let listen: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let bases: Vec<String> = listen
        .iter()
        .map(|l| format!("http://{l}{PREFIX}"))
        .collect();
    let mut procs: Vec<Process> = (0..2)
        .map(|i| {
            let args: Vec<String> = [
                "--app-id",
                &app_id,
                "--input-topic",
                &input,
                "--listen",
                &listen[i],
                "--prefix",
                PREFIX,
                "--workers",
                "2",
                "--processes",
                "2",
                "--process-id",
                &i.to_string(),
                "--hosts",
                &hosts.join(","),
                "--http-peers",
                &bases.join(","),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Process::example("embed", &args, &[])
        })
        .collect();

    // Paging through from either process yields every key once, with its final value.
    let want: Vec<(String, Value)> = expected
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    wait_for(
        "both processes to serve the whole table",
        Duration::from_secs(180),
        || (page_through(&bases[0], 1000, false).ok()? == want).then_some(()),
    );
    assert_eq!(page_through(&bases[1], 1000, false).unwrap(), want);
    assert_eq!(page_through(&bases[1], 777, false).unwrap(), want);
    assert_eq!(page_through(&bases[0], 333, true).unwrap(), want);
    let (status, body) = http_get(&format!("{}/api/table/user_to_amount/?size=1", bases[1]));
    assert_eq!(status, 200);
    assert_eq!(body["total"], json!(KEYS));

    // Every key from both processes: the same answer, whoever owns the key.
    assert!(expected.keys().any(|k| owner_process(k) == 0));
    assert!(expected.keys().any(|k| owner_process(k) == 1));
    std::thread::scope(|scope| {
        for chunk in want.chunks(KEYS / 4) {
            let bases = &bases;
            scope.spawn(move || {
                for (key, value) in chunk {
                    for base in bases {
                        let url = format!("{base}/api/table/user_to_amount/{key}/");
                        assert_eq!(http_get(&url), (200, json!({ key: value })), "{url}");
                    }
                }
            });
        }
    });

    // Refusals: private and unknown tables alike, unknown keys, keys of the wrong type.
    for base in &bases {
        for url in [
            format!("{base}/api/table/order_count/"),
            format!("{base}/api/table/order_count/account-00001/"),
            format!("{base}/api/table/no_such_table/"),
            format!("{base}/api/table/user_to_amount/account-99999/"),
        ] {
            let (status, body) = http_get(&url);
            assert_eq!(status, 404, "{url}: {body}");
            assert!(body["error"].is_string(), "{url}: {body}");
        }
        let (status, body) = http_get(&format!("{base}/api/table/order_count/"));
        let (_, missing) = http_get(&format!("{base}/api/table/no_such_table/"));
        assert_eq!(
            body["error"].as_str().unwrap().replace("order_count", "X"),
            missing["error"]
                .as_str()
                .unwrap()
                .replace("no_such_table", "X"),
            "a private table answers exactly like a missing one ({status})"
        );
        let (status, body) = http_get(&format!("{base}/api/table/orders_by_amount/seven/"));
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("not a valid key"));
        let (status, body) = http_get(&format!("{base}/api/table/orders_by_amount/7/"));
        assert_eq!(status, 200, "{body}");
        let (status, _) = http_get(&format!("{base}/api/table/user_to_amount/?page=0"));
        assert_eq!(status, 400);
    }

    // The assignment: each of the 4 input partitions read by exactly one of the 4 workers, and
    // all of it read (lag 0, positions adding up to the records produced).
    wait_for(
        "the assignment to show all input read",
        Duration::from_secs(60),
        || {
            let (status, body) = http_get(&format!("{}/api/assignment/", bases[1]));
            assert_eq!(status, 200, "{body}");
            let processes = body["processes"].as_array()?;
            assert_eq!(processes.len(), 2, "{body}");
            let mut partitions = Vec::new();
            let mut workers = Vec::new();
            let (mut position, mut lag) = (0, 0);
            for process in processes {
                for worker in process["workers"].as_array()? {
                    workers.push(worker["worker"].as_u64()?);
                    for source in worker["sources"].as_array()? {
                        if source["topic"] != json!(input) {
                            continue;
                        }
                        for p in source["partitions"].as_array()? {
                            partitions.push(p["partition"].as_i64()?);
                            position += p["position"].as_i64()?;
                            lag += p["lag"].as_i64()?;
                        }
                    }
                }
            }
            partitions.sort();
            assert_eq!(workers, vec![0, 1, 2, 3], "{body}");
            assert_eq!(partitions, vec![0, 1, 2, 3], "{body}");
            (position == 2 * KEYS as i64 && lag == 0).then_some(())
        },
    );

    // Stop process 1: its keys are 503 from process 0, which keeps serving its own.
    procs[1].kill9();
    let (theirs, mine): (Vec<_>, Vec<_>) = want.iter().partition(|(k, _)| owner_process(k) == 1);
    for (key, _) in theirs.iter().take(20) {
        let url = format!("{}/api/table/user_to_amount/{key}/", bases[0]);
        let (status, body) = http_get(&url);
        assert_eq!(status, 503, "{url}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("process 1 cannot be reached"), "{error}");
    }
    for (key, value) in mine.iter().take(200) {
        let url = format!("{}/api/table/user_to_amount/{key}/", bases[0]);
        assert_eq!(
            http_get(&url),
            (200, json!({ key.as_str(): value })),
            "{url}"
        );
    }
    let (status, body) = http_get(&format!("{}/api/table/user_to_amount/", bases[0]));
    assert_eq!(status, 503, "a listing needs every process: {body}");
    procs[0].kill9();
}
