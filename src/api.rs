//! The SQL functions. They read the worker's published snapshot and the clock, never the network.

use crate::changes::CHANGES;
use crate::clock::boottime_now;
use crate::shmem::{member_role_name, Published, PublishedRole, PUBLISHED};
use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in `_PG_init` when loaded through shared_preload_libraries; backends inherit it at fork.
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

/// The worker's whole snapshot, or the error that explains why there is none.
pub(crate) fn snapshot() -> Published {
    read_snapshot(|p| *p)
}

/// Reads what `read` needs from the snapshot under the shared lock, without copying the rest
/// (the node table is kilobytes; `pg_leader_is_leader()` needs two fields of it).
pub(crate) fn read_snapshot<R>(read: impl FnOnce(&Published) -> R) -> R {
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
    read(&PUBLISHED.share())
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
    lease_holds(lease_deadline(p))
}

/// The lease deadline when this node leads, else 0 (no lease).
fn lease_deadline(p: &Published) -> u64 {
    if p.role() == PublishedRole::Leader {
        p.lease_deadline_us
    } else {
        0
    }
}

use crate::lease_gate::lease_holds;

fn ms_since(us: u64) -> Option<i64> {
    (us != 0).then(|| (boottime_now().as_micros().saturating_sub(us) / 1000) as i64)
}

/// True only on the leader, and only while its lease holds (checked against the clock here, so a
/// stopped worker cannot leave a stale true behind).
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_is_leader() -> bool {
    // The gate and the clock are read after the lock is released: a later reading only
    // shortens the lease.
    lease_holds(read_snapshot(lease_deadline))
}

/// The leader this server knows of; NULL while none is known.
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_leader_id() -> Option<i32> {
    let leader = read_snapshot(|p| p.leader_id);
    (leader != 0).then_some(leader)
}

#[pg_extern(volatile, parallel_safe)]
fn pg_leader_term() -> i64 {
    read_snapshot(|p| p.term) as i64
}

#[pg_extern(volatile, parallel_safe)]
fn pg_leader_node_id() -> i32 {
    read_snapshot(node_id)
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
        name!(membership, String),
        name!(paused, bool),
    ),
> {
    let p = snapshot();
    let now = boottime_now().as_micros();
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
        member_role_name(p.self_membership()).to_string(),
        p.paused,
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
        name!(membership, String),
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
                member_role_name(n.membership()).to_string(),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Datagrams this server's worker rejected since it started, one row per reason: size, not
/// pg_leader, version, other cluster, authentication, unknown sender, replay, malformed.
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_rejections() -> TableIterator<'static, (name!(reason, String), name!(packets, i64))> {
    let counts = read_snapshot(|p| p.rejected_by_reason);
    let rows: Vec<(String, i64)> = pg_leader_wire::Reject::ALL
        .iter()
        .zip(counts)
        .map(|(r, n)| (r.as_str().to_string(), n as i64))
        .collect();
    TableIterator::new(rows)
}

fn check_timeout(timeout_ms: i32, function: &'static str) {
    if timeout_ms < 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timeout_ms must not be negative: {timeout_ms}"),
            function,
        )
        .report(PgLogLevel::ERROR);
    }
}

/// Waits until a leader is known and returns its id. Woken by the worker's broadcast the
/// moment one is published; can be cancelled.
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_wait_for_leader(timeout_ms: default!(i32, 10000)) -> i32 {
    check_timeout(timeout_ms, "pg_leader_wait_for_leader");
    let mut leader = 0;
    let found = CHANGES.wait_until(timeout_ms as u64, || {
        leader = read_snapshot(|p| p.leader_id);
        leader != 0
    });
    if !found {
        let p = snapshot();
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
    leader
}

/// Waits until this node's term differs from `known_term` and returns the new term; returns
/// `known_term` itself when `timeout_ms` passes first. Woken by the worker the moment the term
/// changes, so a failover script needs no polling loop:
/// `SELECT pg_leader_wait_for_change(pg_leader_term())`.
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_wait_for_change(known_term: i64, timeout_ms: default!(i32, 10000)) -> i64 {
    check_timeout(timeout_ms, "pg_leader_wait_for_change");
    let mut term = known_term;
    CHANGES.wait_until(timeout_ms as u64, || {
        term = read_snapshot(|p| p.term) as i64;
        term != known_term
    });
    term
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
            let boot: i64 = f[0].parse().ok()?;
            let wall: i64 = f[1].parse().ok()?;
            let lease: i64 = f[5].parse().ok()?;
            let leader: i32 = f[4].parse().ok()?;
            Some((
                ts(wall)?,
                f[2].parse().ok()?,
                f[3].to_string(),
                (leader != 0).then_some(leader),
                (lease != 0).then(|| ts(wall + (lease - boot))).flatten(),
                f[6].to_string(),
            ))
        })
        .collect();
    TableIterator::new(rows)
}

/// The write fence on this server: the setting, whether a writing commit here would be refused
/// now, commits refused and acknowledgements withheld (connections closed) since it started.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn pg_leader_fence() -> TableIterator<
    'static,
    (
        name!(fence_writes, bool),
        name!(fenced, bool),
        name!(refused_commits, i64),
        name!(withheld_acknowledgements, i64),
    ),
> {
    snapshot();
    let v = crate::fence::view();
    TableIterator::once((
        v.fence_writes,
        v.fenced,
        v.refused_commits as i64,
        v.withheld_acknowledgements as i64,
    ))
}
