//! Losing the leader, timed from the fault to a new leader agreed through SQL by every
//! survivor: `failover` (SIGKILL of its postmaster) and `handover` (`pg_ctl stop -m fast`, where
//! the leader's worker hands over before it exits). The fault lands at a random point of the
//! heartbeat cycle; the old leader is started again and the cluster settles before the next
//! trial.

use super::probe::SqlProbe;
use super::{Jitter, Timing, Trials};
use crate::cluster::{signal, Cluster, PGBIN};
use crate::run::{as_postgres, Result};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub fn failover(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    let kill = |c: &Cluster, leader: u32| -> Result<Option<Child>> {
        let pid = c
            .postmaster_pid(leader)
            .ok_or("the leader's postmaster is not running")?;
        signal(pid, "KILL")?;
        Ok(None)
    };
    lose_the_leader(
        c,
        trials,
        timing,
        Trials::new("failover", csv),
        "killed",
        kill,
    )
}

pub fn handover(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    // pg_ctl is not waited for here: the clock runs from the moment it starts.
    let stop = |c: &Cluster, leader: u32| -> Result<Option<Child>> {
        let mut ctl = as_postgres(&format!("{PGBIN}/pg_ctl"));
        ctl.args(["-D", &c.data_dir(leader).to_string_lossy()]);
        ctl.args(["-m", "fast", "-w", "-t", "30", "stop"]);
        let child = ctl
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not run pg_ctl: {e}"))?;
        Ok(Some(child))
    };
    lose_the_leader(
        c,
        trials,
        timing,
        Trials::new("handover", csv),
        "stopped",
        stop,
    )
}

/// The trials: `take_down` removes the leader, returning the process that does so when it must
/// be waited for once the new leader is agreed.
fn lose_the_leader(
    c: &Cluster,
    trials: u32,
    timing: Timing,
    mut results: Trials,
    verb: &str,
    take_down: impl Fn(&Cluster, u32) -> Result<Option<Child>>,
) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let mut probe = SqlProbe::new(c);
    let mut jitter = Jitter::new();
    let patience = Duration::from_secs(30);
    for _ in 0..trials {
        let (leader, term, _) = probe.wait_for_leader(&all, Instant::now(), patience)?;
        // Settle (the restarted node catches up), then a random phase of the heartbeat.
        let settle = 3 * timing.heartbeat_ms as u64 + 300;
        std::thread::sleep(Duration::from_millis(
            settle + jitter.below(3 * timing.heartbeat_ms as u64),
        ));
        probe.forget(leader);
        let fault = Instant::now();
        let process = take_down(c, leader)?;
        let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
        let outcome = probe.wait_for_leader(&survivors, fault, patience);
        if let Some(mut child) = process {
            let status = child
                .wait()
                .map_err(|e| format!("node {leader} did not stop: {e}"))?;
            if !status.success() {
                return Err(format!("stopping node {leader} failed: {status}"));
            }
        }
        let (new_leader, new_term, took) = outcome?;
        results.record(
            took.as_secs_f64() * 1000.0,
            new_term.saturating_sub(term),
            &format!(
                "node {leader} {verb} in term {term}, node {new_leader} leads term {new_term}"
            ),
        );
        c.start(leader)?;
    }
    results.finish()
}
