//! Acknowledgement tracking: which offset of a partition may be committed while events are
//! handled out of order.
//!
//! An agent reads a partition in offset order but hands each event to an asynchronous handler,
//! and handlers finish in any order. Kafka stores one position per partition, the *next* offset
//! to read, so the only safe position to commit is the **first offset not yet acked**: every
//! event below it has been handled, and after a crash the partition is read again from there.
//! `last acked + 1` would be wrong: with events 5, 6 and 7 taken and only 7 acked, committing 8
//! loses 5 and 6 if the process dies. One [`AckTracker`] per assigned partition follows the
//! lifecycle
//!
//! ```text
//! read offset o → begin(o) → handler runs … → ack(o) → committable() → commit that position
//! ```
//!
//! - [`AckTracker::new`] takes the partition's start position (the next offset to read, i.e.
//!   the committed offset it was assigned at).
//! - [`AckTracker::begin`] records that the event at offset `o` was taken for handling. Offsets
//!   strictly increase but may skip: compacted records and transaction markers are not events,
//!   and a skipped offset never holds the committable position back.
//! - [`AckTracker::ack`] records that the event's handler completed, in any order.
//! - [`AckTracker::committable`] is the smallest begun-but-unacked offset, or, when nothing is
//!   pending, one past the last begun offset (the start position if nothing was begun). It
//!   never moves backwards.
//! - [`AckTracker::revoke`] gives the partition up (rebalance, shutdown after a drain deadline):
//!   it forgets what is in flight and returns what may still be committed, which is only what
//!   was acked contiguously. Events pending or acked above that position will be read again by
//!   the partition's next owner (at-least-once for the handlers' side effects).
//!
//! ```
//! use faustus_connectors::acks::{AckError, AckTracker};
//!
//! let mut partition = AckTracker::new(100); // assigned at committed offset 100
//! for offset in [100, 101, 103, 104] {
//!     partition.begin(offset)?; // offset 102 was a transaction marker: not an event
//! }
//! partition.ack(103)?; // handlers finish out of order
//! partition.ack(101)?;
//! assert_eq!(partition.committable(), 100); // 100 is still being handled
//! assert_eq!(partition.in_flight(), 2); // 100 and 104
//! assert_eq!(partition.acked_ranges(), vec![(101, 103)]); // 102 did not split the range
//!
//! partition.ack(100)?;
//! assert_eq!(partition.committable(), 104); // 101..=103 are done too: commit 104
//! assert_eq!(partition.ack(100), Err(AckError::AlreadyAcked { offset: 100 }));
//!
//! // The partition is revoked while 104 is still running: commit 104, and 104 is read again by
//! // whoever gets the partition next.
//! assert_eq!(partition.revoke(), 104);
//! # Ok::<(), AckError>(())
//! ```
//!
//! ## Memory
//!
//! The tracker keeps the pending offsets (begun, not acked) one by one, and the acked offsets
//! above the committable position only as coalesced ranges: a range ends where a pending offset
//! lies, and skipped offsets inside it do not split it. Everything below the committable
//! position is forgotten. Each stored range lies right above some pending offset, a different
//! one for each range, so with `n = in_flight()` the tracker holds at most `n` pending offsets
//! and at most `n` ranges: **O(in_flight) memory**, however many events were acked, and however
//! many offsets were skipped. Every operation is O(log in_flight); `committable` is O(1).
//!
//! ## What the errors can tell
//!
//! Because acked offsets are not kept one by one, the tracker cannot always tell a double ack
//! from an ack of an offset that was skipped: below the committable position, or inside an acked
//! range, both are reported as [`AckError::AlreadyAcked`]. An offset the tracker can prove was
//! never begun (before the start, at or past [`AckTracker::next_offset`], or a skipped offset
//! above the committable position that no acked range covers) is [`AckError::NotBegun`]. Either
//! way the ack changes nothing.
//!
//! Acks of a revoked tracker's events must not reach the partition's next tracker: if the same
//! process is assigned the partition again, the re-read events reuse those offsets. Tag handler
//! tasks with the assignment they were started under and drop stale acks.

use std::collections::{BTreeMap, BTreeSet};

