//! `bench-faustus`: faustus on the side-by-side benchmark workloads (`benches/README.md`, "The
//! harness contract").
//!
//! ```text
//! bench-faustus --workload W0|W1|W2|W3|W4 --guarantee at_least_once|exactly_once
//!               --brokers HOST:PORT --app-id ID --output-prefix P
//!               [--bids T --auctions T --persons T --words T]
//! ```
//!
//! runs the workload (1 process × 2 workers, 100 ms epochs, the contract's producer settings)
//! until SIGTERM or Ctrl-C. With `--restore-probe --workload W2 --app-id ID --words T
//! --results FILE` it instead starts on an existing application id, times how long the W2
//! counts table takes to be restored from its changelog, appends
//! `{"kind":"restore","system":"faustus","records":..,"keys":..,"seconds":..,"records_per_sec":..}`
//! to `FILE` and exits (`--fill-keys N` first writes `N` entries into that changelog, to probe
//! without a preceding W2 run).

mod probe;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use faustus::prelude::*;
use faustus_bench::COMMIT_INTERVAL_MS;

use workloads::{Topics, Workload};

/// jemalloc, as the guide recommends for faustus programs (docs/guide/deployment.md, "The
/// allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// faustus on the benchmark workloads W0–W4 (and the changelog restore probe).
#[derive(clap::Parser, Debug)]
#[command(name = "bench-faustus")]
struct Cli {
    /// The workload to run.
    #[arg(long, value_enum)]
    workload: Workload,
    /// Processing guarantee: `exactly_once` or `at_least_once`.
    #[arg(long, default_value = "exactly_once")]
    guarantee: Guarantee,
    /// Kafka bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Application id (names the changelog, progress and dead-letter topics).
    #[arg(long)]
    app_id: String,
    /// Prefix of the output topics (`<P>w0`, `<P>w1-q1`, ...). Required, except for the restore
    /// probe, which writes no outputs.
    #[arg(long, required_unless_present = "restore_probe")]
    output_prefix: Option<String>,
    /// The bids topic.
    #[arg(long, default_value = "bench-bid")]
    bids: String,
    /// The auctions topic.
    #[arg(long, default_value = "bench-auction")]
    auctions: String,
    /// The persons topic.
    #[arg(long, default_value = "bench-person")]
    persons: String,
    /// The words topic.
    #[arg(long, default_value = "bench-words-100000")]
    words: String,
    /// Worker threads (the contract: 2).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Time the restore of the W2 counts table of `--app-id` from its changelog, append the
    /// result to `--results`, and exit.
    #[arg(long, requires = "results")]
    restore_probe: bool,
    /// Where the restore probe appends its result (one JSON object per line).
    #[arg(long, requires = "restore_probe")]
    results: Option<PathBuf>,
    /// Run W0 as an agent (an async handler per bid) instead of a dataflow; no other workload
    /// has an agent form.
    #[arg(long)]
    agent: bool,
    /// With `--agent`: how long each handler waits before it sends (an I/O-bound handler).
    #[arg(long, default_value_t = 0, requires = "agent")]
    agent_sleep_ms: u64,
    /// With `--agent`: handlers running at once.
    #[arg(long, default_value_t = 8, requires = "agent")]
    agent_concurrency: usize,
    /// With `--agent`: let any bid overtake another (the default keeps per-key order, which
    /// serializes Nexmark's hot auctions).
    #[arg(long, requires = "agent")]
    agent_unordered: bool,
    /// Before probing, write this many entries (`"w<i>"` → 1) into the W2 counts changelog
    /// (and create the words topic if it is missing), to probe without a preceding W2 run.
    #[arg(long, requires = "restore_probe")]
    fill_keys: Option<u64>,
    /// After the restore, count one more word, wait until its epoch is committed, and kill the
    /// process with SIGKILL: the next probe then restarts after a `kill -9`, from the local
    /// checkpoint this run kept.
    #[arg(long, requires = "restore_probe")]
    kill_after_commit: bool,
    /// Where faustus keeps its local checkpoints (`off`: none, every restart replays the
    /// changelog); faustus' default when not given.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The sensors (hop latency, records per operator, end-to-end latency): `on` (faustus'
    /// default) or `off`, to measure what they cost.
    #[arg(long, default_value = "on", action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    sensors: bool,
    /// The commit interval in milliseconds: the contract's 100 unless measuring what another
    /// interval does to latency and throughput.
    #[arg(long, default_value_t = COMMIT_INTERVAL_MS)]
    commit_interval_ms: u64,
    /// The shortest epoch in milliseconds (faustus' default, a tenth of the commit interval,
    /// when not given): the commit interval itself measures fixed-length epochs.
    #[arg(long)]
    min_epoch_ms: Option<u64>,
}

/// The exit status of a system asked for a workload it does not run (the contract's "3").
const UNSUPPORTED: i32 = 3;

/// The application, configured as the contract says.
fn app(cli: &Cli) -> App {
    let app = App::new(cli.app_id.clone())
        .brokers(cli.brokers.clone())
        .guarantee(cli.guarantee)
        .workers(cli.workers)
        .http(None)
        .sensors(cli.sensors)
        .commit_interval(Duration::from_millis(cli.commit_interval_ms))
        .producer_setting("acks", "all")
        .producer_setting("linger.ms", "5")
        .producer_setting("batch.size", "262144")
        .producer_setting("compression.type", "none");
    let app = match &cli.state_dir {
        Some(dir) if dir.as_os_str() == "off" => app.without_checkpoints(),
        Some(dir) => app.state_dir(dir),
        None => app,
    };
    match cli.min_epoch_ms {
        Some(ms) => app.min_epoch(Duration::from_millis(ms)),
        None => app,
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let topics = Topics {
        bids: cli.bids.clone(),
        auctions: cli.auctions.clone(),
        persons: cli.persons.clone(),
        words: cli.words.clone(),
        output_prefix: cli.output_prefix.clone(),
    };
    let workload = cli.workload;
    if cli.restore_probe {
        if workload != Workload::W2 {
            return Err(format!(
                "--restore-probe measures the W2 counts table: use --workload W2, not {workload:?}"
            ));
        }
        let results = cli.results.clone().expect("clap requires --results");
        let probe = probe::Probe {
            fill_keys: cli.fill_keys,
            kill_after_commit: cli.kill_after_commit,
        };
        return probe::restore_probe(app(&cli), &cli.app_id, topics, probe, &results);
    }
    if cli.agent {
        if workload != Workload::W0 {
            eprintln!("bench-faustus: --agent runs W0 only");
            std::process::exit(UNSUPPORTED);
        }
        let agent = workloads::w0_agent(
            &topics,
            Duration::from_millis(cli.agent_sleep_ms),
            cli.agent_concurrency,
            cli.agent_unordered,
        );
        return app(&cli)
            .agent(agent)
            .run_agents()
            .map_err(|e| e.to_string());
    }
    app(&cli)
        .run(move |df| workloads::build(df, workload, &topics))
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = <Cli as clap::Parser>::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-faustus: {e}");
            ExitCode::FAILURE
        }
    }
}
