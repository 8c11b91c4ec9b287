//! Tables with nested values, and a running aggregate:
//!
//! - a **set table** (`Stream::set_table`): the tags of each user, from a topic of set
//!   operations (`{"action": "add", "value": "rust"}`, `remove`, `clear`);
//! - a **list table** (`Stream::list_table`): each user's actions since they last logged out,
//!   in arrival order, from a topic of plain action events mapped to list operations;
//! - a **running aggregate** (`Stream::scan`): each user's balance as a table, and the stream
//!   of balances after every payment.
//!
//! The example produces its own input, waits until it is processed, prints the tables (read
//! over HTTP) and the running balances (read from their topic), and exits.
//!
//! Run with: `cargo run --release --example tables` (embedded broker), or add
//! `-- --brokers 127.0.0.1:9092` for a real one; `-- --serve` keeps serving the tables over HTTP
//! (`curl http://127.0.0.1:6066/api/table/tags/ann/`) until Ctrl-C; `-- --help` lists every
//! flag. See `docs/guide/tables.md`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

use faustus::prelude::*;
use support::ExampleArgs;

/// A user action, on the `actions` topic keyed by user id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Action {
    kind: String,
}

/// faustus tables example: set and list tables, and a running aggregate.
#[derive(clap::Parser, Debug)]
struct Args {
    #[command(flatten)]
    example: ExampleArgs,
}

fn main() -> ExitCode {
    support::main::<Args>(run)
}

fn run(args: Args) -> faustus::Result<()> {
    let tag_ops = Topic::<String, SetOp<String>>::new(args.example.topic("tag-ops")).partitions(4);
    let actions = Topic::<String, Action>::new(args.example.topic("actions")).partitions(4);
    let payments = Topic::<String, i64>::new(args.example.topic("payments")).partitions(4);
    let balances = Topic::<String, i64>::new(args.example.topic("balance-updates"));

    let demo = args.example.start("tables", move |df| {
        // The operations are the topic's values: a set table of tags per user.
        df.stream(&tag_ops).set_table("tags").public();

        // Domain events become list operations: a logout empties the list.
        df.stream(&actions)
            .map_values(|action| match action.kind.as_str() {
                "logout" => ListOp::Clear,
                _ => ListOp::Append(action.kind),
            })
            .list_table("actions-since-logout")
            .public();

        // The balance after every payment, as a table and as a stream.
        let (balance, after_each) = df.stream(&payments).scan("balance", |_, total, amount| {
            total.copied().unwrap_or(0) + amount
        });
        balance.public();
        after_each.to_topic(&balances);
    })?;

    let s = |x: &str| x.to_string();
    let add = |m: &str| SetOp::Add(s(m));
    let remove = |m: &str| SetOp::Remove(s(m));
    demo.produce_values(
        "tag-ops",
        &[
            (s("ann"), add("rust")),
            (s("ann"), add("kafka")),
            (s("bob"), add("go")),
            (s("ann"), add("rust")),
            (s("ann"), remove("kafka")),
            (s("bob"), SetOp::Clear),
            (s("bob"), add("python")),
            (s("cat"), add("rust")),
            (s("cat"), remove("rust")),
        ],
    );
    let action = |user: &str, kind: &str| (s(user), Action { kind: s(kind) });
    demo.produce_values(
        "actions",
        &[
            action("ann", "login"),
            action("ann", "search"),
            action("bob", "login"),
            action("ann", "view"),
            action("ann", "logout"),
            action("ann", "login"),
            action("ann", "buy"),
            action("bob", "view"),
        ],
    );
    demo.produce_values(
        "payments",
        &[
            (s("ann"), 50i64),
            (s("bob"), 20),
            (s("ann"), -15),
            (s("ann"), 30),
            (s("bob"), 5),
        ],
    );
    demo.wait_processed(&["tag-ops", "actions", "payments"]);

    demo.print_table("tags");
    demo.print_table("actions-since-logout");
    demo.print_table("balance");
    demo.print_stream("balance-updates");
    demo.finish()
}
