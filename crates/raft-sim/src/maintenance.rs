//! Maintenance mode in the simulator: pause and resume asked on any server at random moments
//! (`Raft::request_maintenance`: appended by the leader, passed on by a follower, refused with
//! no leader), the invariant that servers which applied the same committed prefix agree on it,
//! and the end of maintenance once the faults stop: liveness (a primary leading, promoted if
//! need be) is owed only outside it.

use crate::checker::Violation;
use crate::cluster::Cluster;
use pg_leader_raft::{LogIndex, NodeId, Role};
use std::collections::BTreeMap;

/// The paused state seen at each applied index, by whichever server applied it first.
#[derive(Clone, Debug, Default)]
pub struct MaintenanceChecker {
    by_applied: BTreeMap<LogIndex, (NodeId, bool)>,
    /// Set once the faults stopped: the cluster is resumed whenever a leader's log says paused.
    pub ending: bool,
}

impl MaintenanceChecker {
    /// Server `node` applied its log up to `applied` and derives `paused` from it. Committed
    /// entries never change (checked elsewhere), so two servers at one applied index applied
    /// the same prefix and must agree.
    pub fn applied(
        &mut self,
        node: NodeId,
        applied: LogIndex,
        paused: bool,
    ) -> Result<(), Violation> {
        match self.by_applied.get(&applied) {
            Some(&(other, seen)) if seen != paused => Err(format!(
                "maintenance: node {node} applied up to index {applied} and is {}, node {other} applied the same prefix and is {}",
                state(paused),
                state(seen)
            )),
            Some(_) => Ok(()),
            None => {
                self.by_applied.insert(applied, (node, paused));
                Ok(())
            }
        }
    }
}

fn state(paused: bool) -> &'static str {
    if paused {
        "paused"
    } else {
        "not paused"
    }
}

impl Cluster {
    /// An operator asks server `i` for maintenance mode on or off.
    pub fn request_maintenance(&mut self, i: usize, paused: bool) -> Result<(), Violation> {
        if self.nodes[i].paused_until > self.now {
            return Ok(());
        }
        let asked = self.act(i, |r, now| r.request_maintenance(paused, now))?;
        if let Some(outcome) = asked {
            let what = if paused { "pause" } else { "resume" };
            self.trace_line(i, &format!("{what} asked: {outcome:?}"));
        }
        Ok(())
    }

    /// After the faults: a leader whose log ends in a pause is asked to resume (a late request
    /// passed on before the faults stopped may pause again; it is undone the same way).
    pub fn end_maintenance(&mut self) -> Result<(), Violation> {
        let leader = (0..self.size()).find(|&i| {
            self.nodes[i].paused_until <= self.now
                && self.nodes[i]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader && r.maintenance_in_log().paused)
        });
        match leader {
            Some(l) => self.request_maintenance(l, false),
            None => Ok(()),
        }
    }
}
