//! Promises are kept whatever the timings (design invariant 7): the leader's lease counts each
//! acknowledgement with the promise it carried, and no server votes for another or campaigns
//! before its promise ends, also after a restart and across timing changes. One scenario per way
//! an outside review found two leases at once, and the election that a WAL-aware voter that
//! cannot lead used to block.

mod common;

use common::*;
use pg_leader_raft::{
    Body, Cause, Duration, Event, Instant, LogIndex, Message, Role, Term, WalPosition,
};

const LONG_MS: u64 = 10 * ELECTION_MS;

fn set_election_timeout(c: &mut TestCluster, n: u32, ms: u64) {
    c.with_node(n, |r, _| {
        r.set_timing(
            Duration::from_millis(HEARTBEAT_MS),
            Duration::from_millis(ms),
        )
        .unwrap()
    });
}

#[test]
fn a_leader_that_reloads_a_longer_timeout_counts_only_the_promises_made() {
    // 3 servers; the leader reloads T from 1 s to 10 s and loses its followers right after:
    // their acknowledgements carried the 1 s promise, so the lease must not stretch to 9 s.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(350);
    set_election_timeout(&mut c, 1, LONG_MS);
    c.isolate(1);
    let successor = run_checking_one_lease(&mut c, 2 * LONG_MS, 1);
    assert!(successor.is_some(), "the followers elect one of them");
}

#[test]
fn a_restarted_follower_keeps_the_longer_promise_it_gave() {
    // A rolling change of election_timeout: the leader already runs with 10 s, the followers
    // restart with 1 s right after they acknowledged the leader's 10 s promise, and the leader is
    // cut off at that moment. Their restart blackout must cover the 10 s they promised.
    let mut c = TestCluster::new(3);
    c.elect(1);
    set_election_timeout(&mut c, 1, LONG_MS);
    c.advance_ms(3 * HEARTBEAT_MS);
    c.isolate(1);
    for n in [2, 3] {
        c.crash(n);
        c.restart(n);
    }
    let successor = run_checking_one_lease(&mut c, 3 * LONG_MS, 1);
    assert!(
        successor.is_some(),
        "the restarted followers elect one of them"
    );
}

#[test]
fn a_follower_does_not_campaign_while_its_promise_runs() {
    // 5 servers, the leader on T = 10 s, the followers on 1 s. The leader is cut from two of
    // them (whose promises then end), later from all: the other two must not campaign on their
    // own 1 s timers while they still keep the 10 s promise, or the two free servers elect one.
    let mut c = TestCluster::new(5);
    c.elect(1);
    set_election_timeout(&mut c, 1, LONG_MS);
    c.advance_ms(3 * HEARTBEAT_MS);
    for other in [4, 5] {
        c.cut.insert((1, other));
        c.cut.insert((other, 1));
    }
    run_checking_one_lease(&mut c, LONG_MS + 2 * ELECTION_MS, 1);
    assert_eq!(c.leaders_with_lease(), vec![1], "1 leads with 2 and 3");
    c.isolate(1);
    let successor = run_checking_one_lease(&mut c, 3 * LONG_MS, 1);
    assert!(successor.is_some(), "2 to 5 elect one of them");
}

#[test]
fn campaign_waits_for_the_promise_to_end() {
    // Equal timings: an operator's nudge on a follower of a live leader starts nothing.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS / 2);
    c.with_node(2, |r, now| r.campaign(now));
    assert_eq!(c.node(2).role(), Role::Follower);
    assert!(
        c.readies.last().unwrap().1.messages.is_empty(),
        "no vote request leaves"
    );
    c.deliver();
    assert_eq!(c.leaders_with_lease(), vec![1]);
}

/// 3 servers, node 1 leads, node 3 runs with can_be_leader = off.
fn led_by_1_with_3_that_cannot_lead() -> TestCluster {
    let mut c = TestCluster::new(3);
    let mut cannot_lead = config(3, 3);
    cannot_lead.can_lead = false;
    c.crash(3);
    c.restart_with(3, cannot_lead);
    c.elect(1);
    c
}

