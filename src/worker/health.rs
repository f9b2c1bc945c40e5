//! The worker follows the health of its PostgreSQL (`postgres::health`): this server may lead
//! only while `pg_leader.can_be_leader` is on and its PostgreSQL can serve. A leader whose
//! PostgreSQL cannot serve hands over at once to the most caught-up voter that may lead, and asks
//! no more promises, so its lease lapses within one election timeout even when no voter can take
//! over; the write fence keeps writes off it in between (design invariant 8). The reason is
//! logged with the term, recorded in the role history and shown in `pg_leader_status().error`.

use super::Node;
use crate::clock::boottime_now;
use crate::postgres::health::Change;
use pg_leader_raft::{Duration, Role};

impl Node {
    /// Once per loop turn: takes the health readings and acts on a change.
    pub(super) fn follow_health(&mut self) {
        let now = boottime_now();
        // Half the election timeout to notice, the rest for the handover.
        let bound = Duration::from_millis(self.settings.election_timeout_ms as u64 / 2);
        let Some(change) = self.health.check(now, bound) else {
            return;
        };
        let status = self.raft.status();
        let me = self.raft.id();
        let cause = match &change {
            Change::Sick(sickness) => {
                pgrx::log!(
                    "pg_leader: node {me} ({} in term {}): its PostgreSQL cannot serve: {sickness}",
                    status.role,
                    status.term
                );
                format!("unhealthy: {sickness}")
            }
            Change::Healthy { was } => {
                pgrx::log!(
                    "pg_leader: node {me} ({} in term {}): its PostgreSQL serves again (was: {was})",
                    status.role,
                    status.term
                );
                "healthy".to_string()
            }
        };
        self.history.health_changed(now, &status, &cause);
        self.follow_can_lead();
        // The reason reaches pg_leader_status().error now, not only with the next change.
        self.publish();
    }

    /// Lets the core lead only while `pg_leader.can_be_leader` is on and PostgreSQL can serve;
    /// a leader that may no longer lead hands over at once.
    pub(super) fn follow_can_lead(&mut self) {
        let allowed = self.may_lead();
        // Maintenance mode: no handover away from a sick server; judged again on resume.
        let may_lead =
            allowed && (self.health.sickness().is_none() || self.raft.maintenance().paused);
        if may_lead == self.raft.config().can_lead {
            return;
        }
        self.raft.set_can_lead(may_lead);
        let why = match self.health.sickness() {
            Some(sickness) if allowed => sickness.to_string(),
            _ if self.yielded => {
                "a primary that is not the leader's: rebuilt as a standby first".to_string()
            }
            _ if crate::settings::priority() == 0 => "pg_leader.priority is 0".to_string(),
            _ => "pg_leader.can_be_leader is off".to_string(),
        };
        match (may_lead, allowed) {
            (true, _) => pgrx::log!("pg_leader: this server may lead"),
            (false, false) if self.yielded => {
                pgrx::log!("pg_leader: this server will not lead until rebuilt as a standby")
            }
            (false, false) => pgrx::log!("pg_leader: this server will never lead"),
            (false, true) => {
                pgrx::log!("pg_leader: this server will not lead while its PostgreSQL cannot serve")
            }
        }
        // A handover already under way (a switchover whose primary yields) goes on as it is.
        if !may_lead && self.raft.role() == Role::Leader && self.raft.transfer_target().is_none() {
            match self.raft.hand_over(boottime_now()) {
                Ok(target) => {
                    pgrx::log!("pg_leader: handing leadership to node {target}: {why}")
                }
                Err(e) => pgrx::warning!(
                    "pg_leader: {why}, but leadership cannot be handed over yet: {e}"
                ),
            }
        }
        self.process_ready();
    }
}
