//! A leader's message from a term this node has not seen yet (§5.1): the node adopts the term
//! and names the sender its leader at once, so that the host learns the leader with the role
//! change and a handover the leader asked for is not dropped.

mod common;

use common::*;
use pg_leader_raft::{Body, Cause, Duration, Event, Message, Role, Term};

/// Three nodes in term 0 whose start-up blackout is over, nothing elected.
fn quiet_cluster() -> TestCluster {
    let mut c = TestCluster::new(3);
    c.now = c.now + Duration::from_millis(2 * ELECTION_MS);
    for n in 1..=3 {
        c.flush(n);
    }
    c
}

/// The role changes in node `n`'s last Ready: (role, term, leader, cause).
fn role_changes(c: &TestCluster, n: u32) -> Vec<(Role, Term, Option<u32>, Cause)> {
    let (_, ready) = c.readies.iter().rev().find(|(m, _)| *m == n).unwrap();
    ready
        .events
        .iter()
        .filter_map(|e| match e {
            Event::RoleChanged {
                role,
                term,
                leader,
                cause,
            } => Some((*role, *term, leader.map(|l| l.0), *cause)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_heartbeat_of_a_later_term_names_its_sender_in_the_role_change() {
    let mut c = quiet_cluster();
    let heartbeat = first_heartbeat(3, 2, 2);
    c.with_node(2, |r, now| r.step(heartbeat, now)).unwrap();
    assert_eq!(
        role_changes(&c, 2),
        vec![(Role::Follower, Term(2), Some(3), Cause::HigherTerm)]
    );
    assert_eq!(c.node(2).leader_id(), Some(id(3)));
}

#[test]
fn a_timeout_now_from_the_leader_of_a_later_term_starts_the_handover_election() {
    // The leader gave up its lease before it sent TimeoutNow (thesis §3.10); the target need
    // not have heard of its term to take over.
    let mut c = quiet_cluster();
    let timeout_now = Message {
        from: id(3),
        to: id(2),
        term: Term(2),
        body: Body::TimeoutNow,
    };
    c.with_node(2, |r, now| r.step(timeout_now, now)).unwrap();
    assert_eq!(c.node(2).role(), Role::Candidate);
    assert_eq!(c.node(2).term(), Term(3));
    let requests: Vec<bool> = c
        .readies
        .last()
        .unwrap()
        .1
        .messages
        .iter()
        .filter_map(|m| match m.body {
            Body::RequestVote { transfer, .. } => Some(transfer),
            _ => None,
        })
        .collect();
    assert_eq!(
        requests,
        vec![true, true],
        "handover vote requests to 1 and 3"
    );
}
