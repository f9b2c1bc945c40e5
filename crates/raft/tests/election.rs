//! Elections: the Raft paper §5.1-§5.2 and §5.4.1, plus PreVote, leader stickiness and the
//! restart rule.

mod common;

use common::*;
use pg_leader_raft::{Body, Cause, Event, LogIndex, Message, NodeId, Role, Term, WalPosition};

#[test]
fn s5_2_follower_waits_between_t_and_2t_then_probes_with_prevote() {
    let mut c = TestCluster::new(3);
    let start = c.now;
    let deadline = c.node(1).next_deadline();
    let waited = deadline.saturating_since(start).as_millis();
    assert!(
        (ELECTION_MS..2 * ELECTION_MS).contains(&waited),
        "waited {waited} ms"
    );
    c.cut.insert((1, 2));
    c.cut.insert((1, 3));
    c.now = deadline;
    c.with_node(1, |r, now| r.tick(now));
    assert_eq!(c.node(1).role(), Role::PreCandidate);
    // §9.6: a PreVote asks about term + 1 without raising the node's own term.
    assert_eq!(c.node(1).term(), Term(0));
    let (_, ready) = c.readies.last().unwrap();
    assert!(ready.hard_state.is_none(), "a pre-vote persists nothing");
    assert!(ready
        .messages
        .iter()
        .all(|m| m.term == Term(1) && m.kind() == "PreVote"));
}

#[test]
fn s5_2_election_timeouts_are_drawn_at_fine_resolution() {
    let mut seen = std::collections::HashSet::new();
    for seed in 0..200u64 {
        let raft = pg_leader_raft::Raft::new(
            config(1, 3),
            Default::default(),
            Box::new(pg_leader_raft::SplitMix64::new(seed)),
            pg_leader_raft::Instant::ZERO,
        )
        .unwrap();
        seen.insert(raft.next_deadline());
    }
    // Millisecond-or-finer draws: 200 draws from [T, 2T) hardly ever collide.
    assert!(seen.len() >= 195, "only {} distinct timeouts", seen.len());
}

#[test]
fn s5_2_a_majority_elects_and_everyone_follows() {
    let mut c = TestCluster::new(5);
    c.elect(3);
    for n in [1, 2, 4, 5] {
        assert_eq!(c.node(n).role(), Role::Follower);
        assert_eq!(c.node(n).leader_id(), Some(id(3)));
        assert_eq!(c.node(n).term(), Term(1));
    }
}

#[test]
fn s5_2_a_candidate_without_a_majority_does_not_lead() {
    // 4 nodes: 2 votes (its own and one more) are not a majority.
    let mut c = TestCluster::new(4);
    c.isolate(3);
    c.isolate(4);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    c.deliver();
    assert_ne!(c.node(1).role(), Role::Leader);
    assert_ne!(
        c.node(1).role(),
        Role::Candidate,
        "PreVote never got a majority"
    );
}

