//! The router without Kafka: two "processes" in one test, each with its own replicas and its own
//! server on a loopback port, configured with each other's addresses.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, HttpState, FORWARDED_HEADER};
use crate::runtime::assignment::Assignments;
use crate::runtime::health::Health;
use crate::runtime::table::{Replica, Shard, Tables};

const PEERS: usize = 4;
const WORKERS: usize = 2;

/// The owner process of a key.
fn process_of(key: i64) -> usize {
    (crate::runtime::route(&key) % PEERS as u64) as usize / WORKERS
}

/// Table `prices` (`i64` keys `0..n`, spread over the four workers by the stable hash): one
/// replica shard per worker, each ready.
fn shards(n: i64) -> Vec<Shard<i64, String>> {
    let shards: Vec<Shard<i64, String>> = (0..PEERS).map(|_| Arc::new(Replica::new())).collect();
    for key in 0..n {
        let owner = (crate::runtime::route(&key) % PEERS as u64) as usize;
        shards[owner].write().insert(key, format!("v{key}"));
    }
    for shard in &shards {
        shard.set_ready();
    }
    shards
}

/// A process whose tables are all restored.
fn ready_health() -> Arc<Health> {
    let health = Health::new(WORKERS);
    health.workers_started();
    health.restore_complete();
    Arc::new(health)
}

/// The changelog of `prices`.
const CHANGELOG: &str = "app-prices-changelog";

/// A process that is restoring: 250 of 1,000 changelog offsets read so far.
fn restoring_health() -> Arc<Health> {
    let health = Health::new(WORKERS);
    health.workers_started();
    health.update_restore(CHANGELOG, |r| {
        r.workers_started = WORKERS;
        r.expected_offsets = 1000;
        r.records = 250;
    });
    Arc::new(health)
}

/// Process `process` (2 workers) holding its workers' `shards` of table `prices` (and the
/// private table `secret` unregistered). `peers` are the processes' base URLs.
fn process_state(
    process: usize,
    shards: &[Shard<i64, String>],
    health: Arc<Health>,
    peers: Vec<String>,
) -> HttpState {
    let tables = Arc::new(Tables::default());
    tables.declare(
        "prices",
        Some(CHANGELOG.into()),
        std::any::TypeId::of::<crate::runtime::table::Replicas<i64, String>>(),
    );
    let mine = shards.iter().enumerate().skip(process * WORKERS);
    for (worker, shard) in mine.take(WORKERS) {
        tables.register("prices", worker, PEERS, WORKERS, Arc::clone(shard));
    }
    HttpState::new(
        tables,
        health,
        Arc::new(Assignments::default()),
        process,
        2,
        WORKERS,
        peers,
    )
}

/// The states of processes 0 and 1 holding table `prices` with keys `0..n`, both ready.
fn states(n: i64, peers: Vec<String>) -> Vec<HttpState> {
    let shards = shards(n);
    (0..2)
        .map(|process| process_state(process, &shards, ready_health(), peers.clone()))
        .collect()
}

/// Serves both processes on loopback ports; returns their states and addresses.
async fn cluster(n: i64) -> (Vec<HttpState>, Vec<SocketAddr>) {
    serve(|peers| states(n, peers)).await
}

