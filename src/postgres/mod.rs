//! What pg_leader does to, and learns from, the local PostgreSQL.

pub mod auto_conf;
pub mod failover;
pub mod health;
pub mod rejoin;
pub mod synchronous;
pub mod timeline_history;
