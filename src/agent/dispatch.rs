//! The tokio side of an agent: running handlers with concurrency, ordering, retries, a timeout,
//! and reporting each event's end to the consumer thread.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use faustus_connectors::murmur2;
use tokio::runtime::Handle;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    Acker, AgentSettings, Body, Event, EventRecord, Handler, HandlerError, HandlerFuture,
    OnFailure, Ordering, Origin, Outgoing, PartitionEvents,
};
use crate::dead_letter;
use crate::record::Headers;
use crate::topic::RecordError;

thread_local! {
    /// Set while the consumer thread polls an event's handling for the first time: a panic
    /// there is the handler's, caught and retried like one on the async runtime.
    static POLLING_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is polling an agent's handler (whose panics are caught).
pub(crate) fn polling_handler() -> bool {
    POLLING_HANDLER.with(Cell::get)
}

/// One event's handling, from its first attempt to its end report.
type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How an event ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Acked: its records are to be written.
    Acked,
    /// Sent to the dead-letter topic (its record is among the records) and acked.
    DeadLettered,
    /// Failed after its retries under [`OnFailure::Stop`]: the agent stops.
    Fatal(String),
}

/// One event's end, for the consumer thread.
#[derive(Debug)]
pub(crate) struct Completion {
    pub partition: i32,
    /// The assignment the event belongs to (a stale one is ignored).
    pub generation: u64,
    pub offset: i64,
    pub outcome: Outcome,
    pub records: Vec<Outgoing>,
}

/// An assignment of a partition to this process: events of an earlier one are ignored.
#[derive(Debug)]
pub(crate) struct Assignment {
    pub partition: i32,
    pub generation: u64,
    /// Set when the partition is revoked (or the agent stops): its events stop retrying, and
    /// their acks are dropped.
    pub revoked: AtomicBool,
}

/// What one event needs to report its end: shared by its [`Acker`]s.
pub(crate) struct AckSlot {
    assignment: Arc<Assignment>,
    offset: i64,
    done: AtomicBool,
    /// The records the current attempt has sent.
    outbox: Mutex<Vec<Outgoing>>,
    completions: Arc<Sender<Completion>>,
    /// Where the event's reply goes, when it is a request.
    reply: Option<crate::workflow::ReplyAddress>,
    /// Whether the current attempt has replied.
    replied: AtomicBool,
    /// The record's key and value as read, for its dead letter: copied when the event's handling
    /// goes on past its first poll (see [`Dispatcher::dispatch`]). An event that ends on its first
    /// poll, on the consumer thread, while the consumer still holds the record, needs no copy.
    raw: OnceLock<Raw>,
}

impl AckSlot {
    fn finish(&self, outcome: Outcome, records: Vec<Outgoing>) -> bool {
        if self.done.swap(true, AtomicOrdering::SeqCst)
            || self.assignment.revoked.load(AtomicOrdering::SeqCst)
        {
            return false;
        }
        let completion = Completion {
            partition: self.assignment.partition,
            generation: self.assignment.generation,
            offset: self.offset,
            outcome,
            records,
        };
        // A closed channel means the agent has stopped: nothing is committed any more.
        self.completions.send(completion).is_ok()
    }

    pub(crate) fn ack(&self) -> bool {
        let mut records = std::mem::take(&mut *self.outbox());
        // A request that ended without a reply gets an empty one: its asker (or chord) learns
        // that it is done.
        if !self.replied.load(AtomicOrdering::SeqCst) {
            records.extend(self.reply_record(crate::workflow::Reply::default()));
        }
        self.finish(Outcome::Acked, records)
    }

    /// The record carrying `reply` to the request's asker (or chain's next step), if the event
    /// is a request.
    fn reply_record(&self, reply: crate::workflow::Reply) -> Option<Outgoing> {
        self.reply.as_ref()?.record(reply)
    }

