//! The worker's side of membership changes: following the configuration in effect (addresses,
//! statistics), sessions' requests (`pg_leader_add_node()`, `pg_leader_remove_node()`) started
//! here on the leader or passed on to it, and `pg_leader.peers` edited and reloaded, which the
//! leader turns into the same changes, one server at a time.

use super::{resolve, Node};
use crate::changes::CHANGES;
use crate::clock::boottime_now;
use crate::cluster_config::parse_peers;
use crate::shmem::{CHANGE_TIMED_OUT, PUBLISHED};
use pg_leader_raft::{
    Body, ChangeError, Duration, Instant, MemberRole, Membership, MembershipChange, NodeId, Role,
};

/// How often a request passed on to the leader is sent again while unanswered, and how soon a
/// request that must wait (no leader yet, a handover under way) is tried again.
const RESEND: Duration = Duration::from_millis(300);
const RETRY: Duration = Duration::from_millis(50);

/// A session's membership change, until it is answered.
pub(super) struct ChangeInFlight {
    asked: u64,
    change: MembershipChange,
    next_try: Instant,
    deadline: Instant,
}

/// Outcomes that only mean "not now": the request is tried again until the session's deadline.
fn must_wait(outcome: u8) -> bool {
    [
        ChangeError::NotLeader(None).code(),
        ChangeError::NotReady.code(),
        ChangeError::Transferring.code(),
        ChangeError::RemovingLeader.code(),
    ]
    .contains(&outcome)
}

pub(super) fn describe(change: &MembershipChange) -> String {
    match change {
        MembershipChange::Add { id, address, voter } => format!(
            "add node {id} at {address} as a {}",
            if *voter { "voter" } else { "learner" }
        ),
        MembershipChange::Remove { id } => format!("remove node {id}"),
    }
}

pub(super) fn outcome_text(outcome: u8) -> String {
    match outcome {
        0 => "started".into(),
        1 => "not the leader".into(),
        2 => "another change is in progress".into(),
        3 => "the leader is not ready yet".into(),
        4 => "a leadership transfer is in progress".into(),
        5 => "already a member".into(),
        6 => "not a member".into(),
        7 => "address in use".into(),
        8 => "handing leadership over first".into(),
        9 => "the last voter cannot go".into(),
        other => format!("outcome {other}"),
    }
}

impl Node {
    /// The configuration in effect changed: reach its members at their addresses.
    pub(super) fn follow_membership(&mut self) {
        let me = self.raft.id();
        let own = self.addresses.get(&me).copied();
        let members: Vec<(NodeId, String)> = self
            .raft
            .membership()
            .0
            .members()
            .iter()
            .map(|m| (m.id, m.address.clone()))
            .collect();
        let mut addresses = std::collections::BTreeMap::new();
        for (id, address) in members {
            if id == me {
                continue;
            }
            match resolve(&address) {
                Ok(a) => {
                    addresses.insert(id, a);
                    self.stats.entry(id).or_default();
                }
                Err(_) => pgrx::warning!(
                    "pg_leader: could not resolve the address \"{address}\" of node {id}; it cannot be reached until it resolves"
                ),
            }
        }
        if let Some(own) = own {
            addresses.insert(me, own);
        }
        self.addresses = addresses;
        // Forget replay windows of servers that left, so that a returning one starts afresh.
        let known: Vec<NodeId> = self.addresses.keys().copied().collect();
        self.windows.retain(|id, _| known.contains(id));
    }

