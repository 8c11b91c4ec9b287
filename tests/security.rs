//! Kafka security on the real broker's TLS + SASL/SCRAM-SHA-512 listener (`scripts/kafka start
//! --secure`): the quickstart configured by `--kafka-config` alone sums its orders there, and
//! never prints the password; a wrong password and an unknown CA each stop it at start, at once,
//! with a message that names the broker and the cause.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// The value of `key` in the properties file `path`.
fn property(path: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(path).expect("the secure client properties");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {}", path.display()))
        .trim()
        .to_string()
}

/// A copy of the secure client properties with `key` set to `value`, in a new temporary file.
fn with_property(key: &str, value: &str) -> PathBuf {
    let text = std::fs::read_to_string(secure_config()).expect("the secure client properties");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key}=")))
        .map(str::to_string)
        .collect();
    lines.push(format!("{key}={value}"));
    let path = std::env::temp_dir().join(format!("{}.properties", unique("client")));
    std::fs::write(&path, lines.join("\n")).expect("writing a properties file");
    path
}

/// Quickstart flags for this test's topics, over the secure listener of `config` (which gives
/// the brokers as well), HTTP off.
fn secure_flags(app_id: &str, input: &str, output: &str, config: &Path) -> Vec<String> {
    let config = config.display().to_string();
    quickstart_flags(
        app_id,
        input,
        output,
        &["--no-generate", "--kafka-config", &config],
    )
}

#[test]
fn the_quickstart_runs_over_tls_and_scram_with_a_properties_file() {
    let config = secure_config();
    let secure_brokers = property(&config, "bootstrap.servers");
    let password = property(&config, "sasl.password");
    assert_ne!(
        secure_brokers,
        brokers(),
        "the secure listener has a port of its own"
    );
    let app_id = unique("secure");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 4);
    let (orders, expected) = common::orders(500, 10, 7);
    produce(&input, &order_records(&orders));

    let process = Process::example_with(
        "quickstart",
        &secure_flags(&app_id, &input, &output, &config),
        &[],
    );
    wait_for(
        "the orders to be summed over the secure listener",
        Duration::from_secs(120),
        || (decode_totals(&last_values(&read_all(&output))) == expected).then_some(()),
    );
    let log = process.log_text();
    assert!(
        log.contains(&secure_brokers) && log.contains("sasl.password=[redacted]"),
        "the log names the secure brokers and shows the properties with the password redacted:\n{log}"
    );
    assert!(
        !log.contains(&password),
        "the password is in the log:\n{log}"
    );
    let committed: BTreeMap<_, _> = changelog_table(&app_id, "user_to_amount");
    assert_eq!(committed, expected, "the changelog holds the same totals");
}

/// Starts the quickstart with the properties file `config`, waits for it to fail at start, and
/// returns its log. A fall-back on the (raised) request timeout would miss the deadline.
fn start_failure(config: &Path) -> String {
    let app_id = unique("refused");
    let mut flags = secure_flags(&app_id, &unique("orders"), &unique("totals"), config);
    flags.extend([
        "--kafka-request-timeout-ms".to_string(),
        "300000".to_string(),
    ]);
    let mut process = Process::example_with("quickstart", &flags, &[]);
    let status = process.wait_exit(Duration::from_secs(60));
    let log = process.log_text();
    let status = status.unwrap_or_else(|| panic!("still running after 60 s:\n{log}"));
    assert!(!status.success(), "it exited with {status}:\n{log}");
    log
}

#[test]
fn a_wrong_password_stops_the_start_with_a_message_that_says_so() {
    let brokers = property(&secure_config(), "bootstrap.servers");
    let wrong = unique("not-the-password");
    let config = with_property("sasl.password", &wrong);
    let log = start_failure(&config);
    let _ = std::fs::remove_file(&config);
    let error = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    for wanted in [brokers.as_str(), "authentication failed", "sasl.password"] {
        assert!(error.contains(wanted), "no `{wanted}` in: {error}");
    }
    assert!(!log.contains(&wrong), "the password is in the log:\n{log}");
}

#[test]
fn an_unknown_ca_stops_the_start_with_a_message_that_says_so() {
    let brokers = property(&secure_config(), "bootstrap.servers");
    let dir = std::env::temp_dir().join(unique("unknown-ca"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let status = Command::new("openssl")
        .current_dir(&dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=a CA the broker does not know",
        ])
        .output()
        .expect("running openssl (scripts/kafka --secure needs it too)")
        .status;
    assert!(status.success(), "openssl could not make a CA");
    let config = with_property("ssl.ca.location", &dir.join("ca.pem").display().to_string());
    let log = start_failure(&config);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_dir_all(&dir);
    let error = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{log}"));
    for wanted in [
        brokers.as_str(),
        "TLS failed",
        "ssl.ca.location",
        "certificate verify failed",
    ] {
        assert!(error.contains(wanted), "no `{wanted}` in: {error}");
    }
}
