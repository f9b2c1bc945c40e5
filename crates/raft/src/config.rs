//! The core's parameters and the checks that keep them safe.
//!
//! # Timings and promises
//! `election_timeout` (`T`) is this server's own: it asks followers for a promise of `T` when it
//! leads, draws its election timer from it, and refuses votes for at least `T` after a start. The
//! lease arithmetic itself (see `lease`) never uses the local `T`: the leader counts each
//! acknowledgement with the promise it carried, a follower waits for the promise it made before
//! voting or campaigning, and a restarted server waits for the longest promise it may have made
//! (kept in `HardState`). Servers may therefore run with different timings, and change them at any
//! moment (`Raft::set_timing`).

use crate::lease::{self, DEFAULT_MARGIN_DIVISOR};
use crate::membership::Membership;
use crate::types::{Duration, NodeId};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The first configuration: every voter, this node included. Once the log holds a
    /// configuration entry, that one is used instead (see `membership`).
    pub voters: Vec<NodeId>,
    /// The voters' addresses, written into the first configuration entry; opaque to the core.
    pub addresses: BTreeMap<NodeId, String>,
    /// False for a voter that must never lead (a witness, a standby that must stay one): it
    /// votes and counts for quorum but never campaigns and refuses handovers.
    pub can_lead: bool,
    /// How often the leader sends AppendEntries (heartbeats).
    pub heartbeat_interval: Duration,
    /// The minimum election timeout `T`: the promise this server asks for when it leads, and
    /// its election timer, drawn anew from `[T, 2T)` once any promise it made has ended.
    pub election_timeout: Duration,
    /// The leader counts on a promise `P` for `P - P / lease_margin_divisor`, to cover
    /// clock-rate differences (see `lease`): 10 covers rates within 5 % of real time. A larger
    /// divisor weakens the margin; the simulator uses one to show that it then fails.
    pub lease_margin_divisor: u64,
    /// Probe with PreVote before raising the term (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a majority within `T` steps down (thesis §6.2).
    pub check_quorum: bool,
    /// At most this many entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// Refuse (pre-)votes to candidates whose `WalPosition` is behind this node's.
    pub wal_aware: bool,
    /// The host promotes a leader that is a standby (`pg_leader.auto_failover`) once no
    /// preferred primary is heard (`Raft::heard_all_since_elected`); a switchover from a
    /// primary then waits for the target's WAL (`TransferPhase::AwaitingWal`).
    pub promotes: bool,
    /// `pg_leader.synchronous = quorum`: a vote goes only to a candidate that holds all the WAL
    /// the voter flushed, whatever the logs (`synchronous`).
    pub synchronous_quorum: bool,
    /// `pg_leader.priority`: among voters holding the same WAL, a higher one comes first in the
    /// succession order (`succession`) and as a handover target. The host maps 0 to `can_lead`
    /// off.
    pub priority: u32,
}

