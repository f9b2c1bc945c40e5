//! Many seeds at once, spread over threads, summed into one report.

use crate::faults::Exercised;
use crate::scenario::{run_seed_exercising, Options};
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
    /// Seeds that ended with a primary of the newest timeline among the voters, and the
    /// longest time from the end of the faults until it led.
    pub preferred_checked: u64,
    pub preferred_us_max: u64,
    pub membership_changes: u64,
    pub configurations: u64,
    /// Per `Exercised` fault, the seeds that reached it (violating seeds included).
    pub exercised: [u64; Exercised::ALL.len()],
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
        self.preferred_checked += other.preferred_checked;
        self.preferred_us_max = self.preferred_us_max.max(other.preferred_us_max);
        self.membership_changes += other.membership_changes;
        self.configurations += other.configurations;
        self.announced_crashes += other.announced_crashes;
        self.announced_failover_us
            .extend(other.announced_failover_us);
        for (mine, theirs) in self.exercised.iter_mut().zip(other.exercised) {
            *mine += theirs;
        }
    }

    fn count_exercised(&mut self, bits: u32) {
        for (count, fault) in self.exercised.iter_mut().zip(Exercised::ALL) {
            if bits & fault.bit() != 0 {
                *count += 1;
            }
        }
    }

    /// Violations grouped by their text with the numbers taken out, most frequent first, each
    /// with its seeds in order.
    pub fn violation_kinds(&self) -> Vec<(String, Vec<u64>)> {
        let mut kinds: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        for (seed, v) in &self.violations {
            let kind: String = v
                .split(|c: char| c.is_ascii_digit())
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("#");
            kinds.entry(kind).or_default().push(*seed);
        }
        let mut kinds: Vec<(String, Vec<u64>)> = kinds.into_iter().collect();
        kinds.sort_by_key(|(_, seeds)| std::cmp::Reverse(seeds.len()));
        kinds
    }

    /// The share of seeds that reached `fault`, in percent.
    pub fn share(&self, fault: Exercised) -> f64 {
        100.0 * self.exercised[fault as usize] as f64 / self.seeds.max(1) as f64
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
        println!(
            "primary leads after faults stop  {} seeds with a primary among the voters, worst {:.1} ms",
            self.preferred_checked,
            ms(self.preferred_us_max)
        );
        println!("seeds exercising each fault:");
        for fault in Exercised::ALL {
            println!("  {:>6.2}%  {}", self.share(fault), fault.name());
        }
        self.print_violations(1000);
    }

    /// Violations by kind with their first seeds, then the first `max` one by one.
    pub fn print_violations(&self, max: usize) {
        for (kind, seeds) in self.violation_kinds() {
            let first: Vec<String> = seeds.iter().take(8).map(|s| s.to_string()).collect();
            println!(
                "VIOLATIONS {:>7} x {kind}  (seeds {}{})",
                seeds.len(),
                first.join(" "),
                if seeds.len() > 8 { " ..." } else { "" }
            );
        }
        for (seed, v) in self.violations.iter().take(max) {
            println!("VIOLATION seed {seed}: {v}");
        }
    }
}

/// The exit status of a soak: failure when any seed violated an invariant.
pub fn exit_code(violations: usize) -> std::process::ExitCode {
    if violations == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Prints one replayed seed's outcome and returns the exit status.
pub fn replayed<R: std::fmt::Debug>(
    seed: u64,
    outcome: Result<R, String>,
) -> std::process::ExitCode {
    match outcome {
        Ok(ref report) => println!("seed {seed}: no violation: {report:?}"),
        Err(ref v) => println!("seed {seed}: VIOLATION: {v}"),
    }
    exit_code(usize::from(outcome.is_err()))
}

/// Runs `each(seed, &mut sum)` for seeds `first..first + count` on `threads` threads, each
/// thread into its own sum, and merges those with `merge`.
pub fn over_threads<S: Default + Send>(
    first: u64,
    count: u64,
    threads: usize,
    each: impl Fn(u64, &mut S) + Sync,
    merge: impl Fn(&mut S, S) + Sync,
) -> S {
    let next = AtomicU64::new(first);
    let total = Mutex::new(S::default());
    let end = first + count;
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut local = S::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    each(seed, &mut local);
                }
                let mut total = total.lock().expect("no thread panics while holding it");
                merge(&mut total, local);
            });
        }
    });
    total.into_inner().expect("threads are done")
}

/// Runs seeds `first..first + count` on `threads` threads.
pub fn run_seeds(first: u64, count: u64, threads: usize, options: &Options) -> Summary {
    let each = |seed: u64, local: &mut Summary| {
        local.seeds += 1;
        match run_seed_exercising(seed, options) {
            Ok(r) => {
                local.count_exercised(r.exercised);
                local.faults += r.faults;
                local.events += r.events;
                local.elections += r.elections;
                local.multi_round_elections += r.multi_round_elections;
                local.recovery_us_max = local.recovery_us_max.max(r.recovery_us);
                if let Some(p) = r.preferred_us {
                    local.preferred_checked += 1;
                    local.preferred_us_max = local.preferred_us_max.max(p);
                }
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
            Err((v, exercised)) => {
                local.count_exercised(exercised);
                local.violations.push((seed, v));
            }
        }
    };
    let mut summary = over_threads(first, count, threads, each, Summary::merge);
    summary.violations.sort();
    summary
}
