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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, RwLock};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use super::{router, HttpState};
    use crate::runtime::table::{Shard, Tables};

    /// A process with 2 workers of 4 in all (process 0 of 2), holding table `prices` (`i64`
    /// keys) whose keys 0..20 are spread over all four workers by the stable hash.
    fn state() -> (HttpState, Vec<i64>, Vec<i64>) {
        let tables = Arc::new(Tables::default());
        let shards: Vec<Shard<i64, String>> = (0..4)
            .map(|_| Arc::new(RwLock::new(BTreeMap::new())))
            .collect();
        let (mut local, mut remote) = (Vec::new(), Vec::new());
        for key in 0..20i64 {
            let owner = (crate::runtime::route(&key) % 4) as usize;
            shards[owner]
                .write()
                .unwrap()
                .insert(key, format!("v{key}"));
            if owner < 2 {
                local.push(key)
            } else {
                remote.push(key)
            }
        }
        for (worker, shard) in shards.iter().enumerate().take(2) {
            tables.register("prices", worker, 4, 2, Arc::clone(shard));
        }
        (HttpState { tables, process: 0 }, local, remote)
    }

    async fn get(state: &HttpState, uri: &str) -> (StatusCode, Value) {
        let response = router(state.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn answers_and_errors_are_json() {
        let (state, local, remote) = state();
        assert!(!local.is_empty() && !remote.is_empty());
        assert_eq!(
            get(&state, "/api/table").await,
            (StatusCode::OK, json!({"results": ["prices"]}))
        );
        let key = local[0];
        for uri in [
            format!("/api/table/prices/{key}"),
            format!("/api/table/prices/{key}/"),
        ] {
            assert_eq!(
                get(&state, &uri).await,
                (
                    StatusCode::OK,
                    json!({ key.to_string(): format!("v{key}") })
                )
            );
        }
        // A key this process would own, but that is not in the table.
        let missing = (20i64..)
            .find(|k| crate::runtime::route(k) % 4 < 2)
            .unwrap();
        let (status, body) = get(&state, &format!("/api/table/prices/{missing}/")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains(&missing.to_string()));
        let (status, body) = get(&state, "/api/table/prices/not-a-number/").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"].as_str().unwrap().contains("not a valid key"));
        let (status, body) = get(&state, "/api/table/secret/1/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].as_str().unwrap().contains("secret"));
        let (status, body) = get(&state, &format!("/api/table/prices/{}/", remote[0])).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["error"].as_str().unwrap().contains("process 1"));
        let (status, _) = get(&state, "/api/table/prices/?size=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = get(&state, "/no/such/path").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
    }

    #[tokio::test]
    async fn listing_pages_through_the_local_keys_in_order() {
        let (state, mut local, _) = state();
        local.sort();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let uri = match &after {
                Some(a) => format!("/api/table/prices/?size=3&after={a}"),
                None => "/api/table/prices/?size=3".to_string(),
            };
            let (status, body) = get(&state, &uri).await;
            assert_eq!(status, StatusCode::OK);
            let page = body["results"].as_object().unwrap();
            assert!(page.len() <= 3);
            let keys: Vec<i64> = page.keys().map(|k| k.parse().unwrap()).collect();
            seen.extend(keys);
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, local);
    }
}
