//! Leadership follows the writable primary (design.md, invariant 8): a standby that leads hands
//! over to a caught-up primary of the newest timeline, never to a former primary on an older
//! timeline nor to one behind it, and at start the primary campaigns first.

mod common;

use common::*;
use pg_leader_raft::{
    Body, Cause, Departure, Duration, Event, NodeId, NotPreferred, Role, WalPosition,
};

const SYSTEM: u64 = 7_000_000_001;

fn primary(timeline: u32, lsn: u64) -> WalPosition {
    WalPosition::primary(SYSTEM, timeline, lsn)
}

fn standby(timeline: u32, lsn: u64) -> WalPosition {
    WalPosition::standby(SYSTEM, timeline, lsn)
}

fn place(c: &mut TestCluster, positions: &[WalPosition]) {
    for (i, wal) in positions.iter().enumerate() {
        c.with_node(i as u32 + 1, |r, _| r.set_wal_position(*wal));
    }
}

/// Three servers at `positions` whose hosts promote a standby that leads (`Config::promotes`).
fn promoting(positions: &[WalPosition]) -> TestCluster {
    let mut c = TestCluster::new(3);
    place(&mut c, positions);
    for n in 1..=3 {
        c.with_node(n, |r, _| r.set_promotes(true));
    }
    c
}

fn leader(c: &TestCluster) -> Option<u32> {
    match c.leaders_with_lease().as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[test]
fn a_standby_leader_hands_over_to_a_caught_up_primary() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 100), standby(1, 100), standby(1, 90)]);
    c.elect(2);
    let handed_over_at = c.now;
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(leader(&c), Some(1), "the primary leads");
    assert_eq!(c.node(1).status().not_preferred, None);
    let took_over = c.readies.iter().any(|(n, ready)| {
        *n == 1
            && ready.events.iter().any(|e| {
                matches!(
                    e,
                    Event::RoleChanged {
                        role: Role::Candidate,
                        cause: Cause::Transfer,
                        ..
                    }
                )
            })
    });
    assert!(took_over, "through the transfer path (TimeoutNow)");
    assert!(c.now.saturating_since(handed_over_at).as_millis() <= 3 * HEARTBEAT_MS);
    // And it stays: the primary never hands back.
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(1));
}

#[test]
fn no_handover_to_a_former_primary_on_an_older_timeline() {
    let mut c = TestCluster::new(3);
    // Node 2 was promoted (timeline 2); node 1, the former primary, came back as it was.
    place(&mut c, &[primary(1, 900), primary(2, 100), standby(2, 100)]);
    c.elect(2);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(2));
    assert_eq!(
        c.node(1).status().not_preferred,
        Some(NotPreferred::OlderTimeline {
            timeline: 1,
            newest: 2
        })
    );
    // Even a standby leader never picks it.
    place(&mut c, &[primary(1, 900), standby(2, 100), standby(2, 100)]);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(2));
}

#[test]
fn a_former_primary_is_never_elected_and_the_primary_of_the_newest_timeline_leads() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 900), standby(2, 100), primary(2, 120)]);
    // Only node 2 can answer: its vote alone would elect node 1.
    c.isolate(3);
    for _ in 0..20 {
        c.advance_ms(ELECTION_MS / 2);
        c.with_node(1, |r, now| r.campaign(now));
        assert_ne!(
            c.node(1).role(),
            Role::Leader,
            "refused, whatever WAL it holds"
        );
    }
    c.heal();
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(3));
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(3), "and never attracts leadership back");
}

#[test]
fn no_handover_to_a_primary_behind_the_leader_until_it_catches_up() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 50), standby(1, 100), standby(1, 100)]);
    c.elect(2);
    c.advance_ms(3 * ELECTION_MS);
    assert_eq!(leader(&c), Some(2));
    assert_eq!(
        c.node(1).status().not_preferred,
        Some(NotPreferred::BehindLeader {
            lsn: 50,
            leader_lsn: 100
        })
    );
    assert!(
        c.node(1)
            .status()
            .not_preferred
            .unwrap()
            .to_string()
            .contains("0/32 < 0/64"),
        "LSNs written the PostgreSQL way"
    );
    c.with_node(1, |r, _| r.set_wal_position(primary(1, 150)));
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(leader(&c), Some(1));
}

