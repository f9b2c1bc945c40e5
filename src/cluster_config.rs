//! The `pg_leader.*` settings' pure parsing lives in `pg_leader_settings`, shared with the
//! PostgreSQL-free `pg_leader-witness`.

pub use pg_leader_settings::*;
