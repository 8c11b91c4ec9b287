//! Embedding: faustus's HTTP API nested under a prefix (`/faustus`) in a program's own axum
//! service, next to the program's own routes, the way Faust's views live inside a host web app.
//!
//! The program sums order amounts per account into the public table `user_to_amount`, counts
//! orders per amount into the public table `orders_by_amount` (integer keys), and counts orders
//! per account into `order_count`, which is not public: the API answers 404 for it, as for a
//! table that does not exist.
//!
//! Guarantee: exactly-once with a real broker (`--brokers`); at-least-once on the embedded demo
//! broker used when no broker is given (then the program writes a few demo orders itself).
//!
//! Run with: `cargo run --example embed`, then open <http://127.0.0.1:6067/faustus/api/table/>.
//! Stop with Ctrl-C (or give `--run-for-secs N`). In a cluster, give every process's base URL,
//! prefix included: `--http-peers http://host1:6067/faustus,http://host2:6067/faustus`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use clap::Parser;
use faustus::prelude::*;

/// faustus embedded in a program's own axum service.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    app: AppArgs,
    /// The address of the program's own HTTP service.
    #[arg(long, default_value = "127.0.0.1:6067")]
    listen: SocketAddr,
    /// Where faustus's API is nested in it (`/` or empty: at the root).
    #[arg(long, default_value = "/faustus")]
    prefix: String,
    /// The topic orders are read from.
    #[arg(long, default_value = "orders")]
    input_topic: String,
    /// Demo orders to write when running on the embedded broker.
    #[arg(long, default_value_t = 100)]
    demo_orders: u32,
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    run_for_secs: Option<u64>,
}

/// An order, as JSON on the input topic, keyed by account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    account: String,
    amount: i64,
}

fn main() -> ExitCode {
    // Text or JSON lines (`--log-format`), filtered by `RUST_LOG`.
    match run(faustus::logging::parse_args::<Args>("info")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // The program serves HTTP itself: faustus's own server stays off unless `--http` is given.
    let app = App::new("embed").http(None).with_args(&args.app)?;
    let embedded = app.config().brokers.is_none();
    let orders = Topic::<String, Order>::new(args.input_topic.clone())
        .key_codec(Str)
        .partitions(4);
    let demo_orders = orders.clone();
    let running = app.start(move |df| {
        let per_account = df
            .stream(&orders)
            .map(|_account, order| (order.account, order.amount));
        per_account.clone().sum("user_to_amount").public();
        per_account
            .clone()
            .map(|_account, amount| (amount, 1i64))
            .sum("orders_by_amount")
            .public(); // numeric keys: `/api/table/orders_by_amount/7/`
        per_account.count("order_count"); // private: not served
    })?;
    if embedded {
        write_demo_orders(&running.producer()?, &demo_orders, args.demo_orders)?;
    }

    let own = Router::new().route("/", get(|| async { "the program's own routes\n" }));
    let service = match args.prefix.trim_end_matches('/') {
        "" => own.merge(running.router()),
        prefix => own.nest(prefix, running.router()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!(
            "tables: http://{}{}/api/table/",
            listener.local_addr()?,
            args.prefix
        );
        axum::serve(listener, service)
            .with_graceful_shutdown(stop_signal(args.run_for_secs))
            .await
    })?;
    running.shutdown()?;
    Ok(())
}

/// Completes on Ctrl-C, SIGTERM, or after `secs` seconds.
async fn stop_signal(secs: Option<u64>) {
    let deadline = async {
        match secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = deadline => {}
    }
}

/// Writes `n` orders over ten accounts.
fn write_demo_orders(
    producer: &faustus::Producer,
    orders: &Topic<String, Order>,
    n: u32,
) -> faustus::Result<()> {
    let mut pending = Vec::new();
    for i in 0..n {
        let order = Order {
            account: format!("account-{}", i % 10),
            amount: i64::from(i % 7 + 1),
        };
        pending.push(producer.enqueue(orders, &order.account, &order)?);
    }
    for p in pending {
        p.wait()?;
    }
    Ok(())
}
