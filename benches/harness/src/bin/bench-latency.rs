//! `bench-latency`: open-loop end-to-end latency of one system on one workload (see
//! `faustus_bench::latency`).
//!
//! ```text
//! bench-latency --workload W2 --guarantee exactly_once --brokers 127.0.0.1:9092 \
//!     --rate 5000 --seconds 30 [--warmup-seconds 5] --system faustus --results FILE \
//!     -- target/release/bench-faustus
//! ```
//!
//! appends `{"kind":"latency","system",..,"p50_ms","p99_ms","samples","unmatched"}` to `FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use faustus_bench::latency::{self, Settings};
use faustus_bench::report;

/// Open-loop latency: feed a system its workload at a fixed rate and time every output.
#[derive(clap::Parser, Debug)]
#[command(name = "bench-latency")]
struct Cli {
    /// The workload: W0, W1, W2, W3 or W4.
    #[arg(long)]
    workload: String,
    /// The guarantee the system runs with: exactly_once or at_least_once.
    #[arg(long)]
    guarantee: String,
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Input events per second.
    #[arg(long)]
    rate: f64,
    /// What the rate is, for the report: `low` (half the slowest system's throughput) or `high`
    /// (half of Kafka Streams').
    #[arg(long, default_value = report::LOW_LOAD, value_parser = [report::LOW_LOAD, report::HIGH_LOAD])]
    load: String,
    /// Seconds measured after the warm-up.
    #[arg(long)]
    seconds: f64,
    /// Seconds of warm-up, whose samples are discarded.
    #[arg(long, default_value_t = 5.0)]
    warmup_seconds: f64,
    /// The system's name, for the result.
    #[arg(long)]
    system: String,
    /// The file the result is appended to (one JSON object per line).
    #[arg(long)]
    results: PathBuf,
    /// Also write the latency over time to this CSV file: per 100 ms of scheduled send time
    /// after the warm-up, the samples, their median and their maximum.
    #[arg(long)]
    series: Option<PathBuf>,
    /// The system's command and its fixed arguments (after `--`); the contract's flags are
    /// added.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let settings = Settings {
        workload: cli.workload,
        guarantee: cli.guarantee,
        brokers: cli.brokers,
        rate: cli.rate,
        load: cli.load,
        seconds: cli.seconds,
        warmup_seconds: cli.warmup_seconds,
        system: cli.system,
        command: cli.command,
        series: cli.series,
    };
    match latency::run(&settings).and_then(|result| {
        println!(
            "{}",
            serde_json::to_string(&result).expect("results serialize")
        );
        latency::append(&cli.results, &result)
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-latency: {e}");
            ExitCode::FAILURE
        }
    }
}
