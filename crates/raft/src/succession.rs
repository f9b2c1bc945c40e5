//! Ranked candidacy: who campaigns first when the leader falls silent.
//!
//! With random timers alone, the first candidate after a leader's death comes on average a third
//! of `T` after the promises end, and two candidates sometimes start within one vote round of
//! each other (a split vote, a second round). Here the leader, which knows every follower's WAL,
//! tells the followers a succession order with each heartbeat round (`Body::Succession`): the
//! voters that may lead, ranked by the WAL they hold (the one that would lose least first), then
//! by `priority` (`pg_leader.priority`, higher first), then by id. A follower that knows its rank
//! `r` in its leader's order campaigns (PreVote first, as ever) at
//!
//! ```text
//!   max(last contact + T, end of its promises) + lead + r * step + jitter[0, lead/4)
//! ```
//!
//! `step` and `lead` are the leader's, computed from what it measures:
//! `step = 2 * (ack + fsync) + 1 ms`, at least `MIN_STEP` and at most `T/10`, and
//! `lead = ack + 1 ms`, at most `step/2`,
//! where `ack` is the slow end of its followers' acknowledgement times (a decaying maximum of
//! heartbeat round trips) and `fsync` the slow end of durable writes its host reported
//! (`Raft::note_fsync`). Rank 0's election takes a PreVote round and a vote
//! round, each a round trip plus an fsync (term and vote are durable before the requests and
//! grants leave), so rank 1 starts only once rank 0 has its votes: it then finds a voter that
//! already voted or follows the new leader and gets no PreVote, so it raises no term. The lead
//! before rank 0 covers the promises' ends differing by when each follower received the last
//! heartbeat (at most about a round trip apart; a voter still promised refuses a PreVote) and
//! late timer wake-ups; it does not wait for any fsync.
//!
//! Nothing else changes: the deadline is never before the promises end (design invariant 7), and
//! votes are decided by the same rules (stickiness, logs, WAL-aware refusals). A follower with no
//! rank (not in the order, no order heard from its current leader, a voter that may not lead)
//! and every deadline after a failed round, a vote or a start keep the random draw
//! (`Raft::next_election_deadline`): the order helps only the first round after a leader's death.

use crate::message::Body;
use crate::raft::Raft;
use crate::ready::Role;
use crate::types::{Duration, Instant, NodeId, Term};
use std::cmp::Reverse;

/// `pg_leader.priority`'s default: what the leader assumes of a follower that never said.
pub const DEFAULT_PRIORITY: u32 = 100;
/// The shortest step between ranks, whatever the measurements say: scheduler stalls of a few
/// milliseconds are common on loaded machines.
pub const MIN_STEP: Duration = Duration::from_millis(4);
/// The longest order accepted from the network (more voters than any configuration needs).
pub const MAX_ORDER: usize = 64;

/// What a follower keeps of its leader's last order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rank {
    pub leader: NodeId,
    pub term: Term,
    /// Its place in the order; `None` when it is not in it.
    pub rank: Option<u32>,
    pub step: Duration,
    pub lead: Duration,
}

/// A slow-end estimate of a duration: follows any longer sample at once and comes down by a
/// sixteenth of the difference per shorter one, so one stall counts for a while but not for good.
pub(crate) fn decaying_max(current: Duration, sample: Duration) -> Duration {
    if sample >= current {
        sample
    } else {
        Duration::from_micros(current.as_micros() - (current.as_micros() - sample.as_micros()) / 16)
    }
}

/// The step between ranks for a leader whose acknowledgements take `ack` at the slow end, whose
/// durable writes take `fsync`, on an election timeout `t` (see the module documentation).
pub fn step_for(ack: Duration, fsync: Duration, t: Duration) -> Duration {
    let raw =
        Duration::from_micros(2 * (ack.as_micros() + fsync.as_micros())) + Duration::from_millis(1);
    let cap = Duration::from_micros(t.as_micros() / 10);
    Duration::from_micros(
        raw.as_micros()
            .min(cap.as_micros())
            .max(MIN_STEP.as_micros()),
    )
}

