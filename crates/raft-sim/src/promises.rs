//! The promises behind every lease (design invariant 7), tracked from the followers' side.
//!
//! A server that answers a leader's AppendEntries of the leader's own term promises not to vote
//! for anyone else, nor to campaign, for as long as that message asked (its `lease`), counted
//! from the moment it received it. The checker records each promise on the promising server's
//! own clock (the one it can keep it by; the leader's drift margin covers the difference to real
//! time), keeps it across the server's restarts, and releases it only when the leader gives its
//! lease up by sending TimeoutNow (a handover), and then only for the handover's votes.

use pg_leader_raft::{Instant, NodeId, Term};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    pub leader: NodeId,
    pub term: Term,
    /// End of the promise on the promising server's clock.
    pub until: Instant,
    /// Real (simulated) time at which the longest promise to this leader and term was received.
    pub made_at_real: u64,
}

#[derive(Default)]
pub struct Promises {
    /// Per server, the longest promise made to each (leader, term).
    made: HashMap<NodeId, HashMap<(NodeId, Term), Promise>>,
    /// (leader, term) pairs whose leader sent TimeoutNow: its lease is gone for that term.
    given_up: HashSet<(NodeId, Term)>,
}

impl Promises {
    pub fn made(&mut self, node: NodeId, promise: Promise, now: Instant) {
        let mine = self.made.entry(node).or_default();
        mine.retain(|_, p| p.until > now);
        let slot = mine
            .entry((promise.leader, promise.term))
            .or_insert(promise);
        if promise.until > slot.until {
            *slot = promise;
        }
    }

    pub fn lease_given_up(&mut self, leader: NodeId, term: Term) {
        self.given_up.insert((leader, term));
    }

    /// A promise of `node` that still holds at its clock reading `now` and forbids it to vote
    /// for (or be) `other`. `handover` is the term of a handover's election, if this is one: the
    /// leader of the term before gave its lease up (when it did send TimeoutNow), and it was
    /// elected while no earlier leader held a lease (checked then), so promises to it and to
    /// the leaders of earlier terms no longer bind.
    pub fn binding(
        &self,
        node: NodeId,
        now: Instant,
        other: NodeId,
        handover: Option<Term>,
    ) -> Option<Promise> {
        let released = |p: &Promise| match handover {
            Some(term) => {
                p.term.0 + 1 < term.0
                    || (p.term.0 + 1 == term.0 && self.given_up.contains(&(p.leader, p.term)))
            }
            None => false,
        };
        self.made
            .get(&node)?
            .values()
            .filter(|p| p.until > now && p.leader != other && !released(p))
            .max_by_key(|p| p.until)
            .copied()
    }
}
