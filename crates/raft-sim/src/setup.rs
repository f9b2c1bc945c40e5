//! How a simulated cluster is built: each server's timing settings, whether it may lead, its
//! clock's drift, the lease margin, and the adversarial mode's randomness.

use pg_leader_raft::{Duration, RandomSource, SplitMix64};

/// A server's settings: `pg_leader.heartbeat_interval`, `pg_leader.election_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat: Duration,
    pub election_timeout: Duration,
}

/// How the cluster is built: per server its timing, whether it may lead, its clock's drift.
#[derive(Clone, Debug)]
pub struct Setup {
    pub voters: usize,
    pub timings: Vec<Timing>,
    pub can_lead: Vec<bool>,
    pub drifts: Vec<i64>,
    /// The leader counts on a promise P for P - P/margin_divisor (`Config::lease_margin_divisor`):
    /// 10, the product's, unless a test shows that a smaller margin fails.
    pub margin_divisor: u64,
    /// Election timers draw their minimum half the time; network delays sit at their edges.
    pub adversarial: bool,
    /// Suspends stop the node's clock (`CLOCK_MONOTONIC`) instead of letting it run on.
    pub monotonic_suspend: bool,
}

impl Setup {
    /// Every server with the same timing, able to lead, its clock `drifts[i]` off.
    pub fn uniform(heartbeat: Duration, election_timeout: Duration, drifts: &[i64]) -> Setup {
        let timing = Timing {
            heartbeat,
            election_timeout,
        };
        Setup {
            voters: drifts.len(),
            timings: vec![timing; drifts.len()],
            can_lead: vec![true; drifts.len()],
            drifts: drifts.to_vec(),
            margin_divisor: 10,
            adversarial: false,
            monotonic_suspend: false,
        }
    }
}

/// The core's randomness in adversarial runs: every other draw is the minimum, so election
/// timers fire at exactly `T`, where promises and leases are tightest.
pub(crate) struct EdgeRandom(pub(crate) SplitMix64);

impl RandomSource for EdgeRandom {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn uniform(&mut self, low: u64, high: u64) -> u64 {
        if self.0.next_u64().is_multiple_of(2) {
            low
        } else {
            self.0.uniform(low, high)
        }
    }
}