#[test]
fn no_handover_to_a_primary_that_cannot_lead() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 100), standby(1, 100), standby(1, 100)]);
    c.with_node(1, |r, _| r.set_can_lead(false));
    c.elect(2);
    c.advance_ms(3 * ELECTION_MS);
    assert_eq!(leader(&c), Some(2));
    assert_eq!(
        c.node(1).status().not_preferred,
        Some(NotPreferred::CannotLead)
    );
}

#[test]
fn a_standby_leader_without_a_primary_keeps_leading() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[standby(1, 100), standby(1, 100), standby(1, 90)]);
    c.elect(2);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(2));
    assert_eq!(
        c.node(1).status().not_preferred,
        None,
        "standbys say nothing"
    );
}

#[test]
fn at_start_the_primary_campaigns_first_but_not_before_its_blackout_ends() {
    for primary_node in 1..=3u32 {
        let mut c = TestCluster::new(3);
        let started = c.now;
        let positions: Vec<WalPosition> = (1..=3)
            .map(|n| {
                if n == primary_node {
                    primary(1, 100)
                } else {
                    standby(1, 100)
                }
            })
            .collect();
        place(&mut c, &positions);
        let mut first_leader = None;
        for _ in 0..3 * ELECTION_MS {
            c.advance_ms(1);
            let campaigned = (1..=3).find(|&n| c.node(n).role() != Role::Follower);
            if let Some(n) = campaigned {
                assert_eq!(n, primary_node, "the primary is the first to campaign");
                assert!(
                    c.now.saturating_since(started).as_millis() >= ELECTION_MS,
                    "no campaign within the start blackout"
                );
            }
            if let Some(l) = leader(&c) {
                first_leader = Some(l);
                break;
            }
        }
        assert_eq!(first_leader, Some(primary_node));
    }
}

#[test]
fn a_lone_primary_keeps_probing_with_prevotes_without_raising_its_term() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 100), standby(1, 100), standby(1, 100)]);
    c.isolate(1);
    c.advance_ms(10 * ELECTION_MS);
    assert_eq!(c.node(1).term().0, 0, "PreVote alone: no term raised");
    let probes = c
        .readies
        .iter()
        .filter(|(n, r)| {
            *n == 1
                && r.events.iter().any(|e| {
                    matches!(
                        e,
                        Event::RoleChanged {
                            role: Role::PreCandidate,
                            ..
                        }
                    )
                })
        })
        .count();
    // One probe every T/4 to T/2 once the first wait (T + 2 margins) is over.
    assert!((18..=40).contains(&probes), "{probes} probes in 10 T");
    c.heal();
    c.advance_ms(2 * ELECTION_MS);
    assert_eq!(leader(&c), Some(1));
}

/// Node 1 campaigns at `candidate` with node 3 cut off; node 2 votes from `voter`.
fn wins_with_one_voter(candidate: WalPosition, voter: WalPosition) -> bool {
    let mut c = TestCluster::new(3);
    place(&mut c, &[candidate, voter, voter]);
    c.isolate(3);
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    c.deliver();
    c.node(1).role() == Role::Leader
}

#[test]
fn a_standby_that_replayed_past_a_primarys_request_still_votes_for_it() {
    // A primary that writes steadily: its request carries the flush position when it left, the
    // standby has replayed more by the time it arrives. It must not refuse its own primary.
    assert!(wins_with_one_voter(primary(1, 1_000), standby(1, 1_010)));
    // A standby behind another standby is still refused.
    assert!(!wins_with_one_voter(standby(1, 1_000), standby(1, 1_010)));
}

#[test]
fn standbys_of_a_live_primary_judge_a_candidate_against_their_replay_a_heartbeat_ago() {
    // Node 2 replays on while node 1's request is on its way: compared with where node 2 was a
    // heartbeat interval before, node 1 (105) is level; one behind that (95) is still refused.
    for (candidate_lsn, wins) in [(105, true), (95, false)] {
        let mut c = TestCluster::new(3);
        c.isolate(3);
        place(
            &mut c,
            &[standby(1, candidate_lsn), standby(1, 100), standby(1, 0)],
        );
        // Past the start blackout; the host updates node 2's position before each call.
        c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
        c.with_node(2, |r, now| r.tick(now));
        c.now = c.now + pg_leader_raft::Duration::from_millis(HEARTBEAT_MS / 2);
        c.with_node(2, |r, now| {
            r.set_wal_position(standby(1, 110));
            r.tick(now)
        });
        c.now = c.now + pg_leader_raft::Duration::from_millis(HEARTBEAT_MS / 10);
        c.with_node(1, |r, now| r.campaign(now));
        c.deliver();
        assert_eq!(
            c.node(1).role() == Role::Leader,
            wins,
            "candidate at {candidate_lsn}"
        );
    }
}

