//! The check where the acknowledgement is decided. After the commit record an ERROR would be a
//! PANIC, so a commit whose lease ended meanwhile is not acknowledged by closing the client's
//! connection instead (`shutdown(2)` of the socket: the backend then fails to send and exits,
//! and the client sees a lost connection, never a success).
//!
//! The lease is checked at the commit callback and again immediately before the
//! acknowledgement (CommandComplete, ReadyForQuery) goes out: the backend's `PqCommMethods`
//! table is wrapped, so every message put and every flush while an acknowledgement is pending
//! checks first. PostgreSQL sets that table in `pq_init` after fork, so the wrapper is
//! installed lazily, in the first fenced commit of a client backend.
//!
//! With the synchronous quorum, a commit the synchronous standbys have not confirmed (its wait
//! was cancelled, `sync_wait`) is withheld the same way, and counted with the others.

use super::lease;
use super::pg_ffi::{self, PQcommMethods};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::Cell;
use std::ffi::{c_char, c_int};

thread_local! {
    /// A fenced commit's acknowledgement has not been flushed to the client yet.
    static ACK_PENDING: Cell<bool> = const { Cell::new(false) };
}

/// PostgreSQL's own table, which the wrapper calls.
static mut ORIGINAL: *const PQcommMethods = std::ptr::null();
static mut WRAPPED: PQcommMethods = PQcommMethods {
    comm_reset: None,
    flush: None,
    flush_if_writable: None,
    is_send_pending: None,
    putmessage: None,
    putmessage_noblock: None,
};

/// A client backend talking to its client over the socket.
fn talks_to_client() -> bool {
    // SAFETY: plain globals of this backend.
    unsafe {
        !pg_sys::MyProcPort.is_null()
            && pg_sys::whereToSendOutput == pg_sys::CommandDest::DestRemote
            && !pg_ffi::PqCommMethods.is_null()
    }
}

/// Called once a fenced commit's record is durable (and replicated, with synchronous commit).
pub(super) fn committed() {
    if !talks_to_client() {
        return;
    }
    install();
    if super::sync_wait::commit_unconfirmed() {
        withhold(
            "pg_leader: the synchronous standbys have not confirmed this commit (its wait was cancelled); the connection was closed without acknowledging it",
        );
    } else if lease::holds_now() {
        ACK_PENDING.set(true);
    } else {
        withhold(LEASE_ENDED);
    }
}

const LEASE_ENDED: &str = "pg_leader: the lease ended while a commit was in flight; the connection was closed without acknowledging it";

fn install() {
    // SAFETY: this backend's own globals, changed from its only thread; the original table is
    // PostgreSQL's static one and outlives the backend.
    unsafe {
        let wrapped = &raw const WRAPPED;
        if pg_ffi::PqCommMethods == wrapped {
            return;
        }
        ORIGINAL = pg_ffi::PqCommMethods;
        WRAPPED = PQcommMethods {
            comm_reset: (*ORIGINAL).comm_reset,
            flush: Some(flush),
            flush_if_writable: Some(flush_if_writable),
            is_send_pending: (*ORIGINAL).is_send_pending,
            putmessage: Some(putmessage),
            putmessage_noblock: Some(putmessage_noblock),
        };
        pg_ffi::PqCommMethods = wrapped;
    }
}

/// The acknowledgement must not leave (`why`): cut the connection so that it never does.
fn withhold(why: &'static str) {
    ACK_PENDING.set(false);
    lease::count_withheld();
    // SAFETY: the backend's own client socket; shutdown only changes its state, and every later
    // send fails (EPIPE), which PostgreSQL handles as a lost client.
    unsafe { libc::shutdown(pg_ffi::port_socket(pg_sys::MyProcPort), libc::SHUT_RDWR) };
    // Server log only (COMMERROR): a message to the client from inside its send path would
    // come back here.
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        why,
        "pg_leader write fence",
    )
    .report(PgLogLevel::LOG_SERVER_ONLY);
}

/// Before anything leaves while an acknowledgement is pending: the lease must still hold.
fn check_before_send() {
    if ACK_PENDING.get() && !lease::holds_now() {
        withhold(LEASE_ENDED);
    }
}

fn original() -> &'static PQcommMethods {
    // SAFETY: set in `install` before the wrapper can be called.
    unsafe { &*ORIGINAL }
}

#[pg_guard]
unsafe extern "C-unwind" fn flush() -> c_int {
    check_before_send();
    // SAFETY: PostgreSQL's own function, as pq_flush() would call it.
    let result = unsafe { original().flush.expect("pq_flush")() };
    if result == 0 {
        ACK_PENDING.set(false);
    }
    result
}

#[pg_guard]
unsafe extern "C-unwind" fn flush_if_writable() -> c_int {
    check_before_send();
    // SAFETY: as for `flush`. A partial flush leaves the acknowledgement pending.
    unsafe { original().flush_if_writable.expect("pq_flush_if_writable")() }
}

#[pg_guard]
unsafe extern "C-unwind" fn putmessage(msgtype: c_char, s: *const c_char, len: usize) -> c_int {
    // The buffer may be flushed from inside when it fills: check before it can.
    check_before_send();
    // SAFETY: PostgreSQL's arguments, passed on unchanged.
    unsafe { original().putmessage.expect("pq_putmessage")(msgtype, s, len) }
}

#[pg_guard]
unsafe extern "C-unwind" fn putmessage_noblock(msgtype: c_char, s: *const c_char, len: usize) {
    check_before_send();
    // SAFETY: as for `putmessage`.
    unsafe {
        original()
            .putmessage_noblock
            .expect("pq_putmessage_noblock")(msgtype, s, len)
    }
}
