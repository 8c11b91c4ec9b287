//! The results report: from the JSON lines the tools append (`bench-run`, `bench-latency`, the
//! restore probe, `scripts/bench`'s own `meta` and `not run` lines) to `latest.json` (the list
//! of figures per system, workload and guarantee) and `latest.md` (tables, ratios, targets).
//!
//! Row kinds read:
//! - `throughput` / `scale`: `system, workload, guarantee, events, events_per_sec_wall, wall_s,
//!   cpu_s_per_million, peak_rss_mb, answer` (`scale` rows have workload `W2-keys-<V>`), one
//!   row per repetition;
//! - `startup`: the same for a run on the small priming input: its `wall_s` is the system's
//!   start-up (the median over repetitions is used);
//! - `latency`: `system, workload, guarantee, rate, p50_ms, p99_ms, samples, missing`;
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
/// `kafka-streams-defaults` is Kafka Streams at its own defaults for the settings the matched
/// `kafka-streams` sets to the contract's (commit interval, producer linger and batch size);
/// targets compare with the matched one. `faustus-sensors-off` is faustus with its sensors
/// off (`--sensors off`): beside `faustus`, what the sensors cost. `faustus-fixed-epochs` is
/// faustus with every epoch as long as the commit interval (`--min-epoch-ms 100`): beside
/// `faustus`, what closing epochs early on sparse input does. `faustus-no-checkpoints` is faustus
/// without local checkpoints (`--state-dir off`): beside `faustus`, what writing them costs.
/// `faustus-interval-50ms` and `faustus-interval-20ms` are faustus with a shorter commit interval
/// (`--commit-interval-ms 50` / `20`): beside `faustus`, what a shorter interval buys in latency
/// and costs in throughput.
pub const SYSTEMS: [&str; 12] = [
    "ceiling",
    "faustus",
    "faustus-sensors-off",
    "faustus-fixed-epochs",
    "faustus-no-checkpoints",
    "faustus-interval-50ms",
    "faustus-interval-20ms",
    "faustus-agent",
    "faustus-agent-io",
    "kafka-streams",
    "kafka-streams-defaults",
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
/// The most seconds a restart from a local checkpoint may take, start-up included.
pub const RESTART_TARGET_S: f64 = 5.0;

/// The last restore probe row: from a local checkpoint, or from the changelog.
fn restore_row(rows: &[Value], from_checkpoint: bool) -> Option<&Value> {
    rows.iter().rev().find(|r| {
        s(r, "kind") == "restore"
            && r.get("from_checkpoint")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                == from_checkpoint
    })
}

/// Cores a system's run uses for processing: two (two threads or workers) for every system
/// but Faust, which runs as one worker process (one asyncio event loop).
pub fn cores(system: &str) -> f64 {
    if system == "faust" {
        1.0
    } else {
        2.0
    }
}

/// Whether targets against `peer` compare rates per core (the peer ran on fewer cores).
pub fn per_core(target: &Target) -> bool {
    target.peer != IDEAL_IO && cores(target.peer) != cores(target.system)
}

/// The target's ratio of two rates: per core when the two sides ran on different cores.
fn target_ratio(target: &Target, system_rate: f64, peer_rate: f64) -> f64 {
    if per_core(target) {
        (system_rate / cores(target.system)) / (peer_rate / cores(target.peer))
    } else {
        system_rate / peer_rate
    }
}

/// A ratio target: `system / peer >= min` on a workload, per guarantee (per core when the
/// peer ran on fewer cores: [`per_core`]).
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

type Key = (String, String, String);

fn key_of(r: &Value) -> Key {
    (
        s(r, "system").to_string(),
        s(r, "workload").to_string(),
        s(r, "guarantee").to_string(),
    )
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The workload whose start-up run stands for `workload` (a scale point's is W2's).
fn startup_workload(workload: &str) -> &str {
    if workload.starts_with("W2-keys-") {
        "W2"
    } else {
        workload
    }
}

/// Every repetition of one (system, workload, guarantee), summed up: medians over the runs,
/// which must all have given the right answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured<'a> {
    /// The raw rows, in order.
    pub rows: Vec<&'a Value>,
    /// `ok` when every run's answer was right; else the first wrong one.
    pub answer: String,
    /// Input events.
    pub events: Option<f64>,
    /// Median of events / wall (start to the right answer).
    pub wall_rate: Option<f64>,
    /// The start-up subtracted: the median time to the right answer of the start-up runs.
    pub startup_s: Option<f64>,
    /// Median of events / (wall − start-up); `None` without a start-up run.
    pub steady_rate: Option<f64>,
    /// Median of wall − start-up, seconds.
    pub steady_s: Option<f64>,
    /// Each repetition's (events / (wall − start-up), wall − start-up), in the order of `rows`;
    /// `None` without a start-up or without figures.
    pub steady_each: Vec<Option<(f64, f64)>>,
    /// Median CPU seconds per million events.
    pub cpu_s_per_million: Option<f64>,
    /// Median peak RSS, MB.
    pub peak_rss_mb: Option<f64>,
}

impl Measured<'_> {
    /// The steady rate to show: none for a run too short to have one.
    pub fn shown_steady(&self) -> Option<f64> {
        self.steady_rate.filter(|_| !self.short())
    }
    /// True when every run gave the right answer.
    pub fn ok(&self) -> bool {
        self.answer == "ok"
    }
    /// Too short for a steady rate: under [`SHORT_RUN_S`] after the start-up, in the median.
    pub fn short(&self) -> bool {
        self.steady_s.is_some_and(|d| d < SHORT_RUN_S)
    }
    /// The rate a verdict uses: the median steady rate of a right, long enough run.
    pub fn verdict_rate(&self) -> Result<f64, String> {
        if !self.ok() {
            return Err(short(&self.answer));
        }
        if self.short() {
            return Err(format!(
                "too short: {:.1} s after start-up",
                self.steady_s.unwrap_or(0.0)
            ));
        }
        self.steady_rate
            .ok_or_else(|| "no start-up run to subtract".to_string())
    }
}

