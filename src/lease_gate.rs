//! The lease gate: one atomic flag in shared memory, beside the published snapshot, that a
//! worker whose PostgreSQL is dying closes before it hands leadership over. Closing it takes no
//! lock, so it works when a killed backend died holding the snapshot's LWLock, and it is
//! async-signal-safe, so the SIGQUIT handler closes it the moment the postmaster orders the
//! crash exit. Every place that decides on the lease (`pg_leader_is_leader()`, the status, and
//! whatever refuses a commit without the lease) asks `lease_holds`.
//!
//! Why a reader cannot answer true after the gate closed and before a new leader (design,
//! invariant 4): a reader takes the snapshot under the lock, then reads the gate, then the
//! clock. A true answer therefore saw the gate open, so its snapshot was taken before the gate
//! closed, and the worker sends TimeoutNow only after closing it.
//!
//! A worker closes the gate only on its way out. The next worker (after a crash-restart the
//! shared memory is new anyway) opens it once it has published that it does not lead.

use pgrx::PgAtomic;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

pub static LEASE_GIVEN_UP: PgAtomic<AtomicBool> =
    unsafe { PgAtomic::new(c"pg_leader lease given up") };

/// The flag's address, for the signal handler (which must not call anything that can panic).
static FLAG: AtomicPtr<AtomicBool> = AtomicPtr::new(std::ptr::null_mut());

/// Remembers where the flag lives; called by the worker before it installs its handlers.
pub fn attach() {
    let flag: *const AtomicBool = LEASE_GIVEN_UP.get();
    FLAG.store(flag.cast_mut(), Ordering::SeqCst);
}

/// Takes every lease of this server away from readers, for good. Async-signal-safe.
pub fn close() {
    let flag = FLAG.load(Ordering::SeqCst);
    if !flag.is_null() {
        // SAFETY: the address of an AtomicBool in shared memory, mapped for the process's life.
        unsafe { (*flag).store(true, Ordering::SeqCst) };
    }
}

/// Opens the gate again; only a worker that has just published that it does not lead.
pub fn reopen() {
    LEASE_GIVEN_UP.get().store(false, Ordering::SeqCst);
}

pub fn is_closed() -> bool {
    LEASE_GIVEN_UP.get().load(Ordering::SeqCst)
}

/// The lease whose deadline was read from the snapshot holds now: the gate is open and the
/// clock is before the deadline (both read after the snapshot; see the module documentation).
pub fn lease_holds(deadline_us: u64) -> bool {
    deadline_us != 0 && !is_closed() && crate::clock::boottime_now().as_micros() < deadline_us
}
