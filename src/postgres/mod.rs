//! What pg_leader does to, and learns from, the local PostgreSQL.

pub mod failover;
pub mod health;
pub mod rejoin;
pub mod timeline_history;
