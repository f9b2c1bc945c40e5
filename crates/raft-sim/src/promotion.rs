//! The PostgreSQL side of each server with automatic failover on (`pg_leader.auto_failover`,
//! `Config::promotes`), and what the host does with it:
//! - a primary writes WAL and acknowledges commits only while its sessions see a lease (the
//!   write fence, design.md invariant 8), counted on its own clock, also after its worker died;
//! - a standby receives WAL from the server it streams from (while both run and reach each
//!   other, and its WAL is part of that server's history), a few milliseconds behind, and
//!   replays it (slower under the slow-replay fault);
//! - the leader, when its database is a standby, promotes it once it holds the lease and has
//!   replayed all it received; PostgreSQL finishes a promotion it started even if the worker
//!   dies, and after a restart if the server went down; the new primary starts a new
//!   timeline at its replayed position;
//! - a standby re-points to the leader it knows; a former primary that hears of a leader that
//!   is a primary on a newer timeline is rebuilt as its standby (`pg_rewind`: its WAL after
//!   the fork point is discarded), and so is a standby that received WAL past the fork point;
//!   the server is stopped meanwhile, and a crash makes the rebuild start over on restart.
//!
//! `Cluster::failover_step` runs after every simulated step: it brings the WAL up to the
//! present, applies the host's rules, and checks (a), (b) and (e) of `failover_checks`.

use crate::checker::Violation;
use crate::cluster::Cluster;
use crate::database::SYSTEM;
use crate::failover_checks::FailoverChecker;
use crate::timelines::{Histories, HistoryId};
use pg_leader_raft::{
    Entry, EntryData, LogIndex, RandomSource, Role, SplitMix64, Term, WalPosition,
};

/// WAL a primary writes per microsecond while it acknowledges commits.
pub const WAL_PER_US: u64 = 1;
/// WAL of one acknowledged commit: one commit per millisecond of writing.
pub const WAL_PER_COMMIT: u64 = 1_000;
/// How much faster than a primary writes a standby receives and replays when it is behind.
const CATCH_UP: u64 = 4;

/// Which timeline id a promotion picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineRule {
    /// PostgreSQL's own: one past the newest timeline whose history file the server holds
    /// (those of its own history).
    NextKnown,
    /// The host first writes the history files of every timeline its core heard of, so that
    /// PostgreSQL picks one past the newest of those too.
    AboveHeard,
    /// The leader first commits the timeline it will promote to in the Raft log (one past every
    /// timeline it knows, heard of, or finds reserved in its log), and promotes to it once the
    /// entry is committed. Every later leader has the entry (Leader Completeness, §5.4), so
    /// picks a newer one, even if this promotion finishes only after a crash.
    Reserved,
}

/// The command that reserves a timeline in the Raft log.
const RESERVE: &[u8] = b"timeline:";

/// The newest timeline reserved in a log.
fn reserved_in(entries: &[Entry]) -> u32 {
    entries
        .iter()
        .filter_map(|e| match &e.data {
            EntryData::Command(bytes) => bytes.strip_prefix(RESERVE),
            _ => None,
        })
        .filter_map(|rest| Some(u32::from_le_bytes(rest.try_into().ok()?)))
        .max()
        .unwrap_or(0)
}

/// What the host does; each rule can be switched off to show that a check catches it.
#[derive(Clone, Copy, Debug)]
pub struct HostRules {
    /// Commits are acknowledged only while sessions see a lease.
    pub fence: bool,
    /// The leader promotes only while it holds the lease (else as soon as it leads).
    pub promote_needs_lease: bool,
    pub timeline: TimelineRule,
    /// With `TimelineRule::Reserved`: a primary whose Raft log reserves a newer timeline than
    /// its own (a promotion was decided) acknowledges no commit, lease or not: its timeline is
    /// superseded and whatever it writes will be discarded by its rebuild.
    pub fence_superseded: bool,
    /// Nothing is done by itself while the core holds automatic actions (maintenance mode).
    pub respects_maintenance: bool,
}

