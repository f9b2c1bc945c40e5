//! Ranked candidacy (`succession`): the leader's order decides who campaigns first once the
//! promises end; votes, stickiness and the random fallback stay as they were.

mod common;

use common::*;
use pg_leader_raft::succession::{MAX_ORDER, MIN_STEP};
use pg_leader_raft::{Body, Dropped, Duration, Message, NodeId, Role, Term, WalPosition};

const SYSTEM: u64 = 7_000_000_002;

fn primary(lsn: u64) -> WalPosition {
    WalPosition::primary(SYSTEM, 1, lsn)
}

fn standby(lsn: u64) -> WalPosition {
    WalPosition::standby(SYSTEM, 1, lsn)
}

/// `positions.len()` servers at those positions, node 1 elected, a few heartbeat rounds later.
fn led_by_one(positions: &[WalPosition], priorities: &[u32]) -> TestCluster {
    let mut c = TestCluster::new(positions.len() as u32);
    for (i, wal) in positions.iter().enumerate() {
        let priority = priorities.get(i).copied().unwrap_or(100);
        c.with_node(i as u32 + 1, |r, _| {
            r.set_wal_position(*wal);
            r.set_priority(priority);
        });
    }
    c.elect(1);
    c.advance_ms(3 * HEARTBEAT_MS);
    c
}

/// Crashes the leader right after a heartbeat round; returns who leads next, how long after the
/// crash, and how many terms the election took.
fn kill_leader_and_time(c: &mut TestCluster, also_down: &[u32]) -> (u32, u64, u64) {
    let leader = (1..=c.nodes.len() as u32)
        .find(|&n| c.nodes[n as usize - 1].is_some() && c.node(n).role() == Role::Leader)
        .expect("a leader");
    // Right after a heartbeat round.
    let due = c.node(leader).next_deadline();
    while c.local(leader) < due {
        c.advance_ms(1);
    }
    let term = c.node(leader).term().0;
    c.crash(leader);
    for n in also_down {
        c.crash(*n);
    }
    for ms in 1..=3 * ELECTION_MS {
        c.advance_ms(1);
        let winner = (1..=c.nodes.len() as u32).find(|&n| {
            c.nodes[n as usize - 1]
                .as_ref()
                .is_some_and(|r| r.role() == Role::Leader)
        });
        if let Some(w) = winner {
            return (w, ms, c.node(w).term().0 - term);
        }
    }
    panic!("no leader within 3 T");
}

#[test]
fn the_follower_holding_the_most_wal_campaigns_first_right_after_the_promises() {
    let mut c = led_by_one(&[primary(100), standby(90), standby(100)], &[]);
    assert_eq!(c.node(3).succession_rank(), Some(0));
    assert_eq!(c.node(2).succession_rank(), Some(1));
    let (winner, after, terms) = kill_leader_and_time(&mut c, &[]);
    assert_eq!(winner, 3);
    assert_eq!(terms, 1, "one round");
    // The promise ends T after the last heartbeat; rank 0 waits a round trip and 1 ms more.
    assert!(after >= ELECTION_MS, "{after} ms: before the promise ended");
    assert!(
        after <= ELECTION_MS + MIN_STEP.as_millis(),
        "{after} ms after the crash"
    );
}

#[test]
fn priority_orders_followers_that_hold_the_same_wal() {
    let mut c = led_by_one(&[primary(100), standby(100), standby(100)], &[100, 50, 150]);
    assert_eq!(c.node(3).succession_rank(), Some(0));
    assert_eq!(c.node(2).succession_rank(), Some(1));
    // A reload lowers it: the leader hears of it with the answer to its next order.
    c.with_node(3, |r, _| r.set_priority(10));
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(c.node(2).succession_rank(), Some(0));
    assert_eq!(c.node(3).succession_rank(), Some(1));
    let (winner, _, terms) = kill_leader_and_time(&mut c, &[]);
    assert_eq!((winner, terms), (2, 1));
}

#[test]
fn the_handover_target_among_equals_is_the_one_of_highest_priority() {
    let c = led_by_one(&[primary(100), standby(100), standby(100)], &[100, 50, 150]);
    assert_eq!(c.node(1).best_transfer_target(), Some(NodeId(3)));
}

#[test]
fn a_voter_that_may_not_lead_has_no_rank() {
    let mut c = TestCluster::new(3);
    c.restart_changed(2, |cfg| cfg.can_lead = false);
    for (n, wal) in [(1, primary(100)), (2, standby(200)), (3, standby(50))] {
        c.with_node(n, |r, _| r.set_wal_position(wal));
    }
    c.elect(1);
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(c.node(1).succession_order().len(), 1);
    assert_eq!(c.node(2).succession_rank(), None);
    assert_eq!(c.node(3).succession_rank(), Some(0));
}

#[test]
fn with_rank_zero_down_too_rank_one_wins_a_step_later() {
    let mut c = led_by_one(
        &[
            primary(100),
            standby(99),
            standby(100),
            standby(98),
            standby(97),
        ],
        &[],
    );
    assert_eq!(c.node(3).succession_rank(), Some(0));
    assert_eq!(c.node(2).succession_rank(), Some(1));
    let (winner, after, terms) = kill_leader_and_time(&mut c, &[3]);
    assert_eq!((winner, terms), (2, 1));
    let step = MIN_STEP.as_millis();
    assert!(after > ELECTION_MS + step, "{after} ms: rank 1 went early");
    assert!(after <= ELECTION_MS + 2 * step, "{after} ms");
}

#[test]
fn after_a_failed_round_and_without_an_order_the_timer_is_drawn_as_before() {
    let mut c = led_by_one(&[primary(100), standby(90), standby(100)], &[]);
    // The leader dies and rank 0's election fails (the other survivor is cut off from it).
    c.crash(1);
    c.isolate(3);
    c.advance_ms(ELECTION_MS + 3);
    assert_eq!(c.node(3).role(), Role::PreCandidate);
    assert_eq!(c.node(3).succession_rank(), None, "the order is spent");
    let next = c.node(3).next_deadline().saturating_since(c.local(3));
    assert!(next >= Duration::from_millis(ELECTION_MS - 5), "{next}");
}

#[test]
fn an_order_is_heard_only_from_the_leader_of_the_current_term() {
    let mut c = led_by_one(&[primary(100), standby(90), standby(100)], &[]);
    let term = c.node(2).term();
    let order = |from: u32, term: Term, len: usize| Message {
        from: NodeId(from),
        to: NodeId(2),
        term,
        body: Body::Succession {
            order: vec![(NodeId(2), 100); len],
            step: MIN_STEP,
            lead: Duration::from_millis(1),
        },
    };
    let now = c.local(2);
    let before = c.node(2).succession_rank();
    for m in [order(3, term, 1), order(1, Term(term.0 + 1), 1)] {
        c.nodes[1].as_mut().unwrap().step(m, now).unwrap();
        assert_eq!(c.node(2).succession_rank(), before);
        assert_eq!(c.node(2).term(), term, "an order raises no term");
    }
    let long = order(1, term, MAX_ORDER + 1);
    assert_eq!(
        c.nodes[1].as_mut().unwrap().step(long, now),
        Err(Dropped::Malformed)
    );
}
