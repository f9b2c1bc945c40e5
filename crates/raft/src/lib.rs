//! The pure Raft core of pg_leader.
//!
//! No I/O, no clock, no global randomness: messages and ticks go in, and a [`Ready`] comes out
//! with what to persist, what to send and what was committed. Everything can be replayed from a
//! seed. See `lease` for the lease model that `pg_leader_is_leader()` relies on.
//!
//! The role selects the step and tick functions through function pointers; `become_*` in
//! [`raft`] sets role, step and tick together, and refuses illegal transitions loudly.

mod campaign_order;
pub mod config;
pub mod departure;
pub mod lease;
pub mod log;
pub mod maintenance;
pub mod membership;
pub mod message;
pub mod preference;
pub mod progress;
pub mod quorum;
pub mod raft;
pub mod ready;
pub mod restart;
pub mod rng;
mod roles;
pub mod succession;
pub mod synchronous;
pub mod types;
mod wal_sample;

pub use config::{Config, ConfigError};
pub use departure::Departure;
pub use lease::{DEFAULT_MARGIN_DIVISOR, MAX_CLOCK_DRIFT_PPM};
pub use maintenance::{Maintenance, MaintenanceError};
pub use membership::{ChangeError, Member, MemberRole, Membership, MembershipChange};
pub use message::{Body, Entry, EntryData, Message, WalPosition, PROTOCOL_VERSION};
pub use preference::NotPreferred;
pub use raft::{
    Dropped, NotLeader, Raft, Status, TransferError, MAX_ADVERT_LEN, MAX_LEASE, MAX_TERM_JUMP,
};
pub use ready::{Cause, Event, HardState, PersistedState, Ready, Role};
pub use restart::EarlierPromises;
pub use rng::{RandomSource, SplitMix64};
pub use types::{Duration, Instant, LogIndex, NodeId, Term};