impl Default for HostRules {
    fn default() -> HostRules {
        HostRules {
            fence: true,
            promote_needs_lease: true,
            timeline: TimelineRule::NextKnown,
            fence_superseded: false,
            respects_maintenance: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbState {
    Primary,
    /// Streams from `upstream`, if any.
    Standby {
        upstream: Option<usize>,
    },
    /// Leaves recovery at `done_at` (or as soon as it runs again after that), on a timeline
    /// past `heard` when the host wrote history files up to it.
    Promoting {
        done_at: u64,
        heard: u32,
    },
    /// Stopped and being rebuilt from `source`, done at `done_at`.
    Rejoining {
        source: usize,
        done_at: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Db {
    pub state: DbState,
    pub history: HistoryId,
    /// A primary's WAL end; a standby's received WAL.
    pub flushed: u64,
    /// A standby's replay position (a primary's is `flushed`).
    pub replayed: u64,
    /// The server (PostgreSQL and worker) is down: killed, or stopped for its rebuild.
    pub down: bool,
    /// Replay runs slower than the primary writes until then.
    pub slow_replay_until: u64,
    /// How far behind a writing source a standby receives, in microseconds of WAL.
    ship_lag: u64,
    /// A re-point to this server, due at this time (the walreceiver restarts).
    repoint: Option<(usize, u64)>,
    /// Until when (real time) its sessions saw a lease at the last step.
    lease_until: u64,
    /// What its worker last published: the newest timeline reserved in its Raft log.
    reserved_in_log: u32,
    /// `TimelineRule::Reserved`: the term, log index (`u64::MAX` while the proposal is under
    /// way) and timeline of its reservation.
    reserved: Option<(Term, LogIndex, u32)>,
}

/// Counts of what the host did, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Actions {
    pub promotions: u64,
    /// Promotions whose server's worker or machine died before they finished.
    pub promotions_interrupted: u64,
    pub rejoins: u64,
    /// Rebuilds of standbys that had received WAL past the fork point.
    pub standby_rewinds: u64,
    pub repoints: u64,
}

#[derive(Clone, Debug)]
pub struct FailoverDatabases {
    pub dbs: Vec<Db>,
    pub histories: Histories,
    pub rules: HostRules,
    pub checker: FailoverChecker,
    pub actions: Actions,
    /// WAL ranges `(history, from, to)` written while commits were acknowledged.
    pub acknowledged: Vec<(HistoryId, u64, u64)>,
    /// Acknowledged WAL written on a timeline after a promotion had already forked a newer one
    /// off it (a former primary that leads again): lost unless that newer one dies out.
    pub acknowledged_past_a_fork: u64,
    rng: SplitMix64,
    last: u64,
}

impl FailoverDatabases {
    /// A fresh cluster: server `primary` is the primary of timeline 1, the others its standbys.
    pub fn fresh(size: usize, primary: usize, rules: HostRules, seed: u64) -> FailoverDatabases {
        let mut rng = SplitMix64::new(seed ^ 0xFA11_0BE5);
        let dbs = (0..size)
            .map(|i| Db {
                state: if i == primary {
                    DbState::Primary
                } else {
                    DbState::Standby {
                        upstream: Some(primary),
                    }
                },
                history: Histories::FIRST,
                flushed: 0,
                replayed: 0,
                down: false,
                slow_replay_until: 0,
                ship_lag: rng.uniform(200, 5_000),
                repoint: None,
                lease_until: 0,
                reserved_in_log: 0,
                reserved: None,
            })
            .collect();
        FailoverDatabases {
            dbs,
            histories: Histories::default(),
            rules,
            checker: FailoverChecker::new(size),
            actions: Actions::default(),
            acknowledged: Vec::new(),
            acknowledged_past_a_fork: 0,
            rng,
            last: 0,
        }
    }

    /// Server `i`'s worker starts, so its server runs (unless it is being rebuilt).
    pub fn server_started(&mut self, i: usize) {
        if !matches!(self.dbs[i].state, DbState::Rejoining { .. }) {
            self.dbs[i].down = false;
        }
    }

    pub fn is_rejoining(&self, i: usize) -> bool {
        matches!(self.dbs[i].state, DbState::Rejoining { .. })
    }

    /// What server `i` tells its core.
    pub fn position(&self, i: usize) -> WalPosition {
        let d = &self.dbs[i];
        let timeline = self.histories.timeline(d.history);
        match d.state {
            DbState::Primary => WalPosition::primary(SYSTEM, timeline, d.flushed),
            _ => WalPosition::standby(SYSTEM, timeline, d.replayed),
        }
    }

    pub fn timeline(&self, i: usize) -> u32 {
        self.histories.timeline(self.dbs[i].history)
    }

    /// PostgreSQL runs on server `i` (it may be a primary, a standby or promoting).
    fn runs(&self, c: &Cluster, i: usize) -> bool {
        let d = &self.dbs[i];
        !d.down && !matches!(d.state, DbState::Rejoining { .. }) && !c.is_suspended(i)
    }

    /// Commits acknowledged on a superseded timeline (`acknowledged_past_a_fork`).
    pub fn commits_past_a_fork(&self) -> u64 {
        self.acknowledged_past_a_fork / WAL_PER_COMMIT
    }

    /// Acknowledged WAL that server `last` (the primary at the end) does not have, in commits.
    pub fn lost_commits(&self, last: usize) -> u64 {
        let d = &self.dbs[last];
        let bytes: u64 = self
            .acknowledged
            .iter()
            .map(|&(h, from, to)| self.histories.lost(h, from, to, d.history, d.flushed))
            .sum();
        bytes / WAL_PER_COMMIT
    }

    /// WAL from `[last, now)`: primaries that acknowledge write, standbys receive and replay.
    fn advance(&mut self, c: &Cluster) -> Result<(), Violation> {
        let (from, now) = (self.last, c.now);
        if now <= from {
            return Ok(());
        }
        self.last = now;
        let n = self.dbs.len();
        let mut wrote = vec![false; n];
        for (i, wrote) in wrote.iter_mut().enumerate() {
            if self.dbs[i].state != DbState::Primary || !self.runs(c, i) {
                continue;
            }
            let superseded = self.rules.fence_superseded
                && self.dbs[i].reserved_in_log > self.histories.timeline(self.dbs[i].history);
            let until = if superseded {
                from
            } else if self.rules.fence {
                now.min(self.dbs[i].lease_until)
            } else {
                now
            };
            if until > from {
                self.checker.acknowledged(i, from, until)?;
                let d = &mut self.dbs[i];
                let start = d.flushed;
                d.flushed += (until - from) * WAL_PER_US;
                d.replayed = d.flushed;
                self.acknowledged.push((d.history, start, d.flushed));
                self.acknowledged_past_a_fork +=
                    self.histories.past_a_fork(d.history, start, d.flushed);
                *wrote = true;
            }
        }
        let elapsed = now - from;
        for i in 0..n {
            if !self.runs(c, i) {
                continue;
            }
            if let DbState::Standby { upstream: Some(u) } = self.dbs[i].state {
                self.receive(c, i, u, wrote[u], elapsed);
            }
            let d = &mut self.dbs[i];
            if matches!(d.state, DbState::Standby { .. } | DbState::Promoting { .. }) {
                let rate = if d.slow_replay_until > from {
                    elapsed / 2
                } else {
                    elapsed * CATCH_UP
                };
                d.replayed = d.flushed.min(d.replayed + rate * WAL_PER_US);
            }
        }
        Ok(())
    }

    /// Standby `i` streams from `u` for `elapsed` microseconds, if it can.
    fn receive(&mut self, c: &Cluster, i: usize, u: usize, source_wrote: bool, elapsed: u64) {
        let reachable = !c.network.is_blocked(u, i) && !c.network.is_blocked(i, u);
        let serving = matches!(
            self.dbs[u].state,
            DbState::Primary | DbState::Standby { .. } | DbState::Promoting { .. }
        );
        if u == i || !reachable || !serving || !self.runs(c, u) {
            return;
        }
        let (mine, theirs) = (&self.dbs[i], &self.dbs[u]);
        if !self
            .histories
            .can_follow(mine.history, mine.flushed, theirs.history)
        {
            return;
        }
        let lag = if source_wrote { mine.ship_lag } else { 0 };
        let target = theirs.flushed.saturating_sub(lag * WAL_PER_US);
        let history = theirs.history;
        let d = &mut self.dbs[i];
        // Its WAL is part of the source's history: it follows the source's timeline.
        d.history = history;
        d.flushed = d
            .flushed
            .max(target.min(d.flushed + elapsed * CATCH_UP * WAL_PER_US));
    }
}

impl Cluster {
    /// Brings the failover model to the present, applies the host's rules and checks the
    /// failover invariants. Does nothing without the model.
    pub fn failover_step(&mut self) -> Result<(), Violation> {
        let Some(mut f) = self.failover.take() else {
            return Ok(());
        };
        let (mut rejoined, mut reserving) = (Vec::new(), Vec::new());
        let outcome = self.failover_rules(&mut f, &mut rejoined, &mut reserving);
        for i in 0..f.dbs.len() {
            f.dbs[i].lease_until = self.sessions_lease_until(i);
            if self.is_up(i) {
                f.dbs[i].reserved_in_log = reserved_in(&self.nodes[i].disk.entries);
            }
        }
        self.failover = Some(f);
        outcome?;
        // Started once the model is back in place: the worker reads its database's position.
        for i in rejoined {
            self.start(i)?;
        }
        for (i, term, timeline) in reserving {
            self.reserve_timeline(i, term, timeline)?;
        }
        Ok(())
    }

    /// The leader `i` proposes the reservation of `timeline` in `term`.
    fn reserve_timeline(&mut self, i: usize, term: Term, timeline: u32) -> Result<(), Violation> {
        let set = |c: &mut Cluster, reserved| {
            if let Some(f) = c.failover.as_mut() {
                f.dbs[i].reserved = reserved;
            }
        };
        // Marked under way first: the steps the proposal runs must not propose again.
        set(self, Some((term, LogIndex(u64::MAX), timeline)));
        let command = [RESERVE, &timeline.to_le_bytes()[..]].concat();
        match self.act(i, |r, now| r.propose(command, now))? {
            Some(Ok(index)) => set(self, Some((term, index, timeline))),
            _ => set(self, None),
        }
        Ok(())
    }

    fn failover_rules(
        &mut self,
        f: &mut FailoverDatabases,
        rejoined: &mut Vec<usize>,
        reserving: &mut Vec<(usize, Term, u32)>,
    ) -> Result<(), Violation> {
        f.advance(self)?;
        for i in 0..f.dbs.len() {
            self.finish_promotion(f, i)?;
            if self.finish_rejoin(f, i) {
                rejoined.push(i);
            }
            let worker_runs = self.is_up(i) && self.nodes[i].paused_until <= self.now;
            if worker_runs && f.runs(self, i) {
                if let Some(reservation) = self.host_acts(f, i)? {
                    reserving.push(reservation);
                }
            }
        }
        Ok(())
    }

    /// What server `i`'s worker does with its database, from what its core knows. Returns the
    /// timeline reservation to propose, if any (`TimelineRule::Reserved`).
    fn host_acts(
        &mut self,
        f: &mut FailoverDatabases,
        i: usize,
    ) -> Result<Option<(usize, Term, u32)>, Violation> {
        let raft = self.nodes[i].raft.as_ref().expect("the worker runs");
        let (role, term, id) = (raft.role(), raft.term(), raft.id());
        let leader = raft
            .leader_id()
            .map(|l| l.0 as usize - 1)
            .filter(|&l| l != i);
        let leader_position = raft
            .leader_id()
            .and_then(|l| raft.heard_position(l))
            .filter(|w| w.known());
        let heard_newest = self
            .nodes
            .iter()
            .filter_map(|n| raft.heard_position(n.id))
            .map(|w| w.timeline)
            .max()
            .unwrap_or(0);
        let holds_lease = self.lease_holders().contains(&i);
        if f.rules.respects_maintenance && raft.automatic_actions_held() {
            return Ok(None);
        }
        let paused = raft.maintenance().paused;
        let d = &f.dbs[i];
        let own_timeline = f.histories.timeline(d.history);
        match d.state {
            DbState::Standby { .. } if role == Role::Leader => {
                let may = holds_lease || !f.rules.promote_needs_lease;
                if !may || d.replayed != d.flushed {
                    return Ok(None);
                }
                let mut heard = heard_newest;
                if f.rules.timeline == TimelineRule::Reserved {
                    match d.reserved {
                        Some((t, index, timeline)) if t == term => {
                            if raft.log().committed() < index {
                                return Ok(None);
                            }
                            heard = timeline - 1;
                        }
                        _ => {
                            let known = f.histories.newest_known(d.history);
                            let in_log = reserved_in(&self.nodes[i].disk.entries);
                            let timeline = known.max(heard_newest).max(in_log) + 1;
                            return Ok(Some((i, term, timeline)));
                        }
                    }
                }
                f.checker.promotion_started(id, term, holds_lease)?;
                f.checker.no_promotion_in_maintenance(id, term, paused)?;
                let delay = if f.rng.uniform(0, 10) == 0 {
                    f.rng.uniform(500_000, 3_000_000)
                } else {
                    f.rng.uniform(2_000, 300_000)
                };
                f.dbs[i].state = DbState::Promoting {
                    done_at: self.now + delay,
                    heard,
                };
                f.dbs[i].reserved = None;
                f.actions.promotions += 1;
                if self.trace {
                    let all: Vec<String> = (0..f.dbs.len())
                        .map(|j| {
                            let (d, tl) = (&f.dbs[j], f.timeline(j));
                            format!("{}: {tl}/{}/{}", j + 1, d.replayed, d.flushed)
                        })
                        .collect();
                    let what = format!(
                        "promotes in term {term} (timeline/replayed/received: {})",
                        all.join(", ")
                    );
                    self.trace_failover(i, &what);
                }
            }
            DbState::Standby { upstream } => {
                let Some(l) = leader else { return Ok(None) };
                let newer_primary =
                    leader_position.is_some_and(|w| !w.in_recovery && w.timeline > own_timeline);
                if upstream == Some(l) {
                    let diverged = !f
                        .histories
                        .can_follow(d.history, d.flushed, f.dbs[l].history);
                    if newer_primary && diverged {
                        f.actions.standby_rewinds += 1;
                        self.start_rejoin(f, i, l);
                    }
                    return Ok(None);
                }
                match d.repoint {
                    Some((to, at)) if to == l && at <= self.now => {
                        f.dbs[i].state = DbState::Standby { upstream: Some(l) };
                        f.dbs[i].repoint = None;
                        f.actions.repoints += 1;
                        self.trace_failover(i, &format!("streams from node {}", l + 1));
                    }
                    Some((to, _)) if to == l => {}
                    _ => {
                        let at = self.now + f.rng.uniform(10_000, 200_000);
                        f.dbs[i].repoint = Some((l, at));
                    }
                }
            }
            DbState::Primary => {
                let Some(l) = leader else { return Ok(None) };
                let newer_primary =
                    leader_position.is_some_and(|w| !w.in_recovery && w.timeline > own_timeline);
                if role != Role::Leader && newer_primary {
                    f.actions.rejoins += 1;
                    self.start_rejoin(f, i, l);
                }
            }
            DbState::Promoting { .. } | DbState::Rejoining { .. } => {}
        }
        Ok(None)
    }

    /// PostgreSQL leaves recovery once the promotion's time has come and it runs, whether or not
    /// the worker that asked for it still lives.
    fn finish_promotion(&mut self, f: &mut FailoverDatabases, i: usize) -> Result<(), Violation> {
        let DbState::Promoting { done_at, heard } = f.dbs[i].state else {
            return Ok(());
        };
        if self.now < done_at || !f.runs(self, i) {
            return Ok(());
        }
        let d = &f.dbs[i];
        let known = f.histories.newest_known(d.history);
        let timeline = match f.rules.timeline {
            TimelineRule::NextKnown => known + 1,
            TimelineRule::AboveHeard | TimelineRule::Reserved => known.max(heard) + 1,
        };
        let history = f.histories.create(d.history, d.replayed, timeline, i)?;
        let d = &mut f.dbs[i];
        d.history = history;
        d.flushed = d.replayed;
        d.state = DbState::Primary;
        d.repoint = None;
        self.trace_failover(i, &format!("is the primary of timeline {timeline}"));
        Ok(())
    }

    /// Stops server `i` to rebuild it as a standby of `source`.
    fn start_rejoin(&mut self, f: &mut FailoverDatabases, i: usize, source: usize) {
        let done_at = self.now + f.rng.uniform(200_000, 3_000_000);
        f.dbs[i].state = DbState::Rejoining { source, done_at };
        f.dbs[i].down = true;
        self.crash(i);
        self.trace_failover(
            i,
            &format!("stops to rejoin as a standby of node {}", source + 1),
        );
    }

    /// A crash during a rebuild: it starts over when the machine is back.
    pub fn restart_rejoin(&mut self, i: usize, down: u64) {
        let Some(f) = self.failover.as_mut() else {
            return;
        };
        if let DbState::Rejoining { source, done_at } = f.dbs[i].state {
            let again = f.rng.uniform(200_000, 3_000_000);
            f.dbs[i].state = DbState::Rejoining {
                source,
                done_at: done_at.max(self.now + down + again),
            };
            self.trace_failover(i, "crashed while rejoining");
        }
    }

    /// `pg_rewind` from `source` (which must run and be reachable); true when done, and the
    /// server is to start as its standby.
    fn finish_rejoin(&mut self, f: &mut FailoverDatabases, i: usize) -> bool {
        let DbState::Rejoining { source, done_at } = f.dbs[i].state else {
            return false;
        };
        let reachable = !self.network.is_blocked(source, i) && !self.network.is_blocked(i, source);
        if self.now < done_at || !reachable || !f.runs(self, source) || self.is_suspended(i) {
            return false;
        }
        let (mine, theirs) = (&f.dbs[i], &f.dbs[source]);
        let common =
            f.histories
                .common_point(mine.history, mine.flushed, theirs.history, theirs.flushed);
        let history = theirs.history;
        let d = &mut f.dbs[i];
        d.history = history;
        d.flushed = common;
        d.replayed = common;
        d.state = DbState::Standby {
            upstream: Some(source),
        };
        d.down = false;
        d.repoint = None;
        self.trace_failover(i, &format!("rejoined as a standby of node {}", source + 1));
        true
    }

    fn trace_failover(&self, i: usize, what: &str) {
        if self.trace {
            println!(
                "{:>10.3} ms  node {}: database {what}",
                self.now as f64 / 1000.0,
                i + 1
            );
        }
    }
}
