//! The HTTP endpoints live in `pg_leader_http`, shared with the PostgreSQL-free
//! `pg_leader-witness`.

pub use pg_leader_http::*;
