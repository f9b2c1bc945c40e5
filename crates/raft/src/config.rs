//! The core's parameters and the checks that keep them safe.
//!
//! # The lease model
//! A follower that accepts a heartbeat promises to refuse votes to anyone else for the `lease`
//! duration the heartbeat carries (the leader's minimum election timeout `T`), counted on its own
//! clock from the moment it received it. A restarted node makes the same promise for `T` from its
//! start, since it may have made one before it crashed.
//!
//! The leader counts its lease from the *send* time of the newest heartbeat that a majority
//! (itself included) acknowledged, and makes it `T - lease_drift_margin` long on its own clock.
//! Receipt is never earlier than sending, so every member of that majority refuses votes until
//! after the lease ends as long as clock rates differ by at most a factor that the margin covers:
//! with rates within `1 ± ρ` of real time, `margin >= 2ρT / (1 + ρ)` suffices. Any new leader
//! needs a vote from at least one member of that majority, so no two nodes hold a lease at the
//! same instant. The default margin is `T / 10`, which covers ρ up to 5 %; the real clocks
//! of one machine share one rate, and across machines NTP keeps them within 500 ppm.

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
    /// The minimum election timeout `T`; each wait is drawn anew from `[T, 2T)`.
    pub election_timeout: Duration,
    /// How much shorter than `T` the leader's lease is, to cover clock-rate differences.
    pub lease_drift_margin: Duration,
    /// Probe with PreVote before raising the term (thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a majority within `T` steps down (thesis §6.2).
    pub check_quorum: bool,
    /// At most this many entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// Refuse (pre-)votes to candidates whose `WalPosition` is behind this node's.
    pub wal_aware: bool,
}

impl Config {
    /// A configuration with the defaults of `pg_leader.heartbeat_interval` (100 ms) and
    /// `pg_leader.election_timeout` (1000 ms).
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        let election_timeout = Duration::from_millis(1000);
        Config {
            id,
            voters,
            addresses: BTreeMap::new(),
            can_lead: true,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout,
            lease_drift_margin: default_margin(election_timeout),
            pre_vote: true,
            check_quorum: true,
            max_entries_per_message: 64,
            wal_aware: true,
        }
    }

    /// Sets both timings and the default margin that goes with them.
    pub fn with_timing(mut self, heartbeat: Duration, election_timeout: Duration) -> Config {
        self.heartbeat_interval = heartbeat;
        self.election_timeout = election_timeout;
        self.lease_drift_margin = default_margin(election_timeout);
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
        if self.lease_drift_margin >= self.election_timeout {
            return Err(ConfigError::MarginTooLarge);
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        Ok(())
    }

    /// How long the leader's lease lasts past the send time of a majority-acknowledged heartbeat.
    pub fn lease_duration(&self) -> Duration {
        self.election_timeout
            .saturating_sub(self.lease_drift_margin)
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

fn default_margin(election_timeout: Duration) -> Duration {
    Duration::from_micros(election_timeout.as_micros() / 10)
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
                write!(f, "the lease drift margin must be shorter than the election timeout")
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
                    lease_drift_margin: Duration::from_millis(1000),
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