/// The measured runs per (system, workload, guarantee): `throughput` and `scale` rows, every
/// repetition.
fn runs(rows: &[Value]) -> BTreeMap<Key, Measured<'_>> {
    let mut grouped: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    let mut startups: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    for r in rows {
        match s(r, "kind") {
            "throughput" | "scale" => grouped.entry(key_of(r)).or_default().push(r),
            "startup" if s(r, "answer") == "ok" => {
                if let Some(w) = f(r, "wall_s") {
                    startups.entry(key_of(r)).or_default().push(w);
                }
            }
            _ => {}
        }
    }
    grouped
        .into_iter()
        .map(|(key, rows)| {
            let answer = rows
                .iter()
                .map(|r| s(r, "answer"))
                .find(|a| *a != "ok")
                .unwrap_or("ok")
                .to_string();
            let ok = answer == "ok";
            let startup_key = (
                key.0.clone(),
                startup_workload(&key.1).to_string(),
                key.2.clone(),
            );
            let startup_s = startups.get(&startup_key).and_then(|v| median(v.clone()));
            let each = |field: &str| -> Option<f64> {
                ok.then(|| median(rows.iter().filter_map(|r| f(r, field)).collect()))
                    .flatten()
            };
            let steady_each: Vec<Option<(f64, f64)>> = rows
                .iter()
                .map(|r| {
                    let d = f(r, "wall_s")? - startup_s?;
                    Some((f(r, "events")? / d.max(1e-3), d))
                })
                .collect();
            let steady: Vec<(f64, f64)> = steady_each.iter().flatten().copied().collect();
            let measured = Measured {
                events: rows.last().and_then(|r| f(r, "events")),
                wall_rate: each("events_per_sec_wall"),
                startup_s,
                steady_rate: ok
                    .then(|| median(steady.iter().map(|x| x.0).collect()))
                    .flatten(),
                steady_s: ok
                    .then(|| median(steady.iter().map(|x| x.1).collect()))
                    .flatten(),
                cpu_s_per_million: each("cpu_s_per_million"),
                peak_rss_mb: each("peak_rss_mb"),
                steady_each,
                answer,
                rows,
            };
            (key, measured)
        })
        .collect()
}

/// The load of a latency run: `low` (half the slowest system's throughput, the default of rows
/// without a `load`) or `high` (half of Kafka Streams' throughput).
fn load_of(r: &Value) -> &str {
    match s(r, "load") {
        "" => LOW_LOAD,
        load => load,
    }
}

/// A latency run at half the slowest system's throughput.
pub const LOW_LOAD: &str = "low";
/// A latency run at half of Kafka Streams' (matched settings) throughput.
pub const HIGH_LOAD: &str = "high";

/// The latency per (system, workload, guarantee) at the low load: see [`latencies_at`].
fn latencies(rows: &[Value]) -> BTreeMap<Key, Value> {
    latencies_at(rows, LOW_LOAD)
}

/// The latency per (system, workload, guarantee) of the runs at `load`: over the runs at the
/// rate of the last such `latency` row, the median p50 and the median p99 (each on its own), the
/// most outputs missing in any of them, and how many runs there were (`runs`).
fn latencies_at(rows: &[Value], load: &str) -> BTreeMap<Key, Value> {
    let mut per_key: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| s(r, "kind") == "latency" && load_of(r) == load)
    {
        per_key.entry(key_of(r)).or_default().push(r);
    }
    per_key
        .into_iter()
        .filter_map(|(key, all)| {
            let last = *all.last()?;
            let same: Vec<&Value> = all
                .into_iter()
                .filter(|r| f(r, "rate") == f(last, "rate"))
                .collect();
            let mut merged = last.clone();
            if let Value::Object(m) = &mut merged {
                for field in ["p50_ms", "p99_ms"] {
                    let values = same.iter().filter_map(|r| f(r, field)).collect();
                    if let Some(v) = median(values) {
                        m.insert(field.to_string(), Value::from(v));
                    }
                }
                if let Some(v) = same.iter().filter_map(|r| f(r, "missing")).reduce(f64::max) {
                    m.insert("missing".to_string(), Value::from(v as u64));
                }
                m.insert("runs".to_string(), Value::from(same.len()));
            }
            Some((key, merged))
        })
        .collect()
}

/// The open-loop rate for latency runs of `workload` under `guarantee`: half the median
/// throughput of the slowest system that ran it with the right answer, or of `of` when given
/// (its steady rate, or its wall-clock rate when the run was too short or had no start-up run).
pub fn latency_rate(
    rows: &[Value],
    workload: &str,
    guarantee: &str,
    of: Option<&str>,
) -> Option<f64> {
    runs(rows)
        .iter()
        .filter(|((sys, w, g), m)| {
            w == workload && g == guarantee && m.ok() && of.is_none_or(|o| o == sys)
        })
        .filter_map(|(_, m)| {
            if m.short() {
                m.wall_rate
            } else {
                m.steady_rate.or(m.wall_rate)
            }
        })
        .min_by(f64::total_cmp)
        .map(|r| r / 2.0)
}

