//! Membership changes through the log (thesis §4): one voter at a time, joining servers
//! promoted once caught up, leaving servers demoted before they go.

mod common;

use common::*;
use pg_leader_raft::{
    Body, ChangeError, Event, MemberRole, MembershipChange, Message, NodeId, Role, Term,
    TransferError,
};

fn add(id: u32, voter: bool) -> MembershipChange {
    MembershipChange::Add {
        id: NodeId(id),
        address: format!("127.0.0.1:{}", 7000 + id),
        voter,
    }
}

fn remove(id: u32) -> MembershipChange {
    MembershipChange::Remove { id: NodeId(id) }
}

fn role_of(c: &TestCluster, on: u32, of: u32) -> Option<MemberRole> {
    c.node(on).membership().0.role_of(NodeId(of))
}

/// A leader (node 1) that has committed an entry of its term.
fn settled(voters: u32, spares: u32) -> TestCluster {
    let mut c = TestCluster::with_spares(voters, spares);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    c
}

#[test]
fn a_new_voter_joins_as_a_non_voter_and_is_promoted_once_caught_up() {
    let mut c = settled(3, 1);
    c.with_node(1, |r, now| r.propose_change(&add(4, true), now))
        .unwrap();
    c.advance_ms(3 * HEARTBEAT_MS);
    for n in 1..=4 {
        assert_eq!(role_of(&c, n, 4), Some(MemberRole::Voter), "on node {n}");
    }
    assert_eq!(c.node(1).membership().0.voter_count(), 4);
    // Four voters: two of them are no longer a majority.
    c.isolate(3);
    c.isolate(4);
    let index = c
        .with_node(1, |r, now| r.propose(b"x".to_vec(), now))
        .unwrap();
    c.advance_ms(HEARTBEAT_MS);
    assert!(c.node(1).log().committed() < index);
}

#[test]
fn only_one_change_at_a_time_and_a_stalled_join_can_be_cancelled() {
    let mut c = settled(3, 2);
    c.crash(4);
    c.with_node(1, |r, now| r.propose_change(&add(4, true), now))
        .unwrap();
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(
        role_of(&c, 1, 4),
        Some(MemberRole::Joining),
        "node 4 is down"
    );
    assert_eq!(
        c.with_node(1, |r, now| r.propose_change(&add(5, false), now)),
        Err(ChangeError::InProgress(Some(NodeId(4))))
    );
    assert_eq!(
        c.with_node(1, |r, now| r.propose_change(&remove(2), now)),
        Err(ChangeError::InProgress(Some(NodeId(4))))
    );
    // Asking for the same change again is harmless.
    let before = c.node(1).log().last_index();
    c.with_node(1, |r, now| r.propose_change(&add(4, true), now))
        .unwrap();
    assert_eq!(c.node(1).log().last_index(), before);
    c.with_node(1, |r, now| r.propose_change(&remove(4), now))
        .unwrap();
    c.advance_ms(HEARTBEAT_MS + 1);
    assert_eq!(role_of(&c, 2, 4), None);
    c.with_node(1, |r, now| r.propose_change(&add(5, false), now))
        .unwrap();
    c.advance_ms(2 * HEARTBEAT_MS);
    assert_eq!(role_of(&c, 5, 5), Some(MemberRole::Learner));
}

#[test]
fn a_removed_voter_learns_it_is_leaving_and_never_campaigns() {
    let mut c = settled(4, 0);
    c.with_node(1, |r, now| r.propose_change(&remove(4), now))
        .unwrap();
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(role_of(&c, 1, 4), None, "dropped after leaving");
    assert_eq!(role_of(&c, 4, 4), Some(MemberRole::Leaving));
    assert_eq!(c.node(1).membership().0.voter_count(), 3);
    let term = c.node(4).term();
    c.advance_ms(10 * ELECTION_MS);
    assert_eq!(c.node(4).term(), term, "a leaving server does not campaign");
    assert_eq!(c.node(4).role(), Role::Follower);
    assert_eq!(
        c.node(4).leader_id(),
        None,
        "and stops naming a leader it no longer hears"
    );
    assert_eq!(c.leaders_with_lease(), vec![1]);
}

