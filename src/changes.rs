//! A condition variable in shared memory that the worker broadcasts on whenever the role, the
//! term or the leader it publishes changes, so that sessions waiting for a change
//! (`pg_leader_wait_for_leader()`, `pg_leader_wait_for_change()`) wake at once instead of
//! polling.

use pgrx::pg_sys;
use pgrx::shmem::PgSharedMemoryInitialization;
use std::sync::atomic::{AtomicPtr, Ordering};

pub struct SharedConditionVariable {
    name: &'static std::ffi::CStr,
    cv: AtomicPtr<pg_sys::ConditionVariable>,
}

pub static CHANGES: SharedConditionVariable = SharedConditionVariable {
    name: c"pg_leader changes",
    cv: AtomicPtr::new(std::ptr::null_mut()),
};

impl PgSharedMemoryInitialization for SharedConditionVariable {
    type Value = InitialisedInPlace;

    unsafe fn on_shmem_request(&'static self) {
        // SAFETY: called from the shmem request hook, as the trait demands.
        unsafe { pg_sys::RequestAddinShmemSpace(std::mem::size_of::<pg_sys::ConditionVariable>()) };
    }

    unsafe fn on_shmem_startup(&'static self, _value: InitialisedInPlace) {
        let mut found = false;
        // SAFETY: called from the shmem startup hook, where ShmemInitStruct is meant to be used,
        // under AddinShmemInitLock (MainLWLockArray[21]) as PostgreSQL requires; the size is
        // the one requested above.
        unsafe {
            let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
            pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
            let cv = pg_sys::ShmemInitStruct(
                self.name.as_ptr(),
                std::mem::size_of::<pg_sys::ConditionVariable>(),
                &mut found,
            ) as *mut pg_sys::ConditionVariable;
            if !found {
                pg_sys::ConditionVariableInit(cv);
            }
            self.cv.store(cv, Ordering::Release);
            pg_sys::LWLockRelease(init_lock);
        }
    }
}

impl SharedConditionVariable {
    fn get(&self) -> *mut pg_sys::ConditionVariable {
        self.cv.load(Ordering::Acquire)
    }

    /// Wakes every session waiting for a change.
    pub fn broadcast(&self) {
        let cv = self.get();
        if !cv.is_null() {
            // SAFETY: `cv` points into shared memory initialised at startup.
            unsafe { pg_sys::ConditionVariableBroadcast(cv) };
        }
    }

    /// Sleeps until `done()` holds or `timeout_ms` passes; true when `done()` held. Queries are
    /// cancellable while waiting (ConditionVariableTimedSleep checks for interrupts).
    pub fn wait_until(&self, timeout_ms: u64, mut done: impl FnMut() -> bool) -> bool {
        let cv = self.get();
        if cv.is_null() {
            // Not preloaded: there is nothing to wait for (`done()` raises the error that says so).
            return done();
        }
        let start = crate::clock::monotonic_now();
        let satisfied = loop {
            if done() {
                break true;
            }
            let waited = crate::clock::monotonic_now()
                .saturating_since(start)
                .as_millis();
            if waited >= timeout_ms {
                break false;
            }
            // Bounded steps: a latch set by a signal (SIGTERM to a worker) does not end a
            // condition-variable sleep, and a change published without a broadcast (a worker
            // turning misconfigured) is still seen within a step.
            let step = (timeout_ms - waited).min(250) as std::ffi::c_long;
            // SAFETY: the condition variable lives in shared memory for the server's lifetime.
            unsafe { pg_sys::ConditionVariableTimedSleep(cv, step, pg_sys::PG_WAIT_EXTENSION) };
        };
        // SAFETY: ends the sleep begun above (on error, transaction abort does it).
        unsafe { pg_sys::ConditionVariableCancelSleep() };
        satisfied
    }
}

/// The trait wants a value to store; the variable is initialised in place by PostgreSQL's own
/// function instead.
#[derive(Default)]
pub struct InitialisedInPlace;

// SAFETY: a unit value, never stored.
unsafe impl pgrx::PGRXSharedMemory for InitialisedInPlace {}
