//! The program's own commands (`faustus::cli`), against the real broker: the quickstart's
//! `tables`, `get`, `send` and `reset` as a user types them, before, while and after its worker
//! runs; `agents` on an application with an agent. Each also with the bad input a user gives.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use faustus::cli::Command as Tool;
use faustus::prelude::*;

/// How long any wait may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// What a command printed, and how it ended.
#[derive(Debug)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the quickstart binary with `--brokers <the test broker>`, `flags`, then `command`, with
/// standard input closed (no terminal).
fn quickstart(flags: &[String], command: &[&str]) -> Outcome {
    let output = Command::new(quickstart_binary())
        .arg("--brokers")
        .arg(brokers())
        .args(flags)
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("the quickstart runs");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Asserts that `outcome` ended with `code` and that its standard error says each of `says`.
fn assert_fails(outcome: &Outcome, code: i32, says: &[&str]) {
    assert_eq!(outcome.code, code, "{outcome:#?}");
    for text in says {
        assert!(
            outcome.stderr.contains(text),
            "expected {text:?}: {outcome:#?}"
        );
    }
}

/// Whether `topic` exists on the test broker.
fn exists(topic: &str) -> bool {
    faustus::connectors::partition_count(&kafka(), topic)
        .expect("metadata")
        .is_some()
}

/// `get user_to_amount <key>` until it prints `value` (the worker's table has caught up).
fn wait_for_total(flags: &[String], key: &str, value: i64) {
    wait_for(&format!("{key} = {value}"), DEADLINE, || {
        let got = quickstart(flags, &["get", "user_to_amount", key]);
        (got.code == 0 && got.stdout.trim() == value.to_string()).then_some(())
    });
}

#[test]
fn tables_get_send_and_reset_work_before_while_and_after_the_worker_runs() {
    let app = unique("cli");
    let input = unique("cli-orders");
    let output = unique("cli-totals");
    let port = free_port().to_string();
    let mut flags = quickstart_flags(&app, &input, &output, &[]);
    // An HTTP address the tools ask, instead of `--http off`.
    let http = flags.iter().position(|f| f == "off").expect("--http off");
    flags[http] = format!("127.0.0.1:{port}");
    let changelog = format!("{app}-user_to_amount-changelog");
    let progress = format!("{app}-__progress");
    let order = |amount: i64| format!(r#"{{"account":"account-1","amount":{amount}}}"#);

    // Before any worker: the program's tables are known, their state is not.
    let listed = quickstart(&flags, &["tables"]);
    assert_eq!(listed.code, 0, "{listed:#?}");
    assert!(listed.stdout.starts_with("TABLE"), "{listed:#?}");
    assert!(
        listed.stdout.contains("user_to_amount") && listed.stdout.contains(&changelog),
        "{listed:#?}"
    );
    assert!(
        listed.stderr.contains("no running application answers"),
        "{listed:#?}"
    );
    // Nothing runs: "not ready", never "absent".
    assert_fails(
        &quickstart(&flags, &["get", "user_to_amount", "account-1"]),
        2,
        &["not ready", "no running application answers", "--http"],
    );
    assert_fails(
        &quickstart(&flags, &["get", "prices", "account-1"]),
        1,
        &["no table `prices`", "`user_to_amount`"],
    );

    // `send`: typed by the topic's codecs.
    let sent = quickstart(&flags, &["send", &input, "--key", "account-1", &order(5)]);
    assert_eq!(sent.code, 0, "{sent:#?}");
    assert!(
        sent.stdout
            .contains(&format!("sent to `{input}`: partition")),
        "{sent:#?}"
    );
    assert_fails(
        &quickstart(
            &flags,
            &[
                "send",
                &input,
                "--key",
                "account-1",
                r#"{"account":"account-1"}"#,
            ],
        ),
        2,
        &[
            &format!("does not suit topic `{input}`"),
            "missing field `amount`",
        ],
    );
    assert_fails(
        &quickstart(&flags, &["send", &input, "not json"]),
        2,
        &["value: invalid JSON"],
    );
    assert_fails(
        &quickstart(&flags, &["send", "nowhere", "{}"]),
        1,
        &["no topic `nowhere`", &format!("`{input}`")],
    );

    // While the worker runs.
    let mut worker = Process::quickstart(&flags);
    wait_for_total(&flags, "account-1", 5);
    let sent = quickstart(&flags, &["send", &input, "--key", "account-1", &order(7)]);
    assert_eq!(sent.code, 0, "{sent:#?}");
    wait_for_total(&flags, "account-1", 12);
    assert_fails(
        &quickstart(&flags, &["get", "user_to_amount", "account-2"]),
        1,
        &["table `user_to_amount` has no key `account-2`"],
    );
    let listed = quickstart(&flags, &["tables"]);
    assert_eq!(listed.code, 0, "{listed:#?}");
    let row: Vec<&str> = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("user_to_amount"))
        .expect("a row of the table")
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["user_to_amount", "ready", "1", &changelog],
        "{listed:#?}"
    );
    let agents = quickstart(&flags, &["agents"]);
    assert_eq!(agents.code, 0, "{agents:#?}");
    assert_eq!(agents.stdout.trim(), "this program has no agents");
    assert_fails(
        &quickstart(&flags, &["reset", "--yes"]),
        2,
        &[&format!("`{app}` is running"), &port],
    );
    assert!(exists(&changelog) && exists(&progress));

    // Stopped: `reset` asks first, then deletes the state but not the input or the output.
    let status = worker.terminate();
    assert!(status.success(), "the worker stopped cleanly: {status}");
    assert_fails(&quickstart(&flags, &["reset"]), 2, &["confirm with --yes"]);
    assert!(
        exists(&changelog) && exists(&progress),
        "nothing deleted unconfirmed"
    );
    let reset = quickstart(&flags, &["reset", "--yes"]);
    assert_eq!(reset.code, 0, "{reset:#?}");
    assert!(
        reset.stdout.contains(&format!("delete topic {changelog}"))
            && reset.stdout.contains(&format!("delete topic {progress}")),
        "{reset:#?}"
    );
    assert!(!exists(&changelog) && !exists(&progress));
    assert!(exists(&input) && exists(&output));

    // The next start reads the input from its beginning: the same total, not an empty table
    // (changelog gone, position kept) nor a double one (position gone, changelog kept).
    let mut worker = Process::quickstart(&flags);
    wait_for_total(&flags, "account-1", 12);
    assert!(worker.terminate().success());
}