/// Rank 0's wait after its promises end: a round trip at the slow end and a millisecond for timer
/// wake-ups, never more than half a step (rank 1 must still come after rank 0's round).
pub fn lead_for(ack: Duration, step: Duration) -> Duration {
    let lead = ack.as_micros() + Duration::from_millis(1).as_micros();
    Duration::from_micros(lead.min(step.as_micros() / 2))
}

impl Raft {
    /// The host tells how long its last durable write took: the step between ranks allows for it.
    pub fn note_fsync(&mut self, took: Duration) {
        self.fsync_slow = decaying_max(self.fsync_slow, took);
    }

    /// This server's rank in its leader's order, as it knows it now (for tests and status).
    pub fn succession_rank(&self) -> Option<u32> {
        self.rank_to_use().map(|(rank, _, _)| rank)
    }

    /// On a leader: the succession order, each voter with the priority the leader knows of it.
    /// Only voters heard from within `T` that did not say they may not lead, never this leader
    /// itself. One that has not answered yet is listed: a leader lost before its first round was
    /// answered would otherwise leave no order at all, and a listed voter that may not lead
    /// never campaigns (it only delays the ranks after it by a step).
    pub fn succession_order(&self) -> Vec<(NodeId, u32)> {
        let Some(state) = &self.leader else {
            return Vec::new();
        };
        let window = self.config.election_timeout;
        let mut ranked: Vec<(NodeId, u32)> = state
            .progress
            .iter()
            .filter(|(id, p)| {
                p.can_lead != Some(false)
                    && p.priority > 0
                    && !p.departed
                    && self.now < p.last_heard + window
                    && self.membership.is_voter(**id)
            })
            .map(|(id, p)| (*id, p.priority))
            .collect();
        let wal = |id: NodeId| {
            self.heard
                .get(id)
                .filter(|h| h.wal.system == self.wal.system)
                .map(|h| (h.wal.timeline, h.wal.lsn))
        };
        ranked.sort_by_key(|(id, priority)| (Reverse(wal(*id)), Reverse(*priority), *id));
        ranked
    }

    /// On a leader: the step between ranks from what it measured.
    pub fn succession_step(&self) -> Duration {
        step_for(
            self.ack_slow(),
            self.fsync_slow,
            self.config.election_timeout,
        )
    }

    /// On a leader: how long rank 0 waits after its promises end (see the module documentation).
    pub fn succession_lead(&self) -> Duration {
        lead_for(self.ack_slow(), self.succession_step())
    }

    fn ack_slow(&self) -> Duration {
        self.leader.as_ref().map_or(Duration::ZERO, |l| l.ack_slow)
    }

    /// On a leader, with each heartbeat round: the order to every other voter. Sent before the
    /// heartbeats, so that the timer each heartbeat sets uses the order of its own round.
    pub(crate) fn send_succession(&mut self) {
        let body = Body::Succession {
            order: self.succession_order(),
            step: self.succession_step(),
            lead: self.succession_lead(),
        };
        self.send_to_other_voters(self.term, &body);
    }

    /// On a follower: its leader's order. Kept for the next heartbeat's timer; and when the
    /// leader knows a priority other than this server's own, the server tells it again (one
    /// answer at most per order, so a lost `Body::Priority` costs one heartbeat round).
    pub(crate) fn hear_succession(
        &mut self,
        from: NodeId,
        order: &[(NodeId, u32)],
        step: Duration,
        lead: Duration,
    ) {
        let me = self.config.id;
        let listed = order.iter().position(|(id, _)| *id == me);
        self.rank = Some(Rank {
            leader: from,
            term: self.term,
            rank: listed.map(|r| r as u32),
            step,
            lead,
        });
        // The order may arrive after the heartbeat of its round (datagrams are not ordered):
        // the timer that heartbeat set is set again with it, from the same contact.
        if let Some(deadline) = self.ranked_deadline() {
            self.election_deadline = deadline;
        }
        let eligible = self.config.can_lead && self.config.priority > 0;
        let known = listed.map(|r| order[r].1);
        let leader_wrong = match known {
            Some(p) => p != self.config.priority,
            None => eligible,
        };
        if leader_wrong {
            let priority = self.config.priority;
            self.send(from, self.term, Body::Priority { priority });
        }
    }

