//! The quickstart: orders flow in, a table of the total amount per account comes out, kept in a
//! changelog topic, written to a topic of updates, and served over HTTP.
//!
//! Guarantee: exactly-once with a real broker (`--brokers`); at-least-once on the embedded demo
//! broker used when no broker is given.
//!
//! Run with: `cargo run --release --example quickstart`
//! (or `-- --brokers 127.0.0.1:9092` for a real broker; `-- --help` lists every flag and
//! command). Beside the worker, the program has the tools of `faustus::cli`: `tables`,
//! `get user_to_amount account-1`, `send orders --key account-1 '{"account":"account-1","amount":5}'`,
//! `agents` and `reset`.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use faustus::cli::Command;
use faustus::prelude::*;
use rand::Rng;

/// jemalloc: faustus programs that hold large tables or join state allocate a lot, and glibc's
/// allocator slows as its heap fragments (docs/guide/deployment.md, "The allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// An order, as JSON on the `orders` topic, keyed by account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Order {
    /// The account that placed it.
    pub account: String,
    /// Its amount.
    pub amount: i64,
}

/// The quickstart's dataflow: the total amount per account of the orders in `orders`, as the
/// public table `user_to_amount`, whose updates go to `totals`. (`tests/examples.rs` runs this
/// same function on a broker and on the test driver.)
pub fn dataflow(
    orders: Topic<String, Order>,
    totals: Topic<String, i64>,
) -> impl for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static {
    move |df| {
        let table = df
            .stream(&orders)
            .map(|_account, order| (order.account, order.amount))
            .sum("user_to_amount")
            .public();
        table.to_topic(&totals);
    }
}

/// faustus quickstart: sum order amounts per account.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    app: AppArgs,
    #[command(subcommand)]
    command: Option<Command>,
    /// Do not generate orders (count only what other Kafka clients write to `orders`).
    #[arg(long)]
    no_generate: bool,
    /// Orders generated per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Distinct accounts the generator uses.
    #[arg(long, default_value_t = 10)]
    accounts: u32,
    /// Stop generating after this many orders (default: never).
    #[arg(long)]
    limit: Option<u64>,
    /// The topic orders are read from.
    #[arg(global = true, long, default_value = "orders")]
    input_topic: String,
    /// The topic the table's updates are written to.
    #[arg(global = true, long, default_value = "user_to_amount-updates")]
    output_topic: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Text or JSON lines (`--log-format`), filtered by `RUST_LOG`.
    faustus::logging::init(args.app.log_format.unwrap_or_default(), "info")
        .expect("the first logger");
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        // A table, key or topic that does not exist: 1, as `grep` finds nothing.
        Err(e @ faustus::Error::NotFound(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> faustus::Result<()> {
    let app = App::new("quickstart").with_args(&args.app)?;
    let orders = Topic::<String, Order>::new(args.input_topic.clone())
        .key_codec(Str)
        .partitions(4);
    let totals = Topic::<String, i64>::new(args.output_topic.clone()).key_codec(Str);
    let orders_out = orders.clone();
    let command = args.command.clone().unwrap_or_default();
    if !command.is_worker() {
        return app.run_tool(&command, dataflow(orders, totals));
    }

    let running = app.start(dataflow(orders, totals))?;

    if let Some(addr) = running.http_addr() {
        println!(
            "faustus quickstart is running; brokers {}",
            running.brokers()
        );
        println!("table:   http://{addr}/api/table/user_to_amount/");
        println!("one key: http://{addr}/api/table/user_to_amount/account-1/");
        println!("stop with Ctrl-C");
    }
    if !args.no_generate {
        let producer = running.producer()?;
        let stop = running.stop_flag();
        let (rate, accounts, limit) = (args.rate.max(1), args.accounts.max(1), args.limit);
        std::thread::spawn(move || {
            let mut rng = rand::rng();
            let mut sent = 0u64;
            let mut pending = VecDeque::new();
            // Paced by the clock in ticks of 10 ms: each tick sends the orders due by then, so
            // the rate holds without a wake-up per order.
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| sent < l) {
                let due = (started.elapsed().as_micros() * u128::from(rate) / 1_000_000) as u64;
                let due = limit.map_or(due, |l| due.min(l));
                while sent < due {
                    let order = Order {
                        account: format!("account-{}", rng.random_range(0..accounts)),
                        amount: rng.random_range(1..100),
                    };
                    match producer.enqueue(&orders_out, &order.account, &order) {
                        Ok(p) => pending.push_back(p),
                        Err(e) => eprintln!("generator: {e}"),
                    }
                    // At most a thousand orders on their way: a failed one is reported.
                    while pending.len() > 1000 {
                        if let Some(Err(e)) = pending.pop_front().map(|p| p.wait()) {
                            eprintln!("generator: {e}");
                        }
                    }
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            for p in pending {
                if let Err(e) = p.wait() {
                    eprintln!("generator: {e}");
                }
            }
        });
    }
    running.run_until_signal()
}
