//! A simulated cluster: nodes with their own clocks and disks, a network, and an event queue
//! ordered by real (simulated) time. Every step ends with the safety checks.

use crate::checker::{chain_hash, Asked, Checker, Sending, Violation};
use crate::clock::NodeClock;
use crate::database::{Databases, Layout};
use crate::faults::Exercised;
use crate::network::Network;
use crate::promotion::FailoverDatabases;
use crate::setup::EdgeRandom;
pub use crate::setup::{Setup, Timing};
use pg_leader_raft::{
    Body, Cause, Config, Duration, EarlierPromises, EntryData, Event, Instant, LogIndex,
    Membership, Message, NodeId, PersistedState, Raft, RandomSource, Ready, Role, SplitMix64, Term,
    WalPosition,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Clock rates for `n` servers within `max_drift_ppm` of real time. Half the clocks sit at the
/// edges of the allowed drift, where a lease is tightest.
pub fn random_drifts(n: usize, max_drift_ppm: i64, rng: &mut SplitMix64) -> Vec<i64> {
    (0..n)
        .map(|_| match rng.uniform(0, 4) {
            0 => max_drift_ppm,
            1 => -max_drift_ppm,
            _ => rng.uniform(0, 2 * max_drift_ppm as u64 + 1) as i64 - max_drift_ppm,
        })
        .collect()
}

/// The random source the database layout of a seed is drawn from.
pub fn layout_rng(seed: u64) -> SplitMix64 {
    SplitMix64::new(seed ^ 0xDA7A_BA5E)
}

/// Things that happen at a simulated moment.
#[derive(Clone, Debug)]
enum Happening {
    Deliver(Message),
    Tick {
        node: usize,
        generation: u64,
    },
    /// A crashed or stopped server comes back, unless it was restarted (or crashed) since.
    Restart {
        node: usize,
        incarnation: u64,
    },
}

/// What an armed disk fault does to the next write that must be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// Power goes before fsync returns: the write is lost and nothing that waited on it leaves.
    LoseUnsyncedWrite,
    /// The save fails: the server stops (the extension's worker exits) and restarts later.
    FailSave,
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
    /// Its settings (they survive restarts, as `postgresql.conf` does).
    pub timing: Timing,
    pub can_lead: bool,
    /// Its PostgreSQL data position (the data directory survives restarts).
    pub wal: WalPosition,
    /// Bumped by every crash and start: a `Restart` scheduled before is stale.
    incarnation: u64,
    /// Real time until which its machine sleeps: packets to it are lost.
    pub suspended_until: u64,
    /// Until this real time, every durable write takes `fsync_delay`.
    pub slow_fsync_until: u64,
    pub fsync_delay: u64,
    /// Applies to the next durable write.
    pub disk_fault: Option<DiskFault>,
    /// What the host wrote at its last clean stop (`pg_leader.stopped`). The next start takes
    /// it; a reboot discards it; a failed removal leaves it for later starts, which must not
    /// trust it.
    pub stop_record: Option<StopRecord>,
    /// How many times the node started (the state's boot epoch).
    pub runs: u64,
    /// The next start cannot remove the stop record: it waits in full and the record stays.
    pub record_removal_fails: bool,
}

/// A clean stop's record: when the node's promises end, on its own clock (which runs on while
/// it is down, as `CLOCK_BOOTTIME` does within one boot), and the run that wrote it.
#[derive(Clone, Copy, Debug)]
pub struct StopRecord {
    pub run: u64,
    pub end: Instant,
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
    /// Each server's PostgreSQL: primary or standby, timeline, WAL.
    pub databases: Databases,
    /// With automatic failover: each server's PostgreSQL as `promotion` models it, in place of
    /// `databases`, and the host's rules applied after every step.
    pub failover: Option<FailoverDatabases>,
    /// `Config::promotes` of every server (`pg_leader.auto_failover`).
    pub promotes: bool,
    pub checker: Checker,
    pub maintenance: crate::maintenance::MaintenanceChecker,
    pub counters: Counters,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    config_template: Config,
    voters: usize,
    margin_divisor: u64,
    adversarial: bool,
    monotonic_suspend: bool,
    /// The longest election timeout any server has had: promises may last that long.
    pub longest_timeout_ever: Duration,
    /// The message being handled, so that answers can be checked against it.
    answering: Option<Asked>,
    /// `Exercised` bits of the faults that happened.
    pub exercised: u32,
    pub trace: bool,
}