    /// Records the current attempt's reply (the first counts).
    pub(crate) fn reply(&self, reply: crate::workflow::Reply) {
        if self.reply.is_none() || self.replied.swap(true, AtomicOrdering::SeqCst) {
            return;
        }
        if let Some(record) = self.reply_record(reply) {
            self.outbox().push(record);
        }
    }

    /// Whether the event is a request.
    pub(crate) fn is_request(&self) -> bool {
        self.reply.is_some()
    }

    /// Forgets what the last attempt sent and replied, before the next.
    fn reset(&self) {
        self.outbox().clear();
        self.replied.store(false, AtomicOrdering::SeqCst);
    }

    pub(crate) fn outbox(&self) -> std::sync::MutexGuard<'_, Vec<Outgoing>> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_acked(&self) -> bool {
        self.done.load(AtomicOrdering::SeqCst)
    }
}

/// Counters of an agent, for `/api/agents/`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Handler attempts that returned `Ok`.
    pub handled: AtomicU64,
    /// Handler attempts that failed (returned an error, panicked or timed out).
    pub failed_attempts: AtomicU64,
    /// Events sent to the dead-letter topic (failed handlers and records that did not decode).
    pub dead_lettered: AtomicU64,
    /// How long handler attempts take (`faustus_agent_handler_duration_seconds`).
    pub handler_duration: Option<prometheus::Histogram>,
    /// The hand-off's sensor (`hop="agent"`), when the sensors are on: events dispatched, and
    /// per batch of them (the records of one poll), the time from its oldest record's timestamp
    /// to its dispatch, as the dataflow's sources measure theirs.
    pub hand_off: Option<crate::metrics::HopSensor>,
}

/// A record's key and value as read: what its dead letter carries.
pub(crate) type Raw = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A record read from Kafka, decoded, with what is needed to dead-letter it (borrowed from the
/// consumer).
pub(crate) struct Incoming<'a, K, V> {
    pub key: K,
    pub value: V,
    pub origin: Origin,
    pub timestamp: i64,
    pub headers: Headers,
    pub raw_key: Option<&'a [u8]>,
    pub raw_value: Option<&'a [u8]>,
}

/// Hands events to the agent's code.
pub(crate) struct Dispatcher<K: 'static, V: 'static> {
    body: Body<K, V>,
    settings: Arc<AgentSettings>,
    runtime: Handle,
    /// Makes events and runs their attempts.
    runner: Arc<Runner<K, V>>,
    /// Per-key lanes ([`Ordering::PerKey`]), and the events for each not yet handed over:
    /// they go to a lane in batches (see [`Dispatcher::flush`]), one wake-up per batch.
    lanes: Vec<UnboundedSender<Vec<Run>>>,
    pending: Vec<Vec<Run>>,
    /// Per lane, the events handed to it (or about to be) and not yet finished.
    busy: Vec<Arc<AtomicUsize>>,
    /// Permits of [`Ordering::Unordered`].
    permits: Arc<Semaphore>,
    /// The actor form: each assigned partition's event queue.
    actors: std::collections::BTreeMap<i32, UnboundedSender<Event<K, V>>>,
    /// The first actor failure (the consumer thread stops the agent on it).
    actor_failure: Arc<Mutex<Option<String>>>,
    /// Events dispatched since the last [`Dispatcher::flush`], and the oldest timestamp among
    /// them (`i64::MAX`: none), for the hand-off's sensor.
    handed: (u64, i64),
}

/// An event with its end report.
pub(crate) struct Job<K, V> {
    event: Event<K, V>,
    slot: Arc<AckSlot>,
}

