//! What the worker knows when an operator's request arrives, as plain values: the endpoints
//! (`answer`) and the metrics (`metrics`) are pure functions of it, tested without PostgreSQL.
//! The worker fills it on its main thread (`worker::facts`) only when a request is complete.

use pg_leader_raft::{Cause, Event, NodeId, Role};

/// One configured peer (this server excluded), as `pg_leader_nodes()` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerFacts {
    pub id: u32,
    /// Seconds since the last authentic datagram from it; None: never heard from.
    pub last_contact_seconds: Option<f64>,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
}

/// Events counted since the worker started (Prometheus copes with the reset of a restart).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Real elections this server started (it became candidate; pre-votes are not counted).
    pub elections_started: u64,
    pub elections_won: u64,
    /// Times the leader this server knows became another node (the first one known included).
    pub leader_changes: u64,
    /// Promotions of this server's PostgreSQL that the worker asked for (one per term at most).
    pub promotions: u64,
    last_leader: Option<NodeId>,
}

impl Counters {
    /// Counts one Ready's events; `leader` is the leader known once they are applied.
    pub fn observe(&mut self, events: &[Event], leader: Option<NodeId>) {
        for event in events {
            if let Event::RoleChanged { role, cause, .. } = event {
                match role {
                    Role::Candidate => self.elections_started += 1,
                    Role::Leader if *cause == Cause::WonElection => self.elections_won += 1,
                    _ => {}
                }
            }
        }
        if leader.is_some() && leader != self.last_leader {
            self.leader_changes += 1;
            self.last_leader = leader;
        }
    }

    pub fn promoted(&mut self) {
        self.promotions += 1;
    }
}

/// Everything an answer may need. Positions are PostgreSQL's byte positions (LSNs).
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub node_id: u32,
    /// As `pg_leader_status().role` spells it.
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u32>,
    /// Set only on a leader whose lease holds now.
    pub lease_remaining_us: Option<u64>,
    /// On a follower: milliseconds since the leader was last heard from.
    pub leader_contact_ms: Option<u64>,
    /// `pg_leader.election_timeout`: a leader heard from within it still holds its lease.
    pub election_timeout_ms: u64,
    /// PostgreSQL is in recovery (a standby).
    pub in_recovery: bool,
    /// The WAL receiver is connected to a primary and streaming.
    pub wal_receiver_streaming: bool,
    /// The flush position on a primary, the replay position on a standby.
    pub wal_position: u64,
    /// The leader's WAL position as its last heartbeat announced it; None when it sends none.
    pub leader_wal_position: Option<u64>,
    /// The health probe reaches this server's PostgreSQL (`postgres::health`).
    pub accepts_connections: bool,
    pub counters: Counters,
    pub peers: Vec<PeerFacts>,
    /// Datagrams dropped, by reason (`pg_leader_wire::Reject`).
    pub rejected_by_reason: Vec<(&'static str, u64)>,
    /// Commits the write fence refused, and acknowledgements it withheld.
    pub fence_refused: u64,
    pub fence_withheld: u64,
    /// The body of `/status`.
    pub status_json: String,
}

impl Facts {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    /// A leader whose lease holds now.
    pub fn holds_lease(&self) -> bool {
        self.is_leader() && self.lease_remaining_us.is_some()
    }

    /// A follower that heard from its leader within the election timeout: since the lease is
    /// shorter than that, a leader whose lease may still hold.
    pub fn follows_live_leader(&self) -> bool {
        self.role == "follower"
            && self.leader_id.is_some()
            && self
                .leader_contact_ms
                .is_some_and(|ms| ms < self.election_timeout_ms)
    }

    /// How far this standby's replay is behind the leader's last announced position; None
    /// when the leader announces none.
    pub fn lag_bytes(&self) -> Option<u64> {
        self.leader_wal_position
            .map(|leader| leader.saturating_sub(self.wal_position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pg_leader_raft::Term;

    fn became(role: Role, cause: Cause) -> Event {
        Event::RoleChanged {
            role,
            term: Term(2),
            leader: None,
            cause,
        }
    }

    #[test]
    fn counters_count_elections_wins_and_changes_of_leader() {
        let mut c = Counters::default();
        c.observe(&[became(Role::PreCandidate, Cause::ElectionTimeout)], None);
        assert_eq!(c.elections_started, 0, "a pre-vote is no election");
        c.observe(&[became(Role::Candidate, Cause::PreVoteGranted)], None);
        c.observe(&[became(Role::Leader, Cause::WonElection)], Some(NodeId(1)));
        c.observe(&[], Some(NodeId(1)));
        c.observe(&[became(Role::Follower, Cause::HigherTerm)], None);
        c.observe(&[], Some(NodeId(2)));
        c.promoted();
        assert_eq!(
            (
                c.elections_started,
                c.elections_won,
                c.leader_changes,
                c.promotions
            ),
            (1, 1, 2, 1)
        );
    }

    #[test]
    fn lag_is_measured_against_the_leaders_announced_position() {
        let mut f = Facts {
            wal_position: 1000,
            ..Facts::default()
        };
        assert_eq!(f.lag_bytes(), None);
        f.leader_wal_position = Some(1500);
        assert_eq!(f.lag_bytes(), Some(500));
        f.leader_wal_position = Some(900);
        assert_eq!(
            f.lag_bytes(),
            Some(0),
            "a standby ahead of the heartbeat is not behind"
        );
    }
}
