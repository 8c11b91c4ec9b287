//! Tables over HTTP: an axum [`Router`] that a program serves on its own, or nests into its own
//! axum service ([`crate::Running::router`]).
//!
//! - `GET /api/table/` lists the public tables;
//! - `GET /api/table/{name}/?page=N&size=S` is page `N` (from 1) of a table's entries in key
//!   order, across every worker of every process (`?after=<key>` counts pages from after that
//!   key instead of from the first key), and `?key=<key>` looks one key up;
//! - `GET /api/table/{name}/{key}/` answers `{"<key>": <value>}`, from whichever process owns
//!   the key: a process forwards a request for a key it does not own to the owner's address in
//!   the configuration (`--http-peers`), marked with the header `x-faustus-forwarded-by` so it
//!   is never forwarded again;
//! - `GET /api/assignment/` lists, per process and worker, the input partitions read, the
//!   worker's epoch and the lag per partition;
//! - `GET /api/overview/` is the application at a glance: its processes, partitions and lag,
//!   tables, agents, recent dead letters, and the series of the last minutes that the overview
//!   page at `GET /` draws;
//! - `GET /api/openapi.json` describes all of it (OpenAPI 3);
//! - `GET /metrics` is this process's metrics in Prometheus' text format ([`crate::metrics`]).
//!
//! Trailing slashes are optional. A client that prefers `text/html` (a browser) gets HTML pages
//! with page links and a lookup form. Errors are JSON `{"error": "..."}`: an unknown table (or
//! one that is not public) or key is 404, bad input is 400, an owner process that cannot be
//! reached is 503. See `docs/http.md`.
//!
//! Handlers read the per-worker replicas only, so reading never stalls the dataflow.

mod cluster;
mod html;
mod overview;

pub(crate) use cluster::PeerTimeouts;
pub(crate) use overview::sample;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, OriginalUri, Path, RawQuery, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde_json::{json, Value};

use crate::agent::{AgentBoard, AgentStatus};
use crate::metrics::{Metrics, Scrape};
use crate::runtime::assignment::{Assignments, SourceState};
use crate::runtime::health::{Health, TableState};
use crate::runtime::table::{JsonEntry, Lookup, TableView, Tables};

/// The largest page a listing returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The page size when a listing does not give one.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest page number a listing accepts.
pub const MAX_PAGE: u64 = 1_000_000_000;

/// The header that marks a request one process sent another (its value is the sender's process
/// id). A request carrying it is answered from the receiver's own replicas, never forwarded.
pub(crate) const FORWARDED_HEADER: &str = "x-faustus-forwarded-by";

/// The OpenAPI document of the API.
const OPENAPI: &str = include_str!("openapi.json");

/// The state behind the router.
#[derive(Clone)]
pub(crate) struct HttpState {
    /// This process's public tables.
    pub tables: Arc<Tables>,
    /// Where this process is in its life (starting, restoring, ready, failed).
    pub health: Arc<Health>,
    /// What this process's sources read.
    pub assignments: Arc<Assignments>,
    /// This process's id.
    pub process: usize,
    /// Processes in the cluster.
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
    /// The other processes' HTTP APIs.
    pub peers: Arc<cluster::Peers>,
    /// This process's agents (none until they start).
    pub agents: Arc<AgentBoard>,
    /// This process's timers (none until they start).
    pub timers: Arc<crate::timer::TimerBoard>,
    /// The application's metrics.
    pub metrics: Arc<Metrics>,
    /// The application's id.
    pub app_id: Arc<str>,
    /// The application's processing guarantee.
    pub guarantee: crate::Guarantee,
    /// What this process keeps for the overview page.
    pub overview: Arc<overview::Overview>,
    /// The application's workflows handle, once it has connected to Kafka.
    pub workflows: crate::workflow::WorkflowsCell,
    /// The chords this process coordinates.
    pub chords: Arc<crate::workflow::ChordBoard>,
}

