//! What the host reads of the core before it acts on PostgreSQL (`pg_leader.auto_failover`):
//! whether a live primary answers the leader (then no promotion), whether the leader has heard
//! every voter since its election, and where a handover stands.

mod common;

use common::*;
use pg_leader_raft::{Body, Message, WalPosition};

const SYSTEM: u64 = 7_000_000_002;

fn primary(timeline: u32, lsn: u64) -> WalPosition {
    WalPosition::primary(SYSTEM, timeline, lsn)
}

fn standby(timeline: u32, lsn: u64) -> WalPosition {
    WalPosition::standby(SYSTEM, timeline, lsn)
}

/// Three promoting servers; node 2, a standby, leads; node 1 is `first`.
fn standby_leads_with(first: WalPosition) -> TestCluster {
    let mut c = TestCluster::new(3);
    let positions = [first, standby(1, 100), standby(1, 100)];
    for (i, wal) in positions.iter().enumerate() {
        c.with_node(i as u32 + 1, |r, _| {
            r.set_wal_position(*wal);
            r.set_promotes(true);
        });
    }
    c.elect(2);
    c.advance_ms(2 * HEARTBEAT_MS);
    c
}

#[test]
fn a_primary_that_answers_the_leader_is_live_until_it_falls_silent() {
    // Behind the leader's WAL: not a handover target, but alive, so no failover is due.
    let mut c = standby_leads_with(primary(1, 50));
    assert_eq!(c.node(2).live_primary(), Some(id(1)));
    c.isolate(1);
    c.advance_ms(ELECTION_MS - HEARTBEAT_MS);
    assert_eq!(
        c.node(2).live_primary(),
        Some(id(1)),
        "heard within the election timeout"
    );
    c.advance_ms(2 * HEARTBEAT_MS);
    assert_eq!(c.node(2).live_primary(), None, "silent for a whole timeout");
}

#[test]
fn a_primary_of_another_system_or_that_departed_is_no_live_primary() {
    let c = standby_leads_with(WalPosition::primary(99, 1, 50));
    assert_eq!(
        c.node(2).live_primary(),
        None,
        "a witness has its own system"
    );

    let mut c = standby_leads_with(primary(1, 50));
    assert_eq!(c.node(2).live_primary(), Some(id(1)));
    c.with_node(1, |r, now| r.depart(now));
    c.crash(1);
    c.deliver();
    assert_eq!(c.node(2).live_primary(), None, "it said it is going away");
}

#[test]
fn a_standby_among_the_followers_is_no_live_primary() {
    let c = standby_leads_with(standby(1, 90));
    assert_eq!(c.node(2).live_primary(), None);
}

#[test]
fn a_voter_that_departed_or_answered_counts_as_heard_since_the_election() {
    let mut c = TestCluster::new(3);
    c.isolate(3);
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    assert!(!c.node(1).heard_all_since_elected());
    // Node 3 announces its departure (it reaches the leader) and stays silent.
    let term = c.node(1).term();
    c.queue.push_back(Message {
        from: id(3),
        to: id(1),
        term,
        body: Body::Departing,
    });
    c.heal();
    c.crash(3);
    c.deliver();
    assert!(c.node(1).heard_all_since_elected());
}

#[test]
fn a_handover_is_pending_until_timeout_now_leaves_and_has_a_target_until_it_ends() {
    let mut c = TestCluster::new(3);
    c.with_node(1, |r, _| r.set_wal_position(primary(1, 100)));
    c.with_node(2, |r, _| r.set_wal_position(standby(1, 80)));
    c.with_node(3, |r, _| r.set_wal_position(standby(1, 80)));
    for n in 1..=3 {
        c.with_node(n, |r, _| r.set_promotes(true));
    }
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    assert!(!c.node(1).transfer_pending());
    assert_eq!(c.node(1).transfer_target(), None);
    c.with_node(1, |r, now| r.transfer_leadership(id(2), now))
        .unwrap();
    c.advance_ms(HEARTBEAT_MS);
    assert!(c.node(1).transfer_pending(), "waiting for node 2's WAL");
    assert_eq!(c.node(1).transfer_target(), Some(id(2)));
    c.with_node(2, |r, _| r.set_wal_position(standby(1, 100)));
    c.advance_ms(3 * HEARTBEAT_MS);
    assert!(!c.node(1).transfer_pending(), "TimeoutNow has left");
}