impl<K: Clone + Send + Sync + 'static, V: Clone + Send + Sync + 'static> Dispatcher<K, V> {
    pub(crate) fn new(
        body: Body<K, V>,
        settings: Arc<AgentSettings>,
        runtime: Handle,
        completions: Sender<Completion>,
        counters: Arc<Counters>,
        dead_letter_topic: String,
        http: crate::http::HttpState,
    ) -> Self {
        let concurrency = settings.concurrency.max(1);
        let agent: Arc<str> = Arc::from(settings.name.as_str());
        let dead_letters = DeadLetters {
            topic: Arc::from(dead_letter_topic),
            agent,
            counters: Arc::clone(&counters),
            metrics: Arc::clone(&http.metrics),
        };
        let completions = Arc::new(completions);
        let http = Arc::new(http);
        let runner = Arc::new(Runner {
            body: body.clone(),
            settings: Arc::clone(&settings),
            counters: Arc::clone(&counters),
            dead_letters,
            completions,
            http,
        });
        let mut dispatcher = Dispatcher {
            body,
            settings,
            runtime,
            runner,
            lanes: Vec::new(),
            pending: Vec::new(),
            busy: Vec::new(),
            permits: Arc::new(Semaphore::new(concurrency)),
            actors: Default::default(),
            actor_failure: Arc::new(Mutex::new(None)),
            handed: (0, i64::MAX),
        };
        if let (Body::Handler(_), Ordering::PerKey) =
            (&dispatcher.body, dispatcher.settings.ordering)
        {
            for _ in 0..concurrency {
                let (tx, mut rx) = unbounded_channel::<Vec<Run>>();
                let busy = Arc::new(AtomicUsize::new(0));
                let done = Arc::clone(&busy);
                dispatcher.runtime.spawn(async move {
                    while let Some(runs) = rx.recv().await {
                        for run in runs {
                            run.await;
                            done.fetch_sub(1, AtomicOrdering::AcqRel);
                        }
                    }
                });
                dispatcher.lanes.push(tx);
                dispatcher.pending.push(Vec::new());
                dispatcher.busy.push(busy);
            }
        }
        dispatcher
    }

    /// Polls an event's first attempt once, here on the consumer thread: a handler that
    /// finishes without waiting (most of them) costs no hand-over to the async runtime, no
    /// wake-up, and no boxed future of the handling around its own. `Some` is the rest of the
    /// handling, to run on the runtime. The consumer thread is in the runtime's context for its
    /// whole life, so the handler may spawn tasks and set timers.
    fn poll_first(&self, handler: &Handler<K, V>, job: Job<K, V>) -> Option<Run> {
        /// Clears [`POLLING_HANDLER`] however the poll ends.
        struct Polling;
        impl Drop for Polling {
            fn drop(&mut self) {
                POLLING_HANDLER.with(|p| p.set(false));
            }
        }
        let (mut attempt, started) = self.runner.begin(handler, &job)?;
        let mut context = Context::from_waker(Waker::noop());
        POLLING_HANDLER.with(|p| p.set(true));
        let polling = Polling;
        let poll = Pin::new(&mut attempt).poll(&mut context);
        drop(polling);
        let first = match poll {
            Poll::Ready(outcome) => {
                self.runner.observe(started);
                match outcome {
                    Ok(()) => {
                        self.runner.handled(&job);
                        return None;
                    }
                    Err(error) => First::Failed(error),
                }
            }
            // It polls again on the runtime, with a waker that works.
            Poll::Pending => First::Waiting(attempt, started),
        };
        Some(Box::pin(Arc::clone(&self.runner).run(job, Some(first))))
    }

