//! New sessions on a fenced server look read-only: right after authentication, a session of a
//! server that would refuse its commits gets `default_transaction_read_only = on` as its
//! default, before PostgreSQL reports the setting to the client. libpq (PostgreSQL 14 and
//! later) reads that report for `target_session_attrs=read-write` and moves on to the next host.
//! It is a courtesy to clients, not the fence: a session may turn it off (the commit is then
//! refused), and a session opened before this server led keeps it until it reconnects or sets
//! it off.

use super::{lease, on_for_this_server, pg_ffi};
use pgrx::pg_sys;
use pgrx::prelude::*;

static mut PREVIOUS_AUTH_HOOK: pg_ffi::ClientAuthenticationHook = None;

pub(super) fn install() {
    // SAFETY: as in `commit::install`: postmaster, before any backend; hooks chain.
    unsafe {
        PREVIOUS_AUTH_HOOK = pg_ffi::ClientAuthentication_hook;
        pg_ffi::ClientAuthentication_hook = Some(on_authenticated);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_authenticated(port: *mut pg_sys::Port, status: std::ffi::c_int) {
    // SAFETY: PostgreSQL's arguments, passed on unchanged.
    if let Some(previous) = unsafe { PREVIOUS_AUTH_HOOK } {
        unsafe { previous(port, status) };
    }
    // SAFETY: a global set before authentication (replication connections are not fenced).
    let walsender = unsafe { pg_sys::am_walsender };
    if status != pg_sys::STATUS_OK as std::ffi::c_int
        || walsender
        || !on_for_this_server()
        || lease::holds_now()
    {
        return;
    }
    // Source "client", as if the client had asked for it in its startup packet: database and
    // role defaults do not override it, RESET keeps it, the client's own options and SET do.
    // SAFETY: a user-settable setting of this backend, set before the session starts.
    unsafe {
        pg_sys::SetConfigOption(
            c"default_transaction_read_only".as_ptr(),
            c"on".as_ptr(),
            pg_sys::GucContext::PGC_BACKEND,
            pg_sys::GucSource::PGC_S_CLIENT,
        )
    };
}
