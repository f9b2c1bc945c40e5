//! Many seeds at once, spread over threads, summed into one report.

use crate::scenario::{run_seed, Options};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub faults: u64,
    pub events: u64,
    pub elections: u64,
    pub multi_round_elections: u64,
    /// (seed, violation) for every seed that failed.
    pub violations: Vec<(u64, String)>,
    pub failover_us: Vec<u64>,
    pub failover_split: u64,
    pub recovery_us_max: u64,
    pub membership_changes: u64,
    pub configurations: u64,
    pub announced_crashes: u64,
    pub announced_failover_us: Vec<u64>,
}

impl Summary {
    pub fn percentile(sorted: &[u64], p: f64) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn merge(&mut self, other: Summary) {
        self.seeds += other.seeds;
        self.faults += other.faults;
        self.events += other.events;
        self.elections += other.elections;
        self.multi_round_elections += other.multi_round_elections;
        self.violations.extend(other.violations);
        self.failover_us.extend(other.failover_us);
        self.failover_split += other.failover_split;
        self.recovery_us_max = self.recovery_us_max.max(other.recovery_us_max);
        self.membership_changes += other.membership_changes;
        self.configurations += other.configurations;
        self.announced_crashes += other.announced_crashes;
        self.announced_failover_us
            .extend(other.announced_failover_us);
    }

    pub fn print(&mut self, seconds: f64) {
        self.failover_us.sort_unstable();
        self.announced_failover_us.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let failovers = self.failover_us.len().max(1) as f64;
        println!("seeds                 {}", self.seeds);
        println!(
            "seeds per second      {:.0}",
            self.seeds as f64 / seconds.max(1e-9)
        );
        println!("simulated events      {}", self.events);
        println!("faults injected       {}", self.faults);
        println!("elections             {}", self.elections);
        println!(
            "membership changes    {} accepted, {} configuration entries stored",
            self.membership_changes, self.configurations
        );
        println!("violations            {}", self.violations.len());
        println!(
            "split votes (failover) {:.2}% ({} of {} failovers needed more than one round)",
            100.0 * self.failover_split as f64 / failovers,
            self.failover_split,
            self.failover_us.len()
        );
        println!(
            "multi-round elections {:.2}% of all elections (faults included)",
            100.0 * self.multi_round_elections as f64 / self.elections.max(1) as f64
        );
        println!(
            "failover (silent leader crash -> new lease)  median {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            ms(Self::percentile(&self.failover_us, 50.0)),
            ms(Self::percentile(&self.failover_us, 90.0)),
            ms(Self::percentile(&self.failover_us, 99.0)),
            ms(self.failover_us.last().copied().unwrap_or(0))
        );
        println!(
            "announced crashes     {} (the host said so; the others were silent)",
            self.announced_crashes
        );
        println!(
            "failover (leader's host announces its death -> new lease)  median {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} failovers)",
            ms(Self::percentile(&self.announced_failover_us, 50.0)),
            ms(Self::percentile(&self.announced_failover_us, 90.0)),
            ms(Self::percentile(&self.announced_failover_us, 99.0)),
            ms(self.announced_failover_us.last().copied().unwrap_or(0)),
            self.announced_failover_us.len()
        );
        println!(
            "worst recovery after faults stop  {:.1} ms",
            ms(self.recovery_us_max)
        );
        for (seed, v) in self.violations.iter().take(20) {
            println!("VIOLATION seed {seed}: {v}");
        }
    }
}

/// Runs seeds `first..first + count` on `threads` threads.
pub fn run_seeds(first: u64, count: u64, threads: usize, options: &Options) -> Summary {
    let next = AtomicU64::new(first);
    let total = Mutex::new(Summary::default());
    let end = first + count;
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut local = Summary::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    local.seeds += 1;
                    match run_seed(seed, options) {
                        Ok(r) => {
                            local.faults += r.faults;
                            local.events += r.events;
                            local.elections += r.elections;
                            local.multi_round_elections += r.multi_round_elections;
                            local.recovery_us_max = local.recovery_us_max.max(r.recovery_us);
                            local.membership_changes += r.membership_changes;
                            local.configurations += r.configurations;
                            local.announced_crashes += r.announced_crashes;
                            local.announced_failover_us.extend(r.announced_failover_us);
                            if let Some(f) = r.failover_us {
                                local.failover_us.push(f);
                                if r.failover_rounds.unwrap_or(1) > 1 {
                                    local.failover_split += 1;
                                }
                            }
                        }
                        Err(v) => local.violations.push((seed, v)),
                    }
                }
                total
                    .lock()
                    .expect("no thread panics while holding it")
                    .merge(local);
            });
        }
    });
    let mut summary = total.into_inner().expect("threads are done");
    summary.violations.sort();
    summary
}
