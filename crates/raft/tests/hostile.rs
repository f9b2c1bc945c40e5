//! Authentic-looking messages with absurd fields: dropped as malformed, with the term, the
//! leader and the vote left as they were.

mod common;

use common::*;
use pg_leader_raft::{
    Body, Dropped, Duration, Instant, LogIndex, Message, Term, WalPosition, MAX_LEASE,
    MAX_TERM_JUMP,
};

fn heartbeat(from: u32, to: u32, term: u64, prev: u64, lease: Duration) -> Message {
    Message {
        from: id(from),
        to: id(to),
        term: Term(term),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(prev),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: Instant::ZERO,
            lease,
        },
    }
}

/// A successful AppendResponse to node 1.
fn acknowledgement(
    from: u32,
    term: u64,
    matched: LogIndex,
    sent_at: Instant,
    lease: Duration,
) -> Message {
    Message {
        from: id(from),
        to: id(1),
        term: Term(term),
        body: Body::AppendResponse {
            success: true,
            match_index: matched,
            reject_hint: matched,
            sent_at,
            lease,
            can_lead: true,
        },
    }
}

/// Node 1 leads; returns the cluster and its term.
fn led_by_node_1() -> (TestCluster, u64) {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS);
    let term = c.node(2).term().0;
    assert_eq!(c.node(2).status().leader_id, Some(id(1)));
    (c, term)
}

fn assert_unchanged(c: &TestCluster, term: u64) {
    for n in 1..=3 {
        assert_eq!(c.node(n).term().0, term, "node {n}'s term moved");
    }
    assert_eq!(c.node(2).status().leader_id, Some(id(1)));
    assert_eq!(c.leaders_with_lease(), vec![1]);
}

#[test]
fn a_term_far_ahead_is_dropped() {
    let (mut c, term) = led_by_node_1();
    let lease = Duration::from_millis(ELECTION_MS);
    for forged in [term + MAX_TERM_JUMP + 1, u64::MAX / 2, u64::MAX] {
        let msg = heartbeat(3, 2, forged, 0, lease);
        let result = c.with_node(2, |r, now| r.step(msg, now));
        assert_eq!(result, Err(Dropped::Malformed), "term {forged}");
        let vote = Message {
            from: id(3),
            to: id(1),
            term: Term(forged),
            body: Body::RequestVote {
                pre_vote: false,
                last_log_index: LogIndex(u64::MAX),
                last_log_term: Term(forged),
                transfer: true,
                wal: WalPosition::default(),
            },
        };
        let result = c.with_node(1, |r, now| r.step(vote, now));
        assert_eq!(
            result,
            Err(Dropped::Malformed),
            "vote request in term {forged}"
        );
    }
    assert_unchanged(&c, term);
}

#[test]
fn a_second_leader_in_a_known_term_is_dropped() {
    let (mut c, term) = led_by_node_1();
    // Node 3 claims to lead the current term, with indexes far ahead.
    let lease = Duration::from_millis(ELECTION_MS);
    let msg = heartbeat(3, 2, term, u64::MAX - 1, lease);
    let result = c.with_node(2, |r, now| r.step(msg, now));
    assert_eq!(result, Err(Dropped::Malformed));
    let msg = heartbeat(3, 1, term, 1 << 60, lease);
    let result = c.with_node(1, |r, now| r.step(msg, now));
    assert_eq!(result, Err(Dropped::Malformed));
    assert_unchanged(&c, term);
}

#[test]
fn a_promise_longer_than_any_election_timeout_is_dropped() {
    let (mut c, term) = led_by_node_1();
    let msg = heartbeat(1, 2, term, 0, MAX_LEASE + Duration::from_micros(1));
    let result = c.with_node(2, |r, now| r.step(msg, now));
    assert_eq!(result, Err(Dropped::Malformed));
    let msg = heartbeat(1, 2, term, 0, Duration::from_millis(u64::MAX / 1000));
    let result = c.with_node(2, |r, now| r.step(msg, now));
    assert_eq!(result, Err(Dropped::Malformed));
    assert_unchanged(&c, term);
}

#[test]
fn an_acknowledgement_far_ahead_does_not_move_the_commit_past_the_log() {
    let (mut c, term) = led_by_node_1();
    let before = c.node(1).status().commit_index;
    let last = c.node(1).status().last_index;
    for from in [2, 3] {
        let ack = acknowledgement(from, term, LogIndex(u64::MAX), Instant::ZERO, MAX_LEASE);
        c.with_node(1, |r, now| r.step(ack, now)).unwrap();
    }
    let after = c.node(1).status().commit_index;
    assert!(
        after >= before && after <= last,
        "commit {after:?} past last {last:?}"
    );
    assert_unchanged(&c, term);
}

/// Found by fuzzing (fuzz/artifacts, raft_step): a later-term "leader" sending an entry that
/// replaces a committed one used to trip the log's assertion; it is now dropped unread.
#[test]
fn a_message_that_would_replace_a_committed_entry_is_dropped() {
    let (mut c, term) = led_by_node_1();
    let committed = c.node(1).status().commit_index;
    assert!(committed.0 >= 1, "the leader's no-op is committed");
    let forged = Message {
        from: id(2),
        to: id(1),
        term: Term(term + 1),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![pg_leader_raft::Entry {
                term: Term(term + 1),
                index: LogIndex(1),
                data: pg_leader_raft::EntryData::Noop,
            }],
            leader_commit: LogIndex(1),
            sent_at: Instant::ZERO,
            lease: Duration::from_millis(ELECTION_MS),
        },
    };
    let result = c.with_node(1, |r, now| r.step(forged, now));
    assert_eq!(result, Err(Dropped::Malformed));
    assert_unchanged(&c, term);
}

#[test]
fn an_acknowledgement_claiming_a_longer_promise_than_asked_counts_for_no_more() {
    let (mut c, term) = led_by_node_1();
    let sent_at = c.local(1);
    for from in [2, 3] {
        let ack = acknowledgement(from, term, LogIndex(0), sent_at, MAX_LEASE);
        c.with_node(1, |r, now| r.step(ack, now)).unwrap();
    }
    let asked = Duration::from_millis(ELECTION_MS);
    assert_eq!(
        c.node(1).lease_deadline(),
        Some(sent_at + c.node(1).config().lease_for(asked))
    );
}