#[test]
fn s5_2_one_vote_per_term_first_come_first_served() {
    let mut c = TestCluster::new(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(3, |r, now| {
        r.step(vote_request(1, 3, 1, false, (0, 0)), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 3), Some((Term(1), true)));
    c.with_node(3, |r, now| {
        r.step(vote_request(2, 3, 1, false, (0, 0)), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 3), Some((Term(1), false)));
    // Asking again is answered the same way (a duplicate request).
    c.with_node(3, |r, now| {
        r.step(vote_request(1, 3, 1, false, (0, 0)), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 3), Some((Term(1), true)));
}

#[test]
fn s5_2_the_vote_is_durable_in_the_ready_that_grants_it() {
    let mut c = TestCluster::new(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 4, false, (0, 0)), now).unwrap()
    });
    let (_, ready) = c.readies.last().unwrap();
    let hs = ready
        .hard_state
        .expect("the grant's Ready carries the vote");
    assert_eq!((hs.term, hs.voted_for), (Term(4), Some(id(1))));
    // After a crash the node remembers it and refuses anyone else in term 4.
    c.crash(2);
    c.restart(2);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(2, |r, now| {
        r.step(vote_request(3, 2, 4, false, (0, 0)), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 2), Some((Term(4), false)));
}

#[test]
fn s5_4_1_a_voter_refuses_a_candidate_with_an_older_log() {
    // Voter's log: one entry of term 2. (last index, last term) of candidates:
    let cases = [
        ((1, 1), false), // older last term
        ((0, 0), false), // empty log
        ((1, 2), true),  // same
        ((2, 2), true),  // longer, same term
        ((1, 3), true),  // newer last term
    ];
    for (last, granted) in cases {
        let mut c = TestCluster::new(3);
        c.disks[1].entries.push(pg_leader_raft::Entry {
            term: Term(2),
            index: LogIndex(1),
            data: pg_leader_raft::EntryData::Noop,
        });
        c.disks[1].hard_state.term = Term(2);
        c.restart(2);
        c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
        c.with_node(2, |r, now| {
            r.step(vote_request(1, 2, 5, false, last), now).unwrap()
        });
        assert_eq!(
            vote_answer(&c, 2).map(|a| a.1),
            Some(granted),
            "candidate log {last:?}"
        );
    }
}

#[test]
fn s5_1_a_later_term_makes_a_leader_step_down_and_a_stale_one_learns_it() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    // An AppendEntries of a later term (another leader was elected elsewhere).
    let from_new_leader = Message {
        from: id(2),
        to: id(1),
        term: Term(7),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: pg_leader_raft::Instant::ZERO,
            lease: pg_leader_raft::Duration::from_millis(ELECTION_MS),
            wal: pg_leader_raft::WalPosition::default(),
        },
    };
    c.with_node(1, |r, now| r.step(from_new_leader.clone(), now).unwrap());
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(
        (c.node(1).term(), c.node(1).leader_id()),
        (Term(7), Some(id(2)))
    );
    // A message of an earlier term is answered with ours, so its sender can catch up.
    let stale = Message {
        term: Term(3),
        ..from_new_leader
    };
    c.with_node(1, |r, now| r.step(stale, now).unwrap());
    let (_, ready) = c.readies.last().unwrap();
    assert!(matches!(
        ready.messages[..],
        [Message {
            term: Term(7),
            body: Body::AppendResponse { success: false, .. },
            ..
        }]
    ));
}

#[test]
fn prevote_keeps_a_returning_node_from_raising_the_term() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.isolate(3);
    c.advance_ms(5_000); // node 3 times out again and again while cut off
    assert_eq!(
        c.node(3).term(),
        Term(1),
        "PreVote failures never raise the term"
    );
    c.heal();
    c.advance_ms(500);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(
        c.node(1).term(),
        Term(1),
        "the healthy leader was not disturbed"
    );
    assert_eq!(c.node(3).leader_id(), Some(id(1)));
}

