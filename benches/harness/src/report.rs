//! The results report: from the JSON lines the tools append (`bench-run`, `bench-latency`, the
//! restore probe, `scripts/bench`'s own `meta` and `not run` lines) to `latest.json` (the list
//! of figures per system, workload and guarantee) and `latest.md` (tables, ratios, targets).
//!
//! Row kinds read:
//! - `throughput` / `scale`: `system, workload, guarantee, events, events_per_sec, wall_s,
//!   startup_s, cpu_s_per_million, peak_rss_mb, answer` (`scale` rows have workload
//!   `W2-keys-<V>`);
//! - `latency`: `system, workload, guarantee, rate, p50_ms, p99_ms, samples`;
//! - `restore`: `system, records, seconds, records_per_sec`;
//! - `meta`: `key, value` (machine, versions, sizes), shown in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// One object of `latest.json`: the issue's fields in its order, then details.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// `ceiling`, `faustus`, `kafka-streams` or `faust`.
    pub system: String,
    /// `W0`..`W4`, `W2-keys-<V>` (scale point) or `W2-restore`.
    pub workload: String,
    /// `at_least_once` or `exactly_once` (null for the restore figure).
    pub guarantee: Option<String>,
    /// Events per second (records per second for the restore figure).
    pub events_per_sec: Option<f64>,
    /// CPU seconds per million events.
    pub cpu_s_per_million: Option<f64>,
    /// Peak resident set, MB.
    pub peak_rss_mb: Option<f64>,
    /// Median end-to-end latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile end-to-end latency, ms.
    pub p99_ms: Option<f64>,
    /// Further details of the run.
    #[serde(flatten)]
    pub details: BTreeMap<String, Value>,
}

/// The systems, in report order. `faustus-agent` is W0 as a faustus agent with a trivial async
/// handler; `faustus-agent-io` the same with a handler that waits 10 ms (an I/O-bound handler),
/// 256 at a time.
pub const SYSTEMS: [&str; 6] = [
    "ceiling",
    "faustus",
    "faustus-agent",
    "faustus-agent-io",
    "kafka-streams",
    "faust",
];
/// The rate an I/O-bound agent reaches at best: 256 handlers at a time (64 per partition of 4),
/// each taking 10 ms.
pub const IDEAL_IO_RATE: f64 = 256.0 / 0.010;
/// The name under which [`IDEAL_IO_RATE`] stands in a target.
pub const IDEAL_IO: &str = "ideal (256 handlers × 10 ms)";
/// The guarantees, in report order.
pub const GUARANTEES: [&str; 2] = ["at_least_once", "exactly_once"];
/// Restore target: changelog records per second.
pub const RESTORE_TARGET: f64 = 1_000_000.0;

/// A ratio target: `system / peer >= min` on a workload, per guarantee.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// The system measured.
    pub system: &'static str,
    /// The workload.
    pub workload: &'static str,
    /// The system faustus is compared with.
    pub peer: &'static str,
    /// The least ratio that meets the target.
    pub min: f64,
}

/// The issues' throughput targets.
pub const TARGETS: [Target; 9] = [
    Target {
        system: "faustus",
        workload: "W0",
        peer: "ceiling",
        min: 0.8,
    },
    Target {
        system: "faustus",
        workload: "W1",
        peer: "faust",
        min: 50.0,
    },
    Target {
        system: "faustus",
        workload: "W2",
        peer: "kafka-streams",
        min: 3.0,
    },
    Target {
        system: "faustus",
        workload: "W2",
        peer: "faust",
        min: 50.0,
    },
    Target {
        system: "faustus",
        workload: "W3",
        peer: "kafka-streams",
        min: 3.0,
    },
    Target {
        system: "faustus",
        workload: "W4",
        peer: "kafka-streams",
        min: 3.0,
    },
    Target {
        system: "faustus-agent",
        workload: "W0",
        peer: "ceiling",
        min: 0.7,
    },
    Target {
        system: "faustus-agent",
        workload: "W0",
        peer: "faust",
        min: 50.0,
    },
    Target {
        system: "faustus-agent-io",
        workload: "W0",
        peer: IDEAL_IO,
        min: 0.8,
    },
];