/// Whether node 3 has stepped down as a caretaker.
fn handed_back(c: &TestCluster) -> bool {
    c.readies.iter().any(|(n, ready)| {
        *n == 3
            && ready.events.iter().any(|e| {
                matches!(
                    e,
                    Event::RoleChanged {
                        cause: Cause::HandedBack,
                        ..
                    }
                )
            })
    })
}

fn at_lsn(lsn: u64) -> WalPosition {
    WalPosition::standby(7, 1, lsn)
}

#[test]
fn a_voter_that_cannot_lead_does_not_block_a_candidate_behind_it_in_wal() {
    // 3 servers, the leader dies. Node 2 may lead but is behind in WAL; node 3 is ahead but runs
    // with can_be_leader = off. A majority of live voters that includes a server allowed to
    // lead always elects (design invariant 6).
    let mut c = led_by_1_with_3_that_cannot_lead();
    c.with_node(2, |r, _| r.set_wal_position(at_lsn(10)));
    c.with_node(3, |r, _| r.set_wal_position(at_lsn(20)));
    c.advance_ms(HEARTBEAT_MS);
    c.crash(1);
    c.advance_ms(10 * ELECTION_MS);
    assert_eq!(c.leaders_with_lease(), vec![2]);
}

#[test]
fn a_voter_that_may_lead_still_refuses_a_candidate_behind_it_in_wal() {
    // The WAL preference holds where it can: node 3, ahead and allowed to lead, refuses node 2
    // and wins itself.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.with_node(2, |r, _| r.set_wal_position(at_lsn(10)));
    c.with_node(3, |r, _| r.set_wal_position(at_lsn(20)));
    c.advance_ms(HEARTBEAT_MS);
    c.crash(1);
    for _ in 0..10 * ELECTION_MS {
        c.advance_ms(1);
        assert!(
            !c.leaders_with_lease().contains(&2),
            "node 2 lacks WAL node 3 has"
        );
    }
    assert_eq!(c.leaders_with_lease(), vec![3]);
}

fn heartbeat(from: u32, to: u32, term: u64, prev: (u64, u64), lease_ms: u64) -> Message {
    Message {
        from: id(from),
        to: id(to),
        term: Term(term),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(prev.0),
            prev_log_term: Term(prev.1),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: Instant::ZERO,
            lease: Duration::from_millis(lease_ms),
            wal: pg_leader_raft::WalPosition::default(),
        },
    }
}

/// What node `n` answered in its last Ready: (kind, granted or success, echoed lease).
fn last_answer(c: &TestCluster, n: u32) -> Vec<(&'static str, bool, Option<Duration>)> {
    let (_, ready) = c.readies.iter().rev().find(|(m, _)| *m == n).unwrap();
    ready
        .messages
        .iter()
        .map(|m| match m.body {
            Body::VoteResponse { granted, .. } => (m.kind(), granted, None),
            Body::AppendResponse { success, lease, .. } => (m.kind(), success, Some(lease)),
            _ => (m.kind(), false, None),
        })
        .collect()
}

/// A cluster of 3 whose start-up blackout is over, nothing elected yet.
fn quiet_cluster() -> TestCluster {
    let mut c = TestCluster::new(3);
    c.now = c.now + Duration::from_millis(2 * ELECTION_MS);
    c
}

#[test]
fn a_follower_promises_even_when_the_entries_do_not_fit_its_log() {
    // The leader counts every answer for its lease, a refusal included: the follower must
    // keep the promise either way.
    let mut c = quiet_cluster();
    c.with_node(2, |r, now| {
        r.step(heartbeat(1, 2, 1, (5, 1), ELECTION_MS), now)
    })
    .unwrap();
    assert_eq!(
        last_answer(&c, 2),
        vec![(
            "AppendResponse",
            false,
            Some(Duration::from_millis(ELECTION_MS))
        )]
    );
    c.now = c.now + Duration::from_millis(ELECTION_MS - 1);
    c.with_node(2, |r, now| {
        r.step(vote_request(3, 2, 2, false, (0, 0)), now)
    })
    .unwrap();
    assert!(
        last_answer(&c, 2).is_empty(),
        "no vote while promised: not even answered"
    );
    assert_eq!(c.node(2).term(), Term(1));
    c.now = c.now + Duration::from_millis(1);
    c.with_node(2, |r, now| {
        r.step(vote_request(3, 2, 2, false, (0, 0)), now)
    })
    .unwrap();
    assert_eq!(last_answer(&c, 2), vec![("VoteResponse", true, None)]);
}

