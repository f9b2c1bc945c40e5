//! What nodes say to each other. Serde types, kept small; the transport frames them with
//! `PROTOCOL_VERSION` so that a future format is recognised rather than misread.

use crate::membership::{Membership, MembershipChange};
use crate::types::{Duration, Instant, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};

/// Bumped whenever `Message` or `Entry` change shape on the wire.
pub const PROTOCOL_VERSION: u8 = 4;

/// What a server's database is and how far its data goes: its PostgreSQL timeline and WAL
/// position (flush LSN on a primary, replay LSN on a standby), and whether it is in recovery (a
/// standby). Timeline zero means unknown. Opaque to Raft's own rules: it lets voters refuse a
/// candidate whose promotion would lose data they have, and decides who campaigns first and to
/// whom a leader hands over (`preference`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WalPosition {
    /// PostgreSQL's database system identifier: positions of different systems (a witness
    /// has its own) say nothing about each other.
    pub system: u64,
    pub timeline: u32,
    pub lsn: u64,
    /// True on a standby (PostgreSQL's `RecoveryInProgress()`), false on a writable primary.
    pub in_recovery: bool,
}

impl WalPosition {
    /// A writable primary's position.
    pub fn primary(system: u64, timeline: u32, lsn: u64) -> WalPosition {
        WalPosition {
            system,
            timeline,
            lsn,
            in_recovery: false,
        }
    }

    /// A standby's position (in recovery).
    pub fn standby(system: u64, timeline: u32, lsn: u64) -> WalPosition {
        WalPosition {
            in_recovery: true,
            ..WalPosition::primary(system, timeline, lsn)
        }
    }

    pub fn known(&self) -> bool {
        self.timeline != 0
    }

    /// True when both are known, of one system, on one timeline, and `self` is behind `other`.
    /// Positions on different timelines are not compared: which one wins is the failover
    /// script's call.
    pub fn is_behind(&self, other: &WalPosition) -> bool {
        self.known()
            && other.known()
            && self.system == other.system
            && self.timeline == other.timeline
            && self.lsn < other.lsn
    }
}

/// One log entry (§5.3). Its command is opaque to the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub data: EntryData,
}

