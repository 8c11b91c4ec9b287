//! The clock: one tick per epoch, carrying the epoch's wall-clock time in milliseconds.
//!
//! Operators that let wall-clock time move their stream time (see [`crate::window`],
//! [`crate::window::Timed::punctuate_when_idle`]) read the wall clock from these ticks, never from
//! the system clock: a tick is data of its epoch, so every worker, and a restore, sees the same
//! time for the same epoch.
//!
//! - Under Kafka an epoch's number is its wall-clock time (see [`Startup::next_epoch`]): worker 0
//!   emits the epoch number at every epoch it passes, starting after the restore epoch, and the
//!   other workers drop their capabilities at once. The clock takes in no input, so it closes
//!   its epochs early whenever every earlier epoch is complete.
//! - Under a test driver the clock is the driver's ([`crate::driver::TestDriver::advance_clock`]):
//!   worker 0 emits, at each epoch the driver closes, the driver's clock at the time it closed it.

use std::sync::Arc;

use timely::dataflow::operators::generic::source as timely_source;
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use super::{Io, Startup};

/// The clock's ticks: the wall-clock milliseconds of each epoch, at that epoch, on worker 0.
/// `committed` is the frontier of what the committer's worker has taken in.
pub(crate) fn clock<'s>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    committed: ProbeHandle<u64>,
) -> StreamVec<'s, u64, u64> {
    match &startup.io {
        Io::Kafka(_) => kafka_clock(scope, startup, committed),
        Io::Driver(harness) => {
            let harness = Arc::clone(harness);
            super::driver::driver_clock(scope, startup, harness)
        }
    }
}

/// The clock under Kafka: the epoch numbers themselves.
fn kafka_clock<'s>(
    scope: Scope<'s, u64>,
    startup: Arc<Startup>,
    committed: ProbeHandle<u64>,
) -> StreamVec<'s, u64, u64> {
    let ticking = scope.index() == 0;
    timely_source(scope, "Clock", move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability);
        let mut started = false;
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            if !ticking || startup.stopping() {
                capability = None;
                return;
            }
            if !started {
                started = true;
                cap.downgrade(&(startup.resume_epoch + 1).max(startup.epoch_now()));
                output.session(&*cap).give(*cap.time());
            }
            if let Some(next) = startup.next_epoch(*cap.time(), &committed, true) {
                cap.downgrade(&next);
                output.session(&*cap).give(next);
            }
            activator.activate_after(startup.until_next_epoch().min(super::SOURCE_IDLE_WAIT));
        }
    })
}
