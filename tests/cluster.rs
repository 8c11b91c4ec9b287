//! One worker, two workers, and two processes of two workers compute the same table.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// Runs the quickstart as `processes` processes of `workers` workers each over `input`, waits
/// for the expected totals, stops cleanly, and returns the changelog's table.
fn run(
    input: &str,
    expected: &BTreeMap<String, i64>,
    processes: usize,
    workers: usize,
) -> BTreeMap<String, i64> {
    let app_id = unique(&format!("cluster-{processes}x{workers}"));
    let output = unique("totals");
    let mut procs = start_cluster(&app_id, input, &output, processes, workers);
    wait_for(
        &format!("{processes} process(es) x {workers} worker(s) to sum all orders"),
        Duration::from_secs(120),
        || (decode_totals(&last_values(&read_all(&output))) == *expected).then_some(()),
    );
    for p in &mut procs {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    for p in &mut procs {
        let status = p.terminate();
        assert!(status.success(), "a clean stop exits 0, got {status}");
    }
    changelog_table(&app_id, "user_to_amount")
}

/// Starts the quickstart as `processes` processes of `workers` workers each.
fn start_cluster(
    app_id: &str,
    input: &str,
    output: &str,
    processes: usize,
    workers: usize,
) -> Vec<Process> {
    let hosts: Vec<String> = (0..processes)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    (0..processes)
        .map(|i| {
            let mut args: Vec<String> = vec![
                "--app-id".into(),
                app_id.into(),
                "--input-topic".into(),
                input.into(),
                "--output-topic".into(),
                output.into(),
                "--http".into(),
                "off".into(),
                "--workers".into(),
                workers.to_string(),
            ];
            if processes > 1 {
                args.extend([
                    "--processes".into(),
                    processes.to_string(),
                    "--process-id".into(),
                    i.to_string(),
                    "--hosts".into(),
                    hosts.join(","),
                ]);
            }
            Process::quickstart(&args)
        })
        .collect()
}

use std::process::Command;

#[test]
fn a_process_whose_peer_dies_stops_with_a_clear_message_and_its_own_exit_code() {
    let input = unique("orders");
    create_topic(&input, 4);
    let (orders, expected) = common::orders(2_000, 20, 5);
    produce(&input, &order_records(&orders));
    let app_id = unique("cluster-peer-lost");
    let output = unique("totals");
    let mut procs = start_cluster(&app_id, &input, &output, 2, 1);
    wait_for(
        "the two processes to sum all orders",
        Duration::from_secs(120),
        || (decode_totals(&last_values(&read_all(&output))) == expected).then_some(()),
    );
    procs[1].kill9();
    let survivor = &mut procs[0];
    let status = wait_for("the other process to stop", Duration::from_secs(60), || {
        survivor.child.try_wait().expect("wait")
    });
    assert_eq!(
        status.code(),
        Some(faustus::EXIT_PEER_LOST),
        "the exit code of a lost peer, got {status}"
    );
    let log = std::fs::read_to_string(&survivor.log).expect("the log");
    assert!(
        log.contains("the connection to process 1 of this cluster was lost")
            && log.contains("restart every process"),
        "the log says which process is gone and what to do:\n{log}"
    );
    assert!(
        !log.contains("stack backtrace"),
        "no backtrace, a message:\n{log}"
    );
}

#[test]
fn one_worker_two_workers_and_two_processes_agree() {
    let input = unique("orders");
    create_topic(&input, 4);
    let (orders, expected) = common::orders(5_000, 40, 9);
    produce(&input, &order_records(&orders));

    let one = run(&input, &expected, 1, 1);
    let two = run(&input, &expected, 1, 2);
    let cluster = run(&input, &expected, 2, 2);
    assert_eq!(one, expected);
    assert_eq!(two, expected);
    assert_eq!(cluster, expected);
}

/// Stops every process of a cluster with SIGTERM (all at once: a cluster stops whole) and
/// checks each stopped cleanly.
fn stop_cluster(procs: &mut [Process]) {
    for p in procs.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status();
    }
    for p in procs.iter_mut() {
        let status = p.terminate();
        assert!(status.success(), "a clean stop exits 0, got {status}");
    }
}

#[test]
fn rescaling_by_restart_from_one_worker_to_two_by_two_to_one_by_three_stays_exact() {
    let input = unique("orders");
    create_topic(&input, 4);
    let app_id = unique("rescale");
    let output = unique("totals");
    // (processes, workers) of each run; input arrives while the app is stopped and while the
    // next shape starts and restores.
    let shapes = [(1, 1), (2, 2), (1, 3)];
    let mut batches = (0..2 * shapes.len() as u64).map(|seed| common::orders(1_500, 30, seed));
    let mut so_far: BTreeMap<String, i64> = BTreeMap::new();
    let mut produce_batch = |so_far: &mut BTreeMap<String, i64>| {
        let (orders, totals) = batches.next().expect("a batch per step");
        produce(&input, &order_records(&orders));
        for (k, v) in totals {
            *so_far.entry(k).or_insert(0) += v;
        }
    };
    for (run, (processes, workers)) in shapes.into_iter().enumerate() {
        produce_batch(&mut so_far);
        let mut procs = start_cluster(&app_id, &input, &output, processes, workers);
        produce_batch(&mut so_far);
        wait_for(
            &format!("run {run} ({processes} x {workers}) to sum every order so far"),
            Duration::from_secs(180),
            || (decode_totals(&last_values(&read_all(&output))) == so_far).then_some(()),
        );
        stop_cluster(&mut procs);
        assert_eq!(
            changelog_table(&app_id, "user_to_amount"),
            so_far,
            "run {run}: the changelog holds the model"
        );
    }
    // Each update is written once: per key, the totals only grow.
    assert_updates_increase(&output);
}
