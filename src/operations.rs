//! SQL functions that change what the cluster does. They are revoked from PUBLIC when the
//! extension is created: superusers and members of `pgleader_admin` may call them.

use crate::api::read_snapshot;
use crate::changes::CHANGES;
use crate::clock::boottime_now;
use crate::shmem::{PublishedRole, PUBLISHED};
use pgrx::prelude::*;

pub(crate) fn fail(
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message, "pg_leader");
    if let Some(d) = detail {
        report = report.set_detail(d);
    }
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// The operations need a worker that runs: a misconfigured or starting one takes no request.
pub(crate) fn require_running_worker() {
    let role = read_snapshot(|p| p.role());
    if matches!(role, PublishedRole::Misconfigured | PublishedRole::Starting) {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the pg_leader worker is {}", role.as_str()),
            None,
            Some("See pg_leader_status().".into()),
        );
    }
}

/// The operations wait for the cluster: a timeout of zero or less could never be met.
pub(crate) fn require_positive_timeout(timeout_ms: i32) {
    if timeout_ms <= 0 {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timeout_ms must be positive: {timeout_ms}"),
            None,
            None,
        );
    }
}

/// Planned switchover: the leader brings `target` (or, when NULL, the most caught-up voter) up
/// to date, gives up its lease, sends TimeoutNow, and this returns the new leader's id once this
/// server has heard from it. On a follower the request is passed on to the leader, and this
/// returns once another node leads a later term (the target, when one was named).
#[pg_extern(volatile)]
fn pg_leader_transfer_leadership(
    target: default!(Option<i32>, "NULL"),
    timeout_ms: default!(i32, 10000),
) -> i32 {
    let p = crate::api::snapshot();
    require_positive_timeout(timeout_ms);
    if p.role() != PublishedRole::Leader && p.leader_id == 0 {
        fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no pg_leader leader is known".into(),
            Some(format!(
                "Node {} is {} in term {}.",
                p.node_id,
                p.role().as_str(),
                p.term
            )),
            Some("Try again once pg_leader_leader_id() is not NULL.".into()),
        );
    }
    if let Some(t) = target {
        if p.membership_of(t) != Some(pg_leader_raft::MemberRole::Voter) {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("node {t} is not a voter of this cluster"),
                None,
                Some("See pg_leader_nodes().".into()),
            );
        }
        if t == p.leader_id {
            fail(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("node {t} already leads"),
                None,
                None,
            );
        }
    }
    let (asked, worker, refusals) = {
        let mut w = PUBLISHED.exclusive();
        w.transfer_asked += 1;
        w.transfer_target = target.unwrap_or(0);
        (w.transfer_asked, w.worker_pid, w.transfer_refusals)
    };
    // SAFETY: kill(2) on the worker's pid; SIGINT wakes its loop, which reads the request.
    unsafe { libc::kill(worker, libc::SIGINT) };
    let start = boottime_now();
    let remaining =
        || (timeout_ms as u64).saturating_sub(boottime_now().saturating_since(start).as_millis());
    // The worker answers in shared memory and broadcasts; so do role, term and leader changes.
    let mut answer = None;
    CHANGES.wait_until(remaining(), || {
        answer = read_snapshot(|p| {
            (p.transfer_answered >= asked).then_some((p.transfer_outcome, p.transfer_chosen))
        });
        answer.is_some()
    });
    let Some((outcome, chosen)) = answer else {
        fail(
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
            format!("the pg_leader worker did not take the request within {timeout_ms} ms"),
            None,
            Some("Check that the worker runs: pg_leader_status().".into()),
        )
    };
    match outcome {
        0 => {}
        crate::worker::TRANSFER_FORWARDED => {
            return wait_for_forwarded(
                p.leader_id,
                p.term,
                target,
                refusals,
                remaining(),
                timeout_ms,
            )
        }
        code => refused(code, chosen),
    }
    let mut now = (0, 0);
    let handed_over = CHANGES.wait_until(remaining(), || {
        let (leader, term, leading) =
            read_snapshot(|p| (p.leader_id, p.term, p.role() == PublishedRole::Leader));
        now = (leader, term);
        leader == chosen && !leading
    });
    if !handed_over {
        let (leader, term) = now;
        let who = if leader != 0 {
            format!("node {leader} leads")
        } else {
            "no leader is known".into()
        };
        fail(
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
            format!("leadership transfer to node {chosen} did not complete within {timeout_ms} ms"),
            Some(format!("Now {who} (term {term}).")),
            Some("The cluster keeps or elects a leader on its own; see pg_leader_status() on each server.".into()),
        );
    }
    chosen
}