#[test]
fn standbys_that_make_way_for_a_primary_that_cannot_win_still_elect_one_of_them() {
    // Node 1 is heard by everyone but hears no one: its requests keep the standbys' first wait
    // going, but only up to 5 T after their start; then they elect one of themselves.
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 100), standby(1, 100), standby(1, 100)]);
    c.cut.insert((2, 1));
    c.cut.insert((3, 1));
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), None, "still making way");
    c.advance_ms(2 * ELECTION_MS);
    let l = leader(&c).expect("a standby leads");
    assert_ne!(l, 1);
}

/// A primary whose PostgreSQL dies hands over on its way out (`depart`); the TimeoutNow vote is
/// not judged on WAL, so the leader itself must pick the standby holding the most WAL, whatever
/// the moment of the crash (found on real servers: a standby with replay paused was chosen).
#[test]
fn a_departing_primary_hands_over_to_the_standby_with_the_most_wal() {
    for offset_ms in 0..HEARTBEAT_MS {
        let mut c = TestCluster::new(3);
        place(&mut c, &[primary(1, 100), standby(1, 100), standby(1, 60)]);
        c.elect(1);
        c.advance_ms(2 * HEARTBEAT_MS + offset_ms);
        let departure = c.with_node(1, |r, now| r.depart(now));
        assert!(
            matches!(
                departure,
                Departure::HandedOver(NodeId(2)) | Departure::CatchingUp(NodeId(2))
            ),
            "crash {offset_ms} ms into a heartbeat: {departure:?}"
        );
    }
}

/// A vote does not say whether the voter may lead: a leader that took a preferred primary
/// which had voted but not yet answered for one that may lead handed over to it, the primary
/// ignored TimeoutNow, the handover timed out without a leader, and the next election started
/// it again, for ever (found by the simulator).
#[test]
fn no_handover_to_a_preferred_primary_before_it_says_it_may_lead() {
    let mut c = TestCluster::new(3);
    // Node 3 was promoted (timeline 2) but may not lead; node 1, the former primary, is the
    // only server that may.
    place(&mut c, &[primary(1, 900), standby(2, 100), primary(2, 120)]);
    c.with_node(2, |r, _| r.set_can_lead(false));
    c.with_node(3, |r, _| r.set_can_lead(false));
    // Node 1 has heard node 3's position from a pre-vote request (a voter that may not lead
    // campaigns as a caretaker), then wins an election; node 2's answer reaches it first.
    c.now = c.now + Duration::from_millis(ELECTION_MS);
    let mut pre_vote = vote_request(3, 1, 1, true, (0, 0));
    if let Body::RequestVote { wal, .. } = &mut pre_vote.body {
        *wal = primary(2, 120);
    }
    c.with_node(1, |r, now| {
        let _ = r.step(pre_vote, now);
        r.campaign(now);
    });
    c.deliver();
    assert_eq!(c.node(1).role(), Role::Leader);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(
        leader(&c),
        Some(1),
        "the only server that may lead keeps leading"
    );
    let failed = c.readies.iter().any(|(_, ready)| {
        ready.events.iter().any(|e| {
            matches!(
                e,
                Event::RoleChanged {
                    cause: Cause::TransferFailed,
                    ..
                }
            )
        })
    });
    assert!(
        !failed,
        "no handover was started to a server that may not lead"
    );
}

