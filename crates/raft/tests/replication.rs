//! Log replication: the Raft paper §5.3 and §5.4.2.

mod common;

use common::*;
use pg_leader_raft::{Body, Entry, EntryData, LogIndex, NotLeader, Term};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        data: EntryData::Command(vec![index as u8]),
    }
}

#[test]
fn s5_3_a_new_leader_appends_an_entry_of_its_term_and_commits_it_with_a_majority() {
    let mut c = TestCluster::new(3);
    c.isolate(3);
    c.elect(1);
    // The very first leader's entry is the bootstrap configuration; later ones are no-ops.
    assert!(matches!(
        c.node(1).log().entries()[0].data,
        EntryData::Membership(_)
    ));
    assert_eq!(
        c.node(1).log().committed(),
        LogIndex(1),
        "node 2 makes a majority"
    );
    c.advance_ms(HEARTBEAT_MS + 1);
    assert_eq!(
        c.node(2).log().committed(),
        LogIndex(1),
        "the commit index travels with heartbeats"
    );
    assert_eq!(c.node(3).log().last_index(), LogIndex(0));
    c.heal();
    c.advance_ms(HEARTBEAT_MS + 1);
    assert_eq!(
        c.node(3).log().committed(),
        LogIndex(1),
        "a lagging follower catches up"
    );
}

#[test]
fn s5_3_proposals_commit_in_order_and_are_applied_once() {
    let mut c = TestCluster::new(5);
    c.elect(2);
    for k in 0..10u8 {
        c.with_node(2, |r, now| r.propose(vec![k], now).unwrap());
    }
    c.deliver();
    c.advance_ms(HEARTBEAT_MS + 1);
    for n in 1..=5 {
        assert_eq!(c.node(n).log().committed(), LogIndex(11), "node {n}");
        let applied: Vec<u64> = c
            .readies
            .iter()
            .filter(|(m, _)| *m == n)
            .flat_map(|(_, r)| r.committed.iter().map(|e| e.index.0))
            .collect();
        assert_eq!(
            applied,
            (1..=11).collect::<Vec<_>>(),
            "node {n} applies each entry once, in order"
        );
    }
    assert_eq!(
        c.with_node(3, |r, now| r.propose(vec![1], now)),
        Err(NotLeader::Leader(Some(id(2))))
    );
}

#[test]
fn s5_3_a_follower_drops_its_conflicting_suffix() {
    let mut c = TestCluster::new(3);
    // Node 3 holds uncommitted entries of an old term 1 that no one else has; the others have
    // moved on to term 1 too, so the next leader leads term 2.
    c.disks[2].entries = vec![entry(1, 1), entry(2, 1), entry(3, 1)];
    for n in 0..3 {
        c.disks[n].hard_state.term = Term(1);
        c.restart(n as u32 + 1);
    }
    c.isolate(3);
    c.elect(1);
    c.with_node(1, |r, now| r.propose(b"x".to_vec(), now).unwrap());
    c.deliver();
    c.heal();
    c.advance_ms(HEARTBEAT_MS + 1);
    let log3: Vec<(u64, u64)> = c
        .node(3)
        .log()
        .entries()
        .iter()
        .map(|e| (e.index.0, e.term.0))
        .collect();
    assert_eq!(log3, vec![(1, 2), (2, 2)]);
    assert_eq!(
        c.disks[2].entries,
        c.node(3).log().entries(),
        "the truncation is durable"
    );
}

#[test]
fn s5_4_2_entries_of_earlier_terms_commit_only_under_a_current_term_entry() {
    // Figure 8: entry 2 was written in term 2 and sits on nodes 1 and 2, a majority. Node 1 leads
    // term 4: counting those replicas must not commit entry 2; only its own no-op (index 3, term
    // 4) reaching a majority commits both.
    let mut c = TestCluster::new(3);
    for (n, log) in [
        (0, vec![entry(1, 1), entry(2, 2)]),
        (1, vec![entry(1, 1), entry(2, 2)]),
        (2, vec![entry(1, 1)]),
    ] {
        c.disks[n].entries = log;
        c.disks[n].hard_state.term = Term(3);
        c.restart(n as u32 + 1);
    }
    c.now = c.now + pg_leader_raft::Duration::from_millis(ELECTION_MS);
    c.with_node(1, |r, now| r.campaign(now));
    // Deliver votes only; AppendEntries acknowledgements are lost.
    while let Some(m) = c.queue.pop_front() {
        if m.kind() == "AppendResponse" || m.kind() == "AppendEntries" {
            continue;
        }
        let to = m.to.0;
        c.with_node(to, |r, now| r.step(m, now).unwrap());
    }
    assert_eq!(c.node(1).role(), pg_leader_raft::Role::Leader);
    assert_eq!(c.node(1).term(), Term(4));
    let ack = |match_index: u64| pg_leader_raft::Message {
        from: id(2),
        to: id(1),
        term: Term(4),
        body: pg_leader_raft::Body::AppendResponse {
            success: true,
            match_index: LogIndex(match_index),
            reject_hint: LogIndex(match_index),
            sent_at: c.now,
            lease: pg_leader_raft::Duration::from_millis(ELECTION_MS),
            can_lead: true,
            wal: pg_leader_raft::WalPosition::default(),
        },
    };
    let ack2 = ack(2);
    let ack3 = ack(3);
    c.with_node(1, |r, now| r.step(ack2, now).unwrap());
    assert_eq!(
        c.node(1).log().committed(),
        LogIndex(0),
        "entry 2 is of term 2: not committed by counting"
    );
    c.with_node(1, |r, now| r.step(ack3, now).unwrap());
    assert_eq!(
        c.node(1).log().committed(),
        LogIndex(3),
        "the no-op of term 4 commits, and everything before it"
    );
}

#[test]
fn a_follower_that_missed_small_entries_gets_them_in_one_message() {
    // Twenty 100-byte commands are about 2.5 KiB with their framing: one AppendEntries holds
    // them (up to 16 KiB or `max_entries_per_message`), not one round trip each.
    let mut c = TestCluster::new(3);
    c.elect(1);
    c.advance_ms(HEARTBEAT_MS + 1);
    c.cut.insert((1, 3));
    for _ in 0..20 {
        c.with_node(1, |r, now| r.propose(vec![7; 100], now))
            .unwrap();
    }
    c.deliver();
    c.heal();
    let before = c.readies.len();
    c.advance_ms(HEARTBEAT_MS);
    let first_to_3 = c.readies[before..]
        .iter()
        .filter(|(n, _)| *n == 1)
        .flat_map(|(_, ready)| ready.messages.iter())
        .find_map(|m| match &m.body {
            Body::AppendEntries { entries, .. } if m.to == id(3) => Some(entries.len()),
            _ => None,
        });
    assert_eq!(first_to_3, Some(20));
}
