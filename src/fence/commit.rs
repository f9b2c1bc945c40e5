//! The check before the commit record: `XACT_EVENT_PRE_COMMIT` and `XACT_EVENT_PRE_PREPARE`
//! callbacks may raise an ERROR (the transaction then aborts), so a writing transaction on a
//! server without the lease fails there with SQLSTATE 25006. `COMMIT PREPARED` finishes another
//! transaction from one that usually has no transaction id of its own, so it is checked in the
//! utility hook before it runs. A commit let through is handed to `ack`, which checks again
//! where the acknowledgement is decided.

use super::{ack, applies, lease, pg_ffi};
use crate::shmem::PublishedRole;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    /// This transaction is a fenced commit: its acknowledgement is checked in `ack`.
    static FENCED_COMMIT: Cell<bool> = const { Cell::new(false) };
    /// This transaction runs `COMMIT PREPARED`, already checked in the utility hook.
    static COMMITTING_PREPARED: Cell<bool> = const { Cell::new(false) };
}

static mut PREVIOUS_UTILITY_HOOK: pg_sys::ProcessUtility_hook_type = None;

pub(super) fn install() {
    // SAFETY: _PG_init of a preloaded library runs in the postmaster before any backend exists;
    // the previous hook is kept and called (hooks chain).
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_transaction_event), std::ptr::null_mut());
        PREVIOUS_UTILITY_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(on_utility);
    }
}

fn wrote() -> bool {
    // SAFETY: reads the current transaction's state; valid inside a transaction callback.
    unsafe { pg_ffi::GetTopTransactionIdIfAny() != pg_sys::TransactionId::INVALID }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => {
            let prepared = COMMITTING_PREPARED.get();
            if !(wrote() || prepared) || !applies() {
                return;
            }
            if !lease::holds_now() {
                let what = if event == pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE {
                    "prepare transaction"
                } else {
                    "commit"
                };
                refuse(what);
            }
            FENCED_COMMIT.set(event == pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT);
        }
        // Runs after the commit record is flushed and after any synchronous-replication wait.
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            if FENCED_COMMIT.replace(false) {
                ack::committed();
            }
            COMMITTING_PREPARED.set(false);
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            FENCED_COMMIT.set(false);
            COMMITTING_PREPARED.set(false);
        }
        _ => {}
    }
}

fn is_commit_prepared(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: PostgreSQL hands the hook a valid planned statement; the node is only read as a
    // TransactionStmt once its tag says it is one.
    unsafe {
        let node = (*pstmt).utilityStmt;
        !node.is_null()
            && (*node).type_ == pg_sys::NodeTag::T_TransactionStmt
            && (*(node as *mut pg_sys::TransactionStmt)).kind
                == pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
    }
}

/// Not guarded itself: it holds nothing to clean up when the statement raises an error, so
/// PostgreSQL's error handling may jump over it, as over any C hook, without a guarded call
/// (and its system call) per utility statement.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn on_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL hands the hook a valid planned statement.
    unsafe { check_commit_prepared(pstmt) };
    // The arguments are PostgreSQL's own, passed on unchanged to the previous hook or, when
    // there is none, to PostgreSQL's own function.
    macro_rules! pass_on {
        ($next:expr) => {
            $next(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            )
        };
    }
    // SAFETY: see above; the hook is read once, set in the postmaster before any backend.
    unsafe {
        match PREVIOUS_UTILITY_HOOK {
            Some(previous) => pass_on!(previous),
            None => pass_on!(pg_ffi::standard_ProcessUtility),
        }
    }
}

/// `COMMIT PREPARED` on a fenced server that does not hold the lease: the fence's ERROR.
#[pg_guard]
unsafe extern "C-unwind" fn check_commit_prepared(pstmt: *mut pg_sys::PlannedStmt) {
    if is_commit_prepared(pstmt) && applies() {
        if !lease::holds_now() {
            refuse("commit prepared transaction");
        }
        COMMITTING_PREPARED.set(true);
    }
}

/// Raises the fence's ERROR for `what` ("commit", "prepare transaction", ...).
fn refuse(what: &str) -> ! {
    lease::count_refused();
    let p = crate::api::snapshot();
    let (message, detail, hint) = match p.role() {
        PublishedRole::Misconfigured => (
            format!("cannot {what}: pg_leader is misconfigured on this server, so this server does not hold the pg_leader leadership"),
            format!("pg_leader_status() reports: {}", p.error().unwrap_or("unknown error")),
            "Fix the setting it names and reload. A server that cannot know whether it leads does not commit writes (pg_leader.fence_writes).".to_string(),
        ),
        role => {
            let detail = match (role, p.leader_id) {
                (PublishedRole::Starting, _) => "pg_leader has not started on this server yet.".to_string(),
                (PublishedRole::Leader, _) => format!(
                    "This server was elected in term {} but its lease has ended.",
                    p.term
                ),
                (_, 0) => format!("No leader is known in term {}.", p.term),
                (_, leader) => format!("The leader is node {leader} in term {}.", p.term),
            };
            (
                format!("cannot {what}: this server does not hold the pg_leader leadership"),
                detail,
                "Write on the leader: libpq's target_session_attrs=read-write finds it. This server commits writes again once it leads.".to_string(),
            )
        }
    };
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        message,
        "pg_leader write fence",
    )
    .set_detail(detail)
    .set_hint(hint)
    .report(PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}