/// A call the tracker refused; the tracker is left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// [`AckTracker::begin`] with an offset below the next one it accepts: offsets must strictly
    /// increase and start at the tracker's start position.
    #[error(
        "cannot begin offset {offset}: offsets must increase, the next one must be at least {next}"
    )]
    NotIncreasing {
        /// The offset handed in.
        offset: i64,
        /// The smallest offset `begin` accepts now.
        next: i64,
    },
    /// [`AckTracker::begin`] with `i64::MAX`, which no Kafka record has (its next position would
    /// not be representable).
    #[error("cannot begin offset {offset}: no Kafka record has this offset")]
    OutOfRange {
        /// The offset handed in.
        offset: i64,
    },
    /// [`AckTracker::ack`] of an offset that was never begun: before the start position, at or
    /// past the next offset to begin, or a skipped offset above the committable position that
    /// no acked range covers.
    #[error("ack of offset {offset}, which was never begun")]
    NotBegun {
        /// The offset acked.
        offset: i64,
    },
    /// [`AckTracker::ack`] of an offset that is no longer pending: a double ack. An offset that
    /// was skipped but lies below the committable position or inside an acked range is reported
    /// the same way, since the tracker keeps no record of individual acked offsets.
    #[error("ack of offset {offset}, which is already acked")]
    AlreadyAcked {
        /// The offset acked.
        offset: i64,
    },
}

/// The acknowledgement state of one partition: which events are being handled, which are done,
/// and which position may be committed. See the [module docs](self) for the lifecycle and the
/// memory bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckTracker {
    /// The position the tracker was created at; no offset below it was ever begun.
    start: i64,
    /// The committable position: `pending`'s first offset, or `next` when nothing is pending.
    committable: i64,
    /// One past the last begun offset (`start` before the first `begin`).
    next: i64,
    /// Begun, not acked; all in `committable..next`.
    pending: BTreeSet<i64>,
    /// Acked offsets above `committable`, as inclusive ranges `first → last`. Both ends are acked
    /// offsets, no pending offset lies inside a range, and at least one lies between any two
    /// ranges (they are coalesced across skipped offsets).
    acked: BTreeMap<i64, i64>,
}

impl AckTracker {
    /// A tracker for a partition whose next offset to read is `start` (usually the committed
    /// offset it was assigned at). Until something is begun, `start` is committable.
    pub fn new(start: i64) -> Self {
        Self {
            start,
            committable: start,
            next: start,
            pending: BTreeSet::new(),
            acked: BTreeMap::new(),
        }
    }

    /// Records that the event at `offset` was taken for handling. Offsets must strictly
    /// increase, starting at or above the start position; offsets skipped between two calls are
    /// not events and never hold the committable position back.
    pub fn begin(&mut self, offset: i64) -> Result<(), AckError> {
        if offset < self.next {
            return Err(AckError::NotIncreasing {
                offset,
                next: self.next,
            });
        }
        let Some(next) = offset.checked_add(1) else {
            return Err(AckError::OutOfRange { offset });
        };
        if self.pending.is_empty() {
            // Nothing was pending, so everything below `offset` is acked or skipped.
            self.committable = offset;
        }
        self.pending.insert(offset);
        self.next = next;
        Ok(())
    }

    /// Records that the handler of the event at `offset` completed. Acks may come in any order.
    /// An offset that is not pending (never begun, or acked already) is an error and changes
    /// nothing.
    pub fn ack(&mut self, offset: i64) -> Result<(), AckError> {
        if !self.pending.remove(&offset) {
            return Err(self.not_pending(offset));
        }
        if offset == self.committable {
            self.committable = self.pending.first().copied().unwrap_or(self.next);
            // Ranges that were waiting on `offset` now lie below the committable position.
            while let Some(range) = self.acked.first_entry() {
                if *range.key() >= self.committable {
                    break;
                }
                range.remove();
            }
        } else {
            self.insert_acked(offset);
        }
        Ok(())
    }

    /// The position to commit for this partition: the first begun offset not yet acked, or, if
    /// none is pending, one past the last begun offset (the start position if nothing was
    /// begun). It never moves backwards.
    pub fn committable(&self) -> i64 {
        self.committable
    }

