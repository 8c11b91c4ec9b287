//! Where a process is in its life: starting, restoring its tables, running, stopped or failed.
//!
//! A process starts the HTTP server before anything else, so that a deployment can watch it
//! come up. Until its tables are restored from their changelogs, a table answers "not ready"
//! with the restore's progress, never "absent": a key that exists is never reported missing
//! because its table is still being read back. The phases:
//!
//! 1. **starting**: connecting to Kafka, creating topics, fencing a previous instance and
//!    reading its committed progress. No worker runs yet.
//! 2. **restoring**: the workers run and read the changelogs. A table becomes ready on this
//!    process once the restore epoch has passed through the operator that keeps its read
//!    replica on every worker of the process; the process is ready once it has passed through
//!    the whole dataflow (every table, private ones too, holds what its changelog held).
//! 3. **ready**: reads answer with the tables' contents.
//!
//! A fatal error or a stop makes the process not ready again (and a fatal error makes it not
//! live), whatever the tables hold.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde_json::{json, Value};

use super::{ChangelogRestore, RestoreReport};

/// Changelog records a worker reads between two updates of the shared restore progress.
pub(crate) const PROGRESS_EVERY: u64 = 4096;

/// The life of one process, shared by the runtime (which moves it on) and every reader (HTTP,
/// [`crate::Running`], table readers).
pub(crate) struct Health {
    /// When the process started.
    started: Instant,
    /// When the workers started (Kafka setup done, restore begun).
    running_since: OnceLock<Instant>,
    /// How the tables were restored.
    restore: Mutex<RestoreReport>,
    /// The first fatal error.
    fatal: Mutex<Option<String>>,
    /// Set to stop the application.
    stop: Arc<AtomicBool>,
    /// Workers in this process.
    workers: usize,
}

impl Health {
    /// A process of `workers` workers that is starting now.
    pub(crate) fn new(workers: usize) -> Self {
        Health {
            started: Instant::now(),
            running_since: OnceLock::new(),
            restore: Mutex::default(),
            fatal: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            workers,
        }
    }

    /// The flag that stops the application.
    pub(crate) fn stop_flag(&self) -> &Arc<AtomicBool> {
        &self.stop
    }

    /// Marks the end of the Kafka setup: the workers start, and with them the restore.
    pub(crate) fn workers_started(&self) {
        let _ = self.running_since.set(Instant::now());
    }

