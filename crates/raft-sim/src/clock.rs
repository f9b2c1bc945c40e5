//! Each simulated node has its own clock: its own origin, a rate that differs from real time by
//! up to the drift the lease model allows and may change at any moment, and (only for the
//! `CLOCK_MONOTONIC` model of a system suspend) intervals during which it stands still.
//!
//! The clock is piecewise linear: a segment starts at `origin_real` reading `origin_local` and
//! runs at the current rate, except inside the freeze interval, if any.

use pg_leader_raft::Instant;

#[derive(Clone, Copy, Debug)]
pub struct NodeClock {
    origin_real: u64,
    origin_local: u64,
    /// Parts per million faster (positive) or slower (negative) than real time.
    drift_ppm: i64,
    /// Real interval `[from, until)` during which the clock stands still (a monotonic clock
    /// while the machine sleeps). Never starts before `origin_real`.
    frozen: Option<(u64, u64)>,
}

const MILLION: i128 = 1_000_000;

impl NodeClock {
    /// A clock that reads `offset` at real time zero and runs `drift_ppm` fast (or slow).
    pub fn new(offset: u64, drift_ppm: i64) -> NodeClock {
        NodeClock {
            origin_real: 0,
            origin_local: offset,
            drift_ppm,
            frozen: None,
        }
    }

    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    /// True while the clock stands still at real time `real`.
    pub fn is_frozen(&self, real: u64) -> bool {
        self.frozen.is_some_and(|(a, b)| a <= real && real < b)
    }

    /// Real microseconds the clock ran between its origin and `real`.
    fn running(&self, real: u64) -> u64 {
        let elapsed = real.saturating_sub(self.origin_real);
        match self.frozen {
            Some((a, b)) => {
                let overlap = real.min(b).saturating_sub(a.max(self.origin_real));
                elapsed - overlap.min(elapsed)
            }
            None => elapsed,
        }
    }

    /// The real moment at which the clock has run `running` microseconds since its origin.
    fn real_after_running(&self, running: u64) -> u64 {
        let real = self.origin_real + running;
        match self.frozen {
            // The reading at the freeze's start is reached as it starts.
            Some((a, b)) if real > a => real + (b - a),
            _ => real,
        }
    }

    fn scaled(&self, running: u64) -> u64 {
        (running as i128 * (MILLION + self.drift_ppm as i128) / MILLION) as u64
    }

    /// The node's reading at real time `real` (microseconds; not before the last change).
    pub fn local(&self, real: u64) -> Instant {
        Instant::from_micros(self.origin_local + self.scaled(self.running(real)))
    }

    /// The first real time at which the node's clock reads at least `local`.
    pub fn real_at(&self, local: Instant) -> u64 {
        let Some(needed) = local.as_micros().checked_sub(self.origin_local) else {
            return self.origin_real;
        };
        let rate = MILLION + self.drift_ppm as i128;
        let mut running = (needed as i128 * MILLION / rate) as u64;
        // Integer division may land one step short; walk forward to the exact first moment.
        while self.scaled(running) < needed {
            running += 1;
        }
        while running > 0 && self.scaled(running - 1) >= needed {
            running -= 1;
        }
        self.real_after_running(running)
    }

    /// Starts a new segment at `now`, keeping the reading continuous.
    fn rebase(&mut self, now: u64) {
        self.origin_local = self.local(now).as_micros();
        self.frozen = match self.frozen {
            Some((_, b)) if b <= now => None,
            Some((a, b)) => Some((a.max(now), b)),
            None => None,
        };
        self.origin_real = now;
    }

    /// The rate changes from `now` on (within the allowed drift: an NTP slew, a hypervisor).
    pub fn set_drift(&mut self, now: u64, drift_ppm: i64) {
        self.rebase(now);
        self.drift_ppm = drift_ppm;
    }

    /// The clock stands still from `now` until real time `until` (a monotonic clock across a
    /// system suspend), then runs on from the reading it stopped at.
    pub fn freeze(&mut self, now: u64, until: u64) {
        self.rebase(now);
        let from = self.frozen.map_or(now, |(a, _)| a.min(now));
        let to = self.frozen.map_or(until, |(_, b)| b.max(until));
        self.frozen = Some((from, to));
    }

    /// Ends a freeze now: the clock runs on from the reading it stopped at.
    pub fn thaw(&mut self, now: u64) {
        self.rebase(now);
        self.frozen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_inverts(c: &NodeClock, local: u64) {
        let real = c.real_at(Instant::from_micros(local));
        assert!(
            c.local(real) >= Instant::from_micros(local),
            "{c:?} {local}"
        );
        assert!(
            real <= c.origin_real || c.local(real - 1) < Instant::from_micros(local),
            "{c:?} {local} -> {real}"
        );
    }

    #[test]
    fn real_at_inverts_local() {
        for drift in [-20_000, -1, 0, 7, 20_000] {
            let c = NodeClock::new(12_345, drift);
            for local in [12_345u64, 20_000, 1_000_003, 987_654_321] {
                assert_inverts(&c, local);
            }
        }
    }

    #[test]
    fn a_rate_change_keeps_the_reading_continuous() {
        let mut c = NodeClock::new(1_000, 50_000);
        let before = c.local(2_000_000);
        c.set_drift(2_000_000, -50_000);
        assert_eq!(c.local(2_000_000), before);
        assert_eq!(c.local(3_000_000).as_micros(), before.as_micros() + 950_000);
        for local in [before.as_micros(), before.as_micros() + 1, 9_999_999] {
            assert_inverts(&c, local);
        }
    }

    #[test]
    fn a_frozen_clock_stands_still_then_runs_on() {
        let mut c = NodeClock::new(0, 0);
        c.freeze(1_000_000, 4_000_000);
        assert_eq!(c.local(1_000_000).as_micros(), 1_000_000);
        assert_eq!(c.local(3_999_999).as_micros(), 1_000_000);
        assert!(c.is_frozen(2_000_000) && !c.is_frozen(4_000_000));
        assert_eq!(c.local(5_000_000).as_micros(), 2_000_000);
        assert_eq!(c.real_at(Instant::from_micros(1_500_000)), 4_500_000);
        for local in [1_000_000, 1_000_001, 1_700_000] {
            assert_inverts(&c, local);
        }
    }
}