    /// The position the tracker was created at: where its partition's reading began.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// How many events were begun and not yet acked.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// One past the last begun offset (the start position if nothing was begun): the smallest
    /// offset [`begin`](Self::begin) accepts.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// The acked offsets above the committable position, as **inclusive** ranges
    /// `(first, last)` in ascending order. Every begun offset in a range is acked; offsets
    /// skipped between begun ones do not split a range, so two ranges are always separated by
    /// at least one pending offset. There are never more ranges than [`in_flight`](Self::in_flight).
    pub fn acked_ranges(&self) -> Vec<(i64, i64)> {
        self.acked
            .iter()
            .map(|(&first, &last)| (first, last))
            .collect()
    }

    /// Gives the partition up: drops everything in flight and returns the position that may be
    /// committed for it, the [`committable`](Self::committable) position at this moment. Only
    /// what was acked contiguously is covered; pending events and acks above them will be read
    /// again by the partition's next owner.
    pub fn revoke(self) -> i64 {
        self.committable
    }

    /// Adds a just-acked `offset` above the committable position to the ranges, merging it with
    /// the neighbouring ranges when no pending offset separates them.
    fn insert_acked(&mut self, offset: i64) {
        let mut first = offset;
        let mut last = offset;
        if let Some((&start, &end)) = self.acked.range(..offset).next_back() {
            // `end < offset` always holds (`offset` was pending, so no range covers it); the
            // check keeps `range` from panicking should that ever be broken.
            if end < offset && self.pending.range(end..offset).next().is_none() {
                first = start;
            }
        }
        if let Some((&start, &end)) = self.acked.range(offset..).next() {
            if self.pending.range(offset..start).next().is_none() {
                self.acked.remove(&start);
                last = end;
            }
        }
        self.acked.insert(first, last);
    }

