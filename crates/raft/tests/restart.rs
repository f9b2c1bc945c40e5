//! A start waits only for the promises it may still owe (design invariant 7; `restart`): in
//! full after a crash, for what is left after a clean stop in the same boot, not at all for a
//! server that never heard of a term.

mod common;

use common::*;
use pg_leader_raft::{Body, Duration, EarlierPromises, HardState, Role, Term};

/// Node `n`'s answers in its latest Ready: (kind, granted).
fn answers(c: &TestCluster, n: u32) -> Vec<(&'static str, bool)> {
    let (_, ready) = c.readies.iter().rev().find(|(m, _)| *m == n).unwrap();
    ready
        .messages
        .iter()
        .map(|m| match m.body {
            Body::VoteResponse { granted, .. } => (m.kind(), granted),
            _ => (m.kind(), false),
        })
        .collect()
}

fn asks_for_a_vote(c: &mut TestCluster, n: u32) -> Vec<(&'static str, bool)> {
    let term = c.node(n).term().0 + 1;
    let last = c.disks[n as usize - 1]
        .entries
        .last()
        .map_or((0, 0), |e| (e.index.0, e.term.0));
    c.with_node(n, |r, now| {
        r.step(vote_request(3, n, term, false, last), now)
    })
    .unwrap();
    answers(c, n)
}

#[test]
fn a_cleanly_stopped_follower_waits_only_for_what_is_left_of_its_promise() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(350);
    let promise_end = c.node(2).promises_end();
    let left = promise_end.saturating_since(c.local(2));
    assert!(
        left > Duration::from_millis(500),
        "the promise runs: {left:?}"
    );
    c.isolate(1);
    c.crash(2);
    c.restart_knowing(2, EarlierPromises::EndAt(promise_end));
    c.now = c.now + left - Duration::from_millis(1);
    assert!(asks_for_a_vote(&mut c, 2).is_empty(), "still promised");
    c.with_node(2, |r, now| r.campaign(now));
    assert_eq!(c.node(2).role(), Role::Follower, "no campaign either");
    c.now = c.now + Duration::from_millis(1);
    assert_eq!(asks_for_a_vote(&mut c, 2), vec![("VoteResponse", true)]);
}

#[test]
fn followers_stopped_cleanly_elect_within_the_old_promise_plus_one_spread_and_never_overlap() {
    // The leader is cut off; both followers stop cleanly and start again with their records.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(250);
    c.isolate(1);
    for n in [2, 3] {
        let end = c.node(n).promises_end();
        c.crash(n);
        c.restart_knowing(n, EarlierPromises::EndAt(end));
    }
    let successor = run_checking_one_lease(&mut c, 3 * ELECTION_MS, 1);
    assert!(successor.is_some(), "the followers elect one of them");
}

#[test]
fn a_crashed_server_with_a_term_still_waits_its_election_timeout() {
    let mut c = TestCluster::new(3);
    c.disks[1].hard_state = HardState {
        term: Term(4),
        ..HardState::default()
    };
    c.crash(2);
    c.restart_knowing(2, EarlierPromises::Unknown);
    c.now = c.now + Duration::from_millis(ELECTION_MS - 1);
    assert!(
        asks_for_a_vote(&mut c, 2).is_empty(),
        "blind wait after a crash"
    );
    c.now = c.now + Duration::from_millis(1);
    assert_eq!(asks_for_a_vote(&mut c, 2), vec![("VoteResponse", true)]);
}

#[test]
fn a_record_in_the_past_means_no_wait() {
    let mut c = TestCluster::new(3);
    c.disks[1].hard_state.term = Term(1);
    c.disks[1].hard_state.longest_promise = Duration::from_millis(ELECTION_MS);
    c.crash(2);
    let long_ago = c.local(2);
    c.now = c.now + Duration::from_millis(5);
    c.restart_knowing(2, EarlierPromises::EndAt(long_ago));
    assert_eq!(asks_for_a_vote(&mut c, 2), vec![("VoteResponse", true)]);
}

#[test]
fn a_server_that_never_ran_votes_at_once() {
    let mut c = TestCluster::new(3);
    c.crash(2);
    c.restart_knowing(2, EarlierPromises::NeverRan);
    assert_eq!(asks_for_a_vote(&mut c, 2), vec![("VoteResponse", true)]);
}

#[test]
fn an_empty_state_of_unknown_origin_still_waits() {
    // A state file removed by hand: the promises it held may still run.
    let mut c = TestCluster::new(3);
    c.crash(2);
    c.restart_knowing(2, EarlierPromises::Unknown);
    assert!(asks_for_a_vote(&mut c, 2).is_empty(), "blind wait");
}

#[test]
fn a_state_with_a_term_is_never_taken_for_new() {
    let mut c = TestCluster::new(3);
    c.disks[1].hard_state.term = Term(2);
    c.crash(2);
    c.restart_knowing(2, EarlierPromises::NeverRan);
    assert!(asks_for_a_vote(&mut c, 2).is_empty(), "blind wait");
}

#[test]
fn the_only_voter_elects_itself_at_once() {
    let mut c = TestCluster::new(1);
    c.crash(1);
    c.restart_knowing(1, EarlierPromises::NeverRan);
    assert!(c.node(1).next_deadline() <= c.local(1));
    c.with_node(1, |r, now| r.tick(now));
    c.deliver();
    assert_eq!(c.node(1).role(), Role::Leader);
}

#[test]
fn a_fresh_cluster_elects_sooner_than_one_blind_timeout() {
    let mut c = TestCluster::new(3);
    for n in 1..=3 {
        c.crash(n);
        c.restart_knowing(n, EarlierPromises::NeverRan);
    }
    let mut waited = 0;
    while c.leaders_with_lease().is_empty() && waited < 3 * ELECTION_MS {
        c.advance_ms(1);
        waited += 1;
    }
    assert!(waited < ELECTION_MS, "elected after {waited} ms");
}

#[test]
fn a_record_wins_over_a_state_that_looks_new() {
    // The state file was lost (removed by hand) but the clean-stop record is there: its promise
    // still runs, whatever the empty state suggests.
    let mut c = TestCluster::new(3);
    c.crash(2);
    let end = c.local(2) + Duration::from_millis(300);
    c.restart_knowing(2, EarlierPromises::EndAt(end));
    assert!(asks_for_a_vote(&mut c, 2).is_empty(), "still promised");
    c.now = c.now + Duration::from_millis(300);
    assert_eq!(asks_for_a_vote(&mut c, 2), vec![("VoteResponse", true)]);
}
