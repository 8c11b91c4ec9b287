//! A program's own differential code made durable (`examples/differential.rs`: a transitive
//! closure kept as a `State`), killed with SIGKILL between its inputs on the real broker: after
//! every restart the table equals the closure of every follow ever written, computed here from
//! the topic, although the restarted program reads only the follows it had not committed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// How long any wait may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// The transitive closure of `edges`, as the example's table: node → every node it reaches.
fn model(edges: &[(u64, u64)]) -> BTreeMap<String, Value> {
    let mut reach: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for &(a, b) in edges {
        reach.entry(a).or_default().insert(b);
    }
    // Add reach[b] to reach[a] for every a → b until nothing changes.
    loop {
        let mut changed = false;
        let snapshot = reach.clone();
        for (a, reached) in reach.iter_mut() {
            for b in snapshot[a].iter() {
                for c in snapshot.get(b).into_iter().flatten() {
                    changed |= reached.insert(*c);
                }
            }
        }
        if !changed {
            break;
        }
    }
    reach
        .into_iter()
        .map(|(a, r)| {
            (
                a.to_string(),
                Value::from(r.into_iter().collect::<Vec<u64>>()),
            )
        })
        .collect()
}

/// Every follow in `topic`.
fn follows(topic: &str) -> Vec<(u64, u64)> {
    read_all(topic)
        .into_iter()
        .map(|r| {
            let key = serde_json::from_slice(&r.key.unwrap()).unwrap();
            let value = serde_json::from_slice(&r.value.unwrap()).unwrap();
            (key, value)
        })
        .collect()
}

/// Starts the example with `seed`, producing `edges` follows, serving on a free port.
fn start(app_id: &str, prefix: &str, seed: u64, edges: u64) -> (Process, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "--app-id",
        app_id,
        "--topic-prefix",
        prefix,
        "--http",
        &http,
        "--workers",
        "2",
        "--nodes",
        "25",
        "--serve",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "--seed".into(),
        seed.to_string(),
        "--edges".into(),
        edges.to_string(),
    ])
    .collect();
    let process = Process::example("differential", &args, &[]);
    (process, format!("http://{http}"))
}

/// Waits until `topic` holds `count` follows and the table served at `base` equals their
/// closure.
fn wait_for_closure(base: &str, topic: &str, count: usize, what: &str) -> BTreeMap<String, Value> {
    wait_for(what, DEADLINE, || {
        let all = follows(topic);
        if all.len() != count {
            return None;
        }
        let served = http_table(base, "reach")?;
        (served == model(&all)).then_some(served)
    })
}

#[test]
fn a_closure_kept_as_state_survives_kill_9_between_inputs() {
    let app_id = unique("differential");
    let prefix = format!("{}-", unique("differential"));
    let topic = format!("{prefix}follows");

    // Run 1 writes 40 follows; killed once its table is the closure of them (its last epoch
    // may not be committed yet).
    let (mut process, base) = start(&app_id, &prefix, 1, 40);
    wait_for_closure(&base, &topic, 40, "run 1's closure");
    process.kill9();

    // Run 2 restores the closure, reads the follows run 1 had not committed and 40 new ones.
    let (mut process, base) = start(&app_id, &prefix, 2, 40);
    let second = wait_for_closure(&base, &topic, 80, "run 2's closure");
    process.kill9();

    // Run 3 writes nothing: once ready, its table is exactly what the changelog restored.
    let (mut process, base) = start(&app_id, &prefix, 3, 0);
    wait_for("run 3 to be ready", DEADLINE, || {
        (http_get(&format!("{base}/api/ready")).0 == 200).then_some(())
    });
    let restored = http_table(&base, "reach").expect("a ready table answers");
    assert_eq!(restored, second);
    assert_eq!(restored, model(&follows(&topic)));
    // The changelog holds the same table, one record per node.
    let changelog = last_values(&read_all(&format!("{app_id}-reach-changelog")));
    let changelog: BTreeMap<String, Value> = changelog
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).unwrap(),
                serde_json::from_slice(&v).unwrap(),
            )
        })
        .collect();
    assert_eq!(changelog, restored);
    assert!(process.terminate().success(), "a clean stop");
}
