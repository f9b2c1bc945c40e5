//! Ten thousand seeds of random faults (crashes, quick restarts, pauses, partitions of every
//! shape, loss, duplication, delay, clock drift, transfers, proposals) on clusters of 1, 3, 5 and
//! 7 nodes. Every invariant is checked after every step; a failure names its seed, which replays
//! exactly with `cargo run --release -p pg_leader_raft_sim --bin raft-soak -- --seed N --trace`
//! (add `--heartbeat 25 --election-timeout 150 --fault-phase 2000` for the fast-timing seeds).

use pg_leader_raft_sim::scenario::{run_seed, Options};
use pg_leader_raft_sim::soak::run_seeds;

#[test]
fn ten_thousand_seeds_keep_every_invariant() {
    let summary = run_seeds(0, 10_000, 2, &Options::default());
    assert_eq!(summary.seeds, 10_000);
    assert!(
        summary.violations.is_empty(),
        "violations (seed, what): {:?}",
        summary.violations
    );
    assert!(
        summary.faults > 10_000 * 5,
        "too few faults injected: {}",
        summary.faults
    );
    assert!(
        summary.elections > 10_000,
        "too few elections: {}",
        summary.elections
    );
}

#[test]
fn fast_timings_keep_every_invariant() {
    let options = Options {
        heartbeat: pg_leader_raft::Duration::from_millis(25),
        election_timeout: pg_leader_raft::Duration::from_millis(150),
        max_fault_phase: 2_000_000,
        ..Options::default()
    };
    let summary = run_seeds(1_000_000, 2_000, 2, &options);
    assert!(
        summary.violations.is_empty(),
        "violations (seed, what): {:?}",
        summary.violations
    );
}

#[test]
fn every_cluster_size_is_exercised_and_a_seed_replays_exactly() {
    for nodes in [1, 3, 5, 7] {
        let options = Options {
            nodes: Some(nodes),
            ..Options::default()
        };
        let a = run_seed(42, &options).expect("seed 42");
        let b = run_seed(42, &options).expect("seed 42 again");
        assert_eq!(a.nodes, nodes);
        assert_eq!(
            (a.events, a.faults, a.elections, a.recovery_us),
            (b.events, b.faults, b.elections, b.recovery_us)
        );
        assert_eq!(a.failover_us, b.failover_us);
    }
}
