//! Maintenance mode (`pg_leader_pause()`, `pg_leader_resume()`): while it is on, the election
//! runs and every answer about it stays as it is, but the host acts on its database by itself
//! no more (no promotion, no re-pointing, no rejoin, no handover to a primary or away from a
//! sick server). The state is replicated through the log (`EntryData::Maintenance`), so every
//! server derives it from the entries it applied, in order, and finds it again after a restart
//! by applying its durable log once a leader tells it what is committed.
//!
//! Only a leader appends the entry; a follower passes the operator's request on
//! (`Body::MaintenanceRequest`). Asking for the state the log already ends in appends nothing,
//! so a request sent again, or asked twice, does no harm.
//!
//! `automatic_actions_held` is what the host checks before acting: it errs on the side of
//! holding back while a server cannot be sure of the state the cluster committed (a new leader
//! before it committed an entry of its term; a follower behind the commit index its leader
//! announced), and while its log ends in a pause not yet committed.

use crate::message::{Body, Entry, EntryData};
use crate::raft::Raft;
use crate::ready::{Event, Role};
use crate::roles::leader;
use crate::types::{Instant, LogIndex, NodeId, Term};
use std::fmt;

/// The maintenance state some prefix of the log leads to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub paused: bool,
    /// Where the operator asked, the term and the index of the entry; `None` (and zeros) when
    /// the prefix holds no maintenance entry: never paused.
    pub by: Option<NodeId>,
    pub term: Term,
    pub index: LogIndex,
}

/// Why a maintenance request could not be started now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaintenanceError {
    /// Not the leader, and no leader known to pass it on to.
    NoLeader,
    /// This leader is handing over; the next one takes the request.
    Transferring,
}

impl fmt::Display for MaintenanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaintenanceError::NoLeader => f.write_str("no leader is known"),
            MaintenanceError::Transferring => f.write_str("leadership is being handed over"),
        }
    }
}

/// The state after `entries`: the last maintenance entry among them decides.
fn state_after(entries: &[Entry]) -> Maintenance {
    entries
        .iter()
        .rev()
        .find_map(|e| match e.data {
            EntryData::Maintenance { paused, by } => Some(Maintenance {
                paused,
                by: Some(by),
                term: e.term,
                index: e.index,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

impl Raft {
    /// The state this server applied: what its committed (and applied) prefix says.
    pub fn maintenance(&self) -> Maintenance {
        let applied = self.log.applied().0 as usize;
        state_after(&self.log.entries()[..applied])
    }

    /// The state the whole log ends in, committed or not.
    pub fn maintenance_in_log(&self) -> Maintenance {
        state_after(self.log.entries())
    }

    /// Whether this server has applied every entry the cluster is known to have committed: a
    /// leader once it committed an entry of its own term (§5.4.2: then its committed prefix
    /// holds every committed entry), a follower once it applied up to the commit index its
    /// leader last announced. A server that follows no leader knows nothing new.
    pub fn maintenance_settled(&self) -> bool {
        match self.role() {
            Role::Leader => self.log.term_at(self.log.committed()) == Some(self.term),
            _ => self.leader_id.is_some() && self.log.applied() >= self.leader_commit_heard,
        }
    }

    /// True when the host must not act on its database by itself: maintenance mode is on as
    /// applied here, or the log ends in a pause about to commit, or this server may not have
    /// applied a pause the cluster committed (`maintenance_settled`).
    pub fn automatic_actions_held(&self) -> bool {
        self.maintenance().paused || self.maintenance_in_log().paused || !self.maintenance_settled()
    }

    /// An operator asks for maintenance mode on (`paused`) or off here: appended on the leader
    /// (the index of the new entry, or `None` when the log already ends in that state), passed
    /// on to the leader from a follower (`None`). The asker sees the outcome in `maintenance()`
    /// and asks again until it holds: a request passed on may be lost.
    pub fn request_maintenance(
        &mut self,
        paused: bool,
        now: Instant,
    ) -> Result<Option<LogIndex>, MaintenanceError> {
        self.advance_clock(now);
        if self.role() == Role::Leader {
            return self.propose_maintenance(paused, self.config.id);
        }
        let leader = self.leader_id.ok_or(MaintenanceError::NoLeader)?;
        self.send(leader, self.term, Body::MaintenanceRequest { paused });
        Ok(None)
    }

    /// On the leader: appends the entry for a request made on server `by`, unless the log
    /// already ends in that state.
    pub(crate) fn propose_maintenance(
        &mut self,
        paused: bool,
        by: NodeId,
    ) -> Result<Option<LogIndex>, MaintenanceError> {
        let Some(state) = &self.leader else {
            return Err(MaintenanceError::NoLeader);
        };
        if state.transfer.is_some() {
            return Err(MaintenanceError::Transferring);
        }
        if self.maintenance_in_log().paused == paused {
            return Ok(None);
        }
        let data = EntryData::Maintenance { paused, by };
        Ok(Some(leader::append_and_replicate(self, data)))
    }

    /// Entries were applied: tells the host when the state they lead to differs from `before`.
    /// One event per batch, so a restarted server replaying its log reports where it ends up,
    /// not every pause and resume of the past.
    pub(crate) fn maintenance_applied(&mut self, before: Maintenance) {
        let after = self.maintenance();
        if after.paused == before.paused {
            return;
        }
        let Some(by) = after.by else { return };
        self.ready.events.push(Event::MaintenanceChanged {
            paused: after.paused,
            by,
            term: after.term,
            index: after.index,
        });
    }
}
