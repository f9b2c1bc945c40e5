//! The lease arithmetic: how long a leader may count on a promise, on its own clock.
//!
//! A follower that accepts a heartbeat promises to refuse votes to anyone else (and not to
//! campaign) for the `lease` duration the heartbeat asks for, counted on its own clock from the
//! moment it received it; its acknowledgement echoes that duration. The leader counts each
//! acknowledgement from the *send* time of the heartbeat it answers, for the promise it carried
//! minus a drift margin computed for that promise. Receipt is never earlier than sending, so the
//! follower keeps the promise at least until the leader stops counting on it, as long as clock
//! rates differ from real time by at most ρ and the margin is at least `2ρP / (1 + ρ)` for a
//! promise `P`: the leader's `P - margin` on a clock running at `1 - ρ` must end before the
//! follower's `P` on a clock running at `1 + ρ`.
//!
//! The margin is `P / 10` (rounded up), which covers ρ up to 5.26 %; real monotonic clocks of
//! one machine share one rate, and across machines NTP keeps them within 500 ppm.

use crate::types::Duration;

/// The clock-rate difference from real time the margin is built for, in parts per million.
pub const MAX_CLOCK_DRIFT_PPM: u64 = 50_000;

/// How much shorter than a promise `promise` the leader counts on it.
pub fn drift_margin(promise: Duration) -> Duration {
    Duration::from_micros(promise.as_micros().div_ceil(10))
}

/// How long past a heartbeat's send time the leader may count on the promise it asked for.
pub fn lease_for(promise: Duration) -> Duration {
    promise.saturating_sub(drift_margin(promise))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `margin >= 2ρP / (1 + ρ)`, in integers: `margin * (10^6 + ρ) >= 2ρP`.
    fn covers_drift(promise: Duration, ppm: u64) -> bool {
        let margin = drift_margin(promise).as_micros() as u128;
        margin * (1_000_000 + ppm as u128) >= 2 * ppm as u128 * promise.as_micros() as u128
    }

    #[test]
    fn the_margin_covers_five_percent_drift_for_every_promise() {
        for ms in [1, 3, 10, 150, 999, 1000, 1001, 10_000, 600_000, 1_200_000] {
            for extra_us in [0, 1, 7, 999] {
                let promise = Duration::from_millis(ms) + Duration::from_micros(extra_us);
                assert!(
                    covers_drift(promise, MAX_CLOCK_DRIFT_PPM),
                    "margin {} for promise {promise}",
                    drift_margin(promise)
                );
            }
        }
    }

    #[test]
    fn the_lease_is_the_promise_less_a_tenth() {
        assert_eq!(
            lease_for(Duration::from_millis(1000)),
            Duration::from_millis(900)
        );
        assert_eq!(
            lease_for(Duration::from_millis(10_000)),
            Duration::from_millis(9_000)
        );
        assert_eq!(lease_for(Duration::ZERO), Duration::ZERO);
    }
}
