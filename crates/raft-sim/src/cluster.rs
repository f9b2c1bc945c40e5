//! A simulated cluster: nodes with their own clocks and disks, a network, and an event queue
//! ordered by real (simulated) time. Every step ends with the safety checks.

use crate::checker::{chain_hash, Checker, Violation};
use crate::clock::NodeClock;
use crate::network::Network;
use pg_leader_raft::{
    Config, Duration, EntryData, Event, Instant, LogIndex, Membership, Message, NodeId,
    PersistedState, Raft, RandomSource, Ready, Role, SplitMix64, Term, WalPosition,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Things that happen at a simulated moment.
#[derive(Clone, Debug)]
enum Happening {
    Deliver(Message),
    Tick { node: usize, generation: u64 },
}

#[derive(Clone, Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    what: Happening,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct SimNode {
    pub id: NodeId,
    pub raft: Option<Raft>,
    pub disk: PersistedState,
    pub clock: NodeClock,
    /// Ticks scheduled with an older generation are stale and skipped.
    tick_generation: u64,
    /// Chain hashes of the durable log, by index - 1.
    chain: Vec<u64>,
    /// Commit index already checked against the cluster's committed prefix.
    verified_commit: usize,
    /// Real time until which the node is frozen (SIGSTOP): nothing reaches it before then.
    pub paused_until: u64,
    /// The lease its sessions read: the last one it published (after every step), checked by
    /// them against the clock, also once its worker died.
    published_lease: Option<Instant>,
    /// Its worker closed the lease gate on its way out (`announced`): sessions see no lease,
    /// and nothing more is published.
    pub lease_gate_closed: bool,
    /// What sessions still read after its worker died: the published lease, unless the gate
    /// was closed. The next start publishes that it does not lead.
    orphaned_lease: Option<Instant>,
    /// The voters its settings list (`Config::voters`): the first voters, and a spare server
    /// itself besides.
    bootstrap: Vec<NodeId>,
}

/// Counters the scenario reports.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub events: u64,
    pub messages_sent: u64,
    /// Candidate rounds since the last leader was elected.
    pub rounds_in_election: u32,
    /// For each election won: how many candidate rounds it took.
    pub election_rounds: Vec<u32>,
}

pub struct Cluster {
    pub now: u64,
    pub rng: SplitMix64,
    pub nodes: Vec<SimNode>,
    pub network: Network,
    pub checker: Checker,
    pub counters: Counters,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    config_template: Config,
    pub trace: bool,
}

impl Cluster {
    /// A cluster of `size` voters and `spares` servers that are started but not members (they
    /// list the voters and themselves, as a server about to be added does), whose clocks drift
    /// by random amounts up to `max_drift_ppm`.
    pub fn new(
        size: usize,
        spares: usize,
        heartbeat: Duration,
        election_timeout: Duration,
        max_drift_ppm: i64,
        seed: u64,
    ) -> Cluster {
        let mut rng = SplitMix64::new(seed ^ 0x5EED_C10C);
        // Half the clocks sit at the edges of the allowed drift, where a lease is tightest.
        let drifts: Vec<i64> = (0..size + spares)
            .map(|_| match rng.uniform(0, 4) {
                0 => max_drift_ppm,
                1 => -max_drift_ppm,
                _ => rng.uniform(0, 2 * max_drift_ppm as u64 + 1) as i64 - max_drift_ppm,
            })
            .collect();
        let mut c = Cluster::build(heartbeat, election_timeout, &drifts, size, seed);
        c.start_all();
        c
    }

    /// A cluster of `drifts.len()` nodes whose clocks run `drifts[i]` ppm fast (or slow).
    pub fn with_drifts(
        heartbeat: Duration,
        election_timeout: Duration,
        drifts: &[i64],
        seed: u64,
    ) -> Cluster {
        let mut c = Cluster::build(heartbeat, election_timeout, drifts, drifts.len(), seed);
        c.start_all();
        c
    }

