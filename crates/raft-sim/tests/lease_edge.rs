//! Lease safety at the edge of the clock model: the leader's clock as slow as allowed, everyone
//! else's as fast as allowed, and the leader cut off right after a heartbeat round. The old lease
//! must end before any new one begins, for every draw of the election timers.

use pg_leader_raft::{Duration, NodeId};
use pg_leader_raft_sim::cluster::Cluster;

const DRIFT: i64 = 50_000; // 5 %: inside what the default margin (T/10) covers.

#[test]
fn lease_of_a_cut_off_leader_ends_before_the_next_begins() {
    let mut elected_after_cut = 0;
    for seed in 0..400u64 {
        let mut c = Cluster::with_drifts(
            Duration::from_millis(100),
            Duration::from_millis(1000),
            &[-DRIFT, DRIFT, DRIFT],
            seed,
        );
        // Let a leader emerge, then hand leadership to node 1, the one with the slow clock.
        c.run_until(3_000_000).unwrap();
        let leader = c.agreed_leader().expect("a leader within 3 s").0;
        if leader != 0 {
            c.act(leader, |r, now| r.transfer_leadership(NodeId(1), now))
                .unwrap()
                .unwrap()
                .unwrap();
        }
        c.run_until(3_300_000).unwrap();
        assert_eq!(
            c.leader_with_lease(),
            Some(0),
            "seed {seed}: node 1 should lead"
        );
        // Cut it off at some point of its heartbeat cycle.
        let cut = 3_300_000 + (seed % 100) * 1_000;
        c.run_until(cut).unwrap();
        c.network.isolate(&[0]);
        // Any violation surfaces as an error from the checks run at every step.
        c.run_until(cut + 4_000_000)
            .unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        if matches!(c.leader_with_lease(), Some(l) if l != 0) {
            elected_after_cut += 1;
        }
    }
    assert!(
        elected_after_cut > 300,
        "the majority side should elect: {elected_after_cut}"
    );
}