    /// Records a fatal error (the first one wins) and stops the application.
    pub(crate) fn fail(&self, message: String) {
        log::error!("{message}");
        self.fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(message);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The first fatal error, if any.
    pub(crate) fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the first fatal error out (to return it from [`crate::Running::join`]).
    pub(crate) fn take_fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// True once the application is stopping (asked to, or after a fatal error).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The restore report as it stands.
    pub(crate) fn restore_report(&self) -> RestoreReport {
        self.restore
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the restore report's entry for `changelog`.
    pub(crate) fn update_restore(&self, changelog: &str, f: impl FnOnce(&mut ChangelogRestore)) {
        let mut report = self.restore.lock().unwrap_or_else(|e| e.into_inner());
        f(report.changelogs.entry(changelog.to_string()).or_default());
    }

    /// Marks every table of the process restored (the restore epoch has passed through the
    /// whole dataflow). Returns true the first time.
    pub(crate) fn restore_complete(&self) -> bool {
        let mut report = self.restore.lock().unwrap_or_else(|e| e.into_inner());
        let first = !report.complete;
        if first {
            report.complete = true;
            report.seconds = self
                .running_since
                .get()
                .map_or(0.0, |t| t.elapsed().as_secs_f64());
            log::info!(
                "tables restored in {:.1} s: {:?}",
                report.seconds,
                report.changelogs
            );
        }
        first
    }

    /// Where the process is, for a table whose replicas are `ready` (None: the process as a
    /// whole) and whose changelog is `changelog` (None: a table derived from other tables,
    /// which waits for all of them).
    pub(crate) fn state(&self, ready: Option<bool>, changelog: Option<&str>) -> TableState {
        let report = self.restore_report();
        let ready = ready.unwrap_or(report.complete);
        if ready {
            return TableState::Ready;
        }
        let Some(since) = self.running_since.get() else {
            return TableState::Starting {
                seconds: self.started.elapsed().as_secs_f64(),
            };
        };
        let mut progress = RestoreProgress {
            records: 0,
            expected_records: Some(0),
            seconds: since.elapsed().as_secs_f64(),
        };
        let parts: Vec<&ChangelogRestore> = match changelog {
            Some(topic) => report.changelogs.get(topic).into_iter().collect(),
            None => report.changelogs.values().collect(),
        };
        for part in &parts {
            progress.records += part.records;
            progress.expected_records = progress
                .expected_records
                .zip(part.expected_records(self.workers))
                .map(|(a, b)| a + b);
        }
        if changelog.is_some() && parts.is_empty() {
            progress.expected_records = None;
        }
        TableState::Restoring(progress)
    }

    /// Where the process stands, given its public `tables`: ready once the restore epoch has
    /// passed the whole dataflow *and* every public table's read copy holds it (the operator
    /// that keeps a copy may run a moment after the rest of the dataflow has moved on).
    pub(crate) fn process_state(&self, tables: &BTreeMap<String, TableState>) -> TableState {
        match self.state(None, None) {
            TableState::Ready => tables
                .values()
                .find(|t| !t.is_ready())
                .cloned()
                .unwrap_or(TableState::Ready),
            state => state,
        }
    }

    /// How long the process has been up.
    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Where the process is, in one word: `starting`, `restoring`, `ready`, `stopping` or
    /// `failed` (given its public `tables`, as [`Health::process_state`]).
    pub(crate) fn phase(&self, tables: &BTreeMap<String, TableState>) -> &'static str {
        if self.fatal().is_some() {
            "failed"
        } else if self.stopping() {
            "stopping"
        } else {
            self.process_state(tables).name()
        }
    }

    /// True when the process serves: every table restored, running, not failed.
    pub(crate) fn is_ready(&self, tables: &BTreeMap<String, TableState>) -> bool {
        self.fatal().is_none() && !self.stopping() && self.process_state(tables).is_ready()
    }

    /// What a process reports about itself: `(ready, body)` for `/api/ready`.
    pub(crate) fn readiness(&self, tables: BTreeMap<String, TableState>) -> (bool, Value) {
        let process = self.process_state(&tables);
        let (ready, reason) = match (&process, self.fatal(), self.stopping()) {
            (_, Some(fatal), _) => (false, format!("the application failed: {fatal}")),
            (_, None, true) => (false, "the application is stopping".to_string()),
            (TableState::Ready, None, false) => (true, String::new()),
            (state, None, false) => (false, state.describe("the process")),
        };
        let tables: serde_json::Map<String, Value> = tables
            .into_iter()
            .map(|(name, state)| (name, state.to_json()))
            .collect();
        let mut body = json!({ "ready": ready, "tables": tables });
        body.as_object_mut()
            .expect("an object")
            .extend(match process.to_json() {
                Value::Object(fields) => fields,
                _ => serde_json::Map::new(),
            });
        if !ready {
            body["error"] = json!(reason);
            if let Some(retry) = process.retry_after() {
                body["retry_after_s"] = json!(retry);
            }
        }
        (ready, body)
    }
}

/// Where a table stands on a process: starting, restoring (with progress) or ready.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TableState {
    /// The application is still setting up (Kafka topics, fencing a previous instance, reading
    /// its committed progress): the restore has not begun.
    Starting {
        /// Seconds since the process started.
        seconds: f64,
    },
    /// The table is being restored from its changelog (or, for a table computed from other
    /// tables, they are).
    Restoring(RestoreProgress),
    /// The table holds what its changelog held, and more: reads answer with its contents.
    Ready,
    /// Another process of the cluster could not say where it stands (HTTP only).
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// How far a restore has come on one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestoreProgress {
    /// Changelog records read so far.
    pub records: u64,
    /// The offsets the process's workers have to read: an upper bound of the records (compacted,
    /// deleted and transaction-marker offsets hold no record). `None` until every worker of
    /// the process has looked up the end of its changelog partitions.
    pub expected_records: Option<u64>,
    /// Seconds since the restore began.
    pub seconds: f64,
}

impl RestoreProgress {
    /// Records read per second so far.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.seconds.max(0.001)
    }

    /// Records read of those expected, in percent: never over 100 (compaction leaves fewer
    /// records than offsets), 100 when there is nothing to read; `None` while the expected
    /// count is not known.
    pub fn percent(&self) -> Option<u64> {
        let expected = self.expected_records?.max(self.records);
        Some((self.records * 100).checked_div(expected).unwrap_or(100))
    }

    /// Seconds left at the rate so far; `None` while the expected count or the rate (nothing
    /// read yet) is not known.
    pub fn seconds_left(&self) -> Option<f64> {
        let expected = self.expected_records?;
        (self.records > 0).then(|| expected.saturating_sub(self.records) as f64 / self.rate())
    }
}

