//! What the operator examples share: their flags, producing their input, waiting until the
//! application has processed it, and printing tables (read over HTTP) and output streams (read
//! from their topics).
//!
//! The printed form is meant for people and for `tests/examples.rs`: an input record is
//! `> <topic> <key> <value>`, a result starts a section `## <what> <name>`, and each row of it is
//! `<key> => <value>` (JSON, unless the example formats it itself).
//!
//! With `--driver`, an example runs the same dataflow on faustus' test driver instead of a
//! broker (`faustus::driver`): each input step is one epoch, closed when the example waits for
//! it to be processed. `tests/examples.rs` compares what both print.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use faustus::connectors::{partition_count, read_progress, read_to_end, KafkaConfig};
use faustus::driver::TestDriver;
use faustus::prelude::*;
use faustus::{Producer, Running};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The flags every operator example takes.
#[derive(clap::Args, Debug)]
pub struct ExampleArgs {
    /// The application's flags (`--brokers`, `--app-id`, `--http`, `--workers`, ...).
    #[command(flatten)]
    pub app: AppArgs,
    /// Prefix of the example's own topics (so that runs on one broker do not mix).
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// After printing, keep serving the tables over HTTP until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Give up if the input is not processed within this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Run on faustus' test driver, in-process, without Kafka: each input step is one epoch.
    #[arg(long)]
    pub driver: bool,
}

/// A record read back from a topic: JSON key and value (`Value::Null` for a tombstone), and
/// headers.
pub struct Record {
    /// The key.
    pub key: Value,
    /// The value.
    pub value: Value,
    /// The headers, as text.
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// The value of header `name` (empty if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A running example: the application, and what it needs to feed and read it.
pub struct Demo {
    app_id: String,
    prefix: String,
    engine: Engine,
    deadline: Instant,
    serve: bool,
}

/// Where an example runs.
enum Engine {
    /// On Kafka: the application, a client configuration and a producer.
    Broker {
        running: Running,
        kafka: KafkaConfig,
        producer: Producer,
    },
    /// On the test driver.
    Driver(RefCell<TestDriver>),
}

impl ExampleArgs {
    /// The name of the example's topic `name`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// Configures the application `app_id` from the flags, starts it with `build` and connects
    /// a producer to its brokers.
    pub fn start<F>(&self, app_id: &str, build: F) -> faustus::Result<Demo>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        self.start_with(app_id, |app| app, build)
    }

    /// As [`ExampleArgs::start`], letting `configure` add to the application first (agents).
    pub fn start_with<F>(
        &self,
        app_id: &str,
        configure: impl FnOnce(App) -> App,
        build: F,
    ) -> faustus::Result<Demo>
    where
        F: for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
    {
        let app = configure(App::new(app_id).with_args(&self.app)?);
        if self.driver {
            let config = app.config();
            let driver = TestDriver::builder(config.app_id.clone())
                .workers(config.workers)
                .partitions(config.partitions)
                .start(build)?;
            return Ok(Demo {
                app_id: config.app_id.clone(),
                prefix: self.topic_prefix.clone(),
                engine: Engine::Driver(RefCell::new(driver)),
                deadline: Instant::now() + Duration::from_secs(self.timeout_secs),
                serve: false,
            });
        }
        if app.config().http.is_none() {
            return Err(faustus::Error::Config(
                "--http off: the examples read their tables over HTTP; give an address (port 0 \
                 picks a free one)"
                    .into(),
            ));
        }
        let app_id = app.config().app_id.clone();
        let running = app.start(build)?;
        // A re-run with the same app id restores its tables first: read them only then.
        running.wait_ready(Duration::from_secs(self.timeout_secs))?;
        let kafka = running.kafka_config().clone();
        let producer = running.producer()?;
        if let Some(addr) = running.http_addr() {
            println!("serving tables on http://{addr}/api/table/");
        }
        Ok(Demo {
            app_id,
            prefix: self.topic_prefix.clone(),
            engine: Engine::Broker {
                running,
                kafka,
                producer,
            },
            deadline: Instant::now() + Duration::from_secs(self.timeout_secs),
            serve: self.serve,
        })
    }
}

impl Demo {
    /// The full name of the example's topic `name`.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Produces JSON records (`None` is a tombstone) to the example's topic `name`, printing
    /// each, and waits until the broker has them.
    pub fn produce<K, V>(&self, name: &str, records: &[(K, Option<V>)])
    where
        K: Serialize + DeserializeOwned + 'static,
        V: Serialize + DeserializeOwned + 'static,
    {
        let topic = Topic::<K, V>::new(self.topic(name));
        let producer = match &self.engine {
            Engine::Broker { producer, .. } => producer,
            Engine::Driver(driver) => {
                for (key, value) in records {
                    print_input(name, key, value);
                    let record = faustus::driver::Record::encode(&topic, key, value.as_ref())
                        .unwrap_or_else(|e| fail(&format!("encoding for `{name}`: {e}")));
                    driver.borrow_mut().pipe_record(topic.name(), record);
                }
                return;
            }
        };
        let mut pending = Vec::new();
        for (key, value) in records {
            print_input(name, key, value);
            match producer.enqueue_record(&topic, key, value.as_ref(), None, Vec::new()) {
                Ok(p) => pending.push(p),
                Err(e) => fail(&format!("producing to `{}`: {e}", topic.name())),
            }
        }
        for p in pending {
            if let Err(e) = p.wait() {
                fail(&format!("producing to `{}`: {e}", topic.name()));
            }
        }
    }

