//! A deterministic simulator for the pg_leader Raft core. A run is a function of its seed alone:
//! a failing seed replays exactly, with `raft-soak --seed N --trace`.

pub mod announced;
pub mod checker;
pub mod clock;
pub mod cluster;
pub mod database;
pub mod failover;
pub mod failover_checks;
pub mod failover_soak;
pub mod faults;
pub mod maintenance;
pub mod network;
pub mod preferred;
pub mod promises;
pub mod promotion;
pub mod scenario;
pub mod setup;
pub mod soak;
pub mod timelines;