/// Parses JSON lines, skipping blank lines; a line that is not a JSON object is an error that
/// names its line number.
pub fn parse_rows(text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err(format!("line {}: not a JSON object", i + 1)),
            Err(e) => Err(format!("line {}: {e}", i + 1)),
        })
        .collect()
}

fn s<'a>(row: &'a Value, key: &str) -> &'a str {
    row.get(key).and_then(Value::as_str).unwrap_or("")
}

fn f(row: &Value, key: &str) -> Option<f64> {
    row.get(key).and_then(Value::as_f64)
}

/// The measured runs: the last `throughput` or `scale` row per (system, workload, guarantee).
fn runs(rows: &[Value]) -> BTreeMap<(String, String, String), &Value> {
    let mut out = BTreeMap::new();
    for r in rows {
        if matches!(s(r, "kind"), "throughput" | "scale") {
            out.insert(
                (
                    s(r, "system").to_string(),
                    s(r, "workload").to_string(),
                    s(r, "guarantee").to_string(),
                ),
                r,
            );
        }
    }
    out
}

/// The last `latency` row per (system, workload, guarantee).
fn latencies(rows: &[Value]) -> BTreeMap<(String, String, String), &Value> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| s(r, "kind") == "latency") {
        out.insert(
            (
                s(r, "system").to_string(),
                s(r, "workload").to_string(),
                s(r, "guarantee").to_string(),
            ),
            r,
        );
    }
    out
}

/// Events per second of a run whose answer was right.
fn rate(run: &Value) -> Option<f64> {
    (s(run, "answer") == "ok")
        .then(|| f(run, "events_per_sec"))
        .flatten()
}

/// The open-loop rate for latency runs of `workload` under `guarantee`: half the throughput of
/// the slowest system that ran it with the right answer.
pub fn latency_rate(rows: &[Value], workload: &str, guarantee: &str) -> Option<f64> {
    runs(rows)
        .iter()
        .filter(|((_, w, g), _)| w == workload && g == guarantee)
        .filter_map(|(_, r)| rate(r))
        .min_by(f64::total_cmp)
        .map(|r| r / 2.0)
}

/// `latest.json`: one object per measured (system, workload, guarantee) with the issue's fields
/// first (`null` where not measured), then the run's details; plus the restore figure.
pub fn summary_json(rows: &[Value]) -> Vec<Summary> {
    let lat = latencies(rows);
    let runs = runs(rows);
    let mut keys: Vec<&(String, String, String)> = runs.keys().chain(lat.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let run = runs.get(key);
        let l = lat.get(key);
        let ok = run.is_some_and(|r| s(r, "answer") == "ok");
        let pick = |k: &str| run.filter(|_| ok).and_then(|r| f(r, k));
        let mut details = BTreeMap::new();
        if let Some(r) = run {
            for k in [
                "answer",
                "events",
                "events_per_sec_wall",
                "wall_s",
                "startup_s",
                "input_suffix",
            ] {
                if let Some(v) = r.get(k) {
                    details.insert(k.to_string(), v.clone());
                }
            }
        }
        if let Some(l) = l {
            for (k, name) in [("rate", "latency_rate"), ("samples", "latency_samples")] {
                if let Some(v) = l.get(k) {
                    details.insert(name.to_string(), v.clone());
                }
            }
        }
        out.push(Summary {
            system: key.0.clone(),
            workload: key.1.clone(),
            guarantee: Some(key.2.clone()),
            events_per_sec: pick("events_per_sec"),
            cpu_s_per_million: pick("cpu_s_per_million"),
            peak_rss_mb: pick("peak_rss_mb"),
            p50_ms: l.and_then(|l| f(l, "p50_ms")),
            p99_ms: l.and_then(|l| f(l, "p99_ms")),
            details,
        });
    }
    if let Some(r) = rows.iter().rev().find(|r| s(r, "kind") == "restore") {
        let mut details = BTreeMap::new();
        for k in ["records", "seconds"] {
            if let Some(v) = r.get(k) {
                details.insert(k.to_string(), v.clone());
            }
        }
        out.push(Summary {
            system: s(r, "system").to_string(),
            workload: "W2-restore".into(),
            guarantee: r.get("guarantee").and_then(Value::as_str).map(String::from),
            events_per_sec: f(r, "records_per_sec"),
            cpu_s_per_million: None,
            peak_rss_mb: f(r, "peak_rss_mb"),
            p50_ms: None,
            p99_ms: None,
            details,
        });
    }
    out
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        None => "–".into(),
        Some(x) if digits == 0 => group(x.round() as i64),
        Some(x) => format!("{x:.digits$}"),
    }
}

