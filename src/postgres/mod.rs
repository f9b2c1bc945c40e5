//! What pg_leader does to PostgreSQL itself.

pub mod failover;
pub mod rejoin;