    /// Why `offset`, which is not pending, cannot be acked.
    fn not_pending(&self, offset: i64) -> AckError {
        let forgotten = offset >= self.start
            && offset < self.next
            && (offset < self.committable
                || self
                    .acked
                    .range(..=offset)
                    .next_back()
                    .is_some_and(|(_, &last)| offset <= last));
        if forgotten {
            AckError::AlreadyAcked { offset }
        } else {
            AckError::NotBegun { offset }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// A tracker started at `start` with `offsets` begun.
    fn begun(start: i64, offsets: impl IntoIterator<Item = i64>) -> AckTracker {
        let mut t = AckTracker::new(start);
        for offset in offsets {
            t.begin(offset).unwrap();
        }
        t
    }

    #[test]
    fn double_ack_is_an_error_and_changes_nothing() {
        let mut t = begun(0, 0..4);
        t.ack(2).unwrap();
        let before = t.clone();
        assert_eq!(t.ack(2), Err(AckError::AlreadyAcked { offset: 2 }));
        assert_eq!(t, before);
        t.ack(0).unwrap();
        let before = t.clone();
        // Below the committable position.
        assert_eq!(t.ack(0), Err(AckError::AlreadyAcked { offset: 0 }));
        assert_eq!(t, before);
        assert_eq!(t.committable(), 1);
    }

    #[test]
    fn ack_of_an_offset_never_begun_is_an_error_and_changes_nothing() {
        let mut fresh = AckTracker::new(10);
        assert_eq!(fresh.ack(10), Err(AckError::NotBegun { offset: 10 }));
        let mut t = begun(10, [10, 11, 14, 15]);
        let before = t.clone();
        for offset in [9, 12, 13, 16, i64::MIN, i64::MAX] {
            assert_eq!(t.ack(offset), Err(AckError::NotBegun { offset }));
            assert_eq!(t, before);
        }
    }

    #[test]
    fn a_skipped_offset_among_acked_ones_reads_as_acked() {
        let mut t = begun(0, [0, 1, 3]);
        t.ack(1).unwrap();
        t.ack(3).unwrap();
        assert_eq!(t.acked_ranges(), vec![(1, 3)]);
        // 2 was never begun, but the tracker only knows the range 1..=3.
        assert_eq!(t.ack(2), Err(AckError::AlreadyAcked { offset: 2 }));
    }

    #[test]
    fn begin_refuses_offsets_that_do_not_increase() {
        let mut t = AckTracker::new(5);
        assert_eq!(
            t.begin(4),
            Err(AckError::NotIncreasing { offset: 4, next: 5 })
        );
        t.begin(7).unwrap();
        let before = t.clone();
        for offset in [5, 7] {
            assert_eq!(
                t.begin(offset),
                Err(AckError::NotIncreasing { offset, next: 8 })
            );
        }
        assert_eq!(
            t.begin(i64::MAX),
            Err(AckError::OutOfRange { offset: i64::MAX })
        );
        assert_eq!(t, before);
        t.begin(i64::MAX - 1).unwrap();
        t.ack(7).unwrap();
        t.ack(i64::MAX - 1).unwrap();
        assert_eq!(t.committable(), i64::MAX);
    }

    #[test]
    fn errors_display_the_offset() {
        assert_eq!(
            AckError::AlreadyAcked { offset: 3 }.to_string(),
            "ack of offset 3, which is already acked"
        );
        assert_eq!(
            AckError::NotBegun { offset: 9 }.to_string(),
            "ack of offset 9, which was never begun"
        );
    }

    #[test]
    fn committable_is_the_first_unacked_offset_not_last_acked_plus_one() {
        let mut t = begun(0, 0..3);
        t.ack(2).unwrap();
        assert_eq!(t.committable(), 0);
        t.ack(0).unwrap();
        assert_eq!(t.committable(), 1);
        t.ack(1).unwrap();
        assert_eq!((t.committable(), t.in_flight()), (3, 0));
        assert!(t.acked_ranges().is_empty());
    }

    #[test]
    fn skipped_offsets_never_block_the_committable_position() {
        let mut t = AckTracker::new(0);
        t.begin(4).unwrap();
        assert_eq!(t.committable(), 4);
        t.ack(4).unwrap();
        assert_eq!(t.committable(), 5);
        t.begin(9).unwrap();
        t.ack(9).unwrap();
        assert_eq!(t.committable(), 10);
    }

    #[test]
    fn revoke_returns_only_what_was_acked_contiguously() {
        let mut t = begun(10, 10..13);
        t.ack(10).unwrap();
        t.ack(12).unwrap();
        assert_eq!(t.revoke(), 11);
        assert_eq!(AckTracker::new(7).revoke(), 7);
    }

    /// Transaction markers at every other offset and one slow handler: a tracker that kept one
    /// range per acked offset would hold 10 000 of them.
    #[test]
    fn memory_stays_bounded_by_in_flight_across_skips() {
        let mut t = AckTracker::new(0);
        for offset in (0..20_000).step_by(2) {
            t.begin(offset).unwrap();
            if offset > 0 {
                t.ack(offset).unwrap();
            }
        }
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.acked_ranges(), vec![(2, 19_998)]);
        t.ack(0).unwrap();
        assert_eq!((t.committable(), t.acked_ranges()), (19_999, vec![]));
    }

    /// One step of a random run.
    #[derive(Clone, Debug)]
    enum Op {
        /// Begin the next offset after skipping this many.
        Begin(i64),
        /// Begin an offset below the next one (must fail).
        BeginStale(Index),
        /// Ack a pending offset (or, with none pending, an acked one).
        Ack(Index),
        /// Ack any offset near the begun ones: pending, acked, skipped or never begun.
        AckAny(Index),
        /// Only look at the committable position.
        Look,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => prop_oneof![4 => Just(0i64), 1 => 1i64..4, 1 => Just(100i64)].prop_map(Op::Begin),
            1 => any::<Index>().prop_map(Op::BeginStale),
            6 => any::<Index>().prop_map(Op::Ack),
            2 => any::<Index>().prop_map(Op::AckAny),
            1 => Just(Op::Look),
        ]
    }

    /// The plain model: every begun offset and every acked offset, computed by brute force.
    struct Model {
        start: i64,
        begun: BTreeSet<i64>,
        acked: BTreeSet<i64>,
    }

    impl Model {
        fn next(&self) -> i64 {
            self.begun.last().map_or(self.start, |last| last + 1)
        }

        fn pending(&self) -> Vec<i64> {
            self.begun.difference(&self.acked).copied().collect()
        }

        fn committable(&self) -> i64 {
            self.pending().first().copied().unwrap_or(self.next())
        }

