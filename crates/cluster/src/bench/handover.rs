//! Planned stop: `pg_ctl stop -m fast` on the leader, timed from the command to a new leader
//! agreed through SQL by every survivor. The leader's worker hands over before it exits, so
//! no election timeout is waited out.

use super::probe::SqlProbe;
use super::{Timing, Trials};
use crate::cluster::{Cluster, PGBIN};
use crate::run::{as_postgres, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn handover(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let mut probe = SqlProbe::new(c);
    let mut results = Trials::new("handover", csv);
    let patience = Duration::from_secs(30);
    for _ in 0..trials {
        let (leader, term, _) = probe.wait_for_leader(&all, Instant::now(), patience)?;
        std::thread::sleep(Duration::from_millis(3 * timing.heartbeat_ms as u64 + 300));
        probe.forget(leader);
        let mut ctl = as_postgres(&format!("{PGBIN}/pg_ctl"));
        ctl.args(["-D", &c.data_dir(leader).to_string_lossy()]);
        ctl.args(["-m", "fast", "-w", "-t", "30", "stop"]);
        let stopped = Instant::now();
        let mut child = ctl
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("could not run pg_ctl: {e}"))?;
        let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
        let outcome = probe.wait_for_leader(&survivors, stopped, patience);
        let status = child
            .wait()
            .map_err(|e| format!("pg_ctl did not finish: {e}"))?;
        if !status.success() {
            return Err(format!("pg_ctl stop on node {leader} failed: {status}"));
        }
        let (new_leader, new_term, took) = outcome?;
        results.record(
            took.as_secs_f64() * 1000.0,
            new_term.saturating_sub(term),
            &format!(
                "node {leader} stopped in term {term}, node {new_leader} leads term {new_term}"
            ),
        );
        c.start(leader)?;
    }
    results.finish()
}
