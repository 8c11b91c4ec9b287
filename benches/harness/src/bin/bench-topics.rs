//! `bench-topics`: small topic chores for `scripts/bench`.
//!
//! ```text
//! bench-topics --brokers B delete-prefix PREFIX   delete every topic whose name starts with PREFIX
//! bench-topics --brokers B count TOPIC            print the topic's record count (exit 3 if absent)
//! ```

use clap::{Parser, Subcommand};
use faustus_bench::kafka;

#[derive(Parser, Debug)]
#[command(about = "Topic chores for the benchmark script")]
struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    #[command(subcommand)]
    command: Chore,
}

#[derive(Subcommand, Debug)]
enum Chore {
    /// Delete every topic whose name starts with the prefix.
    DeletePrefix {
        /// The prefix (at least 6 characters, so a typo cannot empty the broker).
        prefix: String,
    },
    /// Print a topic's record count.
    Count {
        /// The topic.
        topic: String,
    },
}

fn main() {
    let args = Args::parse();
    let result = match args.command {
        Chore::DeletePrefix { prefix } if prefix.len() < 6 => {
            Err(format!("refusing to delete by the short prefix `{prefix}`").into())
        }
        Chore::DeletePrefix { prefix } => kafka::delete_topics_with_prefix(&args.brokers, &prefix)
            .map(|deleted| eprintln!("bench-topics: deleted {} topics", deleted.len())),
        Chore::Count { topic } => kafka::record_count(&args.brokers, &topic).map(|n| match n {
            Some(n) => println!("{n}"),
            None => {
                eprintln!("bench-topics: no topic `{topic}`");
                std::process::exit(3);
            }
        }),
    };
    if let Err(e) = result {
        eprintln!("bench-topics: error: {e}");
        std::process::exit(1);
    }
}
