//! The safety properties, checked by code after every simulated step. Each check returns the
//! violation it found as text; the simulator stops there and reports the seed.

use crate::promises::{Promise, Promises};
use pg_leader_raft::{
    Body, Duration, Entry, EntryData, Instant, LogIndex, Membership, Message, NodeId,
    PersistedState, Term,
};
use std::collections::{HashMap, HashSet};

/// What the checker remembers across the whole run, restarts included.
#[derive(Default)]
pub struct Checker {
    /// Election Safety: the leader of each term.
    leaders: HashMap<Term, NodeId>,
    /// Vote durability: whom each node voted for in each term.
    votes: HashMap<(NodeId, Term), NodeId>,
    /// Terms never decrease: the highest term each node has shown.
    max_term: HashMap<NodeId, Term>,
    /// Log Matching: the chain hash (hash of the whole prefix) of every (index, term) ever stored.
    chains: HashMap<(LogIndex, Term), u64>,
    /// Committed entries never change: chain hashes of the committed prefix, by index - 1, with
    /// the term in which each was first seen committed (at or after the term it was committed in).
    committed: Vec<(u64, Term)>,
    /// Configuration entries stored, over the run.
    pub configurations: u64,
    /// The vote promises every server made (invariant 7).
    promises: Promises,
    /// Servers elected while they may not lead (caretakers), by term, until told they may.
    caretakers: HashSet<(NodeId, Term)>,
    /// When each server last (re)started, in real time: a promise broken after a restart is
    /// the restart blackout's fault.
    started_at: HashMap<NodeId, u64>,
}

/// Where a message leaves from: its sender's clock and what it answers, if anything.
#[derive(Clone, Copy, Debug)]
pub struct Sending {
    /// The sender's clock reading.
    pub local: Instant,
    /// Real (simulated) time.
    pub real: u64,
    /// What the message being handled when this one was produced asked.
    pub answering: Option<Asked>,
}

/// The part of a received message that its answers are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// AppendEntries: acknowledging it promises `lease`.
    Append {
        leader: NodeId,
        term: Term,
        sent_at: Instant,
        lease: Duration,
    },
    RequestVote {
        transfer: bool,
    },
}

impl Asked {
    pub fn of(msg: &Message) -> Option<Asked> {
        match &msg.body {
            Body::AppendEntries { sent_at, lease, .. } => Some(Asked::Append {
                leader: msg.from,
                term: msg.term,
                sent_at: *sent_at,
                lease: *lease,
            }),
            Body::RequestVote { transfer, .. } => Some(Asked::RequestVote {
                transfer: *transfer,
            }),
            _ => None,
        }
    }
}

pub type Violation = String;

/// The hash of an entry and everything before it: equal hashes mean equal prefixes.
pub fn chain_hash(prev: u64, entry: &Entry) -> u64 {
    let mut h = prev ^ 0x9E37_79B9_7F4A_7C15;
    let mut mix = |x: u64| {
        h ^= x;
        h = h.wrapping_mul(0x100_0000_01B3).rotate_left(29);
    };
    mix(entry.index.0);
    mix(entry.term.0);
    match &entry.data {
        EntryData::Noop => mix(0),
        EntryData::Command(bytes) => {
            mix(1 + bytes.len() as u64);
            bytes.iter().for_each(|b| mix(*b as u64));
        }
        EntryData::Membership(m) => {
            mix(u64::MAX);
            for member in m.members() {
                mix(member.id.0 as u64);
                mix(member.role as u64);
            }
        }
        EntryData::Maintenance { paused, by } => {
            mix(u64::MAX - 1 - *paused as u64);
            mix(by.0 as u64);
        }
    }
    h
}

impl Checker {
    pub fn term_seen(&mut self, node: NodeId, term: Term) -> Result<(), Violation> {
        let max = self.max_term.entry(node).or_default();
        if term < *max {
            return Err(format!("node {node}'s term went back from {max} to {term}"));
        }
        *max = term;
        Ok(())
    }