    /// The first failure of an actor, if any.
    pub(crate) fn actor_failure(&self) -> Option<String> {
        self.actor_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Hands one event to the agent's code.
    ///
    /// The record's raw key and value are copied into the event's [`AckSlot`] before its
    /// handling leaves this thread (a handler that waits, a busy lane, no permit free), so that a
    /// dead letter can carry them; one that ends on its first poll here costs no copy.
    pub(crate) fn dispatch(&mut self, assignment: &Arc<Assignment>, incoming: Incoming<'_, K, V>) {
        self.handed.0 += 1;
        if incoming.timestamp > 0 {
            self.handed.1 = self.handed.1.min(incoming.timestamp);
        }
        let (raw_key, raw_value) = (incoming.raw_key, incoming.raw_value);
        let keep_raw = |slot: &AckSlot| {
            let _ = slot
                .raw
                .set((raw_key.map(<[u8]>::to_vec), raw_value.map(<[u8]>::to_vec)));
        };
        let record = EventRecord {
            key: incoming.key,
            value: incoming.value,
            origin: incoming.origin,
            timestamp: incoming.timestamp,
            headers: incoming.headers,
        };
        let reply = match record.headers.is_empty() {
            true => None,
            false => crate::workflow::ReplyAddress::from_headers(&record.headers, raw_key),
        };
        let job = self.runner.job(assignment, record, OnceLock::new(), reply);
        match &self.body {
            Body::Actor(actor) => {
                let partition = assignment.partition;
                let sender = self.actors.entry(partition).or_insert_with(|| {
                    let (tx, rx) = unbounded_channel();
                    let events = PartitionEvents {
                        partition,
                        receiver: rx,
                        previous: None,
                        manual: self.settings.manual_ack,
                    };
                    let task = self.runtime.spawn(actor(events));
                    let failure = Arc::clone(&self.actor_failure);
                    let name = self.settings.name.clone();
                    self.runtime.spawn(async move {
                        let error = match task.await {
                            Ok(Ok(())) => return,
                            Ok(Err(e)) => e.0,
                            Err(e) => panic_message(e),
                        };
                        let message = format!(
                            "agent `{name}`: the actor of partition {partition} failed: {error}"
                        );
                        log::error!("{message}");
                        failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(message);
                    });
                    tx
                });
                // A closed queue means the actor has ended: its events stay unacked.
                let _ = sender.send(job.event);
            }
            Body::Handler(handler) => match self.settings.ordering {
                Ordering::PerKey => {
                    let lane = raw_key.map_or(0, |k| murmur2(k) as usize % self.lanes.len());
                    let slot = Arc::clone(&job.slot);
                    // An idle lane's event starts here; behind a busy one, it waits its turn.
                    let run = match self.busy[lane].load(AtomicOrdering::Acquire) {
                        0 => self.poll_first(handler, job),
                        _ => Some(Box::pin(Arc::clone(&self.runner).run(job, None)) as Run),
                    };
                    if let Some(run) = run {
                        keep_raw(&slot);
                        self.busy[lane].fetch_add(1, AtomicOrdering::AcqRel);
                        self.pending[lane].push(run);
                    }
                }
                Ordering::Unordered => {
                    let slot = Arc::clone(&job.slot);
                    match Arc::clone(&self.permits).try_acquire_owned() {
                        Ok(permit) => {
                            if let Some(run) = self.poll_first(handler, job) {
                                keep_raw(&slot);
                                self.runtime.spawn(finish_holding(run, permit));
                            }
                        }
                        Err(_) => {
                            keep_raw(&slot);
                            let run: Run = Box::pin(Arc::clone(&self.runner).run(job, None));
                            let permits = Arc::clone(&self.permits);
                            self.runtime.spawn(async move {
                                // The semaphore is fair: waiting events start in the order
                                // they were read.
                                let Ok(permit) = permits.acquire_owned().await else {
                                    return;
                                };
                                finish_holding(run, permit).await;
                            });
                        }
                    }
                }
            },
        }
    }

    /// Hands the jobs dispatched since the last call to their lanes. The consumer thread calls
    /// it after each batch of records it takes, and before it waits for events in flight.
    pub(crate) fn flush(&mut self) {
        if let (Some(sensor), (n, oldest)) = (&self.runner.counters.hand_off, self.handed) {
            if n > 0 {
                sensor.count(n);
            }
            if oldest < i64::MAX {
                sensor.observe_since(oldest);
            }
        }
        self.handed = (0, i64::MAX);
        for (lane, jobs) in self.lanes.iter().zip(&mut self.pending) {
            if !jobs.is_empty() {
                // A closed lane means the runtime is shutting down: nothing is acked any more.
                let _ = lane.send(std::mem::take(jobs));
            }
        }
    }

    /// Ends the event queue of a revoked partition's actor.
    pub(crate) fn revoke(&mut self, partition: i32) {
        self.actors.remove(&partition);
    }

    /// A dead letter for a record that did not decode, completed at once.
    pub(crate) fn dead_letter_undecodable(
        &self,
        assignment: &Arc<Assignment>,
        origin: &Origin,
        raw: Raw,
        error: &RecordError,
        reply: Option<crate::workflow::ReplyAddress>,
    ) {
        self.runner
            .dead_letter_undecodable(assignment, origin, raw, error, reply);
    }

    /// Completes a record the agent skips (a tombstone, under [`AgentSettings::skip_tombstones`])
    /// at once, sending nothing.
    pub(crate) fn skip(&self, assignment: &Arc<Assignment>, origin: &Origin) {
        self.runner
            .complete_at_once(assignment, origin, Outcome::Acked, Vec::new());
    }
}

/// Runs the rest of an event's handling, holding its permit of [`Ordering::Unordered`].
async fn finish_holding(run: Run, permit: OwnedSemaphorePermit) {
    run.await;
    drop(permit);
}

/// Makes events and runs their attempts.
struct Runner<K: 'static, V: 'static> {
    body: Body<K, V>,
    settings: Arc<AgentSettings>,
    counters: Arc<Counters>,
    dead_letters: DeadLetters,
    completions: Arc<Sender<Completion>>,
    /// What events read tables through.
    http: Arc<crate::http::HttpState>,
}

impl<K: Clone + Send + Sync + 'static, V: Clone + Send + Sync + 'static> Runner<K, V> {
    /// An event of `assignment`, and the slot that reports its end.
    fn job(
        &self,
        assignment: &Arc<Assignment>,
        record: EventRecord<K, V>,
        raw: OnceLock<Raw>,
        reply: Option<crate::workflow::ReplyAddress>,
    ) -> Job<K, V> {
        let slot = Arc::new(AckSlot {
            assignment: Arc::clone(assignment),
            offset: record.origin.offset,
            done: AtomicBool::new(false),
            outbox: Mutex::new(Vec::new()),
            completions: Arc::clone(&self.completions),
            reply,
            replied: AtomicBool::new(false),
            raw,
        });
        let acker = Acker {
            inner: Arc::clone(&slot),
        };
        let event = Event::new(record, acker, Arc::clone(&self.http));
        Job { event, slot }
    }