impl Cluster {
    /// A cluster built as `setup` says: its first `setup.voters` servers are the voters, the
    /// others spares that are started but not members (they list the voters and themselves, as
    /// a server about to be added does).
    pub fn new(setup: &Setup, seed: u64) -> Cluster {
        let mut c = Cluster::build(setup, seed);
        Cluster::start_all(&mut c);
        c
    }

    /// Built as `new` does, nothing started yet (`start_all`).
    pub fn unstarted(setup: &Setup, seed: u64) -> Cluster {
        Cluster::build(setup, seed)
    }

    /// Starts every server (the trace, when on, first lists how each is set up).
    pub fn start_all(c: &mut Cluster) {
        for i in 0..c.size() {
            let n = &c.nodes[i];
            let wal = c.position(i);
            c.trace_line(
                i,
                &format!(
                    "heartbeat {} election timeout {} can_lead {} wal {}/{} drift {} ppm{}",
                    n.timing.heartbeat,
                    n.timing.election_timeout,
                    n.can_lead,
                    wal.timeline,
                    wal.lsn,
                    n.clock.drift_ppm(),
                    if i < c.voters { "" } else { " (spare)" }
                ),
            );
        }
        for i in 0..c.size() {
            c.start(i).expect("a fresh node cannot violate anything");
        }
    }

    /// A cluster of `drifts.len()` voters with one timing whose clocks run `drifts[i]` ppm fast
    /// (or slow).
    pub fn with_drifts(
        heartbeat: Duration,
        election_timeout: Duration,
        drifts: &[i64],
        seed: u64,
    ) -> Cluster {
        Cluster::new(&Setup::uniform(heartbeat, election_timeout, drifts), seed)
    }