impl TableState {
    /// True when reads answer with the table's contents.
    pub fn is_ready(&self) -> bool {
        matches!(self, TableState::Ready)
    }

    /// The state's name, as the HTTP API writes it: `starting`, `restoring` or `ready`.
    pub fn name(&self) -> &'static str {
        match self {
            TableState::Starting { .. } => "starting",
            TableState::Restoring(_) => "restoring",
            TableState::Ready => "ready",
            TableState::Unavailable { .. } => "unavailable",
        }
    }

    /// Seconds a client should wait before asking again (`Retry-After`), when not ready: the
    /// time left at the restore's rate so far, between 1 and 30 s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            TableState::Ready => None,
            TableState::Starting { .. } => Some(1),
            TableState::Unavailable { .. } => Some(5),
            TableState::Restoring(p) => {
                let left = p.seconds_left().unwrap_or(1.0);
                Some(left.ceil().clamp(1.0, 30.0) as u64)
            }
        }
    }

    /// A sentence about `what` (e.g. "table `totals`") in this state.
    pub fn describe(&self, what: &str) -> String {
        match self {
            TableState::Ready => format!("{what} is ready"),
            TableState::Unavailable { reason } => format!("{what} is not ready: {reason}"),
            TableState::Starting { .. } => format!(
                "{what} is not ready: the application is starting (connecting to Kafka, fencing a previous instance, reading its committed progress)"
            ),
            TableState::Restoring(p) => {
                let of = p
                    .expected_records
                    .map(|e| format!(" of at most {e}"))
                    .unwrap_or_default();
                format!(
                    "{what} is not ready: restoring from its changelog ({}{of} records read in {:.1} s)",
                    p.records, p.seconds
                )
            }
        }
    }

    /// The state as JSON: `{"state": "restoring", "restore": {...}}`.
    pub fn to_json(&self) -> Value {
        match self {
            TableState::Ready => json!({ "state": "ready" }),
            TableState::Unavailable { reason } => {
                json!({ "state": "unavailable", "reason": reason })
            }
            TableState::Starting { seconds } => json!({ "state": "starting", "seconds": seconds }),
            TableState::Restoring(p) => json!({
                "state": "restoring",
                "restore": {
                    "records": p.records,
                    "expected_records": p.expected_records,
                    "seconds": p.seconds,
                },
            }),
        }
    }

    /// The state a JSON object written by [`TableState::to_json`] describes (what another
    /// process answered).
    pub(crate) fn from_json(value: &Value) -> Option<TableState> {
        match value["state"].as_str()? {
            "ready" => Some(TableState::Ready),
            "unavailable" => Some(TableState::Unavailable {
                reason: value["reason"].as_str().unwrap_or_default().to_string(),
            }),
            "starting" => Some(TableState::Starting {
                seconds: value["seconds"].as_f64().unwrap_or(0.0),
            }),
            "restoring" => {
                let r = &value["restore"];
                Some(TableState::Restoring(RestoreProgress {
                    records: r["records"].as_u64().unwrap_or(0),
                    expected_records: r["expected_records"].as_u64(),
                    seconds: r["seconds"].as_f64().unwrap_or(0.0),
                }))
            }
            _ => None,
        }
    }

    /// The less ready of two states (a table is ready in a cluster when it is on every process).
    pub(crate) fn least_ready(self, other: TableState) -> TableState {
        use TableState::{Ready, Restoring, Starting, Unavailable};
        match (self, other) {
            (Ready, other) | (other, Ready) => other,
            (u @ Unavailable { .. }, _) | (_, u @ Unavailable { .. }) => u,
            (Starting { seconds: a }, Starting { seconds: b }) => Starting { seconds: a.max(b) },
            (s @ Starting { .. }, _) | (_, s @ Starting { .. }) => s,
            (Restoring(a), Restoring(b)) => Restoring(RestoreProgress {
                records: a.records + b.records,
                expected_records: a
                    .expected_records
                    .zip(b.expected_records)
                    .map(|(x, y)| x + y),
                seconds: a.seconds.max(b.seconds),
            }),
        }
    }
}

impl ChangelogRestore {
    /// The offsets this process's `workers` have to read, once every one of them has looked.
    fn expected_records(&self, workers: usize) -> Option<u64> {
        (self.workers_started >= workers).then_some(self.expected_offsets)
    }
}