#[test]
fn a_voter_keeps_its_promise_to_a_candidate_of_its_own_term() {
    // A node restarted in term 5 without a vote: a candidate of that same term reaches the vote
    // decision directly (no later term to step down for), which must still wait for the
    // restart's promise.
    let mut c = TestCluster::new(3);
    c.disks[1].hard_state.term = Term(5);
    c.crash(2);
    c.restart(2);
    c.now = c.now + Duration::from_millis(ELECTION_MS - 1);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 5, false, (0, 0)), now)
    })
    .unwrap();
    assert_eq!(last_answer(&c, 2), vec![("VoteResponse", false, None)]);
    c.now = c.now + Duration::from_millis(1);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 5, false, (0, 0)), now)
    })
    .unwrap();
    assert_eq!(last_answer(&c, 2), vec![("VoteResponse", true, None)]);
}

/// The durable promise in node `n`'s Readies that acknowledged a heartbeat, oldest first:
/// `Some` where the Ready made one durable.
fn promises_made_durable(c: &TestCluster, n: u32) -> Vec<(Duration, Option<Duration>)> {
    c.readies
        .iter()
        .filter(|(m, _)| *m == n)
        .filter_map(|(_, ready)| {
            let lease = ready.messages.iter().find_map(|m| match m.body {
                Body::AppendResponse { lease, .. } => Some(lease),
                _ => None,
            })?;
            Some((lease, ready.hard_state.map(|hs| hs.longest_promise)))
        })
        .collect()
}

#[test]
fn a_longer_promise_is_durable_before_its_acknowledgement_leaves_and_only_then() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(5 * HEARTBEAT_MS);
    set_election_timeout(&mut c, 1, LONG_MS);
    c.readies.clear();
    c.advance_ms(5 * HEARTBEAT_MS);
    let long = Duration::from_millis(LONG_MS);
    let acks = promises_made_durable(&c, 2);
    assert!(acks.len() >= 5, "{acks:?}");
    assert_eq!(acks[0], (long, Some(long)), "durable in the same Ready");
    assert!(
        acks[1..].iter().all(|a| *a == (long, None)),
        "the same promise writes nothing: {acks:?}"
    );
    // Back to 1 s: the durable length comes down once, when the 10 s promises have ended.
    set_election_timeout(&mut c, 1, ELECTION_MS);
    c.readies.clear();
    c.advance_ms(LONG_MS + 5 * HEARTBEAT_MS);
    let short = Duration::from_millis(ELECTION_MS);
    let writes: Vec<_> = promises_made_durable(&c, 2)
        .into_iter()
        .filter_map(|(_, durable)| durable)
        .collect();
    assert_eq!(writes, vec![short]);
    assert_eq!(c.disks[1].hard_state.longest_promise, short);
}

#[test]
fn a_restart_waits_for_the_longest_promise_made_durable() {
    let mut c = TestCluster::new(3);
    c.disks[1].hard_state.longest_promise = Duration::from_millis(LONG_MS);
    c.crash(2);
    c.restart(2);
    c.now = c.now + Duration::from_millis(LONG_MS - 1);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 1, false, (0, 0)), now)
    })
    .unwrap();
    assert!(last_answer(&c, 2).is_empty(), "still promised");
    c.with_node(2, |r, now| r.campaign(now));
    assert_eq!(c.node(2).role(), Role::Follower, "no campaign either");
    c.now = c.now + Duration::from_millis(1);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 1, false, (0, 0)), now)
    })
    .unwrap();
    assert_eq!(last_answer(&c, 2), vec![("VoteResponse", true, None)]);
}