#[test]
fn prevote_for_a_later_term_is_granted_once_the_promise_ends_even_to_a_follower_that_voted() {
    // Node 2 voted for node 1 in term 1 and still names it leader, but its promise has run out
    // (its timer has not fired yet): a pre-vote asks about term 2, where node 2 has not voted,
    // so it answers on the log alone (thesis §9.6). A pre-vote about term 1 itself is judged
    // like a vote in term 1: node 2 voted for another and follows a leader, so no.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    assert_eq!(c.node(2).leader_id(), Some(id(1)));
    let last = (
        c.node(2).log().last_index().0,
        c.node(2).log().last_term().0,
    );
    c.with_node(2, |r, now| {
        r.step(vote_request(3, 2, 2, true, last), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 2), Some((Term(2), true)));
    c.with_node(2, |r, now| {
        r.step(vote_request(3, 2, 1, true, last), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 2), Some((Term(1), false)));
    assert_eq!(c.node(2).term(), Term(1), "a pre-vote changes no term");
}

#[test]
fn a_pre_candidate_refused_by_a_majority_follows_again_at_once() {
    // A refusal carries the voter's own term, the pre-candidate's (a later one would have made
    // it a follower of that term already). Two of three refuse: the probe has failed (§9.6).
    let mut c = TestCluster::new(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(2 * ELECTION_MS);
    c.isolate(3);
    c.with_node(3, |r, now| r.campaign(now));
    assert_eq!(c.node(3).role(), Role::PreCandidate);
    for voter in [1, 2] {
        let refusal = Message {
            from: id(voter),
            to: id(3),
            term: Term(0),
            body: Body::VoteResponse {
                pre_vote: true,
                granted: false,
            },
        };
        c.with_node(3, |r, now| r.step(refusal, now).unwrap());
    }
    assert_eq!(c.node(3).role(), Role::Follower);
    let (_, ready) = c.readies.last().unwrap();
    assert!(ready.events.iter().any(|e| matches!(
        e,
        Event::RoleChanged {
            cause: Cause::LostElection,
            ..
        }
    )));
}

#[test]
fn s5_2_a_candidate_that_hears_the_winner_of_its_term_follows_it_at_once() {
    let mut c = TestCluster::new(3);
    c.restart_changed(3, |cfg| cfg.pre_vote = false);
    c.now = c.now + pg_leader_raft::Duration::from_millis(2 * ELECTION_MS);
    c.isolate(3);
    c.with_node(3, |r, now| r.campaign(now));
    assert_eq!(
        (c.node(3).role(), c.node(3).term()),
        (Role::Candidate, Term(1))
    );
    // Node 1 won term 1 with node 2's vote; its first heartbeat reaches node 3.
    let heartbeat = first_heartbeat(1, 3, 1);
    c.with_node(3, |r, now| r.step(heartbeat, now).unwrap());
    assert_eq!(c.node(3).role(), Role::Follower);
    assert_eq!(c.node(3).leader_id(), Some(id(1)));
    let (_, ready) = c.readies.last().unwrap();
    assert!(ready
        .messages
        .iter()
        .any(|m| matches!(m.body, Body::AppendResponse { success: true, .. })));
}

#[test]
fn stickiness_a_follower_that_hears_a_leader_ignores_a_later_term_candidate() {
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(50);
    // Node 3 (with pre-vote off, or a buggy peer) asks for votes in a later term.
    c.with_node(2, |r, now| {
        r.step(vote_request(3, 2, 9, false, (9, 9)), now).unwrap()
    });
    let (_, ready) = c.readies.last().unwrap();
    assert!(ready.messages.is_empty(), "ignored, not even answered");
    assert_eq!(
        c.node(2).term(),
        Term(1),
        "the later term did not depose anything"
    );
    // The leader itself is sticky too.
    c.with_node(1, |r, now| {
        r.step(vote_request(3, 1, 9, false, (9, 9)), now).unwrap()
    });
    assert_eq!(c.node(1).role(), Role::Leader);
}

#[test]
fn a_restarted_node_grants_no_vote_for_one_election_timeout() {
    let mut c = TestCluster::new(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(3 * ELECTION_MS);
    c.crash(2);
    c.restart(2);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS - 1);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 1, false, (0, 0)), now).unwrap()
    });
    assert!(
        c.readies.last().unwrap().1.messages.is_empty(),
        "no vote during the blackout"
    );
    c.now = c.now + pg_leader_raft::Duration::from_millis(1);
    c.with_node(2, |r, now| {
        r.step(vote_request(1, 2, 1, false, (0, 0)), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 2), Some((Term(1), true)));
}

#[test]
fn a_single_node_elects_itself() {
    let mut c = TestCluster::new(1);
    c.advance_ms(2 * ELECTION_MS);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert!(c.node(1).has_lease(c.now));
    let events: Vec<Cause> = c
        .readies
        .iter()
        .flat_map(|(_, r)| r.events.iter())
        .filter_map(|e| match e {
            Event::RoleChanged { cause, .. } => Some(*cause),
            _ => None,
        })
        .collect();
    assert_eq!(events[0], Cause::Start);
    assert!(events.contains(&Cause::WonElection));
}

#[test]
fn messages_from_strangers_or_with_torn_entries_are_dropped() {
    let mut c = TestCluster::new(3);
    let stranger = vote_request(9, 1, 1, false, (0, 0));
    assert_eq!(
        c.with_node(1, |r, now| r.step(stranger, now)),
        Err(pg_leader_raft::Dropped::UnknownSender)
    );
    let torn = Message {
        from: id(2),
        to: id(1),
        term: Term(1),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![pg_leader_raft::Entry {
                term: Term(1),
                index: LogIndex(5),
                data: pg_leader_raft::EntryData::Noop,
            }],
            leader_commit: LogIndex(0),
            sent_at: pg_leader_raft::Instant::ZERO,
            lease: pg_leader_raft::Duration::ZERO,
            wal: pg_leader_raft::WalPosition::default(),
        },
    };
    assert_eq!(
        c.with_node(1, |r, now| r.step(torn, now)),
        Err(pg_leader_raft::Dropped::Malformed)
    );
    assert_eq!(c.node(1).term(), Term(0));
    let misaddressed = Message {
        to: NodeId(2),
        ..vote_request(3, 1, 1, false, (0, 0))
    };
    assert_eq!(
        c.with_node(1, |r, now| r.step(misaddressed, now)),
        Err(pg_leader_raft::Dropped::NotForThisNode)
    );
}

