//! Automatic failover in the simulator (`promotion`, `failover`): a few thousand seeds of faults
//! aimed at the primary and at failovers under way, every failover invariant checked after
//! every step, and the checks shown to catch a host that breaks a rule. A failing seed replays
//! with `cargo run --release -p pg_leader_raft_sim --bin failover-soak -- --seed N --trace`
//! (with the test's options: `--timelines-reserved`, `--no-fence`, ...).

use pg_leader_raft_sim::failover::{run_failover_seed, FailoverFault, FailoverOptions};
use pg_leader_raft_sim::failover_soak::run_failover_seeds;
use pg_leader_raft_sim::promotion::{HostRules, TimelineRule};

fn with_rules(rules: HostRules) -> FailoverOptions {
    FailoverOptions {
        rules,
        ..FailoverOptions::default()
    }
}

/// Promotions reserve their timeline in the Raft log, and a primary whose log reserves a newer
/// timeline than its own acknowledges nothing.
fn reserving_timelines() -> HostRules {
    HostRules {
        timeline: TimelineRule::Reserved,
        fence_superseded: true,
        ..HostRules::default()
    }
}

/// The first of seeds `0..100` whose run fails, with its violation.
fn first_violation(options: &FailoverOptions) -> Option<(u64, String)> {
    (0..100).find_map(|seed| run_failover_seed(seed, options).err().map(|v| (seed, v)))
}

#[test]
fn failover_seeds_keep_every_invariant_when_promotions_reserve_their_timeline() {
    let seeds = 2_500;
    let summary = run_failover_seeds(0, seeds, 2, &with_rules(reserving_timelines()));
    assert!(
        summary.violations.is_empty(),
        "violations (seed, what): {:?}",
        &summary.violations[..summary.violations.len().min(20)]
    );
    assert!(
        summary.promotions > seeds,
        "few promotions: {}",
        summary.promotions
    );
    // One primary at the start and one at the end: every promotion retires one former
    // primary, which must have been rebuilt as a standby for (c) to hold.
    assert_eq!(summary.rejoins, summary.promotions);
    assert!(summary.standby_rewinds > 0);
    assert!(summary.promotions_interrupted > seeds / 20);
    for fault in FailoverFault::ALL {
        assert!(
            summary.share(fault) >= 10.0,
            "only {:.2}% of seeds exercised {}",
            summary.share(fault),
            fault.name()
        );
    }
    // Replication is asynchronous: the calm failover loses what the primary had acknowledged
    // and not yet shipped. The synchronous quorum must bring this to zero.
    assert!(summary.lost_in_failover > 0);
    assert_eq!(summary.superseded, 0, "fenced by the reservation");
}

#[test]
fn a_former_primary_elected_again_acknowledges_nothing_once_its_log_reserves_a_newer_timeline() {
    // A standby promotes and its server dies mid-way; the former primary comes back and wins
    // the election: on its lease alone it acknowledges commits that its rebuild discards.
    let unfenced = HostRules {
        fence_superseded: false,
        ..reserving_timelines()
    };
    let before = run_failover_seeds(0, 300, 2, &with_rules(unfenced));
    let after = run_failover_seeds(0, 300, 2, &with_rules(reserving_timelines()));
    assert!(before.violations.is_empty() && after.violations.is_empty());
    assert!(before.superseded > 0, "no seed elected a former primary");
    assert_eq!(after.superseded, 0);
}

#[test]
fn promoting_to_the_timeline_postgresql_picks_can_give_two_histories_one_timeline_id() {
    // PostgreSQL takes one past the newest timeline the server knows; a promotion finished
    // after a crash, or by a standby that never streamed from the last primary, takes an id
    // another promotion took. Knowing what the core heard of is not enough either.
    for timeline in [TimelineRule::NextKnown, TimelineRule::AboveHeard] {
        let rules = HostRules {
            timeline,
            ..HostRules::default()
        };
        let (seed, v) = first_violation(&with_rules(rules))
            .unwrap_or_else(|| panic!("{timeline:?}: no violation in 100 seeds"));
        assert!(v.contains("created twice"), "{timeline:?} seed {seed}: {v}");
    }
}

#[test]
fn without_the_write_fence_two_primaries_acknowledge_commits_at_once() {
    let rules = HostRules {
        fence: false,
        ..reserving_timelines()
    };
    let (seed, v) = first_violation(&with_rules(rules)).expect("caught within 100 seeds");
    assert!(v.contains("two primaries acknowledge"), "seed {seed}: {v}");
}

#[test]
fn a_leader_that_promotes_before_it_holds_the_lease_is_caught() {
    // (With a reservation first, its commit takes the round trip that also brings the lease;
    // so does the wait for an entry of its term before it may act at all, which maintenance
    // mode asks for: that rule is off here too.)
    let rules = HostRules {
        promote_needs_lease: false,
        respects_maintenance: false,
        ..HostRules::default()
    };
    let (seed, v) = first_violation(&with_rules(rules)).expect("caught within 100 seeds");
    assert!(v.contains("without holding the lease"), "seed {seed}: {v}");
}