#[test]
fn a_voter_that_cannot_lead_passes_on_entries_the_one_that_can_lacks() {
    // 3 servers, the leader dies. Node 2 may lead but missed entries (it was cut off); node 3
    // holds them but runs with can_be_leader = off. Raft cannot elect node 2 (§5.4.1), so node 3
    // leads for a moment, without a lease, until node 2 holds its log, and then node 2 is elected.
    let mut c = led_by_1_with_3_that_cannot_lead();
    c.isolate(2);
    c.with_node(1, |r, now| r.propose(b"x".to_vec(), now))
        .unwrap();
    c.advance_ms(HEARTBEAT_MS);
    assert!(c.node(2).log().last_index() < c.node(3).log().last_index());
    c.crash(1);
    c.heal();
    c.isolate(1);
    let mut handed_back_at = None;
    for _ in 0..10 * ELECTION_MS {
        c.advance_ms(1);
        assert!(
            !c.leaders_with_lease().contains(&3),
            "node 3 never holds a lease"
        );
        if handed_back_at.is_none() && handed_back(&c) {
            handed_back_at = Some(c.now);
        }
        if c.leaders_with_lease() == vec![2] {
            break;
        }
    }
    assert_eq!(c.leaders_with_lease(), vec![2]);
    // At the caretaker's word, not one election timeout later.
    let handed_back_at = handed_back_at.expect("node 3 handed back");
    assert!(c.now.saturating_since(handed_back_at) < Duration::from_millis(HEARTBEAT_MS));
    assert_eq!(c.node(2).log().last_term(), c.node(2).term());
    // Node 3 did lead, and asked no one for a promise: it never counted on one.
    let asked_by_3: Vec<Duration> = c
        .readies
        .iter()
        .filter(|(n, _)| *n == 3)
        .flat_map(|(_, ready)| ready.messages.iter())
        .filter_map(|m| match m.body {
            Body::AppendEntries { lease, .. } => Some(lease),
            _ => None,
        })
        .collect();
    assert!(!asked_by_3.is_empty(), "node 3 led for a while");
    assert!(asked_by_3.iter().all(|l| *l == Duration::ZERO));
}

#[test]
fn a_voter_that_cannot_lead_and_voted_for_an_up_to_date_candidate_never_campaigns() {
    // Only a refusal for a log behind its own makes such a voter a possible caretaker; a vote it
    // granted, or a refusal on other grounds, leaves it a voter that never starts an election.
    let mut c = TestCluster::new(3);
    c.restart_changed(3, |cfg| cfg.can_lead = false);
    c.now = c.now + Duration::from_millis(2 * ELECTION_MS);
    c.with_node(3, |r, now| {
        r.step(vote_request(1, 3, 1, false, (0, 0)), now)
    })
    .unwrap();
    assert_eq!(last_answer(&c, 3), vec![("VoteResponse", true, None)]);
    c.isolate(3);
    c.crash(1);
    c.crash(2);
    c.advance_ms(5 * ELECTION_MS);
    let asked = c
        .readies
        .iter()
        .filter(|(n, _)| *n == 3)
        .flat_map(|(_, ready)| ready.messages.iter())
        .filter(|m| m.kind() == "RequestVote")
        .count();
    assert_eq!(asked, 0, "node 3 campaigned");
    assert_eq!(c.node(3).role(), Role::Follower);
    // With no leader to forget, its timeouts change nothing the host needs to hear about.
    let role_changes = c
        .readies
        .iter()
        .filter(|(n, _)| *n == 3)
        .flat_map(|(_, ready)| ready.events.iter())
        .filter(|e| {
            matches!(
                e,
                Event::RoleChanged {
                    cause: Cause::ElectionTimeout,
                    ..
                }
            )
        })
        .count();
    assert_eq!(role_changes, 0);
}
