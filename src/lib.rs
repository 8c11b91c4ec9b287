//! # faustus
//!
//! Faust's stream-processing model — typed topics, streams, tables, agents, web views over
//! tables — in Rust, on timely dataflow and differential dataflow, with Kafka as source, sink and
//! durable store.
//!
//! ```no_run
//! use faustus::prelude::*;
//!
//! #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
//! struct Order {
//!     account: String,
//!     amount: i64,
//! }
//!
//! fn main() -> faustus::Result<()> {
//!     let orders = Topic::<String, Order>::new("orders").key_codec(Str);
//!     App::new("shop").brokers("127.0.0.1:9092").run(move |df| {
//!         df.stream(&orders)
//!             .map(|_, order| (order.account, order.amount))
//!             .sum("user_to_amount")
//!             .public();
//!     })
//! }
//! ```
//!
//! Each epoch's outputs, table changelogs and input positions commit together in one Kafka
//! transaction; on restart, tables are restored from their changelogs and input resumes where
//! the last committed epoch ended. See `docs/design.md` for how and why.
//!
//! To test a dataflow without a broker, run the same build closure on [`driver::TestDriver`]:
//! in-process, epochs closed by the test, 1 or N workers, restarts (`docs/guide/testing.md`).

pub mod agent;
pub mod app;
pub mod cli;
pub mod config;
pub mod dataflow;
pub mod dead_letter;
pub mod driver;
pub mod error;
pub mod grouped;
pub mod http;
pub mod input;
pub mod join;
pub mod logging;
pub mod metrics;
pub mod nested;
mod overview;
pub mod poison;
pub mod producer;
pub mod record;
mod report;
mod runtime;
pub mod state;
pub mod tables;
pub mod timer;
pub mod topic;
pub mod window;
pub mod workflow;

pub use app::{App, Running, EXIT_PEER_LOST};
pub use config::{AppArgs, AppConfig, Guarantee};
pub use dataflow::{Data, Dataflow, Stream, Table};
pub use error::{Error, Result};
pub use faustus_operators::Summable;
pub use grouped::GroupedTable;
pub use poison::OnPanic;
pub use producer::{Pending, Producer};
pub use record::{Headers, Meta};
pub use runtime::{ChangelogRestore, Pos, RestoreReport};
pub use state::State;
pub use tables::{ReadError, RestoreProgress, TableHandle, TableReader, TableState};
pub use topic::{RecordError, Topic};
pub use window::{FinalWindows, Timed, WindowedStream};

/// Codecs for topics.
pub mod codec {
    pub use faustus_connectors::{Codec, CodecError, Json, Raw, Str};
}

/// Kafka connectors, for programs and tests that talk to Kafka directly.
pub use faustus_connectors as connectors;

/// Everything a program usually needs.
pub mod prelude {
    pub use crate::codec::{Codec, Json, Raw, Str};
    pub use crate::{
        App, AppArgs, Data, Dataflow, FinalWindows, Guarantee, Meta, OnPanic, Stream, Table, Timed,
        Topic, WindowedStream,
    };
    pub use faustus_operators::{ListOp, SetOp, Window, WindowKind};
    pub use serde::{Deserialize, Serialize};
}