impl HttpState {
    /// The state of process `process` of `processes` (`workers` workers each), reaching the
    /// others at `peers` (base URLs in process-id order; empty when none are configured).
    pub(crate) fn new(
        tables: Arc<Tables>,
        health: Arc<Health>,
        assignments: Arc<Assignments>,
        process: usize,
        processes: usize,
        workers: usize,
        peers: Vec<String>,
    ) -> Self {
        HttpState {
            tables,
            health,
            assignments,
            process,
            processes,
            workers,
            peers: Arc::new(cluster::Peers::new(process, peers, PeerTimeouts::default())),
            agents: Arc::default(),
            timers: Arc::default(),
            metrics: Arc::new(Metrics::new()),
            app_id: Arc::from(""),
            guarantee: crate::Guarantee::ExactlyOnce,
            overview: Arc::default(),
            workflows: Arc::default(),
            chords: Arc::default(),
        }
    }

    /// The same state, for application `app_id` under `guarantee`.
    pub(crate) fn of_app(mut self, app_id: &str, guarantee: crate::Guarantee) -> Self {
        self.app_id = Arc::from(app_id);
        self.guarantee = guarantee;
        self
    }

    /// The same state, reaching the other processes with these timeouts.
    pub(crate) fn with_peer_timeouts(mut self, timeouts: PeerTimeouts) -> Self {
        self.peers = Arc::new(self.peers.with_timeouts(timeouts));
        self
    }
}

/// An error answer: a status and a JSON body naming the cause, with more fields and a
/// `Retry-After` header when the answer is "not ready".
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// More members of the JSON body (a table's `state` and restore progress).
    extra: serde_json::Map<String, Value>,
    /// Seconds to wait before asking again.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: serde_json::Map::new(),
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn no_table(name: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("no table named `{name}`"))
    }

    /// 503: table `name` is not ready (`where_` names the process, for a cluster's answers).
    fn not_ready(name: &str, state: &TableState, where_: &str) -> Self {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            state.describe(&format!("table `{name}`{where_}")),
        );
        if let Value::Object(fields) = state.to_json() {
            error.extra = fields;
        }
        error.extra.insert("table".into(), json!(name));
        error.retry_after = state.retry_after();
        error
    }

    /// The error another process answered with (`body` is its JSON error), as this process's
    /// answer: the same status, message, state and retry delay.
    fn relayed(status: StatusCode, body: &Value, fallback: String) -> Self {
        let mut error = ApiError::new(
            status,
            body["error"].as_str().map_or(fallback, str::to_string),
        );
        if let Some(fields) = body.as_object() {
            error.extra = fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "error" | "retry_after_s"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        error.retry_after = body["retry_after_s"].as_u64();
        error
    }

    /// What went wrong.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The answer in the form the client asked for.
    fn respond(self, html: bool) -> Response {
        if html {
            let page = html::error_page(self.status, &self.message, self.retry_after);
            with_retry_after((self.status, Html(page)).into_response(), self.retry_after)
        } else {
            self.into_response()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), json!(self.message));
        body.extend(self.extra);
        if let Some(seconds) = self.retry_after {
            body.insert("retry_after_s".into(), json!(seconds));
        }
        with_retry_after(
            (self.status, Json(Value::Object(body))).into_response(),
            self.retry_after,
        )
    }
}

/// Adds a `Retry-After` header (seconds) to a response.
fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Builds the router over this process's public tables.
pub(crate) fn router(state: HttpState) -> Router {
    // One reference count per request, not one per member of the state.
    let state = Arc::new(state);
    Router::new()
        .route("/", get(overview::index))
        .route("/api/overview", get(overview::overview))
        .route("/api/overview/", get(overview::overview))
        .route("/api/table", get(list_tables))
        .route("/api/table/", get(list_tables))
        .route("/api/table/{name}", get(list_entries))
        .route("/api/table/{name}/", get(list_entries))
        .route("/api/table/{name}/{key}", get(get_key))
        .route("/api/table/{name}/{key}/", get(get_key))
        .route("/api/assignment", get(assignment))
        .route("/api/assignment/", get(assignment))
        .route("/api/agents", get(agents))
        .route("/api/agents/", get(agents))
        .route("/api/workflows", get(workflows))
        .route("/api/workflows/", get(workflows))
        .route("/api/ready", get(ready))
        .route("/api/ready/", get(ready))
        .route("/api/live", get(live))
        .route("/api/live/", get(live))
        .route("/api/openapi.json", get(openapi))
        .route(
            "/api/internal/table/{name}/entries",
            get(local_entries_handler),
        )
        .route("/api/internal/tables", get(local_tables_handler))
        .route("/api/internal/assignment", get(local_assignment_handler))
        .route("/api/internal/agents", get(local_agents_handler))
        .route("/api/internal/workflows", get(local_workflows_handler))
        .route(
            "/api/internal/overview",
            get(overview::local_overview_handler),
        )
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_request,
        ))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::map_response(json_errors))
        .with_state(state)
}

