//! Invariant 6 across a membership change: a one-server cluster adds a second server; the
//! leader's promotion of it (the configuration that makes it a voter) never reaches it, and the
//! leader is then told it may not lead. Once the network heals, the two servers are all the
//! voters of the newest configuration, one of them allowed to lead: a leader must appear.

use pg_leader_raft::{Duration, MembershipChange, NodeId};
use pg_leader_raft_sim::cluster::{Cluster, Setup};

#[test]
fn a_server_whose_promotion_never_arrived_is_still_elected() {
    for seed in 0..10 {
        let setup = Setup {
            voters: 1,
            ..Setup::uniform(
                Duration::from_millis(100),
                Duration::from_millis(1000),
                &[0, 0],
            )
        };
        let mut c = Cluster::new(&setup, seed);
        c.run_until(3_000_000).unwrap();
        assert_eq!(
            c.leader_with_lease(),
            Some(0),
            "seed {seed}: node 1 leads alone"
        );
        let add = MembershipChange::Add {
            id: NodeId(2),
            address: "node2".to_string(),
            voter: true,
        };
        c.act(0, |r, now| r.propose_change(&add, now).unwrap())
            .unwrap();
        // Node 2 stores the configuration that lists it as joining and answers; from then on
        // nothing from node 1 reaches it, so the promotion that answer triggers is lost.
        let joined = |c: &Cluster| c.nodes[1].disk.entries.len() >= 2;
        while !joined(&c) {
            let next = c.now + 10;
            c.run_until(next).unwrap();
        }
        c.network.block(0, 1);
        let at = c.now + 200_000;
        c.run_until(at).unwrap();
        let leader_members = c.nodes[0].raft.as_ref().unwrap().membership().0.clone();
        assert!(leader_members.is_voter(NodeId(2)), "seed {seed}: promoted");
        c.set_can_lead(0, false).unwrap();
        let at = c.now + 5_000_000;
        c.run_until(at).unwrap();
        c.network.heal();
        let at = c.now + 30_000_000;
        c.run_until(at)
            .unwrap_or_else(|v| panic!("seed {seed}: {v}"));
        // Node 1 holds the promotion but may not lead; node 2 may lead but, by its own log,
        // only joins: neither campaigns.
        assert_eq!(
            c.leader_with_lease(),
            Some(1),
            "seed {seed}: node 2, the only voter that may lead, never leads"
        );
    }
}
