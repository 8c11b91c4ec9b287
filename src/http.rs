//! Tables over HTTP: an axum [`Router`] that a program serves on its own, or nests into its own
//! axum service.
//!
//! - `GET /api/table/` lists the public tables;
//! - `GET /api/table/{name}/` lists a table's entries held by this process, in key order;
//! - `GET /api/table/{name}/{key}/` answers `{"<key>": <value>}`.
//!
//! Trailing slashes are optional. Errors are JSON `{"error": "..."}`: an unknown table (or one
//! that is not public) or key is 404, a key that does not parse as the table's key type is 400.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::runtime::table::{Lookup, Tables};

/// The largest page a listing returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The state behind the router.
#[derive(Clone)]
pub(crate) struct HttpState {
    pub tables: Arc<Tables>,
    pub process: usize,
}

/// An error answer: a status and a JSON body naming the cause.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Builds the router over this process's public tables.
pub(crate) fn router(state: HttpState) -> Router {
    Router::new()
        .route("/api/table", get(list_tables))
        .route("/api/table/", get(list_tables))
        .route("/api/table/{name}", get(list_entries))
        .route("/api/table/{name}/", get(list_entries))
        .route("/api/table/{name}/{key}", get(get_key))
        .route("/api/table/{name}/{key}/", get(get_key))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

async fn list_tables(State(state): State<HttpState>) -> Json<Value> {
    Json(json!({ "results": state.tables.names() }))
}

/// Paging parameters.
#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    size: Option<usize>,
}

async fn list_entries(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let table = state
        .tables
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no table named `{name}`")))?;
    let size = query.size.unwrap_or(100);
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("size must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let entries = table
        .entries(query.after.as_deref(), size)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let next = if entries.len() == size {
        entries.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    let results: serde_json::Map<String, Value> = entries.into_iter().collect();
    Ok(Json(
        json!({ "results": results, "next_after": next, "process": state.process }),
    ))
}

async fn get_key(
    State(state): State<HttpState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let table = state
        .tables
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no table named `{name}`")))?;
    match table.get(&key) {
        Lookup::Found(value) => Ok(Json(json!({ key: value }))),
        Lookup::Missing => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no key `{key}` in table `{name}`"),
        )),
        Lookup::BadKey(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e)),
        Lookup::Remote(process) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("key `{key}` is owned by process {process}; ask that process"),
        )),
    }
}
