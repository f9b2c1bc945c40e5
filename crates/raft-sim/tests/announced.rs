//! Announced crashes (`announced`): a leader whose host announces its death hands over in
//! milliseconds, and the checker counts the lease sessions of a dead worker still read, so a
//! handover that left it to them would be caught.

use pg_leader_raft::Duration;
use pg_leader_raft_sim::cluster::{Cluster, Setup};

fn calm_cluster_with_a_leader(seed: u64) -> (Cluster, usize) {
    let setup = Setup::uniform(
        Duration::from_millis(100),
        Duration::from_millis(1000),
        &[0, 0, 0],
    );
    let mut c = Cluster::new(&setup, seed);
    for _ in 0..10_000 {
        if let Some((leader, _)) = c.agreed_leader() {
            return (c, leader);
        }
        let next = c.now + 1_000;
        c.run_until(next).unwrap();
    }
    panic!("no leader within 10 s");
}

/// Runs until a node other than `old` holds a lease; returns the real time that took.
fn time_to_new_lease(c: &mut Cluster, old: usize) -> Result<u64, String> {
    let start = c.now;
    while c.now - start < 10_000_000 {
        if c.leader_with_lease().is_some_and(|l| l != old) {
            return Ok(c.now - start);
        }
        let next = c.now + 100;
        c.run_until(next)?;
    }
    Err("no new lease".into())
}

#[test]
fn an_announced_leader_crash_hands_over_in_milliseconds() {
    for seed in 0..20 {
        let (mut c, leader) = calm_cluster_with_a_leader(seed);
        c.announced_crash(leader).unwrap();
        let took = time_to_new_lease(&mut c, leader).unwrap();
        assert!(took < 10_000, "seed {seed}: {took} us");
    }
}

#[test]
fn a_silent_leader_crash_leaves_its_lease_to_its_sessions_until_the_promise_ends() {
    let (mut c, leader) = calm_cluster_with_a_leader(1);
    c.crash(leader);
    let took = time_to_new_lease(&mut c, leader).unwrap();
    assert!(took > 900_000, "{took} us");
}

#[test]
fn a_handover_that_leaves_the_lease_to_sessions_is_caught() {
    let (mut c, leader) = calm_cluster_with_a_leader(2);
    // A worker that stops publishing and hands over, but never takes the lease away from its
    // sessions: the lease they read and the new leader's overlap.
    c.nodes[leader].lease_gate_closed = true;
    c.act(leader, |r, now| r.depart(now)).unwrap();
    c.nodes[leader].lease_gate_closed = false;
    c.crash(leader);
    let outcome = time_to_new_lease(&mut c, leader);
    let violation = outcome.unwrap_err();
    assert!(
        violation.contains("hold a lease at the same instant"),
        "{violation}"
    );
}
