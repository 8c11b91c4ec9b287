//! The API against its OpenAPI document (`/api/openapi.json`): schemathesis generates requests
//! from the document, valid and invalid, and checks every answer (no 5xx, status codes, content
//! types and bodies as documented, bad input refused, good input accepted).
//!
//! schemathesis comes from PyPI: `scripts/test` installs it into `.tools/venv` (or set
//! `FAUSTUS_SCHEMATHESIS` to a `schemathesis` executable).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn schemathesis() -> PathBuf {
    if let Ok(path) = std::env::var("FAUSTUS_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/schemathesis");
    assert!(
        venv.exists(),
        "schemathesis is not installed at {}: run scripts/test (it installs it), or set FAUSTUS_SCHEMATHESIS",
        venv.display()
    );
    venv
}

#[test]
fn the_api_matches_its_openapi_document() {
    let schemathesis = schemathesis();
    let input = unique("openapi-orders");
    create_topic(&input, 4);
    let amounts: Vec<(String, i64)> = (0..300)
        .map(|i| (format!("account-{i}"), i64::from(i % 50) + 1))
        .collect();
    let (running, base) = start_filled_totals_app(&input, &amounts);

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/schemathesis");
    std::fs::create_dir_all(&dir).unwrap();
    // One run free to pick any table name (mostly 404s), one pinned to the real table so that
    // generated keys, pages and cursors reach the table itself.
    let pinned = dir.join("pinned.toml");
    std::fs::write(&pinned, "[parameters]\n\"path.name\" = \"totals\"\n").unwrap();
    let free = dir.join("free.toml");
    std::fs::write(&free, "").unwrap();
    for config in [&free, &pinned] {
        let output = Command::new(&schemathesis)
            .current_dir(&dir)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .arg("--no-color")
            .arg("--config-file")
            .arg(config)
            .args(["run", &format!("{base}/api/openapi.json")])
            .args(["--checks", "all", "--max-examples", "60"])
            .args(["--wait-for-schema", "30"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", schemathesis.display()));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "schemathesis ({}) found problems:\n{report}",
            config.display()
        );
        assert!(report.contains("passed"), "{report}");
    }
    running.shutdown().expect("a clean stop");
}