    fn start_all(&mut self) {
        for i in 0..self.size() {
            self.start(i).expect("a fresh node cannot violate anything");
        }
    }

    fn build(
        heartbeat: Duration,
        election_timeout: Duration,
        drifts: &[i64],
        voters: usize,
        seed: u64,
    ) -> Cluster {
        let size = drifts.len();
        let mut rng = SplitMix64::new(seed);
        let ids: Vec<NodeId> = (1..=size as u32).map(NodeId).collect();
        let first_voters: Vec<NodeId> = ids[..voters].to_vec();
        let config_template =
            Config::new(NodeId(1), first_voters.clone()).with_timing(heartbeat, election_timeout);
        let nodes = ids
            .iter()
            .zip(drifts)
            .map(|(&id, &drift_ppm)| SimNode {
                bootstrap: if first_voters.contains(&id) {
                    first_voters.clone()
                } else {
                    first_voters.iter().copied().chain([id]).collect()
                },
                id,
                raft: None,
                disk: PersistedState::default(),
                clock: NodeClock {
                    offset: rng.uniform(0, 1 << 40),
                    drift_ppm,
                },
                tick_generation: 0,
                chain: Vec::new(),
                verified_commit: 0,
                paused_until: 0,
                published_lease: None,
                lease_gate_closed: false,
                orphaned_lease: None,
            })
            .collect();
        Cluster {
            now: 0,
            rng,
            nodes,
            network: Network::new(size),
            checker: Checker::default(),
            counters: Counters::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            config_template,
            trace: false,
        }
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    pub fn local_now(&self, i: usize) -> Instant {
        self.nodes[i].clock.local(self.now)
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].raft.is_some()
    }

    /// Starts (or restarts) a node from its disk alone.
    pub fn start(&mut self, i: usize) -> Result<(), Violation> {
        let config = Config {
            id: self.nodes[i].id,
            voters: self.nodes[i].bootstrap.clone(),
            ..self.config_template.clone()
        };
        let seed = self.rng.next_u64();
        let now = self.local_now(i);
        let node = &mut self.nodes[i];
        let raft = Raft::new(
            config,
            node.disk.clone(),
            Box::new(SplitMix64::new(seed)),
            now,
        )
        .map_err(|e| format!("node {} refused its configuration: {e}", node.id))?;
        // A WAL position from a small range, so that voters often find a candidate behind
        // them: refusals may only cost time, never safety or liveness.
        let mut raft = raft;
        raft.set_wal_position(WalPosition {
            timeline: 1,
            lsn: self.rng.uniform(0, 4),
            ..Default::default()
        });
        let node = &mut self.nodes[i];
        node.verified_commit = 0;
        node.raft = Some(raft);
        node.published_lease = None;
        node.lease_gate_closed = false;
        node.orphaned_lease = None;
        self.trace_line(i, "started from disk");
        self.after_activity(i)
    }

