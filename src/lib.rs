//! pg_leader: Raft leader election inside PostgreSQL.
//!
//! The election itself lives in the `pg_leader_raft` crate; this crate is the PostgreSQL shell
//! around it: settings, shared memory, the background worker and the SQL functions.

use changes::CHANGES;
use fence::lease::FENCE;
use lease_gate::LEASE_GIVEN_UP;
use pgrx::prelude::*;
use shmem::PUBLISHED;
use std::sync::atomic::Ordering;

::pgrx::pg_module_magic!(name, version);

pub mod api;
pub mod changes;
pub mod clock;
pub mod cluster_config;
pub mod fence;
pub mod history;
pub mod http;
pub mod lease_gate;
pub mod maintenance_ops;
pub mod membership_ops;
pub mod notifier;
pub mod operations;
pub mod postgres;
pub mod role_hook;
pub mod settings;
pub mod shared_struct;
pub mod shmem;
pub mod wal;
pub mod worker;

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a plain global set by PostgreSQL while it loads shared_preload_libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        // Loaded by CREATE EXTENSION or a function call alone: the functions explain what to do.
        return;
    }
    settings::define();
    pgrx::pg_shmem_init!(PUBLISHED);
    pgrx::pg_shmem_init!(CHANGES);
    pgrx::pg_shmem_init!(LEASE_GIVEN_UP);
    pgrx::pg_shmem_init!(FENCE);
    fence::install();
    worker::register();
    notifier::register();
    api::PRELOADED.store(true, Ordering::Relaxed);
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