impl Config {
    /// A configuration with the defaults of `pg_leader.heartbeat_interval` (100 ms) and
    /// `pg_leader.election_timeout` (1000 ms).
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            addresses: BTreeMap::new(),
            can_lead: true,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            lease_margin_divisor: DEFAULT_MARGIN_DIVISOR,
            pre_vote: true,
            check_quorum: true,
            max_entries_per_message: 64,
            wal_aware: true,
            promotes: false,
            synchronous_quorum: false,
            priority: crate::succession::DEFAULT_PRIORITY,
        }
    }

    /// The configuration a server starts with: `me` among the voters its settings list, each
    /// with its address, and its timings in milliseconds.
    pub fn from_peers(
        me: NodeId,
        peers: impl IntoIterator<Item = (NodeId, String)>,
        heartbeat_ms: u64,
        election_timeout_ms: u64,
    ) -> Config {
        let addresses: BTreeMap<NodeId, String> = peers.into_iter().collect();
        let mut config = Config::new(me, addresses.keys().copied().collect()).with_timing(
            Duration::from_millis(heartbeat_ms),
            Duration::from_millis(election_timeout_ms),
        );
        config.addresses = addresses;
        config
    }

    /// Sets both timings.
    pub fn with_timing(mut self, heartbeat: Duration, election_timeout: Duration) -> Config {
        self.heartbeat_interval = heartbeat;
        self.election_timeout = election_timeout;
        self
    }

    /// Refuses settings under which the algorithm is unsafe or cannot make progress.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateVoter(w[0]));
        }
        if !sorted.contains(&self.id) {
            return Err(ConfigError::SelfNotAVoter(self.id));
        }
        if self.heartbeat_interval == Duration::ZERO {
            return Err(ConfigError::ZeroHeartbeat);
        }
        // At least two heartbeats must fit in one election timeout, or a single lost packet
        // causes an election.
        if self.heartbeat_interval.as_micros().saturating_mul(2) > self.election_timeout.as_micros()
        {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat: self.heartbeat_interval,
                election_timeout: self.election_timeout,
            });
        }
        if self.lease_margin_divisor < 2 {
            return Err(ConfigError::MarginTooLarge);
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        Ok(())
    }

    /// How long this server's lease lasts past the send time of a heartbeat a majority
    /// acknowledged, once every acknowledgement carries the promise it asks for now.
    pub fn lease_duration(&self) -> Duration {
        self.lease_for(self.election_timeout)
    }

    /// How much shorter than a promise the leader counts on it.
    pub fn drift_margin(&self, promise: Duration) -> Duration {
        lease::drift_margin(promise, self.lease_margin_divisor)
    }

    /// How long past a heartbeat's send time the leader counts on the promise it carried.
    pub fn lease_for(&self, promise: Duration) -> Duration {
        lease::lease_for(promise, self.lease_margin_divisor)
    }

    /// The configuration the node starts from while its log holds none.
    pub fn bootstrap_membership(&self) -> Membership {
        Membership::of_voters(
            self.voters
                .iter()
                .map(|v| (*v, self.addresses.get(v).cloned().unwrap_or_default())),
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    DuplicateVoter(NodeId),
    SelfNotAVoter(NodeId),
    ZeroHeartbeat,
    HeartbeatTooSlow {
        heartbeat: Duration,
        election_timeout: Duration,
    },
    MarginTooLarge,
    ZeroBatch,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::DuplicateVoter(id) => write!(f, "node id {id} is listed twice"),
            ConfigError::SelfNotAVoter(id) => write!(f, "node id {id} is not among the voters"),
            ConfigError::ZeroHeartbeat => write!(f, "the heartbeat interval must be positive"),
            ConfigError::HeartbeatTooSlow { heartbeat, election_timeout } => write!(
                f,
                "the heartbeat interval ({heartbeat}) must be at most half the election timeout ({election_timeout})"
            ),
            ConfigError::MarginTooLarge => {
                write!(f, "the lease drift margin must be less than half the promise")
            }
            ConfigError::ZeroBatch => write!(f, "at least one entry must fit in a message"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::new(NodeId(1), ids(&[1, 2, 3]));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.lease_duration(), Duration::from_millis(900));
    }

    #[test]
    fn unsafe_settings_are_refused() {
        let base = Config::new(NodeId(1), ids(&[1, 2, 3]));
        let cases: Vec<(Config, ConfigError)> = vec![
            (
                Config {
                    voters: ids(&[1, 2, 2]),
                    ..base.clone()
                },
                ConfigError::DuplicateVoter(NodeId(2)),
            ),
            (
                Config {
                    voters: ids(&[2, 3]),
                    ..base.clone()
                },
                ConfigError::SelfNotAVoter(NodeId(1)),
            ),
            (
                Config {
                    heartbeat_interval: Duration::ZERO,
                    ..base.clone()
                },
                ConfigError::ZeroHeartbeat,
            ),
            (
                Config {
                    heartbeat_interval: Duration::from_millis(600),
                    ..base.clone()
                },
                ConfigError::HeartbeatTooSlow {
                    heartbeat: Duration::from_millis(600),
                    election_timeout: Duration::from_millis(1000),
                },
            ),
            (
                Config {
                    lease_margin_divisor: 1,
                    ..base.clone()
                },
                ConfigError::MarginTooLarge,
            ),
            (
                Config {
                    max_entries_per_message: 0,
                    ..base.clone()
                },
                ConfigError::ZeroBatch,
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(config.validate(), Err(expected));
        }
    }
}
