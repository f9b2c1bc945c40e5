//! A host that announces its death: the leader hands over through TimeoutNow in one Ready, a
//! follower tells the leader it is leaving (see `departure`).

mod common;

use common::*;
use pg_leader_raft::{Body, Cause, Departure, Event, NodeId, Role, Term};

#[test]
fn a_departing_leader_hands_over_in_one_ready_without_a_lease() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(20);
    let departure = c.with_node(1, |r, now| r.depart(now));
    let Departure::HandedOver(target) = departure else {
        panic!("expected a handover, got {departure:?}");
    };
    assert!(!c.node(1).has_lease(c.now), "the lease is given up");
    let (_, ready) = c.readies.last().unwrap();
    assert!(
        ready
            .messages
            .iter()
            .any(|m| m.body == Body::TimeoutNow && m.to == target),
        "TimeoutNow leaves with the same Ready"
    );
    c.crash(1);
    c.deliver();
    c.advance_ms(1);
    assert_eq!(c.node(target.0).role(), Role::Leader);
    assert_eq!(c.node(target.0).term(), Term(2));
    assert_eq!(c.leaders_with_lease(), vec![target.0]);
}

#[test]
fn a_late_or_repeated_timeout_now_changes_nothing() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(20);
    let Departure::HandedOver(target) = c.with_node(1, |r, now| r.depart(now)) else {
        panic!("expected a handover");
    };
    let timeout_now = c
        .queue
        .iter()
        .find(|m| m.body == Body::TimeoutNow)
        .cloned()
        .unwrap();
    c.crash(1);
    c.deliver();
    c.advance_ms(5);
    assert_eq!(c.node(target.0).role(), Role::Leader);
    let term = c.node(target.0).term();
    // Twice more, now and much later: a stale term, ignored by everyone.
    for _ in 0..2 {
        c.queue.push_back(timeout_now.clone());
        c.deliver();
        c.advance_ms(500);
    }
    assert_eq!(c.node(target.0).role(), Role::Leader);
    assert_eq!(c.node(target.0).term(), term);
    assert_eq!(c.leaders_with_lease(), vec![target.0]);
}

#[test]
fn a_departing_leader_waits_for_a_lagging_target_before_timeout_now() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.isolate(2);
    c.isolate(3);
    c.with_node(1, |r, now| r.propose(b"a".to_vec(), now).unwrap());
    c.deliver();
    let departure = c.with_node(1, |r, now| r.depart(now));
    assert!(
        matches!(departure, Departure::CatchingUp(_)),
        "{departure:?}"
    );
    let (_, ready) = c.readies.last().unwrap();
    assert!(ready.messages.iter().all(|m| m.body != Body::TimeoutNow));
    c.heal();
    c.advance_ms(HEARTBEAT_MS + 2);
    let leaders = c.leaders_with_lease();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders, vec![1], "handed over once the target caught up");
}

#[test]
fn a_departing_follower_tells_the_leader_which_stops_counting_it() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(20);
    assert_eq!(
        c.with_node(3, |r, now| r.depart(now)),
        Departure::Announced(NodeId(1))
    );
    c.crash(3);
    c.deliver();
    let told = c.readies.iter().any(|(n, ready)| {
        *n == 1
            && ready
                .events
                .contains(&Event::FollowerDeparted { node: NodeId(3) })
    });
    assert!(told, "the leader's host hears of it");
    assert_eq!(
        c.node(1).best_transfer_target(),
        Some(NodeId(2)),
        "a departed follower is no handover target"
    );
    assert_eq!(c.node(1).role(), Role::Leader, "two of three are still up");
    // The second follower leaves too: the leader knows at once that it has no majority.
    c.with_node(2, |r, now| r.depart(now));
    c.crash(2);
    c.deliver();
    assert_eq!(c.node(1).role(), Role::Follower);
    assert!(c.leaders_with_lease().is_empty());
    let stepped_down = c.readies.iter().any(|(n, ready)| {
        *n == 1
            && ready.events.iter().any(|e| {
                matches!(
                    e,
                    Event::RoleChanged {
                        cause: Cause::LostQuorum,
                        ..
                    }
                )
            })
    });
    assert!(stepped_down);
}

#[test]
fn a_departed_follower_that_answers_again_counts_again() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(20);
    c.with_node(3, |r, now| r.depart(now));
    c.deliver();
    // Its server came back at once (a crash-restart cycle): it answers the next heartbeat.
    c.advance_ms(HEARTBEAT_MS + 1);
    c.isolate(2);
    assert_eq!(c.node(1).best_transfer_target(), Some(NodeId(3)));
    c.advance_ms(ELECTION_MS + HEARTBEAT_MS);
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "node 3 counts for the quorum"
    );
}

#[test]
fn a_node_without_a_leader_has_nothing_to_announce() {
    let mut c = TestCluster::new(3);
    assert_eq!(c.with_node(2, |r, now| r.depart(now)), Departure::Nothing);
}
