//! The lease as the fence sees it: one deadline the worker stores and every backend reads
//! without a lock, and the fence's counters. The deadline is on CLOCK_BOOTTIME (`clock`); it is
//! 0 whenever this server does not lead, so "the clock is before the deadline" is the whole
//! check, made against the clock of the process that is about to commit or acknowledge.

use crate::clock::boottime_now;
use crate::shared_struct::SharedStruct;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct FenceShared {
    /// CLOCK_BOOTTIME microseconds until which this server holds the lease; 0: it does not lead.
    lease_deadline_us: AtomicU64,
    /// Commits (and prepares) refused since the server started.
    refused: AtomicU64,
    /// Commits whose acknowledgement was withheld by closing the client's connection.
    withheld: AtomicU64,
}

/// SAFETY: `state` points at freshly allocated shared memory of the right size.
unsafe fn init(state: *mut FenceShared) {
    unsafe {
        state.write(FenceShared {
            lease_deadline_us: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            withheld: AtomicU64::new(0),
        })
    };
}

pub static FENCE: SharedStruct<FenceShared> = SharedStruct::new(c"pg_leader fence", init);

/// The worker's side: the lease deadline it holds now, or None when it does not lead. Called
/// with every publish, after the deadline was recorded in the role history.
pub fn publish(deadline_us: Option<u64>) {
    if let Some(s) = FENCE.get() {
        s.lease_deadline_us
            .store(deadline_us.unwrap_or(0), Ordering::Release);
    }
}

/// True while this server holds the lease, on this process's reading of the clock. The clock is
/// read after the deadline: a later reading only shortens the lease.
pub fn holds_now() -> bool {
    let Some(s) = FENCE.get() else {
        return false;
    };
    let deadline = s.lease_deadline_us.load(Ordering::Acquire);
    // The gate is read after the deadline: a worker on its way out closes it before it hands
    // leadership over (`lease_gate`), so a commit can never be acknowledged after that.
    deadline != 0 && !crate::lease_gate::is_closed() && boottime_now().as_micros() < deadline
}

pub(super) fn count_refused() {
    if let Some(s) = FENCE.get() {
        s.refused.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) fn count_withheld() {
    if let Some(s) = FENCE.get() {
        s.withheld.fetch_add(1, Ordering::Relaxed);
    }
}

/// (refused commits, withheld acknowledgements) since the server started.
pub(super) fn counts() -> (u64, u64) {
    FENCE.get().map_or((0, 0), |s| {
        (
            s.refused.load(Ordering::Relaxed),
            s.withheld.load(Ordering::Relaxed),
        )
    })
}
