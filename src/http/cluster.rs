//! Talking to the other processes' HTTP APIs: forwarding a key lookup to its owner, gathering
//! the parts of a listing, and the assignment of every process.
//!
//! Addresses come from the configuration (`--http-peers`), never from a request. Every request
//! sent carries [`FORWARDED_HEADER`], and a receiver answers such requests from its own replicas
//! only, so a request crosses at most one hop.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{segment, ApiError, HttpState, FORWARDED_HEADER};
use crate::runtime::health::TableState;
use crate::runtime::table::{JsonEntry, TableView};

/// How long a request to another process may take.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerTimeouts {
    /// Connecting ([`crate::AppConfig::http_peer_connect_timeout`]).
    pub connect: Duration,
    /// The whole request ([`crate::AppConfig::http_peer_timeout`]).
    pub request: Duration,
}

impl Default for PeerTimeouts {
    /// The configuration's defaults.
    fn default() -> Self {
        let config = crate::AppConfig::new("");
        PeerTimeouts {
            connect: config.http_peer_connect_timeout,
            request: config.http_peer_timeout,
        }
    }
}

/// The other processes' HTTP APIs.
pub(crate) struct Peers {
    process: usize,
    urls: Vec<String>,
    client: reqwest::Client,
}

impl Peers {
    /// Process `process`, reaching process `i` at `urls[i]` (base URLs without a trailing slash).
    pub(crate) fn new(process: usize, urls: Vec<String>, timeouts: PeerTimeouts) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .build()
            .unwrap_or_default();
        Peers {
            process,
            urls,
            client,
        }
    }

    /// The same peers, reached with other timeouts.
    pub(crate) fn with_timeouts(&self, timeouts: PeerTimeouts) -> Self {
        Peers::new(self.process, self.urls.clone(), timeouts)
    }

    /// Sends `GET <process's base URL><path>` and returns the status and JSON body.
    async fn get(&self, process: usize, path: &str) -> Result<(StatusCode, Value), ApiError> {
        let unavailable = |why: String| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("process {process} cannot be reached: {why}"),
            )
        };
        let base = self.urls.get(process).ok_or_else(|| {
            unavailable(
                "no HTTP address is configured for it (give every process's address with --http-peers)"
                    .into(),
            )
        })?;
        let url = format!("{base}{path}");
        let response = self
            .client
            .get(&url)
            .header(FORWARDED_HEADER, self.process.to_string())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(format!("{url}: {}", cause(&e))))?;
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let body = response.json::<Value>().await.map_err(|e| {
            unavailable(format!(
                "{url} answered {status} without JSON: {}",
                cause(&e)
            ))
        })?;
        Ok((status, body))
    }
}

/// An error and its causes, on one line (reqwest's own message hides "connection refused").
fn cause(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Asks process `owner` for `key` of table `name`.
pub(super) async fn forward_key(
    state: &HttpState,
    owner: usize,
    name: &str,
    key: &str,
) -> Result<Value, ApiError> {
    let path = format!("/api/table/{}/{}/", segment(name), segment(key));
    let (status, mut body) = state.peers.get(owner, &path).await?;
    if status == StatusCode::OK {
        if let Some(value) = body.get_mut(key).map(Value::take) {
            return Ok(value);
        }
    }
    let fallback = format!("process {owner} answered {status} with {body}");
    let status = if status == StatusCode::OK {
        StatusCode::BAD_GATEWAY
    } else {
        status
    };
    Err(ApiError::relayed(status, &body, fallback))
}

/// The first `limit` entries of table `name` after `after` across all processes, in key order,
/// and the number of entries in the whole table.
pub(super) async fn entries(
    state: &HttpState,
    name: &str,
    view: &dyn TableView,
    after: Option<&Value>,
    limit: usize,
) -> Result<(Vec<JsonEntry>, usize), ApiError> {
    let mut query = format!("limit={limit}");
    if let Some(after) = after {
        query.push_str("&after=");
        query.push_str(&segment(&after.to_string()));
    }
    let path = format!("/api/internal/table/{}/entries?{query}", segment(name));
    let mut asks = tokio::task::JoinSet::new();
    for process in (0..state.processes).filter(|&p| p != state.process) {
        let (peers, path) = (state.peers.clone(), path.clone());
        asks.spawn(async move { (process, peers.get(process, &path).await) });
    }
    let (local, mut total) = view
        .local_entries(after, limit)
        .map_err(ApiError::bad_request)?;
    let mut parts = vec![local];
    while let Some(joined) = asks.join_next().await {
        let (process, answer) = joined.map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("listing: {e}"))
        })?;
        let (status, body) = answer?;
        if let Some(not_ready) = TableState::from_json(&body).filter(|s| !s.is_ready()) {
            return Err(ApiError::not_ready(
                name,
                &not_ready,
                &format!(" on process {process}"),
            ));
        }
        if status != StatusCode::OK {
            let why = body["error"].as_str().unwrap_or("no reason given");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("process {process} could not list table `{name}`: {status}: {why}"),
            ));
        }
        let part: Vec<JsonEntry> =
            serde_json::from_value(body["entries"].clone()).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    format!("process {process} sent entries that do not decode: {e}"),
                )
            })?;
        total += body["count"].as_u64().unwrap_or(0) as usize;
        parts.push(part);
    }
    let merged = view
        .merge(parts, limit)
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e))?;
    Ok((merged, total))
}