    /// Loses everything not on disk.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.orphaned_lease = node.published_lease.filter(|_| !node.lease_gate_closed);
        node.raft = None;
        self.nodes[i].tick_generation += 1;
        self.trace_line(i, "crashed");
    }

    pub fn pause(&mut self, i: usize, until: u64) {
        self.nodes[i].paused_until = self.nodes[i].paused_until.max(until);
        self.trace_line(i, "paused");
    }

    /// Ends a pause now (SIGCONT): the node's timer is due again at once.
    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused_until > self.now {
            self.nodes[i].paused_until = self.now;
            self.reschedule_tick(i);
            self.trace_line(i, "resumed");
        }
    }

    pub fn leader_with_lease(&self) -> Option<usize> {
        (0..self.size()).find(|&i| {
            self.nodes[i]
                .raft
                .as_ref()
                .is_some_and(|r| r.has_lease(self.local_now(i)))
        })
    }

    /// Runs one node operation at the current moment, then handles what it produced.
    pub fn act<T>(
        &mut self,
        i: usize,
        op: impl FnOnce(&mut Raft, Instant) -> T,
    ) -> Result<Option<T>, Violation> {
        let now = self.local_now(i);
        let Some(raft) = self.nodes[i].raft.as_mut() else {
            return Ok(None);
        };
        let out = op(raft, now);
        self.after_activity(i)?;
        Ok(Some(out))
    }

    /// Processes events until real time `until` (or the queue runs dry).
    pub fn run_until(&mut self, until: u64) -> Result<(), Violation> {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Reverse(event) = self.queue.pop().expect("peeked");
            self.now = self.now.max(event.at);
            self.counters.events += 1;
            self.handle(event.what)?;
        }
        self.now = self.now.max(until);
        self.check_leases()
    }

    fn handle(&mut self, what: Happening) -> Result<(), Violation> {
        let node = match &what {
            Happening::Deliver(m) => m.to.0 as usize - 1,
            Happening::Tick { node, .. } => *node,
        };
        if self.nodes[node].paused_until > self.now {
            // A stopped process handles nothing; the kernel keeps its packets and its timers fire late.
            let at = self.nodes[node].paused_until;
            self.schedule(at, what);
            return Ok(());
        }
        match what {
            Happening::Deliver(msg) => {
                let from = msg.from.0 as usize - 1;
                if self.network.is_blocked(from, node) {
                    return Ok(());
                }
                self.act(node, |r, now| {
                    // Dropped messages are the core's business to ignore; nothing to check.
                    let _ = r.step(msg, now);
                })?;
            }
            Happening::Tick { generation, .. } => {
                if generation == self.nodes[node].tick_generation {
                    self.act(node, |r, now| r.tick(now))?;
                }
            }
        }
        self.check_leases()
    }

    fn schedule(&mut self, at: u64, what: Happening) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            what,
        }));
    }

    /// Persist, check, send, apply: the embedding program's fixed order.
    fn after_activity(&mut self, i: usize) -> Result<(), Violation> {
        let Some(raft) = self.nodes[i].raft.as_mut() else {
            return Ok(());
        };
        let mut ready = raft.take_ready();
        let term = raft.term();
        let id = raft.id();
        self.checker.term_seen(id, term)?;
        self.persist(i, &ready)?;
        self.observe_events(i, &ready)?;
        for msg in std::mem::take(&mut ready.messages) {
            self.checker.message_sent(&msg, &self.nodes[i].disk)?;
            self.send(msg);
        }
        self.check_commit(i, &ready)?;
        let node = &mut self.nodes[i];
        if !node.lease_gate_closed {
            node.published_lease = node.raft.as_ref().and_then(|r| r.lease_deadline());
        }
        self.reschedule_tick(i);
        Ok(())
    }

    fn persist(&mut self, i: usize, ready: &Ready) -> Result<(), Violation> {
        let node = &mut self.nodes[i];
        node.disk.apply(ready);
        if let Some(first) = ready.entries.first() {
            node.chain.truncate(first.index.0 as usize - 1);
            for e in &ready.entries {
                let prev = node.chain.last().copied().unwrap_or(0);
                node.chain.push(chain_hash(prev, e));
            }
            self.checker
                .entries_stored(node.id, &ready.entries, &node.chain)?;
            if ready
                .entries
                .iter()
                .any(|e| matches!(e.data, EntryData::Membership(_)))
            {
                let bootstrap = Config {
                    voters: node.bootstrap.clone(),
                    ..self.config_template.clone()
                }
                .bootstrap_membership();
                self.checker.configurations_stored(
                    node.id,
                    &bootstrap,
                    &node.disk.entries,
                    first.index,
                )?;
            }
        }
        Ok(())
    }

    fn observe_events(&mut self, i: usize, ready: &Ready) -> Result<(), Violation> {
        for event in &ready.events {
            if let Event::MembershipChanged { membership, index } = event {
                self.trace_line(
                    i,
                    &format!("configuration [{membership}] from index {index}"),
                );
            }
            if let Event::RoleChanged {
                role, term, cause, ..
            } = event
            {
                self.trace_line(i, &format!("became {role} in term {term} ({cause})"));
                match role {
                    Role::Candidate => self.counters.rounds_in_election += 1,
                    Role::Leader => {
                        let node = &self.nodes[i];
                        self.checker.became_leader(node.id, *term, &node.chain)?;
                        let rounds = std::mem::take(&mut self.counters.rounds_in_election);
                        self.counters.election_rounds.push(rounds);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn check_commit(&mut self, i: usize, ready: &Ready) -> Result<(), Violation> {
        let node = &mut self.nodes[i];
        let raft = node.raft.as_ref().expect("checked by caller");
        let commit = raft.log().committed().0 as usize;
        // Applied <= committed, in order, without gaps.
        if let (Some(first), Some(last)) = (ready.committed.first(), ready.committed.last()) {
            let contiguous = ready
                .committed
                .windows(2)
                .all(|w| w[1].index == w[0].index.next());
            if !contiguous || last.index.0 as usize > commit || first.index == LogIndex(0) {
                return Err(format!(
                    "node {} applied entries out of order or past its commit index",
                    node.id
                ));
            }
        }
        if commit != node.verified_commit {
            let from = node.verified_commit.min(commit);
            self.checker
                .committed_up_to(node.id, raft.term(), from, commit, &node.chain)?;
            node.verified_commit = commit;
        }
        Ok(())
    }

    fn send(&mut self, msg: Message) {
        self.counters.messages_sent += 1;
        for delay in self.network.delays(&mut self.rng) {
            self.schedule(self.now + delay, Happening::Deliver(msg.clone()));
        }
    }

    fn reschedule_tick(&mut self, i: usize) {
        let Some(raft) = self.nodes[i].raft.as_ref() else {
            return;
        };
        let at = self.nodes[i]
            .clock
            .real_at(raft.next_deadline())
            .max(self.now);
        self.nodes[i].tick_generation += 1;
        let generation = self.nodes[i].tick_generation;
        self.schedule(
            at,
            Happening::Tick {
                node: i,
                generation,
            },
        );
    }

    /// Lease safety: at no instant do two nodes hold a valid lease, counting the leases that
    /// sessions of a node whose worker died still read. A lease starts only at an event and
    /// only shrinks between events, so checking at every event covers all instants.
    fn check_leases(&self) -> Result<(), Violation> {
        let holders: Vec<NodeId> = (0..self.size())
            .filter(|&i| {
                let now = self.local_now(i);
                let node = &self.nodes[i];
                match &node.raft {
                    Some(r) => r.has_lease(now),
                    None => node.orphaned_lease.is_some_and(|d| now < d),
                }
            })
            .map(|i| self.nodes[i].id)
            .collect();
        if holders.len() > 1 {
            return Err(format!(
                "nodes {holders:?} hold a lease at the same instant (t={}us)",
                self.now
            ));
        }
        Ok(())
    }

    /// True when one node leads with a lease and every member of its configuration that is up
    /// follows it in its term. (Servers outside it are no one's business: a removed one, a spare
    /// never added.)
    pub fn agreed_leader(&self) -> Option<(usize, Term)> {
        let l = self.leader_with_lease()?;
        let leader = self.nodes[l].raft.as_ref()?;
        let term = leader.term();
        let leader_id = self.nodes[l].id;
        let members = leader.membership().0;
        let all = self
            .nodes
            .iter()
            .filter(|n| members.contains(n.id))
            .filter_map(|n| n.raft.as_ref())
            .all(|r| r.term() == term && r.leader_id() == Some(leader_id));
        all.then_some((l, term))
    }

    /// The leader's configuration, when a node leads with a lease.
    pub fn leader_membership(&self) -> Option<Membership> {
        let l = self.leader_with_lease()?;
        Some(self.nodes[l].raft.as_ref()?.membership().0.clone())
    }

    fn trace_line(&self, i: usize, what: &str) {
        if self.trace {
            println!(
                "{:>10.3} ms  node {}: {what}",
                self.now as f64 / 1000.0,
                self.nodes[i].id
            );
        }
    }
}
