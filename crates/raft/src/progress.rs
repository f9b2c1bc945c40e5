//! Leader-only state: what the leader knows of each follower, and a handover in progress.
//! It exists only while leading (`Raft::leader` is `None` otherwise).

use crate::types::{Duration, Instant, LogIndex, NodeId};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Progress {
    /// The next entry to send (§5.3).
    pub next: LogIndex,
    /// The highest entry known to be replicated on the follower.
    pub matched: LogIndex,
    /// Send time of the newest AppendEntries the follower acknowledged.
    pub acked_sent_at: Option<Instant>,
    /// The latest moment, on this leader's clock, until which the follower keeps a promise it
    /// acknowledged: the send time plus the promise echoed, less its drift margin. The lease is
    /// built from these.
    pub promised_until: Option<Instant>,
    /// When the leader last heard anything from it in this term: for CheckQuorum.
    pub last_heard: Instant,
    /// What the follower said of itself in its last answer of this term (`Config::can_lead`);
    /// `None` until it answers. A vote or pre-vote does not say it: a voter that may not lead
    /// grants votes too, so a leader that took silence for consent handed over to one, which
    /// ignored TimeoutNow, and the next election started the same handover again.
    pub can_lead: Option<bool>,
    /// It said it is going away (`departure`), and has not answered since.
    pub departed: bool,
    /// Its `pg_leader.priority`, as it last said (`Body::Priority`); the default until then.
    pub priority: u32,
}

impl Progress {
    fn new(last_index: LogIndex, now: Instant) -> Progress {
        Progress {
            next: last_index.next(),
            matched: LogIndex(0),
            acked_sent_at: None,
            promised_until: None,
            last_heard: now,
            can_lead: None,
            departed: false,
            priority: crate::succession::DEFAULT_PRIORITY,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferPhase {
    /// Bringing the target's log up to date.
    CatchingUp,
    /// The lease is given up; TimeoutNow leaves at the next tick, after that is published.
    LeaseGivenUp,
    /// The lease is given up (so the primary it leads acknowledges no more commits) and the
    /// target, a standby the host will promote (`Config::promotes`), has not yet replayed all the
    /// WAL of this leader's primary: TimeoutNow waits for it, until the deadline.
    AwaitingWal,
    /// TimeoutNow has left; the lease stays given up for the rest of this term.
    Sent,
}

#[derive(Clone, Copy, Debug)]
pub struct Transfer {
    pub target: NodeId,
    pub deadline: Instant,
    pub phase: TransferPhase,
    /// Whether TimeoutNow waits for the target's WAL (`TransferPhase::AwaitingWal`): not when
    /// the host is dying, whose primary will write no more and send nothing further.
    pub waits_for_wal: bool,
    /// The primary's WAL position the target must reach: taken when the lease is given up
    /// (every acknowledged commit lies below it), raised once by the first position the host
    /// reads after that (a commit acknowledged just before the give-up was published). WAL
    /// written later (aborted commits of fenced sessions, checkpoints) is not waited for: it
    /// would make a steadily written primary a target that never catches up.
    pub wal_floor: Option<u64>,
    pub wal_floor_final: bool,
}

#[derive(Clone, Debug)]
pub struct LeaderState {
    pub progress: BTreeMap<NodeId, Progress>,
    pub next_heartbeat: Instant,
    /// When this node became leader: CheckQuorum gives followers one timeout to answer.
    pub since: Instant,
    /// Send time of the last heartbeat round: the leader's own acknowledgement.
    pub last_broadcast: Instant,
    /// The longest promise this leader has asked for in this term: an echo claiming more was
    /// not asked for and counts for no more.
    pub longest_promise_asked: Duration,
    pub transfer: Option<Transfer>,
    /// When the commit index last moved: a follower that acknowledged a message sent after it
    /// knows that commit index.
    pub commit_advanced_at: Instant,
    /// The slow end of its followers' acknowledgement times (`succession`).
    pub ack_slow: Duration,
}

impl LeaderState {
    pub fn new(peers: Vec<NodeId>, last_index: LogIndex, now: Instant) -> LeaderState {
        let progress = peers
            .into_iter()
            .map(|id| (id, Progress::new(last_index, now)))
            .collect();
        LeaderState {
            progress,
            next_heartbeat: now,
            since: now,
            last_broadcast: now,
            longest_promise_asked: Duration::ZERO,
            transfer: None,
            commit_advanced_at: now,
            ack_slow: Duration::ZERO,
        }
    }

    /// Follows a new configuration: new members start from the end of the log, departed
    /// ones are forgotten.
    pub fn track_only(&mut self, peers: &[NodeId], last_index: LogIndex, now: Instant) {
        self.progress.retain(|id, _| peers.contains(id));
        for id in peers {
            self.progress
                .entry(*id)
                .or_insert_with(|| Progress::new(last_index, now));
        }
    }

    /// True once a handover has taken the lease away, for the rest of the term.
    pub fn lease_given_up(&self) -> bool {
        matches!(self.transfer, Some(t) if t.phase != TransferPhase::CatchingUp)
    }
}