/// A handover goes to a voter heard from lately: a voter that is down but held the most WAL
/// when last heard from cannot take over, and a leader that must hand over (one elected while
/// its demotion was pending) started the same handover to it again at every timeout while a
/// voter that could take over stood by (found by the simulator).
#[test]
fn a_handover_skips_a_voter_not_heard_from_within_the_election_timeout() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[standby(1, 100), standby(1, 90), standby(1, 200)]);
    c.elect(1);
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(
        c.node(1).best_transfer_target(),
        Some(NodeId(3)),
        "most WAL"
    );
    c.crash(3);
    c.advance_ms(2 * ELECTION_MS);
    assert_eq!(leader(&c), Some(1), "nodes 1 and 2 are a majority");
    assert_eq!(c.node(1).best_transfer_target(), Some(NodeId(2)));
    let departure = c.with_node(1, |r, now| r.depart(now));
    assert_eq!(departure, Departure::HandedOver(NodeId(2)));
}

#[test]
fn a_standby_leader_hands_back_to_a_live_primary_even_where_the_host_promotes() {
    let mut c = promoting(&[primary(1, 100), standby(1, 100), standby(1, 90)]);
    c.elect(2);
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(
        leader(&c),
        Some(1),
        "no failover while the primary is alive"
    );
}

#[test]
fn a_standby_leader_keeps_leading_when_the_primary_yielded_and_after_its_promotion() {
    let mut c = promoting(&[primary(1, 100), standby(1, 100), standby(1, 90)]);
    c.with_node(1, |r, _| r.set_can_lead(false));
    c.elect(2);
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(
        leader(&c),
        Some(2),
        "the standby keeps leading, to be promoted"
    );
    assert!(c.node(2).heard_all_since_elected());
    // Promoted: a new timeline; the former primary is never preferred again.
    c.with_node(2, |r, _| r.set_wal_position(primary(2, 120)));
    c.with_node(1, |r, _| r.set_can_lead(true));
    c.advance_ms(5 * ELECTION_MS);
    assert_eq!(leader(&c), Some(2));
    assert!(matches!(
        c.node(1).status().not_preferred,
        Some(NotPreferred::OlderTimeline { .. })
    ));
}

#[test]
fn a_new_leader_has_not_heard_all_until_every_live_voter_answered() {
    let mut c = TestCluster::new(3);
    c.isolate(3);
    c.elect(1);
    c.advance_ms(3 * HEARTBEAT_MS);
    assert!(
        !c.node(1).heard_all_since_elected(),
        "node 3 never answered"
    );
    c.heal();
    c.advance_ms(2 * HEARTBEAT_MS);
    assert!(c.node(1).heard_all_since_elected());
}

#[test]
fn adverts_are_kept_per_member_and_oversized_ones_dropped() {
    let mut c = TestCluster::new(3);
    let advert = |from: u32, conninfo: String| pg_leader_raft::Message {
        from: id(from),
        to: id(1),
        term: pg_leader_raft::Term(0),
        body: Body::Advert { conninfo },
    };
    let now = c.local(1);
    let term_before = c.node(1).term();
    c.with_node(1, |r, _| r.step(advert(2, "host=b port=5432".into()), now))
        .unwrap();
    assert_eq!(c.node(1).advert_of(id(2)), Some("host=b port=5432"));
    assert_eq!(c.node(1).advert_of(id(3)), None);
    let huge = "x".repeat(pg_leader_raft::MAX_ADVERT_LEN + 1);
    assert!(c.with_node(1, |r, _| r.step(advert(3, huge), now)).is_err());
    assert_eq!(c.node(1).advert_of(id(3)), None);
    assert_eq!(c.node(1).term(), term_before, "an advert changes no term");
}

#[test]
fn a_switchover_to_a_standby_waits_without_a_lease_until_it_replayed_the_primarys_wal() {
    let mut c = promoting(&[primary(1, 100), standby(1, 80), standby(1, 80)]);
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    c.with_node(1, |r, now| r.transfer_leadership(id(2), now))
        .unwrap();
    c.advance_ms(3 * HEARTBEAT_MS);
    assert_eq!(c.node(1).role(), Role::Leader, "no TimeoutNow yet");
    assert!(
        c.leaders_with_lease().is_empty(),
        "the primary's lease is given up while it waits (its commits are fenced)"
    );
    // The standby replays the rest: the handover completes. (The old primary, once it
    // follows, no longer offers to lead: the host does that, so that it is not handed back.)
    c.with_node(2, |r, _| r.set_wal_position(standby(1, 100)));
    c.advance_ms(HEARTBEAT_MS);
    c.with_node(1, |r, _| r.set_can_lead(false));
    c.advance_ms(2 * HEARTBEAT_MS);
    assert_eq!(leader(&c), Some(2));
}

