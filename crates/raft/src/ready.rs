//! What the core hands back after each call: the durability contract.
//!
//! The embedding program handles a `Ready` in this order, all of it before the next call:
//! 1. make `hard_state` and `entries` durable (fsync);
//! 2. publish the new status (role, lease) to readers;
//! 3. send `messages` (they may depend on step 1: a vote grant, an append acknowledgement);
//! 4. apply `committed`.
//!
//! If step 1 fails, the program must drop the messages and restart from what is on disk.

use crate::membership::{Membership, MembershipChange};
use crate::message::{Entry, Message};
use crate::types::{Duration, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What must survive a crash: the current term and the vote cast in it (§5.2, §5.1), and how
/// long a promise not to vote this server may have made (design invariant 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// The longest promise (a heartbeat's `lease`) that may still run: after a restart the node
    /// refuses votes and does not campaign for the longer of this and its own election timeout.
    /// Made durable before an acknowledgement carrying a longer promise leaves; lowered (once)
    /// only when every longer promise has ended. Zero when unknown (state written before it was
    /// kept): the election timeout then stands alone, as it did.
    pub longest_promise: Duration,
}

/// Everything a node restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

impl PersistedState {
    /// Applies one `Ready`'s durable part, exactly as storage must.
    pub fn apply(&mut self, ready: &Ready) {
        if let Some(hs) = ready.hard_state {
            self.hard_state = hs;
        }
        if let Some(first) = ready.entries.first() {
            self.entries.truncate(first.index.0 as usize - 1);
            self.entries.extend(ready.entries.iter().cloned());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a role changed; logged by the embedding program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// The node (re)started.
    Start,
    /// No word from a leader within the election timeout.
    ElectionTimeout,
    /// A message carried a later term.
    HigherTerm,
    /// A majority granted the pre-vote: a real election may start.
    PreVoteGranted,
    /// A majority granted the vote.
    WonElection,
    /// A majority refused the (pre-)vote.
    LostElection,
    /// A leader of the current term made itself known.
    LeaderSeen,
    /// CheckQuorum: the leader heard from no majority within the election timeout.
    LostQuorum,
    /// The leader handed over (TimeoutNow).
    Transfer,
    /// A handover was started but did not finish in time.
    TransferFailed,
    /// A leader that may not lead handed back: a server that may lead holds its whole log now
    /// (on the caretaker, stepping down; on that server, campaigning at its word).
    HandedBack,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Start => "start",
            Cause::ElectionTimeout => "election timeout",
            Cause::HigherTerm => "higher term seen",
            Cause::PreVoteGranted => "pre-vote granted",
            Cause::WonElection => "won election",
            Cause::LostElection => "lost election",
            Cause::LeaderSeen => "leader seen",
            Cause::LostQuorum => "lost quorum",
            Cause::Transfer => "leadership transfer",
            Cause::TransferFailed => "leadership transfer timed out",
            Cause::HandedBack => "handed back to a server that may lead",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an operator may want in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    RoleChanged {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
        cause: Cause,
    },
    /// A follower learned who leads its term.
    LeaderChanged { term: Term, leader: NodeId },
    /// On the leader: a follower passed on a switchover request (`Body::TransferRequest`).
    TransferRequested {
        from: NodeId,
        target: Option<NodeId>,
    },
    /// The configuration in effect changed (an entry appended, or truncated away), or the node
    /// started; `index` is 0 for the bootstrap configuration.
    MembershipChanged {
        membership: Membership,
        index: LogIndex,
    },
    /// On the leader: a follower passed on a membership change, answered with `outcome`.
    ChangeRequested {
        from: NodeId,
        change: MembershipChange,
        outcome: u8,
    },
    /// On a follower: the leader's answer to a change it passed on.
    ChangeAnswered { outcome: u8 },
    /// On a follower: the leader could not start a switchover it passed on.
    TransferRefused { outcome: u8 },
    /// On the leader: a follower said it is going away (`Body::Departing`); it is not counted
    /// until it answers again.
    FollowerDeparted { node: NodeId },
    /// Maintenance mode as this server applies it changed (`maintenance`): `paused` by an
    /// operator on node `by`, in the entry at `index` of term `term`.
    MaintenanceChanged {
        paused: bool,
        by: NodeId,
        term: Term,
        index: LogIndex,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// Term and vote to make durable, when they changed.
    pub hard_state: Option<HardState>,
    /// Entries to make durable: storage first drops every entry at or after
    /// `entries[0].index`, then appends these.
    pub entries: Vec<Entry>,
    /// To send once the above is durable.
    pub messages: Vec<Message>,
    /// Newly committed entries, in order, to apply.
    pub committed: Vec<Entry>,
    pub events: Vec<Event>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.events.is_empty()
    }

    /// Adds entries to persist; later ones replace any pending entries they overlap.
    pub(crate) fn push_entries(&mut self, new: Vec<Entry>) {
        if let Some(first) = new.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(new);
        }
    }
}