    fn build(setup: &Setup, seed: u64) -> Cluster {
        let size = setup.drifts.len();
        let mut rng = SplitMix64::new(seed);
        let ids: Vec<NodeId> = (1..=size as u32).map(NodeId).collect();
        let first_voters: Vec<NodeId> = ids[..setup.voters].to_vec();
        let config_template = Config::new(NodeId(1), first_voters.clone());
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| SimNode {
                bootstrap: if first_voters.contains(&id) {
                    first_voters.clone()
                } else {
                    first_voters.iter().copied().chain([id]).collect()
                },
                id,
                raft: None,
                disk: PersistedState::default(),
                clock: NodeClock::new(rng.uniform(0, 1 << 40), setup.drifts[i]),
                tick_generation: 0,
                chain: Vec::new(),
                verified_commit: 0,
                paused_until: 0,
                timing: setup.timings[i],
                can_lead: setup.can_lead[i],
                // A WAL position from a small range, so that voters often find a candidate
                // behind them: refusals may only cost time, never safety or liveness.
                wal: WalPosition {
                    timeline: 1,
                    lsn: rng.uniform(0, 4),
                    in_recovery: true,
                    ..Default::default()
                },
                incarnation: 0,
                suspended_until: 0,
                slow_fsync_until: 0,
                fsync_delay: 0,
                disk_fault: None,
                stop_record: None,
                runs: 0,
                record_removal_fails: false,
                published_lease: None,
                lease_gate_closed: false,
                orphaned_lease: None,
            })
            .collect();
        let longest_timeout_ever = setup
            .timings
            .iter()
            .map(|t| t.election_timeout)
            .max()
            .unwrap_or_default();
        let mut network = Network::new(size);
        network.at_edges = setup.adversarial;
        network.late_min = longest_timeout_ever.as_micros();
        network.late_max = 3 * longest_timeout_ever.as_micros();
        Cluster {
            now: 0,
            rng,
            nodes,
            network,
            databases: Databases::new(Layout::FaultDriven, size, &mut SplitMix64::new(seed)),
            failover: None,
            promotes: false,
            checker: Checker::default(),
            maintenance: Default::default(),
            counters: Counters::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            config_template,
            voters: setup.voters,
            margin_divisor: setup.margin_divisor,
            adversarial: setup.adversarial,
            monotonic_suspend: setup.monotonic_suspend,
            longest_timeout_ever,
            answering: None,
            exercised: 0,
            trace: false,
        }
    }

    pub fn exercise(&mut self, fault: Exercised) {
        self.exercised |= fault.bit();
    }

    /// The longest election timeout in the servers' settings now.
    pub fn longest_timeout(&self) -> Duration {
        self.nodes
            .iter()
            .map(|n| n.timing.election_timeout)
            .max()
            .unwrap_or_default()
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
        if let Some(f) = self.failover.as_mut() {
            f.server_started(i);
        }
        let node = &self.nodes[i];
        let config = Config {
            id: node.id,
            voters: node.bootstrap.clone(),
            can_lead: node.can_lead,
            lease_margin_divisor: self.margin_divisor,
            promotes: self.promotes,
            ..self.config_template.clone()
        }
        .with_timing(node.timing.heartbeat, node.timing.election_timeout);
        let seed = self.rng.next_u64();
        let rng: Box<dyn RandomSource> = if self.adversarial {
            Box::new(EdgeRandom(SplitMix64::new(seed)))
        } else {
            Box::new(SplitMix64::new(seed))
        };
        let now = self.local_now(i);
        let wal = self.position(i);
        let node = &mut self.nodes[i];
        node.runs += 1;
        // As the host does: the record is trusted by the start right after the run that wrote
        // it, and only when it could be removed; a node's first start is a new one.
        let record = if std::mem::take(&mut node.record_removal_fails) {
            None
        } else {
            node.stop_record.take()
        };
        let earlier = match record {
            Some(r) if r.run + 1 == node.runs => EarlierPromises::EndAt(r.end),
            _ if node.runs == 1 => EarlierPromises::NeverRan,
            _ => EarlierPromises::Unknown,
        };
        let mut raft = Raft::start(config, node.disk.clone(), rng, now, earlier)
            .map_err(|e| format!("node {} refused its configuration: {e}", node.id))?;
        // The host tells what the server is before anything else happens.
        raft.set_wal_position(wal);
        node.verified_commit = 0;
        node.incarnation += 1;
        node.raft = Some(raft);
        node.published_lease = None;
        node.lease_gate_closed = false;
        node.orphaned_lease = None;
        let id = node.id;
        self.checker.started(id, self.now);
        self.trace_line(i, "started from disk");
        self.after_activity(i)?;
        self.failover_step()
    }

    /// Crashes a node and brings it back after `down` microseconds (unless something else
    /// starts or crashes it meanwhile).
    pub fn crash_for(&mut self, i: usize, down: u64) {
        self.crash(i);
        self.restart_after(i, down);
    }

    /// Brings a node that just crashed back after `down` microseconds (unless something else
    /// starts or crashes it meanwhile).
    pub fn restart_after(&mut self, i: usize, down: u64) {
        let incarnation = self.nodes[i].incarnation;
        self.schedule(
            self.now + down,
            Happening::Restart {
                node: i,
                incarnation,
            },
        );
    }

    /// Reloads a server's timing settings.
    pub fn reload_timing(&mut self, i: usize, timing: Timing) -> Result<(), Violation> {
        self.nodes[i].timing = timing;
        self.longest_timeout_ever = self.longest_timeout_ever.max(timing.election_timeout);
        self.trace_line(
            i,
            &format!(
                "reloaded heartbeat {} election timeout {}",
                timing.heartbeat, timing.election_timeout
            ),
        );
        let out = self.act(i, |r, _| {
            r.set_timing(timing.heartbeat, timing.election_timeout)
        })?;
        match out {
            Some(Err(e)) => Err(format!(
                "node {} refused a valid timing: {e}",
                self.nodes[i].id
            )),
            _ => Ok(()),
        }
    }

    /// A reload of `pg_leader.can_be_leader`, as the worker handles it: a leader told it may
    /// not lead hands leadership over at once (when a voter can take it).
    pub fn set_can_lead(&mut self, i: usize, can_lead: bool) -> Result<(), Violation> {
        self.nodes[i].can_lead = can_lead;
        if can_lead {
            self.checker.may_lead_again(self.nodes[i].id);
        }
        self.trace_line(i, &format!("can_lead = {can_lead}"));
        self.act(i, |r, now| {
            r.set_can_lead(can_lead);
            if !can_lead && r.role() == Role::Leader {
                let _ = r.hand_over(now);
            }
        })?;
        Ok(())
    }

    pub fn set_wal(&mut self, i: usize, wal: WalPosition) -> Result<(), Violation> {
        self.nodes[i].wal = wal;
        self.act(i, |r, _| r.set_wal_position(wal))?;
        Ok(())
    }

    /// The clock's rate changes now.
    pub fn set_drift(&mut self, i: usize, drift_ppm: i64) {
        let now = self.now;
        self.nodes[i].clock.set_drift(now, drift_ppm);
        self.reschedule_tick(i);
    }

    /// The machine sleeps until `until`: its processes stop, packets to it are lost; its lease
    /// clock runs on (`CLOCK_BOOTTIME`) or, in the monotonic model, stands still.
    pub fn suspend(&mut self, i: usize, until: u64) {
        self.pause(i, until);
        self.nodes[i].suspended_until = self.nodes[i].suspended_until.max(until);
        if self.monotonic_suspend {
            let now = self.now;
            self.nodes[i].clock.freeze(now, until);
        }
        self.trace_line(i, "suspended");
    }

    pub fn is_suspended(&self, i: usize) -> bool {
        self.nodes[i].suspended_until > self.now
    }

    /// Loses everything not on disk.
    pub fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.orphaned_lease = node.published_lease.filter(|_| !node.lease_gate_closed);
        node.raft = None;
        self.nodes[i].tick_generation += 1;
        self.nodes[i].incarnation += 1;
        self.trace_line(i, "crashed");
    }

    pub fn pause(&mut self, i: usize, until: u64) {
        self.nodes[i].paused_until = self.nodes[i].paused_until.max(until);
        self.trace_line(i, "paused");
    }

    /// Ends a pause now (SIGCONT): the node's timer is due again at once.
    pub fn resume(&mut self, i: usize) {
        if self.nodes[i].paused_until > self.now {
            let now = self.now;
            self.nodes[i].paused_until = now;
            self.nodes[i].suspended_until = self.nodes[i].suspended_until.min(now);
            self.nodes[i].clock.thaw(now);
            self.reschedule_tick(i);
            self.trace_line(i, "resumed");
        }
    }

    pub fn leader_with_lease(&self) -> Option<usize> {
        (0..self.size()).find(|&i| self.answers_true(i))
    }

    /// The servers that would answer true now: leaders whose lease holds on their own clock.
    pub fn lease_holders(&self) -> Vec<usize> {
        (0..self.size()).filter(|&i| self.answers_true(i)).collect()
    }

    /// A leader whose lease holds on its own clock. A sleeping machine answers nothing until it
    /// wakes.
    /// Sessions of a node whose worker died still read the lease it last published, unless the
    /// worker closed the lease gate on its way out.
    fn answers_true(&self, i: usize) -> bool {
        let now = self.local_now(i);
        let node = &self.nodes[i];
        !self.is_suspended(i)
            && match &node.raft {
                Some(r) => r.has_lease(now),
                None => node.orphaned_lease.is_some_and(|d| now < d),
            }
    }

    /// The real time until which sessions on server `i` see a lease (zero when they see none):
    /// the one its worker published, or left behind when it died, counted on its own clock.
    pub fn sessions_lease_until(&self, i: usize) -> u64 {
        let node = &self.nodes[i];
        let deadline = match &node.raft {
            Some(_) if node.lease_gate_closed => None,
            Some(_) => node.published_lease,
            None => node.orphaned_lease,
        };
        deadline.map_or(0, |d| node.clock.real_at(d))
    }

    /// Runs one node operation at the current moment, then handles what it produced.
    pub fn act<T>(
        &mut self,
        i: usize,
        op: impl FnOnce(&mut Raft, Instant) -> T,
    ) -> Result<Option<T>, Violation> {
        let now = self.local_now(i);
        self.advance_databases();
        self.failover_step()?;
        let wal = self.position(i);
        let Some(raft) = self.nodes[i].raft.as_mut() else {
            return Ok(None);
        };
        raft.set_wal_position(wal);
        let out = op(raft, now);
        self.after_activity(i)?;
        self.failover_step()?;
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
        self.failover_step()?;
        if self.maintenance.ending {
            self.end_maintenance()?;
        }
        self.check_leases()
    }

    fn handle(&mut self, what: Happening) -> Result<(), Violation> {
        let node = match &what {
            Happening::Deliver(m) => m.to.0 as usize - 1,
            Happening::Tick { node, .. } | Happening::Restart { node, .. } => *node,
        };
        if matches!(what, Happening::Deliver(_)) && self.is_suspended(node) {
            // A sleeping machine's network interface is down: the packet is lost.
            return Ok(());
        }
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
                self.answering = Asked::of(&msg);
                let outcome = self.act(node, |r, now| {
                    // Dropped messages are the core's business to ignore; nothing to check.
                    let _ = r.step(msg, now);
                });
                self.answering = None;
                outcome?;
            }
            Happening::Restart { incarnation, .. } => {
                if incarnation == self.nodes[node].incarnation && !self.is_up(node) {
                    self.start(node)?;
                }
            }
            Happening::Tick { generation, .. } => {
                if generation == self.nodes[node].tick_generation {
                    self.act(node, |r, now| r.tick(now))?;
                }
            }
        }
        self.check_leases()
    }

    /// What server `i` tells its core: its database's position, or with no database model
    /// (`Layout::FaultDriven`) the one the fault phase set (`SimNode::wal`).
    pub fn position(&self, i: usize) -> WalPosition {
        if let Some(f) = &self.failover {
            return f.position(i);
        }
        if self.databases.layout == Layout::FaultDriven {
            self.nodes[i].wal
        } else {
            self.databases.position(i)
        }
    }

    /// Starts a cluster of `setup`'s servers with their databases laid out as `layout` says.
    pub fn with_layout(setup: &Setup, layout: Layout, seed: u64) -> Cluster {
        let mut c = Cluster::unstarted(setup, seed);
        c.databases = Databases::new(layout, setup.drifts.len(), &mut layout_rng(seed));
        Cluster::start_all(&mut c);
        c
    }

    /// Brings every server's WAL to the present: primaries that run write, standbys that hear
    /// their primary replay.
    fn advance_databases(&mut self) {
        let now = self.now;
        let nodes = &self.nodes;
        let network = &self.network;
        let running = |i: usize| nodes[i].raft.is_some() && nodes[i].paused_until <= now;
        self.databases
            .advance(now, running, |from, to| !network.is_blocked(from, to));
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
        let durable = ready.hard_state.is_some() || !ready.entries.is_empty();
        if durable {
            if let Some(fault) = self.nodes[i].disk_fault.take() {
                // The write never reaches the disk; the server goes down with everything that
                // waited on it (ready.md: drop the messages, restart from what is on disk).
                let (what, down) = match fault {
                    DiskFault::LoseUnsyncedWrite => {
                        self.exercise(Exercised::LostUnsyncedWrite);
                        ("power lost before fsync", self.rng.uniform(1, 3_000_000))
                    }
                    DiskFault::FailSave => {
                        self.exercise(Exercised::FailedSave);
                        (
                            "save failed: stopped",
                            self.rng.uniform(1_000_000, 5_000_000),
                        )
                    }
                };
                self.trace_line(i, what);
                self.crash_for(i, down);
                return Ok(());
            }
        }
        self.checker.term_seen(id, term)?;
        self.persist(i, &ready)?;
        self.observe_events(i, &ready)?;
        // A slow fsync blocks the server, and what waited on it leaves late.
        let mut fsync = 0;
        if durable && self.nodes[i].slow_fsync_until > self.now {
            fsync = self.nodes[i].fsync_delay;
            self.exercise(Exercised::SlowFsync);
            let until = self.now + fsync;
            self.pause(i, until);
        }
        if durable {
            // As the extension's worker does: the succession step allows for slow writes.
            if let Some(raft) = self.nodes[i].raft.as_mut() {
                raft.note_fsync(pg_leader_raft::Duration::from_micros(fsync));
            }
        }
        let local = self.local_now(i);
        let at = Sending {
            local,
            real: self.now,
            answering: self.answering,
        };
        for msg in std::mem::take(&mut ready.messages) {
            self.checker.message_sent(&msg, &self.nodes[i].disk, at)?;
            self.send(msg, fsync);
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
                let local = self.local_now(i);
                let id = self.nodes[i].id;
                if matches!(role, Role::PreCandidate | Role::Candidate) {
                    let handover = *cause == Cause::Transfer;
                    self.checker.campaign_started(id, *term, handover, local)?;
                }
                match role {
                    Role::Candidate => self.counters.rounds_in_election += 1,
                    Role::Leader => {
                        let holders: Vec<(NodeId, Term)> = self
                            .lease_holders()
                            .into_iter()
                            .filter_map(|h| {
                                let term = self.nodes[h].raft.as_ref()?.term();
                                Some((self.nodes[h].id, term))
                            })
                            .collect();
                        self.checker.elected_while_leased(id, *term, &holders)?;
                        if !self.nodes[i].can_lead {
                            self.checker.caretaker_elected(id, *term);
                            self.exercise(Exercised::CaretakerElected);
                        }
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
        if !ready.committed.is_empty() {
            let (applied, paused) = (raft.log().applied(), raft.maintenance().paused);
            self.maintenance.applied(node.id, applied, paused)?;
        }
        if commit != node.verified_commit {
            let from = node.verified_commit.min(commit);
            self.checker
                .committed_up_to(node.id, raft.term(), from, commit, &node.chain)?;
            node.verified_commit = commit;
        }
        Ok(())
    }

    fn send(&mut self, msg: Message, after: u64) {
        self.counters.messages_sent += 1;
        if self.trace {
            if let Body::VoteResponse { pre_vote, granted } = msg.body {
                let what = format!(
                    "{} {}vote to {} (term {})",
                    if granted { "grants" } else { "refuses" },
                    if pre_vote { "pre-" } else { "" },
                    msg.to,
                    msg.term
                );
                self.trace_line(msg.from.0 as usize - 1, &what);
            }
        }
        let control = matches!(
            msg.body,
            Body::RequestVote { .. } | Body::VoteResponse { .. } | Body::TimeoutNow
        );
        for delay in self.network.delays(&mut self.rng, control) {
            if delay >= self.network.late_min {
                self.exercise(Exercised::LateMessage);
                match msg.body {
                    Body::VoteResponse { granted: true, .. } => self.exercise(Exercised::LateVote),
                    Body::TimeoutNow => self.exercise(Exercised::LateTimeoutNow),
                    Body::AppendResponse { .. } => self.exercise(Exercised::LateAcknowledgement),
                    _ => {}
                }
            }
            self.schedule(self.now + after + delay, Happening::Deliver(msg.clone()));
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
        let mut holding = (0..self.size()).filter(|&i| self.answers_true(i));
        let Some(first) = holding.next() else {
            return Ok(());
        };
        if let Some(r) = &self.nodes[first].raft {
            self.checker.lease_held(self.nodes[first].id, r.term())?;
        }
        if holding.next().is_none() {
            return Ok(());
        }
        let holders = self.lease_holders();
        if holders.len() > 1 {
            let ids: Vec<NodeId> = holders.iter().map(|&h| self.nodes[h].id).collect();
            return Err(format!(
                "nodes {ids:?} hold a lease at the same instant (t={}us)",
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

    /// Each server's state, one line each, for the trace of a failed seed.
    pub fn trace_state(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            let state = match &n.raft {
                Some(r) => format!(
                    "{} term {} leader {:?} last log {}/{} commit {} members [{}] can_lead {} wal {}/{} T {} rank {:?}",
                    r.role(),
                    r.term(),
                    r.leader_id().map(|l| l.0),
                    r.log().last_term(),
                    r.log().last_index(),
                    r.log().committed(),
                    r.membership().0,
                    n.can_lead,
                    n.wal.timeline,
                    n.wal.lsn,
                    n.timing.election_timeout,
                    r.succession_rank(),
                ),
                None => "down".to_string(),
            };
            self.trace_line(i, &state);
        }
    }

    pub(crate) fn trace_line(&self, i: usize, what: &str) {
        if self.trace {
            println!(
                "{:>10.3} ms  node {}: {what}",
                self.now as f64 / 1000.0,
                self.nodes[i].id
            );
        }
    }
}