/// Every public table and where it stands in the whole cluster: ready when it is ready on every
/// process; otherwise the least ready state, with the restore's progress summed over the
/// processes. A process that cannot be reached leaves its tables `unavailable`.
pub(super) async fn table_states(
    state: &HttpState,
) -> (BTreeMap<String, TableState>, BTreeMap<String, usize>) {
    let mut asks = tokio::task::JoinSet::new();
    for process in (0..state.processes).filter(|&p| p != state.process) {
        let peers = state.peers.clone();
        asks.spawn(async move { (process, peers.get(process, "/api/internal/tables").await) });
    }
    let mut states = super::local_tables(state);
    let mut entries: BTreeMap<String, usize> = state.tables.sizes().into_iter().collect();
    let mut every_process = true;
    while let Some(joined) = asks.join_next().await {
        let Ok((process, answer)) = joined else {
            every_process = false;
            continue;
        };
        let body = match answer {
            Ok((StatusCode::OK, body)) => body,
            Ok((status, _)) => {
                unavailable(&mut states, process, &format!("it answered {status}"));
                every_process = false;
                continue;
            }
            Err(e) => {
                unavailable(&mut states, process, e.message());
                every_process = false;
                continue;
            }
        };
        for (name, remote) in body["tables"].as_object().cloned().unwrap_or_default() {
            let Some(remote) = TableState::from_json(&remote) else {
                continue;
            };
            if let Some(local) = states.remove(&name) {
                states.insert(name, local.least_ready(remote));
            }
        }
        for (name, count) in body["entries"].as_object().cloned().unwrap_or_default() {
            if let (Some(total), Some(count)) = (entries.get_mut(&name), count.as_u64()) {
                *total += count as usize;
            }
        }
    }
    // A count that misses a process's part would be wrong, not merely late.
    if !every_process {
        entries.clear();
    }
    (states, entries)
}

/// Marks every table not ready because `process` cannot tell its state.
fn unavailable(states: &mut BTreeMap<String, TableState>, process: usize, why: &str) {
    for state in states.values_mut() {
        *state = TableState::Unavailable {
            reason: format!("process {process} cannot be reached: {why}"),
        };
    }
}

/// Every process's assignment, in process order; a process that cannot be reached appears with
/// an `error` instead.
/// The answers of every process to `path` (this one's is `local`), in process order; a process
/// that cannot be reached, or answers with an error, is a `{process, error}` entry.
pub(super) async fn from_every_process(
    state: &HttpState,
    path: &'static str,
    local: Value,
) -> Vec<Value> {
    let mut asks = tokio::task::JoinSet::new();
    for process in (0..state.processes).filter(|&p| p != state.process) {
        let peers = state.peers.clone();
        asks.spawn(async move {
            let answer = match peers.get(process, path).await {
                Ok((StatusCode::OK, body)) => body,
                Ok((status, body)) => json!({
                    "process": process,
                    "error": format!("answered {status}: {}", body["error"].as_str().unwrap_or("")),
                }),
                Err(e) => json!({ "process": process, "error": e.message() }),
            };
            (process, answer)
        });
    }
    let mut all = vec![(state.process, local)];
    while let Some(joined) = asks.join_next().await {
        if let Ok(answer) = joined {
            all.push(answer);
        }
    }
    all.sort_by_key(|(p, _)| *p);
    all.into_iter().map(|(_, a)| a).collect()
}
