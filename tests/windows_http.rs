//! A windowed table over HTTP, against the real broker: a plain key answers with all its
//! windows and the latest one, a whole `[key, window]` with that window's value. (The windows'
//! semantics, through restarts, are tested on the test driver: `tests/operators.rs`.)

mod common;

use std::time::Duration;

use common::*;
use faustus::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Click {
    at: u64,
}

#[test]
fn windowed_keys_answer_with_their_windows_over_http() {
    let app_id = unique("windows-http");
    let input = unique("clicks");
    create_topic(&input, 2);
    let topic = Topic::<String, Click>::new(input.clone());
    let app = App::new(app_id)
        .brokers(brokers())
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .commit_interval(Duration::from_millis(100))
        .workers(2)
        .start(move |df| {
            df.stream(&topic)
                .event_time(|_, c| c.at)
                .grace(Duration::from_millis(500))
                .tumbling(Duration::from_secs(1))
                .expires(Duration::from_secs(3600))
                .count("clicks_per_second")
                .public();
        })
        .expect("the app starts");
    let click = |user: &str, at: u64| {
        (
            Some(serde_json::to_vec(user).unwrap()),
            Some(serde_json::to_vec(&Click { at }).unwrap()),
        )
    };
    let base = format!(
        "http://{}/api/table/clicks_per_second",
        app.http_addr().expect("HTTP is on")
    );
    let window = |start: u64, n: i64| serde_json::json!({"window": {"start": start, "end": start + 1000}, "value": n});
    let answers = |key: &str, expected: &serde_json::Value| {
        wait_for(
            &format!("{expected} over HTTP"),
            Duration::from_secs(120),
            || {
                let (status, body) = http_get(&format!("{base}/{key}/"));
                (status == 200 && body == *expected).then_some(())
            },
        )
    };
    // In steps, each read before the next is sent: a later click sent first (a producer's
    // retry) would close the earlier window.
    produce(&input, &[click("a", 100), click("a", 200)]);
    answers(
        "a",
        &serde_json::json!({"a": {"windows": [window(0, 2)], "current": window(0, 2)}}),
    );
    produce(&input, &[click("a", 1_500), click("b", 1_999)]);
    answers(
        "b",
        &serde_json::json!({"b": {"windows": [window(1000, 1)], "current": window(1000, 1)}}),
    );
    produce(&input, &[click("a", 5_000), click("a", 5_100)]);
    answers(
        "a",
        &serde_json::json!({"a": {
            "windows": [window(0, 2), window(1000, 1), window(5000, 2)],
            "current": window(5000, 2),
        }}),
    );
    // A whole `[key, window]` answers with that window's count.
    let whole = r#"["b",{"start":1000,"end":2000}]"#;
    let encoded: String = whole.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, body) = http_get(&format!("{base}/{encoded}/"));
    assert_eq!((status, body), (200, serde_json::json!({whole: 1})));
    let (status, _) = http_get(&format!("{base}/nobody/"));
    assert_eq!(status, 404);

    // The same windows from the program: every window of a key, the one that holds a time
    // (Faust's `.current()` / `.now()` / `.delta()`), and the latest.
    let w = |start: u64| Window {
        start,
        end: start + 1000,
    };
    let a = "a".to_string();
    let reader = app
        .table::<(String, Window), i64>("clicks_per_second")
        .expect("a windowed table is read with (key, Window) keys");
    assert_eq!(
        reader.windows(&a).unwrap(),
        vec![(w(0), 2), (w(1000), 1), (w(5000), 2)]
    );
    assert_eq!(reader.window_at(&a, 1_200).unwrap(), Some((w(1000), 1)));
    assert_eq!(reader.window_at(&a, 3_000).unwrap(), None);
    assert_eq!(reader.latest(&a).unwrap(), Some((w(5000), 2)));
    assert_eq!(reader.windows(&"nobody".to_string()).unwrap(), vec![]);
    let handle = app
        .table_handle::<(String, Window), i64>("clicks_per_second")
        .unwrap();
    let (windows, at, latest) = runtime().block_on(async {
        (
            handle.windows(&a).await.unwrap(),
            handle.window_at(&a, 5_050).await.unwrap(),
            handle.latest(&"b".to_string()).await.unwrap(),
        )
    });
    assert_eq!(windows, vec![(w(0), 2), (w(1000), 1), (w(5000), 2)]);
    assert_eq!(at, Some((w(5000), 2)));
    assert_eq!(latest, Some((w(1000), 1)));
    app.shutdown().expect("a clean stop");
}
