//! Catch-up progress: when a process starts (or falls) far behind its input, its log says how
//! far behind it is, how fast the backlog shrinks and when it will be through, every few
//! seconds, then that it caught up.
//!
//! The overview's sampler, which already looks at the lag of this process's input partitions
//! every few seconds (the positions and high watermarks `/api/assignment/` shows), hands each
//! look to [`CatchUp::observe`] once the tables are restored. The sources never wait on it. The
//! overview page shows the same progress ([`CatchUp::status`]).

use std::time::{Duration, Instant};

use serde::Serialize;

/// At most how often a progress line is logged.
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
    /// When the last line was logged.
    logged: Option<Instant>,
    /// The last look: when, and the lag it found.
    last: Option<(Instant, u64)>,
}

/// A catch-up in progress, as the overview shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct CatchUpStatus {
    /// Input records not yet read, at the last look.
    pub behind: u64,
    /// The backlog when the catch-up began.
    pub backlog: u64,
    /// How much of that backlog is done, in percent (0 while the backlog grows).
    pub percent: u64,
    /// How fast the backlog shrinks, net of new arrivals, in records per second.
    pub rate: f64,
    /// Seconds left at that rate; `None` while the backlog does not shrink.
    pub seconds_left: Option<f64>,
    /// Seconds since the catch-up began.
    pub seconds: f64,
}

impl CatchUpStatus {
    /// A catch-up that began at `started` with a backlog of `backlog` and finds `behind` at
    /// `now`.
    fn at(started: Instant, backlog: u64, now: Instant, behind: u64) -> Self {
        let seconds = now.duration_since(started).as_secs_f64();
        // The backlog's net shrinking (reads less new arrivals), per second.
        let rate = (backlog as f64 - behind as f64) / seconds.max(0.001);
        let done = backlog.saturating_sub(behind);
        CatchUpStatus {
            behind,
            backlog,
            percent: (done * 100).checked_div(backlog).unwrap_or(0),
            rate: rate.max(0.0).round(),
            seconds_left: (rate >= 1.0).then(|| (behind as f64 / rate).round()),
            seconds: seconds.round(),
        }
    }
}

impl CatchUp {
    /// Takes the lag seen at `now` (records not yet read, over every input partition of the
    /// process); the line to log, if any.
    pub(crate) fn observe(&mut self, now: Instant, lag: u64) -> Option<String> {
        self.last = Some((now, lag));
        let line = self.line(now, lag)?;
        self.logged = Some(now);
        Some(line)
    }

    /// The catch-up in progress at the last look, if there is one.
    pub(crate) fn status(&self) -> Option<CatchUpStatus> {
        let (now, behind) = self.last?;
        self.since
            .map(|(started, backlog)| CatchUpStatus::at(started, backlog, now, behind))
    }

    /// The line for a look at `now` that finds `lag`: the start and the end of a catch-up, and
    /// progress at most every [`LOOK_EVERY`].
    fn line(&mut self, now: Instant, lag: u64) -> Option<String> {
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
            Some(_)
                if self
                    .logged
                    .is_some_and(|t| now.duration_since(t) < LOOK_EVERY) =>
            {
                None
            }
            Some((started, first)) => {
                let p = CatchUpStatus::at(started, first, now, lag);
                let eta = match p.seconds_left {
                    Some(left) => format!("about {left:.0} s left"),
                    None => "not shrinking: input arrives as fast as it is read".to_string(),
                };
                Some(format!(
                    "catching up: {lag} input records behind, {} of {first} done ({}%), {:.0}/s net, {eta}",
                    first.saturating_sub(lag),
                    p.percent,
                    p.rate
                ))
            }
        }
    }
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
        assert_eq!(
            c.observe(at(37), 19_000),
            None,
            "progress at most every 5 s"
        );
        assert!(c.observe(at(40), 18_000).is_some());
    }

    #[test]
    fn the_status_of_a_catch_up_gives_its_progress_and_none_outside_one() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut c = CatchUp::default();
        assert_eq!(c.status(), None, "no look yet");
        c.observe(at(0), 500);
        assert_eq!(c.status(), None, "a small lag is no catch-up");
        c.observe(at(5), 100_000);
        c.observe(at(15), 60_000);
        assert_eq!(
            c.status(),
            Some(CatchUpStatus {
                behind: 60_000,
                backlog: 100_000,
                percent: 40,
                rate: 4000.0,
                seconds_left: Some(15.0),
                seconds: 10.0,
            })
        );
        c.observe(at(20), 120_000);
        let growing = c.status().expect("still catching up");
        assert_eq!(
            (growing.percent, growing.rate, growing.seconds_left),
            (0, 0.0, None)
        );
        c.observe(at(25), 10);
        assert_eq!(c.status(), None, "caught up");
    }
}