#[test]
fn agents_lists_each_agent_with_its_group_and_the_partitions_it_is_active_for() {
    use faustus::agent::{Agent, Event};
    let app_id = unique("cli-agents");
    let input = unique("cli-agents-in");
    create_topic(&input, 2);
    let topic = Topic::<String, i64>::new(input.clone()).key_codec(Str);
    let agent = || {
        Agent::new("check", &topic).handler(|_event: Event<String, i64>| async move {
            Ok::<_, faustus::agent::HandlerError>(())
        })
    };
    let port = free_port();
    let app = || {
        App::new(&app_id)
            .brokers(brokers())
            .http(Some(format!("127.0.0.1:{port}").parse().unwrap()))
            .agent(agent())
    };
    let agents = |app: App| {
        let mut out = Vec::new();
        app.run_tool_to(&Tool::Agents, |_df| {}, &mut out)
            .expect("agents answers");
        String::from_utf8(out).unwrap()
    };

    // Not running: the program's agents, without their state.
    let listed = agents(app());
    let row = |listed: &str| -> Vec<String> {
        listed
            .lines()
            .find(|l| l.starts_with("check"))
            .unwrap_or_else(|| panic!("a row for the agent: {listed}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(listed.starts_with("AGENT"), "{listed}");
    assert_eq!(
        row(&listed),
        ["check", &input, &format!("{app_id}-check"), "-", "-"],
        "{listed}"
    );

    // Running: its state and partitions, once the group has assigned them.
    let running = app().start(|_df| {}).expect("the app starts");
    let listed = wait_for("both partitions assigned", DEADLINE, || {
        let listed = agents(app());
        (row(&listed).join(" ").ends_with("running process 0: 0,1")).then_some(listed)
    });
    assert_eq!(
        row(&listed)[..3],
        ["check", &input, &format!("{app_id}-check")]
    );

    // `reset` refuses while it runs.
    let mut out = Vec::new();
    let refused = app()
        .run_tool_to(&Tool::Reset { yes: true }, |_df| {}, &mut out)
        .expect_err("reset while running");
    assert!(refused.to_string().contains("is running"), "{refused}");
    running.shutdown().expect("clean shutdown");

    // Stopped, with HTTP off: the agent's group, now empty, is what `reset` deletes.
    let mut out = Vec::new();
    App::new(&app_id)
        .brokers(brokers())
        .http(None)
        .agent(agent())
        .run_tool_to(&Tool::Reset { yes: true }, |_df| {}, &mut out)
        .expect("reset");
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(&format!("delete consumer group {app_id}-check")),
        "{out}"
    );
    assert!(
        out.contains("consumer group(s)") && !out.contains(" 0 consumer group(s)"),
        "the agent's group existed: {out}"
    );
}