    /// A dead letter for a record that did not decode, completed at once. When the record is a
    /// request (`reply` is its address), its asker gets the decode error as an error reply, with
    /// the dead letter (in its transaction under `exactly_once`).
    fn dead_letter_undecodable(
        &self,
        assignment: &Arc<Assignment>,
        origin: &Origin,
        raw: Raw,
        error: &RecordError,
        reply: Option<crate::workflow::ReplyAddress>,
    ) {
        log::warn!(
            "agent `{}`: dead letter {}/{}@{}: {error}",
            self.settings.name,
            origin.topic,
            origin.partition,
            origin.offset
        );
        let record = self
            .dead_letters
            .record(origin, raw, dead_letter::DECODE, &error.to_string());
        let failed = reply.and_then(|address| {
            address.record(crate::workflow::Reply {
                value: None,
                error: Some(format!("the request does not decode: {error}")),
            })
        });
        let records = std::iter::once(record).chain(failed).collect();
        self.complete_at_once(assignment, origin, Outcome::DeadLettered, records);
    }

    /// Reports the end of the event at `origin` without running it.
    fn complete_at_once(
        &self,
        assignment: &Arc<Assignment>,
        origin: &Origin,
        outcome: Outcome,
        records: Vec<Outgoing>,
    ) {
        let _ = self.completions.send(Completion {
            partition: assignment.partition,
            generation: assignment.generation,
            offset: origin.offset,
            outcome,
            records,
        });
    }

