//! Randomness is injected: the core draws from a `RandomSource` it is given, so a run replays
//! exactly from its seed.

/// What the core needs from a random number generator.
pub trait RandomSource: Send {
    fn next_u64(&mut self) -> u64;

    /// A number drawn uniformly from `[low, high)`; `low` when the range is empty.
    fn uniform(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low;
        // Rejection sampling keeps the draw exactly uniform.
        let zone = u64::MAX - (u64::MAX % span);
        loop {
            let x = self.next_u64();
            if x < zone {
                return low + x % span;
            }
        }
    }
}

/// SplitMix64: tiny, fast and good enough for timeouts and simulations. Not for secrets.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range_and_replays() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..10_000 {
            let x = a.uniform(1000, 2000);
            assert!((1000..2000).contains(&x));
            assert_eq!(x, b.uniform(1000, 2000));
        }
        assert_eq!(a.uniform(5, 5), 5);
    }
}
