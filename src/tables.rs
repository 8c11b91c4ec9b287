//! Reading a public table from the program that runs it, and where a table stands.
//!
//! A table is restored from its changelog when the application starts. Until then it is not
//! *empty*, it is *not ready*: [`TableReader::get`] answers [`ReadError::NotReady`] with the
//! restore's progress, never `Ok(None)`, so a caller can tell "not ready" from "absent" (the
//! HTTP API answers 503 with the same state, never 404). [`crate::Running::wait_ready`] waits
//! for every table of the process.
//!
//! ```no_run
//! # use faustus::prelude::*;
//! # fn demo(running: &faustus::Running) -> faustus::Result<()> {
//! let totals = running.table::<String, i64>("user_to_amount")?;
//! match totals.get(&"account-1".to_string()) {
//!     Ok(Some(total)) => println!("account-1: {total}"),
//!     Ok(None) => println!("account-1 has no total"),
//!     Err(faustus::ReadError::NotReady { state, .. }) => println!("not yet: {}", state.name()),
//!     Err(e) => println!("{e}"),
//! }
//! # Ok(())
//! # }
//! ```

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::dataflow::Data;
use crate::error::{Error, Result};
use crate::runtime::health::Health;
use crate::runtime::table::{Declared, Located, Replicas, Tables};
use faustus_operators::Window;

pub use crate::runtime::health::{RestoreProgress, TableState};

/// Why a table read has no answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The table is not restored yet on this process (or the application is still starting):
    /// the key may well exist. Ask again later.
    #[error("{}", state.describe(&format!("table `{table}`")))]
    NotReady {
        /// The table.
        table: String,
        /// Where it stands.
        state: TableState,
    },
    /// Another process of the cluster keeps the key (its HTTP API answers for it).
    #[error("key of table `{table}` is kept by process {process}, not this one")]
    NotLocal {
        /// The table.
        table: String,
        /// The process that keeps the key.
        process: usize,
    },
    /// The process that keeps the key gave no answer ([`TableHandle`]): it is not ready, cannot
    /// be reached, or answered something that is not a value of the table.
    #[error("table `{table}`: {reason}")]
    Remote {
        /// The table.
        table: String,
        /// Why there is no answer.
        reason: String,
    },
}

/// A typed handle on a public table for async code (agents' handlers, a program's web
/// handlers): a key this process keeps is read from its replica, any other from the process
/// that keeps it, over the HTTP API (as a request to any process would be). Cheap to clone.
#[derive(Clone)]
pub struct TableHandle<K, V> {
    reader: Arc<TableReader<K, V>>,
    http: crate::http::HttpState,
}

