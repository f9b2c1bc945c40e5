//! Losing the leader, timed from the fault to a new leader agreed through SQL by every
//! survivor: `failover` (a fault, below) and `handover` (`pg_ctl stop -m fast`, where the
//! leader's worker hands over before it exits). The fault lands at a random point of the
//! heartbeat cycle; the old leader is brought back and the cluster settles before the next
//! trial.
//!
//! The faults fall in two classes that are never reported together. A process crash (the
//! postmaster SIGKILLed, its worker outliving it by a moment) lets the worker hand over on its
//! way out: milliseconds. A host loss (every process SIGKILLed at once, or every datagram
//! dropped) leaves the others nothing but the end of the old leader's promise.

use super::probe::SqlProbe;
use super::{Jitter, Timing, Trials};
use crate::cluster::{children_of, pgbin, Cluster};
use crate::network;
use crate::run::{as_postgres, Result};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// How the leader is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A process crash: SIGKILL of the postmaster alone.
    PostmasterKill,
    /// A host loss: every process of the server SIGKILLed at once. They are all stopped
    /// (SIGSTOP) first, the postmaster first of all, so that none of them sees another die:
    /// `kill` signals one process after another.
    HostKill,
    /// A host loss: all of its pg_leader datagrams dropped, both ways (nftables).
    HostDrop,
}

impl Fault {
    pub fn parse(text: &str) -> Result<Fault> {
        match text {
            "postmaster-kill" => Ok(Fault::PostmasterKill),
            "host-kill" => Ok(Fault::HostKill),
            "host-drop" => Ok(Fault::HostDrop),
            other => Err(format!(
                "--fault is postmaster-kill, host-kill or host-drop, not {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::PostmasterKill => "postmaster-kill",
            Fault::HostKill => "host-kill",
            Fault::HostDrop => "host-drop",
        }
    }
}

/// Applies `fault` to `leader`.
pub fn inflict(c: &Cluster, leader: u32, fault: Fault) -> Result<()> {
    match fault {
        Fault::PostmasterKill => {
            let pid = c
                .postmaster_pid(leader)
                .ok_or("the leader's postmaster is not running")?;
            // The signal itself, not a `kill` process: the clock runs from the fault.
            // SAFETY: kill(2) with a pid read from the server's postmaster.pid.
            if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
                return Err(format!(
                    "kill -KILL {pid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(())
        }
        Fault::HostKill => {
            let pid = c
                .postmaster_pid(leader)
                .ok_or("the leader's postmaster is not running")?;
            let mut pids = vec![pid];
            pids.extend(children_of(pid)?);
            signal_all(&pids, "STOP")?;
            signal_all(&pids, "KILL")
        }
        Fault::HostDrop => {
            let rest: Vec<String> = c
                .ids()
                .filter(|n| *n != leader)
                .map(|n| n.to_string())
                .collect();
            network::partition(c, &format!("{leader}/{}", rest.join(","))).map(|_| ())
        }
    }
}

/// Undoes `fault`: starts the server again, or heals the network.
pub fn repair(c: &Cluster, leader: u32, fault: Fault) -> Result<()> {
    match fault {
        Fault::PostmasterKill | Fault::HostKill => c.start(leader),
        Fault::HostDrop => network::heal(),
    }
}

/// One `kill` for all of them, in the order given. A child that exited meanwhile makes `kill`
/// fail for that pid alone: not an error here.
fn signal_all(pids: &[i32], name: &str) -> Result<()> {
    std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(|p| p.to_string()))
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
        .map_err(|e| format!("could not run kill: {e}"))
}

pub fn failover(
    c: &Cluster,
    trials: u32,
    timing: Timing,
    csv: Option<PathBuf>,
    fault: Fault,
) -> Result<()> {
    let take_down = move |c: &Cluster, leader: u32| -> Result<Option<Child>> {
        inflict(c, leader, fault)?;
        Ok(None)
    };
    lose_the_leader(
        c,
        trials,
        timing,
        Trials::new(&format!("failover ({})", fault.name()), csv),
        fault.name(),
        take_down,
        move |c, leader| repair(c, leader, fault),
    )
}

pub fn handover(c: &Cluster, trials: u32, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    // pg_ctl is not waited for here: the clock runs from the moment it starts.
    let stop = |c: &Cluster, leader: u32| -> Result<Option<Child>> {
        let mut ctl = as_postgres(&format!("{}/pg_ctl", pgbin()));
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
        |c, leader| c.start(leader),
    )
}

/// The trials: `take_down` removes the leader, returning the process that does so when it must
/// be waited for once the new leader is agreed; `bring_back` undoes it.
fn lose_the_leader(
    c: &Cluster,
    trials: u32,
    timing: Timing,
    mut results: Trials,
    verb: &str,
    take_down: impl Fn(&Cluster, u32) -> Result<Option<Child>>,
    bring_back: impl Fn(&Cluster, u32) -> Result<()>,
) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let mut probe = SqlProbe::new(c);
    let mut jitter = Jitter::new();
    let patience = Duration::from_secs(30);
    for _ in 0..trials {
        // Settle (the restarted node catches up), then a random phase of the heartbeat. A leader
        // that changed meanwhile (a standby handing back to the primary that came back) is
        // waited for again: losing a leader in the middle of its handover times the handover.
        let settle = 3 * timing.heartbeat_ms as u64 + 300;
        let (leader, term) = loop {
            let (leader, term, _) = probe.wait_for_leader(&all, Instant::now(), patience)?;
            std::thread::sleep(Duration::from_millis(
                settle + jitter.below(3 * timing.heartbeat_ms as u64),
            ));
            let (now_leader, now_term, _) =
                probe.wait_for_leader(&all, Instant::now(), patience)?;
            if (now_leader, now_term) == (leader, term) {
                break (leader, term);
            }
        };
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
        bring_back(c, leader)?;
    }
    results.finish()
}
