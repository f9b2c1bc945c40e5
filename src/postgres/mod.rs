//! What pg_leader does to, and learns from, the local PostgreSQL.

pub mod health;