    /// At start: once the configuration is replicated it wins over `pg_leader.peers`; say so
    /// when the two disagree.
    pub(super) fn compare_with_peers(&self) {
        let (membership, index) = self.raft.membership();
        if index.0 == 0 {
            return;
        }
        let from_peers = peers_membership(&self.settings.peers);
        if same_voters(membership, &from_peers) {
            return;
        }
        let mut report = pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_WARNING,
            "pg_leader: pg_leader.peers differs from the replicated configuration, which is used"
                .to_string(),
            "compare_with_peers",
        );
        report = report
            .set_detail(format!(
                "pg_leader.peers lists {from_peers}; the replicated configuration (log index {index}) is {membership}."
            ))
            .set_hint(
                "Change membership with pg_leader_add_node() and pg_leader_remove_node(), or edit pg_leader.peers on every server and reload. Update pg_leader.peers to match, so that this message goes away."
                    .to_string(),
            );
        report.report(pgrx::PgLogLevel::LOG);
    }

    /// A session asked for a membership change.
    pub(super) fn serve_change_request(&mut self) {
        let request = {
            let p = PUBLISHED.share();
            (p.change_asked > self.change_answered).then(|| {
                let id = NodeId(p.change_node.max(0) as u32);
                let change = if p.change_remove {
                    MembershipChange::Remove { id }
                } else {
                    MembershipChange::Add {
                        id,
                        address: p.change_address().to_string(),
                        voter: p.change_voter,
                    }
                };
                (
                    p.change_asked,
                    change,
                    Instant::from_micros(p.change_deadline_us),
                )
            })
        };
        let Some((asked, change, deadline)) = request else {
            return;
        };
        self.change_answered = asked;
        pgrx::log!("pg_leader: membership change asked: {}", describe(&change));
        self.change = Some(ChangeInFlight {
            asked,
            change,
            next_try: boottime_now(),
            deadline,
        });
    }

    /// Moves the session's change along: started here on the leader, passed on to the leader
    /// from a follower, tried again while the answer is only "not now".
    pub(super) fn drive_change(&mut self) {
        let now = boottime_now();
        let Some(inflight) = self.change.as_ref() else {
            return;
        };
        if now < inflight.next_try {
            return;
        }
        if now >= inflight.deadline {
            return self.answer_change(CHANGE_TIMED_OUT);
        }
        let change = inflight.change.clone();
        let status = self.raft.status();
        let next_try = match (status.role, status.leader_id) {
            (Role::Leader, _) => match self.raft.propose_change(&change, now) {
                Ok(_) => {
                    self.process_ready();
                    return self.answer_change(0);
                }
                Err(ChangeError::RemovingLeader) => {
                    // Removing this leader: hand over first, then ask the next leader.
                    match self.raft.hand_over(now) {
                        Ok(target) => pgrx::log!(
                            "pg_leader: handing leadership to node {target} before this node is removed"
                        ),
                        Err(e) => pgrx::log!("pg_leader: cannot hand leadership over yet: {e}"),
                    }
                    self.process_ready();
                    now + RETRY
                }
                Err(e) if must_wait(e.code()) => now + RETRY,
                Err(e) => return self.answer_change(e.code() as i32),
            },
            (_, Some(leader)) => {
                self.raft
                    .send_from_host(leader, Body::ChangeRequest { change });
                self.process_ready();
                now + RESEND
            }
            _ => now + RETRY,
        };
        if let Some(inflight) = self.change.as_mut() {
            inflight.next_try = next_try;
        }
    }

    /// The leader answered a change this node passed on.
    pub(super) fn leader_answered_change(&mut self, outcome: u8) {
        let Some(inflight) = self.change.as_mut() else {
            return;
        };
        if must_wait(outcome) {
            inflight.next_try = boottime_now() + RETRY;
        } else {
            self.answer_change(outcome as i32);
        }
    }

    fn answer_change(&mut self, outcome: i32) {
        let Some(inflight) = self.change.take() else {
            return;
        };
        {
            let mut p = PUBLISHED.exclusive();
            p.change_answered = inflight.asked;
            p.change_outcome = outcome;
        }
        CHANGES.broadcast();
    }

    /// `pg_leader.peers` changed on reload: keep the configuration it lists as the target the
    /// leader works towards. Learners are not listed in it and are left alone.
    pub(super) fn reload_peers(&mut self, text: &str) {
        let peers = match parse_peers(text) {
            Ok(peers) => peers,
            Err(e) => {
                super::ereport_start_error(&super::StartError::from(e));
                pgrx::log!("pg_leader: keeping the configuration in effect");
                return;
            }
        };
        let me = self.raft.id();
        let own_before = self.settings.peers.iter().find(|p| p.id == me.0);
        let own_after = peers.iter().find(|p| p.id == me.0);
        if own_after.is_some() && own_before.map(|p| p.address()) != own_after.map(|p| p.address())
        {
            pgrx::warning!(
                "pg_leader: this server's own address in pg_leader.peers changes only on restart"
            );
        }
        let target = peers_membership(&peers);
        pgrx::log!(
            "pg_leader: pg_leader.peers changed; the leader moves the cluster to {target}, one server at a time"
        );
        self.settings.peers = peers;
        self.peers_target = Some(target);
    }

    /// On the leader, one step towards the configuration `pg_leader.peers` asks for: first the
    /// voters it adds (each joins, catches up, is promoted), then those it drops. Every node
    /// forgets the target once the configuration in effect matches it.
    pub(super) fn drive_peers_target(&mut self) {
        let Some(target) = self.peers_target.as_ref() else {
            return;
        };
        let (membership, _) = self.raft.membership();
        if same_voters(membership, target) && membership.in_transition().is_none() {
            pgrx::log!("pg_leader: the configuration in effect matches pg_leader.peers");
            self.peers_target = None;
            return;
        }
        if self.raft.role() != Role::Leader || self.change.is_some() {
            return;
        }
        let me = self.raft.id();
        let change = if let Some(added) =
            target.members().iter().find(|m| !membership.contains(m.id))
        {
            MembershipChange::Add {
                id: added.id,
                address: added.address.clone(),
                voter: true,
            }
        } else if let Some(dropped) = membership
            .members()
            .iter()
            .find(|m| m.role != MemberRole::Learner && !target.contains(m.id) && m.id != me)
        {
            MembershipChange::Remove { id: dropped.id }
        } else if !target.contains(me) {
            // This leader itself is dropped: hand over; the next leader carries on.
            if self.raft.hand_over(boottime_now()).is_ok() {
                pgrx::log!("pg_leader: handing leadership over: pg_leader.peers drops this node");
                self.process_ready();
            }
            return;
        } else {
            return;
        };
        match self.raft.propose_change(&change, boottime_now()) {
            Ok(_) => {
                pgrx::log!(
                    "pg_leader: following pg_leader.peers: {}",
                    describe(&change)
                );
                self.process_ready();
            }
            // A change is under way (ours or an operator's) or the leader is not ready: later.
            Err(e) if must_wait(e.code()) || e.code() == ChangeError::InProgress(None).code() => {}
            Err(e) => {
                pgrx::warning!(
                    "pg_leader: cannot follow pg_leader.peers ({}): {e}",
                    describe(&change)
                );
                self.peers_target = None;
            }
        }
    }
}

fn peers_membership(peers: &[crate::cluster_config::Peer]) -> Membership {
    Membership::of_voters(peers.iter().map(|p| (NodeId(p.id), p.address())))
}

/// The same voters at the same addresses (learners are not compared: `pg_leader.peers` does
/// not list them).
fn same_voters(a: &Membership, b: &Membership) -> bool {
    let voters = |m: &Membership| -> Vec<(NodeId, String)> {
        m.members()
            .iter()
            .filter(|x| matches!(x.role, MemberRole::Voter | MemberRole::Joining))
            .map(|x| (x.id, x.address.clone()))
            .collect()
    };
    voters(a) == voters(b)
}
