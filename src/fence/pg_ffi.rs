//! The few PostgreSQL 15 declarations the fence needs that pgrx does not bind (from
//! `libpq/libpq.h`, `libpq/auth.h` and `libpq/libpq-be.h`), and raw declarations of functions
//! called on every commit. pgrx's bindings guard each call with `sigsetjmp` saving the signal
//! mask, a system call (1.2 µs measured here): twice per commit was a cost pgbench could see.
//! The functions declared raw below cannot raise an error, or (`standard_ProcessUtility`) are
//! called from a frame with nothing to clean up, as PostgreSQL's own hooks call them.

use pgrx::pg_sys;
use std::ffi::{c_char, c_int};

/// `PQcommMethods` (libpq/libpq.h): how a backend talks to its client; `pq_flush()` and
/// `pq_putmessage()` call through it.
#[repr(C)]
pub struct PQcommMethods {
    pub comm_reset: Option<unsafe extern "C-unwind" fn()>,
    pub flush: Option<unsafe extern "C-unwind" fn() -> c_int>,
    pub flush_if_writable: Option<unsafe extern "C-unwind" fn() -> c_int>,
    pub is_send_pending: Option<unsafe extern "C-unwind" fn() -> bool>,
    pub putmessage: Option<unsafe extern "C-unwind" fn(c_char, *const c_char, usize) -> c_int>,
    pub putmessage_noblock: Option<unsafe extern "C-unwind" fn(c_char, *const c_char, usize)>,
}

pub type ClientAuthenticationHook = Option<unsafe extern "C-unwind" fn(*mut pg_sys::Port, c_int)>;

extern "C-unwind" {
    pub static mut PqCommMethods: *const PQcommMethods;
    pub static mut ClientAuthentication_hook: ClientAuthenticationHook;
    /// Reads the current transaction's state; never raises an error.
    pub fn GetTopTransactionIdIfAny() -> pg_sys::TransactionId;
    /// Reads shared memory (a cached local once recovery has ended); never raises an error.
    pub fn RecoveryInProgress() -> bool;
    #[allow(clippy::too_many_arguments)]
    pub fn standard_ProcessUtility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// The client socket of this backend: `Port.sock`, the struct's first member (pgrx declares
/// `Port` opaque).
///
/// # Safety
/// `port` must be this backend's `MyProcPort`, not null.
pub unsafe fn port_socket(port: *mut pg_sys::Port) -> c_int {
    unsafe { *(port as *const c_int) }
}