impl<K: Data, V: Data> TableHandle<K, V> {
    pub(crate) fn new(reader: TableReader<K, V>, http: crate::http::HttpState) -> Self {
        TableHandle {
            reader: Arc::new(reader),
            http,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        self.reader.name()
    }

    /// The value of `key`, wherever it is kept: `Ok(None)` only when the table is ready and
    /// has no such key.
    ///
    /// # Errors
    ///
    /// [`ReadError::NotReady`] while the table is restoring here; [`ReadError::Remote`] when the
    /// process that keeps the key gives no answer.
    pub async fn get(&self, key: &K) -> Result<Option<V>, ReadError> {
        match self.reader.get(key) {
            Err(ReadError::NotLocal { .. }) => {}
            local => return local,
        }
        self.ask_owner(key, |value| {
            serde_json::from_value(value)
                .map_err(|e| format!("the owner's answer is not a value: {e}"))
        })
        .await
    }

    /// Asks the process that keeps `key` (a key of this table, or a windowed table's plain key)
    /// over the HTTP API, and reads its answer with `read`: `Ok(None)` when it has no such key.
    async fn ask_owner<Q: serde::Serialize, R>(
        &self,
        key: &Q,
        read: impl FnOnce(serde_json::Value) -> std::result::Result<R, String>,
    ) -> Result<Option<R>, ReadError> {
        let remote = |reason: String| ReadError::Remote {
            table: self.name().to_string(),
            reason,
        };
        let key = serde_json::to_value(key).map_err(|e| remote(format!("the key: {e}")))?;
        match crate::http::lookup_value(&self.http, self.name(), &key).await {
            Ok(Some(answer)) => read(answer).map(Some).map_err(remote),
            Ok(None) => Ok(None),
            Err(reason) => Err(remote(reason)),
        }
    }
}

/// A typed reader of one public table's read replicas in this process (see
/// [`crate::Running::table`]). Reads are epoch-consistent and never stall the dataflow.
pub struct TableReader<K, V> {
    name: String,
    declared: Declared,
    tables: Arc<Tables>,
    health: Arc<Health>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Data, V: Data> TableReader<K, V> {
    /// A reader of table `name`, checking that its types are `K` and `V`.
    pub(crate) fn new(name: &str, tables: &Arc<Tables>, health: Arc<Health>) -> Result<Self> {
        let declared = tables
            .get(name)
            .ok_or_else(|| Error::Config(format!("there is no public table named `{name}`")))?;
        if declared.replicas_type != TypeId::of::<Replicas<K, V>>() {
            return Err(Error::Config(format!(
                "table `{name}` does not hold keys of type `{}` and values of type `{}`",
                std::any::type_name::<K>(),
                std::any::type_name::<V>()
            )));
        }
        Ok(TableReader {
            name: name.to_string(),
            declared,
            tables: Arc::clone(tables),
            health,
            types: PhantomData,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the table stands on this process.
    pub fn state(&self) -> TableState {
        self.current().state(&self.health)
    }

    /// The value of `key`: `Ok(None)` only when the table is ready and has no such key.
    ///
    /// # Errors
    ///
    /// [`ReadError::NotReady`] while the table is restoring; [`ReadError::NotLocal`] when
    /// another process keeps the key.
    pub fn get(&self, key: &K) -> Result<Option<V>, ReadError> {
        self.read_shard(key, |entries| entries.get(key).cloned())
    }

    /// Reads the entries of the worker that keeps `key`, if this process has it and the table is
    /// ready.
    fn read_shard<R>(
        &self,
        key: &K,
        read: impl FnOnce(&std::collections::BTreeMap<K, V>) -> R,
    ) -> Result<R, ReadError> {
        let declared = self.current();
        let not_ready = || ReadError::NotReady {
            table: self.name.clone(),
            state: declared.state(&self.health),
        };
        let Some(view) = &declared.view else {
            return Err(not_ready());
        };
        if !view.ready() {
            return Err(not_ready());
        }
        let replicas = view
            .replicas()
            .downcast_ref::<Replicas<K, V>>()
            .expect("the types were checked when the reader was made");
        match replicas.locate(replicas.route(key)) {
            Located::Here(shard) => Ok(read(&shard.read())),
            Located::Unregistered => Err(not_ready()),
            Located::Elsewhere(process) => Err(ReadError::NotLocal {
                table: self.name.clone(),
                process,
            }),
        }
    }

    /// The table as this process knows it now (the workers register their replicas after the
    /// reader may have been made).
    fn current(&self) -> Declared {
        match &self.declared.view {
            Some(_) => self.declared.clone(),
            None => self
                .tables
                .get(&self.name)
                .unwrap_or_else(|| self.declared.clone()),
        }
    }
}

/// Reading a windowed table (one made by `tumbling`, `hopping`, `sliding` or `session`): its
/// keys are `(key, window)`, and a key's live windows are kept together, so all of them can be
/// read at once. This is what Faust's windowed-table views do: the window of an event's time
/// (`.current()`), of the wall clock (`.now()`), of a time before (`.delta()`), and the latest
/// window.
impl<K: Data, V: Data> TableReader<(K, Window), V> {
    /// Every live window of `key` with its value, by window start (then end).
    ///
    /// # Errors
    ///
    /// As [`TableReader::get`].
    pub fn windows(&self, key: &K) -> Result<Vec<(Window, V)>, ReadError> {
        let first = (key.clone(), Window { start: 0, end: 0 });
        self.read_shard(&first, |entries| windows_of(entries, key))
    }

    /// The window of `key` that holds time `t` (milliseconds; the latest-starting one when
    /// windows overlap, as hopping and sliding windows do), with its value: `t` an event's time
    /// for Faust's `.current()`, the wall clock for `.now()`, `now - d` for `.delta(d)`.
    ///
    /// # Errors
    ///
    /// As [`TableReader::get`].
    pub fn window_at(&self, key: &K, t: u64) -> Result<Option<(Window, V)>, ReadError> {
        Ok(window_at(self.windows(key)?, t))
    }

    /// The latest window of `key` (the one that starts last): the window of the key's stream
    /// time, for tumbling and session windows.
    ///
    /// # Errors
    ///
    /// As [`TableReader::get`].
    pub fn latest(&self, key: &K) -> Result<Option<(Window, V)>, ReadError> {
        Ok(self.windows(key)?.pop())
    }
}

/// The windows of `key` among a windowed table's entries, by window.
fn windows_of<K: Data, V: Clone>(
    entries: &std::collections::BTreeMap<(K, Window), V>,
    key: &K,
) -> Vec<(Window, V)> {
    let first = (key.clone(), Window { start: 0, end: 0 });
    entries
        .range(first..)
        .take_while(|((k, _), _)| k == key)
        .map(|((_, w), v)| (*w, v.clone()))
        .collect()
}

/// A key's windows from the HTTP API's answer for a plain key of a windowed table,
/// `{"windows": [{"window": .., "value": ..}, ..], "current": ..}`.
fn listed_windows<V: serde::de::DeserializeOwned>(
    answer: serde_json::Value,
) -> std::result::Result<Vec<(Window, V)>, String> {
    #[derive(serde::Deserialize)]
    struct Listed<V> {
        window: Window,
        value: V,
    }
    #[derive(serde::Deserialize)]
    struct Answer<V> {
        windows: Vec<Listed<V>>,
    }
    serde_json::from_value::<Answer<V>>(answer)
        .map(|a| a.windows.into_iter().map(|l| (l.window, l.value)).collect())
        .map_err(|e| format!("the owner's answer is not a list of windows: {e}"))
}

/// The latest-starting window of `windows` that holds `t`.
fn window_at<V>(windows: Vec<(Window, V)>, t: u64) -> Option<(Window, V)> {
    windows.into_iter().rev().find(|(w, _)| w.contains(t))
}

/// Reading a windowed table from async code, wherever its keys are kept (see
/// [`TableReader::windows`] for what each read means).
impl<K: Data, V: Data> TableHandle<(K, Window), V> {
    /// Every live window of `key` with its value, by window.
    ///
    /// # Errors
    ///
    /// As [`TableHandle::get`].
    pub async fn windows(&self, key: &K) -> Result<Vec<(Window, V)>, ReadError> {
        match self.reader.windows(key) {
            Err(ReadError::NotLocal { .. }) => {}
            local => return local,
        }
        let windows = self.ask_owner(key, listed_windows).await?;
        Ok(windows.unwrap_or_default())
    }

    /// The window of `key` that holds time `t`, with its value.
    ///
    /// # Errors
    ///
    /// As [`TableHandle::get`].
    pub async fn window_at(&self, key: &K, t: u64) -> Result<Option<(Window, V)>, ReadError> {
        Ok(window_at(self.windows(key).await?, t))
    }

    /// The latest window of `key`.
    ///
    /// # Errors
    ///
    /// As [`TableHandle::get`].
    pub async fn latest(&self, key: &K) -> Result<Option<(Window, V)>, ReadError> {
        Ok(self.windows(key).await?.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: u64, end: u64) -> Window {
        Window { start, end }
    }

    #[test]
    fn a_windowed_answer_over_http_reads_as_the_windows_of_the_key() {
        let answer = serde_json::json!({
            "windows": [
                {"window": {"start": 0, "end": 1000}, "value": 2},
                {"window": {"start": 1000, "end": 2000}, "value": 1},
            ],
            "current": {"window": {"start": 1000, "end": 2000}, "value": 1},
        });
        let windows: Vec<(Window, i64)> = listed_windows(answer).unwrap();
        assert_eq!(windows, vec![(w(0, 1000), 2), (w(1000, 2000), 1)]);
        let wrong = listed_windows::<i64>(serde_json::json!({"value": 3})).unwrap_err();
        assert!(wrong.contains("not a list of windows"), "{wrong}");
    }

    #[test]
    fn the_window_at_a_time_is_the_latest_starting_one_that_holds_it() {
        // Hopping windows of 2 s every second overlap.
        let windows = vec![(w(0, 2000), 1), (w(1000, 3000), 2), (w(2000, 4000), 3)];
        assert_eq!(window_at(windows.clone(), 1500), Some((w(1000, 3000), 2)));
        assert_eq!(window_at(windows.clone(), 500), Some((w(0, 2000), 1)));
        assert_eq!(window_at(windows.clone(), 3999), Some((w(2000, 4000), 3)));
        assert_eq!(window_at(windows, 4000), None);
    }
}
