//! Event time, stream time, and the late-record convention shared by windows and stream joins.
//!
//! ## Event time
//!
//! Timely time is the processing epoch (`u64`). Event time — a Kafka record timestamp or a field,
//! in milliseconds — is data: [`EventTime`] travels inside records, never as the timely time.
//!
//! ## Stream time, with several workers
//!
//! Stream time is the largest event time seen so far, and it is **global and per epoch**:
//!
//! > `ST(e)` = the largest event time of any (positive) input record of the operator, on any
//! > worker, with epoch `<= e`; `ST(e) = 0` before any record.
//!
//! Every worker computes the same `ST(e)`: each worker sends the largest event time of each of its
//! input batches to every worker (a broadcast of one number per batch), and an operator applies
//! epoch `e` only once every worker's contribution for `e` has arrived (the frontier has passed
//! `e`). Records of epoch `e` are judged against `ST(e - 1)` — the stream time *before* the epoch
//! — so the outcome depends neither on the interleaving of records inside an epoch nor on the
//! number of workers. Windows close and state expires against `ST(e)`, at the end of the epoch.
//!
//! Stream time is per operator (the maximum over that operator's inputs), never per key or per
//! worker, and it only advances when records arrive.
//!
//! ## Late records
//!
//! A record that arrives for something already closed is *late*: it is dropped from the result and
//! reported on a separate `late` collection (its size is the late count), never silently merged.

use serde::{Deserialize, Serialize};

/// An event time in milliseconds: data carried by records, not timely time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct EventTime(pub u64);

/// An operator's result together with the records it refused as late.
#[derive(Clone)]
pub struct WithLate<'scope, D: 'static, L: 'static> {
    /// The result.
    pub output: differential_dataflow::VecCollection<'scope, u64, D>,
    /// Every refused record, with multiplicity: its accumulated size is the late count.
    pub late: differential_dataflow::VecCollection<'scope, u64, L>,
}
