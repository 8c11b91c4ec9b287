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
        let remote = |reason: String| ReadError::Remote {
            table: self.name().to_string(),
            reason,
        };
        let key = serde_json::to_value(key).map_err(|e| remote(format!("the key: {e}")))?;
        match crate::http::lookup_value(&self.http, self.name(), &key).await {
            Ok(Some(value)) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| remote(format!("the owner's answer is not a value: {e}"))),
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
            Located::Here(shard) => Ok(shard.read().get(key).cloned()),
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
