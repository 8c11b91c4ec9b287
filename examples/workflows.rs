//! Workflows: a fan-out/fan-in job with a chord, and a chain.
//!
//! A batch of images is thumbnailed by one request per image to the agent `thumbnail` (the
//! chord's members, handled 8 at a time). When every image has its thumbnail, the chord
//! coordinator sends the batch's result to `thumbnail-batches`, once; the agent `summarize`
//! turns it into a summary record on `thumbnail-summaries`. Then one image goes through a chain
//! of three agents, `resize` → `watermark` → `publish`, and the last step's reply comes back to
//! the asker.
//!
//! The example starts its application, runs the batch and the chain, prints the summary and
//! the chain's result, and exits.
//!
//! Run with: `cargo run --release --example workflows` (embedded broker), or add
//! `-- --brokers 127.0.0.1:9092` for a real one. With `--worker` it only runs the agents until
//! Ctrl-C (several processes share them; `tests/workflows_chaos.rs` kills them). See
//! `docs/guide/workflows.md`.

use std::process::ExitCode;
use std::time::Duration;

use faustus::agent::{Agent, Event};
use faustus::prelude::*;
use faustus::workflow::{Chain, Chord, ChordResult};
use faustus::AppArgs;

/// An image to thumbnail, keyed by its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Image {
    name: String,
    bytes: u64,
}

/// A thumbnail: a chord member's reply, and a chain step's value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Thumb {
    name: String,
    bytes: u64,
    watermarked: bool,
}

/// A batch's summary, on `thumbnail-summaries` keyed by the batch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Summary {
    batch: String,
    images: usize,
    thumbnail_bytes: u64,
    failed: usize,
    missing: usize,
}

