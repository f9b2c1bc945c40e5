//! Ten thousand seeds of random faults (crashes, quick restarts, pauses, partitions of every
//! shape, loss, duplication, delay, clock drift, transfers, proposals, membership changes, and
//! every fault of `Faults`: mixed and reloaded timings, voters that cannot lead, clock rate
//! changes and suspends, late messages, lost and failed writes, slow fsync, moving WAL
//! positions, proposal bursts, campaign nudges, adversarial timers and delays) on clusters of
//! 1, 3, 5 and 7 nodes with up to two spare servers to add. Every invariant is checked after
//! every step; a failure names its seed, which replays
//! exactly with `cargo run --release -p pg_leader_raft_sim --bin raft-soak -- --seed N --trace`
//! (add `--heartbeat 25 --election-timeout 150 --fault-phase 2000` for the fast-timing seeds).

use pg_leader_raft_sim::faults::Exercised;
use pg_leader_raft_sim::scenario::{run_seed, Options};
use pg_leader_raft_sim::soak::{run_seeds, Summary};

/// Every fault is reached by a fair share of the seeds (`min_percent`), or the soak proves
/// little about it.
fn assert_every_fault_exercised(summary: &Summary, min_percent: f64) {
    for fault in Exercised::ALL.into_iter().filter(|f| !f.is_breakdown()) {
        assert!(
            summary.share(fault) >= min_percent,
            "only {:.2}% of seeds exercised {}",
            summary.share(fault),
            fault.name()
        );
    }
}

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
    // Fewer than with the old faults alone (4,667): servers that keep promises of up to ten
    // default timeouts leave longer stretches without a leader to accept a change (2,586).
    assert!(
        summary.membership_changes > 2_000,
        "too few membership changes: {}",
        summary.membership_changes
    );
    assert_every_fault_exercised(&summary, 5.0);
}

#[test]
fn a_configuration_that_moves_two_voters_at_once_is_caught() {
    use pg_leader_raft::{Entry, EntryData, LogIndex, Membership, NodeId, Term};
    let config =
        |ids: &[u32]| Membership::of_voters(ids.iter().map(|i| (NodeId(*i), String::new())));
    let entry = |index: u64, ids: &[u32]| Entry {
        term: Term(1),
        index: LogIndex(index),
        data: EntryData::Membership(config(ids)),
    };
    let mut checker = pg_leader_raft_sim::checker::Checker::default();
    let bootstrap = config(&[1, 2, 3]);
    let one_at_a_time = [entry(1, &[1, 2, 3]), entry(2, &[1, 2, 3, 4])];
    assert!(checker
        .configurations_stored(NodeId(1), &bootstrap, &one_at_a_time, LogIndex(1))
        .is_ok());
    let two_at_once = [entry(1, &[1, 2, 3]), entry(2, &[1, 2, 3, 4, 5])];
    let violation = checker
        .configurations_stored(NodeId(1), &bootstrap, &two_at_once, LogIndex(2))
        .unwrap_err();
    assert!(violation.contains("moves 2 voters"), "{violation}");
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
    // Two-second fault phases reach fewer faults per seed.
    assert_every_fault_exercised(&summary, 2.0);
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

#[test]
fn announced_crashes_keep_every_invariant_and_hand_over_in_milliseconds() {
    let options = Options {
        nodes: Some(3),
        ..Options::default()
    };
    let summary = run_seeds(0, 300, 2, &options);
    assert!(
        summary.violations.is_empty(),
        "violations (seed, what): {:?}",
        summary.violations
    );
    assert!(
        summary.announced_crashes > 150,
        "too few announced crashes: {}",
        summary.announced_crashes
    );
    let mut announced = summary.announced_failover_us.clone();
    let mut silent = summary.failover_us.clone();
    announced.sort_unstable();
    silent.sort_unstable();
    // Measured where the silent failover is (three voters or more after the faults).
    assert_eq!(announced.len(), silent.len());
    assert!(
        announced.len() > 150,
        "too few failovers: {}",
        announced.len()
    );
    // A handover needs four one-way trips of at most 2 ms each (TimeoutNow, the vote request,
    // its grant, the first heartbeat's answer); a silent crash waits out the promise (T).
    assert!(*announced.last().unwrap() < 20_000, "{announced:?}");
    let median = |v: &[u64]| v[v.len() / 2];
    assert!(
        median(&silent) > 900_000,
        "silent median {}",
        median(&silent)
    );
}
