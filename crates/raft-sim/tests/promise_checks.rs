//! Each promise check catches a violation injected on purpose, and lets the legal case pass.

use pg_leader_raft::{
    Body, Duration, HardState, Instant, LogIndex, Message, NodeId, PersistedState, Term,
    WalPosition,
};
use pg_leader_raft_sim::checker::{Asked, Checker, Sending};

const LEADER: NodeId = NodeId(1);
const FOLLOWER: NodeId = NodeId(2);
const CANDIDATE: NodeId = NodeId(3);

fn ms(v: u64) -> Instant {
    Instant::from_micros(v * 1000)
}

fn heartbeat(lease_ms: u64) -> Message {
    Message {
        from: LEADER,
        to: FOLLOWER,
        term: Term(1),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: ms(7),
            lease: Duration::from_millis(lease_ms),
            wal: pg_leader_raft::WalPosition::default(),
        },
    }
}

fn acknowledgement(lease_ms: u64) -> Message {
    Message {
        from: FOLLOWER,
        to: LEADER,
        term: Term(1),
        body: Body::AppendResponse {
            success: true,
            match_index: LogIndex(0),
            reject_hint: LogIndex(0),
            sent_at: ms(7),
            lease: Duration::from_millis(lease_ms),
            can_lead: true,
            wal: pg_leader_raft::WalPosition::default(),
        },
    }
}

fn vote_request(transfer: bool) -> Message {
    Message {
        from: CANDIDATE,
        to: FOLLOWER,
        term: Term(2),
        body: Body::RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            transfer,
            wal: WalPosition::default(),
        },
    }
}

fn grant() -> Message {
    Message {
        from: FOLLOWER,
        to: CANDIDATE,
        term: Term(2),
        body: Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    }
}

fn disk(term: u64, voted_for: NodeId) -> PersistedState {
    PersistedState {
        hard_state: HardState {
            term: Term(term),
            voted_for: Some(voted_for),
            longest_promise: Duration::ZERO,
        },
        entries: vec![],
    }
}

fn at(local: Instant, answering: Option<&Message>) -> Sending {
    Sending {
        local,
        real: local.as_micros(),
        answering: answering.and_then(Asked::of),
    }
}

/// The follower acknowledges a heartbeat asking for `lease_ms` at its clock reading 100 ms.
fn promised(lease_ms: u64) -> Checker {
    let mut checker = Checker::default();
    let hb = heartbeat(lease_ms);
    checker
        .message_sent(
            &acknowledgement(lease_ms),
            &promise_on_disk(lease_ms),
            at(ms(100), Some(&hb)),
        )
        .unwrap();
    checker
}

fn promise_on_disk(lease_ms: u64) -> PersistedState {
    let mut disk = PersistedState::default();
    disk.hard_state.longest_promise = Duration::from_millis(lease_ms);
    disk
}

#[test]
fn a_promise_acknowledged_before_it_is_durable_is_caught() {
    let hb = heartbeat(4_000);
    let violation = Checker::default()
        .message_sent(
            &acknowledgement(4_000),
            &promise_on_disk(1_000),
            at(ms(100), Some(&hb)),
        )
        .unwrap_err();
    assert!(
        violation.contains("before making that promise durable"),
        "{violation}"
    );
}

#[test]
fn a_vote_granted_before_the_promise_ends_is_caught() {
    let request = vote_request(false);
    // Promised at 100 ms for 10 s: a vote at 1.2 s (after the voter's own 1 s timeout, the
    // restart blackout of the old core) breaks it.
    let violation = promised(10_000)
        .message_sent(&grant(), &disk(2, CANDIDATE), at(ms(1_200), Some(&request)))
        .unwrap_err();
    assert!(
        violation.contains("before its promise to leader 1"),
        "{violation}"
    );
    // Once it has ended, the same vote is legal.
    promised(10_000)
        .message_sent(
            &grant(),
            &disk(2, CANDIDATE),
            at(ms(10_100), Some(&request)),
        )
        .unwrap();
}

#[test]
fn a_handover_vote_is_legal_only_once_the_leader_gave_its_lease_up() {
    let request = vote_request(true);
    let mut checker = promised(1_000);
    let early = checker.message_sent(&grant(), &disk(2, CANDIDATE), at(ms(500), Some(&request)));
    assert!(
        early.is_err(),
        "no TimeoutNow sent yet: the lease still holds"
    );
    let timeout_now = Message {
        from: LEADER,
        to: CANDIDATE,
        term: Term(1),
        body: Body::TimeoutNow,
    };
    checker
        .message_sent(&timeout_now, &disk(1, LEADER), at(ms(400), None))
        .unwrap();
    checker
        .message_sent(&grant(), &disk(2, CANDIDATE), at(ms(500), Some(&request)))
        .unwrap();
}

#[test]
fn a_campaign_before_the_promise_ends_is_caught() {
    let mut checker = promised(10_000);
    let violation = checker
        .campaign_started(FOLLOWER, Term(1), false, ms(1_500))
        .unwrap_err();
    assert!(violation.contains("campaigned"), "{violation}");
    checker
        .campaign_started(FOLLOWER, Term(1), false, ms(10_100))
        .unwrap();
}

#[test]
fn an_election_while_another_holds_a_lease_is_caught() {
    let checker = Checker::default();
    let violation = checker
        .elected_while_leased(CANDIDATE, Term(2), &[(LEADER, Term(1))])
        .unwrap_err();
    assert!(
        violation.contains("while node 1 held a valid lease"),
        "{violation}"
    );
    checker
        .elected_while_leased(CANDIDATE, Term(2), &[(CANDIDATE, Term(2))])
        .unwrap();
    // A candidate of an earlier term that counts its votes late wins no lease: not a violation.
    checker
        .elected_while_leased(CANDIDATE, Term(2), &[(LEADER, Term(3))])
        .unwrap();
}

#[test]
fn vote_requests_sent_before_the_candidates_own_vote_is_durable_are_caught() {
    let request = Message {
        from: CANDIDATE,
        to: FOLLOWER,
        ..vote_request(false)
    };
    let mut checker = Checker::default();
    let violation = checker
        .message_sent(&request, &disk(1, CANDIDATE), at(ms(1), None))
        .unwrap_err();
    assert!(
        violation.contains("before its own vote was durable"),
        "{violation}"
    );
    checker
        .message_sent(&request, &disk(2, CANDIDATE), at(ms(1), None))
        .unwrap();
    // The candidate's own vote counts like any other: it cannot then vote for someone else.
    let other = Message {
        from: CANDIDATE,
        to: FOLLOWER,
        term: Term(2),
        body: Body::VoteResponse {
            pre_vote: false,
            granted: true,
        },
    };
    let twice = checker
        .message_sent(&other, &disk(2, FOLLOWER), at(ms(2), None))
        .unwrap_err();
    assert!(twice.contains("voted twice"), "{twice}");
}

#[test]
fn a_lease_held_by_a_caretaker_is_caught() {
    let mut checker = Checker::default();
    checker.lease_held(LEADER, Term(3)).unwrap();
    checker.caretaker_elected(LEADER, Term(3));
    let violation = checker.lease_held(LEADER, Term(3)).unwrap_err();
    assert!(
        violation.contains("may not lead, holds a lease"),
        "{violation}"
    );
    // Told it may lead, it may build a lease like any leader.
    checker.may_lead_again(LEADER);
    checker.lease_held(LEADER, Term(3)).unwrap();
}
