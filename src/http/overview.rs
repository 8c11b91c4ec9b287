//! The overview: `GET /` (an HTML page for a browser, a small index of the API for a program)
//! and `GET /api/overview/`, the JSON the page polls.
//!
//! Each process samples its counters every [`SAMPLE_EVERY`] ([`sample`]) into its
//! [`History`](crate::overview::History), and with them the lag of its sources, which it keeps
//! for the next answer: an answer never waits on Kafka, however many browsers poll. The dead
//! letters come from the process's [`Metrics::recent_dead_letters`](crate::metrics::Metrics).
//!
//! In a cluster, the process asked gathers every process's part
//! (`/api/internal/overview`, like the other endpoints): the processes are listed one by one,
//! the series is summed per bucket of time ([`sum_series`]), the dead letters are merged newest
//! first, and the tables are the cluster's (as `/api/table/`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{
    agent_json, cluster, local_tables, sources_with_lag, trimmed, wants_html, workers_json,
    HttpState,
};
use crate::overview::{sum_series, RecentDeadLetter, Sample, RECENT_DEAD_LETTERS, SAMPLE_EVERY};
use crate::runtime::assignment::SourceState;
use crate::runtime::health::TableState;

/// The page: markup, style and script in one document, with no external assets.
const PAGE: &str = include_str!("overview.html");

/// What a process keeps for the overview: the sampled history, and its sources' positions and
/// lag at the last sample, by global worker.
pub(crate) struct Overview {
    /// The samples of the last minutes.
    pub history: crate::overview::History,
    /// The sources of each worker of this process, with their lag, at the last sample.
    pub sources: std::sync::Mutex<Vec<(usize, Vec<SourceState>)>>,
    /// Whether the process is catching up on a backlog (logged from the samples' lag).
    pub catch_up: std::sync::Mutex<crate::runtime::catch_up::CatchUp>,
}

impl Default for Overview {
    fn default() -> Self {
        Overview {
            history: crate::overview::history(),
            sources: std::sync::Mutex::default(),
            catch_up: std::sync::Mutex::default(),
        }
    }
}

