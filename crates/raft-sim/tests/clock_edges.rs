//! Lease safety at the edge of the clock model: the leader's clock as slow as allowed, everyone
//! else's as fast as allowed, and the leader cut off at every point of its heartbeat cycle. The
//! old lease must end before any new one begins, for every draw of the election timers.
//!
//! And the simulator's clock faults are sharp enough to fail what must fail: under adversarial
//! timers and delays, a drift margin a little short of what the clocks need (P/11 with 5 %
//! drift, or P/10, which covers 5.26 %, with 5.5 %), and a lease counted on a clock that stops
//! while the machine sleeps (`CLOCK_MONOTONIC`). The same runs within the model (P/10, 5 %
//! drift, `CLOCK_BOOTTIME`) keep every invariant.

use pg_leader_raft::{Duration, NodeId};
use pg_leader_raft_sim::cluster::{Cluster, Setup};

const DRIFT: i64 = 50_000;

/// A three-node cluster, node 1 leading on the slowest clock allowed, the others on the fastest.
fn slow_leader(setup: &Setup, seed: u64) -> Cluster {
    let mut c = Cluster::new(setup, seed);
    c.run_until(3_000_000).unwrap();
    let leader = c.agreed_leader().expect("a leader within 3 s").0;
    if leader != 0 {
        c.act(leader, |r, now| r.transfer_leadership(NodeId(1), now))
            .unwrap()
            .unwrap()
            .unwrap();
    }
    c.run_until(3_300_000).unwrap();
    assert_eq!(c.leader_with_lease(), Some(0), "seed {seed}: node 1 leads");
    c
}

/// Cuts the slow leader off at seeds' different points of its heartbeat cycle; returns the
/// violations found, and how many times the majority side elected a new leader.
fn cut_off_slow_leaders(setup: &Setup, seeds: u64) -> (Vec<String>, u64) {
    let mut violations = Vec::new();
    let mut elected_after_cut = 0;
    for seed in 0..seeds {
        let mut c = slow_leader(setup, seed);
        let cut = 3_300_000 + (seed % 100) * 1_000;
        c.run_until(cut).unwrap();
        c.network.isolate(&[0]);
        match c.run_until(cut + 4_000_000) {
            Err(v) => violations.push(format!("seed {seed}: {v}")),
            Ok(()) if matches!(c.leader_with_lease(), Some(l) if l != 0) => elected_after_cut += 1,
            Ok(()) => {}
        }
    }
    (violations, elected_after_cut)
}

#[test]
fn lease_of_a_cut_off_leader_ends_before_the_next_begins() {
    let setup = Setup::uniform(
        Duration::from_millis(100),
        Duration::from_millis(1000),
        &[-DRIFT, DRIFT, DRIFT],
    );
    let (violations, elected_after_cut) = cut_off_slow_leaders(&setup, 400);
    assert!(violations.is_empty(), "{violations:?}");
    assert!(
        elected_after_cut > 300,
        "the majority side should elect: {elected_after_cut}"
    );
}

fn adversarial(drift: i64, margin_divisor: u64) -> Setup {
    Setup {
        adversarial: true,
        margin_divisor,
        ..Setup::uniform(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            &[-drift, drift, drift],
        )
    }
}

#[test]
fn a_drift_margin_a_little_too_small_fails_under_adversarial_timing() {
    for (drift, divisor) in [(DRIFT, 11), (55_000, 10)] {
        let (too_small, _) = cut_off_slow_leaders(&adversarial(drift, divisor), 200);
        assert!(
            !too_small.is_empty(),
            "P/{divisor} with {drift} ppm drift must let a leader be elected under a lease"
        );
    }
    let (product, _) = cut_off_slow_leaders(&adversarial(DRIFT, 10), 200);
    assert!(product.is_empty(), "P/10 must cover 5 %: {product:?}");
}

/// The leader's machine sleeps for three seconds; a new leader is elected meanwhile.
fn leader_sleeps(monotonic_suspend: bool, seed: u64) -> Result<(), String> {
    let setup = Setup {
        monotonic_suspend,
        ..Setup::uniform(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            &[0, 0, 0],
        )
    };
    let mut c = Cluster::new(&setup, seed);
    c.run_until(3_000_000)?;
    let leader = c.agreed_leader().expect("a leader within 3 s").0;
    let wake = c.now + 3_000_000;
    c.suspend(leader, wake);
    c.run_until(wake + 2_000_000)
}

#[test]
fn a_lease_on_a_clock_that_stops_in_suspend_outlives_itself() {
    let mut caught = 0;
    for seed in 0..20 {
        leader_sleeps(false, seed).unwrap_or_else(|v| panic!("boottime, seed {seed}: {v}"));
        if let Err(v) = leader_sleeps(true, seed) {
            assert!(v.contains("lease"), "{v}");
            caught += 1;
        }
    }
    assert!(
        caught >= 15,
        "a stopped clock must keep the lease alive: {caught} of 20"
    );
}
