//! Leadership transfer (thesis §3.10): catch the target up, give up the lease, then TimeoutNow.

mod common;

use common::*;
use pg_leader_raft::{Body, Event, Message, NodeId, Role, Term, TransferError};

#[test]
fn transfer_hands_over_without_an_election_timeout() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(20);
    c.with_node(1, |r, now| r.transfer_leadership(NodeId(3), now).unwrap());
    // The lease is given up in a Ready before the one that carries TimeoutNow.
    assert!(!c.node(1).has_lease(c.now));
    let (_, giving_up) = c.readies.last().unwrap();
    assert!(giving_up
        .messages
        .iter()
        .all(|m| m.body != Body::TimeoutNow));
    c.advance_ms(1);
    assert_eq!(
        c.node(3).role(),
        Role::Leader,
        "handed over within a millisecond"
    );
    assert_eq!(c.node(3).term(), Term(2));
    assert_eq!(c.node(1).leader_id(), Some(NodeId(3)));
    assert!(c.leaders_with_lease() == vec![3]);
}

#[test]
fn transfer_waits_for_a_lagging_target_to_catch_up() {
    let mut c = TestCluster::new(3);
    c.isolate(3);
    c.elect(1);
    c.with_node(1, |r, now| r.propose(b"a".to_vec(), now).unwrap());
    c.deliver();
    c.with_node(1, |r, now| r.transfer_leadership(NodeId(3), now).unwrap());
    assert!(
        c.node(1).has_lease(c.now),
        "still catching up: the lease is kept"
    );
    c.heal();
    c.advance_ms(HEARTBEAT_MS + 2);
    assert_eq!(c.node(3).role(), Role::Leader);
    assert_eq!(
        c.node(3).log().last_index().0,
        3,
        "the target had the whole log"
    );
}

#[test]
fn transfer_errors_are_clear() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    assert_eq!(
        c.with_node(2, |r, now| r.transfer_leadership(NodeId(3), now)),
        Err(TransferError::NotLeader(Some(NodeId(1))))
    );
    assert_eq!(
        c.with_node(1, |r, now| r.transfer_leadership(NodeId(9), now)),
        Err(TransferError::UnknownTarget(NodeId(9)))
    );
    assert_eq!(
        c.with_node(1, |r, now| r.transfer_leadership(NodeId(1), now)),
        Err(TransferError::TargetIsLeader)
    );
    c.isolate(3);
    c.with_node(1, |r, now| r.propose(b"a".to_vec(), now).unwrap());
    c.with_node(1, |r, now| r.transfer_leadership(NodeId(3), now).unwrap());
    assert_eq!(
        c.with_node(1, |r, now| r.transfer_leadership(NodeId(2), now)),
        Err(TransferError::AlreadyInProgress(NodeId(3)))
    );
    // The target never catches up: the transfer is dropped and node 1 keeps leading.
    c.advance_ms(2 * ELECTION_MS);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert!(c.node(1).has_lease(c.now));
}

#[test]
fn a_transfer_whose_timeout_now_is_lost_ends_in_a_fresh_election() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.cut.insert((1, 3));
    // Node 3 is caught up (it got the no-op before the cut), so TimeoutNow leaves and is lost.
    c.with_node(1, |r, now| r.transfer_leadership(NodeId(3), now).unwrap());
    c.advance_ms(4 * ELECTION_MS);
    let leaders: Vec<u32> = (1..=3)
        .filter(|&n| c.node(n).role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert!(
        c.node(leaders[0]).term() > Term(1),
        "a new term after the failed handover"
    );
}

#[test]
fn a_request_passed_on_by_a_follower_reaches_the_leaders_host_as_an_event() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    let request = |to: u32| Message {
        from: id(2),
        to: id(to),
        term,
        body: Body::TransferRequest {
            target: Some(id(3)),
        },
    };
    let events = c.with_node(1, |r, now| {
        r.step(request(1), now).unwrap();
        r.take_ready().events
    });
    assert!(events.iter().any(|e| matches!(
        e,
        Event::TransferRequested { from, target } if *from == id(2) && *target == Some(id(3))
    )));
    // A follower has no use for it.
    let events = c.with_node(3, |r, now| {
        r.step(request(3), now).unwrap();
        r.take_ready().events
    });
    assert!(events.is_empty());
}

#[test]
fn a_leader_whose_timeout_now_is_lost_waits_for_the_transfer_deadline_before_stepping_down() {
    // Thesis §3.10: the handover is abandoned only when its deadline passes. The lease is
    // already given up, so leading on meanwhile is safe; stepping down at once would throw away
    // a handover whose TimeoutNow may still arrive.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(20);
    c.isolate(3);
    c.with_node(1, |r, now| r.transfer_leadership(NodeId(3), now).unwrap());
    c.advance_ms(HEARTBEAT_MS);
    assert_eq!(c.node(3).role(), Role::Follower, "its TimeoutNow was lost");
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "still leading, without a lease, until the deadline"
    );
    assert!(!c.node(1).has_lease(c.now));
    c.advance_ms(2 * ELECTION_MS);
    assert_ne!(
        c.node(1).role(),
        Role::Leader,
        "abandoned after the deadline"
    );
}
