//! Cold start: every server stopped cleanly, then all started at once; timed from the last
//! server accepting connections to a leader agreed through SQL by all of them. A server stopped
//! cleanly in the same boot waits only for what is left of its promises (`pg_leader.stopped`),
//! not one blind election timeout.

use super::probe::SqlProbe;
use super::{Timing, Trials};
use crate::cluster::Cluster;
use crate::run::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn cold_start(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let mut results = Trials::new("cold start", csv);
    let patience = Duration::from_secs(60);
    for _ in 0..trials {
        let mut probe = SqlProbe::new(c);
        probe.wait_for_leader(&all, Instant::now(), patience)?;
        drop(probe);
        for &n in &all {
            c.stop(n, "fast")?;
        }
        let started = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = all.iter().map(|&n| s.spawn(move || c.start(n))).collect();
            for h in handles {
                h.join().map_err(|_| "a start thread panicked")??;
            }
            Ok(())
        })?;
        let accepting = started.elapsed();
        let mut probe = SqlProbe::new(c);
        let (leader, term, took) = probe.wait_for_leader(&all, started, patience)?;
        // From the last server accepting connections: what the servers themselves take.
        let after_accepting = took.saturating_sub(accepting);
        results.record(
            after_accepting.as_secs_f64() * 1000.0,
            // Not counted: stopping a leader hands over, so terms also move while stopping.
            1,
            &format!(
                "servers accepting connections after {} ms; node {leader} leads term {term}",
                accepting.as_millis()
            ),
        );
    }
    results.finish()
}