    /// Produces records that all have values.
    pub fn produce_values<K, V>(&self, name: &str, records: &[(K, V)])
    where
        K: Serialize + DeserializeOwned + Clone + 'static,
        V: Serialize + DeserializeOwned + Clone + 'static,
    {
        let records: Vec<(K, Option<V>)> = records
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        self.produce(name, &records);
    }

    /// Waits until the application has processed (and committed) everything in the example's
    /// topics `names`: its committed input positions reach the topics' ends. From then on,
    /// its tables and output topics hold all that this input implies.
    pub fn wait_processed(&self, names: &[&str]) {
        let kafka = match &self.engine {
            Engine::Broker { kafka, .. } => kafka,
            Engine::Driver(driver) => {
                if let Err(e) = driver.borrow_mut().close_epoch() {
                    fail(&format!("closing an epoch: {e}"));
                }
                return;
            }
        };
        let consumer: BaseConsumer = kafka
            .consumer()
            .create()
            .unwrap_or_else(|e| fail(&format!("creating a consumer: {e}")));
        let mut ends: Vec<(String, i32, i64)> = Vec::new();
        for name in names {
            let topic = self.topic(name);
            let partitions = partition_count(kafka, &topic)
                .unwrap_or_else(|e| fail(&format!("reading `{topic}`'s partitions: {e}")))
                .unwrap_or(0);
            for p in 0..partitions {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(30))
                    .unwrap_or_else(|e| fail(&format!("reading the end of `{topic}`/{p}: {e}")));
                if high > 0 {
                    ends.push((topic.clone(), p, high));
                }
            }
        }
        let progress_topic = format!("{}-__progress", self.app_id);
        loop {
            let progress = read_progress(kafka, &progress_topic, Duration::from_secs(180))
                .unwrap_or_else(|e| fail(&format!("reading `{progress_topic}`: {e}")))
                .unwrap_or_default();
            let done = ends.iter().all(|(topic, p, end)| {
                progress
                    .offsets
                    .get(topic)
                    .and_then(|o| o.get(p))
                    .is_some_and(|pos| pos >= end)
            });
            if done {
                return;
            }
            if Instant::now() > self.deadline {
                fail(&format!(
                    "the input of {names:?} was not processed in time (see --timeout-secs)"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until agent `agent` has committed everything in the example's topic `name`: its
    /// consumer group's positions reach the topic's ends.
    pub fn wait_agent(&self, agent: &str, name: &str) {
        let topic = self.topic(name);
        let group = format!("{}-{agent}", self.app_id);
        let Engine::Broker { kafka, .. } = &self.engine else {
            fail("agents run only on a broker (not with --driver)");
        };
        let consumer: BaseConsumer = kafka
            .client()
            .set("group.id", &group)
            .create()
            .unwrap_or_else(|e| fail(&format!("creating a consumer: {e}")));
        let partitions = partition_count(kafka, &topic)
            .unwrap_or_else(|e| fail(&format!("reading `{topic}`'s partitions: {e}")))
            .unwrap_or(0);
        let mut wanted = rdkafka::TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in 0..partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(30))
                .unwrap_or_else(|e| fail(&format!("reading the end of `{topic}`/{p}: {e}")));
            wanted.add_partition(&topic, p);
            ends.insert(p, high);
        }
        loop {
            let committed = consumer
                .committed_offsets(wanted.clone(), Duration::from_secs(30))
                .unwrap_or_else(|e| fail(&format!("reading `{group}`'s positions: {e}")));
            let done = committed.elements().iter().all(|e| {
                let end = ends.get(&e.partition()).copied().unwrap_or(0);
                end == 0 || e.offset().to_raw().is_some_and(|o| o >= end)
            });
            if done {
                return;
            }
            if Instant::now() > self.deadline {
                fail(&format!(
                    "agent `{agent}` did not commit `{topic}` in time (see --timeout-secs)"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The application's dead-letter topic, `<app>-__errors`.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}-__errors", self.app_id)
    }

    /// Every entry of public table `name`, read over HTTP (`GET /api/table/<name>/`), in the
    /// table's key order; keys as JSON.
    pub fn table(&self, name: &str) -> Vec<(Value, Value)> {
        let running = match &self.engine {
            Engine::Broker { running, .. } => running,
            Engine::Driver(driver) => {
                let snapshot = driver.borrow().snapshot();
                let Some(entries) = snapshot.tables.get(name) else {
                    fail(&format!("no table `{name}`"));
                };
                let json = |s: &str| serde_json::from_str(s).unwrap_or(Value::String(s.into()));
                return entries.iter().map(|(k, v)| (json(k), json(v))).collect();
            }
        };
        let addr = running
            .http_addr()
            .expect("the examples refuse to start without HTTP");
        get_table(addr, name).unwrap_or_else(|e| fail(&e))
    }

    /// Prints public table `name` as rows `key => value`.
    pub fn print_table(&self, name: &str) {
        println!("## table {name}");
        for (key, value) in self.table(name) {
            println!("{key} => {value}");
        }
    }

    /// Every record of the example's output topic `name`, in offset order per partition.
    pub fn read_topic(&self, name: &str) -> Vec<Record> {
        self.read_raw(&self.topic(name))
    }

    /// Every record of topic `topic` (a full name), as [`Demo::read_topic`] gives them.
    pub fn read_raw(&self, topic: &str) -> Vec<Record> {
        let json = |bytes: Option<&[u8]>| {
            bytes.map_or(Value::Null, |b| {
                serde_json::from_slice(b)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
            })
        };
        let text = |headers: &[(String, Vec<u8>)]| {
            headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect()
        };
        let kafka = match &self.engine {
            Engine::Broker { kafka, .. } => kafka,
            Engine::Driver(driver) => {
                return driver
                    .borrow()
                    .records(topic)
                    .into_iter()
                    .map(|w| Record {
                        key: json(w.record.key.as_deref()),
                        value: json(w.record.value.as_deref()),
                        headers: text(&w.record.headers),
                    })
                    .collect();
            }
        };
        let partitions = partition_count(kafka, topic)
            .unwrap_or_else(|e| fail(&format!("reading `{topic}`'s partitions: {e}")))
            .unwrap_or(0);
        let mut records = Vec::new();
        read_to_end(
            kafka,
            topic,
            &(0..partitions).collect::<Vec<_>>(),
            Duration::from_secs(60),
            |r| {
                let headers = r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                    .collect();
                records.push(Record {
                    key: json(r.key),
                    value: json(r.value),
                    headers,
                });
            },
        )
        .unwrap_or_else(|e| fail(&format!("reading `{topic}`: {e}")));
        records
    }

    /// Prints the example's output topic `name` as rows `key => value`, in offset order per
    /// partition (so per key in the order they were written).
    pub fn print_stream(&self, name: &str) {
        println!("## stream {name}");
        for record in self.read_topic(name) {
            println!("{} => {}", record.key, record.value);
        }
    }

    /// Ends the example: with `--serve`, keeps serving until Ctrl-C; otherwise stops cleanly.
    pub fn finish(self) -> faustus::Result<()> {
        // The producer goes first: the embedded broker stops with the application.
        let Demo { engine, serve, .. } = self;
        let Engine::Broker {
            running, producer, ..
        } = engine
        else {
            return Ok(());
        };
        drop(producer);
        if serve {
            if let Some(addr) = running.http_addr() {
                println!("still serving on http://{addr}/api/table/ (stop with Ctrl-C)");
            }
            running.run_until_signal()
        } else {
            running.shutdown()
        }
    }
}

/// Prints an input record as `> <topic> <key> <value>`.
fn print_input<K: Serialize, V: Serialize>(name: &str, key: &K, value: &Option<V>) {
    println!(
        "> {name} {} {}",
        serde_json::to_string(key).expect("keys serialize"),
        serde_json::to_string(value).expect("values serialize")
    );
}

/// Reads a whole public table over HTTP, page by page.
fn get_table(addr: SocketAddr, name: &str) -> Result<Vec<(Value, Value)>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting an HTTP client runtime: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut rows = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = client
                .get(format!("http://{addr}/api/table/{name}/"))
                .query(&[("size", "1000")]);
            if let Some(a) = &after {
                request = request.query(&[("after", a)]);
            }
            let page: Value = request
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("GET table `{name}`: {e}"))?
                .json()
                .await
                .map_err(|e| format!("GET table `{name}`: {e}"))?;
            let results: BTreeMap<String, Value> =
                serde_json::from_value(page["results"].clone()).map_err(|e| e.to_string())?;
            for (key, value) in results {
                // Keys come back as text: JSON for structured keys, the bare string otherwise.
                let key = serde_json::from_str(&key).unwrap_or(Value::String(key));
                rows.push((key, value));
            }
            match page["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        Ok(rows)
    })
}

/// Prints `message` as an error and exits with status 1.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// An example's `main`: parses the flags `A` (a bad flag prints what is wrong and exits with
/// status 2), sets up logging as `--log-format` asks (warnings by default: the output is the
/// example's results), and runs `run`; an error is printed and exits with status 2.
pub fn main<A: clap::Parser>(run: impl FnOnce(A) -> faustus::Result<()>) -> ExitCode {
    match run(faustus::logging::parse_args::<A>("warn")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