/// Counts an answered request in the metrics, by route template (never the raw path: keys
/// in paths would make a family without bounds).
async fn count_request(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    state.metrics.http_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics`: this process's metrics in Prometheus' text format. Values read when scraped
/// (lag, restore, tables, agents) are refreshed first; the lag asks Kafka for high watermarks
/// on a blocking thread.
async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let sources = sources_with_lag(&state)
        .await
        .into_iter()
        .flat_map(|(_, sources)| sources)
        .collect();
    let scrape = Scrape {
        sources,
        restore: state.health.restore_report(),
        tables: state.tables.sizes(),
        agents: state.agents.snapshot(),
    };
    let metrics = Arc::clone(&state.metrics);
    let (content_type, body) = tokio::task::spawn_blocking(move || {
        metrics.refresh(scrape);
        metrics.encode()
    })
    .await
    .unwrap_or_default();
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

/// Turns the plain-text error answers axum gives on its own (a path that does not decode, a
/// method not allowed) into JSON errors, like every other error.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let typed = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || typed {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&bytes).trim().to_string();
    if message.is_empty() {
        message = status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string();
    }
    let body = serde_json::to_vec(&json!({ "error": message })).expect("JSON serializes");
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

/// True when the client prefers `text/html` to JSON (a browser does; `curl` does not).
fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "application/json" | "*/*" | "application/*" => json = json.max(q),
            _ => {}
        }
    }
    html > json
}

/// True when another process sent this request.
fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

/// A URL path without its trailing slashes.
fn trimmed(uri: &OriginalUri) -> String {
    uri.0.path().trim_end_matches('/').to_string()
}

/// A path segment, percent-encoded.
fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A key as shown to people and as written in URLs: a JSON string as is, anything else as JSON.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A query string's parameters (the last value of a repeated one wins).
fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A positive integer parameter, at most `max`.
fn positive(
    params: &BTreeMap<String, String>,
    name: &str,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    let Some(raw) = params.get(name) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::bad_request(format!(
            "`{name}` must be a whole number from 1 to {max}, not `{raw}`"
        ))),
    }
}

async fn list_tables(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Response {
    let (states, entries) = cluster::table_states(&state).await;
    let names: Vec<&String> = states.keys().collect();
    if wants_html(&headers) {
        Html(html::tables_page(&trimmed(&uri), &states)).into_response()
    } else {
        let tables: serde_json::Map<String, Value> = states
            .iter()
            .map(|(name, state)| (name.clone(), state.to_json()))
            .collect();
        Json(json!({ "results": names, "tables": tables, "entries": entries })).into_response()
    }
}

/// This process's tables and their states (what `/api/table/` merges across processes).
fn local_tables(state: &HttpState) -> BTreeMap<String, TableState> {
    state.tables.states(&state.health)
}

async fn local_tables_handler(State(state): State<Arc<HttpState>>) -> Json<Value> {
    let tables: serde_json::Map<String, Value> = local_tables(&state)
        .into_iter()
        .map(|(name, state)| (name, state.to_json()))
        .collect();
    let entries: BTreeMap<String, usize> = state.tables.sizes().into_iter().collect();
    Json(json!({ "tables": tables, "entries": entries }))
}

/// `GET /api/ready`: 200 once every table of this process is restored and it runs; 503 (with
/// the state, the restore's progress and `Retry-After`) before, and once it stops or fails.
async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let (ready, body) = state.health.readiness(local_tables(&state));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let retry = body["retry_after_s"].as_u64();
    with_retry_after((status, Json(body)).into_response(), retry)
}

/// `GET /api/live`: 200 while the process works (starting and restoring included); 503 once a
/// fatal error stopped it, so that a supervisor restarts it.
async fn live(State(state): State<Arc<HttpState>>) -> Response {
    match state.health.fatal() {
        None => Json(json!({ "live": true })).into_response(),
        Some(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "live": false, "error": format!("the application failed: {fatal}") })),
        )
            .into_response(),
    }
}

/// Public table `name`, once it is ready on this process: 404 for no such table, 503 while it
/// starts or restores.
fn table(state: &HttpState, name: &str) -> Result<Arc<dyn TableView>, ApiError> {
    let declared = state
        .tables
        .get(name)
        .ok_or_else(|| ApiError::no_table(name))?;
    match &declared.view {
        Some(view) if view.ready() => Ok(Arc::clone(view)),
        _ => Err(ApiError::not_ready(
            name,
            &declared.state(&state.health),
            &on_process(state, state.process),
        )),
    }
}

/// " on process N" in a cluster, nothing for a single process.
fn on_process(state: &HttpState, process: usize) -> String {
    if state.processes > 1 {
        format!(" on process {process}")
    } else {
        String::new()
    }
}

/// Entries as a JSON object whose members stay in key order (a `serde_json::Map` would sort them
/// as strings: `"10"` before `"9"`).
struct InKeyOrder<'a>(&'a [JsonEntry]);

impl serde::Serialize for InKeyOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(&key_text(key), value)?;
        }
        map.end()
    }
}

/// A page as JSON (see `Page` in the OpenAPI document).
#[derive(serde::Serialize)]
struct PageBody<'a> {
    results: InKeyOrder<'a>,
    size: usize,
    total: usize,
    page: u64,
    next: Option<&'a str>,
    next_page: Option<u64>,
    next_after: Option<&'a str>,
    previous: Option<&'a str>,
}

/// One page of a listing, whichever way it was asked for.
struct Listing {
    entries: Vec<JsonEntry>,
    page: u64,
    size: usize,
    total: usize,
    next: Option<String>,
    previous: Option<String>,
    next_after: Option<String>,
}

async fn list_entries(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Response {
    let html = wants_html(&headers);
    let base = trimmed(&uri);
    let params = query_params(query.as_deref());
    if let Some(key) = params.get("key") {
        return match lookup(&state, &name, key, forwarded(&headers)).await {
            Ok(value) if html => Html(html::key_page(&base, &name, key, &value)).into_response(),
            Ok(value) => Json(json!({ key: value })).into_response(),
            Err(e) => e.respond(html),
        };
    }
    match listing(&state, &name, &params, &base).await {
        Ok(listing) if html => Html(html::table_page(
            &base,
            &name,
            &listing
                .entries
                .iter()
                .map(|(k, v)| (key_text(k), v.clone()))
                .collect::<Vec<_>>(),
            listing.page,
            listing.total,
            listing.previous.as_deref(),
            listing.next.as_deref(),
        ))
        .into_response(),
        Ok(listing) => {
            let body = PageBody {
                results: InKeyOrder(&listing.entries),
                size: listing.size,
                total: listing.total,
                page: listing.page,
                next: listing.next.as_deref(),
                next_page: listing.next.as_ref().map(|_| listing.page + 1),
                next_after: listing.next_after.as_deref(),
                previous: listing.previous.as_deref(),
            };
            Json(body).into_response()
        }
        Err(e) => e.respond(html),
    }
}

async fn listing(
    state: &HttpState,
    name: &str,
    params: &BTreeMap<String, String>,
    base: &str,
) -> Result<Listing, ApiError> {
    let view = table(state, name)?;
    let size =
        positive(params, "size", MAX_PAGE_SIZE as u64)?.map_or(DEFAULT_PAGE_SIZE, |s| s as usize);
    let page = positive(params, "page", MAX_PAGE)?.unwrap_or(1);
    let after = params
        .get("after")
        .map(|raw| view.parse(raw).map_err(ApiError::bad_request))
        .transpose()?;
    let skip = (page as usize - 1).saturating_mul(size);
    let (entries, total) = cluster::entries(
        state,
        name,
        view.as_ref(),
        after.as_ref(),
        skip.saturating_add(size).saturating_add(1),
    )
    .await?;
    let more = entries.len() > skip.saturating_add(size);
    let entries: Vec<JsonEntry> = entries.into_iter().skip(skip).take(size).collect();
    let next_after = entries.last().filter(|_| more).map(|(k, _)| key_text(k));
    let cursor = params
        .get("after")
        .map(|a| format!("after={}&", segment(a)))
        .unwrap_or_default();
    let url = |page: u64| format!("{base}/?{cursor}page={page}&size={size}");
    Ok(Listing {
        entries,
        page,
        size,
        total,
        next: more.then(|| url(page + 1)),
        previous: (page > 1).then(|| url(page - 1)),
        next_after,
    })
}

/// A key's value, from this process's replicas or from the owner process.
async fn lookup(
    state: &HttpState,
    name: &str,
    key: &str,
    forwarded: bool,
) -> Result<Value, ApiError> {
    let declared = state
        .tables
        .get(name)
        .ok_or_else(|| ApiError::no_table(name))?;
    let not_ready = || {
        ApiError::not_ready(
            name,
            &declared.state(&state.health),
            &on_process(state, state.process),
        )
    };
    let Some(view) = &declared.view else {
        return Err(not_ready());
    };
    // Readiness first: a replica read before it is ready may miss restored keys.
    let ready = view.ready();
    match view.get(key) {
        Lookup::Unregistered => Err(not_ready()),
        Lookup::Found(_) | Lookup::Missing if !ready => Err(not_ready()),
        Lookup::Found(value) => Ok(value),
        Lookup::Missing => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key `{key}` in table `{name}`"),
        )),
        Lookup::BadKey(e) => Err(ApiError::bad_request(e)),
        Lookup::Remote(owner) if forwarded => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "key `{key}` was forwarded to process {} but process {owner} owns it: the processes disagree on the cluster's shape (check --processes, --workers, --http-peers)",
                state.process
            ),
        )),
        Lookup::Remote(owner) => cluster::forward_key(state, owner, name, key).await,
    }
}

/// The JSON value of `key` in table `name`, from whichever process owns it (`None` when the
/// table is ready and has no such key); an error says why there is no answer (not ready, the
/// owner unreachable).
pub(crate) async fn lookup_value(
    state: &HttpState,
    name: &str,
    key: &Value,
) -> Result<Option<Value>, String> {
    match lookup(state, name, &key_text(key), false).await {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.status == StatusCode::NOT_FOUND && state.tables.get(name).is_some() => Ok(None),
        Err(e) => Err(e.message().to_string()),
    }
}

async fn get_key(
    State(state): State<Arc<HttpState>>,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
    uri: OriginalUri,
) -> Response {
    let html = wants_html(&headers);
    match lookup(&state, &name, &key, forwarded(&headers)).await {
        Ok(value) if html => {
            let path = trimmed(&uri);
            let table_url = path.rsplit_once('/').map_or("", |(t, _)| t);
            Html(html::key_page(table_url, &name, &key, &value)).into_response()
        }
        Ok(value) => Json(json!({ key: value })).into_response(),
        Err(e) => e.respond(html),
    }
}

async fn assignment(State(state): State<Arc<HttpState>>) -> Json<Value> {
    let local = local_assignment(&state).await;
    let processes = cluster::from_every_process(&state, "/api/internal/assignment", local).await;
    Json(json!({ "processes": processes }))
}

/// `GET /api/agents/`: every agent of every process, with its partitions, positions, acked
/// ranges and counts, and every timer with whether the process fires it; an HTML page for a
/// browser.
async fn agents(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let local = local_agents(&state);
    let processes = cluster::from_every_process(&state, "/api/internal/agents", local).await;
    if wants_html(&headers) {
        return Html(html::agents_page(&processes)).into_response();
    }
    Json(json!({ "processes": processes })).into_response()
}

/// This process's part of `/api/agents/`.
fn local_agents(state: &HttpState) -> Value {
    json!({
        "process": state.process,
        "agents": state.agents.snapshot(),
        "timers": state.timers.snapshot(),
    })
}

async fn local_agents_handler(State(state): State<Arc<HttpState>>) -> Json<Value> {
    Json(local_agents(&state))
}

/// `GET /api/workflows/`: the chords in progress on every process that coordinates some (size,
/// members done and failed, deadline); an HTML page for a browser.
async fn workflows(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let local = local_workflows(&state);
    let processes = cluster::from_every_process(&state, "/api/internal/workflows", local).await;
    if wants_html(&headers) {
        return Html(html::workflows_page(&processes, crate::workflow::now_ms())).into_response();
    }
    Json(json!({ "processes": processes })).into_response()
}

/// This process's part of `/api/workflows/`.
fn local_workflows(state: &HttpState) -> Value {
    let running = state
        .chords
        .running
        .load(std::sync::atomic::Ordering::SeqCst);
    json!({
        "process": state.process,
        "coordinator": running,
        "partitions": state.chords.partitions(),
        "chords": state.chords.snapshot(),
    })
}

async fn local_workflows_handler(State(state): State<Arc<HttpState>>) -> Json<Value> {
    Json(local_workflows(&state))
}

/// The sources of each worker of this process (by global worker index), with their lag: Kafka
/// is asked for high watermarks on a blocking thread, never by the dataflow.
async fn sources_with_lag(state: &HttpState) -> Vec<(usize, Vec<SourceState>)> {
    let first = state.process * state.workers;
    let assignments = Arc::clone(&state.assignments);
    let workers = first..first + state.workers;
    tokio::task::spawn_blocking(move || {
        workers
            .map(|worker| {
                let mut sources = assignments.of_worker(worker);
                assignments.add_lag(&mut sources);
                (worker, sources)
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Sources per worker as the API writes them: `[{"worker": .., "sources": [..]}, ..]`.
fn workers_json(sources: Vec<(usize, Vec<SourceState>)>) -> Vec<Value> {
    sources
        .into_iter()
        .map(|(worker, sources)| json!({ "worker": worker, "sources": sources }))
        .collect()
}

/// An agent as `/api/assignment/` lists it: its name, topic, partitions and state.
fn agent_json(agent: &AgentStatus) -> Value {
    let partitions: Vec<i32> = agent.partitions.iter().map(|p| p.partition).collect();
    json!({
        "agent": agent.settings.name,
        "topic": agent.settings.topic,
        "partitions": partitions,
        "state": agent.state,
    })
}

/// This process's part of `/api/assignment/`, with the lag.
async fn local_assignment(state: &HttpState) -> Value {
    let per_worker = workers_json(sources_with_lag(state).await);
    // The agents read through consumer groups, beside the dataflow's sources.
    let agents: Vec<Value> = state.agents.snapshot().iter().map(agent_json).collect();
    json!({ "process": state.process, "workers": per_worker, "agents": agents })
}

async fn local_assignment_handler(State(state): State<Arc<HttpState>>) -> Json<Value> {
    Json(local_assignment(&state).await)
}

async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /api/internal/table/{name}/entries?limit=N&after=<JSON key>`: this process's own
/// entries (what a process asks the others for to build a page).
async fn local_entries_handler(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let view = table(&state, &name)?;
    let params = query_params(query.as_deref());
    let limit = positive(&params, "limit", u64::MAX)?.map_or(DEFAULT_PAGE_SIZE, |l| {
        usize::try_from(l).unwrap_or(usize::MAX)
    });
    let after = params
        .get("after")
        .map(|a| serde_json::from_str::<Value>(a))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("`after` must be a JSON key: {e}")))?;
    let (entries, count) = view
        .local_entries(after.as_ref(), limit)
        .map_err(ApiError::bad_request)?;
    Ok(Json(json!({ "entries": entries, "count": count })))
}

#[cfg(test)]
mod tests;