/// faustus workflows example: a chord of thumbnails and a chain.
#[derive(clap::Parser, Debug)]
struct Args {
    /// The application's flags (`--brokers`, `--app-id`, `--guarantee`, ...).
    #[command(flatten)]
    app: AppArgs,
    /// Prefix of the example's topics (so that runs on one broker do not mix).
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Images in the batch.
    #[arg(long, default_value_t = 20)]
    images: u64,
    /// Only run the agents (and the chord coordinator) until Ctrl-C or SIGTERM.
    #[arg(long)]
    worker: bool,
    /// Milliseconds each thumbnail takes.
    #[arg(long, default_value_t = 5)]
    thumbnail_ms: u64,
    /// Give up if the batch or the chain is not done within this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// The example's topics.
struct Topics {
    images: Topic<String, Image>,
    batches: Topic<String, ChordResult>,
    summaries: Topic<String, Summary>,
    resize: Topic<String, Image>,
    watermark: Topic<String, Thumb>,
    publish: Topic<String, Thumb>,
    published: Topic<String, Thumb>,
}

impl Topics {
    fn new(prefix: &str) -> Self {
        let name = |n: &str| format!("{prefix}{n}");
        Topics {
            images: Topic::new(name("images")).partitions(4),
            batches: Topic::new(name("thumbnail-batches")).partitions(2),
            summaries: Topic::new(name("thumbnail-summaries")).partitions(2),
            resize: Topic::new(name("resize")).partitions(4),
            watermark: Topic::new(name("watermark")).partitions(4),
            publish: Topic::new(name("publish")).partitions(4),
            published: Topic::new(name("published")).partitions(4),
        }
    }
}

fn main() -> ExitCode {
    use clap::Parser as _;
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workflows: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An image's thumbnail: a tenth of its size.
fn thumbnail_of(image: Image) -> Thumb {
    Thumb {
        name: image.name,
        bytes: image.bytes / 10,
        watermarked: false,
    }
}

/// The application: its agents and the chord coordinator.
fn app(args: &Args, topics: &Topics) -> faustus::Result<App> {
    let pause = Duration::from_millis(args.thumbnail_ms);
    let thumbnail = Agent::new("thumbnail", &topics.images)
        .concurrency(8)
        .handler(move |event: Event<String, Image>| async move {
            tokio::time::sleep(pause).await;
            event.reply(&thumbnail_of(event.value()))?;
            Ok(())
        });
    let out = topics.summaries.clone();
    let summarize = Agent::new("summarize", &topics.batches)
        .sends_to(&topics.summaries)
        .handler(move |event: Event<String, ChordResult>| {
            let out = out.clone();
            async move {
                let result = event.value();
                let thumbs: Vec<Thumb> = result
                    .results
                    .iter()
                    .flatten()
                    .filter_map(|v| v.decode().ok())
                    .collect();
                let summary = Summary {
                    batch: result.chord.clone(),
                    images: result.size,
                    thumbnail_bytes: thumbs.iter().map(|t| t.bytes).sum(),
                    failed: result.failed.len(),
                    missing: result.missing.len(),
                };
                event.send(&out, result.chord, summary)?;
                Ok(())
            }
        });
    let resize = Agent::new("resize", &topics.resize).concurrency(4).handler(
        |event: Event<String, Image>| async move {
            event.reply(&thumbnail_of(event.value()))?;
            Ok(())
        },
    );
    let watermark = Agent::new("watermark", &topics.watermark)
        .concurrency(4)
        .handler(|event: Event<String, Thumb>| async move {
            event.reply(&Thumb {
                watermarked: true,
                ..event.value()
            })?;
            Ok(())
        });
    let published = topics.published.clone();
    let publish = Agent::new("publish", &topics.publish)
        .concurrency(4)
        .sends_to(&topics.published)
        .handler(move |event: Event<String, Thumb>| {
            let published = published.clone();
            async move {
                let thumb = event.value();
                event.send(&published, event.key(), thumb.clone())?;
                event.reply(&thumb)?;
                Ok(())
            }
        });
    Ok(App::new("workflows")
        .with_args(&args.app)?
        .agent(thumbnail)
        .agent(summarize)
        .agent(resize)
        .agent(watermark)
        .agent(publish)
        .chords())
}

fn run(args: Args) -> faustus::Result<()> {
    let topics = Topics::new(&args.topic_prefix);
    let app = app(&args, &topics)?;
    if args.worker {
        return app.run_agents();
    }
    let running = app.start_agents()?;
    let workflows = running.workflows()?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| faustus::Error::Runtime(format!("a runtime: {e}")))?;
    let batch = format!(
        "batch-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut chord = Chord::new(&batch)
        .callback(&topics.batches)
        .deadline(Duration::from_secs(60));
    for i in 0..args.images {
        let image = Image {
            name: format!("img-{i:04}.png"),
            bytes: 100_000 + i * 1_000,
        };
        println!("> images {} {}", json(&image.name), json(&image));
        chord = chord
            .member(&topics.images, &image.name.clone(), &image)
            .map_err(|e| faustus::Error::Config(e.to_string()))?;
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    let summary = runtime.block_on(async {
        workflows.start_chord(&chord).await?;
        wait_summary(&running, &topics.summaries, &batch, timeout).await
    })?;
    println!("## summary thumbnail-summaries");
    println!("{} => {}", json(&summary.batch), json(&summary));

    let cover = Image {
        name: "cover.png".into(),
        bytes: 250_000,
    };
    let chain = Chain::new(&topics.resize, &cover.name.clone(), &cover)
        .map_err(|e| faustus::Error::Config(e.to_string()))?
        .then(&topics.watermark)
        .then(&topics.publish);
    println!("> resize {} {}", json(&cover.name), json(&cover));
    let thumb: Thumb = runtime.block_on(workflows.ask_chain(&chain, timeout))?;
    println!("## chain resize watermark publish");
    println!("{} => {}", json(&cover.name), json(&thumb));
    running.shutdown()
}

/// A value as one line of JSON.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Waits for the summary of `batch` on `summaries` (up to `timeout`).
async fn wait_summary(
    running: &faustus::Running,
    summaries: &Topic<String, Summary>,
    batch: &str,
    timeout: Duration,
) -> faustus::Result<Summary> {
    let kafka = running.kafka_config().clone();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let partitions =
            faustus::connectors::partition_count(&kafka, summaries.name())?.unwrap_or(0);
        let mut found = None;
        faustus::connectors::read_to_end(
            &kafka,
            summaries.name(),
            &(0..partitions).collect::<Vec<_>>(),
            Duration::from_secs(30),
            |record| {
                let summary = record
                    .value
                    .and_then(|v| serde_json::from_slice::<Summary>(v).ok());
                if let Some(summary) = summary.filter(|s| s.batch == batch) {
                    found = Some(summary);
                }
            },
        )?;
        if let Some(summary) = found {
            return Ok(summary);
        }
        if std::time::Instant::now() > deadline {
            return Err(faustus::Error::NotReady(format!(
                "no summary of `{batch}` within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
