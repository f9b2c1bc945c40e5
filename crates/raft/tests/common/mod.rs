//! A tiny hand-driven network for scenario tests: every node shares one clock, messages go out
//! in order, and links can be cut. Each Ready is handled as the embedding program must: persist,
//! then send.

#![allow(dead_code)]

use pg_leader_raft::{
    Body, Config, Duration, Instant, LogIndex, Message, NodeId, PersistedState, Raft, Ready,
    SplitMix64, Term, WalPosition,
};
use std::collections::{HashSet, VecDeque};

pub const HEARTBEAT_MS: u64 = 100;
pub const ELECTION_MS: u64 = 1000;

pub struct TestCluster {
    pub nodes: Vec<Option<Raft>>,
    pub disks: Vec<PersistedState>,
    pub now: Instant,
    pub cut: HashSet<(u32, u32)>,
    pub queue: VecDeque<Message>,
    /// Every Ready handled, by node, for tests that look at the order of outputs.
    pub readies: Vec<(u32, Ready)>,
    /// How much faster (positive) or slower each node's clock runs than `now`, in parts per
    /// million; set before time moves, so that every clock starts at `START`.
    pub drift_ppm: Vec<i64>,
}

/// Every clock reads this at the start of a test.
pub const START: Instant = Instant(1_000_000);

pub fn id(n: u32) -> NodeId {
    NodeId(n)
}

/// A RequestVote (or PreVote) from `from` to `to` in `term`, for a log ending at `last`
/// (index, term).
pub fn vote_request(from: u32, to: u32, term: u64, pre_vote: bool, last: (u64, u64)) -> Message {
    Message {
        from: id(from),
        to: id(to),
        term: Term(term),
        body: Body::RequestVote {
            pre_vote,
            last_log_index: LogIndex(last.0),
            last_log_term: Term(last.1),
            transfer: false,
            wal: WalPosition::default(),
        },
    }
}

/// A heartbeat (no entries, nothing committed, an empty log assumed) from the leader `from`
/// of `term`, asking for a promise of one election timeout.
pub fn first_heartbeat(from: u32, to: u32, term: u64) -> Message {
    Message {
        from: id(from),
        to: id(to),
        term: Term(term),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: Instant::ZERO,
            lease: Duration::from_millis(ELECTION_MS),
            wal: WalPosition::default(),
        },
    }
}

/// The (term, granted) of the vote answer node `voter` sent last, if any.
pub fn vote_answer(c: &TestCluster, voter: u32) -> Option<(Term, bool)> {
    let (_, ready) = c.readies.iter().rev().find(|(n, _)| *n == voter)?;
    ready.messages.iter().find_map(|m| match m.body {
        Body::VoteResponse { granted, .. } => Some((m.term, granted)),
        _ => None,
    })
}

pub fn config(me: u32, n: u32) -> Config {
    Config::new(NodeId(me), (1..=n).map(NodeId).collect()).with_timing(
        Duration::from_millis(HEARTBEAT_MS),
        Duration::from_millis(ELECTION_MS),
    )
}

impl TestCluster {
    pub fn new(n: u32) -> TestCluster {
        let mut c = TestCluster {
            nodes: Vec::new(),
            disks: vec![PersistedState::default(); n as usize],
            now: START,
            cut: HashSet::new(),
            queue: VecDeque::new(),
            readies: Vec::new(),
            drift_ppm: vec![0; n as usize],
        };
        for i in 1..=n {
            let raft = Raft::new(
                config(i, n),
                PersistedState::default(),
                Box::new(SplitMix64::new(i as u64)),
                c.now,
            )
            .unwrap();
            c.nodes.push(Some(raft));
        }
        c
    }

    /// `voters` voters and `spares` servers started outside the cluster, as a server about to
    /// be added is: listing the voters and itself.
    pub fn with_spares(voters: u32, spares: u32) -> TestCluster {
        let mut c = TestCluster::new(voters);
        for i in voters + 1..=voters + spares {
            c.disks.push(PersistedState::default());
            c.nodes.push(None);
            c.drift_ppm.push(0);
            let mut members: Vec<NodeId> = (1..=voters).map(NodeId).collect();
            members.push(NodeId(i));
            let mut cfg = config(i, voters);
            cfg.voters = members;
            c.restart_with(i, cfg);
        }
        c
    }

    pub fn node(&self, n: u32) -> &Raft {
        self.nodes[n as usize - 1].as_ref().expect("node is up")
    }

    /// Node `n`'s own clock at the shared moment `now`.
    pub fn local(&self, n: u32) -> Instant {
        let elapsed = self.now.saturating_since(START).as_micros() as i128;
        let rate = 1_000_000 + self.drift_ppm[n as usize - 1] as i128;
        START + Duration::from_micros((elapsed * rate / 1_000_000) as u64)
    }