/// An integer with thousands separators.
fn group(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The verdict on a target, and the ratio when measured.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Ratio at least the target.
    Met(f64),
    /// Ratio below the target.
    Missed(f64),
    /// One side was not measured (or its answer was wrong); why.
    NotMeasured(String),
}

/// The verdict on `target` under `guarantee`.
pub fn verdict(rows: &[Value], target: &Target, guarantee: &str) -> Verdict {
    let runs = runs(rows);
    let get = |system: &str| {
        runs.get(&(
            system.to_string(),
            target.workload.to_string(),
            guarantee.to_string(),
        ))
    };
    let side = |system: &str| match get(system) {
        _ if system == IDEAL_IO => Ok(IDEAL_IO_RATE),
        None => Err(format!("{system} not run")),
        Some(r) => rate(r).ok_or_else(|| format!("{system}: {}", short(s(r, "answer")))),
    };
    match (side(target.system), side(target.peer)) {
        (Ok(a), Ok(b)) if b > 0.0 => {
            let ratio = a / b;
            if ratio >= target.min {
                Verdict::Met(ratio)
            } else {
                Verdict::Missed(ratio)
            }
        }
        (Ok(_), Ok(_)) => Verdict::NotMeasured(format!("{} measured 0 events/s", target.peer)),
        (Err(e), _) | (_, Err(e)) => Verdict::NotMeasured(e),
    }
}

/// A run with less than this many seconds between its first output and the right answer is
/// too short for a steady rate; the report marks it.
pub const SHORT_RUN_S: f64 = 5.0;

fn is_short(run: &Value) -> bool {
    match (f(run, "wall_s"), f(run, "startup_s")) {
        (Some(wall), Some(startup)) => wall - startup < SHORT_RUN_S,
        _ => false,
    }
}

fn short(answer: &str) -> String {
    let a = answer.replace('|', "/");
    if a.chars().count() > 120 {
        format!("{}…", a.chars().take(120).collect::<String>())
    } else {
        a
    }
}

