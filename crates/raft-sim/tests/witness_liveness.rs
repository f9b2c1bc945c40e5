//! Invariant 6 with a voter that cannot lead: two PostgreSQL servers and a witness. The standby
//! is down for a while; meanwhile the primary restarts and is re-elected with the witness's vote,
//! so the witness's log now ends in a term the standby never saw. Then the primary's host is
//! lost. The standby and the witness are a majority of live voters that includes a server
//! allowed to lead: a leader must appear.

use pg_leader_raft::{Duration, Role};
use pg_leader_raft_sim::cluster::{Cluster, Setup};

#[test]
fn a_witness_with_a_newer_log_does_not_keep_the_standby_from_leading() {
    for seed in 0..20 {
        let setup = Setup {
            can_lead: vec![true, true, false],
            ..Setup::uniform(
                Duration::from_millis(100),
                Duration::from_millis(1000),
                &[0, 0, 0],
            )
        };
        let mut c = Cluster::new(&setup, seed);
        c.run_until(3_000_000).unwrap();
        let (primary, _) = c.agreed_leader().expect("a leader within 3 s");
        let standby = 1 - primary;
        c.crash(standby);
        // The primary's process restarts; the witness re-elects it in a later term.
        c.crash_for(primary, 100_000);
        c.run_until(8_000_000).unwrap();
        let leader = c.leader_with_lease().expect("the primary is re-elected");
        assert_eq!(leader, primary, "seed {seed}");
        // Its host is lost for good; the standby comes back.
        c.crash(primary);
        c.start(standby).unwrap();
        c.run_until(8_000_000 + 30_000_000)
            .unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        let role = c.nodes[standby].raft.as_ref().map(|r| r.role());
        assert_eq!(
            role,
            Some(Role::Leader),
            "seed {seed}: the standby never leads (witness log ends in term {:?}, standby's in {:?})",
            c.nodes[2].raft.as_ref().map(|r| r.log().last_term()),
            c.nodes[standby].raft.as_ref().map(|r| r.log().last_term()),
        );
    }
}