fn with_wal(mut m: Message, timeline: u32, lsn: u64) -> Message {
    if let Body::RequestVote { wal, .. } = &mut m.body {
        *wal = WalPosition {
            timeline,
            lsn,
            ..Default::default()
        };
    }
    m
}

#[test]
fn wal_aware_a_voter_refuses_a_candidate_with_less_wal_on_its_timeline() {
    // Voter at timeline 1, LSN 1000. Candidates: (timeline, lsn, pre_vote) -> granted?
    let cases = [
        (1, 999, true, false),
        (1, 999, false, false),
        (1, 1000, false, true),
        (1, 5000, true, true),
        // Another timeline, or an unknown position, is not compared.
        (2, 10, false, true),
        (0, 0, false, true),
    ];
    for (timeline, lsn, pre_vote, granted) in cases {
        let mut c = TestCluster::new(3);
        c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
        c.with_node(3, |r, _| {
            r.set_wal_position(WalPosition {
                timeline: 1,
                lsn: 1000,
                ..Default::default()
            })
        });
        let request = with_wal(vote_request(1, 3, 1, pre_vote, (0, 0)), timeline, lsn);
        c.with_node(3, |r, now| r.step(request, now).unwrap());
        let answer = vote_answer(&c, 3).map(|(_, g)| g);
        assert_eq!(
            answer,
            Some(granted),
            "candidate at {timeline}/{lsn}, pre_vote {pre_vote}"
        );
    }
}

#[test]
fn wal_aware_off_judges_the_raft_log_alone() {
    let mut c = TestCluster::new(3);
    let mut cfg = config(3, 3);
    cfg.wal_aware = false;
    c.crash(3);
    c.restart_with(3, cfg);
    // Past the restart's vote blackout.
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(3, |r, _| {
        r.set_wal_position(WalPosition {
            timeline: 1,
            lsn: 1000,
            ..Default::default()
        })
    });
    let request = with_wal(vote_request(1, 3, 1, false, (0, 0)), 1, 1);
    c.with_node(3, |r, now| r.step(request, now).unwrap());
    assert_eq!(vote_answer(&c, 3), Some((Term(1), true)));
}

#[test]
fn wal_aware_the_most_advanced_reachable_node_is_elected() {
    // Node 1 is behind and times out first; node 2 refuses it, then wins on its own timer.
    let mut c = TestCluster::new(3);
    c.with_node(1, |r, _| {
        r.set_wal_position(WalPosition {
            timeline: 1,
            lsn: 10,
            ..Default::default()
        })
    });
    c.with_node(2, |r, _| {
        r.set_wal_position(WalPosition {
            timeline: 1,
            lsn: 20,
            ..Default::default()
        })
    });
    c.with_node(3, |r, _| {
        r.set_wal_position(WalPosition {
            timeline: 1,
            lsn: 20,
            ..Default::default()
        })
    });
    c.crash(3);
    c.with_node(1, |r, now| r.campaign(now));
    for _ in 0..400 {
        c.deliver();
        c.advance_ms(10);
        if c.leaders_with_lease() == vec![2] {
            break;
        }
    }
    assert_eq!(c.leaders_with_lease(), vec![2]);
}

#[test]
fn s5_2_a_candidates_own_vote_is_durable_before_its_requests_leave() {
    let mut c = TestCluster::new(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    // Pre-vote answers only: the real vote requests stay queued, unanswered.
    while let Some(m) = c.queue.pop_front() {
        if m.kind() == "RequestVote" {
            continue;
        }
        c.with_node(m.to.0, |r, now| r.step(m, now).unwrap());
    }
    assert_eq!(c.node(1).role(), Role::Candidate);
    let (_, ready) = c
        .readies
        .iter()
        .rev()
        .find(|(n, r)| *n == 1 && r.messages.iter().any(|m| m.kind() == "RequestVote"))
        .unwrap();
    let hs = ready
        .hard_state
        .expect("the vote for itself goes with the requests");
    assert_eq!((hs.term, hs.voted_for), (Term(1), Some(id(1))));
    // It crashes before any answer: restarted, it refuses anyone else in term 1.
    c.crash(1);
    c.restart(1);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| {
        r.step(vote_request(2, 1, 1, false, (0, 0)), now).unwrap()
    });
    assert_eq!(vote_answer(&c, 1), Some((Term(1), false)));
}
