//! Catch-up progress: when a process starts (or falls) far behind its input, its log says how
//! far behind it is, how fast the backlog shrinks and when it will be through, every few
//! seconds, then that it caught up.
//!
//! A thread looks at the lag of this process's input partitions (the same positions and high
//! watermarks `/api/assignment/` shows) every [`LOOK_EVERY`], once the tables are restored. The
//! sources never wait on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assignment::Assignments;
use super::health::Health;

/// How often the lag is looked at, and at most how often a line is logged.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(5);

/// A backlog of at least this many records is a catch-up worth reporting.
pub(crate) const BEHIND: u64 = 10_000;

/// Catch-up ends when the backlog falls below this (a tenth of [`BEHIND`], so that a lag that
/// hovers around the threshold does not start and end catch-ups on every look).
pub(crate) const CAUGHT_UP: u64 = BEHIND / 10;

/// Where a process stands against its input, from one look to the next.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// While catching up: when it began, and the backlog then.
    since: Option<(Instant, u64)>,
}

impl CatchUp {
    /// Takes the lag seen at `now` (records not yet read, over every input partition of the
    /// process); the line to log, if any.
    pub(crate) fn observe(&mut self, now: Instant, lag: u64) -> Option<String> {
        match self.since {
            None if lag >= BEHIND => {
                self.since = Some((now, lag));
                Some(format!(
                    "catching up: {lag} input records behind; progress every {} s",
                    LOOK_EVERY.as_secs()
                ))
            }
            None => None,
            Some((started, first)) if lag < CAUGHT_UP => {
                self.since = None;
                let seconds = now.duration_since(started).as_secs_f64();
                Some(format!(
                    "caught up: {first} records of backlog in {seconds:.0} s ({lag} behind now)"
                ))
            }
            Some((started, first)) => {
                let elapsed = now.duration_since(started).as_secs_f64().max(0.001);
                // The backlog's net shrinking (reads less new arrivals), per second.
                let shrink = (first as f64 - lag as f64) / elapsed;
                let done = first.saturating_sub(lag);
                let percent = (done * 100).checked_div(first).unwrap_or(0);
                let eta = match shrink >= 1.0 {
                    true => format!("about {:.0} s left", lag as f64 / shrink),
                    false => "not shrinking: input arrives as fast as it is read".to_string(),
                };
                Some(format!(
                    "catching up: {lag} input records behind, {done} of {first} done ({percent}%), {shrink:.0}/s net, {eta}"
                ))
            }
        }
    }
}

/// Starts the thread that logs catch-up progress for this process's sources; it ends when the
/// application stops.
pub(crate) fn watch(assignments: Arc<Assignments>, health: Arc<Health>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("faustus-catch-up".into())
        .spawn(move || {
            let mut catch_up = CatchUp::default();
            let step = Duration::from_millis(100);
            loop {
                let due = Instant::now() + LOOK_EVERY;
                while Instant::now() < due {
                    if health.stopping() {
                        return;
                    }
                    std::thread::sleep(step);
                }
                // While tables restore, the sources have not started: their lag means nothing yet.
                if !health.restore_report().complete {
                    continue;
                }
                let mut sources = assignments.all();
                if sources.is_empty() {
                    continue;
                }
                assignments.add_lag(&mut sources);
                let lag: Option<u64> = sources
                    .iter()
                    .flat_map(|s| &s.partitions)
                    .map(|p| p.lag.map(|l| l.max(0) as u64))
                    .sum();
                // A partition whose end Kafka did not tell in time: skip this look.
                if let Some(line) = lag.and_then(|lag| catch_up.observe(Instant::now(), lag)) {
                    log::info!("{line}");
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_is_reported_with_its_rate_and_time_left_until_it_is_caught_up() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut c = CatchUp::default();
        assert_eq!(c.observe(at(0), 500), None, "a small lag is no catch-up");
        assert_eq!(
            c.observe(at(5), 100_000).as_deref(),
            Some("catching up: 100000 input records behind; progress every 5 s")
        );
        assert_eq!(
            c.observe(at(15), 60_000).as_deref(),
            Some("catching up: 60000 input records behind, 40000 of 100000 done (40%), 4000/s net, about 15 s left")
        );
        assert_eq!(
            c.observe(at(20), 100_000).as_deref(),
            Some("catching up: 100000 input records behind, 0 of 100000 done (0%), 0/s net, not shrinking: input arrives as fast as it is read")
        );
        assert_eq!(
            c.observe(at(25), 999).as_deref(),
            Some("caught up: 100000 records of backlog in 20 s (999 behind now)")
        );
        assert_eq!(c.observe(at(30), 5_000), None, "below the threshold again");
        assert!(c.observe(at(35), 20_000).is_some(), "a new catch-up");
    }
}