    pub fn with_node<T>(&mut self, n: u32, op: impl FnOnce(&mut Raft, Instant) -> T) -> T {
        let now = self.local(n);
        let out = op(
            self.nodes[n as usize - 1].as_mut().expect("node is up"),
            now,
        );
        self.flush(n);
        out
    }

    /// Persist, then queue the messages, exactly in the contract's order.
    pub fn flush(&mut self, n: u32) {
        let Some(raft) = self.nodes[n as usize - 1].as_mut() else {
            return;
        };
        let ready = raft.take_ready();
        self.disks[n as usize - 1].apply(&ready);
        for m in &ready.messages {
            if !self.cut.contains(&(m.from.0, m.to.0)) {
                self.queue.push_back(m.clone());
            }
        }
        self.readies.push((n, ready));
    }

    /// Delivers queued messages until the network is quiet.
    pub fn deliver(&mut self) {
        for _ in 0..100_000 {
            let Some(m) = self.queue.pop_front() else {
                return;
            };
            let to = m.to.0;
            if self.cut.contains(&(m.from.0, to)) || self.nodes[to as usize - 1].is_none() {
                continue;
            }
            self.with_node(to, |r, now| {
                let _ = r.step(m, now);
            });
        }
        panic!("the network never went quiet");
    }

    /// Moves time forward in 1 ms steps, ticking every node that is due and delivering.
    pub fn advance_ms(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now = self.now + Duration::from_millis(1);
            self.tick_due();
            self.deliver();
        }
    }

    /// Ticks every node whose deadline has come on its own clock; returns them.
    pub fn tick_due(&mut self) -> Vec<u32> {
        let mut ticked = Vec::new();
        for n in 1..=self.nodes.len() as u32 {
            let local = self.local(n);
            let due = self.nodes[n as usize - 1]
                .as_ref()
                .is_some_and(|r| r.next_deadline() <= local);
            if due {
                self.with_node(n, |r, now| r.tick(now));
                ticked.push(n);
            }
        }
        ticked
    }

    /// Lets the start-up vote blackout pass, then has node `n` campaign and win.
    pub fn elect(&mut self, n: u32) {
        let quiet = Duration::from_millis(ELECTION_MS);
        self.now = self.now + quiet;
        self.with_node(n, |r, now| r.campaign(now));
        self.deliver();
        assert_eq!(
            self.node(n).role(),
            pg_leader_raft::Role::Leader,
            "node {n} should have won"
        );
    }

    pub fn isolate(&mut self, n: u32) {
        for other in 1..=self.nodes.len() as u32 {
            if other != n {
                self.cut.insert((n, other));
                self.cut.insert((other, n));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn crash(&mut self, n: u32) {
        self.nodes[n as usize - 1] = None;
    }

    pub fn restart(&mut self, n: u32) {
        let total = self.nodes.len() as u32;
        self.restart_with(n, config(n, total));
    }

    /// Restarts node `n` with its usual configuration changed by `change`.
    pub fn restart_changed(&mut self, n: u32, change: impl FnOnce(&mut Config)) {
        let mut changed = config(n, self.nodes.len() as u32);
        change(&mut changed);
        self.crash(n);
        self.restart_with(n, changed);
    }

    pub fn restart_with(&mut self, n: u32, config: Config) {
        let raft = Raft::new(
            config,
            self.disks[n as usize - 1].clone(),
            Box::new(SplitMix64::new(n as u64 + 100)),
            self.local(n),
        )
        .unwrap();
        self.nodes[n as usize - 1] = Some(raft);
        self.flush(n);
    }

    /// Restarts node `n` (down already) knowing what the host recorded of its earlier promises.
    pub fn restart_knowing(&mut self, n: u32, earlier: pg_leader_raft::EarlierPromises) {
        let total = self.nodes.len() as u32;
        let raft = Raft::start(
            config(n, total),
            self.disks[n as usize - 1].clone(),
            Box::new(SplitMix64::new(n as u64 + 200)),
            self.local(n),
            earlier,
        )
        .unwrap();
        self.nodes[n as usize - 1] = Some(raft);
        self.flush(n);
    }

    pub fn leaders_with_lease(&self) -> Vec<u32> {
        (1..=self.nodes.len() as u32)
            .filter(|&n| {
                self.nodes[n as usize - 1]
                    .as_ref()
                    .is_some_and(|r| r.has_lease(self.local(n)))
            })
            .collect()
    }
}

/// Runs `ms` milliseconds, checking at every one that at most one node holds a lease; returns
/// the first node other than `old` seen holding one.
pub fn run_checking_one_lease(c: &mut TestCluster, ms: u64, old: u32) -> Option<u32> {
    let mut successor = None;
    for _ in 0..ms {
        c.advance_ms(1);
        let holders = c.leaders_with_lease();
        assert!(
            holders.len() <= 1,
            "two leases at {:?}: nodes {holders:?}",
            c.now
        );
        if successor.is_none() {
            successor = holders.into_iter().find(|&n| n != old);
        }
    }
    successor
}
