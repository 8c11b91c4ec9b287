//! The router without Kafka: two "processes" in one test, each with its own replicas and its own
//! server on a loopback port, configured with each other's addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{router, HttpState, FORWARDED_HEADER};
use crate::runtime::assignment::Assignments;
use crate::runtime::table::{Shard, Tables};

const PEERS: usize = 4;
const WORKERS: usize = 2;

/// The owner process of a key.
fn process_of(key: i64) -> usize {
    (crate::runtime::route(&key) % PEERS as u64) as usize / WORKERS
}

/// The states of processes 0 and 1 (2 workers each) holding table `prices` (`i64` keys `0..n`,
/// spread over the four workers by the stable hash), and the private table `secret` unregistered.
/// `peers` are the processes' base URLs.
fn states(n: i64, peers: Vec<String>) -> Vec<HttpState> {
    let shards: Vec<Shard<i64, String>> = (0..PEERS)
        .map(|_| Arc::new(RwLock::new(BTreeMap::new())))
        .collect();
    for key in 0..n {
        let owner = (crate::runtime::route(&key) % PEERS as u64) as usize;
        shards[owner]
            .write()
            .unwrap()
            .insert(key, format!("v{key}"));
    }
    (0..2)
        .map(|process| {
            let tables = Arc::new(Tables::default());
            let mine = shards.iter().enumerate().skip(process * WORKERS);
            for (worker, shard) in mine.take(WORKERS) {
                tables.register("prices", worker, PEERS, WORKERS, Arc::clone(shard));
            }
            HttpState::new(
                tables,
                Arc::new(Assignments::default()),
                process,
                2,
                WORKERS,
                peers.clone(),
            )
        })
        .collect()
}

/// Serves both processes on loopback ports; returns their states and addresses.
async fn cluster(n: i64) -> (Vec<HttpState>, Vec<SocketAddr>) {
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let states = states(n, addrs.iter().map(|a| format!("http://{a}")).collect());
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
            (StatusCode::OK, json!({"results": ["prices"]}))
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
    ] {
        assert!(body["paths"][path].is_object(), "{path} is not documented");
    }
}
