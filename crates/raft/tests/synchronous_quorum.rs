//! The vote rule of the synchronous quorum (`pg_leader.synchronous = quorum`, design.md
//! invariant 9): a voter grants its vote only to a candidate holding all the WAL it flushed
//! itself, judged on its position now and whatever the two logs, so that whoever wins holds
//! every commit the primary acknowledged (the primary plus k standbys meet every majority).

mod common;

use common::*;
use pg_leader_raft::{Body, Message, WalPosition};

const SYSTEM: u64 = 7_000_000_001;

fn standby(lsn: u64) -> WalPosition {
    WalPosition::standby(SYSTEM, 1, lsn)
}

/// Node 3, a standby that flushed up to 150 a moment ago, is asked by node 2 at `theirs`, with
/// a log one entry longer than its own. Returns whether it granted.
fn asked(quorum: bool, theirs: WalPosition) -> (bool, TestCluster) {
    let mut c = TestCluster::new(3);
    c.with_node(1, |r, _| {
        r.set_wal_position(WalPosition::primary(SYSTEM, 1, 100))
    });
    for n in [2, 3] {
        c.with_node(n, |r, _| {
            r.set_wal_position(standby(100));
            r.set_synchronous_quorum(quorum);
        });
    }
    c.elect(1);
    c.advance_ms(3 * HEARTBEAT_MS);
    // Nodes 2 and 3 hear nothing of each other's own campaigns (ranked candidacy starts one
    // right after the promise ends): only the request below reaches node 3.
    c.isolate(2);
    c.isolate(3);
    c.crash(1);
    c.advance_ms(ELECTION_MS + HEARTBEAT_MS);
    // The last commit the primary acknowledged reached node 3 just before it died.
    c.with_node(3, |r, _| r.set_wal_position(standby(150)));
    let log = c.node(3).log();
    let (last, term) = (
        (log.last_index().0 + 1, log.last_term().0),
        c.node(3).term(),
    );
    let mut request = vote_request(2, 3, term.0 + 1, true, last);
    if let Body::RequestVote { wal, .. } = &mut request.body {
        *wal = theirs;
    }
    let request: Message = request;
    c.with_node(3, |r, now| r.step(request, now).unwrap());
    let granted = vote_answer(&c, 3).map(|(_, g)| g) == Some(true);
    (granted, c)
}

#[test]
fn without_the_quorum_a_longer_log_wins_over_wal() {
    assert!(asked(false, standby(100)).0);
}

#[test]
fn with_the_quorum_a_candidate_lacking_flushed_wal_is_refused_whatever_its_log() {
    let (granted, c) = asked(true, standby(100));
    assert!(!granted, "node 2 may lack a commit node 3 confirmed");
    let why = c
        .node(3)
        .status()
        .quorum_refusal
        .expect("the refusal is shown");
    assert_eq!(why.candidate, id(2));
    assert!(why.to_string().contains("no vote for node 2"), "{why}");
}

#[test]
fn with_the_quorum_a_candidate_holding_the_flushed_wal_is_granted() {
    assert!(asked(true, standby(150)).0);
    assert!(asked(true, standby(151)).0);
}
