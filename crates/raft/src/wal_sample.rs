//! This server's WAL position as it was one heartbeat interval ago, for fair vote decisions.
//!
//! A candidate's request carries its position when it left; the voter judges it on arrival. While
//! a primary streams WAL, every standby's position moves on meanwhile, so comparing with the
//! voter's position *now* refuses a candidate that was level with it when it asked, and two
//! standbys of a live primary can refuse each other for ever. The voter therefore compares with
//! the position it had one heartbeat interval before (longer than any message delay the timings
//! allow): a fair comparison while WAL moves, and the same one as before once it stands still,
//! as it does after the primary is lost.

use crate::message::WalPosition;
use crate::types::{Duration, Instant};
use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub(crate) struct WalHistory {
    /// When each position was first seen, oldest first: the first entry is the position in
    /// effect one interval ago (or the oldest known), the others changes since.
    changes: VecDeque<(Instant, WalPosition)>,
}

impl WalHistory {
    /// Notes the position at `now` (a call into the core, after the host updated it) and
    /// forgets what is more than `interval` old. Changes closer together than a sixteenth of
    /// the interval are merged, which keeps the history at about 17 entries.
    pub fn observe(&mut self, wal: WalPosition, now: Instant, interval: Duration) {
        let several = self.changes.len() > 1;
        let merge_within = Duration(interval.as_micros() / 16);
        match self.changes.back_mut() {
            Some((_, last)) if *last == wal => {}
            Some((at, last)) if several && now < *at + merge_within => *last = wal,
            _ => self.changes.push_back((now, wal)),
        }
        let cutoff = now - interval;
        while self.changes.len() > 1 && self.changes[1].0 <= cutoff {
            self.changes.pop_front();
        }
    }

    /// The position to judge candidates against: the one in effect one interval ago (the
    /// oldest known, just after a start), no further than `current`; none when the database
    /// changed since (another system or timeline, a promotion): then nothing is refused.
    pub fn reference(&self, current: &WalPosition) -> WalPosition {
        let Some((_, then)) = self.changes.front() else {
            return WalPosition::default();
        };
        let same_database = (then.system, then.timeline, then.in_recovery)
            == (current.system, current.timeline, current.in_recovery);
        if same_database && then.known() {
            WalPosition {
                lsn: then.lsn.min(current.lsn),
                ..*current
            }
        } else {
            WalPosition::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lsn: u64) -> WalPosition {
        WalPosition::standby(1, 1, lsn)
    }

    fn ms(m: u64) -> Instant {
        Instant::from_micros(m * 1000)
    }

    #[test]
    fn the_reference_is_the_position_one_interval_ago() {
        let interval = Duration::from_millis(100);
        let mut h = WalHistory::default();
        assert!(!h.reference(&at(5)).known(), "nothing to compare with yet");
        // (time, position seen, reference expected)
        let steps = [
            (0, 10, 10),
            (50, 20, 10),
            (99, 30, 10),
            (100, 30, 10),
            (150, 40, 20),
            (199, 40, 30),
            (400, 40, 40),
            // Standing still for an interval: the reference is the position now.
            (1_000, 40, 40),
            (1_001, 50, 40),
        ];
        for (t, lsn, expected) in steps {
            h.observe(at(lsn), ms(t), interval);
            assert_eq!(h.reference(&at(lsn)).lsn, expected, "at {t} ms");
        }
    }

    #[test]
    fn the_history_stays_small_and_a_new_database_is_no_reference() {
        let interval = Duration::from_millis(100);
        let mut h = WalHistory::default();
        for t in 0..10_000u64 {
            h.observe(at(t), Instant::from_micros(t * 100), interval);
        }
        assert!(h.changes.len() <= 18, "{} entries", h.changes.len());
        assert!(!h.reference(&WalPosition::primary(1, 1, 10_000)).known());
        assert!(!h.reference(&WalPosition::standby(1, 2, 10_000)).known());
    }
}