        /// Acked offsets above the committable position, grouped into maximal runs that no
        /// pending offset interrupts.
        fn ranges(&self) -> Vec<(i64, i64)> {
            let mut ranges: Vec<(i64, i64)> = Vec::new();
            let mut open = false;
            for &offset in self.begun.range(self.committable()..) {
                if !self.acked.contains(&offset) {
                    open = false;
                } else if open {
                    if let Some(range) = ranges.last_mut() {
                        range.1 = offset;
                    }
                } else {
                    ranges.push((offset, offset));
                    open = true;
                }
            }
            ranges
        }

        /// What acking `offset`, which is not pending, must report.
        fn ack_error(&self, offset: i64) -> AckError {
            let ambiguous = offset >= self.start && offset < self.committable()
                || self
                    .ranges()
                    .iter()
                    .any(|&(first, last)| first <= offset && offset <= last);
            if self.acked.contains(&offset) || ambiguous {
                AckError::AlreadyAcked { offset }
            } else {
                AckError::NotBegun { offset }
            }
        }
    }

    fn check(t: &AckTracker, m: &Model, floor: i64) -> Result<(), TestCaseError> {
        let committable = t.committable();
        prop_assert_eq!(committable, m.committable());
        prop_assert!(committable >= floor, "committable moved back");
        prop_assert_eq!(t.in_flight(), m.pending().len());
        prop_assert_eq!(t.next_offset(), m.next());
        let ranges = t.acked_ranges();
        prop_assert_eq!(&ranges, &m.ranges());
        prop_assert!(ranges
            .iter()
            .all(|&(first, last)| committable < first && first <= last));
        prop_assert!(
            ranges.windows(2).all(|w| w[0].1 + 1 < w[1].0),
            "not coalesced: {:?}",
            ranges
        );
        prop_assert!(
            ranges.len() <= t.in_flight(),
            "{} ranges for {} in flight",
            ranges.len(),
            t.in_flight()
        );
        prop_assert_eq!(t.clone().revoke(), committable);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn tracker_matches_the_brute_force_model(
            start in 0i64..1_000,
            ops in prop::collection::vec(op(), 0..300),
        ) {
            let mut t = AckTracker::new(start);
            let mut m = Model { start, begun: BTreeSet::new(), acked: BTreeSet::new() };
            let mut floor = t.committable();
            check(&t, &m, floor)?;
            for op in ops {
                let before = t.clone();
                match op {
                    Op::Begin(skip) => {
                        let offset = m.next() + skip;
                        prop_assert_eq!(t.begin(offset), Ok(()));
                        m.begun.insert(offset);
                    }
                    Op::BeginStale(index) => {
                        let offset = m.start - 2 + index.index((m.next() - m.start + 2) as usize) as i64;
                        prop_assert_eq!(
                            t.begin(offset),
                            Err(AckError::NotIncreasing { offset, next: m.next() })
                        );
                        prop_assert_eq!(&t, &before);
                    }
                    Op::Ack(index) => {
                        let pending = m.pending();
                        if !pending.is_empty() {
                            let offset = pending[index.index(pending.len())];
                            prop_assert_eq!(t.ack(offset), Ok(()));
                            m.acked.insert(offset);
                        } else if !m.acked.is_empty() {
                            let acked: Vec<i64> = m.acked.iter().copied().collect();
                            let offset = acked[index.index(acked.len())];
                            prop_assert_eq!(t.ack(offset), Err(AckError::AlreadyAcked { offset }));
                            prop_assert_eq!(&t, &before);
                        }
                    }
                    Op::AckAny(index) => {
                        let offset = m.start - 2 + index.index((m.next() - m.start + 4) as usize) as i64;
                        if m.begun.contains(&offset) && !m.acked.contains(&offset) {
                            prop_assert_eq!(t.ack(offset), Ok(()));
                            m.acked.insert(offset);
                        } else {
                            prop_assert_eq!(t.ack(offset), Err(m.ack_error(offset)));
                            prop_assert_eq!(&t, &before);
                        }
                    }
                    Op::Look => {}
                }
                check(&t, &m, floor)?;
                floor = t.committable();
            }
        }
    }
}
