//! The one clock every process of a machine shares: CLOCK_MONOTONIC, in microseconds. The worker
//! stamps lease deadlines with it and sessions compare against it, so wall-clock jumps cannot
//! stretch a lease.

use pg_leader_raft::Instant;

pub fn monotonic_now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we hand it; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Instant::from_micros(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000)
}