/// Samples this process's counters every [`SAMPLE_EVERY`] until the application stops (a
/// task on the application's runtime). Without an HTTP server nobody sees the samples, and only
/// the catch-up's log lines need the lag: then it looks every
/// [`LOOK_EVERY`](crate::runtime::catch_up::LOOK_EVERY) instead.
pub(crate) async fn sample(state: HttpState, serving: bool) {
    let every = match serving {
        true => SAMPLE_EVERY,
        false => crate::runtime::catch_up::LOOK_EVERY,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !state.health.stopping() {
        tick.tick().await;
        sample_once(&state).await;
    }
}

/// One sample: the sources' positions and lag (Kafka is asked on a blocking thread), the
/// counters' totals and the agents' dead letters.
pub(crate) async fn sample_once(state: &HttpState) {
    let sources = sources_with_lag(state).await;
    let lags: Vec<i64> = sources
        .iter()
        .flat_map(|(_, s)| s)
        .flat_map(|s| &s.partitions)
        .filter_map(|p| p.lag)
        .collect();
    // Catch-up is judged once the tables are restored (the sources have not started before),
    // and only on a look that knows every partition's lag.
    let partitions = sources
        .iter()
        .flat_map(|(_, s)| s)
        .map(|s| s.partitions.len());
    if state.health.restore_report().complete && lags.len() == partitions.sum::<usize>() {
        let lag = lags.iter().map(|&l| l.max(0) as u64).sum();
        let mut catch_up = state
            .overview
            .catch_up
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(line) = catch_up.observe(std::time::Instant::now(), lag) {
            log::info!("{line}");
        }
    }
    let totals = state.metrics.totals();
    let agent_dead_letters: u64 = state
        .agents
        .snapshot()
        .iter()
        .map(|a| a.dead_lettered)
        .sum();
    state.overview.history.push(Sample {
        at_ms: crate::overview::now_ms(),
        records_read: totals.records_read,
        records_written: totals.records_written,
        lag: (!lags.is_empty()).then(|| lags.iter().sum()),
        dead_letters: totals.dead_letters + agent_dead_letters,
        commits: totals.commits,
    });
    *state
        .overview
        .sources
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = sources;
}

/// `GET /`: the overview page for a browser; for a program, the application and its endpoints.
pub(super) async fn index(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Response {
    if wants_html(&headers) {
        return ([(CACHE_CONTROL, "no-store")], Html(PAGE)).into_response();
    }
    let base = trimmed(&uri);
    let endpoint = |path: &str| format!("{base}{path}");
    Json(json!({
        "app": &*state.app_id,
        "endpoints": {
            "overview": endpoint("/api/overview/"),
            "tables": endpoint("/api/table/"),
            "assignment": endpoint("/api/assignment/"),
            "agents": endpoint("/api/agents/"),
            "workflows": endpoint("/api/workflows/"),
            "ready": endpoint("/api/ready/"),
            "live": endpoint("/api/live/"),
            "openapi": endpoint("/api/openapi.json"),
            "metrics": endpoint("/metrics"),
        },
    }))
    .into_response()
}

/// `GET /api/overview/`: the application, its processes, tables, agents, recent dead letters
/// and the series of the last minutes, across the cluster.
pub(super) async fn overview(State(state): State<Arc<HttpState>>) -> Response {
    let local = local_overview(&state);
    let (processes, (tables, entries)) = tokio::join!(
        cluster::from_every_process(&state, "/api/internal/overview", local),
        cluster::table_states(&state),
    );
    let tables: serde_json::Map<String, Value> = tables
        .into_iter()
        .map(|(name, table)| {
            let mut body = table.to_json();
            body["entries"] = json!(entries.get(&name));
            (name, body)
        })
        .collect();
    let mut answer = merge(&state, processes);
    answer["tables"] = Value::Object(tables);
    ([(CACHE_CONTROL, "no-store")], Json(answer)).into_response()
}

/// The processes' parts as one answer (without tables): the application, the summed series,
/// the merged dead letters, and each process without its series.
fn merge(state: &HttpState, mut processes: Vec<Value>) -> Value {
    let mut series = Vec::new();
    let mut dead_letters: Vec<Value> = Vec::new();
    let mut states = Vec::new();
    let mut committed: Option<u64> = None;
    let mut uptime: f64 = 0.0;
    for process in &mut processes {
        if process.get("error").is_some() {
            states.push("unavailable");
            continue;
        }
        let samples: Vec<Sample> =
            serde_json::from_value(process["series"].take()).unwrap_or_default();
        series.push(samples);
        if let Some(object) = process.as_object_mut() {
            object.remove("series");
        }
        states.push(match process["state"].as_str() {
            Some("ready") => "ready",
            Some("restoring") => "restoring",
            Some("starting") => "starting",
            Some("stopping") => "stopping",
            Some("failed") => "failed",
            _ => "unavailable",
        });
        committed = committed.max(process["committed_epoch"].as_u64());
        uptime = uptime.max(process["uptime_s"].as_f64().unwrap_or(0.0));
        let id = process["process"].clone();
        for letter in process["dead_letters"].as_array().into_iter().flatten() {
            let mut letter = letter.clone();
            letter["process"] = id.clone();
            dead_letters.push(letter);
        }
    }
    dead_letters.sort_by_key(|l| std::cmp::Reverse(l["at_ms"].as_u64().unwrap_or(0)));
    dead_letters.truncate(RECENT_DEAD_LETTERS);
    json!({
        "app": {
            "id": &*state.app_id,
            "guarantee": state.guarantee,
            "processes": state.processes,
            "workers": state.workers,
            "state": least_ready(&states),
            "committed_epoch": committed,
            "uptime_s": uptime,
        },
        "interval_s": SAMPLE_EVERY.as_secs_f64(),
        "series": sum_series(&series, SAMPLE_EVERY),
        "processes": processes,
        "dead_letters": dead_letters,
    })
}

/// The state of an application whose processes are in `states`: the worst of them.
fn least_ready(states: &[&'static str]) -> &'static str {
    const WORST_FIRST: [&str; 6] = [
        "failed",
        "unavailable",
        "stopping",
        "starting",
        "restoring",
        "ready",
    ];
    WORST_FIRST
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or("starting")
}

/// This process's part of `/api/overview/` (what `/api/internal/overview` answers).
fn local_overview(state: &HttpState) -> Value {
    let sources = state
        .overview
        .sources
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let agents: Vec<Value> = state
        .agents
        .snapshot()
        .iter()
        .map(|a| {
            let mut agent = agent_json(a);
            agent["handled"] = json!(a.handled);
            agent["failed_attempts"] = json!(a.failed_attempts);
            agent["dead_lettered"] = json!(a.dead_lettered);
            agent
        })
        .collect();
    let dead_letters: Vec<RecentDeadLetter> = state.metrics.recent_dead_letters.newest_first();
    let catch_up = state
        .overview
        .catch_up
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .status();
    json!({
        "process": state.process,
        "state": state.health.phase(&local_tables(state)),
        "restore": restore_progress(&state.health.state(None, None)),
        "catch_up": catch_up,
        "uptime_s": round(state.health.uptime()),
        "committed_epoch": state.metrics.committed_epoch(),
        "workers": workers_json(sources),
        "agents": agents,
        "dead_letters": dead_letters,
        "series": state.overview.history.oldest_first(),
    })
}

/// A process's restore as the overview shows it: records read of those expected, percent, rate
/// and seconds left; `null` once restored (or before the restore begins).
fn restore_progress(process: &TableState) -> Value {
    let TableState::Restoring(p) = process else {
        return Value::Null;
    };
    json!({
        "records": p.records,
        "expected_records": p.expected_records,
        "percent": p.percent(),
        "rate": p.rate().round(),
        "seconds_left": p.seconds_left().map(f64::round),
        "seconds": round(Duration::from_secs_f64(p.seconds.max(0.0))),
    })
}

/// Seconds to a tenth.
fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

pub(super) async fn local_overview_handler(State(state): State<Arc<HttpState>>) -> Json<Value> {
    Json(local_overview(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_is_as_ready_as_its_least_ready_process() {
        assert_eq!(least_ready(&["ready", "ready"]), "ready");
        assert_eq!(least_ready(&["ready", "restoring"]), "restoring");
        assert_eq!(least_ready(&["starting", "restoring"]), "starting");
        assert_eq!(least_ready(&["ready", "unavailable"]), "unavailable");
        assert_eq!(least_ready(&["failed", "unavailable"]), "failed");
        assert_eq!(least_ready(&[]), "starting");
    }

    #[test]
    fn a_restore_shows_its_percent_rate_and_time_left_and_nothing_once_done() {
        use crate::runtime::health::RestoreProgress;
        let restoring = |records, expected_records| {
            TableState::Restoring(RestoreProgress {
                records,
                expected_records,
                seconds: 2.0,
            })
        };
        let p = restore_progress(&restoring(100_000, Some(500_000)));
        assert_eq!(p["percent"], 20);
        assert_eq!(p["rate"], 50_000.0);
        assert_eq!(p["seconds_left"], 8.0);
        let unknown = restore_progress(&restoring(10, None));
        assert_eq!(
            (
                unknown["percent"].is_null(),
                unknown["seconds_left"].is_null()
            ),
            (true, true)
        );
        // Compaction can leave fewer records than offsets; never more than 100 %.
        assert_eq!(restore_progress(&restoring(12, Some(10)))["percent"], 100);
        assert!(restore_progress(&TableState::Ready).is_null());
    }
}