/// `latest.md`: machine and versions, the targets, a table per workload, the scale curve, the
/// restore figure, and where targets are missed (with `notes`, free text, appended).
pub fn markdown(rows: &[Value], notes: Option<&str>) -> String {
    let mut md = String::new();
    let runs = runs(rows);
    let lat = latencies(rows);
    let _ = writeln!(md, "# Side-by-side benchmark results\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (method: [`benches/README.md`](../README.md)); raw rows in \
         `latest.jsonl`, figures in `latest.json`. Events/s is the drain rate of a preloaded \
         topic after the system's first output (start-up excluded; the rate including start-up \
         is in `latest.json` as `events_per_sec_wall`). A figure is shown only when the \
         system's output matched the model computed from the input.\n"
    );
    let metas: Vec<&Value> = rows.iter().filter(|r| s(r, "kind") == "meta").collect();
    if !metas.is_empty() {
        let _ = writeln!(md, "## Machine, versions, sizes\n");
        for m in metas {
            let _ = writeln!(md, "- **{}**: {}", s(m, "key"), s(m, "value"));
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | guarantee | ratio | verdict |");
    let _ = writeln!(md, "|---|---|---|---|");
    let mut missed = Vec::new();
    for t in &TARGETS {
        for g in GUARANTEES {
            let v = verdict(rows, t, g);
            let name = format!("{} ≥ {} × {} on {}", t.system, t.min, t.peer, t.workload);
            let (ratio, text) = match &v {
                Verdict::Met(r) => (format!("{r:.2}"), "met".to_string()),
                Verdict::Missed(r) => {
                    missed.push(format!("{name} ({g}): {r:.2}"));
                    (format!("{r:.2}"), "**missed**".to_string())
                }
                Verdict::NotMeasured(why) => ("–".into(), format!("not measured ({why})")),
            };
            let _ = writeln!(md, "| {name} | {g} | {ratio} | {text} |");
        }
    }
    let restore = rows.iter().rev().find(|r| s(r, "kind") == "restore");
    match restore.and_then(|r| f(r, "records_per_sec")) {
        Some(rps) => {
            let met = rps >= RESTORE_TARGET;
            if !met {
                missed.push(format!("restore: {} records/s", group(rps as i64)));
            }
            let _ = writeln!(
                md,
                "| restore ≥ 1,000,000 changelog records/s | – | {} /s | {} |",
                group(rps as i64),
                if met { "met" } else { "**missed**" }
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| restore ≥ 1,000,000 changelog records/s | – | – | not measured |"
            );
        }
    }
    md.push('\n');

    for w in ["W0", "W1", "W2", "W3", "W4"] {
        let present: Vec<_> = runs.keys().filter(|k| k.1 == w).collect();
        if present.is_empty() {
            continue;
        }
        let reference = match w {
            "W0" => "ceiling",
            "W1" => "faust",
            _ => "kafka-streams",
        };
        let _ = writeln!(md, "## {w}\n");
        let _ = writeln!(
            md,
            "| system | guarantee | events | events/s | faustus ÷ this | CPU s / M events | \
             peak RSS MB | p50 ms | p99 ms | answer |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        let mut short_runs = false;
        for g in GUARANTEES {
            let faustus = runs
                .get(&("faustus".into(), w.into(), g.into()))
                .and_then(|r| rate(r));
            for sys in SYSTEMS {
                let Some(r) = runs.get(&(sys.into(), w.into(), g.into())) else {
                    continue;
                };
                let l = lat.get(&(sys.into(), w.into(), g.into()));
                let ratio = match (faustus, rate(r)) {
                    (Some(a), Some(b)) if sys != "faustus" && b > 0.0 => {
                        let mark = if sys == reference || (w == "W2" && sys == "faust") {
                            "**"
                        } else {
                            ""
                        };
                        format!("{mark}{:.2}{mark}", a / b)
                    }
                    _ => "–".into(),
                };
                let ok = s(r, "answer") == "ok";
                let mut answer = short(s(r, "answer"));
                if ok && is_short(r) {
                    answer.push_str(" (short run †)");
                    short_runs = true;
                }
                let answer = answer.as_str();
                let _ = writeln!(
                    md,
                    "| {sys} | {g} | {} | {} | {ratio} | {} | {} | {} | {} | {} |",
                    num(f(r, "events"), 0),
                    num(rate(r), 0),
                    num(ok.then(|| f(r, "cpu_s_per_million")).flatten(), 2),
                    num(ok.then(|| f(r, "peak_rss_mb")).flatten(), 0),
                    num(l.and_then(|l| f(l, "p50_ms")), 1),
                    num(l.and_then(|l| f(l, "p99_ms")), 1),
                    answer
                );
            }
        }
        if short_runs {
            let _ = writeln!(
                md,
                "\n† Under {SHORT_RUN_S} s between the first output and the right answer: too \
                 short for a steady rate (start-up dominates); use larger inputs."
            );
        }
        let rates: Vec<String> = GUARANTEES
            .iter()
            .filter_map(|g| {
                lat.iter()
                    .find(|((_, lw, lg), _)| lw == w && lg == g)
                    .and_then(|(_, l)| f(l, "rate"))
                    .map(|r| format!("{g} at {} events/s", group(r as i64)))
            })
            .collect();
        if !rates.is_empty() {
            let _ = writeln!(
                md,
                "\nLatency: open loop at half the slowest system's throughput ({}).",
                rates.join(", ")
            );
        }
        md.push('\n');
    }

    let scale: Vec<&Value> = runs
        .values()
        .copied()
        .filter(|r| s(r, "kind") == "scale")
        .collect();
    if !scale.is_empty() {
        let _ = writeln!(md, "## W2 scale curve (distinct keys)\n");
        let _ = writeln!(
            md,
            "| keys | system | guarantee | words | events/s | peak RSS MB | answer |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        let mut sorted = scale;
        sorted.sort_by_key(|r| {
            let keys: u64 = s(r, "workload")
                .trim_start_matches("W2-keys-")
                .parse()
                .unwrap_or(0);
            let sys = SYSTEMS.iter().position(|x| *x == s(r, "system"));
            (keys, sys, s(r, "guarantee").to_string())
        });
        for r in sorted {
            let ok = s(r, "answer") == "ok";
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s(r, "workload").trim_start_matches("W2-keys-"),
                s(r, "system"),
                s(r, "guarantee"),
                num(f(r, "events"), 0),
                num(rate(r), 0),
                num(ok.then(|| f(r, "peak_rss_mb")).flatten(), 0),
                short(s(r, "answer"))
            );
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Restore\n");
    match restore {
        Some(r) => {
            let _ = writeln!(
                md,
                "faustus restored a table of {} changelog records in {} s: **{} records/s** \
                 (target 1,000,000).\n",
                num(f(r, "records"), 0),
                num(f(r, "seconds"), 2),
                num(f(r, "records_per_sec"), 0)
            );
        }
        None => {
            let _ = writeln!(md, "Not measured.\n");
        }
    }

    let _ = writeln!(md, "## Where a target is missed\n");
    if missed.is_empty() {
        let _ = writeln!(md, "No measured target is missed.\n");
    } else {
        for m in &missed {
            let _ = writeln!(md, "- {m}");
        }
        md.push('\n');
    }
    if let Some(n) = notes.map(str::trim).filter(|n| !n.is_empty()) {
        let _ = writeln!(md, "{n}\n");
    } else if !missed.is_empty() {
        let _ = writeln!(
            md,
            "(No analysis yet: write it, with a profile, to `benches/results/notes.md`.)\n"
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Value> {
        parse_rows(
            r#"
{"kind":"meta","key":"CPU","value":"2 cores"}
{"kind":"throughput","system":"ceiling","workload":"W0","guarantee":"exactly_once","events":100,"events_per_sec":1000.0,"cpu_s_per_million":1.0,"peak_rss_mb":10.0,"answer":"ok"}
{"kind":"throughput","system":"faustus","workload":"W0","guarantee":"exactly_once","events":100,"events_per_sec":900.0,"cpu_s_per_million":2.0,"peak_rss_mb":20.0,"answer":"ok"}
{"kind":"throughput","system":"faustus","workload":"W2","guarantee":"exactly_once","events":100,"events_per_sec":500.0,"answer":"ok"}
{"kind":"throughput","system":"kafka-streams","workload":"W2","guarantee":"exactly_once","events":100,"events_per_sec":200.0,"answer":"ok"}
{"kind":"throughput","system":"faust","workload":"W2","guarantee":"exactly_once","events":10,"events_per_sec":null,"answer":"mismatch: w2: 3 of 4 keys right"}
{"kind":"latency","system":"faustus","workload":"W0","guarantee":"exactly_once","rate":100,"p50_ms":3.5,"p99_ms":9.0,"samples":1000}
{"kind":"scale","system":"faustus","workload":"W2-keys-1000","guarantee":"exactly_once","events":2000,"events_per_sec":700.0,"peak_rss_mb":30.0,"answer":"ok"}
{"kind":"restore","system":"faustus","records":10,"seconds":0.5,"records_per_sec":20.0}
"#,
        )
        .expect("rows")
    }

    #[test]
    fn verdicts_and_rates() {
        let rows = rows();
        assert_eq!(
            verdict(&rows, &TARGETS[0], "exactly_once"),
            Verdict::Met(0.9)
        );
        assert_eq!(
            verdict(&rows, &TARGETS[2], "exactly_once"),
            Verdict::Missed(2.5)
        );
        assert!(matches!(
            verdict(&rows, &TARGETS[3], "exactly_once"),
            Verdict::NotMeasured(why) if why.starts_with("faust: mismatch")
        ));
        assert!(matches!(
            verdict(&rows, &TARGETS[0], "at_least_once"),
            Verdict::NotMeasured(_)
        ));
        assert_eq!(latency_rate(&rows, "W2", "exactly_once"), Some(100.0));
        assert_eq!(latency_rate(&rows, "W2", "at_least_once"), None);
    }

    #[test]
    fn agents_are_compared_with_the_ceiling_faust_and_the_ideal_rate() {
        let mut rows = rows();
        let row = |system: &str, rate: f64| {
            serde_json::from_str::<Value>(&format!(
                r#"{{"kind":"throughput","system":"{system}","workload":"W0","guarantee":"exactly_once","events":100,"events_per_sec":{rate},"answer":"ok"}}"#
            ))
            .expect("a row")
        };
        rows.push(row("faustus-agent", 600.0));
        rows.push(row("faustus-agent-io", 0.9 * IDEAL_IO_RATE));
        let target = |system: &str, peer: &str| {
            *TARGETS
                .iter()
                .find(|t| t.system == system && t.peer == peer)
                .expect("a target")
        };
        // The ceiling runs at 1,000 events/s in these rows.
        assert_eq!(
            verdict(&rows, &target("faustus-agent", "ceiling"), "exactly_once"),
            Verdict::Missed(0.6)
        );
        assert_eq!(
            verdict(&rows, &target("faustus-agent-io", IDEAL_IO), "exactly_once"),
            Verdict::Met(0.9)
        );
        assert!(matches!(
            verdict(&rows, &target("faustus-agent", "faust"), "exactly_once"),
            Verdict::NotMeasured(why) if why == "faust not run"
        ));
        let md = markdown(&rows, None);
        assert!(
            md.contains(
                "| faustus-agent ≥ 0.7 × ceiling on W0 | exactly_once | 0.60 | **missed** |"
            ),
            "{md}"
        );
    }

    #[test]
    fn the_json_has_the_issue_fields_and_nulls_for_failures() {
        let list = summary_json(&rows());
        let text = serde_json::to_string(&list).expect("json");
        assert!(
            text.starts_with(
                r#"[{"system":"ceiling","workload":"W0","guarantee":"exactly_once","events_per_sec":1000.0,"cpu_s_per_million":1.0,"peak_rss_mb":10.0,"p50_ms":null,"p99_ms":null,"answer":"ok""#
            ),
            "{text}"
        );
        let faustus_w0 = list
            .iter()
            .find(|o| o.system == "faustus" && o.workload == "W0")
            .expect("faustus W0");
        assert_eq!(faustus_w0.p99_ms, Some(9.0));
        let faust = list.iter().find(|o| o.system == "faust").expect("faust W2");
        assert_eq!(faust.events_per_sec, None);
        assert!(list.iter().any(|o| o.workload == "W2-restore"));
        assert!(list.iter().any(|o| o.workload == "W2-keys-1000"));
    }

    #[test]
    fn the_markdown_marks_targets() {
        let md = markdown(&rows(), Some("W2 is slow because of the profile below."));
        assert!(md.contains("| faustus ≥ 0.8 × ceiling on W0 | exactly_once | 0.90 | met |"));
        assert!(
            md.contains("| faustus ≥ 3 × kafka-streams on W2 | exactly_once | 2.50 | **missed** |")
        );
        assert!(md.contains("- faustus ≥ 3 × kafka-streams on W2 (exactly_once): 2.50"));
        assert!(md.contains("W2 is slow because"));
        assert!(
            md.contains(
                "| ceiling | exactly_once | 100 | 1,000 | **0.90** | 1.00 | 10 | – | – | ok |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| faustus | exactly_once | 100 | 900 | – | 2.00 | 20 | 3.5 | 9.0 | ok |")
        );
        assert!(md.contains("| 1000 | faustus | exactly_once | 2,000 | 700 | 30 | ok |"));
        assert!(md.contains("**CPU**: 2 cores"));
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
