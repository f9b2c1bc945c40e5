//! `pg_leader_pause()` and `pg_leader_resume()`: maintenance mode, for superusers and members
//! of `pgleader_admin`. The state is an entry of the Raft log, so every server applies the same
//! one; the local worker appends it on the leader or passes the request on to the leader, and
//! the call returns once this server has applied the state asked for.
//!
//! While it is on, the election runs and every answer (`pg_leader_is_leader()`, the lease, the
//! write fence) stays as it is, but pg_leader does nothing to PostgreSQL by itself: no
//! promotion, no re-pointing, no rejoin, no handover to a primary or away from a sick server.
//! Operators' own requests (`pg_leader_transfer_leadership()`) still work.

use crate::api::read_snapshot;
use crate::changes::CHANGES;
use crate::clock::boottime_now;
use crate::operations::{fail, require_positive_timeout, require_running_worker};
use crate::shmem::PUBLISHED;
use pgrx::prelude::*;

/// Turns maintenance mode on for the whole cluster. Returns true when this call changed the
/// state this server applies, false when it was already paused (nothing is appended then).
#[pg_extern(volatile)]
fn pg_leader_pause(timeout_ms: default!(i32, 10000)) -> bool {
    ask(true, timeout_ms)
}

/// Turns maintenance mode off: the automatic actions run again, from the facts as they are
/// then. Returns true when this call changed the state, false when it was not paused.
#[pg_extern(volatile)]
fn pg_leader_resume(timeout_ms: default!(i32, 10000)) -> bool {
    ask(false, timeout_ms)
}

fn ask(paused: bool, timeout_ms: i32) -> bool {
    require_positive_timeout(timeout_ms);
    require_running_worker();
    if read_snapshot(|p| p.paused == paused) {
        return false;
    }
    let deadline = boottime_now().as_micros() + timeout_ms as u64 * 1000;
    let worker = {
        let mut p = PUBLISHED.exclusive();
        p.maintenance_asked += 1;
        p.maintenance_want = paused;
        p.maintenance_deadline_us = deadline;
        p.worker_pid
    };
    // SAFETY: kill(2) on the worker's pid; SIGINT wakes its loop, which reads the request.
    unsafe { libc::kill(worker, libc::SIGINT) };
    let applied = CHANGES.wait_until(timeout_ms as u64, || read_snapshot(|p| p.paused == paused));
    if !applied {
        let what = if paused { "on" } else { "off" };
        fail(
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
            format!("maintenance mode was not turned {what} within {timeout_ms} ms"),
            Some(read_snapshot(|p| {
                format!(
                    "Node {} is {} in term {}; a request already passed on to the leader may still take effect.",
                    p.node_id,
                    p.role().as_str(),
                    p.term
                )
            })),
            Some("Check pg_leader_status().paused, and try again once pg_leader_leader_id() is not NULL.".into()),
        );
    }
    true
}

pgrx::extension_sql!(
    r#"
REVOKE ALL ON FUNCTION pg_leader_pause(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_leader_pause(integer) TO pgleader_admin;
REVOKE ALL ON FUNCTION pg_leader_resume(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_leader_resume(integer) TO pgleader_admin;
"#,
    name = "restrict_maintenance",
    requires = [
        "restrict_transfer_leadership",
        pg_leader_pause,
        pg_leader_resume
    ]
);
