//! The leader lease, leader stickiness and CheckQuorum: what `pg_leader_is_leader()` relies on.

mod common;

use common::*;
use pg_leader_raft::{Cause, Duration, Event, Instant, Role};

#[test]
fn the_lease_starts_only_when_a_majority_acknowledged_a_heartbeat() {
    let mut c = TestCluster::new(3);
    c.cut.insert((2, 1));
    c.cut.insert((3, 1));
    c.now = c.now + Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    c.deliver();
    // Votes never came back: not even leader.
    assert_ne!(c.node(1).role(), Role::Leader);
    c.heal();
    c.with_node(1, |r, now| r.campaign(now));
    c.deliver();
    assert_eq!(c.node(1).role(), Role::Leader);
    assert!(
        c.node(1).has_lease(c.now),
        "the first heartbeat round was acknowledged"
    );
}

#[test]
fn the_lease_is_the_acked_send_time_plus_t_minus_the_margin() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    let sent = c.now;
    let deadline = c.node(1).lease_deadline().unwrap();
    let margin = c
        .node(1)
        .config()
        .drift_margin(Duration::from_millis(ELECTION_MS));
    assert_eq!(
        deadline,
        sent + Duration::from_millis(ELECTION_MS).saturating_sub(margin)
    );
    // Cut the leader off: the lease runs out on time, before any follower may vote again.
    c.isolate(1);
    c.advance_ms(ELECTION_MS - margin.as_millis() - 1);
    assert!(c.node(1).has_lease(c.now));
    c.advance_ms(1);
    assert!(
        !c.node(1).has_lease(c.now),
        "the lease ended at {deadline:?}"
    );
    for n in [2, 3] {
        assert!(c.node(n).next_deadline() >= sent + Duration::from_millis(ELECTION_MS));
    }
}

#[test]
fn never_two_leases_when_the_leader_is_cut_off() {
    let mut c = TestCluster::new(5);
    c.elect(1);
    c.advance_ms(30);
    c.isolate(1);
    let mut new_leader_at = None;
    for _ in 0..4_000 {
        c.advance_ms(1);
        let holders = c.leaders_with_lease();
        assert!(holders.len() <= 1, "two leases at {:?}: {holders:?}", c.now);
        if new_leader_at.is_none() && holders.iter().any(|&n| n != 1) {
            new_leader_at = Some(c.now);
        }
    }
    assert!(
        new_leader_at.is_some(),
        "the majority side elected a new leader"
    );
}

#[test]
fn check_quorum_a_leader_that_hears_no_majority_steps_down() {
    let mut c = TestCluster::new(3);
    c.elect(2);
    c.isolate(2);
    c.advance_ms(2 * ELECTION_MS + HEARTBEAT_MS);
    assert_eq!(c.node(2).role(), Role::Follower);
    let stepped_down = c.readies.iter().any(|(n, r)| {
        *n == 2
            && r.events.iter().any(|e| {
                matches!(
                    e,
                    Event::RoleChanged {
                        role: Role::Follower,
                        cause: Cause::LostQuorum,
                        ..
                    }
                )
            })
    });
    assert!(stepped_down);
}

#[test]
fn a_follower_promises_the_lease_the_heartbeat_asks_for() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    let heard = c.now;
    // Node 2 cannot vote for another candidate before heard + T, whatever happens.
    c.isolate(1);
    c.advance_ms(ELECTION_MS - 1);
    assert!(c
        .node(2)
        .status()
        .last_leader_contact
        .is_some_and(|t| t >= heard));
    assert!(c.leaders_with_lease().iter().all(|&n| n == 1));
    let _ = Instant::ZERO;
}