/// Serves the two processes `build` makes (given their base URLs) on loopback ports.
async fn serve(
    build: impl FnOnce(Vec<String>) -> Vec<HttpState>,
) -> (Vec<HttpState>, Vec<SocketAddr>) {
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let states = build(addrs.iter().map(|a| format!("http://{a}")).collect());
    for (listener, state) in listeners.into_iter().zip(&states) {
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    (states, addrs)
}

async fn request(state: &HttpState, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Asks `uri` and expects `status` with a JSON error; returns the error's message.
async fn error(state: &HttpState, uri: &str, status: StatusCode) -> String {
    let (got, body) = get(state, uri).await;
    assert_eq!(got, status, "{uri}: {body}");
    match body["error"].as_str() {
        Some(message) => message.to_string(),
        None => panic!("{uri}: no JSON error in {body}"),
    }
}

async fn get(state: &HttpState, uri: &str) -> (StatusCode, Value) {
    let (status, body) = request(state, Request::get(uri).body(Body::empty()).unwrap()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_key_has_the_same_answer_from_both_processes() {
    let (states, _) = cluster(40).await;
    assert!((0..40).any(|k| process_of(k) == 0) && (0..40).any(|k| process_of(k) == 1));
    for state in &states {
        assert_eq!(
            get(state, "/api/table").await,
            (
                StatusCode::OK,
                // The entries are summed over the two processes, each holding its part.
                json!({
                    "results": ["prices"],
                    "tables": {"prices": {"state": "ready"}},
                    "entries": {"prices": 40}
                })
            )
        );
        for key in 0..40i64 {
            for uri in [
                format!("/api/table/prices/{key}"),
                format!("/api/table/prices/{key}/"),
                format!("/api/table/prices/?key={key}"),
            ] {
                assert_eq!(
                    get(state, &uri).await,
                    (
                        StatusCode::OK,
                        json!({ key.to_string(): format!("v{key}") })
                    ),
                    "{uri} from process {}",
                    state.process
                );
            }
        }
        // Missing keys are 404 whoever owns them: the owner's answer comes back.
        for key in [1000i64, 1001, 1002, 1003] {
            let uri = format!("/api/table/prices/{key}/");
            let message = error(state, &uri, StatusCode::NOT_FOUND).await;
            assert!(message.contains(&key.to_string()), "{message}");
        }
    }
}

#[tokio::test]
async fn errors_are_json() {
    let (states, _) = cluster(20).await;
    let state = &states[0];
    let bad_key = error(state, "/api/table/prices/x/", StatusCode::BAD_REQUEST).await;
    assert!(bad_key.contains("not a valid key"), "{bad_key}");
    for uri in ["/api/table/secret/1/", "/api/table/secret/"] {
        let message = error(state, uri, StatusCode::NOT_FOUND).await;
        assert!(message.contains("secret"), "{message}");
    }
    for bad in [
        "size=0",
        "size=1001",
        "size=-1",
        "size=x",
        "page=0",
        "page=abc",
        "after=abc",
    ] {
        let uri = format!("/api/table/prices/?{bad}");
        let message = error(state, &uri, StatusCode::BAD_REQUEST).await;
        assert!(message.contains('`'), "{message}");
    }
    error(state, "/no/such/path", StatusCode::NOT_FOUND).await;
    // A path that does not decode as UTF-8: axum's own rejection, made JSON.
    error(state, "/api/table/%FF/", StatusCode::BAD_REQUEST).await;
    let (status, body) = request(
        state,
        Request::post("/api/table/").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
}

#[tokio::test]
async fn pages_cover_every_key_of_every_process_once_in_order() {
    let (states, _) = cluster(1000).await;
    for state in &states {
        for size in [1, 7, 100, 1000] {
            let mut seen = Vec::new();
            let mut uri = format!("/api/table/prices/?size={size}");
            let mut page = 1;
            loop {
                let (status, body) = get(state, &uri).await;
                assert_eq!(status, StatusCode::OK, "{uri}: {body}");
                assert_eq!(body["page"], json!(page));
                assert_eq!(body["total"], json!(1000));
                let results = body["results"].as_object().unwrap();
                assert!(results.len() <= size);
                let mut keys: Vec<i64> = results.keys().map(|k| k.parse().unwrap()).collect();
                keys.sort();
                seen.extend(keys);
                match body["next"].as_str() {
                    Some(next) => {
                        assert_eq!(body["next_page"], json!(page + 1));
                        uri = next.to_string();
                        page += 1;
                    }
                    None => break,
                }
            }
            assert_eq!(seen, (0..1000).collect::<Vec<_>>(), "size {size}");
        }
        // Within a page, the members follow the key order (numbers, not strings).
        let uri = "/api/table/prices/?size=20";
        let (_, text) = request(state, Request::get(uri).body(Body::empty()).unwrap()).await;
        let at = |key: i64| text.find(&format!("\"{key}\":")).unwrap();
        assert!((0..19).all(|k| at(k) < at(k + 1)), "{text}");
        // The cursor form pages through the same keys.
        let mut seen = Vec::new();
        let mut uri = "/api/table/prices/?size=300".to_string();
        loop {
            let (status, body) = get(state, &uri).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let mut keys: Vec<i64> = body["results"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            keys.sort();
            seen.extend(keys);
            match body["next_after"].as_str() {
                Some(after) => uri = format!("/api/table/prices/?size=300&after={after}"),
                None => break,
            }
        }
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        // Past the end: an empty page, no next.
        let (status, body) = get(state, "/api/table/prices/?page=99").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["results"], json!({}));
        assert_eq!(body["next"], Value::Null);
    }
}

#[tokio::test]
async fn forwarded_requests_are_never_forwarded_again() {
    let (states, _) = cluster(40).await;
    let remote = (0..40).find(|&k| process_of(k) == 1).unwrap();
    let request = Request::get(format!("/api/table/prices/{remote}/"))
        .header(FORWARDED_HEADER, "1")
        .body(Body::empty())
        .unwrap();
    let (status, body) = super::tests::request(&states[0], request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("process 1 owns it"), "{body}");
}

#[tokio::test]
async fn an_unreachable_owner_is_503_and_own_keys_still_answer() {
    // Process 1's address is a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let states = states(
        40,
        vec!["http://127.0.0.1:1".into(), format!("http://{closed}")],
    );
    let state = &states[0];
    let remote = (0..40).find(|&k| process_of(k) == 1).unwrap();
    let local = (0..40).find(|&k| process_of(k) == 0).unwrap();
    let remote_uri = format!("/api/table/prices/{remote}/");
    let message = error(state, &remote_uri, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("process 1 cannot be reached"), "{message}");
    assert!(message.to_lowercase().contains("refused"), "{message}");
    let (status, _) = get(state, &format!("/api/table/prices/{local}/")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get(state, "/api/table/prices/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Without any addresses configured, the error says what to configure.
    let states = super::tests::states(40, Vec::new());
    let message = error(&states[0], &remote_uri, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(message.contains("--http-peers"), "{message}");
}

#[tokio::test]
async fn browsers_get_html() {
    let (states, _) = cluster(40).await;
    let html = |uri: &str| {
        Request::get(uri)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Body::empty())
            .unwrap()
    };
    let pages: [(usize, &str, StatusCode, &[&str]); 4] = [
        (
            0,
            "/api/table/",
            StatusCode::OK,
            &["href=\"/api/table/prices/\""],
        ),
        (
            0,
            "/api/table/prices/?size=10",
            StatusCode::OK,
            &[
                "id=\"next\" href=\"/api/table/prices/?page=2&amp;size=10\"",
                "<form id=\"lookup\"",
            ],
        ),
        (
            1,
            "/api/table/prices/?key=3",
            StatusCode::OK,
            &["&quot;v3&quot;"],
        ),
        (
            1,
            "/api/table/nope/",
            StatusCode::NOT_FOUND,
            &["no table named `nope`"],
        ),
    ];
    for (process, uri, status, wanted) in pages {
        let (got, body) = request(&states[process], html(uri)).await;
        assert_eq!(got, status, "{uri}");
        for text in wanted {
            assert!(body.contains(text), "{uri}: no {text} in {body}");
        }
    }
}

#[tokio::test]
async fn the_openapi_document_is_json() {
    let (status, body) = get(&states(1, Vec::new())[0], "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/table/",
        "/api/table/{name}/",
        "/api/table/{name}/{key}/",
        "/api/assignment/",
        "/api/agents/",
        "/api/workflows/",
    ] {
        assert!(body["paths"][path].is_object(), "{path} is not documented");
    }
}

/// Asks `uri` with a full request; returns the status, the `Retry-After` header and the JSON.
async fn get_with_retry(state: &HttpState, uri: &str) -> (StatusCode, Option<String>, Value) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_restoring_table_is_503_with_progress_never_404_and_never_a_partial_page() {
    let shards = shards(40);
    // Process 0's replicas hold every key already but are not marked ready: the restore
    // epoch has not passed through them.
    let ready_later: Vec<_> = shards[..WORKERS]
        .iter()
        .map(|_| Arc::new(Replica::new()))
        .collect();
    for (fresh, full) in ready_later.iter().zip(&shards[..WORKERS]) {
        fresh.write().extend(full.read().clone());
    }
    let mut all = ready_later.clone();
    all.extend(shards[WORKERS..].iter().cloned());
    let healths = [restoring_health(), ready_health()];
    let (states, _) = serve(|peers| {
        (0..2)
            .map(|p| process_state(p, &all, Arc::clone(&healths[p]), peers.clone()))
            .collect()
    })
    .await;
    let on_0 = (0..40)
        .filter(|&k| process_of(k) == 0)
        .collect::<Vec<i64>>();
    let on_1 = (0..40)
        .filter(|&k| process_of(k) == 1)
        .collect::<Vec<i64>>();
    assert!(!on_0.is_empty() && !on_1.is_empty());
    for state in &states {
        // Keys process 0 keeps: 503 from either process (forwarded to the owner), with the
        // state, the progress and a Retry-After header; missing keys too.
        for key in on_0.iter().copied().chain([1000, 1001, 1002, 1003]) {
            if key >= 1000 && process_of(key) != 0 {
                continue;
            }
            for uri in [
                format!("/api/table/prices/{key}/"),
                format!("/api/table/prices/?key={key}"),
            ] {
                let (status, retry, body) = get_with_retry(state, &uri).await;
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
                assert_eq!(body["state"], "restoring", "{uri}: {body}");
                assert_eq!(body["table"], "prices", "{body}");
                assert_eq!(body["restore"]["records"], 250, "{body}");
                assert_eq!(body["restore"]["expected_records"], 1000, "{body}");
                let message = body["error"].as_str().unwrap();
                assert!(
                    message.contains("restoring") && message.contains("process 0"),
                    "{message}"
                );
                let retry: u64 = retry.expect("a Retry-After header").parse().unwrap();
                assert!((1..=30).contains(&retry), "{retry}");
                assert_eq!(body["retry_after_s"], retry);
            }
        }
        // Process 1's keys answer from process 1, and through it from process 0.
        for key in &on_1 {
            let (status, _, body) =
                get_with_retry(state, &format!("/api/table/prices/{key}/")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body[key.to_string()], format!("v{key}"));
        }
        // A listing needs every process: 503, never a page of process 1's keys only.
        let (status, retry, body) = get_with_retry(state, "/api/table/prices/?size=1000").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["state"], "restoring", "{body}");
        assert!(retry.is_some());
        assert!(body.get("results").is_none(), "{body}");
        // The list of tables says so, from either process.
        let (status, _, body) = get_with_retry(state, "/api/table/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["results"], json!(["prices"]));
        assert_eq!(body["tables"]["prices"]["state"], "restoring", "{body}");
        // Liveness does not depend on the restore.
        assert_eq!(
            get(state, "/api/live").await,
            (StatusCode::OK, json!({"live": true}))
        );
    }
    let (status, retry, body) = get_with_retry(&states[0], "/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["state"], "restoring");
    assert_eq!(body["tables"]["prices"]["state"], "restoring");
    assert!(retry.is_some());
    let (status, _, body) = get_with_retry(&states[1], "/api/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["state"], "ready");

    // The restore ends: the same requests get the exact values.
    healths[0].restore_complete();
    for shard in &ready_later {
        shard.set_ready();
    }
    for state in &states {
        for key in 0..40i64 {
            assert_eq!(
                get(state, &format!("/api/table/prices/{key}/")).await,
                (
                    StatusCode::OK,
                    json!({ key.to_string(): format!("v{key}") })
                )
            );
        }
        let (status, body) = get(state, "/api/table/prices/?size=1000").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["total"], 40);
        assert_eq!(body["results"].as_object().unwrap().len(), 40);
        let (_, body) = get(state, "/api/table/").await;
        assert_eq!(body["tables"]["prices"]["state"], "ready");
        assert_eq!(get(state, "/api/ready").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn before_the_workers_run_a_declared_table_is_starting_and_an_unknown_one_absent() {
    let tables = Arc::new(Tables::default());
    tables.declare(
        "prices",
        Some(CHANGELOG.into()),
        std::any::TypeId::of::<crate::runtime::table::Replicas<i64, String>>(),
    );
    let state = HttpState::new(
        tables,
        Arc::new(Health::new(WORKERS)),
        Arc::new(Assignments::default()),
        0,
        1,
        WORKERS,
        Vec::new(),
    );
    for uri in ["/api/table/prices/1/", "/api/table/prices/"] {
        let (status, retry, body) = get_with_retry(&state, uri).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["state"], "starting", "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(
            !body["error"].as_str().unwrap().contains("process"),
            "{body}"
        );
    }
    error(&state, "/api/table/other/1/", StatusCode::NOT_FOUND).await;
    let (_, body) = get(&state, "/api/table/").await;
    assert_eq!(body["tables"]["prices"]["state"], "starting");
    let (status, body) = get(&state, "/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["state"], "starting");
    assert_eq!(get(&state, "/api/live").await.0, StatusCode::OK);
    // A fatal error: not live, not ready.
    state.health.fail("the committer was fenced".into());
    let (status, body) = get(&state, "/api/live").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("fenced"), "{body}");
    let (status, body) = get(&state, "/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().unwrap().contains("fenced"), "{body}");
}

#[tokio::test]
async fn a_browser_gets_a_page_that_reloads_until_the_table_is_ready() {
    let fresh: Vec<_> = (0..PEERS).map(|_| Arc::new(Replica::new())).collect();
    let (states, _) = serve(|peers| {
        (0..2)
            .map(|p| process_state(p, &fresh, restoring_health(), peers.clone()))
            .collect()
    })
    .await;
    let html = |uri: &str| {
        Request::get(uri)
            .header("accept", "text/html")
            .body(Body::empty())
            .unwrap()
    };
    let (status, body) = request(&states[0], html("/api/table/prices/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("http-equiv=\"refresh\""), "{body}");
    assert!(body.contains("restoring"), "{body}");
    let (status, body) = request(&states[0], html("/api/table/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("restoring: 25%"), "{body}");
}

#[tokio::test]
async fn a_key_of_a_worker_that_has_not_registered_yet_is_not_ready_not_elsewhere() {
    // One process of two workers; only worker 0 has built its part of the dataflow yet.
    let tables = Arc::new(Tables::default());
    tables.register(
        "prices",
        0,
        WORKERS,
        WORKERS,
        Arc::new(Replica::<i64, String>::new()),
    );
    let state = HttpState::new(
        tables,
        restoring_health(),
        Arc::new(Assignments::default()),
        0,
        1,
        WORKERS,
        Vec::new(),
    );
    let on_worker_1 = (0..100i64)
        .find(|k| crate::runtime::route(k) % WORKERS as u64 == 1)
        .unwrap();
    let (status, retry, body) =
        get_with_retry(&state, &format!("/api/table/prices/{on_worker_1}/")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        matches!(body["state"].as_str(), Some("restoring")),
        "{body}"
    );
    assert!(retry.is_some());
    assert!(
        !body["error"].as_str().unwrap().contains("reached"),
        "{body}"
    );
}

#[tokio::test]
async fn the_process_is_not_ready_until_every_public_table_holds_the_restored_state() {
    // The restore epoch has passed the whole dataflow, but one worker's read copy has not taken
    // it in yet (its operator runs a moment later).
    let shards = shards(10);
    let late = Arc::new(Replica::<i64, String>::new());
    let mut all = vec![Arc::clone(&late)];
    all.extend(shards[1..].iter().cloned());
    let state = process_state(0, &all, ready_health(), Vec::new());
    let (status, retry, body) = get_with_retry(&state, "/api/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["state"], "restoring", "{body}");
    assert_eq!(body["tables"]["prices"]["state"], "restoring", "{body}");
    assert!(retry.is_some());
    late.set_ready();
    let (status, _, body) = get_with_retry(&state, "/api/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An agent's status as the consumer thread publishes it.
fn agent_status(name: &str) -> crate::agent::AgentStatus {
    use crate::agent::{AgentSettings, OnFailure, Ordering, PartitionStatus, Retry};
    crate::agent::AgentStatus {
        settings: AgentSettings {
            name: name.into(),
            topic: "orders".into(),
            concurrency: 8,
            ordering: Ordering::PerKey,
            max_in_flight: 100,
            read_ahead_bytes: 1 << 20,
            manual_ack: false,
            retry: Retry::default(),
            timeout: std::time::Duration::from_secs(5),
            on_failure: OnFailure::DeadLetter,
            drain_timeout: std::time::Duration::from_secs(30),
            actor: false,
            skip_tombstones: false,
        },
        state: "running".into(),
        partitions: vec![PartitionStatus {
            partition: 3,
            in_flight: 2,
            buffered: 5,
            committed: Some(40),
            committable: Some(41),
            acked_ranges: vec![(42, 44)],
            paused: false,
            blocked_ms: Some(1500),
        }],
        handled: 7,
        failed_attempts: 1,
        dead_lettered: 0,
    }
}

#[tokio::test]
async fn agents_of_every_process_are_listed_as_json_and_html() {
    let (states, _) = cluster(4).await;
    states[0]
        .agents
        .add(Arc::new(std::sync::Mutex::new(agent_status("enrich"))));
    states[1]
        .agents
        .add(Arc::new(std::sync::Mutex::new(agent_status("audit"))));
    for state in &states {
        let (status, body) = get(state, "/api/agents/").await;
        assert_eq!(status, StatusCode::OK);
        let processes = body["processes"].as_array().expect("processes");
        assert_eq!(processes.len(), 2, "{body}");
        assert_eq!(processes[0]["agents"][0]["settings"]["name"], "enrich");
        assert_eq!(processes[1]["agents"][0]["settings"]["name"], "audit");
        let partition = &processes[0]["agents"][0]["partitions"][0];
        assert_eq!(partition["acked_ranges"], json!([[42, 44]]));
        assert_eq!(partition["committable"], 41);
        assert_eq!(partition["buffered"], 5);
        assert_eq!(
            processes[0]["agents"][0]["settings"]["read_ahead_bytes"],
            1 << 20
        );
        assert_eq!(processes[0]["agents"][0]["settings"]["ordering"], "per_key");
        let (status, assignment) = get(state, "/api/assignment/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            assignment["processes"][1]["agents"][0],
            json!({"agent": "audit", "topic": "orders", "partitions": [3], "state": "running"})
        );
    }
    let html = Request::get("/api/agents/")
        .header("accept", "text/html")
        .body(Body::empty())
        .unwrap();
    let (status, page) = request(&states[0], html).await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "<h2>enrich",
        "<h2>audit",
        "<td>3</td><td>2</td><td>5</td><td>40</td><td>41</td><td>42–44</td><td>1.5 s</td>",
    ] {
        assert!(page.contains(text), "no {text} in {page}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_hold_table_sizes() {
    let state = &states(40, Vec::new())[0];
    // Keys this process holds, and one path that matches no route.
    let mine: Vec<i64> = (0..40).filter(|k| process_of(*k) == 0).collect();
    for key in &mine[..3] {
        assert_eq!(
            get(state, &format!("/api/table/prices/{key}")).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        get(state, "/api/nothing/here").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, text) =
        request(state, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(
            "faustus_http_requests_total{method=\"GET\",route=\"/api/table/{name}/{key}\",status=\"200\"} 3"
        ),
        "{text}"
    );
    // Never a raw path: no key, and nothing for the unknown path.
    assert!(
        !text.contains(&format!("/api/table/prices/{}", mine[0])),
        "{text}"
    );
    assert!(!text.contains("/api/nothing"), "{text}");
    assert!(
        text.contains(&format!(
            "faustus_table_entries{{table=\"prices\"}} {}",
            mine.len()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn the_overview_sums_the_series_and_merges_dead_letters_of_every_process() {
    use crate::overview::{RecentDeadLetter, Sample};
    let (states, _) = cluster(10).await;
    // Process 1 is one second out of phase with process 0; both start at 10 s.
    for (process, state) in states.iter().enumerate() {
        let offset = process as u64 * 1000;
        for i in 0..3u64 {
            state.overview.history.push(Sample {
                at_ms: 10_000 + i * 2000 + offset,
                records_read: (i + 1) * 100 * (process as u64 + 1),
                records_written: i,
                lag: Some(5),
                dead_letters: i,
                commits: i,
            });
        }
        let mut letter = RecentDeadLetter::now("decode", &format!("bad on {process}"));
        letter.at_ms = 50_000 + offset;
        state.metrics.recent_dead_letters.push(letter);
    }
    let (status, body) = get(&states[0], "/api/overview/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["app"]["state"], "ready", "{body}");
    assert_eq!(body["app"]["processes"], 2);
    let read: Vec<u64> = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["records_read"].as_u64().unwrap())
        .collect();
    assert_eq!(read, vec![300, 600, 900], "{body}");
    assert_eq!(body["series"][0]["lag"], 10);
    // Newest first, each with its process; the series is summed, not repeated per process.
    let letters = body["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["reason"], "bad on 1");
    assert_eq!(letters[0]["process"], 1);
    assert_eq!(letters[1]["reason"], "bad on 0");
    assert_eq!(body["processes"].as_array().unwrap().len(), 2);
    assert!(body["processes"][1].get("series").is_none(), "{body}");
    assert_eq!(
        body["tables"]["prices"],
        json!({"state": "ready", "entries": 10})
    );

    // A program asking `/` gets the index; a browser, the page, which loads nothing from
    // elsewhere.
    let (status, index) = get(&states[0], "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(index["endpoints"]["overview"], "/api/overview/");
    let page = request(
        &states[0],
        Request::get("/")
            .header("accept", "text/html")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.0, StatusCode::OK);
    assert!(page.1.contains("id=\"chart-throughput\""));
    for external in ["http://", "https://", "src=", "@import", "url("] {
        let used = page
            .1
            .lines()
            .filter(|l| l.contains(external) && !l.contains("www.w3.org/2000/svg"))
            .collect::<Vec<_>>();
        assert!(used.is_empty(), "the page uses `{external}`: {used:?}");
    }
}

#[tokio::test]
async fn a_sample_counts_what_the_process_did() {
    let state = &states(1, Vec::new())[0];
    state.metrics.read_counter("in", 0).inc_by(7);
    state
        .metrics
        .dead_letters
        .with_label_values(&["decode"])
        .inc();
    super::overview::sample_once(state).await;
    let samples = state.overview.history.oldest_first();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].records_read, 7);
    assert_eq!(samples[0].dead_letters, 1);
    assert_eq!(samples[0].lag, None, "no sources, no lag");
    assert!(samples[0].at_ms > 0);
}
