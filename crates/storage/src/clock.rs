//! The one clock every process of a machine shares: CLOCK_BOOTTIME, in microseconds. The worker
//! stamps lease deadlines with it and sessions compare against it, so wall-clock jumps cannot
//! stretch a lease, and neither can a system suspend: CLOCK_MONOTONIC stops while the machine
//! sleeps, so a lease counted on it would outlive itself after a resume while the other servers'
//! clocks ran on (design invariant 7).

use pg_leader_raft::Instant;

pub fn boottime_now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we hand it; CLOCK_BOOTTIME exists on every
    // Linux since 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Instant::from_micros(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`): `CLOCK_BOOTTIME` readings compare only
/// within one boot. None when it cannot be read.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}
