//! `pg_leader_add_node()` and `pg_leader_remove_node()`: membership changes through the Raft
//! log, for superusers and members of `pgleader_admin`. The local worker starts the change on
//! the leader (or passes it on to the leader); the call then waits until this server sees the
//! change committed, and returns the node's role.

use crate::api::read_snapshot;
use crate::changes::CHANGES;
use crate::clock::boottime_now;
use crate::operations::{fail, require_positive_timeout, require_running_worker};
use crate::shmem::{member_role_name, CHANGE_TIMED_OUT, PUBLISHED};
use pg_leader_raft::{ChangeError, MemberRole};
use pgrx::prelude::*;

/// Adds server `id`, reachable at `address` (`host:port`, its `pg_leader.peers` entry), as a
/// voter (it joins as a non-voter and is promoted once it has caught up) or as a learner.
/// Returns its role once the change is committed: `voter` or `learner`, or `joining` (with a
/// NOTICE) when it has not caught up within the timeout.
#[pg_extern(volatile)]
fn pg_leader_add_node(
    id: i32,
    address: &str,
    voter: default!(bool, true),
    timeout_ms: default!(i32, 10000),
) -> String {
    check_arguments(id, timeout_ms);
    // The same rules as an entry of pg_leader.peers, with the same messages.
    let address = match crate::cluster_config::parse_peers(&format!("{id}={address}")) {
        Ok(peers) if peers.len() == 1 => peers[0].address(),
        Ok(_) => fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid address \"{address}\""),
            Some("Give one address as host:port.".into()),
            None,
        ),
        Err(e) => fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid address \"{address}\""),
            Some(e.detail),
            None,
        ),
    };
    if address.len() > 100 {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "address is too long".into(),
            Some("At most 100 characters.".into()),
            None,
        );
    }
    // Refused here when this server already knows; otherwise the leader decides.
    if let Some(role) = read_snapshot(|p| p.membership_of(id)) {
        fail(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("node {id} is already a member of the cluster"),
            Some(format!("It is a {role}.")),
            Some("See pg_leader_nodes().".into()),
        );
    }
    if read_snapshot(|p| p.nodes().len()) >= crate::shmem::MAX_NODES {
        fail(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "the cluster already has {} members, the most pg_leader supports",
                crate::shmem::MAX_NODES
            ),
            None,
            None,
        );
    }
    let deadline = ask(id, false, &address, voter, timeout_ms);
    let wanted = if voter {
        MemberRole::Voter
    } else {
        MemberRole::Learner
    };
    let role = wait_for_role(id, Some(wanted), deadline);
    if role != Some(wanted) {
        pgrx::notice!(
            "node {id} is {}: it becomes a {wanted} once it has caught up with the leader",
            member_role_name(role)
        );
    }
    member_role_name(role).to_string()
}

/// Removes server `id`, whatever its role. A voter is first demoted (`leaving`) and dropped
/// once it has heard so; removing the leader hands leadership over first. Returns `removed`
/// once the change is committed, or the node's role (with a NOTICE) when the timeout passed
/// first.
#[pg_extern(volatile)]
fn pg_leader_remove_node(id: i32, timeout_ms: default!(i32, 10000)) -> String {
    check_arguments(id, timeout_ms);
    if read_snapshot(|p| p.membership_of(id)).is_none() {
        fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("node {id} is not a member of the cluster"),
            None,
            Some("See pg_leader_nodes().".into()),
        );
    }
    let deadline = ask(id, true, "", false, timeout_ms);
    match wait_for_role(id, None, deadline) {
        None => "removed".to_string(),
        Some(role) => {
            pgrx::notice!(
                "node {id} is still {role}: it is removed once the leader has committed the change"
            );
            role.as_str().to_string()
        }
    }
}

fn check_arguments(id: i32, timeout_ms: i32) {
    if id <= 0 {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("node id must be positive: {id}"),
            None,
            None,
        );
    }
    require_positive_timeout(timeout_ms);
    require_running_worker();
}

