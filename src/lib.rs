//! pg_leader: Raft leader election inside PostgreSQL.
//!
//! The election itself lives in the `pg_leader_raft` crate; this crate is the PostgreSQL shell
//! around it.

::pgrx::pg_module_magic!(name, version);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

pub mod cluster_config;
