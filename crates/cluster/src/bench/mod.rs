//! `pg_leader-cluster bench ...`: the measurements behind bench/run and the README figures.
//! Each benchmark prints one line per trial and a summary, and can write its trials as CSV for
//! the report (`--csv FILE`).

mod cold_start;
mod etcd;
mod failover;
mod idle;
mod notify;
mod primary_return;
mod primary_start;
pub mod probe;

use crate::run::Result;
use std::fmt::Write as _;
use std::path::PathBuf;

pub use cold_start::cold_start;
pub use etcd::etcd_failover;
pub use failover::{failover, handover, Fault};
pub use idle::idle;
pub use notify::notify_http;
pub use primary_return::primary_return;
pub use primary_start::primary_start;

/// Election timing shared by both systems under test.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub heartbeat_ms: u32,
    pub election_timeout_ms: u32,
}

impl Timing {
    /// The settings that give a pg_leader cluster this timing.
    pub fn settings(&self) -> Vec<String> {
        vec![
            format!("pg_leader.heartbeat_interval = '{}ms'", self.heartbeat_ms),
            format!(
                "pg_leader.election_timeout = '{}ms'",
                self.election_timeout_ms
            ),
        ]
    }
}

/// One timed trial: how long it took and how many election rounds (terms) it used.
#[derive(Clone, Copy, Debug)]
pub struct Trial {
    pub ms: f64,
    pub rounds: u64,
}

/// The trials of one benchmark, printed as they come and summarised at the end.
pub struct Trials {
    what: String,
    trials: Vec<Trial>,
    csv: Option<PathBuf>,
}

impl Trials {
    pub fn new(what: &str, csv: Option<PathBuf>) -> Trials {
        Trials {
            what: what.to_string(),
            trials: Vec::new(),
            csv,
        }
    }

    pub fn record(&mut self, ms: f64, rounds: u64, detail: &str) {
        let n = self.trials.len() + 1;
        println!(
            "{} trial {n}: {ms:.1} ms, {rounds} round(s); {detail}",
            self.what
        );
        self.trials.push(Trial { ms, rounds });
    }

    /// Prints the summary and writes the CSV when asked.
    pub fn finish(self) -> Result<()> {
        if self.trials.is_empty() {
            return Err(format!("{}: no trial finished", self.what));
        }
        let mut ms: Vec<f64> = self.trials.iter().map(|t| t.ms).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let more_rounds = self.trials.iter().filter(|t| t.rounds > 1).count();
        println!(
            "{} over {} trials: min {:.0} ms, median {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; more than one round: {} ({:.1} %)",
            self.what,
            ms.len(),
            ms[0],
            percentile(&ms, 50.0),
            percentile(&ms, 90.0),
            percentile(&ms, 99.0),
            ms[ms.len() - 1],
            more_rounds,
            100.0 * more_rounds as f64 / ms.len() as f64
        );
        if let Some(path) = &self.csv {
            let mut text = String::from("trial,ms,rounds\n");
            for (i, t) in self.trials.iter().enumerate() {
                let _ = writeln!(text, "{},{:.3},{}", i + 1, t.ms, t.rounds);
            }
            std::fs::write(path, text)
                .map_err(|e| format!("could not write \"{}\": {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// A dependency-free pseudo-random spread of waits, seeded from the process id: the moment a
/// fault lands must not be in step with the heartbeat.
pub struct Jitter(u64);

impl Jitter {
    pub fn new() -> Jitter {
        Jitter(std::process::id() as u64 | 1)
    }

    /// A value in [0, bound).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&v, 99.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
    }
}
