//! Sensors on hops: what a worker learns when a batch of records arrives after crossing workers.
//!
//! Every keyed exchange of this crate's operators (a fold's, an upsert's, a window's, a join's
//! repartition) is a [`Sensed`] parallelization contract. Its receiving end reports each batch
//! (one timely message) as it is pulled, with the batch's epoch and its number of records, to an
//! [`Arrival`]: one call per batch, never per record, so that a sensor costs a clock read and a
//! few atomic additions per message of up to a few thousand records.
//!
//! Where arrivals go is the engine's business: it installs its [`Sensors`] for the worker thread
//! while it builds the dataflow ([`with_sensors`]), and each sensed exchange asks them, once, for
//! the arrival of its hop and operator. Without sensors installed (this crate's tests, a program
//! that builds its own dataflow, an engine that turned them off), a sensed exchange is the plain
//! exchange it wraps.

use std::cell::RefCell;
use std::rc::Rc;

use timely::communication::Pull;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::channels::Message;
use timely::logging::TimelyLogger;
use timely::worker::Worker;
use timely::Accountable;

/// The kind of hop an exchange is: what the records cross workers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hop {
    /// Events routed to the worker that owns their key, to be folded, upserted, windowed or
    /// aggregated (Faust's `group_by`).
    GroupBy,
    /// One side of a join routed to the worker that owns the join key.
    JoinRepartition,
    /// A table's rows routed to the worker that keeps its changelog and read copy.
    Table,
    /// What an epoch commits, routed to the committer's worker.
    Commit,
}

impl Hop {
    /// The hop's name, as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Hop::GroupBy => "group_by",
            Hop::JoinRepartition => "join_repartition",
            Hop::Table => "table",
            Hop::Commit => "commit",
        }
    }
}

/// What a sensed exchange calls for each batch that arrives: the batch's epoch and its number
/// of records.
pub type Arrival = Rc<dyn Fn(u64, u64)>;

/// The engine's sensors: the arrival of a hop of an operator (named as the operator is), or
/// `None` to leave that exchange unsensed.
pub type Sensors = Rc<dyn Fn(Hop, &str) -> Option<Arrival>>;

thread_local! {
    static SENSORS: RefCell<Option<Sensors>> = const { RefCell::new(None) };
}

/// Runs `build` with `sensors` installed for this thread: the sensed exchanges that `build`
/// makes report to them. The sensors installed before are back afterwards, even if `build`
/// panics.
pub fn with_sensors<R>(sensors: Option<Sensors>, build: impl FnOnce() -> R) -> R {
    struct Restore(Option<Sensors>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0.take();
            SENSORS.with(|s| *s.borrow_mut() = before);
        }
    }
    let before = SENSORS.with(|s| std::mem::replace(&mut *s.borrow_mut(), sensors));
    let _restore = Restore(before);
    build()
}

/// `pact`, sensed as hop `hop` of operator `operator` by the sensors installed on this thread
/// (see [`with_sensors`]).
pub fn sensed<P>(pact: P, hop: Hop, operator: &str) -> Sensed<P> {
    let arrival = SENSORS.with(|s| s.borrow().as_ref().and_then(|s| s(hop, operator)));
    Sensed { pact, arrival }
}

/// A parallelization contract whose receiving end reports every batch that arrives (see the
/// module's documentation).
pub struct Sensed<P> {
    pact: P,
    arrival: Option<Arrival>,
}

impl<P, C> ParallelizationContract<u64, C> for Sensed<P>
where
    P: ParallelizationContract<u64, C>,
    C: Accountable + 'static,
{
    type Pusher = P::Pusher;
    type Puller = SensedPuller<P::Puller>;

    fn connect(
        self,
        worker: &Worker,
        identifier: usize,
        address: Rc<[usize]>,
        logging: Option<TimelyLogger>,
    ) -> (Self::Pusher, Self::Puller) {
        let (pusher, puller) = self.pact.connect(worker, identifier, address, logging);
        let puller = SensedPuller {
            puller,
            arrival: self.arrival,
        };
        (pusher, puller)
    }
}

/// The receiving end of a [`Sensed`] exchange.
pub struct SensedPuller<P> {
    puller: P,
    arrival: Option<Arrival>,
}

impl<P, C> Pull<Message<u64, C>> for SensedPuller<P>
where
    P: Pull<Message<u64, C>>,
    C: Accountable,
{
    #[inline]
    fn pull(&mut self) -> &mut Option<Message<u64, C>> {
        let message = self.puller.pull();
        if let (Some(arrival), Some(m)) = (&self.arrival, message.as_ref()) {
            if let Some(&epoch) = m.stamp.least() {
                arrival(epoch, u64::try_from(m.data.record_count()).unwrap_or(0));
            }
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use timely::dataflow::channels::pact::Exchange;
    use timely::dataflow::operators::{Input, Operator, Probe};

    use super::*;

    type Seen = Vec<(Hop, String, u64, u64)>;

    #[test]
    fn a_sensed_exchange_reports_every_record_at_its_epoch_and_nothing_without_sensors() {
        let seen: Seen = timely::execute_directly(|worker| {
            let seen: Rc<RefCell<Seen>> = Rc::default();
            let log = Rc::clone(&seen);
            let sensors: Sensors = Rc::new(move |hop, name: &str| {
                let log = Rc::clone(&log);
                let name = name.to_string();
                Some(Rc::new(move |epoch, n| {
                    log.borrow_mut().push((hop, name.clone(), epoch, n));
                }) as Arrival)
            });
            let (mut sensed_input, mut plain_input, probe) =
                worker.dataflow::<u64, _, _>(|scope| {
                    let (sensed_input, sensed_stream) = scope.new_input::<Vec<u64>>();
                    let (plain_input, plain_stream) = scope.new_input::<Vec<u64>>();
                    let observed = with_sensors(Some(sensors), || {
                        let pact = sensed(Exchange::new(|x: &u64| *x), Hop::GroupBy, "count");
                        sensed_stream.unary(pact, "Sensed", |_, _| {
                            |input, output| {
                                input
                                    .for_each(|cap, data| output.session(&cap).give_container(data))
                            }
                        })
                    });
                    let pact = sensed(Exchange::new(|x: &u64| *x), Hop::GroupBy, "plain");
                    let plain = plain_stream.unary(pact, "Plain", |_, _| {
                        |input, output| {
                            input.for_each(|cap, data| output.session(&cap).give_container(data))
                        }
                    });
                    let (probe, _) = observed.probe();
                    let plain = plain.probe_with(&probe);
                    drop(plain);
                    (sensed_input, plain_input, probe)
                });
            for epoch in [5u64, 7] {
                sensed_input.advance_to(epoch);
                plain_input.advance_to(epoch);
                for x in 0..3 {
                    sensed_input.send(x);
                    plain_input.send(x);
                }
            }
            sensed_input.advance_to(8);
            plain_input.advance_to(8);
            while probe.less_than(&8) {
                worker.step();
            }
            let seen = seen.borrow().clone();
            seen
        });
        let per_epoch = |e: u64| -> u64 { seen.iter().filter(|s| s.2 == e).map(|s| s.3).sum() };
        assert_eq!((per_epoch(5), per_epoch(7)), (3, 3), "{seen:?}");
        assert!(seen.iter().all(|s| s.0 == Hop::GroupBy && s.1 == "count"));
    }
}
