//! A node whose host announces its death: the process that runs it is about to go (PostgreSQL
//! died or is crash-restarting) but can still say so. A leader hands over at once through the
//! ordinary TimeoutNow path (thesis §3.10); a follower tells its leader that it is leaving, so
//! that the leader stops counting it. A host that dies silently (power, network, SIGKILL of
//! everything) says nothing, and the others wait out the promise as always.
//!
//! The host must make the lease loss visible to its readers *before* it calls `depart`:
//! `depart` may put TimeoutNow in the same `Ready` as the lease loss, since the host will
//! never publish another lease.

use crate::message::Body;
use crate::progress::TransferPhase;
use crate::raft::Raft;
use crate::ready::{Cause, Event, Role};
use crate::types::{Instant, NodeId};

/// What `depart` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// A leader gave up its lease and TimeoutNow to this voter is in the Ready.
    HandedOver(NodeId),
    /// A leader must first bring this voter's log up to date: its lease and TimeoutNow follow
    /// (from a later `step` and `tick`) once the voter has the whole log; a host that cannot
    /// wait that long just goes. (The host's readers already see no lease.)
    CatchingUp(NodeId),
    /// A follower told its leader that it is leaving.
    Announced(NodeId),
    /// Nothing to hand over or to tell: no leader known, no voter that may lead, or a
    /// handover already under way.
    Nothing,
}

impl Raft {
    /// The host is about to die; see the module documentation. Call it once, after the host
    /// has made sure no reader can see a lease any more.
    pub fn depart(&mut self, now: Instant) -> Departure {
        match self.role() {
            Role::Leader => self.depart_as_leader(now),
            Role::Follower => match self.leader_id() {
                Some(leader) => {
                    self.send(leader, self.term, Body::Departing);
                    Departure::Announced(leader)
                }
                None => Departure::Nothing,
            },
            Role::PreCandidate | Role::Candidate => Departure::Nothing,
        }
    }

    fn depart_as_leader(&mut self, now: Instant) -> Departure {
        let Ok(target) = self.hand_over(now) else {
            return Departure::Nothing;
        };
        // A dying primary sends no more WAL: the target promotes with what it has.
        if let Some(t) = self.leader.as_mut().and_then(|l| l.transfer.as_mut()) {
            t.waits_for_wal = false;
        }
        let catching_up = self
            .leader
            .as_ref()
            .and_then(|l| l.transfer)
            .is_some_and(|t| t.phase == TransferPhase::CatchingUp);
        if catching_up {
            // The target lacks part of the log and could not win: it is sent what it lacks, and
            // the ordinary transfer gives up the lease and sends TimeoutNow once it has it all.
            return Departure::CatchingUp(target);
        }
        // The lease is given up (phase LeaseGivenUp): the tick sends TimeoutNow now rather than
        // after a publish the dying host will not make.
        self.tick(now);
        Departure::HandedOver(target)
    }
}

/// On the leader: a follower said it is leaving. It no longer counts for CheckQuorum, nor for
/// the lease (its promise still holds, but counting only live voters errs on the safe side),
/// nor as a handover target, until it answers again.
pub(crate) fn follower_departed(r: &mut Raft, from: NodeId) {
    let Some(p) = r.leader.as_mut().and_then(|l| l.progress.get_mut(&from)) else {
        return;
    };
    p.departed = true;
    p.acked_sent_at = None;
    r.ready.events.push(Event::FollowerDeparted { node: from });
    r.refresh_lease();
    if r.config.check_quorum && !crate::roles::leader::quorum_active(r) {
        let term = r.term;
        r.become_follower(term, None, Cause::LostQuorum);
    }
}