#[test]
fn a_dead_voter_can_be_removed() {
    let mut c = settled(3, 0);
    c.crash(3);
    c.with_node(1, |r, now| r.propose_change(&remove(3), now))
        .unwrap();
    c.advance_ms(2 * ELECTION_MS);
    assert_eq!(role_of(&c, 2, 3), None);
    assert_eq!(c.leaders_with_lease(), vec![1]);
}

#[test]
fn the_leader_hands_over_before_it_is_removed() {
    let mut c = settled(3, 0);
    assert_eq!(
        c.with_node(1, |r, now| r.propose_change(&remove(1), now)),
        Err(ChangeError::RemovingLeader)
    );
    // Passed on by a follower: the leader starts a handover and says so.
    let request = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: c.node(1).term(),
        body: Body::ChangeRequest { change: remove(1) },
    };
    c.with_node(1, |r, now| r.step(request, now)).unwrap();
    let answered = c.readies.iter().rev().take(3).any(|(_, ready)| {
        ready.messages.iter().any(|m| {
            m.body
                == Body::ChangeAnswer {
                    outcome: ChangeError::RemovingLeader.code(),
                }
        })
    });
    assert!(answered);
    c.advance_ms(HEARTBEAT_MS);
    let leader = c.node(2).leader_id().expect("a new leader");
    assert_ne!(leader, NodeId(1));
    c.advance_ms(HEARTBEAT_MS);
    c.with_node(leader.0, |r, now| r.propose_change(&remove(1), now))
        .unwrap();
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(role_of(&c, leader.0, 1), None);
    assert_eq!(c.leaders_with_lease(), vec![leader.0]);
}

#[test]
fn a_learner_follows_without_counting_or_campaigning() {
    let mut c = settled(3, 1);
    c.with_node(1, |r, now| r.propose_change(&add(4, false), now))
        .unwrap();
    c.advance_ms(2 * HEARTBEAT_MS);
    assert_eq!(role_of(&c, 4, 4), Some(MemberRole::Learner));
    assert_eq!(c.node(4).leader_id(), Some(NodeId(1)));
    c.isolate(2);
    c.isolate(3);
    let index = c
        .with_node(1, |r, now| r.propose(b"x".to_vec(), now))
        .unwrap();
    c.advance_ms(HEARTBEAT_MS);
    assert!(
        c.node(1).log().committed() < index,
        "a learner does not make a majority"
    );
    c.crash(1);
    c.heal();
    c.advance_ms(5 * ELECTION_MS);
    let leader = c.node(2).leader_id().expect("2 and 3 elect");
    assert_ne!(leader, NodeId(4));
    assert_eq!(c.node(4).leader_id(), Some(leader));
}

#[test]
fn a_voter_that_cannot_lead_votes_but_never_leads() {
    let mut c = TestCluster::new(3);
    let mut cfg = config(3, 3);
    cfg.can_lead = false;
    c.crash(3);
    c.restart_with(3, cfg);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    assert_eq!(
        c.with_node(1, |r, now| r.transfer_leadership(NodeId(3), now)),
        Err(TransferError::TargetCannotLead(NodeId(3)))
    );
    assert_eq!(c.node(1).best_transfer_target(), Some(NodeId(2)));
    // With node 1 gone, only node 2 may take over; node 3's vote still counts.
    c.crash(1);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(c.node(2).role(), Role::Leader);
    assert_eq!(c.node(3).role(), Role::Follower);
    c.crash(2);
    for _ in 0..5 * ELECTION_MS {
        c.advance_ms(1);
        assert_ne!(c.node(3).role(), Role::Leader, "alone, it never leads");
    }
}

