//! A voter judges a candidate's WAL against the position it had one heartbeat interval before
//! (`wal_sample`). The host tells the core its position before every pass of its loop
//! (`Raft::set_wal_position`, at least every 100 ms in the worker), but the core noted when a
//! position was seen only when called with the time (`step`, `tick`). After the leader dies a
//! follower gets no call until its election timer or a candidate's request: a position it had
//! held for a second was then taken as brand new, and the voter compared the candidate with
//! where it was before the leader died, granting its vote to a standby behind it. Now a position
//! set between calls is dated at the last call.
//!
//! Found by the failover simulator (`failover-soak --nodes 3 --fault-phase 0
//! --timelines-reserved --fence-superseded --seed 2 --trace`): the primary (node 1) dies at
//! 1303.3 ms; node 2 has received WAL up to 34532, node 3 up to 29795; at 2561 ms node 2 grants
//! node 3 its pre-vote and vote (its reference: 220, the position it last reported to the core
//! while the primary lived), node 3 promotes at 29795 and node 2 must be rebuilt with
//! `pg_rewind`. In 918 of 2,000 calm failovers of 3 servers the surviving standby is rebuilt
//! so. With the synchronous quorum on, the standby that confirmed a commit would elect one that
//! lacks it (design invariant 9).

mod common;

use common::*;
use pg_leader_raft::{Body, Duration, Message, WalPosition};

const SYSTEM: u64 = 7_000_000_001;

fn standby(lsn: u64) -> WalPosition {
    WalPosition::standby(SYSTEM, 1, lsn)
}

#[test]
fn a_voter_refuses_a_standby_behind_the_position_it_has_held_since_the_leader_died() {
    let mut c = TestCluster::new(3);
    c.with_node(1, |r, _| {
        r.set_wal_position(WalPosition::primary(SYSTEM, 1, 100))
    });
    for n in [2, 3] {
        c.with_node(n, |r, _| r.set_wal_position(standby(100)));
    }
    c.elect(1);
    c.advance_ms(3 * HEARTBEAT_MS);
    // The primary dies; node 3 had received more of its WAL than node 2 and replays it. Its
    // worker tells the core every 100 ms, as it does before every pass of its loop.
    c.crash(1);
    for _ in 0..11 {
        c.now = c.now + Duration::from_millis(HEARTBEAT_MS);
        c.with_node(3, |r, _| r.set_wal_position(standby(150)));
    }
    // 1.1 s later (its promise to node 1 has ended), node 2 asks, from 100.
    let log = c.node(3).log();
    let (last, term) = ((log.last_index().0, log.last_term().0), c.node(3).term());
    let mut request = vote_request(2, 3, term.0 + 1, true, last);
    if let Body::RequestVote { wal, .. } = &mut request.body {
        *wal = standby(100);
    }
    let request: Message = request;
    c.with_node(3, |r, now| r.step(request, now).unwrap());
    assert_eq!(
        vote_answer(&c, 3).map(|(_, granted)| granted),
        Some(false),
        "node 3 has been at 150 for 1.1 s, eleven heartbeat intervals"
    );
}
