//! Joins, one of each kind, on a small shop:
//!
//! - **stream⋈table** (left join): page views enriched with the viewer's profile from the
//!   `users` table; views of unknown users keep `null` (`Stream::left_join`);
//! - **table⋈table** (inner and outer): users with their accounts (`Table::join`,
//!   `Table::outer_join`), kept up to date as either side changes;
//! - **foreign-key join**: orders with the customer their `customer` field points to
//!   (`Table::fk_join`, Kafka's KIP-213);
//! - **windowed stream⋈stream** (left join): ad impressions with the clicks on them within 10 s
//!   (`Timed::left_join`); an impression nobody clicked comes out with `null` once its window
//!   has closed.
//!
//! The example starts the application, produces its own input in three steps (the reference
//! data, then the events, then one late impression that moves stream time on so that the open
//! join windows close), waits until each step is processed, prints the joined tables (read over
//! HTTP) and streams (read from their topics), and exits.
//!
//! Run with: `cargo run --release --example joins` (embedded broker), or add
//! `-- --brokers 127.0.0.1:9092` for a real one; `-- --serve` keeps serving the tables over HTTP
//! (`curl http://127.0.0.1:6066/api/table/users-join-accounts/`) until Ctrl-C; `-- --help` lists
//! every flag. See `docs/guide/joins.md`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use faustus::prelude::*;
use support::ExampleArgs;

/// A user profile, on the `users` topic keyed by user id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct User {
    name: String,
    plan: String,
}

/// An account, on the `accounts` topic keyed by user id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

/// A customer, on the `customers` topic keyed by customer id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Customer {
    name: String,
    country: String,
}

/// An order, on the `orders` topic keyed by order id; `customer` is a foreign key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    customer: String,
    amount: i64,
}

/// A page view, on the `page-views` topic keyed by user id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct PageView {
    page: String,
}

/// An ad impression, on the `impressions` topic keyed by impression id; `at` is its event
/// time in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Impression {
    ad: String,
    at: u64,
}

/// A click on an impression, on the `clicks` topic keyed by impression id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Click {
    at: u64,
}

/// faustus joins example: stream⋈table, table⋈table, foreign-key and windowed stream⋈stream.
#[derive(clap::Parser, Debug)]
struct Args {
    #[command(flatten)]
    example: ExampleArgs,
}

/// How far apart an impression and its click may be.
const CLICK_WINDOW: Duration = Duration::from_secs(10);
/// How far behind stream time an impression or click may arrive and still join.
const GRACE: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    support::main::<Args>(run)
}

fn run(args: Args) -> faustus::Result<()> {
    let t = |name: &str| args.example.topic(name);
    let users = Topic::<String, User>::new(t("users")).partitions(4);
    let accounts = Topic::<String, Account>::new(t("accounts")).partitions(4);
    let customers = Topic::<String, Customer>::new(t("customers")).partitions(4);
    let orders = Topic::<String, Order>::new(t("orders")).partitions(4);
    let views = Topic::<String, PageView>::new(t("page-views")).partitions(4);
    let impressions = Topic::<String, Impression>::new(t("impressions")).partitions(4);
    let clicks = Topic::<String, Click>::new(t("clicks")).partitions(4);
    let enriched = Topic::<String, (PageView, Option<User>)>::new(t("enriched-page-views"));
    let clicked = Topic::<String, (Impression, Option<Click>)>::new(t("impression-clicks"));

    let demo = args.example.start("joins", move |df| {
        let users = df.table(&users, "users").public();
        let accounts = df.table(&accounts, "accounts").public();
        let customers = df.table(&customers, "customers");
        let orders = df.table(&orders, "orders");

        // stream⋈table: each view looks its user up as of the view's arrival.
        df.stream(&views).left_join(&users).to_topic(&enriched);

        // table⋈table: `users-join-accounts` and `users-outer-join-accounts`.
        users.join(&accounts).public();
        users.outer_join(&accounts).public();

        // Foreign key: each order joins the customer it names (`orders-fk-join-customers`).
        orders
            .fk_join(&customers, |order: &Order| Some(order.customer.clone()))
            .public();

        // Windowed stream⋈stream: impressions with their clicks within 10 s.
        let impressions = df
            .stream(&impressions)
            .event_time(|_, i| i.at)
            .within(CLICK_WINDOW)
            .grace(GRACE);
        let clicks = df.stream(&clicks).event_time(|_, c| c.at);
        impressions
            .left_join("impression-clicks", clicks)
            .to_topic(&clicked);
    })?;

    let s = |x: &str| x.to_string();
    let user = |name: &str, plan: &str| User {
        name: s(name),
        plan: s(plan),
    };
    // 1. Reference data: tables take the last value per key, a null value deletes the key.
    demo.produce(
        "users",
        &[
            (s("ann"), Some(user("Ann", "free"))),
            (s("bob"), Some(user("Bob", "free"))),
            (s("cat"), Some(user("Cat", "pro"))),
            (s("ann"), Some(user("Ann", "pro"))),
            (s("cat"), None),
        ],
    );
    demo.produce_values(
        "accounts",
        &[
            (s("ann"), Account { balance: 120 }),
            (s("bob"), Account { balance: 15 }),
            (s("dan"), Account { balance: 40 }),
        ],
    );
    demo.produce_values(
        "customers",
        &[
            (
                s("c1"),
                Customer {
                    name: s("Acme"),
                    country: s("SE"),
                },
            ),
            (
                s("c2"),
                Customer {
                    name: s("Globex"),
                    country: s("DE"),
                },
            ),
        ],
    );
    let order = |customer: &str, amount: i64| Order {
        customer: s(customer),
        amount,
    };
    demo.produce_values(
        "orders",
        &[
            (s("o1"), order("c1", 30)),
            (s("o2"), order("c2", 12)),
            (s("o3"), order("c1", 7)),
            (s("o4"), order("c9", 5)),
        ],
    );
    demo.wait_processed(&["users", "accounts", "customers", "orders"]);

    // 2. Events: views look the users up; impressions and clicks meet within 10 s.
    let view = |page: &str| PageView { page: s(page) };
    demo.produce_values(
        "page-views",
        &[
            (s("ann"), view("/home")),
            (s("zed"), view("/pricing")),
            (s("bob"), view("/docs")),
            (s("ann"), view("/checkout")),
        ],
    );
    let impression = |ad: &str, at: u64| Impression { ad: s(ad), at };
    demo.produce_values(
        "impressions",
        &[
            (s("imp-1"), impression("shoes", 1_000)),
            (s("imp-2"), impression("hats", 2_000)),
            (s("imp-3"), impression("shoes", 5_000)),
        ],
    );
    demo.produce_values(
        "clicks",
        &[
            (s("imp-1"), Click { at: 4_000 }),
            (s("imp-1"), Click { at: 9_000 }),
            (s("imp-3"), Click { at: 30_000 }),
        ],
    );
    demo.wait_processed(&["page-views", "impressions", "clicks"]);

    // 3. A much later impression moves stream time past the earlier impressions' windows
    // (event time + 10 s + 60 s grace): the unclicked ones come out with `null`.
    demo.produce_values("impressions", &[(s("imp-4"), impression("hats", 200_000))]);
    demo.wait_processed(&["impressions"]);

    demo.print_stream("enriched-page-views");
    demo.print_table("users-join-accounts");
    demo.print_table("users-outer-join-accounts");
    demo.print_table("orders-fk-join-customers");
    demo.print_stream("impression-clicks");
    demo.finish()
}