    pub fn became_leader(
        &mut self,
        node: NodeId,
        term: Term,
        chain: &[u64],
    ) -> Result<(), Violation> {
        if let Some(other) = self.leaders.insert(term, node) {
            if other != node {
                return Err(format!(
                    "two leaders in term {term}: nodes {other} and {node}"
                ));
            }
        }
        // Leader Completeness (§5.4): an entry committed in a term is in the log of every leader
        // of a later term. (A leader of an earlier term may still be elected late, out of
        // delayed votes; it is deposed as soon as it meets the later term.)
        for (i, (want, committed_in)) in self.committed.iter().enumerate() {
            if *committed_in < term && chain.get(i) != Some(want) {
                return Err(format!(
                    "leader {node} of term {term} lacks committed entry {}",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    /// Checks a message as it leaves, against what its sender has made durable and promised: a
    /// vote (its own as a candidate, or granted) or an append acknowledgement must never be
    /// ahead of the disk, and no vote goes against a promise that still holds.
    pub fn message_sent(
        &mut self,
        msg: &Message,
        disk: &PersistedState,
        at: Sending,
    ) -> Result<(), Violation> {
        match &msg.body {
            Body::RequestVote {
                pre_vote: false, ..
            } => {
                let durable =
                    disk.hard_state.term == msg.term && disk.hard_state.voted_for == Some(msg.from);
                if !durable {
                    return Err(format!(
                        "candidate {} asked for votes in term {} before its own vote was durable",
                        msg.from, msg.term
                    ));
                }
                self.vote_cast(msg.from, msg.term, msg.from)
            }
            Body::VoteResponse {
                pre_vote,
                granted: true,
            } => {
                let handover = at.answering == Some(Asked::RequestVote { transfer: true });
                self.vote_granted(msg.from, msg.to, msg.term, *pre_vote, handover, at.local)?;
                if *pre_vote {
                    return Ok(());
                }
                let durable =
                    disk.hard_state.term == msg.term && disk.hard_state.voted_for == Some(msg.to);
                if !durable {
                    return Err(format!(
                        "node {} granted its vote in term {} to {} before making it durable",
                        msg.from, msg.term, msg.to
                    ));
                }
                self.vote_cast(msg.from, msg.term, msg.to)
            }
            Body::AppendResponse {
                success: true,
                match_index,
                ..
            } if disk.entries.len() < match_index.0 as usize => Err(format!(
                "node {} acknowledged index {} before making it durable",
                msg.from, match_index
            )),
            Body::AppendResponse { lease, .. } if *lease > disk.hard_state.longest_promise => {
                Err(format!(
                    "node {} promised {lease} before making that promise durable (longest durable: {})",
                    msg.from, disk.hard_state.longest_promise
                ))
            }
            Body::AppendResponse { sent_at, .. } => {
                // The answer to the leader's AppendEntries of its own term is the promise.
                if let Some(Asked::Append {
                    leader,
                    term,
                    sent_at: asked_at,
                    lease,
                }) = at.answering
                {
                    if leader == msg.to && term == msg.term && asked_at == *sent_at {
                        self.promise_made(msg.from, leader, term, at.local, lease, at.real);
                    }
                }
                Ok(())
            }
            Body::TimeoutNow => {
                // The leader gave up its lease before this left (thesis §3.10).
                self.promises.lease_given_up(msg.from, msg.term);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `node` promised `leader` of `term`, at its clock reading `now`, to vote for no one else
    /// for `lease`.
    pub fn promise_made(
        &mut self,
        node: NodeId,
        leader: NodeId,
        term: Term,
        now: Instant,
        lease: Duration,
        real: u64,
    ) {
        let promise = Promise {
            leader,
            term,
            until: now + lease,
            made_at_real: real,
        };
        self.promises.made(node, promise, now);
    }

    /// Invariant 7: no (pre-)vote for anyone else while a promise holds, except for a handover
    /// whose leader gave its lease up.
    pub fn vote_granted(
        &mut self,
        voter: NodeId,
        candidate: NodeId,
        term: Term,
        pre_vote: bool,
        handover: bool,
        now: Instant,
    ) -> Result<(), Violation> {
        let what = format!(
            "node {voter} granted its {}vote in term {term} to {candidate}",
            if pre_vote { "pre-" } else { "" }
        );
        self.keeps_promises(voter, now, candidate, handover.then_some(term), what)
    }

    /// Invariant 7: no campaign (pre-vote round or election) while a promise holds, except the
    /// one a leader that gave its lease up asked for.
    pub fn campaign_started(
        &mut self,
        node: NodeId,
        term: Term,
        handover: bool,
        now: Instant,
    ) -> Result<(), Violation> {
        let what = format!("node {node} campaigned (term {term})");
        self.keeps_promises(node, now, node, handover.then_some(term), what)
    }

    /// `node` won `term` while it may not lead: it leads only to pass its log on.
    pub fn caretaker_elected(&mut self, node: NodeId, term: Term) {
        self.caretakers.insert((node, term));
    }

    /// `node` may lead from now on: a lease it then builds is a leader's.
    pub fn may_lead_again(&mut self, node: NodeId) {
        self.caretakers.retain(|(n, _)| *n != node);
    }

    /// A caretaker never answers true (invariant 4: only a leader allowed to lead holds a lease;
    /// it asked no promise, so none stands behind a lease of its).
    pub fn lease_held(&self, node: NodeId, term: Term) -> Result<(), Violation> {
        if self.caretakers.contains(&(node, term)) {
            return Err(format!(
                "node {node}, elected in term {term} while it may not lead, holds a lease"
            ));
        }
        Ok(())
    }

    pub fn started(&mut self, node: NodeId, real: u64) {
        self.started_at.insert(node, real);
    }

    /// `what` (`node` siding with `other` at its clock reading `now`) breaks no promise.
    fn keeps_promises(
        &self,
        node: NodeId,
        now: Instant,
        other: NodeId,
        handover: Option<Term>,
        what: String,
    ) -> Result<(), Violation> {
        match self.promises.binding(node, now, other, handover) {
            Some(p) => {
                let restart = match self.started_at.get(&node) {
                    Some(t) if *t > p.made_at_real => {
                        format!(", restarted at t={t}us since")
                    }
                    _ => String::new(),
                };
                Err(format!(
                    "{what} {}us before its promise to leader {} of term {} ended (promise received at t={}us{restart})",
                    p.until.as_micros() - now.as_micros(),
                    p.leader,
                    p.term,
                    p.made_at_real
                ))
            }
            None => Ok(()),
        }
    }

    /// Lease safety, at the election itself: no server wins while another holds a valid lease
    /// of an earlier term. (A candidate of an earlier term may still count delayed votes and win
    /// late; it can never gather acknowledgements from a majority that moved on, so no lease.)
    pub fn elected_while_leased(
        &self,
        node: NodeId,
        term: Term,
        lease_holders: &[(NodeId, Term)],
    ) -> Result<(), Violation> {
        match lease_holders
            .iter()
            .find(|(h, held_in)| *h != node && *held_in < term)
        {
            Some((h, held_in)) => Err(format!(
                "node {node} was elected in term {term} while node {h} held a valid lease of term {held_in}"
            )),
            None => Ok(()),
        }
    }

    fn vote_cast(&mut self, voter: NodeId, term: Term, candidate: NodeId) -> Result<(), Violation> {
        let first = *self.votes.entry((voter, term)).or_insert(candidate);
        if first != candidate {
            return Err(format!(
                "node {voter} voted twice in term {term}: for {first} and for {candidate}"
            ));
        }
        Ok(())
    }

    /// Log Matching (§5.3): records the chain hashes of newly stored entries; any (index, term)
    /// stored twice with different prefixes is a violation.
    pub fn entries_stored(
        &mut self,
        node: NodeId,
        entries: &[Entry],
        chain: &[u64],
    ) -> Result<(), Violation> {
        for e in entries {
            let hash = chain[e.index.0 as usize - 1];
            let known = *self.chains.entry((e.index, e.term)).or_insert(hash);
            if known != hash {
                return Err(format!(
                    "log matching broken on node {node} at index {} term {}",
                    e.index, e.term
                ));
            }
        }
        Ok(())
    }

    /// A node's commit index moved to `commit`: its prefix must agree with everything known
    /// committed, and extends it.
    pub fn committed_up_to(
        &mut self,
        node: NodeId,
        term: Term,
        from: usize,
        commit: usize,
        chain: &[u64],
    ) -> Result<(), Violation> {
        if commit > chain.len() {
            return Err(format!(
                "node {node} committed index {commit} past its log ({})",
                chain.len()
            ));
        }
        for (i, hash) in chain.iter().enumerate().take(commit).skip(from) {
            match self.committed.get(i) {
                Some((known, _)) if known != hash => {
                    return Err(format!(
                        "committed entry {} changed (seen on node {node})",
                        i + 1
                    ))
                }
                Some(_) => {}
                None => self.committed.push((*hash, term)),
            }
        }
        Ok(())
    }

    /// Single-server changes (thesis §4.3): each configuration in a log differs from the one
    /// before it by at most one voter, so old and new majorities always overlap. Checked for
    /// every configuration entry as it is stored, against the one before it in the same log.
    pub fn configurations_stored(
        &mut self,
        node: NodeId,
        bootstrap: &Membership,
        log: &[Entry],
        first_new: LogIndex,
    ) -> Result<(), Violation> {
        let mut previous = log
            .iter()
            .take(first_new.0.saturating_sub(1) as usize)
            .rev()
            .find_map(|e| match &e.data {
                EntryData::Membership(m) => Some(m),
                _ => None,
            })
            .unwrap_or(bootstrap);
        for e in log.iter().skip(first_new.0.saturating_sub(1) as usize) {
            if let EntryData::Membership(m) = &e.data {
                let moved = previous.voter_difference(m);
                if moved > 1 {
                    return Err(format!(
                        "node {node} stored a configuration at index {} that moves {moved} voters at once: [{previous}] -> [{m}]",
                        e.index
                    ));
                }
                self.configurations += 1;
                previous = m;
            }
        }
        Ok(())
    }

    pub fn leaders_elected(&self) -> usize {
        self.leaders.len()
    }

    /// The leader of the earliest term that had one.
    pub fn first_leader(&self) -> Option<NodeId> {
        self.leaders
            .iter()
            .min_by_key(|(t, _)| **t)
            .map(|(_, l)| *l)
    }
}
