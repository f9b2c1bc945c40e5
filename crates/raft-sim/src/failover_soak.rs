//! Many failover seeds at once, spread over threads, summed into one report.

use crate::failover::{
    run_failover_seed_exercising, FailoverFault, FailoverOptions, FailoverReport,
};
use crate::soak::{over_threads, Summary};

#[derive(Clone, Debug, Default)]
pub struct FailoverSummary {
    pub seeds: u64,
    pub faults: u64,
    /// (seed, violation) for every seed that failed.
    pub violations: Vec<(u64, String)>,
    pub promotions: u64,
    pub promotions_interrupted: u64,
    pub rejoins: u64,
    pub standby_rewinds: u64,
    /// (d) acknowledged commits lost: in the fault phases, in the measured failovers; seeds
    /// with any loss in each; the most in one seed.
    pub lost_in_faults: u64,
    pub seeds_lost_in_faults: u64,
    pub lost_in_failover: u64,
    pub seeds_lost_in_failover: u64,
    pub lost_max: u64,
    /// Commits acknowledged on a superseded timeline, and the seeds with any.
    pub superseded: u64,
    pub seeds_superseded: u64,
    pub converged_us_max: u64,
    pub failover_us: Vec<u64>,
    pub rejoin_us: Vec<u64>,
    pub exercised: [u64; FailoverFault::ALL.len()],
}

impl FailoverSummary {
    fn merge(&mut self, o: FailoverSummary) {
        self.seeds += o.seeds;
        self.faults += o.faults;
        self.violations.extend(o.violations);
        self.promotions += o.promotions;
        self.promotions_interrupted += o.promotions_interrupted;
        self.rejoins += o.rejoins;
        self.standby_rewinds += o.standby_rewinds;
        self.lost_in_faults += o.lost_in_faults;
        self.seeds_lost_in_faults += o.seeds_lost_in_faults;
        self.lost_in_failover += o.lost_in_failover;
        self.seeds_lost_in_failover += o.seeds_lost_in_failover;
        self.lost_max = self.lost_max.max(o.lost_max);
        self.superseded += o.superseded;
        self.seeds_superseded += o.seeds_superseded;
        self.converged_us_max = self.converged_us_max.max(o.converged_us_max);
        self.failover_us.extend(o.failover_us);
        self.rejoin_us.extend(o.rejoin_us);
        for (mine, theirs) in self.exercised.iter_mut().zip(o.exercised) {
            *mine += theirs;
        }
    }

    /// One seed that reached the faults in `exercised`.
    fn reached(exercised: u32) -> FailoverSummary {
        let mut one = FailoverSummary {
            seeds: 1,
            ..FailoverSummary::default()
        };
        for (count, fault) in one.exercised.iter_mut().zip(FailoverFault::ALL) {
            *count = u64::from(exercised & fault.bit() != 0);
        }
        one
    }

    /// One seed that ran without a violation.
    fn of(r: &FailoverReport) -> FailoverSummary {
        FailoverSummary {
            faults: r.faults,
            promotions: r.promotions,
            promotions_interrupted: r.promotions_interrupted,
            rejoins: r.rejoins,
            standby_rewinds: r.standby_rewinds,
            lost_in_faults: r.lost_in_faults,
            seeds_lost_in_faults: u64::from(r.lost_in_faults > 0),
            lost_in_failover: r.lost_in_failover,
            seeds_lost_in_failover: u64::from(r.lost_in_failover > 0),
            lost_max: r.lost_in_faults + r.lost_in_failover,
            superseded: r.superseded,
            seeds_superseded: u64::from(r.superseded > 0),
            converged_us_max: r.converged_us,
            failover_us: vec![r.failover_us],
            rejoin_us: vec![r.rejoin_us],
            ..FailoverSummary::reached(r.exercised)
        }
    }

    /// The share of seeds that reached `fault`, in percent.
    pub fn share(&self, fault: FailoverFault) -> f64 {
        100.0 * self.exercised[fault as usize] as f64 / self.seeds.max(1) as f64
    }

    pub fn print(&mut self, seconds: f64) {
        self.failover_us.sort_unstable();
        self.rejoin_us.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let figures = |v: &[u64]| {
            format!(
                "median {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                ms(Summary::percentile(v, 50.0)),
                ms(Summary::percentile(v, 90.0)),
                ms(Summary::percentile(v, 99.0)),
                ms(v.last().copied().unwrap_or(0))
            )
        };
        println!("seeds                 {}", self.seeds);
        println!(
            "seeds per second      {:.0}",
            self.seeds as f64 / seconds.max(1e-9)
        );
        println!("faults injected       {}", self.faults);
        println!("violations            {}", self.violations.len());
        println!(
            "promotions            {} ({} with a crash while they ran)",
            self.promotions, self.promotions_interrupted
        );
        println!(
            "rebuilds              {} former primaries, {} standbys past the fork point",
            self.rejoins, self.standby_rewinds
        );
        println!(
            "lost acknowledged commits (asynchronous replication): {} in fault phases ({} seeds), {} in calm failovers ({} seeds), at most {} in one seed",
            self.lost_in_faults,
            self.seeds_lost_in_faults,
            self.lost_in_failover,
            self.seeds_lost_in_failover,
            self.lost_max
        );
        println!(
            "  of which acknowledged on a timeline a promotion had already superseded: {} ({} seeds)",
            self.superseded, self.seeds_superseded
        );
        println!(
            "worst time to one primary, leading, all others streaming from it, after faults stop  {:.1} ms",
            ms(self.converged_us_max)
        );
        println!(
            "calm failover (primary's server killed -> new primary acknowledging)  {}",
            figures(&self.failover_us)
        );
        println!(
            "old primary back -> streaming from the new one  {}",
            figures(&self.rejoin_us)
        );
        println!("seeds exercising each fault:");
        for fault in FailoverFault::ALL {
            println!("  {:>6.2}%  {}", self.share(fault), fault.name());
        }
        Summary {
            violations: self.violations.clone(),
            ..Summary::default()
        }
        .print_violations(200);
    }
}

/// Runs failover seeds `first..first + count` on `threads` threads.
pub fn run_failover_seeds(
    first: u64,
    count: u64,
    threads: usize,
    options: &FailoverOptions,
) -> FailoverSummary {
    let each = |seed: u64, local: &mut FailoverSummary| {
        let one = match run_failover_seed_exercising(seed, options) {
            Ok(r) => FailoverSummary::of(&r),
            Err((v, exercised)) => FailoverSummary {
                violations: vec![(seed, v)],
                ..FailoverSummary::reached(exercised)
            },
        };
        local.merge(one);
    };
    let mut summary = over_threads(first, count, threads, each, FailoverSummary::merge);
    summary.violations.sort();
    summary
}