#[test]
fn learners_acknowledgements_do_not_make_a_lease() {
    // 3 voters and 2 learners. Cut the other two voters off: the learners still answer every
    // heartbeat, but a new leader needs no learner, so the lease must run out.
    let mut c = TestCluster::with_spares(3, 2);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    for learner in [4, 5] {
        c.with_node(1, |r, now| {
            r.propose_change(
                &pg_leader_raft::MembershipChange::Add {
                    id: id(learner),
                    address: format!("127.0.0.1:{}", 7000 + learner),
                    voter: false,
                },
                now,
            )
        })
        .unwrap();
        c.advance_ms(2 * HEARTBEAT_MS);
    }
    // Right after a heartbeat round, so that CheckQuorum is a whole timeout away.
    while c.node(1).next_deadline() < c.local(1) + Duration::from_millis(HEARTBEAT_MS) {
        c.advance_ms(1);
    }
    for voter in [2, 3] {
        for other in [1, 4, 5] {
            c.cut.insert((voter, other));
            c.cut.insert((other, voter));
        }
    }
    let margin = c
        .node(1)
        .config()
        .drift_margin(Duration::from_millis(ELECTION_MS));
    c.advance_ms(ELECTION_MS - margin.as_millis() / 2);
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "CheckQuorum has not run yet"
    );
    assert!(
        !c.node(1).has_lease(c.local(1)),
        "the lease rests on learners"
    );
    let successor = run_checking_one_lease(&mut c, 4 * ELECTION_MS, 1);
    assert!(matches!(successor, Some(2 | 3)));
}

#[test]
fn the_drift_margin_covers_clocks_five_percent_apart() {
    // The leader's clock runs 5 % slow, its followers' 5 % fast: the edge of the lease model.
    // The leader is cut off right after a heartbeat round; a follower campaigns the moment it
    // may. The old lease must end before the new one begins.
    let mut c = TestCluster::new(3);
    c.drift_ppm = vec![-50_000, 50_000, 50_000];
    c.now = c.now + Duration::from_millis(2 * ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    c.deliver();
    assert_eq!(c.node(1).role(), Role::Leader);
    c.isolate(1);
    let mut successor = None;
    for _ in 0..2 * ELECTION_MS {
        c.advance_ms(1);
        c.with_node(2, |r, now| r.campaign(now));
        c.deliver();
        let holders = c.leaders_with_lease();
        assert!(holders.len() <= 1, "two leases at {:?}: {holders:?}", c.now);
        successor = successor.or(holders.into_iter().find(|&n| n != 1));
    }
    assert_eq!(successor, Some(2));
}

#[test]
fn an_acknowledgement_counts_for_the_promise_it_echoes_not_the_one_asked_for_now() {
    // The leader reloads T from 1 s to 10 s; its first 10 s heartbeats are lost, and answers to
    // the 1 s ones arrive late. They stand for 1 s promises.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS / 2);
    let sent_at = c.local(1);
    c.with_node(1, |r, _| {
        r.set_timing(
            Duration::from_millis(HEARTBEAT_MS),
            Duration::from_millis(10 * ELECTION_MS),
        )
        .unwrap()
    });
    c.isolate(1);
    c.advance_ms(HEARTBEAT_MS);
    let term = c.node(1).term();
    for from in [2, 3] {
        let late = pg_leader_raft::Message {
            from: id(from),
            to: id(1),
            term,
            body: pg_leader_raft::Body::AppendResponse {
                success: true,
                match_index: c.node(1).log().last_index(),
                reject_hint: c.node(1).log().last_index(),
                sent_at,
                lease: Duration::from_millis(ELECTION_MS),
                can_lead: true,
                wal: pg_leader_raft::WalPosition::default(),
            },
        };
        c.with_node(1, |r, now| r.step(late, now)).unwrap();
    }
    let one_second = c
        .node(1)
        .config()
        .lease_for(Duration::from_millis(ELECTION_MS));
    assert_eq!(c.node(1).lease_deadline(), Some(sent_at + one_second));
}

#[test]
fn check_quorum_a_leader_that_led_for_long_steps_down_once_cut_off() {
    // CheckQuorum holds for the whole term, not only past its first election timeout.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(c.node(1).role(), Role::Leader);
    c.isolate(1);
    c.advance_ms(2 * ELECTION_MS + HEARTBEAT_MS);
    assert_ne!(c.node(1).role(), Role::Leader);
}
