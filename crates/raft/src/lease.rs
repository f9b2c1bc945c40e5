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
//! The margin is `P / Config::lease_margin_divisor` (rounded up), `P / 10` by default, which
//! covers ρ up to 5.26 %; real monotonic clocks of one machine share one rate, and across
//! machines NTP keeps them within 500 ppm.

use crate::types::Duration;

/// The clock-rate difference from real time the default margin is built for, in parts per
/// million.
pub const MAX_CLOCK_DRIFT_PPM: u64 = 50_000;

/// The default `Config::lease_margin_divisor`: a margin of a tenth of the promise.
pub const DEFAULT_MARGIN_DIVISOR: u64 = 10;

/// How much shorter than a promise `promise` the leader counts on it: `promise / divisor`,
/// rounded up.
pub fn drift_margin(promise: Duration, divisor: u64) -> Duration {
    Duration::from_micros(promise.as_micros().div_ceil(divisor.max(1)))
}

/// How long past a heartbeat's send time the leader may count on the promise it asked for.
pub fn lease_for(promise: Duration, divisor: u64) -> Duration {
    promise.saturating_sub(drift_margin(promise, divisor))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `margin >= 2ρP / (1 + ρ)`, in integers: `margin * (10^6 + ρ) >= 2ρP`.
    fn covers_drift(promise: Duration, ppm: u64) -> bool {
        let margin = drift_margin(promise, DEFAULT_MARGIN_DIVISOR).as_micros() as u128;
        margin * (1_000_000 + ppm as u128) >= 2 * ppm as u128 * promise.as_micros() as u128
    }

    #[test]
    fn the_default_margin_covers_five_percent_drift_for_every_promise() {
        for ms in [1, 3, 10, 150, 999, 1000, 1001, 10_000, 600_000, 1_200_000] {
            for extra_us in [0, 1, 7, 999] {
                let promise = Duration::from_millis(ms) + Duration::from_micros(extra_us);
                assert!(
                    covers_drift(promise, MAX_CLOCK_DRIFT_PPM),
                    "margin {} for promise {promise}",
                    drift_margin(promise, DEFAULT_MARGIN_DIVISOR)
                );
            }
        }
    }

    #[test]
    fn the_lease_is_the_promise_less_the_margin() {
        let ms = Duration::from_millis;
        assert_eq!(lease_for(ms(1000), 10), ms(900));
        assert_eq!(lease_for(ms(10_000), 10), ms(9_000));
        assert_eq!(lease_for(ms(1100), 11), ms(1000));
        assert_eq!(lease_for(Duration::ZERO, 10), Duration::ZERO);
        assert_eq!(
            drift_margin(Duration::from_micros(11), 10),
            Duration::from_micros(2)
        );
    }
}
