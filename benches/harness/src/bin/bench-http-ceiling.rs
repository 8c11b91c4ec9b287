//! `bench-http-ceiling`: the HTTP ceiling of `scripts/bench-http`, a bare axum server that
//! answers `GET /api/table/{name}/{key}/` as faustus does for a key of 1,000 (`{"<key>": 40}`),
//! from a map behind a lock, and does nothing else: no application, no broker, no metrics.
//!
//! ```text
//! bench-http-ceiling --listen 127.0.0.1:PORT
//! ```
//!
//! What wrk measures against it on the same machine, with the same settings, is what the
//! machine's loopback HTTP stack and wrk leave for any server; faustus' figure is read beside it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde_json::json;

/// A bare axum server answering key lookups, the ceiling of `scripts/bench-http`.
#[derive(Parser)]
struct Args {
    /// Address to serve on.
    #[arg(long)]
    listen: SocketAddr,
}

/// The served entries: `account-<i>` → 40 for 1,000 accounts.
type Entries = Arc<RwLock<BTreeMap<String, i64>>>;

async fn get_key(
    State(entries): State<Entries>,
    Path((_table, key)): Path<(String, String)>,
) -> Response {
    let value = entries
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    match value {
        Some(v) => Json(json!({ key: v })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such key" })),
        )
            .into_response(),
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let entries: Entries = Arc::new(RwLock::new(
        (0..1000).map(|i| (format!("account-{i}"), 40)).collect(),
    ));
    let app = Router::new()
        .route("/api/table/{table}/{key}/", get(get_key))
        .with_state(entries);
    // The same runtime shape as faustus' HTTP server: two worker threads.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            axum::serve(listener, app).await
        })
}
