//! Each simulated node has its own monotonic clock: its own origin and a rate that differs from
//! real time by up to the drift the lease model allows.

use pg_leader_raft::Instant;

#[derive(Clone, Copy, Debug)]
pub struct NodeClock {
    /// The node's clock reading at real time zero, in microseconds.
    pub offset: u64,
    /// Parts per million faster (positive) or slower (negative) than real time.
    pub drift_ppm: i64,
}

const MILLION: i128 = 1_000_000;

impl NodeClock {
    /// The node's reading at real time `real` (microseconds).
    pub fn local(&self, real: u64) -> Instant {
        let scaled = real as i128 * (MILLION + self.drift_ppm as i128) / MILLION;
        Instant::from_micros(self.offset + scaled as u64)
    }

    /// The first real time at which the node's clock reads at least `local`.
    pub fn real_at(&self, local: Instant) -> u64 {
        let Some(elapsed) = local.as_micros().checked_sub(self.offset) else {
            return 0;
        };
        let rate = MILLION + self.drift_ppm as i128;
        let mut real = (elapsed as i128 * MILLION / rate) as u64;
        // Integer division may land one step short; walk forward to the exact first moment.
        while self.local(real) < local {
            real += 1;
        }
        real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_at_inverts_local() {
        for drift in [-20_000, -1, 0, 7, 20_000] {
            let c = NodeClock {
                offset: 12_345,
                drift_ppm: drift,
            };
            for local in [12_345u64, 20_000, 1_000_003, 987_654_321] {
                let real = c.real_at(Instant::from_micros(local));
                assert!(c.local(real) >= Instant::from_micros(local));
                assert!(real == 0 || c.local(real - 1) < Instant::from_micros(local));
            }
        }
    }
}