impl Entry {
    /// An upper bound of its encoded size in bytes, to keep messages within a datagram.
    pub fn size_bound(&self) -> usize {
        let data = match &self.data {
            EntryData::Noop | EntryData::Maintenance { .. } => 0,
            EntryData::Command(bytes) => bytes.len(),
            EntryData::Membership(m) => m
                .members()
                .iter()
                .map(|member| member.address.len() + 16)
                .sum(),
        };
        32 + data
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryData {
    /// Appended by every new leader so that it can commit entries of earlier terms (§5.4.2).
    Noop,
    /// An application command, replicated and applied in order.
    Command(Vec<u8>),
    /// A new configuration, in effect from the moment it is in a log (see `membership`).
    Membership(Membership),
    /// Maintenance mode on or off (`maintenance`), asked by an operator on server `by`; in
    /// effect once applied. Last, so that every earlier variant keeps its number on the wire
    /// and on disk: an older server drops a message carrying it as malformed, never misreads it.
    Maintenance { paused: bool, by: NodeId },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term, except for a granted pre-vote, which echoes the term it was asked about.
    pub term: Term,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// RequestVote (§5.2), or a PreVote probe that changes no one's term (thesis §9.6).
    RequestVote {
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
        /// Set by a transfer target: voters skip leader stickiness, since the leader itself
        /// asked for the handover and has given up its lease.
        transfer: bool,
        /// The candidate's data position; voters further ahead refuse it (`Config::wal_aware`).
        wal: WalPosition,
    },
    VoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// AppendEntries (§5.3); with no entries it is the heartbeat.
    AppendEntries {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        /// The leader's clock when it sent this; echoed back so the leader knows which of its
        /// heartbeats a follower has seen (the lease is counted from the send time).
        sent_at: Instant,
        /// How long the receiver must refuse votes to other candidates, and not campaign, after
        /// receiving this: the sender's election timeout. The leader counts it, less the drift
        /// margin, from `sent_at` (see `lease`).
        lease: Duration,
        /// The leader's data position when it sent this: a primary that follows can tell why
        /// it is not the one leading (`preference`).
        wal: WalPosition,
    },
    AppendResponse {
        success: bool,
        /// On success the index up to which the follower's log matches the leader's.
        match_index: LogIndex,
        /// On failure the follower's last index, to skip back quickly.
        reject_hint: LogIndex,
        sent_at: Instant,
        /// The promise made on receiving the AppendEntries this answers: its `lease` echoed, or
        /// zero when none was made (an answer to a stale term). The leader's lease counts this
        /// one, not whatever its own settings say now.
        lease: Duration,
        /// False when the follower must never lead (`Config::can_lead`): the leader then never
        /// picks it for a handover.
        can_lead: bool,
        /// The follower's data position when it answered: a leader in recovery hands over to
        /// a primary it hears of this way (`preference`).
        wal: WalPosition,
    },
    /// Leadership transfer (thesis §3.10): campaign now, without waiting for the timeout.
    TimeoutNow,
    /// From a caretaker leader (a voter that may not lead, elected only to pass on entries the
    /// servers that may lead lacked) to one that may and now holds its log: start an election
    /// now, an ordinary one. The caretaker asked for no promise and held no lease, so there is
    /// no lease to give up, and the voters judge the candidate as usual (its WAL included).
    CampaignNow,
    /// A follower passes on an operator's request for a switchover (to `target`, or to the
    /// most caught-up voter); the leader's host decides, as for a request of its own.
    TransferRequest {
        target: Option<NodeId>,
    },
    /// The leader's answer to a `TransferRequest` it could not start: a `TransferError` code
    /// of the host's (a started one is answered by the handover itself).
    TransferRefused {
        outcome: u8,
    },
    /// A follower passes on an operator's membership change; the leader answers with
    /// `ChangeAnswer`.
    ChangeRequest {
        change: MembershipChange,
    },
    /// The leader's answer: 0 when the change was started (or already done), else a
    /// `ChangeError::code`.
    ChangeAnswer {
        outcome: u8,
    },
    /// A follower's host is going away (its PostgreSQL died or is crash-restarting): the leader
    /// stops counting it at once instead of an election timeout later (`departure`).
    Departing,
    /// How the sender's database is reached for replication (`pg_leader.conninfo`), opaque to
    /// Raft: the host sends it now and then, the core only keeps the latest of each member.
    Advert {
        conninfo: String,
    },
    /// A follower passes on an operator's `pg_leader_pause()` or `pg_leader_resume()`; the
    /// leader appends the entry unless its log already ends in that state. No answer: the asker
    /// sends it again until it applies the state asked for (`maintenance`).
    MaintenanceRequest {
        paused: bool,
    },
    /// From the leader with each heartbeat round (`succession`): the voters in the order they
    /// should campaign in should it fall silent, each with the `pg_leader.priority` the leader
    /// knows of it, the step between ranks and rank 0's wait. Advisory: it changes when a follower campaigns,
    /// never how anyone votes. A separate message rather than a field of `AppendEntries`, and
    /// after every earlier variant, so that the protocol version stays: a server of an earlier
    /// build drops it as malformed (counted, never misread) and keeps following the heartbeats.
    Succession {
        order: Vec<(NodeId, u32)>,
        step: Duration,
        /// How long rank 0 waits after its promises end: the spread of the heartbeat's arrivals.
        lead: Duration,
    },
    /// A follower's answer to an order that lists it with another priority than its own (or
    /// leaves it out while it may lead): its `pg_leader.priority`.
    Priority {
        priority: u32,
    },
}

impl Message {
    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match &self.body {
            Body::RequestVote { pre_vote: true, .. } => "PreVote",
            Body::RequestVote { .. } => "RequestVote",
            Body::VoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            Body::VoteResponse { .. } => "VoteResponse",
            Body::AppendEntries { .. } => "AppendEntries",
            Body::AppendResponse { .. } => "AppendResponse",
            Body::TimeoutNow => "TimeoutNow",
            Body::CampaignNow => "CampaignNow",
            Body::TransferRequest { .. } => "TransferRequest",
            Body::TransferRefused { .. } => "TransferRefused",
            Body::ChangeRequest { .. } => "ChangeRequest",
            Body::ChangeAnswer { .. } => "ChangeAnswer",
            Body::Departing => "Departing",
            Body::Advert { .. } => "Advert",
            Body::MaintenanceRequest { .. } => "MaintenanceRequest",
            Body::Succession { .. } => "Succession",
            Body::Priority { .. } => "Priority",
        }
    }
}
