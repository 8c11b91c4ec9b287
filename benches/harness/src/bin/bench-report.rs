//! `bench-report`: turns the results rows (JSON lines) into `latest.json` and `latest.md`, or
//! prints the open-loop rate for a workload's latency runs.
//!
//! ```text
//! bench-report --results FILE [--out-dir DIR] [--notes FILE]
//! bench-report --results FILE --latency-rate --workload W --guarantee G [--of SYSTEM]
//! ```

use std::fs;
use std::path::PathBuf;

use clap::Parser;
use faustus_bench::report;

#[derive(Parser, Debug)]
#[command(about = "Writes latest.json and latest.md from the benchmark's result rows")]
struct Args {
    /// The JSON-lines results file.
    #[arg(long)]
    results: PathBuf,
    /// Where latest.json and latest.md go.
    #[arg(long, default_value = "benches/results")]
    out_dir: PathBuf,
    /// Free text for the "Where a target is missed" section (default: `<out-dir>/notes.md` when
    /// it exists).
    #[arg(long)]
    notes: Option<PathBuf>,
    /// Print the latency runs' open-loop rate (half the slowest system's events/s) for
    /// --workload and --guarantee, and exit (status 3 when nothing was measured).
    #[arg(long, requires_all = ["workload", "guarantee"])]
    latency_rate: bool,
    /// The workload (with --latency-rate).
    #[arg(long)]
    workload: Option<String>,
    /// The guarantee (with --latency-rate).
    #[arg(long)]
    guarantee: Option<String>,
    /// With --latency-rate: half of this system's events/s instead of the slowest system's.
    #[arg(long, requires = "latency_rate")]
    of: Option<String>,
}

fn run(args: Args) -> Result<(), String> {
    let text = fs::read_to_string(&args.results)
        .map_err(|e| format!("reading {}: {e}", args.results.display()))?;
    let rows = report::parse_rows(&text).map_err(|e| format!("{}: {e}", args.results.display()))?;
    if args.latency_rate {
        let (w, g) = (
            args.workload.unwrap_or_default(),
            args.guarantee.unwrap_or_default(),
        );
        match report::latency_rate(&rows, &w, &g, args.of.as_deref()) {
            Some(rate) => {
                println!("{}", rate.floor().max(1.0) as u64);
                return Ok(());
            }
            None => {
                let of = args.of.as_deref().unwrap_or("any system");
                eprintln!("bench-report: no measured throughput of {of} for {w} {g}");
                std::process::exit(3);
            }
        }
    }
    let notes_path = args.notes.unwrap_or_else(|| args.out_dir.join("notes.md"));
    let notes = fs::read_to_string(&notes_path).ok();
    fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("creating {}: {e}", args.out_dir.display()))?;
    let json = serde_json::to_string_pretty(&report::summary_json(&rows)).expect("JSON");
    let json_path = args.out_dir.join("latest.json");
    fs::write(&json_path, json + "\n")
        .map_err(|e| format!("writing {}: {e}", json_path.display()))?;
    let md_path = args.out_dir.join("latest.md");
    fs::write(&md_path, report::markdown(&rows, notes.as_deref()))
        .map_err(|e| format!("writing {}: {e}", md_path.display()))?;
    eprintln!(
        "bench-report: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("bench-report: error: {e}");
        std::process::exit(1);
    }
}