    /// Observes an attempt begun at `started` in the handler-duration histogram.
    fn observe(&self, started: Instant) {
        if let Some(h) = &self.counters.handler_duration {
            h.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Begins an attempt of `job` now, unless its partition has been revoked: the attempt and
    /// the instant it began. A first attempt finds its slot as made (nothing sent, no reply);
    /// [`Runner::run`] resets the slot before each retry.
    fn begin(&self, handler: &Handler<K, V>, job: &Job<K, V>) -> Option<(Attempt, Instant)> {
        if job.slot.assignment.revoked.load(AtomicOrdering::SeqCst) {
            return None;
        }
        let started = Instant::now();
        let attempt = attempt_once(handler(job.event.clone()), started, self.settings.timeout);
        Some((attempt, started))
    }

    /// Counts an attempt of `job` that returned `Ok`, and acks the event unless acks are manual.
    fn handled(&self, job: &Job<K, V>) {
        self.counters.handled.fetch_add(1, AtomicOrdering::Relaxed);
        if !self.settings.manual_ack {
            job.slot.ack();
        }
    }

    /// Handles `job` to its end: its attempts, their retries, its dead letter or the stop.
    /// `first` is its first attempt when the consumer thread began it (see
    /// [`Dispatcher::poll_first`]).
    async fn run(self: Arc<Self>, job: Job<K, V>, mut first: Option<First>) {
        let Body::Handler(handler) = &self.body else {
            return;
        };
        let retry = self.settings.retry;
        let mut backoff = retry.backoff;
        let mut attempt = 0u32;
        loop {
            let outcome = match first.take() {
                Some(First::Failed(error)) => Err(error),
                waiting => {
                    let (pending, started) = match waiting {
                        Some(First::Waiting(pending, started)) => (pending, started),
                        _ => match self.begin(handler, &job) {
                            Some(begun) => begun,
                            None => return,
                        },
                    };
                    let outcome = pending.await;
                    self.observe(started);
                    outcome
                }
            };
            let error = match outcome {
                Ok(()) => {
                    self.handled(&job);
                    return;
                }
                Err(e) => e,
            };
            self.counters
                .failed_attempts
                .fetch_add(1, AtomicOrdering::Relaxed);
            let origin = job.event.origin();
            if attempt < retry.retries {
                attempt += 1;
                log::warn!(
                    "agent `{}`: {}/{}@{} failed (attempt {attempt} of {}): {error}; retrying in {backoff:?}",
                    self.settings.name,
                    origin.topic,
                    origin.partition,
                    origin.offset,
                    retry.retries + 1,
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
                // The next attempt starts from nothing sent and no reply.
                job.slot.reset();
                continue;
            }
            let reason = format!(
                "agent `{}`: the handler failed {} times; last: {error}",
                self.settings.name,
                retry.retries + 1
            );
            match self.settings.on_failure {
                OnFailure::DeadLetter => {
                    log::error!("{reason}; dead-lettering {}", job.event.idempotency_key());
                    if job.slot.raw.get().is_none() {
                        // The first poll, on the consumer thread, which keeps the raw record
                        // once the poll returns (before this runs again).
                        tokio::task::yield_now().await;
                    }
                    let raw = job.slot.raw.get().cloned();
                    debug_assert!(raw.is_some(), "the raw record is kept before a second poll");
                    let record =
                        self.dead_letters
                            .record(origin, raw.unwrap_or_default(), HANDLER, &reason);
                    // A request's asker (or chord) gets the error.
                    let failed = job.slot.reply_record(crate::workflow::Reply {
                        value: None,
                        error: Some(error.0.clone()),
                    });
                    let records = std::iter::once(record).chain(failed).collect();
                    job.slot.finish(Outcome::DeadLettered, records);
                }
                OnFailure::Stop => {
                    log::error!("{reason}; the agent stops");
                    job.slot.finish(Outcome::Fatal(reason), Vec::new());
                }
            }
            return;
        }
    }
}

/// The first attempt of an event, as the consumer thread's poll of it left it.
enum First {
    /// It failed (its duration is observed).
    Failed(HandlerError),
    /// It waits, begun at the instant.
    Waiting(Attempt, Instant),
}

/// One attempt, from `started`: a panic is its error, and a timeout drops (so cancels) it, at
/// once, so that it sends nothing into the next attempt.
fn attempt_once(future: HandlerFuture, started: Instant, timeout: Duration) -> Attempt {
    use futures::FutureExt as _;
    Attempt {
        future: std::panic::AssertUnwindSafe(future).catch_unwind(),
        // A timeout too long to be a time never fires.
        deadline: tokio::time::Instant::from_std(started).checked_add(timeout),
        timeout,
        timer: None,
    }
}

/// The future of [`attempt_once`]. Its timer is set when the attempt first waits: an attempt
/// that ends on its first poll (most do) costs no timer.
struct Attempt {
    future: futures::future::CatchUnwind<std::panic::AssertUnwindSafe<HandlerFuture>>,
    deadline: Option<tokio::time::Instant>,
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for Attempt {
    type Output = Result<(), HandlerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        use futures::FutureExt as _;
        let this = &mut *self;
        if let Poll::Ready(caught) = this.future.poll_unpin(cx) {
            return Poll::Ready(match caught {
                Ok(result) => result,
                Err(payload) => Err(HandlerError(panic_text(payload.as_ref()))),
            });
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(HandlerError(format!(
                "timed out after {:?}",
                this.timeout
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What a failed task says.
fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".into();
    }
    panic_text(e.into_panic().as_ref())
}

/// What a panic's payload says.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    format!("panicked: {}", panic_payload_text(payload))
}

/// The message a panic's payload carries (`a panic` when it carries none).
pub(crate) fn panic_payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The kind of an agent's dead letter whose handler failed, as the overview shows it.
const HANDLER: &str = "handler";

/// Where an agent's dead letters go, their count, and the process's recent dead letters.
#[derive(Clone)]
struct DeadLetters {
    topic: Arc<str>,
    agent: Arc<str>,
    counters: Arc<Counters>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl DeadLetters {
    /// The dead-letter record of an event (counted, and kept among the recent dead letters as
    /// of `kind`): its key and value unchanged, the reason, origin and agent in headers.
    fn record(&self, origin: &Origin, (key, value): Raw, kind: &str, reason: &str) -> Outgoing {
        self.counters
            .dead_lettered
            .fetch_add(1, AtomicOrdering::Relaxed);
        let mut recent = crate::overview::RecentDeadLetter::now(kind, reason);
        recent.topic = Some(origin.topic.to_string());
        recent.partition = Some(origin.partition);
        recent.offset = Some(origin.offset);
        recent.agent = Some(self.agent.to_string());
        self.metrics.recent_dead_letters.push(recent);
        dead_letter_record(&self.topic, &self.agent, origin, (key, value), reason)
    }
}

/// The dead-letter record of an event: its key and value unchanged, the reason, origin and agent
/// in headers.
fn dead_letter_record(
    topic: &Arc<str>,
    agent: &str,
    origin: &Origin,
    (key, value): Raw,
    reason: &str,
) -> Outgoing {
    Outgoing {
        topic: Arc::clone(topic),
        partition: None,
        key,
        value,
        headers: vec![
            (dead_letter::REASON.into(), reason.as_bytes().to_vec()),
            (dead_letter::TOPIC.into(), origin.topic.as_bytes().to_vec()),
            (
                dead_letter::PARTITION.into(),
                origin.partition.to_string().into_bytes(),
            ),
            (
                dead_letter::OFFSET.into(),
                origin.offset.to_string().into_bytes(),
            ),
            (dead_letter::OPERATOR.into(), agent.as_bytes().to_vec()),
        ],
    }
}
