//! The SQL functions. They read the worker's published snapshot and the clock, never the network.

use crate::clock::monotonic_now;
use crate::shmem::{Published, PublishedRole, PUBLISHED};
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in `_PG_init` when loaded through shared_preload_libraries; backends inherit it at fork.
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

/// The worker's snapshot, or the error that explains why there is none.
pub(crate) fn snapshot() -> Published {
    if !PRELOADED.load(Ordering::Relaxed) {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_leader must be loaded via shared_preload_libraries",
            "pg_leader",
        )
        .set_hint(
            "Add pg_leader to shared_preload_libraries in postgresql.conf and restart the server.",
        )
        .report(PgLogLevel::ERROR);
    }
    *PUBLISHED.share()
}

/// The node id the worker published, or the setting before the worker has published.
fn node_id(p: &Published) -> i32 {
    if p.node_id != 0 {
        p.node_id
    } else {
        crate::settings::NODE_ID.get()
    }
}

fn has_lease(p: &Published) -> bool {
    p.role() == PublishedRole::Leader && monotonic_now().as_micros() < p.lease_deadline_us
}

fn ms_since(us: u64) -> Option<i64> {
    (us != 0).then(|| (monotonic_now().as_micros().saturating_sub(us) / 1000) as i64)
}

/// True only on the leader, and only while its lease holds (checked against the clock here, so a
/// stopped worker cannot leave a stale true behind).
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_is_leader() -> bool {
    has_lease(&snapshot())
}

/// The leader this server knows of; NULL while none is known.
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_leader_id() -> Option<i32> {
    let p = snapshot();
    (p.leader_id != 0).then_some(p.leader_id)
}

#[pg_extern(volatile, parallel_safe)]
fn pg_leader_term() -> i64 {
    snapshot().term as i64
}

#[pg_extern(volatile, parallel_safe)]
fn pg_leader_node_id() -> i32 {
    node_id(&snapshot())
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_status() -> TableIterator<
    'static,
    (
        name!(node_id, i32),
        name!(role, String),
        name!(term, i64),
        name!(leader_id, Option<i32>),
        name!(voted_for, Option<i32>),
        name!(lease_remaining_ms, Option<i64>),
        name!(last_leader_contact_ms, Option<i64>),
        name!(commit_index, i64),
        name!(error, Option<String>),
    ),
> {
    let p = snapshot();
    let now = monotonic_now().as_micros();
    let lease = has_lease(&p).then(|| ((p.lease_deadline_us - now) / 1000) as i64);
    let row = (
        node_id(&p),
        p.role().as_str().to_string(),
        p.term as i64,
        (p.leader_id != 0).then_some(p.leader_id),
        (p.voted_for != 0).then_some(p.voted_for),
        lease,
        ms_since(p.last_leader_contact_us),
        p.commit_index as i64,
        p.error().map(str::to_string),
    );
    TableIterator::once(row)
}

#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_nodes() -> TableIterator<
    'static,
    (
        name!(node_id, i32),
        name!(address, String),
        name!(is_self, bool),
        name!(is_leader, bool),
        name!(last_contact_ms, Option<i64>),
        name!(match_index, i64),
        name!(packets_in, i64),
        name!(packets_out, i64),
        name!(packets_rejected, i64),
    ),
> {
    let p = snapshot();
    let rows: Vec<_> = p
        .nodes()
        .iter()
        .map(|n| {
            (
                n.id,
                n.address().to_string(),
                n.id == p.node_id,
                n.id == p.leader_id,
                ms_since(n.last_contact_us),
                n.match_index as i64,
                n.packets_in as i64,
                n.packets_out as i64,
                n.packets_rejected as i64,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Waits until a leader is known and returns its id; sleeps on the latch in short steps and
/// can be cancelled.
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_wait_for_leader(timeout_ms: default!(i32, 10000)) -> i32 {
    if timeout_ms < 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timeout_ms must not be negative: {timeout_ms}"),
            "pg_leader_wait_for_leader",
        )
        .report(PgLogLevel::ERROR);
    }
    let start = monotonic_now();
    loop {
        let p = snapshot();
        if p.leader_id != 0 {
            return p.leader_id;
        }
        let waited = monotonic_now().saturating_since(start).as_millis();
        if waited >= timeout_ms as u64 {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                format!("no pg_leader leader known after {timeout_ms} ms"),
                "pg_leader_wait_for_leader",
            )
            .set_detail(format!(
                "This node is {} in term {}.",
                p.role().as_str(),
                p.term
            ))
            .set_hint("Check pg_leader_status() and pg_leader_nodes() on each server.")
            .report(PgLogLevel::ERROR);
        }
        let step = (timeout_ms as u64 - waited).min(10) as std::ffi::c_long;
        // SAFETY: MyLatch is this backend's own latch; WaitLatch and ResetLatch are the standard
        // way for a backend to sleep interruptibly.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                step,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}

/// This server's role history, newest last: every role change and lease extension the worker
/// recorded in `pg_leader.history` (see the `history` module).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_history() -> TableIterator<
    'static,
    (
        name!(at, pgrx::datum::TimestampWithTimeZone),
        name!(term, i64),
        name!(role, String),
        name!(leader_id, Option<i32>),
        name!(lease_until, Option<pgrx::datum::TimestampWithTimeZone>),
        name!(cause, String),
    ),
> {
    snapshot();
    let dir = crate::settings::NodeSettings::state_dir();
    let mut text = std::fs::read_to_string(dir.join(format!("{}.1", crate::history::HISTORY_FILE)))
        .unwrap_or_default();
    text.push_str(
        &std::fs::read_to_string(dir.join(crate::history::HISTORY_FILE)).unwrap_or_default(),
    );
    // Unix microseconds to a PostgreSQL timestamp (microseconds since 2000-01-01).
    let ts = |unix_us: i64| {
        pgrx::datum::TimestampWithTimeZone::try_from(unix_us - 946_684_800_000_000).ok()
    };
    let rows: Vec<_> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 7 {
                return None;
            }
            let mono: i64 = f[0].parse().ok()?;
            let wall: i64 = f[1].parse().ok()?;
            let lease: i64 = f[5].parse().ok()?;
            let leader: i32 = f[4].parse().ok()?;
            Some((
                ts(wall)?,
                f[2].parse().ok()?,
                f[3].to_string(),
                (leader != 0).then_some(leader),
                (lease != 0).then(|| ts(wall + (lease - mono))).flatten(),
                f[6].to_string(),
            ))
        })
        .collect();
    TableIterator::new(rows)
}