    /// On a leader: a follower said its priority.
    pub(crate) fn hear_priority(&mut self, from: NodeId, priority: u32) {
        if let Some(p) = self.leader.as_mut().and_then(|l| l.progress.get_mut(&from)) {
            p.priority = priority;
        }
    }

    /// Changes this server's priority (`pg_leader.priority`, on reload): the leader hears of it
    /// with the answer to its next order. A host maps priority 0 to `can_lead` off.
    pub fn set_priority(&mut self, priority: u32) {
        self.config.priority = priority;
    }

    /// The rank and step to use now: only on a follower of the leader that sent the order, in
    /// that leader's term, while it may lead.
    fn rank_to_use(&self) -> Option<(u32, Duration, Duration)> {
        let rank = self.rank?;
        let following = self.role() == Role::Follower
            && self.leader_id == Some(rank.leader)
            && self.term == rank.term;
        let eligible = self.config.can_lead && self.config.priority > 0;
        if !following || !eligible {
            return None;
        }
        rank.rank.map(|r| (r, rank.step, rank.lead))
    }

    /// The ranked election deadline (see the module documentation), or `None` for the draw.
    pub(crate) fn ranked_deadline(&mut self) -> Option<Instant> {
        let (rank, step, lead) = self.rank_to_use()?;
        let (step, lead) = (step.as_micros(), lead.as_micros());
        // From the last contact with the leader, not from now: the same deadline whether the
        // order came before or after the heartbeat.
        let base = (self.leader_heard_at + self.config.election_timeout).max(self.promised_until);
        let offset = lead + u64::from(rank) * step;
        let jitter = self.rng.uniform(0, (lead / 4).max(1));
        Some(base + Duration::from_micros(offset + jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_grows_with_round_trips_and_fsync_within_its_bounds() {
        let t = Duration::from_millis(1000);
        let ms = Duration::from_millis;
        // (ack, fsync, step)
        let cases = [
            (Duration::ZERO, Duration::ZERO, MIN_STEP),
            (
                Duration::from_micros(100),
                Duration::from_micros(500),
                MIN_STEP,
            ),
            (ms(2), ms(3), ms(11)),
            (ms(400), ms(0), ms(100)),
        ];
        for (ack, fsync, step) in cases {
            assert_eq!(step_for(ack, fsync, t), step, "ack {ack} fsync {fsync}");
        }
        assert_eq!(step_for(ms(5), ms(5), ms(100)), ms(10), "capped at T/10");
    }

    #[test]
    fn rank_zero_waits_a_round_trip_not_an_fsync() {
        let ms = Duration::from_millis;
        let ack = Duration::from_micros(200);
        assert_eq!(lead_for(ack, ms(11)), ms(1) + ack);
        assert_eq!(lead_for(ms(9), ms(10)), ms(5), "at most half a step");
    }

    #[test]
    fn a_decaying_maximum_follows_stalls_at_once_and_forgets_them_slowly() {
        let mut slow = Duration::ZERO;
        slow = decaying_max(slow, Duration::from_micros(1600));
        assert_eq!(slow, Duration::from_micros(1600));
        slow = decaying_max(slow, Duration::ZERO);
        assert_eq!(slow, Duration::from_micros(1500));
        for _ in 0..200 {
            slow = decaying_max(slow, Duration::from_micros(100));
        }
        assert!(slow < Duration::from_micros(120), "{slow}");
    }
}