#[test]
fn a_failover_seed_replays_exactly() {
    for nodes in [3, 5, 7] {
        let options = FailoverOptions {
            nodes: Some(nodes),
            ..with_rules(reserving_timelines())
        };
        let a = run_failover_seed(7, &options).expect("seed 7");
        let b = run_failover_seed(7, &options).expect("seed 7 again");
        assert_eq!(a.nodes, nodes);
        assert_eq!(
            (a.faults, a.promotions, a.failover_us, a.lost_in_faults),
            (b.faults, b.promotions, b.failover_us, b.lost_in_faults)
        );
    }
}

mod scenarios {
    //! Single runs that show the model's rules at work, on a calm network.
    use super::reserving_timelines;
    use pg_leader_raft::Duration;
    use pg_leader_raft_sim::cluster::{Cluster, Setup};
    use pg_leader_raft_sim::failover::{converged, failover_cluster, kill_server};
    use pg_leader_raft_sim::promotion::DbState;

    const SECOND: u64 = 1_000_000;

    /// Three servers, server 1 the primary, leading with every standby streaming from it.
    fn settled(seed: u64) -> Cluster {
        let setup = Setup::uniform(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            &[0, 0, 0],
        );
        let mut c = failover_cluster(&setup, 0, reserving_timelines(), seed, false);
        run_until_converged(&mut c);
        assert_eq!(converged(&c), Ok(0), "the primary leads");
        c
    }

    fn run_until_converged(c: &mut Cluster) -> usize {
        let start = c.now;
        loop {
            if let Ok(p) = converged(c) {
                return p;
            }
            assert!(c.now - start < 20 * SECOND, "{:?}", converged(c));
            c.run_until(c.now + 1_000).expect("no violation");
        }
    }

    fn flushed(c: &Cluster, i: usize) -> u64 {
        c.failover.as_ref().unwrap().dbs[i].flushed
    }

    fn state(c: &Cluster, i: usize) -> DbState {
        c.failover.as_ref().unwrap().dbs[i].state
    }

    #[test]
    fn a_primary_whose_worker_died_acknowledges_until_its_lease_ends_then_is_rebuilt() {
        let mut c = settled(1);
        c.run_until(c.now + SECOND / 2).unwrap();
        // The worker dies; PostgreSQL and its sessions run on with the lease it published.
        c.crash(0);
        let lease_end = c.sessions_lease_until(0);
        assert!(lease_end > c.now, "the leader held a lease");
        let before = flushed(&c, 0);
        c.run_until(lease_end - 1_000).unwrap();
        assert!(flushed(&c, 0) > before, "writes on until the lease ends");
        let at_end = flushed(&c, 0);
        c.run_until(lease_end + 3 * SECOND).unwrap();
        assert!(
            flushed(&c, 0) <= at_end + 1_000,
            "fenced once the lease ended"
        );
        assert_eq!(state(&c, 0), DbState::Primary, "still a primary, fenced");
        // A standby took over; the worker restarts and the former primary is rebuilt.
        let new = (1..3).find(|&j| state(&c, j) == DbState::Primary);
        assert!(new.is_some(), "a standby promoted: {:?}", state(&c, 1));
        c.start(0).unwrap();
        let last = run_until_converged(&mut c);
        assert_ne!(last, 0);
        assert_eq!(
            state(&c, 0),
            DbState::Standby {
                upstream: Some(last)
            }
        );
    }

    #[test]
    fn a_promotion_is_finished_by_postgresql_after_its_worker_died() {
        let mut c = settled(2);
        kill_server(&mut c, 0, 100 * SECOND).unwrap();
        let start = c.now;
        let promoting = loop {
            let found = (1..3).find(|&j| matches!(state(&c, j), DbState::Promoting { .. }));
            if let Some(j) = found {
                break j;
            }
            assert!(c.now - start < 10 * SECOND, "no promotion");
            c.run_until(c.now + 100).unwrap();
        };
        c.crash(promoting);
        let start = c.now;
        while state(&c, promoting) != DbState::Primary {
            assert!(c.now - start < 4 * SECOND, "{:?}", state(&c, promoting));
            c.run_until(c.now + 1_000).unwrap();
        }
        assert!(!c.is_up(promoting), "finished without its worker");
        c.start(promoting).unwrap();
        c.start(0).unwrap();
        let last = run_until_converged(&mut c);
        let f = c.failover.as_ref().unwrap();
        assert!(f.timeline(last) >= 2, "the primary is on a new timeline");
        assert_ne!(last, 0, "the former primary was rebuilt");
    }
}

#[test]
fn a_host_that_promotes_during_maintenance_is_caught() {
    let rules = HostRules {
        respects_maintenance: false,
        ..reserving_timelines()
    };
    let (seed, v) = first_violation(&with_rules(rules)).expect("caught within 100 seeds");
    assert!(
        v.contains("while maintenance mode is on"),
        "seed {seed}: {v}"
    );
}
