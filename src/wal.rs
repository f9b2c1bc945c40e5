//! This server's WAL position, for WAL-aware elections (`pg_leader.wal_aware_election`), and
//! whether its WAL receiver streams (for `/replica`).
//!
//! Read straight from shared memory, the way `pg_current_wal_flush_lsn()` and
//! `pg_last_wal_replay_lsn()` read it, so the worker needs no database connection and the
//! reading costs a spinlock: on a primary the flush position of its timeline, on a standby the
//! replay position. The replay position (not the receive position) is what a standby has
//! applied: a standby with replay paused or far behind counts as behind, since promoting it
//! would first have to replay, or would lose, everything after it. The system identifier comes
//! along: a witness is a database system of its own, whose WAL says nothing of the others'. So
//! does whether the server is in recovery: leadership goes to the writable primary.
//!
//! With `pg_leader.synchronous = quorum` a standby reports what it has flushed instead (the
//! WAL receiver's flush position when it is ahead of the replay): that is what the primary
//! waited for before it acknowledged a commit, so it is the position that covers every
//! acknowledged commit, and what votes must compare (`pg_leader_raft::synchronous`). A standby
//! elected on it replays it all before it is promoted (`postgres::failover`).

use pg_leader_raft::WalPosition;
use pgrx::pg_sys;

pub fn current_position() -> WalPosition {
    let mut timeline: pg_sys::TimeLineID = 0;
    // SAFETY: reads a flag in shared memory; callable by any process attached to it.
    let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
    // SAFETY: both functions only read XLogCtl/XLogRecoveryCtl under their spinlocks; they are
    // meant to be called by any process attached to shared memory.
    let mut lsn = unsafe {
        if in_recovery {
            pg_sys::GetXLogReplayRecPtr(&mut timeline)
        } else {
            pg_sys::GetFlushRecPtr(&mut timeline)
        }
    };
    if in_recovery && crate::settings::synchronous_quorum() {
        let mut received_on: pg_sys::TimeLineID = 0;
        // SAFETY: reads WalRcv under its spinlock, callable by any process.
        let flushed =
            unsafe { pg_sys::GetWalRcvFlushRecPtr(std::ptr::null_mut(), &mut received_on) };
        if (received_on, flushed) > (timeline, lsn) {
            (timeline, lsn) = (received_on, flushed);
        }
    }
    // SAFETY: reads the control file's copy in shared memory, set before any worker starts.
    let system = unsafe { pg_sys::GetSystemIdentifier() };
    WalPosition {
        system,
        timeline,
        lsn,
        in_recovery,
    }
}

/// Whether the WAL receiver is connected to a primary and streaming (what
/// `pg_stat_wal_receiver.status = 'streaming'` shows once its connection is up). PostgreSQL 15
/// sets the state to streaming when the receiver starts, before it connects; `ready_to_display`
/// is set only once the connection is made, and the pid goes back to 0 when it exits.
///
/// The three fields are read without the receiver's spinlock (a macro pgrx cannot call): each is
/// a word written whole, and an answer a moment stale is what a health check gets anyway.
pub fn receiver_streaming() -> bool {
    // SAFETY: WalRcv points at shared memory set up before any worker starts; the volatile reads
    // keep the compiler from caching fields another process writes.
    unsafe {
        let rcv = pg_sys::WalRcv;
        if rcv.is_null() {
            return false;
        }
        std::ptr::read_volatile(&(*rcv).pid) != 0
            && std::ptr::read_volatile(&(*rcv).walRcvState) == pg_sys::WalRcvState::WALRCV_STREAMING
            && std::ptr::read_volatile(&(*rcv).ready_to_display)
    }
}
