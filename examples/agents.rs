//! Agents: async code per event, beside the dataflow.
//!
//! Orders arrive on `orders`. The agent `price-orders` prices each one by calling an HTTP
//! service (a small axum service this example starts itself, which answers after a delay), 16
//! calls at a time, and sends the priced order to `priced-orders`. The dataflow sums the priced
//! orders into the public table `revenue`, per account. An order the service refuses (an
//! unknown currency) fails its retries and goes to the dead-letter topic; the rest flow on.
//!
//! The example produces its own orders, waits until the agent has committed them and the
//! dataflow has processed what it sent, prints the table, the priced orders and the dead
//! letters, and exits.
//!
//! Run with: `cargo run --release --example agents` (embedded broker), or add
//! `-- --brokers 127.0.0.1:9092` for a real one (exactly-once); `-- --serve` keeps serving
//! (`curl http://127.0.0.1:6066/api/agents/`) until Ctrl-C. See `docs/guide/agents.md`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use faustus::agent::{Agent, Event, HandlerError, Retry};
use faustus::prelude::*;
use support::ExampleArgs;

/// An order, on `orders` keyed by account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    id: u32,
    currency: String,
    amount: i64,
}

/// A priced order, on `priced-orders` keyed by account: the amount in cents of euro.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Priced {
    id: u32,
    euro_cents: i64,
}

/// faustus agents example: orders priced by an HTTP service, summed by the dataflow.
#[derive(clap::Parser, Debug)]
struct Args {
    #[command(flatten)]
    example: ExampleArgs,
}

fn main() -> ExitCode {
    support::main::<Args>(run)
}

/// The pricing service: the rate of a currency in cents of euro per unit, after 20 ms.
async fn rate(Path(currency): Path<String>) -> Result<String, StatusCode> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    match currency.as_str() {
        "EUR" => Ok("100".into()),
        "USD" => Ok("92".into()),
        "GBP" => Ok("117".into()),
        _ => Err(StatusCode::NOT_FOUND),
    }
}

/// Starts the pricing service on a free loopback port; its base URL.
fn start_pricing_service() -> faustus::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| faustus::Error::Runtime(format!("the pricing service: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| faustus::Error::Runtime(format!("the pricing service: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| faustus::Error::Runtime(format!("the pricing service: {e}")))?;
    std::thread::spawn(move || {
        let app = Router::new().route("/rate/{currency}", get(rate));
        if let Err(e) = runtime.block_on(async { axum::serve(listener, app).await }) {
            eprintln!("the pricing service stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

fn run(args: Args) -> faustus::Result<()> {
    let service = start_pricing_service()?;
    let orders = Topic::<String, Order>::new(args.example.topic("orders")).partitions(4);
    let priced = Topic::<String, Priced>::new(args.example.topic("priced-orders")).partitions(4);

    let client = reqwest::Client::new();
    let out = priced.clone();
    let agent = Agent::new("price-orders", &orders)
        .concurrency(16)
        .timeout(Duration::from_secs(5))
        .retry(Retry {
            retries: 2,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        })
        .sends_to(&priced)
        .handler(move |event: Event<String, Order>| {
            let (client, out, service) = (client.clone(), out.clone(), service.clone());
            async move {
                let order = event.value();
                let response = client
                    .get(format!("{service}/rate/{}", order.currency))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    return Err(HandlerError::new(format!(
                        "no rate for {}: {}",
                        order.currency,
                        response.status()
                    )));
                }
                let rate: i64 = response.text().await?.trim().parse()?;
                let priced = Priced {
                    id: order.id,
                    euro_cents: order.amount * rate,
                };
                event.send(&out, event.key(), priced)?;
                Ok(())
            }
        });

    let summed = priced.clone();
    let demo = args.example.start_with(
        "agents",
        |app| app.agent(agent),
        move |df| {
            df.stream(&summed)
                .map(|account, p| (account, p.euro_cents))
                .sum("revenue")
                .public();
        },
    )?;

    let s = |x: &str| x.to_string();
    let order = |account: &str, id: u32, currency: &str, amount: i64| {
        (
            s(account),
            Order {
                id,
                currency: s(currency),
                amount,
            },
        )
    };
    demo.produce_values(
        "orders",
        &[
            order("ann", 1, "EUR", 10),
            order("bob", 2, "USD", 25),
            order("ann", 3, "GBP", 4),
            order("cat", 4, "XYZ", 1),
            order("bob", 5, "EUR", 7),
            order("cat", 6, "USD", 100),
        ],
    );
    demo.wait_agent("price-orders", "orders");
    demo.wait_processed(&["priced-orders"]);

    demo.print_table("revenue");
    demo.print_stream("priced-orders");
    println!("## dead letters");
    for letter in demo.read_raw(&demo.dead_letter_topic()) {
        println!(
            "{} => {}",
            letter.key,
            letter.header("faustus.error.reason")
        );
    }
    demo.finish()
}
