//! Inputs without Kafka (`faustus::input`) on the real broker: an iterator's position commits
//! with the epochs, so a restarted application reads each item once; a channel feeds a
//! running application from other threads.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use faustus::input::Input;
use faustus::prelude::*;
use faustus::Running;

/// The iterator's items: `N` ones over 8 keys.
const N: i64 = 400_000;

/// An application that counts the iterator's items per key into table `counts`; `made` counts
/// the items the iterator made (skipped ones included).
fn count_numbers(app_id: &str, made: Arc<AtomicI64>) -> Running {
    let input = Input::iter("numbers", move || {
        let made = Arc::clone(&made);
        (0..N).map(move |i| {
            made.fetch_add(1, Ordering::Relaxed);
            (format!("k{}", i % 8), 1i64)
        })
    });
    App::new(app_id)
        .brokers(brokers())
        .guarantee(Guarantee::ExactlyOnce)
        .workers(2)
        .http(None)
        .start(move |df| {
            df.input(&input).sum("counts");
        })
        .expect("the app starts")
}

/// The sum of table `table`'s values, from its changelog.
fn total(app_id: &str, table: &str) -> i64 {
    changelog_table(app_id, table).values().sum()
}

#[test]
fn an_iterator_is_read_once_across_a_stop_in_the_middle() {
    let app_id = unique("input-iter");
    let made = Arc::new(AtomicI64::new(0));
    let running = count_numbers(&app_id, Arc::clone(&made));
    wait_for(
        "the iterator to make 50,000 items",
        Duration::from_secs(120),
        || (made.load(Ordering::Relaxed) >= 50_000).then_some(()),
    );
    running.shutdown().expect("a clean stop");
    let first = total(&app_id, "counts");
    assert!(
        first > 0 && first < N,
        "the first run should stop partway through the {N} items, and commit what it took: it counted {first}"
    );

    // The restarted application makes the iterator again and skips what the first run
    // committed: once every item is counted, the total is N, not N plus what the first run took.
    let running = count_numbers(&app_id, Arc::new(AtomicI64::new(0)));
    wait_for("every item to be counted", Duration::from_secs(300), || {
        (total(&app_id, "counts") >= N).then_some(())
    });
    running.shutdown().expect("a clean stop");
    let counts = changelog_table(&app_id, "counts");
    assert_eq!(counts.len(), 8);
    for (key, count) in &counts {
        assert_eq!(*count, N / 8, "key {key}: {counts:?}");
    }
}

#[test]
fn a_channel_feeds_a_running_application_from_another_thread() {
    let app_id = unique("input-channel");
    let (sender, input) = Input::<String, i64>::channel("orders", 64);
    let running = App::new(app_id.clone())
        .brokers(brokers())
        .guarantee(Guarantee::ExactlyOnce)
        .workers(2)
        .http(None)
        .start(move |df| {
            df.input(&input).sum("totals");
        })
        .expect("the app starts");
    // More items than the channel holds: the senders wait for the dataflow to take them.
    let senders: Vec<_> = (0..2)
        .map(|t| {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    sender
                        .blocking_send(format!("k{}", (t * 500 + i) % 10), 1)
                        .expect("the application reads the input");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("a sender thread");
    }
    wait_for(
        "the 1,000 items to be summed",
        Duration::from_secs(120),
        || {
            let totals = changelog_table(&app_id, "totals");
            (totals.len() == 10 && totals.values().all(|v| *v == 100)).then_some(())
        },
    );
    running.shutdown().expect("a clean stop");
    assert_eq!(total(&app_id, "totals"), 1_000);
}
