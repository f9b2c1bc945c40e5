//! A condition variable in shared memory that the worker broadcasts on whenever the role, the
//! term or the leader it publishes changes, so that sessions waiting for a change
//! (`pg_leader_wait_for_leader()`, `pg_leader_wait_for_change()`) wake at once instead of
//! polling.

use crate::shared_struct::SharedStruct;
use pgrx::pg_sys;

pub type SharedConditionVariable = SharedStruct<pg_sys::ConditionVariable>;

pub static CHANGES: SharedConditionVariable =
    SharedStruct::new(c"pg_leader changes", init_condition_variable);

/// SAFETY: `cv` points at freshly allocated shared memory of the right size.
unsafe fn init_condition_variable(cv: *mut pg_sys::ConditionVariable) {
    unsafe { pg_sys::ConditionVariableInit(cv) };
}

impl SharedConditionVariable {
    /// Wakes every session waiting for a change.
    pub fn broadcast(&self) {
        let cv = self.as_ptr();
        if !cv.is_null() {
            // SAFETY: `cv` points into shared memory initialised at startup.
            unsafe { pg_sys::ConditionVariableBroadcast(cv) };
        }
    }

    /// Sleeps until `done()` holds or `timeout_ms` passes; true when `done()` held. Queries are
    /// cancellable while waiting (ConditionVariableTimedSleep checks for interrupts).
    pub fn wait_until(&self, timeout_ms: u64, mut done: impl FnMut() -> bool) -> bool {
        let cv = self.as_ptr();
        if cv.is_null() {
            // Not preloaded: there is nothing to wait for (`done()` raises the error that says so).
            return done();
        }
        let start = crate::clock::boottime_now();
        let satisfied = loop {
            if done() {
                break true;
            }
            let waited = crate::clock::boottime_now()
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
