//! Timers: code on a schedule, run by one process of the cluster.
//!
//! The timer `heartbeat` fires every `--every-ms` milliseconds (10 s by default) and sends one
//! record per slot to `--output-topic` (`timer-ticks`): the key is the slot (milliseconds since
//! 1970), the value `{"who": <--who>, "at": <when the handler ran, in ms>}`. The timer
//! `minutely` (crontab `* * * * *`) logs each minute.
//!
//! Start two processes with the same `--app-id`: every slot is sent once, by one of them (the
//! one whose `timer-heartbeat` agent holds partition 0 in `/api/agents/`). Kill that one and the
//! other takes over within about ten seconds. Under `exactly_once` (a real broker) each slot's
//! record commits with the tick, exactly once.
//!
//! Run with: `cargo run --example timers -- --brokers 127.0.0.1:9092 --who a` (and again with
//! `--who b`, and `--http 127.0.0.1:6067`, in another terminal); Ctrl-C stops it. See
//! `docs/guide/workflows.md` ("Timers").

use std::process::ExitCode;
use std::time::Duration;

use faustus::prelude::*;
use faustus::timer::{Tick, Timer};

/// faustus timers example: a heartbeat timer on one process of the cluster.
#[derive(clap::Parser, Debug)]
struct Args {
    #[command(flatten)]
    app: AppArgs,
    /// The heartbeat's interval, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    every_ms: u64,
    /// The topic the heartbeat writes to.
    #[arg(long, default_value = "timer-ticks")]
    output_topic: String,
    /// This process's name in the records it sends (default: `pid-<process id>`).
    #[arg(long)]
    who: Option<String>,
}

/// What the heartbeat sends for a slot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Beat {
    who: String,
    at: i64,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let _ = faustus::logging::init(args.app.log_format.unwrap_or_default(), "info");
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> faustus::Result<()> {
    let who = args
        .who
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    let ticks = Topic::<String, Beat>::new(args.output_topic).key_codec(Str);
    let out = ticks.clone();
    let heartbeat = Timer::every("heartbeat", Duration::from_millis(args.every_ms))
        .sends_to(&ticks)
        .handler(move |tick: Tick| {
            let (out, who) = (out.clone(), who.clone());
            async move {
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                tick.send(&out, tick.slot_millis().to_string(), Beat { who, at })?;
                Ok(())
            }
        });
    let minutely = Timer::crontab("minutely", "* * * * *").handler(|tick: Tick| async move {
        log::info!("minutely: slot {}", tick.slot_millis());
        Ok(())
    });
    App::new("timers")
        .with_args(&args.app)?
        .timer(heartbeat)
        .timer(minutely)
        .run_agents()
}