/// `latest.json`: one object per measured (system, workload, guarantee) with the issue's fields
/// first (`null` where not measured), then the run's details; plus the restore figure.
pub fn summary_json(rows: &[Value]) -> Vec<Summary> {
    let lat = latencies(rows);
    let runs = runs(rows);
    let mut keys: Vec<&Key> = runs.keys().chain(lat.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let run = runs.get(key);
        let l = lat.get(key);
        let mut details = BTreeMap::new();
        if let Some(m) = run {
            details.insert("answer".to_string(), Value::from(m.answer.clone()));
            details.insert("runs".to_string(), Value::from(m.rows.len()));
            details.insert("short_run".to_string(), Value::from(m.short()));
            for (k, v) in [
                ("events", m.events),
                ("events_per_sec_wall", m.wall_rate),
                ("startup_s", m.startup_s),
                ("steady_s", m.steady_s),
            ] {
                details.insert(k.to_string(), v.map_or(Value::Null, Value::from));
            }
            if let Some(v) = m.rows.last().and_then(|r| r.get("input_suffix")) {
                details.insert("input_suffix".to_string(), v.clone());
            }
        }
        if let Some(l) = l {
            for (k, name) in [
                ("rate", "latency_rate"),
                ("samples", "latency_samples"),
                ("missing", "latency_missing"),
                ("runs", "latency_runs"),
            ] {
                if let Some(v) = l.get(k) {
                    details.insert(name.to_string(), v.clone());
                }
            }
        }
        out.push(Summary {
            system: key.0.clone(),
            workload: key.1.clone(),
            guarantee: Some(key.2.clone()),
            events_per_sec: run.and_then(|m| m.shown_steady()),
            cpu_s_per_million: run.and_then(|m| m.cpu_s_per_million),
            peak_rss_mb: run.and_then(|m| m.peak_rss_mb),
            p50_ms: l.and_then(|l| f(l, "p50_ms")),
            p99_ms: l.and_then(|l| f(l, "p99_ms")),
            details,
        });
    }
    for (from_checkpoint, workload) in [(false, "W2-restore"), (true, "W2-restart-checkpoint")] {
        let Some(r) = restore_row(rows, from_checkpoint) else {
            continue;
        };
        let mut details = BTreeMap::new();
        for k in ["records", "keys", "seconds"] {
            if let Some(v) = r.get(k) {
                details.insert(k.to_string(), v.clone());
            }
        }
        out.push(Summary {
            system: s(r, "system").to_string(),
            workload: workload.into(),
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

/// The verdict on a target, and the ratio of the median steady rates when measured.
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
    let side = |system: &str| match runs.get(&(
        system.to_string(),
        target.workload.to_string(),
        guarantee.to_string(),
    )) {
        _ if system == IDEAL_IO => Ok(IDEAL_IO_RATE),
        None => Err(format!("{system} not run")),
        Some(m) => m.verdict_rate().map_err(|e| format!("{system}: {e}")),
    };
    match (side(target.system), side(target.peer)) {
        (Ok(a), Ok(b)) if b > 0.0 => {
            let ratio = target_ratio(target, a, b);
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

/// The ratio of `target`'s median wall-clock rates under `guarantee` (shown beside the
/// verdict's steady ratio; no verdict rests on it).
pub fn wall_ratio(rows: &[Value], target: &Target, guarantee: &str) -> Option<f64> {
    let runs = runs(rows);
    let side = |system: &str| {
        if system == IDEAL_IO {
            return Some(IDEAL_IO_RATE);
        }
        runs.get(&(
            system.to_string(),
            target.workload.to_string(),
            guarantee.to_string(),
        ))
        .filter(|m| m.ok())
        .and_then(|m| m.wall_rate)
    };
    match (side(target.system), side(target.peer)) {
        (Some(a), Some(b)) if b > 0.0 => Some(target_ratio(target, a, b)),
        _ => None,
    }
}

/// faustus' W0 at_least_once steady rate ÷ the ceiling's, in each repetition: at least this.
pub const W0_EACH_RUN_MIN: f64 = 0.9;
/// The repetitions the W0 target above needs, each meeting it.
pub const W0_EACH_RUN_COUNT: usize = 3;
/// faustus' W2 steady rate at the largest scale point ÷ at the smallest: at least this.
pub const GROWTH_MIN: f64 = 0.5;
/// faustus' peak RSS at the largest scale point ÷ its keys: at most this many bytes.
pub const BYTES_PER_KEY_MAX: f64 = 120.0;
/// faustus' latency p50 ÷ Kafka Streams' (matched settings) at the same open-loop rate: at most
/// this; its p99 at most Kafka Streams' p99.
pub const P50_RATIO_MAX: f64 = 0.8;

/// A target judged on one figure of faustus' own, or on a pair of latencies, rather than on a
/// ratio of two systems' median rates.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureTarget {
    /// What the target says.
    pub name: String,
    /// The guarantee it is judged under.
    pub guarantee: &'static str,
    /// The figure, as shown.
    pub figure: String,
    /// Met (`true`) or missed (`false`); why it was not measured.
    pub verdict: Result<bool, String>,
}

/// Each repetition's steady rate, in order: `None` for a wrong one, one too short for a steady
/// rate, or one without a start-up to subtract.
fn steady_each(m: &Measured) -> Vec<Option<f64>> {
    m.rows
        .iter()
        .zip(&m.steady_each)
        .map(|(r, each)| {
            let (rate, d) = (*each)?;
            (s(r, "answer") == "ok" && d >= SHORT_RUN_S).then_some(rate)
        })
        .collect()
}

/// The targets judged on single figures: W0 at_least_once against the ceiling in each
/// repetition, W2's growth and memory per key over the scale curve, and latency against Kafka
/// Streams at the same open-loop rate.
pub fn figure_targets(rows: &[Value]) -> Vec<FigureTarget> {
    let runs = runs(rows);
    let lat = latencies(rows);
    let key = |system: &str, workload: &str, guarantee: &str| {
        (
            system.to_string(),
            workload.to_string(),
            guarantee.to_string(),
        )
    };
    let mut out = Vec::new();

    let g = "at_least_once";
    let name = format!(
        "faustus ≥ {W0_EACH_RUN_MIN} × ceiling on W0 in each of {W0_EACH_RUN_COUNT} repetitions"
    );
    let (figure, verdict) = match (
        runs.get(&key("faustus", "W0", g)),
        runs.get(&key("ceiling", "W0", g)),
    ) {
        (Some(a), Some(b)) => {
            let ratios: Vec<Option<f64>> = steady_each(a)
                .into_iter()
                .zip(steady_each(b))
                .map(|pair| match pair {
                    (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                    _ => None,
                })
                .collect();
            let figure = ratios
                .iter()
                .map(|r| num(*r, 2))
                .collect::<Vec<_>>()
                .join(" · ");
            let verdict = if ratios.len() < W0_EACH_RUN_COUNT {
                Err(format!(
                    "{} paired repetitions, {W0_EACH_RUN_COUNT} needed",
                    ratios.len()
                ))
            } else if ratios.iter().any(Option::is_none) {
                Err("a repetition was wrong or too short".into())
            } else {
                Ok(ratios.iter().flatten().all(|r| *r >= W0_EACH_RUN_MIN))
            };
            (figure, verdict)
        }
        _ => ("–".into(), Err("faustus or the ceiling not run".into())),
    };
    out.push(FigureTarget {
        name,
        guarantee: g,
        figure,
        verdict,
    });

    for g in GUARANTEES {
        let mut points: Vec<(u64, &Measured)> = runs
            .iter()
            .filter(|((sys, w, rg), _)| sys == "faustus" && rg == g && w.starts_with("W2-keys-"))
            .filter_map(|((_, w, _), m)| Some((w.trim_start_matches("W2-keys-").parse().ok()?, m)))
            .collect();
        points.sort_by_key(|p| p.0);
        let (Some(&(lo_keys, lo)), Some(&(hi_keys, hi))) = (points.first(), points.last()) else {
            continue;
        };
        if hi_keys == lo_keys {
            continue;
        }
        let (figure, verdict) = match (hi.verdict_rate(), lo.verdict_rate()) {
            (Ok(h), Ok(l)) if l > 0.0 => {
                let r = h / l;
                (
                    format!(
                        "{r:.2} ({} / {} events/s)",
                        group(h as i64),
                        group(l as i64)
                    ),
                    Ok(r >= GROWTH_MIN),
                )
            }
            (Ok(_), Ok(_)) => ("–".into(), Err("0 events/s at the smallest point".into())),
            (Err(e), _) | (_, Err(e)) => ("–".into(), Err(e)),
        };
        out.push(FigureTarget {
            name: format!(
                "faustus W2 at {} keys ≥ {GROWTH_MIN} × at {} keys",
                group(hi_keys as i64),
                group(lo_keys as i64)
            ),
            guarantee: g,
            figure,
            verdict,
        });
        let (figure, verdict) = match hi.peak_rss_mb.filter(|_| hi.ok()) {
            Some(mb) => {
                let bytes = mb * 1_048_576.0 / hi_keys as f64;
                (
                    format!("{bytes:.0} B ({} MB)", group(mb as i64)),
                    Ok(bytes <= BYTES_PER_KEY_MAX),
                )
            }
            None => ("–".into(), Err(short(&hi.answer))),
        };
        out.push(FigureTarget {
            name: format!(
                "faustus peak RSS ≤ {BYTES_PER_KEY_MAX} B per key at {} keys (W2)",
                group(hi_keys as i64)
            ),
            guarantee: g,
            figure,
            verdict,
        });
    }

    let high = latencies_at(rows, HIGH_LOAD);
    for (lat, half_of) in [(&lat, ""), (&high, " (half of kafka-streams' throughput)")] {
        for w in ["W0", "W1", "W2", "W3", "W4"] {
            for g in GUARANTEES {
                let (Some(a), Some(b)) = (
                    lat.get(&key("faustus", w, g)),
                    lat.get(&key("kafka-streams", w, g)),
                ) else {
                    continue;
                };
                let at = f(a, "rate").map_or(String::new(), |r| {
                    format!(" at {} events/s{half_of}", group(r as i64))
                });
                for (field, max, label) in [
                    ("p50_ms", P50_RATIO_MAX, format!("≤ {P50_RATIO_MAX} ×")),
                    ("p99_ms", 1.0, "≤".to_string()),
                ] {
                    let p = &field[..3];
                    let (figure, verdict) = match (f(a, field), f(b, field)) {
                        (Some(x), Some(y)) if y > 0.0 => (
                            format!("{:.2} ({x:.1} / {y:.1} ms)", x / y),
                            Ok(x / y <= max),
                        ),
                        _ => ("–".into(), Err("no latency figure".into())),
                    };
                    out.push(FigureTarget {
                        name: format!("faustus {p} {label} kafka-streams {p} on {w}{at}"),
                        guarantee: g,
                        figure,
                        verdict,
                    });
                }
            }
        }
    }
    out
}

/// A run with less than this many seconds between its start-up (the start-up run's time) and
/// the right answer, in the median, is too short for a steady rate: the report marks it and
/// gives no verdict on it.
pub const SHORT_RUN_S: f64 = 5.0;

fn short(answer: &str) -> String {
    let a = answer.replace('|', "/");
    if a.chars().count() > 120 {
        format!("{}…", a.chars().take(120).collect::<String>())
    } else {
        a
    }
}

/// The latency runs of `w` at the high load (half of Kafka Streams' throughput), as a table of
/// their own under the workload's.
fn high_load_table(md: &mut String, high: &BTreeMap<Key, Value>, w: &str) {
    let here: Vec<(&Key, &Value)> = high.iter().filter(|((_, lw, _), _)| lw == w).collect();
    if here.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nLatency at half of kafka-streams' throughput (open loop):\n\n\
         | system | guarantee | rate | runs | p50 ms | p99 ms | missing |\n\
         |---|---|---|---|---|---|---|"
    );
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.1}"));
    for ((system, _, g), l) in here {
        let _ = writeln!(
            md,
            "| {system} | {g} | {} | {} | {} | {} | {} |",
            f(l, "rate").map_or("–".to_string(), |r| format!("{}/s", group(r as i64))),
            f(l, "runs").map_or(0, |n| n as u64),
            ms(f(l, "p50_ms")),
            ms(f(l, "p99_ms")),
            f(l, "missing").map_or("–".to_string(), |n| group(n as i64)),
        );
    }
}

/// `latest.md`: machine and versions, the targets, a table per workload, the scale curve, the
/// restore figure, and where targets are missed (with `notes`, free text, appended).
pub fn markdown(rows: &[Value], notes: Option<&str>) -> String {
    let mut md = String::new();
    let runs = runs(rows);
    let lat = latencies(rows);
    let high = latencies_at(rows, HIGH_LOAD);
    let _ = writeln!(md, "# Side-by-side benchmark results\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (method: `benches/README.md`); raw rows in \
         `latest.jsonl`, figures in `latest.json`. Two rates per run: **wall** = events / \
         (start → right answer); **steady** = events / (wall − start-up), where start-up is the \
         median time to the right answer of the same system on a small priming input (its fixed \
         cost: process, connections, group join, first commit). Each figure is the median over \
         the repetitions (`runs`); every repetition must have given the right answer, and the \
         output must stay right for a settling period after it first matched. Targets are \
         judged on the median steady rates, the wall-clock ratio beside them; a run under \
         {SHORT_RUN_S} s after start-up gets no verdict.\n"
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
    let _ = writeln!(
        md,
        "| target | guarantee | ratio (steady) | ratio (wall clock) | verdict |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let mut missed = Vec::new();
    for t in &TARGETS {
        for g in GUARANTEES {
            let v = verdict(rows, t, g);
            let mut name = format!("{} ≥ {} × {} on {}", t.system, t.min, t.peer, t.workload);
            if per_core(t) {
                name.push_str(" (per core)");
            }
            let (ratio, text) = match &v {
                Verdict::Met(r) => (format!("{r:.2}"), "met".to_string()),
                Verdict::Missed(r) => {
                    missed.push(format!("{name} ({g}): {r:.2}"));
                    (format!("{r:.2}"), "**missed**".to_string())
                }
                Verdict::NotMeasured(why) => ("–".into(), format!("not measured ({why})")),
            };
            let wall = num(wall_ratio(rows, t, g), 2);
            let _ = writeln!(md, "| {name} | {g} | {ratio} | {wall} | {text} |");
        }
    }
    let restore = restore_row(rows, false);
    let restart = restore_row(rows, true);
    let restart_line = match restart.and_then(|r| f(r, "seconds")) {
        Some(seconds) => {
            let met = seconds <= RESTART_TARGET_S;
            if !met {
                missed.push(format!("restart from a checkpoint: {seconds:.1} s"));
            }
            format!(
                "| restart from a local checkpoint ≤ 5 s ({} keys) | – | {seconds:.1} s | – | {} |",
                group(f(restart.expect("found"), "keys").unwrap_or(0.0) as i64),
                if met { "met" } else { "**missed**" }
            )
        }
        None => "| restart from a local checkpoint ≤ 5 s | – | – | – | not measured |".into(),
    };
    let restore_row = match restore.and_then(|r| f(r, "records_per_sec")) {
        Some(rps) => {
            let met = rps >= RESTORE_TARGET;
            if !met {
                missed.push(format!("restore: {} records/s", group(rps as i64)));
            }
            format!(
                "| restore ≥ 1,000,000 changelog records/s | – | {} /s | – | {} |",
                group(rps as i64),
                if met { "met" } else { "**missed**" }
            )
        }
        None => "| restore ≥ 1,000,000 changelog records/s | – | – | – | not measured |".into(),
    };
    let _ = writeln!(md, "{restore_row}\n{restart_line}");
    for t in figure_targets(rows) {
        let text = match &t.verdict {
            Ok(true) => "met".to_string(),
            Ok(false) => {
                missed.push(format!("{} ({}): {}", t.name, t.guarantee, t.figure));
                "**missed**".to_string()
            }
            Err(why) => format!("not measured ({why})"),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | – | {text} |",
            t.name, t.guarantee, t.figure
        );
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "Kafka Streams targets use the matched settings (`kafka-streams`: the contract's commit \
         interval and producer settings); `kafka-streams-defaults` is shown beside it in the \
         tables. \"(per core)\": Faust runs as one worker process, one core for processing, \
         against two threads or workers for every other system, so its targets compare rates \
         per core (faustus' rate ÷ 2 against Faust's); the tables show plain ratios.\n"
    );

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
            "| system | guarantee | events | runs | events/s wall | start-up s | events/s steady \
             | faustus ÷ this (steady / wall) | CPU s / M events | peak RSS MB | p50 ms | p99 ms \
             | latency: missing | answer |"
        );
        let _ = writeln!(
            md,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut short_runs = false;
        for g in GUARANTEES {
            let faustus = runs.get(&("faustus".into(), w.into(), g.into()));
            for sys in SYSTEMS {
                let Some(m) = runs.get(&(sys.into(), w.into(), g.into())) else {
                    continue;
                };
                let l = lat.get(&(sys.into(), w.into(), g.into()));
                let ratio = match faustus.filter(|f| sys != "faustus" && f.ok() && m.ok()) {
                    Some(fm) => {
                        let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
                            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                            _ => None,
                        };
                        let mark = if sys == reference || (w == "W2" && sys == "faust") {
                            "**"
                        } else {
                            ""
                        };
                        format!(
                            "{mark}{}{mark} / {}",
                            num(r(fm.shown_steady(), m.shown_steady()), 2),
                            num(r(fm.wall_rate, m.wall_rate), 2)
                        )
                    }
                    None => "–".into(),
                };
                let mut answer = short(&m.answer);
                if m.ok() && m.short() {
                    answer.push_str(" (short run †)");
                    short_runs = true;
                }
                let _ = writeln!(
                    md,
                    "| {sys} | {g} | {} | {} | {} | {} | {} | {ratio} | {} | {} | {} | {} | {} | {} |",
                    num(m.events, 0),
                    m.rows.len(),
                    num(m.wall_rate, 0),
                    num(m.startup_s, 1),
                    num(m.shown_steady(), 0),
                    num(m.cpu_s_per_million, 2),
                    num(m.peak_rss_mb, 0),
                    num(l.and_then(|l| f(l, "p50_ms")), 1),
                    num(l.and_then(|l| f(l, "p99_ms")), 1),
                    num(l.and_then(|l| f(l, "missing")), 0),
                    answer
                );
            }
        }
        if short_runs {
            let _ = writeln!(
                md,
                "\n† Under {SHORT_RUN_S} s between start-up and the right answer: too short for a \
                 steady rate (start-up dominates), so none is shown and no target verdict rests \
                 on it; use larger inputs."
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
        high_load_table(&mut md, &high, w);
        md.push('\n');
    }

    let scale: Vec<(&Key, &Measured)> = runs
        .iter()
        .filter(|(_, m)| m.rows.iter().any(|r| s(r, "kind") == "scale"))
        .collect();
    if !scale.is_empty() {
        let _ = writeln!(md, "## W2 scale curve (distinct keys)\n");
        let _ = writeln!(
            md,
            "| keys | system | guarantee | words | runs | events/s wall | events/s steady | \
             peak RSS MB | answer |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
        let mut sorted = scale;
        sorted.sort_by_key(|(k, _)| {
            let keys: u64 = k.1.trim_start_matches("W2-keys-").parse().unwrap_or(0);
            let sys = SYSTEMS.iter().position(|x| *x == k.0);
            (keys, sys, k.2.clone())
        });
        for (k, m) in sorted {
            let mut answer = short(&m.answer);
            if m.ok() && m.short() {
                answer.push_str(" (short run)");
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                k.1.trim_start_matches("W2-keys-"),
                k.0,
                k.2,
                num(m.events, 0),
                m.rows.len(),
                num(m.wall_rate, 0),
                num(m.shown_steady(), 0),
                num(m.peak_rss_mb, 0),
                answer
            );
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Restore\n");
    match restore {
        Some(r) => {
            let _ = writeln!(
                md,
                "From its changelog (`--state-dir off`, as on a fresh machine), faustus restored a \
                 table of {} changelog records in {} s: **{} records/s** (target 1,000,000).\n",
                num(f(r, "records"), 0),
                num(f(r, "seconds"), 2),
                num(f(r, "records_per_sec"), 0)
            );
        }
        None => {
            let _ = writeln!(md, "From the changelog: not measured.\n");
        }
    }
    match restart {
        Some(r) => {
            let _ = writeln!(
                md,
                "From the local checkpoint the largest scale run kept, the same table of {} keys \
                 was restored in **{} s** (target 5 s).\n",
                num(f(r, "keys"), 0),
                num(f(r, "seconds"), 2),
            );
        }
        None => {
            let _ = writeln!(md, "From a local checkpoint: not measured.\n");
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

    /// A throughput row: `events` in `wall_s` seconds.
    fn run(system: &str, workload: &str, events: u64, wall_s: f64) -> String {
        format!(
            r#"{{"kind":"throughput","system":"{system}","workload":"{workload}","guarantee":"exactly_once","events":{events},"events_per_sec_wall":{},"wall_s":{wall_s},"cpu_s_per_million":1.0,"peak_rss_mb":10.0,"answer":"ok"}}"#,
            events as f64 / wall_s
        )
    }

    fn startup(system: &str, workload: &str, wall_s: f64) -> String {
        format!(
            r#"{{"kind":"startup","system":"{system}","workload":"{workload}","guarantee":"exactly_once","events":100,"wall_s":{wall_s},"answer":"ok"}}"#
        )
    }

    /// The ceiling at 1,000 events/s steady (2 s start-up), faustus at 900 (1 s start-up, two
    /// repetitions with medians 900), Kafka Streams at 200 on W2, a wrong Faust.
    fn rows() -> Vec<Value> {
        let lines = [
            r#"{"kind":"meta","key":"CPU","value":"2 cores"}"#.to_string(),
            startup("ceiling", "W0", 2.0),
            run("ceiling", "W0", 10_000, 12.0),
            startup("faustus", "W0", 1.0),
            startup("faustus", "W0", 3.0),
            startup("faustus", "W0", 1.0),
            run("faustus", "W0", 9_000, 11.0),
            run("faustus", "W0", 9_000, 31.0),
            run("faustus", "W0", 9_000, 8.5),
            startup("faustus", "W2", 1.0),
            run("faustus", "W2", 5_000, 11.0),
            startup("kafka-streams", "W2", 10.0),
            run("kafka-streams", "W2", 2_000, 20.0),
            r#"{"kind":"throughput","system":"faust","workload":"W2","guarantee":"exactly_once","events":10,"events_per_sec_wall":null,"answer":"mismatch: w2: 3 of 4 keys right"}"#.to_string(),
            r#"{"kind":"latency","system":"faustus","workload":"W0","guarantee":"exactly_once","rate":100,"p50_ms":3.5,"p99_ms":9.0,"samples":1000,"missing":2}"#.to_string(),
            r#"{"kind":"scale","system":"faustus","workload":"W2-keys-1000","guarantee":"exactly_once","events":7000,"events_per_sec_wall":636.4,"wall_s":11.0,"peak_rss_mb":30.0,"answer":"ok"}"#.to_string(),
            r#"{"kind":"restore","system":"faustus","records":10,"seconds":0.5,"records_per_sec":20.0}"#.to_string(),
            r#"{"kind":"restore","system":"faustus","from_checkpoint":true,"keys":10,"records":10,"seconds":0.25,"records_per_sec":40.0}"#.to_string(),
        ];
        parse_rows(&lines.join("\n")).expect("rows")
    }

    fn close(v: &Verdict, want: f64) -> bool {
        match v {
            Verdict::Met(r) | Verdict::Missed(r) => (r - want).abs() < 1e-9,
            Verdict::NotMeasured(_) => false,
        }
    }

    #[test]
    fn latency_is_the_median_of_the_runs_at_the_last_rate() {
        let row = |rate: u32, p50: f64, p99: f64, missing: u32| {
            serde_json::from_str::<Value>(&format!(
                r#"{{"kind":"latency","system":"faustus","workload":"W1","guarantee":"exactly_once","rate":{rate},"p50_ms":{p50},"p99_ms":{p99},"samples":100,"missing":{missing}}}"#
            ))
            .unwrap()
        };
        let rows = vec![
            row(2000, 1.0, 1.0, 0),
            row(1500, 50.0, 120.0, 0),
            row(1500, 40.0, 100.0, 3),
            row(1500, 60.0, 90.0, 0),
        ];
        let lat = latencies(&rows);
        let l = &lat[&("faustus".into(), "W1".into(), "exactly_once".into())];
        assert_eq!(f(l, "p50_ms"), Some(50.0));
        assert_eq!(f(l, "p99_ms"), Some(100.0));
        assert_eq!(f(l, "missing"), Some(3.0));
        assert_eq!(l["runs"], 3);
        assert_eq!(f(l, "rate"), Some(1500.0));
    }

    #[test]
    fn latency_at_the_high_load_is_kept_apart_and_judged_on_its_own() {
        let row = |system: &str, load: Option<&str>, rate: u32, p50: f64, p99: f64| {
            let load = load.map_or(String::new(), |l| format!(r#","load":"{l}""#));
            serde_json::from_str::<Value>(&format!(
                r#"{{"kind":"latency","system":"{system}","workload":"W0","guarantee":"exactly_once","rate":{rate}{load},"p50_ms":{p50},"p99_ms":{p99},"samples":100,"missing":0}}"#
            ))
            .unwrap()
        };
        // Beside throughput runs of W0 (its section in the markdown).
        let mut rows = rows();
        rows.extend([
            row("faustus", None, 1000, 20.0, 40.0),
            row("kafka-streams", None, 1000, 60.0, 120.0),
            row("faustus", Some("high"), 30000, 80.0, 900.0),
            row("kafka-streams", Some("high"), 30000, 85.0, 240.0),
        ]);
        // The low load's figures are those of the rows without a load.
        let low = latencies(&rows);
        let key = (
            "faustus".to_string(),
            "W0".to_string(),
            "exactly_once".to_string(),
        );
        assert_eq!(f(&low[&key], "p50_ms"), Some(20.0));
        assert_eq!(
            f(&latencies_at(&rows, HIGH_LOAD)[&key], "p99_ms"),
            Some(900.0)
        );
        let targets = figure_targets(&rows);
        let find = |name: &str| {
            targets
                .iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("a target {name:?} in {targets:?}"))
                .verdict
                .clone()
        };
        assert_eq!(
            find("faustus p50 ≤ 0.8 × kafka-streams p50 on W0 at 1,000 events/s"),
            Ok(true)
        );
        let high = "on W0 at 30,000 events/s (half of kafka-streams' throughput)";
        // 80 / 85 = 0.94 > 0.8; 900 > 240.
        assert_eq!(
            find(&format!("faustus p50 ≤ 0.8 × kafka-streams p50 {high}")),
            Ok(false)
        );
        assert_eq!(
            find(&format!("faustus p99 ≤ kafka-streams p99 {high}")),
            Ok(false)
        );
        let md = markdown(&rows, None);
        assert!(
            md.contains("Latency at half of kafka-streams' throughput"),
            "{md}"
        );
        assert!(
            md.contains("| faustus | exactly_once | 30,000/s | 1 | 80.0 | 900.0 | 0 |"),
            "{md}"
        );
    }

    #[test]
    fn the_latency_rate_is_half_the_slowest_systems_or_half_the_named_ones() {
        let rows = rows();
        let slowest = latency_rate(&rows, "W2", "exactly_once", None).expect("a rate");
        let of_faustus = latency_rate(&rows, "W2", "exactly_once", Some("faustus"));
        assert!(of_faustus.expect("faustus ran W2") > slowest);
        assert_eq!(
            latency_rate(&rows, "W2", "exactly_once", Some("nobody")),
            None
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn verdicts_use_median_steady_rates() {
        let rows = rows();
        let runs = runs(&rows);
        let faustus = &runs[&("faustus".into(), "W0".into(), "exactly_once".into())];
        // Start-up 1 s (median of 1, 3, 1); steady rates 900, 300, 1200: median 900.
        assert_eq!(faustus.rows.len(), 3);
        assert_eq!(faustus.startup_s, Some(1.0));
        assert!((faustus.steady_rate.expect("steady") - 900.0).abs() < 1e-9);
        assert!((faustus.wall_rate.expect("wall") - 9_000.0 / 11.0).abs() < 1e-9);
        let v = verdict(&rows, &TARGETS[0], "exactly_once");
        assert!(matches!(v, Verdict::Met(_)) && close(&v, 0.9), "{v:?}");
        let wall = wall_ratio(&rows, &TARGETS[0], "exactly_once").expect("wall ratio");
        assert!((wall - (9_000.0 / 11.0) / (10_000.0 / 12.0)).abs() < 1e-9);
        let v = verdict(&rows, &TARGETS[2], "exactly_once");
        assert!(matches!(v, Verdict::Missed(_)) && close(&v, 2.5), "{v:?}");
        assert!(matches!(
            verdict(&rows, &TARGETS[3], "exactly_once"),
            Verdict::NotMeasured(why) if why.starts_with("faust: mismatch")
        ));
        assert!(matches!(
            verdict(&rows, &TARGETS[0], "at_least_once"),
            Verdict::NotMeasured(_)
        ));
        assert_eq!(latency_rate(&rows, "W2", "exactly_once", None), Some(100.0));
        assert_eq!(latency_rate(&rows, "W2", "at_least_once", None), None);
    }

    #[test]
    fn a_short_run_a_failed_repetition_or_a_missing_start_up_gives_no_verdict() {
        let mut rows = rows();
        // Kafka Streams' start-up leaves 4 s: too short.
        rows.push(serde_json::from_str(&startup("kafka-streams", "W2", 16.0)).expect("row"));
        rows.push(serde_json::from_str(&startup("kafka-streams", "W2", 16.0)).expect("row"));
        assert!(matches!(
            verdict(&rows, &TARGETS[2], "exactly_once"),
            Verdict::NotMeasured(why) if why.contains("too short")
        ));
        assert!(markdown(&rows, None).contains("(short run †)"));
        // One wrong repetition of three.
        let mut rows = self::rows();
        rows.push(
            serde_json::from_str(
                r#"{"kind":"throughput","system":"ceiling","workload":"W0","guarantee":"exactly_once","events":10000,"answer":"timeout: late"}"#,
            )
            .expect("row"),
        );
        assert!(matches!(
            verdict(&rows, &TARGETS[0], "exactly_once"),
            Verdict::NotMeasured(why) if why == "ceiling: timeout: late"
        ));
        // No start-up run.
        let rows: Vec<Value> = self::rows()
            .into_iter()
            .filter(|r| !(s(r, "kind") == "startup" && s(r, "system") == "ceiling"))
            .collect();
        assert!(matches!(
            verdict(&rows, &TARGETS[0], "exactly_once"),
            Verdict::NotMeasured(why) if why.contains("no start-up run")
        ));
    }

    #[test]
    fn agents_are_compared_with_the_ceiling_faust_and_the_ideal_rate() {
        let mut rows = rows();
        for line in [
            startup("faustus-agent", "W0", 2.0),
            run("faustus-agent", "W0", 6_000, 12.0),
            startup("faustus-agent-io", "W0", 2.0),
            run(
                "faustus-agent-io",
                "W0",
                (0.9 * IDEAL_IO_RATE * 10.0) as u64,
                12.0,
            ),
        ] {
            rows.push(serde_json::from_str(&line).expect("a row"));
        }
        let target = |system: &str, peer: &str| {
            *TARGETS
                .iter()
                .find(|t| t.system == system && t.peer == peer)
                .expect("a target")
        };
        // The ceiling runs at 1,000 events/s steady in these rows.
        let v = verdict(&rows, &target("faustus-agent", "ceiling"), "exactly_once");
        assert!(matches!(v, Verdict::Missed(_)) && close(&v, 0.6), "{v:?}");
        let v = verdict(&rows, &target("faustus-agent-io", IDEAL_IO), "exactly_once");
        assert!(matches!(v, Verdict::Met(_)) && close(&v, 0.9), "{v:?}");
        assert!(matches!(
            verdict(&rows, &target("faustus-agent", "faust"), "exactly_once"),
            Verdict::NotMeasured(why) if why == "faust not run"
        ));
        let md = markdown(&rows, None);
        assert!(
            md.contains(
                "| faustus-agent ≥ 0.7 × ceiling on W0 | exactly_once | 0.60 | 0.60 | **missed** |"
            ),
            "{md}"
        );
    }

    #[test]
    fn figure_targets_judge_each_repetition_the_scale_curve_and_latency() {
        let alo = |line: String| line.replace("exactly_once", "at_least_once");
        let with = |faustus_events: [u64; 3]| {
            let mut rows = rows();
            let mut lines = vec![
                alo(startup("ceiling", "W0", 2.0)),
                alo(startup("faustus", "W0", 1.0)),
            ];
            for events in faustus_events {
                // The ceiling at 1,000 events/s steady, faustus at events / 10 s.
                lines.push(alo(run("ceiling", "W0", 10_000, 12.0)));
                lines.push(alo(run("faustus", "W0", events, 11.0)));
            }
            lines.push(
                r#"{"kind":"scale","system":"faustus","workload":"W2-keys-10000000","guarantee":"exactly_once","events":20000,"events_per_sec_wall":392.2,"wall_s":51.0,"peak_rss_mb":2000.0,"answer":"ok"}"#.to_string(),
            );
            lines.push(
                r#"{"kind":"latency","system":"kafka-streams","workload":"W0","guarantee":"exactly_once","rate":100,"p50_ms":5.0,"p99_ms":7.5,"samples":1000,"missing":0}"#.to_string(),
            );
            for line in lines {
                rows.push(serde_json::from_str(&line).expect("a row"));
            }
            rows
        };
        let targets = figure_targets(&with([9_500, 8_000, 9_500]));
        let find = |start: &str| {
            targets
                .iter()
                .find(|t| t.name.starts_with(start))
                .unwrap_or_else(|| panic!("a target {start:?} in {targets:?}"))
                .clone()
        };
        let each = find("faustus ≥ 0.9 × ceiling on W0 in each of 3");
        assert_eq!(each.figure, "0.95 · 0.80 · 0.95");
        assert_eq!(each.verdict, Ok(false));
        let each = figure_targets(&with([9_500, 9_100, 9_500]))[0].clone();
        assert_eq!(each.verdict, Ok(true), "{each:?}");
        // W2: 400 events/s at 10^7 keys against 700 at 1,000.
        let growth = find("faustus W2 at 10,000,000 keys ≥ 0.5 × at 1,000 keys");
        assert_eq!(growth.figure, "0.57 (400 / 700 events/s)");
        assert_eq!(growth.verdict, Ok(true));
        let memory = find("faustus peak RSS ≤ 120 B per key at 10,000,000 keys");
        assert_eq!(memory.figure, "210 B (2,000 MB)");
        assert_eq!(memory.verdict, Ok(false));
        let p50 = find("faustus p50 ≤ 0.8 × kafka-streams p50 on W0 at 100 events/s");
        assert_eq!(
            (p50.figure.as_str(), p50.verdict),
            ("0.70 (3.5 / 5.0 ms)", Ok(true))
        );
        let p99 = find("faustus p99 ≤ kafka-streams p99 on W0");
        assert_eq!(p99.verdict, Ok(false));
        // Two repetitions are not enough.
        let mut rows = with([9_500, 9_500, 9_500]);
        let mut dropped = 0;
        rows.retain(|r| {
            let ceiling_run = s(r, "kind") == "throughput"
                && s(r, "system") == "ceiling"
                && s(r, "guarantee") == "at_least_once";
            if ceiling_run && dropped < 1 {
                dropped += 1;
                return false;
            }
            true
        });
        assert!(matches!(
            &figure_targets(&rows)[0].verdict,
            Err(why) if why == "2 paired repetitions, 3 needed"
        ));
        let md = markdown(&with([9_500, 8_000, 9_500]), None);
        assert!(
            md.contains("| faustus ≥ 0.9 × ceiling on W0 in each of 3 repetitions | at_least_once | 0.95 · 0.80 · 0.95 | – | **missed** |"),
            "{md}"
        );
        assert!(md.contains("- faustus p99 ≤ kafka-streams p99 on W0 at 100 events/s (exactly_once): 1.20 (9.0 / 7.5 ms)"), "{md}");
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
        assert_eq!(faustus_w0.details["runs"], 3);
        assert_eq!(faustus_w0.details["latency_missing"], 2);
        let faust = list.iter().find(|o| o.system == "faust").expect("faust W2");
        assert_eq!(faust.events_per_sec, None);
        let restore = list
            .iter()
            .find(|o| o.workload == "W2-restore")
            .expect("restore");
        assert_eq!(restore.events_per_sec, Some(20.0));
        let restart = list
            .iter()
            .find(|o| o.workload == "W2-restart-checkpoint")
            .expect("restart");
        assert_eq!(restart.details["seconds"], 0.25);
        // A scale point takes W2's start-up: 7,000 words in 11 − 1 s.
        let point = list
            .iter()
            .find(|o| o.workload == "W2-keys-1000")
            .expect("scale point");
        assert_eq!(point.events_per_sec, Some(700.0));
    }

    #[test]
    fn the_markdown_marks_targets() {
        let md = markdown(&rows(), Some("W2 is slow because of the profile below."));
        assert!(
            md.contains("| faustus ≥ 0.8 × ceiling on W0 | exactly_once | 0.90 | 0.98 | met |"),
            "{md}"
        );
        assert!(md.contains(
            "| faustus ≥ 3 × kafka-streams on W2 | exactly_once | 2.50 | 4.55 | **missed** |"
        ));
        assert!(md.contains("- faustus ≥ 3 × kafka-streams on W2 (exactly_once): 2.50"));
        assert!(md.contains("W2 is slow because"));
        assert!(
            md.contains(
                "| ceiling | exactly_once | 10,000 | 1 | 833 | 2.0 | 1,000 | **0.90** / 0.98 | 1.00 | 10 | – | – | – | ok |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| faustus | exactly_once | 9,000 | 3 | 818 | 1.0 | 900 | – | 1.00 | 10 | 3.5 | 9.0 | 2 | ok |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 1000 | faustus | exactly_once | 7,000 | 1 | 636 | 700 | 30 | ok |"),
            "{md}"
        );
        assert!(md.contains("**CPU**: 2 cores"));
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
