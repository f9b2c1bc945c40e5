//! What a follower does with the requests only its leader may make: TimeoutNow (take over,
//! bypassing every promise, thesis §3.10) and CampaignNow (a caretaker handing back), and the
//! leader's answers to requests the follower passed on for its host.

mod common;

use common::*;
use pg_leader_raft::{Body, Duration, Event, Message, Role, Term};

fn from(sender: u32, to: u32, term: u64, body: Body) -> Message {
    Message {
        from: id(sender),
        to: id(to),
        term: Term(term),
        body,
    }
}

/// Node 2 follows node 1, the leader of term 1 (elected by hand: node 3 is silent), with the
/// heartbeat that made it its leader asking for a promise of `lease`.
fn following_1(lease: Duration) -> TestCluster {
    let mut c = TestCluster::new(3);
    c.now = c.now + Duration::from_millis(2 * ELECTION_MS);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 1, false, (0, 0)), now).unwrap()
    });
    let mut heartbeat = first_heartbeat(1, 2, 1);
    if let Body::AppendEntries { lease: asked, .. } = &mut heartbeat.body {
        *asked = lease;
    }
    c.with_node(2, |r, now| r.step(heartbeat, now).unwrap());
    assert_eq!(c.node(2).leader_id(), Some(id(1)));
    c
}

#[test]
fn timeout_now_from_the_leader_starts_a_handover_election() {
    let mut c = following_1(Duration::from_millis(ELECTION_MS));
    c.with_node(2, |r, now| {
        r.step(from(1, 2, 1, Body::TimeoutNow), now).unwrap()
    });
    assert_eq!(
        (c.node(2).role(), c.node(2).term()),
        (Role::Candidate, Term(2))
    );
}

#[test]
fn timeout_now_from_anyone_but_the_leader_is_ignored() {
    // A TimeoutNow makes votes that ignore promises: from a server that is not the leader it
    // would end a lease that still holds.
    let mut c = following_1(Duration::from_millis(ELECTION_MS));
    c.with_node(2, |r, now| {
        r.step(from(3, 2, 1, Body::TimeoutNow), now).unwrap()
    });
    assert_eq!(
        (c.node(2).role(), c.node(2).term()),
        (Role::Follower, Term(1))
    );
}

#[test]
fn timeout_now_to_a_server_that_cannot_lead_is_ignored() {
    let mut c = following_1(Duration::from_millis(ELECTION_MS));
    c.with_node(2, |r, _| r.set_can_lead(false));
    c.with_node(2, |r, now| {
        r.step(from(1, 2, 1, Body::TimeoutNow), now).unwrap()
    });
    assert_eq!(
        (c.node(2).role(), c.node(2).term()),
        (Role::Follower, Term(1))
    );
}

#[test]
fn campaign_now_from_a_caretaker_starts_an_election_at_once() {
    // A caretaker asks no promise (lease zero), so nothing keeps its follower from campaigning.
    let mut c = following_1(Duration::ZERO);
    c.with_node(2, |r, now| {
        r.step(from(1, 2, 1, Body::CampaignNow), now).unwrap()
    });
    assert_eq!(c.node(2).role(), Role::PreCandidate);
}

#[test]
fn campaign_now_is_ignored_from_anyone_but_the_leader_or_while_promised() {
    let mut c = following_1(Duration::ZERO);
    c.with_node(2, |r, now| {
        r.step(from(3, 2, 1, Body::CampaignNow), now).unwrap()
    });
    assert_eq!(c.node(2).role(), Role::Follower);
    let mut c = following_1(Duration::from_millis(ELECTION_MS));
    c.with_node(2, |r, now| {
        r.step(from(1, 2, 1, Body::CampaignNow), now).unwrap()
    });
    assert_eq!(c.node(2).role(), Role::Follower);
}

#[test]
fn the_leaders_answers_to_passed_on_requests_reach_the_host() {
    let mut c = following_1(Duration::from_millis(ELECTION_MS));
    c.with_node(2, |r, now| {
        r.step(from(1, 2, 1, Body::ChangeAnswer { outcome: 3 }), now)
            .unwrap()
    });
    c.with_node(2, |r, now| {
        r.step(from(1, 2, 1, Body::TransferRefused { outcome: 4 }), now)
            .unwrap()
    });
    let events: Vec<&Event> = c
        .readies
        .iter()
        .rev()
        .take(2)
        .flat_map(|(_, ready)| ready.events.iter())
        .collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ChangeAnswered { outcome: 3 })));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::TransferRefused { outcome: 4 })));
}