#[test]
fn no_change_before_the_leader_committed_an_entry_of_its_term() {
    let mut c = TestCluster::new(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    // Deliver the campaign one message at a time, and cut node 1 off the moment it has won.
    for _ in 0..100 {
        if c.node(1).role() == Role::Leader {
            break;
        }
        let m = c.queue.pop_front().expect("the campaign goes on");
        c.with_node(m.to.0, |r, now| {
            let _ = r.step(m, now);
        });
    }
    c.isolate(1);
    c.queue.clear();
    assert_eq!(
        c.with_node(1, |r, now| r.propose_change(&add(9, false), now)),
        Err(ChangeError::NotReady)
    );
    c.heal();
    c.advance_ms(HEARTBEAT_MS + 1);
    assert!(c
        .with_node(1, |r, now| r.propose_change(&add(9, false), now))
        .is_ok());
}

#[test]
fn an_uncommitted_change_dies_with_its_leader_and_is_reverted() {
    let mut c = settled(3, 1);
    c.isolate(1);
    c.with_node(1, |r, now| r.propose_change(&remove(3), now))
        .unwrap();
    assert_eq!(
        role_of(&c, 1, 3),
        Some(MemberRole::Leaving),
        "in effect at once"
    );
    c.crash(1);
    c.heal();
    c.isolate(1);
    c.advance_ms(5 * ELECTION_MS);
    let leader = c.node(2).leader_id().expect("2 and 3 elect");
    assert_eq!(role_of(&c, 2, 3), Some(MemberRole::Voter));
    c.restart(1);
    c.heal();
    c.advance_ms(3 * ELECTION_MS);
    assert_eq!(c.node(1).leader_id(), Some(leader));
    assert_eq!(
        role_of(&c, 1, 3),
        Some(MemberRole::Voter),
        "the entry was truncated"
    );
    let reverted = c.readies.iter().any(|(n, ready)| {
        *n == 1
            && ready.events.iter().any(|e| {
                matches!(e, Event::MembershipChanged { membership, .. }
                    if membership.is_voter(NodeId(3)))
            })
    });
    assert!(reverted);
    assert!(c.node(1).term() > Term(1));
}

#[test]
fn a_server_outside_our_configuration_is_heard_as_a_leader_or_once_configured_as_a_candidate() {
    let mut c = TestCluster::new(3);
    let stranger_vote = Message {
        from: NodeId(9),
        to: NodeId(1),
        term: Term(5),
        body: Body::RequestVote {
            pre_vote: true,
            last_log_index: pg_leader_raft::LogIndex(0),
            last_log_term: Term(0),
            transfer: false,
            wal: Default::default(),
        },
    };
    // Before any configuration is replicated, strangers are not heard.
    assert_eq!(
        c.with_node(1, |r, now| r.step(stranger_vote.clone(), now)),
        Err(pg_leader_raft::Dropped::UnknownSender)
    );
    // A server added while this node was cut off leads a later term: its entries are taken.
    let sent_at = c.now;
    let heartbeat = move |term: u64| Message {
        from: NodeId(9),
        to: NodeId(1),
        term: Term(term),
        body: Body::AppendEntries {
            prev_log_index: pg_leader_raft::LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: pg_leader_raft::LogIndex(0),
            sent_at,
            lease: pg_leader_raft::Duration::from_millis(ELECTION_MS),
            wal: pg_leader_raft::WalPosition::default(),
        },
    };
    c.with_node(1, |r, now| r.step(heartbeat(2), now)).unwrap();
    assert_eq!(c.node(1).leader_id(), Some(NodeId(9)));
    c.with_node(1, |r, now| r.step(heartbeat(2), now)).unwrap();
    assert_eq!(c.node(1).term(), Term(2));
}

#[test]
fn a_voter_that_missed_a_configuration_still_votes_for_the_new_voter() {
    // Node 3 misses the entries that add node 4; then the leader dies. Nodes 2 and 4 hold the
    // new configuration (4 voters: 3 needed), so node 3's vote is needed by whoever wins.
    // Node 2 is behind node 4 in WAL, so node 4 refuses it: only node 4 can win, with node 3.
    let mut c = settled(3, 1);
    for (n, lsn) in [(2, 1), (3, 0), (4, 5)] {
        c.with_node(n, |r, _| {
            r.set_wal_position(pg_leader_raft::WalPosition {
                timeline: 1,
                lsn,
                ..Default::default()
            })
        });
    }
    c.isolate(3);
    c.with_node(1, |r, now| r.propose_change(&add(4, true), now))
        .unwrap();
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(role_of(&c, 2, 4), Some(MemberRole::Voter));
    assert_eq!(role_of(&c, 3, 4), None);
    c.crash(1);
    c.heal();
    c.isolate(1);
    c.advance_ms(6 * ELECTION_MS);
    assert_eq!(c.node(2).leader_id(), Some(NodeId(4)));
    assert_eq!(
        role_of(&c, 3, 4),
        Some(MemberRole::Voter),
        "node 3 caught up"
    );
}

#[test]
fn a_change_waits_for_an_entry_of_the_leaders_term_or_two_disjoint_majorities_commit() {
    // Ongaro's single-server change bug (raft-dev, 2015), with removals. Node 1 leads {1,2,3,4},
    // starts removing 4 (then {1,2,3} vote: 2 of them decide), stores it alone and crashes.
    // Node 2 wins term 2 with 3 and 4, and node 3 hears no more of it. Were node 2 to remove 3
    // at once ({1,2,4}: 2 and 4 commit it), node 1 could come back and win with node 3 alone,
    // a majority of its configuration disjoint from {2,4}, and lose what they committed.
    let mut c = TestCluster::new(4);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    c.isolate(1);
    c.with_node(1, |r, now| r.propose_change(&remove(4), now))
        .unwrap();
    c.crash(1);
    c.now = c.now + pg_leader_raft::Duration::from_millis(2 * ELECTION_MS);
    c.with_node(2, |r, now| r.campaign(now));
    while c.node(2).role() != Role::Leader {
        let m = c.queue.pop_front().expect("the campaign goes on");
        c.with_node(m.to.0, |r, now| {
            let _ = r.step(m, now);
        });
    }
    c.cut.insert((2, 3));
    c.cut.insert((3, 2));
    c.queue.retain(|m| (m.from.0, m.to.0) != (2, 3));
    c.deliver();
    let _ = c.with_node(2, |r, now| r.propose_change(&remove(3), now));
    c.advance_ms(HEARTBEAT_MS);
    let committed = c.node(2).log().committed().0 as usize;
    let committed_by_2 = c.node(2).log().entries()[..committed].to_vec();
    c.crash(2);
    c.heal();
    c.isolate(4);
    c.restart(1);
    for _ in 0..10 * ELECTION_MS {
        if c.node(1).role() == Role::Leader {
            break;
        }
        c.advance_ms(1);
    }
    assert_eq!(c.node(1).role(), Role::Leader, "1 and 3 elect");
    assert_eq!(
        c.node(1).log().entries()[..committed],
        committed_by_2[..],
        "the new leader holds every committed entry (§5.4)"
    );
}

#[test]
fn a_follower_takes_a_configuration_the_moment_it_appends_it() {
    // Thesis §4.1: a server uses the latest configuration in its log, committed or not, from
    // the moment it is appended; one heartbeat later is too late to count votes by it.
    let mut c = settled(3, 1);
    c.with_node(1, |r, now| r.propose_change(&add(4, false), now))
        .unwrap();
    let to_2 = c
        .queue
        .iter()
        .position(|m| m.to == NodeId(2) && m.kind() == "AppendEntries")
        .expect("the configuration goes out at once");
    let message = c.queue.remove(to_2).unwrap();
    c.with_node(2, |r, now| r.step(message, now).unwrap());
    assert_eq!(role_of(&c, 2, 4), Some(MemberRole::Learner));
    let (_, ready) = c.readies.last().unwrap();
    assert!(ready
        .events
        .iter()
        .any(|e| matches!(e, pg_leader_raft::Event::MembershipChanged { .. })));
}
