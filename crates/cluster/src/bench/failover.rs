//! Failover: SIGKILL of the leader's postmaster, timed from the kill to a new leader agreed
//! through SQL by every survivor. The kill lands at a random point of the heartbeat cycle; the
//! old leader is started again and the cluster settles before the next trial.

use super::probe::SqlProbe;
use super::{Jitter, Timing, Trials};
use crate::cluster::{signal, Cluster};
use crate::run::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn failover(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let mut probe = SqlProbe::new(c);
    let mut results = Trials::new("failover", csv);
    let mut jitter = Jitter::new();
    let patience = Duration::from_secs(30);
    for _ in 0..trials {
        let (leader, term, _) = probe.wait_for_leader(&all, Instant::now(), patience)?;
        // Settle (the restarted node catches up), then a random phase of the heartbeat.
        let settle = 3 * timing.heartbeat_ms as u64 + 300;
        std::thread::sleep(Duration::from_millis(
            settle + jitter.below(3 * timing.heartbeat_ms as u64),
        ));
        let pid = c
            .postmaster_pid(leader)
            .ok_or("the leader's postmaster is not running")?;
        probe.forget(leader);
        signal(pid, "KILL")?;
        let killed = Instant::now();
        let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
        let (new_leader, new_term, took) = probe.wait_for_leader(&survivors, killed, patience)?;
        results.record(
            took.as_secs_f64() * 1000.0,
            new_term.saturating_sub(term),
            &format!(
                "node {leader} killed in term {term}, node {new_leader} leads term {new_term}"
            ),
        );
        c.start(leader)?;
    }
    results.finish()
}