#[test]
fn a_switchover_whose_target_never_replays_the_wal_is_abandoned_and_the_lease_comes_back() {
    let mut c = promoting(&[primary(1, 100), standby(1, 80), standby(1, 80)]);
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    c.with_node(1, |r, now| r.transfer_leadership(id(2), now))
        .unwrap();
    c.advance_ms(ELECTION_MS + 3 * HEARTBEAT_MS);
    assert_eq!(
        leader(&c),
        Some(1),
        "still the primary, with its lease again"
    );
    assert_eq!(c.node(1).term(), c.node(2).term(), "no election happened");
}

#[test]
fn without_promotion_a_switchover_does_not_wait_for_wal() {
    let mut c = TestCluster::new(3);
    place(&mut c, &[primary(1, 100), standby(1, 80), standby(1, 80)]);
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    c.with_node(1, |r, now| r.transfer_leadership(id(2), now))
        .unwrap();
    c.advance_ms(2 * HEARTBEAT_MS);
    let campaigned = c.readies.iter().any(|(n, ready)| {
        *n == 2
            && ready.events.iter().any(|e| {
                matches!(
                    e,
                    Event::RoleChanged {
                        cause: Cause::Transfer,
                        ..
                    }
                )
            })
    });
    assert!(campaigned, "TimeoutNow left at once");
}

#[test]
fn a_dying_primary_hands_over_at_once_without_waiting_for_wal_it_will_never_send() {
    let mut c = promoting(&[primary(1, 100), standby(1, 80), standby(1, 90)]);
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    let (departure, ready) = c.with_node(1, |r, now| (r.depart(now), r.take_ready()));
    assert!(
        matches!(departure, Departure::HandedOver(_)),
        "{departure:?}"
    );
    assert!(
        ready.messages.iter().any(|m| m.body == Body::TimeoutNow),
        "TimeoutNow in the same Ready"
    );
}

#[test]
fn a_live_primary_is_known_to_a_standby_leader_until_it_yields_or_falls_silent() {
    let mut c = promoting(&[primary(1, 100), standby(1, 100), standby(1, 90)]);
    c.with_node(1, |r, _| r.set_can_lead(false));
    c.elect(2);
    c.advance_ms(2 * HEARTBEAT_MS);
    assert_eq!(
        c.node(2).live_primary(),
        None,
        "a yielded primary is no live primary"
    );
    c.with_node(1, |r, _| r.set_can_lead(true));
    c.advance_ms(HEARTBEAT_MS);
    // Node 2 hands over to it at once; before that it knew it lives.
    assert_ne!(leader(&c), Some(3));
    c.isolate(1);
    c.advance_ms(3 * ELECTION_MS);
    let l = leader(&c).expect("a leader among 2 and 3");
    assert_eq!(
        c.node(l).live_primary(),
        None,
        "a silent primary is not live"
    );
}

#[test]
fn a_switchover_waits_for_the_wal_of_the_lease_not_for_what_the_fenced_primary_writes_after() {
    let mut c = promoting(&[primary(1, 100), standby(1, 80), standby(1, 80)]);
    c.elect(1);
    c.advance_ms(2 * HEARTBEAT_MS);
    c.with_node(1, |r, now| r.transfer_leadership(id(2), now))
        .unwrap();
    // The host's first reading after the give-up: what acknowledged commits may have reached.
    c.advance_ms(1);
    c.with_node(1, |r, _| r.set_wal_position(primary(1, 110)));
    c.with_node(2, |r, _| r.set_wal_position(standby(1, 110)));
    // Fenced sessions keep writing (aborted commits): the primary's position runs on.
    let mut handed_over = false;
    for step in 0..10u64 {
        c.with_node(1, |r, _| r.set_wal_position(primary(1, 120 + 10 * step)));
        c.advance_ms(HEARTBEAT_MS / 2);
        handed_over |= c.node(2).role() == Role::Leader;
    }
    assert!(
        handed_over,
        "the target holds all the WAL of the lease: the handover must not chase later WAL"
    );
}