// What changes the cluster's behaviour is for superusers and for members of pgleader_admin, a
// role the extension creates once per server (roles are global; "pg_" names are PostgreSQL's
// own; like every role it outlives DROP EXTENSION). Reading functions stay open to everyone.
pgrx::extension_sql!(
    r#"
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgleader_admin') THEN
        CREATE ROLE pgleader_admin NOLOGIN;
    END IF;
END
$$;
REVOKE ALL ON FUNCTION pg_leader_transfer_leadership(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_leader_transfer_leadership(integer, integer) TO pgleader_admin;
"#,
    name = "restrict_transfer_leadership",
    requires = [pg_leader_transfer_leadership]
);

/// Why the leader did not start a switchover, as an error (`chosen`: the target, 0 for none).
fn refused(outcome: i32, chosen: i32) -> ! {
    match outcome {
        3 => fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the target already leads".into(),
            None,
            None,
        ),
        4 => fail(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            "a leadership transfer is already in progress".into(),
            None,
            Some("Wait for it to finish.".into()),
        ),
        1 => fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the leader stopped leading before the transfer could start".into(),
            None,
            None,
        ),
        6 => fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("node {chosen} cannot be leader"),
            Some("It runs with pg_leader.can_be_leader = off.".into()),
            None,
        ),
        7 => fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("the leader is a standby being promoted: no switchover to node {chosen}, another standby, until it is a primary"),
            Some("Two standbys promoted one after the other could both name their new timeline alike. Retry in a moment.".into()),
            None,
        ),
        _ => fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "no voter to hand leadership to".into(),
            None,
            None,
        ),
    }
}

/// After a request was passed on to the leader (`old_leader`, in `old_term`): waits up to
/// `remaining_ms` until another node leads a later term (the target, when one was named) and
/// returns it.
fn wait_for_forwarded(
    old_leader: i32,
    old_term: u64,
    target: Option<i32>,
    refusals_before: u64,
    remaining_ms: u64,
    timeout_ms: i32,
) -> i32 {
    let mut now = (0, 0);
    let mut refusal = None;
    let moved_on = CHANGES.wait_until(remaining_ms, || {
        refusal = read_snapshot(|p| {
            (p.transfer_refusals > refusals_before).then_some(p.transfer_refusal_outcome)
        });
        if refusal.is_some() {
            return true;
        }
        let (leader, term, me, leading) = read_snapshot(|p| {
            (
                p.leader_id,
                p.term,
                p.node_id,
                p.role() == PublishedRole::Leader,
            )
        });
        now = (leader, term);
        let moved = leader != 0 && leader != old_leader && term > old_term;
        let as_asked = target.is_none_or(|t| t == leader);
        // When this node is the new leader, its own role says so.
        let settled = leader != me || leading;
        moved && as_asked && settled
    });
    if let Some(code) = refusal {
        refused(code, target.unwrap_or(0));
    }
    if !moved_on {
        fail(
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
            format!("the switchover passed on to node {old_leader} did not complete within {timeout_ms} ms"),
            Some(format!("Node {} leads term {}.", now.0, now.1)),
            Some("See pg_leader_status() on the leader.".into()),
        );
    }
    now.0
}
