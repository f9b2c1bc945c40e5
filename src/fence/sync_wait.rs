//! A commit whose synchronous-replication wait was cancelled (statement timeout,
//! `pg_cancel_backend`, a client gone, a terminated backend): PostgreSQL warns ("canceling wait
//! for synchronous replication ... might not have been replicated to the standby") and goes on
//! to acknowledge a commit no standby confirmed; another server can then be elected without it.
//! With `pg_leader.synchronous = quorum` the fence compares the commit's end with the position
//! the synchronous standbys have confirmed (`WalSndCtl->lsn`, which the walsenders advance
//! before they release waiters) and, when it is not covered, withholds the acknowledgement as
//! it does when the lease ended (`ack`): the client sees a lost connection, never a success.

use pgrx::pg_sys;

/// This transaction's commit is past what the synchronous standbys confirmed, although the
/// session asked to wait for them.
pub(super) fn commit_unconfirmed() -> bool {
    if !crate::settings::synchronous_quorum() {
        return false;
    }
    // SAFETY: this backend's own globals, and a word of WalSndCtl (shared memory set up before
    // any backend) read whole; a stale value can only make a confirmed commit look unconfirmed.
    unsafe {
        if pg_sys::synchronous_commit
            < pg_sys::SyncCommitLevel::SYNCHRONOUS_COMMIT_REMOTE_FLUSH as std::ffi::c_int
        {
            return false;
        }
        let names = pg_sys::SyncRepStandbyNames;
        if names.is_null() || *names == 0 || pg_sys::WalSndCtl.is_null() {
            return false;
        }
        let confirmed = std::ptr::read_volatile(
            &(*pg_sys::WalSndCtl).lsn[pg_sys::SYNC_REP_WAIT_FLUSH as usize],
        );
        pg_sys::XactLastCommitEnd > confirmed
    }
}
