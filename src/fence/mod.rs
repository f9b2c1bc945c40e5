//! The write fence (`pg_leader.fence_writes`): on a server that is not in recovery and does not
//! hold the lease, a transaction that wrote cannot commit, and no commit is acknowledged to a
//! client once the lease has ended (design invariant 8).
//!
//! Three checks, each against the lease deadline and the clock read in the committing backend
//! itself, so a stuck or dead worker cannot keep a primary writable:
//! - before the commit record (`commit`): `COMMIT`, `PREPARE TRANSACTION` and `COMMIT PREPARED`
//!   fail with SQLSTATE 25006, and the transaction rolls back;
//! - after the commit record and immediately before the acknowledgement leaves (`ack`): an ERROR
//!   there would be a PANIC, so a lease that ended meanwhile cuts the client's connection and
//!   the client never sees a success;
//! - when a session starts (`session`): it begins read-only, so that clients looking for a
//!   writable server (libpq's `target_session_attrs=read-write`) move on.
//!
//! Only sessions and background workers are fenced: walsenders, autovacuum (its writes are
//! housekeeping no client waits for, and wraparound protection must go on), the notifier worker
//! and standalone backends are not, nor are servers in recovery. A server whose
//! `pg_leader.node_id` is unset does not run pg_leader and is not fenced (a WARNING says so at
//! start); a configured server that cannot know whether it leads (misconfigured, starting) is.

mod ack;
mod commit;
pub mod lease;
mod pg_ffi;
mod session;
mod sync_wait;

use crate::settings;
use pgrx::pg_sys;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by a background worker of ours whose writes are not a client's (the notifier).
static EXEMPT_PROCESS: AtomicBool = AtomicBool::new(false);

/// Called in `_PG_init` of the postmaster: every backend inherits the hooks at fork.
pub fn install() {
    commit::install();
    session::install();
    if settings::NODE_ID.get() <= 0 {
        pgrx::warning!(
            "pg_leader.node_id is not set: pg_leader does not run on this server and does not fence its writes"
        );
    }
}

/// This process commits nothing a client waits for: never fence it.
pub fn exempt_this_process() {
    EXEMPT_PROCESS.store(true, Ordering::Relaxed);
}

/// Whether the fence is on for this server in its present state: on, pg_leader configured,
/// not in recovery.
fn on_for_this_server() -> bool {
    // SAFETY: RecoveryInProgress reads shared memory set up before any backend runs (and
    // caches false once recovery has ended).
    settings::FENCE_WRITES.get()
        && settings::NODE_ID.get() > 0
        && !unsafe { pg_ffi::RecoveryInProgress() }
}

/// Whether this process's commits are fenced: client backends and background workers other
/// than ours, running under a postmaster.
fn fenced_process() -> bool {
    // SAFETY: plain globals set at process start.
    unsafe {
        if !pg_sys::IsUnderPostmaster || pg_sys::am_walsender {
            return false;
        }
        match pg_sys::MyBackendType {
            pg_sys::BackendType::B_BACKEND => true,
            pg_sys::BackendType::B_BG_WORKER => !EXEMPT_PROCESS.load(Ordering::Relaxed),
            _ => false,
        }
    }
}

/// Whether a writing commit in this process must hold the lease right now.
fn applies() -> bool {
    fenced_process() && on_for_this_server()
}

/// What a session sees in `pg_leader_fence()`: the setting, whether a commit here would be
/// refused now, and the counters since the server started.
pub struct FenceView {
    pub fence_writes: bool,
    pub fenced: bool,
    pub refused_commits: u64,
    pub withheld_acknowledgements: u64,
}

pub fn view() -> FenceView {
    let counts = lease::counts();
    FenceView {
        fence_writes: settings::FENCE_WRITES.get(),
        fenced: on_for_this_server() && !lease::holds_now(),
        refused_commits: counts.0,
        withheld_acknowledgements: counts.1,
    }
}
