//! Maintenance mode (`maintenance`): replicated through the log, proposed only by the leader,
//! applied in order on every server, derived again from the durable log after a restart, and
//! known to a new leader once it committed an entry of its term.

mod common;

use common::*;
use pg_leader_raft::{EntryData, Event, LogIndex, MaintenanceError, Role, Term, WalPosition};

const SYSTEM: u64 = 7_000_000_002;

fn paused(c: &TestCluster, n: u32) -> bool {
    c.node(n).maintenance().paused
}

/// The maintenance events node `n` reported, in order.
fn events(c: &TestCluster, n: u32) -> Vec<bool> {
    c.readies
        .iter()
        .filter(|(m, _)| *m == n)
        .flat_map(|(_, r)| r.events.iter())
        .filter_map(|e| match e {
            Event::MaintenanceChanged { paused, .. } => Some(*paused),
            _ => None,
        })
        .collect()
}

/// Three servers, node 1 leading, that all applied a pause asked on node 1.
fn paused_by_node_1() -> TestCluster {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    c.with_node(1, |r, now| r.request_maintenance(true, now))
        .unwrap();
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    c
}

#[test]
fn the_leader_appends_the_entry_and_every_server_applies_it_once_committed() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    let index = c.with_node(1, |r, now| r.request_maintenance(true, now));
    let index = index.unwrap().expect("a new entry");
    assert!(
        c.node(1).automatic_actions_held(),
        "held as soon as it is in the log"
    );
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    for n in 1..=3 {
        assert!(paused(&c, n), "node {n} applied the pause");
        let m = c.node(n).maintenance();
        assert_eq!((m.by, m.index, m.term), (Some(id(1)), index, Term(1)));
        assert_eq!(events(&c, n), vec![true], "node {n} reports it once");
        assert!(c.node(n).automatic_actions_held());
    }
    let entry = &c.node(2).log().entries()[index.0 as usize - 1];
    assert_eq!(
        entry.data,
        EntryData::Maintenance {
            paused: true,
            by: id(1)
        }
    );
}

#[test]
fn asking_for_the_state_the_log_ends_in_appends_nothing() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    assert_eq!(
        c.with_node(1, |r, now| r.request_maintenance(false, now)),
        Ok(None),
        "never paused: resume changes nothing"
    );
    c.with_node(1, |r, now| r.request_maintenance(true, now))
        .unwrap();
    let last = c.node(1).log().last_index();
    assert_eq!(
        c.with_node(1, |r, now| r.request_maintenance(true, now)),
        Ok(None),
        "a pause under way is not appended twice"
    );
    assert_eq!(c.node(1).log().last_index(), last);
}

#[test]
fn a_follower_passes_the_request_on_and_only_the_leader_appends() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    let before = c.node(3).log().last_index();
    assert_eq!(
        c.with_node(3, |r, now| r.request_maintenance(true, now)),
        Ok(None)
    );
    assert_eq!(
        c.node(3).log().last_index(),
        before,
        "a follower appends nothing itself"
    );
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    for n in 1..=3 {
        assert!(paused(&c, n), "node {n}");
        assert_eq!(c.node(n).maintenance().by, Some(id(3)), "asked on node 3");
    }
    // Resumed from another follower, applied everywhere in order.
    c.with_node(2, |r, now| r.request_maintenance(false, now))
        .unwrap();
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    for n in 1..=3 {
        assert!(!paused(&c, n), "node {n}");
        assert_eq!(events(&c, n), vec![true, false], "node {n}");
        assert!(!c.node(n).automatic_actions_held(), "node {n}");
    }
}

#[test]
fn with_no_leader_known_the_request_is_refused() {
    let mut c = TestCluster::new(3);
    assert_eq!(
        c.with_node(2, |r, now| r.request_maintenance(true, now)),
        Err(MaintenanceError::NoLeader)
    );
}

#[test]
fn an_uncommitted_pause_holds_actions_but_is_not_applied() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    c.isolate(1);
    c.with_node(1, |r, now| r.request_maintenance(true, now))
        .unwrap();
    assert!(!paused(&c, 1), "not committed: not applied");
    assert!(c.node(1).automatic_actions_held());
}

#[test]
fn a_restarted_server_derives_the_state_from_its_durable_log() {
    let mut c = paused_by_node_1();
    c.crash(2);
    c.restart(2);
    assert!(!paused(&c, 2), "nothing is known committed at start");
    assert!(
        c.node(2).automatic_actions_held(),
        "the durable log ends in a pause: held before any leader speaks"
    );
    c.advance_ms(HEARTBEAT_MS + 1);
    assert!(
        paused(&c, 2),
        "applied again once the leader said it is committed"
    );
    assert_eq!(events(&c, 2).last(), Some(&true));
}

#[test]
fn a_new_leader_keeps_the_pause_and_is_held_until_it_committed_an_entry_of_its_term() {
    let mut c = paused_by_node_1();
    c.crash(1);
    c.advance_ms(3 * ELECTION_MS);
    let leader = (2..=3)
        .find(|&n| c.node(n).role() == Role::Leader)
        .expect("a new leader");
    assert!(c.node(leader).term() > Term(1));
    assert!(c.node(leader).maintenance_settled());
    assert!(paused(&c, leader), "the new leader applied the pause too");
    // Its own view decides a resume: appended once, applied by the survivors.
    let index = c.with_node(leader, |r, now| r.request_maintenance(false, now));
    assert!(index.unwrap().is_some());
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    assert!(!paused(&c, 2) && !paused(&c, 3));
}

#[test]
fn a_leader_that_has_not_committed_an_entry_of_its_term_is_not_settled() {
    let mut c = TestCluster::new(3);
    c.isolate(2);
    c.isolate(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.heal();
    // Node 1 wins, but the no-op of its term is not committed until the answers arrive.
    c.with_node(1, |r, now| r.campaign(now));
    while c.node(1).role() != Role::Leader {
        let Some(m) = c.queue.pop_front() else {
            panic!("node 1 did not win")
        };
        let to = m.to.0;
        if matches!(m.body, pg_leader_raft::Body::AppendEntries { .. }) {
            continue;
        }
        c.with_node(to, |r, now| {
            let _ = r.step(m, now);
        });
    }
    assert_eq!(c.node(1).log().committed(), LogIndex(0));
    assert!(!c.node(1).maintenance_settled());
    assert!(c.node(1).automatic_actions_held());
}

#[test]
fn while_paused_a_standby_leader_does_not_hand_over_to_a_live_primary_and_does_after_resume() {
    let mut c = TestCluster::new(3);
    let positions = [
        WalPosition::primary(SYSTEM, 1, 100),
        WalPosition::standby(SYSTEM, 1, 100),
        WalPosition::standby(SYSTEM, 1, 90),
    ];
    for (i, wal) in positions.iter().enumerate() {
        c.with_node(i as u32 + 1, |r, _| r.set_wal_position(*wal));
    }
    c.isolate(1);
    c.elect(2);
    c.with_node(2, |r, now| r.request_maintenance(true, now))
        .unwrap();
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    assert!(paused(&c, 2));
    c.heal();
    c.advance_ms(5 * HEARTBEAT_MS);
    assert_eq!(c.leaders_with_lease(), vec![2], "no handover while paused");
    c.with_node(2, |r, now| r.request_maintenance(false, now))
        .unwrap();
    c.deliver();
    c.advance_ms(5 * HEARTBEAT_MS);
    assert_eq!(
        c.leaders_with_lease(),
        vec![1],
        "handed to the primary after resume"
    );
}
