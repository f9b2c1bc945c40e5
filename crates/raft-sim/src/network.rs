//! The simulated network: loss, duplication, delay (hence reordering) and partitions, which may
//! be symmetric, one-way or partial (a node that reaches some peers but not others).

use pg_leader_raft::{RandomSource, SplitMix64};

#[derive(Clone, Debug)]
pub struct Network {
    /// `blocked[from][to]`: packets from `from` to `to` are dropped on arrival.
    blocked: Vec<Vec<bool>>,
    pub drop_per_million: u64,
    pub duplicate_per_million: u64,
    /// Delay bounds in microseconds; a few packets take up to `slow_delay`.
    pub min_delay: u64,
    pub max_delay: u64,
    pub slow_delay: u64,
    pub slow_per_million: u64,
    /// Some packets arrive more than an election timeout late: in `[late_min, late_max)`.
    pub late_per_million: u64,
    pub late_min: u64,
    pub late_max: u64,
    /// Adversarial delays: each drawn at one end of its range.
    pub at_edges: bool,
}

impl Network {
    pub fn new(nodes: usize) -> Network {
        Network {
            blocked: vec![vec![false; nodes]; nodes],
            drop_per_million: 0,
            duplicate_per_million: 0,
            min_delay: 50,
            max_delay: 2_000,
            slow_delay: 40_000,
            slow_per_million: 0,
            late_per_million: 0,
            late_min: 1_000_000,
            late_max: 3_000_000,
            at_edges: false,
        }
    }

    /// Loopback-like: no loss, sub-millisecond delays.
    pub fn calm(&mut self) {
        self.drop_per_million = 0;
        self.duplicate_per_million = 0;
        self.slow_per_million = 0;
        self.late_per_million = 0;
        self.heal();
    }

    pub fn heal(&mut self) {
        for row in &mut self.blocked {
            row.iter_mut().for_each(|b| *b = false);
        }
    }

    pub fn block(&mut self, from: usize, to: usize) {
        self.blocked[from][to] = true;
    }

    /// Cuts `group` off from everyone else, both ways.
    pub fn isolate(&mut self, group: &[usize]) {
        let n = self.blocked.len();
        for &a in group {
            for b in (0..n).filter(|b| !group.contains(b)) {
                self.blocked[a][b] = true;
                self.blocked[b][a] = true;
            }
        }
    }

    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from][to]
    }

    /// The delays at which copies of one packet arrive: none when lost, two when duplicated.
    /// `control` packets (votes, TimeoutNow) are late four times as often: they are few, and
    /// their lateness is what the promises must survive.
    pub fn delays(&self, rng: &mut SplitMix64, control: bool) -> Vec<u64> {
        let late = self.late_per_million * if control { 4 } else { 1 };
        if rng.uniform(0, 1_000_000) < self.drop_per_million {
            return Vec::new();
        }
        let copies = if rng.uniform(0, 1_000_000) < self.duplicate_per_million {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let (low, high) = if rng.uniform(0, 1_000_000) < late {
                    (self.late_min, self.late_max)
                } else if rng.uniform(0, 1_000_000) < self.slow_per_million {
                    (self.max_delay, self.slow_delay)
                } else {
                    (self.min_delay, self.max_delay)
                };
                match (self.at_edges, rng.uniform(0, 2)) {
                    (false, _) => rng.uniform(low, high),
                    (true, 0) => low,
                    (true, _) => high,
                }
            })
            .collect()
    }
}
