//! The shipped supervisord program file (`deploy/supervisor/faustus-quickstart.conf`) on the
//! real broker: supervisord runs the quickstart from it, the test kills the program with
//! SIGKILL, and supervisord's restart serves the same table again, restored from its changelog
//! (not empty, not counted twice). Needs `supervisord` (Debian's `supervisor`; `scripts/test`
//! installs it).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The program's name in the shipped file.
const PROGRAM: &str = "faustus-quickstart";
/// How long a start (or restart) may take to serve the whole table, on a loaded machine.
const START_DEADLINE: Duration = Duration::from_secs(240);

/// supervisord under test, with its configuration in a temporary directory. Dropping it stops
/// supervisord (which stops the program with SIGTERM), and kills both if they do not stop.
struct Supervisor {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    /// Every pid the program had, to kill if supervisord leaves one behind.
    pids: Vec<u32>,
}

impl Supervisor {
    /// Starts `supervisord -n` on `config` (in `dir`).
    fn start(dir: PathBuf, config: PathBuf) -> Supervisor {
        let child = Command::new("supervisord")
            .args(["-n", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting supervisord (Debian package `supervisor`; scripts/test installs it)");
        Supervisor {
            child,
            dir,
            config,
            pids: Vec::new(),
        }
    }

    /// `supervisorctl -c <config> <args>`: its standard output, or `None` if it failed (such as
    /// while supervisord is not yet listening).
    fn ctl(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("running supervisorctl");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// The program's pid, if supervisord runs it (`supervisorctl pid` says 0 when it does not).
    fn pid(&mut self) -> Option<u32> {
        let pid = self
            .ctl(&["pid", PROGRAM])?
            .parse::<u32>()
            .ok()
            .filter(|p| *p != 0)?;
        if !self.pids.contains(&pid) {
            self.pids.push(pid);
        }
        Some(pid)
    }

    /// The program's log (its standard error) so far.
    fn program_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("quickstart.log")).unwrap_or_default()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the program's log ---\n{}", self.program_log());
            let log = std::fs::read_to_string(self.dir.join("supervisord.log")).unwrap_or_default();
            eprintln!("--- supervisord's log ---\n{log}");
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.pids {
            // A program supervisord did not stop (it was killed itself); ends nothing else, as
            // a pid that exited is not reused this soon.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces `from` by `to` in `text`, which must hold it (the shipped file has that shape).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "deploy/supervisor/{PROGRAM}.conf has no `{from}`: update tests/deployment.rs with it"
    );
    text.replace(from, to)
}

/// The shipped program file, run from `dir` on the test broker: the binary is the built
/// quickstart, logs go to `dir`, the program runs as the test's user, and its environment
/// names this test's application and HTTP port; its topics are given as flags (they have no
/// variables).
fn program_section(dir: &Path, app_id: &str, input: &str, output: &str, port: u16) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join(format!("deploy/supervisor/{PROGRAM}.conf")))
        .expect("reading the shipped supervisord file");
    let environment = shipped
        .lines()
        .find(|l| l.starts_with("environment="))
        .expect("the shipped file sets the environment")
        .to_string();
    let user = shipped
        .lines()
        .find(|l| l.starts_with("user="))
        .expect("the shipped file names a user")
        .to_string();
    let mut text = substitute(
        &shipped,
        "command=/opt/faustus/bin/quickstart --no-generate",
        &format!(
            "command={} --no-generate --input-topic {input} --output-topic {output}",
            quickstart_binary().display()
        ),
    );
    text = substitute(&text, "/var/log/faustus/", &format!("{}/", dir.display()));
    text = substitute(&text, &format!("{user}\n"), "");
    substitute(
        &text,
        &environment,
        &format!(
            "environment=FAUSTUS_BROKERS=\"{}\",FAUSTUS_APP_ID=\"{app_id}\",FAUSTUS_HTTP=\"127.0.0.1:{port}\",FAUSTUS_LOG_FORMAT=\"json\",RUST_LOG=\"info\"",
            brokers()
        ),
    )
}

/// A supervisord configuration in `dir` around the program section: its control socket, and
/// its own log.
fn supervisord_config(dir: &Path, program: &str) -> String {
    let d = dir.display();
    format!(
        "[unix_http_server]\nfile={d}/supervisor.sock\n\n\
         [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\nchildlogdir={d}\n\n\
         [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
         {program}"
    )
}

/// The quickstart's table `user_to_amount` over HTTP as account → total, `None` while it does
/// not answer 200 (starting, restoring, or no process).
fn totals(base: &str) -> Option<BTreeMap<String, i64>> {
    http_table(base, "user_to_amount").map(|entries| {
        entries
            .into_iter()
            .map(|(k, v)| (k, v.as_i64().expect("a total is a number")))
            .collect()
    })
}

#[test]
fn supervisord_restarts_a_killed_quickstart_which_serves_the_same_table() {
    let app_id = unique("deploy");
    let input = format!("{app_id}-orders");
    let output = format!("{app_id}-totals");
    create_topic(&input, 4);
    let (orders, expected) = orders(400, 12, 7);
    produce(&input, &order_records(&orders));

    let dir = std::env::temp_dir().join(unique("faustus-supervisord"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("supervisord.conf");
    // One port for the program's every start: the restarted process serves where the first did.
    let port = free_port();
    let program = program_section(&dir, &app_id, &input, &output, port);
    std::fs::write(&config, supervisord_config(&dir, &program)).unwrap();
    let mut supervisor = Supervisor::start(dir, config);
    let base = format!("http://127.0.0.1:{port}");

    let first = wait_for(
        "supervisord to start the quickstart",
        START_DEADLINE,
        || supervisor.pid(),
    );
    wait_until(
        "the quickstart's table to hold every order's amount",
        START_DEADLINE,
        &Some(expected.clone()),
        || totals(&base),
    );
    // The table over HTTP runs slightly ahead of the commits; a kill before the last epoch's
    // transaction commits would rightly restart from less. Kill once the changelog, read
    // `read_committed`, holds every order: from then on the table may never go back.
    wait_until(
        "the quickstart to commit every order's amount to its changelog",
        START_DEADLINE,
        &expected,
        || changelog_table(&app_id, "user_to_amount"),
    );

    let killed = Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -KILL {first} failed");
    let second = wait_for(
        "supervisord to restart the killed quickstart",
        START_DEADLINE,
        || supervisor.pid().filter(|p| *p != first),
    );
    assert_ne!(second, first);

    // The restarted process is ready once it restored its tables from their changelogs and
    // the restore went through its dataflow: from then on, its table must be whole.
    wait_for(
        "the restarted quickstart to be ready",
        START_DEADLINE,
        || (http_get(&format!("{base}/api/ready")).0 == 200).then_some(()),
    );
    assert_eq!(
        supervisor.pid(),
        Some(second),
        "the restarted quickstart is the process that answered ready"
    );
    assert_eq!(
        totals(&base),
        Some(expected),
        "the restarted quickstart serves the totals of before the kill: none absent, none counted twice"
    );
    let log = supervisor.program_log();
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains("\"level\"")),
        "the program logs JSON lines, as FAUSTUS_LOG_FORMAT asks:\n{log}"
    );
}
