//! Differential dataflow operators for faustus: the semantics of tables, windows and joins,
//! with no Kafka and no async runtime.
//!
//! | family | module | input | output |
//! |---|---|---|---|
//! | keyed fold | [`fold`] | append-only `(K, V, O)` | table `(K, A)` |
//! | upsert tables | [`upsert`] | append-only `(K, Option<V>, O)` | table `(K, V)` |
//! | aggregates | [`aggregate`] | collection `(K, V)` with retractions | table `(K, A)`: count, sum, min, max, reduce |
//! | joins | [`join`] | streams and tables | stream⋈stream (windowed), table⋈table, stream⋈table, foreign key |
//! | windows | [`window`] | append-only `(K, V, EventTime)` | windowed table `((K, Window), A)` + late records |
//! | nested tables | [`nested`] | append-only `(K, op, O)` | set/list table + compaction-safe operation log |
//!
//! Timely time is always a `u64` epoch (processing time); event time is data ([`EventTime`]).
//! What *stream time* and *late* mean, with any number of workers, is defined once in [`time`].
//! Stateful operators route records by key with [`default_route`], or with the engine's own
//! stable route through their `_core` variants. Every operator is an extension trait on
//! differential's [`VecCollection`](differential_dataflow::VecCollection), and every operator is
//! checked against a plain model by the property tests in `tests/`, with one and several workers.
//! Their keyed exchanges are [`sensor`]s: an engine learns when each batch arrives after its hop.

pub mod aggregate;
mod epoch;
pub mod fold;
pub mod join;
pub mod nested;
pub mod sensor;
pub mod time;
pub mod upsert;
pub mod window;

pub use aggregate::*;
pub use epoch::{default_route, Batch, Stash};
pub use fold::*;
pub use join::*;
pub use nested::*;
pub use sensor::{with_sensors, Arrival, Hop, Sensors};
pub use time::*;
pub use upsert::*;
pub use window::*;
