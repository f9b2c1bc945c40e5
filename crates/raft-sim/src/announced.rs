//! Crashes the host announces: the node's PostgreSQL dies (or crash-restarts) while its worker
//! lives a moment longer, long enough to depart (`Raft::depart`): a leader hands over through
//! TimeoutNow, a follower tells the leader it is leaving. The worker gets `HANDOVER_BUDGET` of
//! real time for it, then dies; a silent crash (the host, its network, or the worker itself
//! SIGKILLed) gets nothing. The simulator draws one or the other for each crash, and checks
//! every invariant through the departure as after any other step.

use crate::checker::Violation;
use crate::cluster::Cluster;
use crate::scenario::Options;
use pg_leader_raft::{Departure, RandomSource};

/// The real time a departing worker may spend before it is gone (the extension's budget).
pub const HANDOVER_BUDGET_US: u64 = 5_000;

impl Cluster {
    /// Node `i`'s host announces its death: it departs, then crashes. A leader whose target must
    /// first catch up goes on handling what reaches it until its lease is given up (TimeoutNow
    /// leaves at that instant) or `HANDOVER_BUDGET_US` has passed, as the worker does.
    pub fn announced_crash(&mut self, i: usize) -> Result<(), Violation> {
        self.depart(i)?;
        self.crash(i);
        Ok(())
    }

    /// A clean stop, as the worker's on SIGTERM: it departs like an announced crash, then,
    /// having handled its last message, records when its promises end.
    pub fn stop_cleanly(&mut self, i: usize) -> Result<(), Violation> {
        self.depart(i)?;
        let end = self.nodes[i].raft.as_ref().map(|r| r.promises_end());
        self.crash(i);
        let run = self.nodes[i].runs;
        self.nodes[i].stop_record = end.map(|end| crate::cluster::StopRecord { run, end });
        Ok(())
    }

    fn depart(&mut self, i: usize) -> Result<(), Violation> {
        // First of all, as the worker does: its sessions see no lease from here on.
        self.nodes[i].lease_gate_closed = true;
        let departure = self.act(i, |r, now| r.depart(now))?;
        if let Some(Departure::CatchingUp(_)) = departure {
            let until = self.now + HANDOVER_BUDGET_US;
            while self.now < until && self.holds_lease(i) {
                self.run_until(self.now + 100)?;
            }
            // The tick that sends TimeoutNow is due at once.
            self.run_until(self.now)?;
        }
        Ok(())
    }

    fn holds_lease(&self, i: usize) -> bool {
        let now = self.local_now(i);
        self.nodes[i]
            .raft
            .as_ref()
            .is_some_and(|r| r.has_lease(now))
    }
}

/// A crash of node `i`, announced half the time. A paused node (SIGSTOP) cannot say anything.
/// Returns true when it was announced.
pub fn crash(c: &mut Cluster, i: usize) -> Result<bool, Violation> {
    let can_speak = c.nodes[i].paused_until <= c.now;
    if can_speak && c.rng.uniform(0, 2) == 0 {
        c.announced_crash(i)?;
        Ok(true)
    } else {
        c.crash(i);
        Ok(false)
    }
}

/// On a calm cluster with an agreed leader: the leader's host announces its death; returns the
/// real time until another node holds a lease.
pub fn announced_failover(c: &mut Cluster, options: &Options) -> Result<u64, Violation> {
    let offset = c.rng.uniform(0, options.heartbeat.as_micros() * 3);
    c.run_until(c.now + offset)?;
    // A handover to the preferred primary may be under way at that instant: wait it out.
    let since = c.now;
    let leader = loop {
        if let Some((leader, _)) = c.agreed_leader() {
            break leader;
        }
        if c.now - since > crate::scenario::liveness_bound(c) {
            return Err("liveness: no agreed leader before the announced failover".to_string());
        }
        c.run_until(c.now + 1_000)?;
    };
    let start = c.now;
    c.announced_crash(leader)?;
    let step = 100;
    loop {
        if c.leader_with_lease().is_some() {
            return Ok(c.now - start);
        }
        if c.now - start > crate::scenario::liveness_bound(c) {
            return Err("liveness: no new leader after the leader announced its crash".into());
        }
        c.run_until(c.now + step)?;
    }
}