/// Hands the change to the worker and waits for the leader's answer; returns the deadline.
fn ask(id: i32, remove: bool, address: &str, voter: bool, timeout_ms: i32) -> u64 {
    let deadline = boottime_now().as_micros() + timeout_ms as u64 * 1000;
    let (asked, worker) = {
        let mut p = PUBLISHED.exclusive();
        p.change_asked += 1;
        p.change_remove = remove;
        p.change_node = id;
        p.set_change_address(address);
        p.change_voter = voter;
        p.change_deadline_us = deadline;
        (p.change_asked, p.worker_pid)
    };
    // SAFETY: kill(2) on the worker's pid; SIGINT wakes its loop, which reads the request.
    unsafe { libc::kill(worker, libc::SIGINT) };
    // A little past the deadline: the worker answers "timed out" itself at the deadline.
    let mut outcome = None;
    CHANGES.wait_until(remaining_ms(deadline) + 1000, || {
        outcome = read_snapshot(|p| (p.change_answered >= asked).then_some(p.change_outcome));
        outcome.is_some()
    });
    let pending = |p: &crate::shmem::Published| {
        p.nodes()
            .iter()
            .find(|n| n.membership().is_some_and(MemberRole::in_transition))
            .map(|n| format!("Node {} is {}.", n.id, member_role_name(n.membership())))
    };
    let code = |e: ChangeError| e.code() as i32;
    match outcome {
        Some(0) => {}
        Some(o) if o == code(ChangeError::InProgress(None)) => fail(
            PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
            "another membership change is in progress".into(),
            read_snapshot(pending),
            Some("Changes are made one at a time: wait for it to finish (see pg_leader_nodes()), or cancel a join that cannot finish with pg_leader_remove_node().".into()),
        ),
        Some(o) if o == code(ChangeError::AlreadyMember(pg_leader_raft::NodeId(0), MemberRole::Voter)) => fail(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("node {id} is already a member of the cluster"),
            read_snapshot(|p| p.membership_of(id)).map(|r| format!("It is a {r}.")),
            Some("See pg_leader_nodes().".into()),
        ),
        Some(o) if o == code(ChangeError::NotMember(pg_leader_raft::NodeId(0))) => fail(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("node {id} is not a member of the cluster"),
            None,
            Some("See pg_leader_nodes().".into()),
        ),
        Some(o) if o == code(ChangeError::AddressInUse(pg_leader_raft::NodeId(0))) => fail(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("address {address} is already used by another member"),
            None,
            Some("See pg_leader_nodes().".into()),
        ),
        Some(o) if o == code(ChangeError::LastVoter) => fail(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("node {id} is the last voter and cannot be removed"),
            None,
            None,
        ),
        Some(CHANGE_TIMED_OUT) | None | Some(_) => fail(
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
            format!("no leader took the membership change within {timeout_ms} ms"),
            Some(read_snapshot(|p| {
                format!("Node {} is {} in term {}.", p.node_id, p.role().as_str(), p.term)
            })),
            Some("The change was not made. Try again once pg_leader_leader_id() is not NULL.".into()),
        ),
    }
    deadline
}

fn remaining_ms(deadline_us: u64) -> u64 {
    deadline_us.saturating_sub(boottime_now().as_micros()) / 1000
}

/// Waits until this server sees `id` in role `want` (None: gone) in a committed configuration,
/// or the deadline passes; returns the role it last saw.
fn wait_for_role(id: i32, want: Option<MemberRole>, deadline_us: u64) -> Option<MemberRole> {
    let mut seen = None;
    CHANGES.wait_until(remaining_ms(deadline_us), || {
        let (role, committed) =
            read_snapshot(|p| (p.membership_of(id), p.membership_index <= p.commit_index));
        seen = role;
        role == want && committed
    });
    seen
}

pgrx::extension_sql!(
    r#"
REVOKE ALL ON FUNCTION pg_leader_add_node(integer, text, boolean, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_leader_add_node(integer, text, boolean, integer) TO pgleader_admin;
REVOKE ALL ON FUNCTION pg_leader_remove_node(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_leader_remove_node(integer, integer) TO pgleader_admin;
"#,
    name = "restrict_membership_changes",
    requires = [
        "restrict_transfer_leadership",
        pg_leader_add_node,
        pg_leader_remove_node
    ]
);
