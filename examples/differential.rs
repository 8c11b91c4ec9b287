//! A program's own differential dataflow, made durable by faustus: who can reach whom in a
//! "follows" graph (its transitive closure), computed with differential's `iterate`, kept as the
//! public table `reach` (node → every node it reaches, in order), exactly-once and restored after
//! a restart.
//!
//! The closure goes down to differential (`Stream::collection`, `iterate`, `join_map`,
//! `distinct`, `reduce`) and comes back up through [`faustus::State`]: the state `reach` gives
//! back, at start-up, the closure its changelog held, and keeps the new closure, with a
//! changelog, exactly-once commits and an HTTP view. Since a closure of a closure is the same
//! closure, feeding the restored closure back in as edges continues exactly where the last run
//! stopped, although the edges it was computed from are not read again.
//!
//! The example produces `--edges` random follows (seeded by `--seed`) on the topic `follows`,
//! waits until they are processed, prints the table (read over HTTP) and exits.
//!
//! Run with: `cargo run --release --example differential` (embedded broker), or add
//! `-- --brokers 127.0.0.1:9092` for a real one; `-- --serve` keeps serving the table
//! (`curl http://127.0.0.1:6066/api/table/reach/1/`) until Ctrl-C. Run it again with another
//! `--seed` and the same `--app-id`: the new follows extend the restored closure.
//! See `docs/guide/differential.md`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;

use differential_dataflow::operators::Iterate as _;
use differential_dataflow::VecCollection;
use faustus::prelude::*;
use support::ExampleArgs;

/// faustus differential example: a transitive closure as a durable, public table.
#[derive(clap::Parser, Debug)]
struct Args {
    #[command(flatten)]
    example: ExampleArgs,
    /// How many random follows to produce before printing (0: none).
    #[arg(long, default_value_t = 12)]
    edges: u64,
    /// Nodes are numbered 1 to this.
    #[arg(long, default_value_t = 8)]
    nodes: u64,
    /// Seeds the random follows.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    support::main::<Args>(run)
}

/// The transitive closure of `edges`: `(a, c)` whenever a path leads from `a` to `c`.
fn closure<'s>(edges: VecCollection<'s, u64, (u64, u64)>) -> VecCollection<'s, u64, (u64, u64)> {
    let edges = edges.distinct();
    edges.clone().iterate(|scope, reach| {
        let edges = edges.enter(scope);
        reach
            .map(|(a, b)| (b, a))
            .join_map(edges.clone(), |_b, a, c| (*a, *c))
            .concat(edges)
            .distinct()
    })
}

fn run(args: Args) -> faustus::Result<()> {
    let follows = Topic::<u64, u64>::new(args.example.topic("follows")).partitions(2);
    let topic = follows.clone();
    let demo = args.example.start("differential", move |df| {
        let reach = df.state::<u64, Vec<u64>>("reach");
        // Down to differential: the new follows, and the closure the last run committed.
        let new_edges = df
            .stream(&topic)
            .collection()
            .map(|(from, to, _pos)| (from, to));
        let known = reach
            .restored()
            .flat_map(|(from, reached)| reached.into_iter().map(move |to| (from, to)));
        let pairs = closure(new_edges.concat(known));
        // One row per node: everything it reaches, in order.
        let table = pairs.reduce(|_from, reached, out: &mut Vec<(Vec<u64>, isize)>| {
            out.push((reached.iter().map(|(to, _)| **to).collect(), 1));
        });
        // Back up: routed, changelogged, committed exactly-once, served over HTTP.
        reach.keep(table).public();
    })?;
    let mut random = args.seed.max(1);
    let mut next = move || {
        // xorshift64: a small, seeded generator.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let nodes = args.nodes.max(1);
    let edges: Vec<(u64, u64)> = (0..args.edges)
        .map(|_| (next() % nodes + 1, next() % nodes + 1))
        .collect();
    demo.produce_values("follows", &edges);
    demo.wait_processed(&["follows"]);
    demo.print_table("reach");
    demo.finish()
}
