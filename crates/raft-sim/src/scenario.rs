//! One seed's run: a phase of random faults with every invariant checked after each step, then a
//! liveness phase (faults stop, one leader must appear within a bound), then a measured failover
//! (the leader crashes in calm conditions). Among the faults are membership changes: servers
//! added (as voters or learners) and removed, spares included, at random moments; and those of
//! `faults`: timings that differ and change, voters that cannot lead, clocks that change rate or
//! jump over a suspend, late messages, disks that lose or fail writes or sync slowly, WAL
//! positions that move, proposal bursts, campaign nudges, adversarial timers and delays.

use crate::announced;
use crate::checker::Violation;
use crate::cluster::{layout_rng, Cluster, DiskFault, Setup, Timing};
use crate::database::{Databases, Layout};
use crate::faults::{Exercised, Faults};
use crate::preferred::wait_for_preferred_leader;
use pg_leader_raft::{
    Duration, MembershipChange, NodeId, RandomSource, Role, SplitMix64, WalPosition,
};

#[derive(Clone, Debug)]
pub struct Options {
    /// Cluster size; `None` draws one of 1, 3, 5, 7 from the seed.
    pub nodes: Option<usize>,
    /// Servers started outside the cluster, for membership changes to add; `None` draws 0 to 2.
    pub spares: Option<usize>,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    /// Longest fault phase, in real microseconds (each seed draws its own length up to this).
    pub max_fault_phase: u64,
    /// Clock rates differ from real time by up to this much.
    pub max_drift_ppm: i64,
    /// The lease drift margin is P / margin_divisor: 10 in the product.
    pub margin_divisor: u64,
    pub faults: Faults,
    pub trace: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: None,
            spares: None,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            max_fault_phase: 10_000_000,
            // The default lease margin (T/10) covers rates within 5.26 % of real time; the simulator
            // goes right up to that edge so that a weaker margin fails.
            max_drift_ppm: 50_000,
            margin_divisor: 10,
            faults: Faults::default(),
            trace: false,
        }
    }
}

impl Options {
    fn base_timing(&self) -> Timing {
        Timing {
            heartbeat: self.heartbeat,
            election_timeout: self.election_timeout,
        }
    }
}

/// After the faults stop, a leader that all nodes follow must appear within this time: the
/// promises still running (at most the longest timeout any server ever had), then at worst a
/// few rounds of timeouts drawn from [T, 2T) of the slowest server.
pub(crate) fn liveness_bound(c: &Cluster) -> u64 {
    12 * c.longest_timeout().as_micros() + c.longest_timeout_ever.as_micros()
}

/// After the faults stop, the primary of the newest timeline, a voter that may lead, must lead
/// within this time: the bound for any leader, then a handover (at worst one that fails after
/// a timeout, and one more election).
fn preferred_leader_bound(c: &Cluster) -> u64 {
    liveness_bound(c) + 4 * c.longest_timeout().as_micros()
}

/// A timing within the setting rules (h <= T/2): T from half to ten times the base one, h from
/// T/20 to T/2.
fn draw_timing(rng: &mut SplitMix64, base: Timing) -> Timing {
    let halves = [1, 2, 2, 2, 4, 8, 20][rng.uniform(0, 7) as usize];
    let election_timeout = base.election_timeout.as_micros() * halves / 2;
    let divisor = [2, 3, 5, 10, 10, 20][rng.uniform(0, 6) as usize];
    Timing {
        heartbeat: Duration::from_micros((election_timeout / divisor).max(1_000)),
        election_timeout: Duration::from_micros(election_timeout),
    }
}

/// The cluster a seed runs: sizes, drifts, timings and leading rights drawn from the seed.
fn draw_setup(seed: u64, options: &Options, pick: &mut SplitMix64) -> (Setup, u32) {
    let faults = &options.faults;
    let nodes = options
        .nodes
        .unwrap_or_else(|| [1, 3, 3, 5, 5, 7][pick.uniform(0, 6) as usize]);
    let spares = options
        .spares
        .unwrap_or_else(|| [0, 0, 1, 2][pick.uniform(0, 4) as usize]);
    let size = nodes + spares;
    let mut exercised = 0;
    let adversarial = faults.adversarial && pick.uniform(0, 4) == 0;
    let max = options.max_drift_ppm;
    let mut rng = SplitMix64::new(seed ^ 0x5EED_C10C);
    // Half the clocks sit at the edges of the allowed drift, where a lease is tightest (all of
    // them in an adversarial run).
    let drifts: Vec<i64> = (0..size)
        .map(|_| match rng.uniform(0, 4) {
            0 => max,
            1 => -max,
            _ if adversarial => max,
            _ => rng.uniform(0, 2 * max as u64 + 1) as i64 - max,
        })
        .collect();
    let base = options.base_timing();
    let timings: Vec<Timing> = if faults.mixed_timings && pick.uniform(0, 2) == 0 {
        (0..size).map(|_| draw_timing(pick, base)).collect()
    } else {
        vec![base; size]
    };
    if timings.iter().any(|t| *t != base) {
        exercised |= Exercised::MixedTimings.bit();
    }
    let can_lead: Vec<bool> = if faults.voters_that_cannot_lead && pick.uniform(0, 2) == 0 {
        (0..size).map(|_| pick.uniform(0, 3) > 0).collect()
    } else {
        vec![true; size]
    };
    if can_lead.contains(&false) {
        exercised |= Exercised::CannotLead.bit();
    }
    if adversarial {
        exercised |= Exercised::Adversarial.bit();
    }
    let setup = Setup {
        voters: nodes,
        timings,
        can_lead,
        drifts,
        margin_divisor: options.margin_divisor,
        adversarial,
        monotonic_suspend: faults.monotonic_suspend,
    };
    (setup, exercised)
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub nodes: usize,
    pub faults: u64,
    pub events: u64,
    pub elections: u64,
    /// Elections (in any phase) that needed more than one candidate round.
    pub multi_round_elections: u64,
    /// Real time from the end of the faults to an agreed leader.
    pub recovery_us: u64,
    /// Real time from the end of the faults until the primary of the newest timeline leads,
    /// when there is one among the voters.
    pub preferred_us: Option<u64>,
    /// Real time from the leader's crash to a new leader with a lease (calm network).
    pub failover_us: Option<u64>,
    /// Candidate rounds that failover took.
    pub failover_rounds: Option<u32>,
    /// Membership changes the leader accepted, and configuration entries stored on any node.
    pub membership_changes: u64,
    pub configurations: u64,
    /// `Exercised` bits of the faults this seed reached.
    pub exercised: u32,
    /// Crashes the host announced (`announced`), among all crashes.
    pub announced_crashes: u64,
    /// Real time from the leader's announced crash to a new lease (calm network).
    pub announced_failover_us: Option<u64>,
}

pub fn run_seed(seed: u64, options: &Options) -> Result<Report, Violation> {
    run_seed_exercising(seed, options).map_err(|(v, _)| v)
}

/// Like `run_seed`; a violation comes with the `Exercised` bits of the faults reached before it.
pub fn run_seed_exercising(seed: u64, options: &Options) -> Result<Report, (Violation, u32)> {
    let mut exercised = 0;
    run(seed, options, &mut exercised).map_err(|v| (v, exercised))
}

fn run(seed: u64, options: &Options, exercised_out: &mut u32) -> Result<Report, Violation> {
    let mut pick = SplitMix64::new(seed ^ 0xA5A5_5A5A_F00D_CAFE);
    let (setup, exercised) = draw_setup(seed, options, &mut pick);
    let nodes = setup.voters;
    let mut cluster = Cluster::unstarted(&setup, seed);
    let layout = Layout::draw(&mut layout_rng(seed), nodes);
    cluster.databases = Databases::new(layout, setup.drifts.len(), &mut layout_rng(seed));
    cluster.exercised |= exercised;
    cluster.trace = options.trace;
    Cluster::start_all(&mut cluster);
    let mut report = Report {
        nodes,
        ..Report::default()
    };

    let fault_end = pick.uniform(options.max_fault_phase / 4, options.max_fault_phase + 1);
    let outcome = fault_phase(&mut cluster, fault_end, options, &mut report)
        .and_then(|_| liveness_phase(&mut cluster));
    *exercised_out = cluster.exercised;
    if options.trace {
        println!("faults exercised: {}", describe(cluster.exercised));
    }
    report.recovery_us = outcome?;
    let faults_ended = cluster.now - report.recovery_us;
    let bound = preferred_leader_bound(&cluster);
    report.preferred_us = wait_for_preferred_leader(&mut cluster, faults_ended, bound)?;
    // A failover is owed only when a voter other than the leader may lead.
    let leaders = cluster.leader_membership().map_or(0, |m| {
        (0..cluster.size())
            .filter(|&i| m.is_voter(cluster.nodes[i].id) && cluster.nodes[i].can_lead)
            .count()
    });
    let voters = cluster.leader_membership().map_or(0, |m| m.voter_count());
    if voters >= 3 && leaders >= 2 {
        let (time, rounds) = failover(&mut cluster, options)?;
        report.failover_us = Some(time);
        report.failover_rounds = Some(rounds);
        // The silently crashed leader comes back first: a leader handing over needs a voter.
        for i in 0..cluster.size() {
            if !cluster.is_up(i) {
                cluster.start(i)?;
            }
        }
        let since = cluster.now;
        let bound = liveness_bound(&cluster);
        wait_for_agreement(&mut cluster, since, bound, "before the announced failover")?;
        report.announced_failover_us = Some(announced::announced_failover(&mut cluster, options)?);
    }
    report.exercised = cluster.exercised;
    report.events = cluster.counters.events;
    report.configurations = cluster.checker.configurations;
    report.elections = cluster.counters.election_rounds.len() as u64;
    report.multi_round_elections = cluster
        .counters
        .election_rounds
        .iter()
        .filter(|r| **r > 1)
        .count() as u64;
    Ok(report)
}

/// The names of the faults set in `exercised`.
pub fn describe(exercised: u32) -> String {
    let names: Vec<&str> = Exercised::ALL
        .iter()
        .filter(|f| exercised & f.bit() != 0)
        .map(|f| f.name())
        .collect();
    names.join(", ")
}

/// Random faults: crashes and restarts, pauses, partitions of every shape, loss, duplication,
/// slow packets, proposals and leadership transfers, and the knobs of `options.faults`.
fn fault_phase(
    c: &mut Cluster,
    end: u64,
    options: &Options,
    report: &mut Report,
) -> Result<(), Violation> {
    let n = c.size();
    while c.now < end {
        let step = c.rng.uniform(20_000, 600_000);
        c.run_until((c.now + step).min(end))?;
        let target = c.rng.uniform(0, n as u64) as usize;
        report.faults += 1;
        match c.rng.uniform(0, 34) {
            14 | 15 => {
                report.faults -= 1;
                if change_membership(c, target)? {
                    report.membership_changes += 1;
                }
            }
            13 => {
                // The lease holder is cut off right away: its lease must run out before anyone
                // else's begins, whatever the clocks' rates.
                if let Some(l) = c.leader_with_lease() {
                    c.network.isolate(&[l]);
                }
            }
            12 => {
                // A quick restart: the node forgets whom it promised not to vote against. (With
                // an announcement, PostgreSQL's crash-restart cycle.)
                if c.is_up(target) {
                    report.announced_crashes += u64::from(announced::crash(c, target)?);
                    let down = c.rng.uniform(1, 200_000);
                    c.restart_after(target, down);
                }
            }
            0 | 1 => {
                if c.is_up(target) {
                    report.announced_crashes += u64::from(announced::crash(c, target)?);
                    let down = c.rng.uniform(1, 3_000_000);
                    c.restart_after(target, down);
                }
            }
            2 => {
                if let Some(l) = c.leader_with_lease() {
                    report.announced_crashes += u64::from(announced::crash(c, l)?);
                    let down = c.rng.uniform(1, 3_000_000);
                    c.restart_after(l, down);
                }
            }
            3 => {
                let until = c.now + c.rng.uniform(100_000, 2_500_000);
                c.pause(target, until);
            }
            4 => {
                let size = c.rng.uniform(1, n as u64 / 2 + 2) as usize;
                let group: Vec<usize> = (0..size).map(|k| (target + k) % n).collect();
                c.network.isolate(&group);
            }
            5 => {
                let other = c.rng.uniform(0, n as u64) as usize;
                c.network.block(target, other);
            }
            6 => {
                for _ in 0..c.rng.uniform(1, n as u64 + 1) {
                    let (a, b) = (
                        c.rng.uniform(0, n as u64) as usize,
                        c.rng.uniform(0, n as u64) as usize,
                    );
                    c.network.block(a, b);
                    c.network.block(b, a);
                }
            }
            7 => c.network.heal(),
            8 => {
                c.network.drop_per_million = c.rng.uniform(0, 300_000);
                c.network.duplicate_per_million = c.rng.uniform(0, 100_000);
                c.network.slow_per_million = c.rng.uniform(0, 50_000);
            }
            9 | 31 => {
                if let Some(l) = c.leader_with_lease() {
                    let to = NodeId(c.rng.uniform(1, n as u64 + 1) as u32);
                    let _ = c.act(l, |r, now| r.transfer_leadership(to, now))?;
                }
            }
            10 => {
                // Maintenance asked on any server: the leader appends it, a follower passes it
                // on, a server with no leader refuses it.
                report.faults -= 1;
                if c.is_up(target) {
                    let paused = c.rng.uniform(0, 3) == 0;
                    c.request_maintenance(target, paused)?;
                }
            }
            11 => {
                report.faults -= 1;
                if let Some(l) = (0..n).find(|&i| c.nodes[i].paused_until <= c.now && c.is_up(i)) {
                    let command = c.rng.next_u64().to_le_bytes().to_vec();
                    let _ = c.act(l, |r, now| r.propose(command, now))?;
                }
            }
            kind => {
                if !new_fault(c, kind, target, options)? {
                    report.faults -= 1;
                }
            }
        }
    }
    Ok(())
}

/// The faults that promises, leases and the WAL-aware vote meet in production. Returns false
/// when the draw was a fault whose knob is off.
fn new_fault(
    c: &mut Cluster,
    kind: u64,
    target: usize,
    options: &Options,
) -> Result<bool, Violation> {
    let f = &options.faults;
    let n = c.size();
    let longest = c.longest_timeout().as_micros();
    match kind {
        16 | 17 if f.timing_reloads => {
            // A reload on any subset of the servers, the target always among them.
            let leader = (0..n).find(|&i| is_leader(c, i));
            for i in 0..n {
                if i == target || c.rng.uniform(0, 2) == 0 {
                    let timing = draw_timing(&mut c.rng, options.base_timing());
                    c.reload_timing(i, timing)?;
                    c.exercise(Exercised::TimingReload);
                }
            }
            // Now and then the reloaded leader loses its followers at once: its lease must
            // still count only the promises they made under the old timing.
            if let Some(l) = leader.filter(|_| c.rng.uniform(0, 3) == 0) {
                let heartbeat = c.nodes[l].timing.heartbeat.as_micros();
                let until = c.now + c.rng.uniform(0, 2 * heartbeat + 1);
                c.run_until(until)?;
                c.network.isolate(&[l]);
                c.exercise(Exercised::LeaderReloadThenCut);
            }
        }
        18 if f.voters_that_cannot_lead => {
            let can_lead = !c.nodes[target].can_lead;
            c.set_can_lead(target, can_lead)?;
            c.exercise(Exercised::CannotLead);
        }
        19 if f.clock_rate_changes => {
            let max = options.max_drift_ppm;
            let drift = c.rng.uniform(0, 2 * max as u64 + 1) as i64 - max;
            c.set_drift(target, drift);
            c.exercise(Exercised::ClockRateChange);
        }
        20 if f.suspends => {
            let until = c.now + c.rng.uniform(50_000, 3 * longest);
            c.suspend(target, until);
            c.exercise(Exercised::Suspend);
        }
        21 if f.late_messages => c.network.late_per_million = c.rng.uniform(0, 100_000),
        22 if f.lost_unsynced_writes => {
            c.nodes[target].disk_fault = Some(DiskFault::LoseUnsyncedWrite)
        }
        23 if f.failed_saves => c.nodes[target].disk_fault = Some(DiskFault::FailSave),
        24 if f.slow_fsync => {
            c.nodes[target].slow_fsync_until = c.now + c.rng.uniform(100_000, 3_000_000);
            c.nodes[target].fsync_delay = c.rng.uniform(1_000, longest + 1);
        }
        25 if f.wal_moves => {
            // Standbys replay, the primary writes: positions move forward.
            for i in 0..n {
                if i == target || c.rng.uniform(0, 2) == 0 {
                    let mut wal = c.nodes[i].wal;
                    wal.lsn += c.rng.uniform(1, 4);
                    c.set_wal(i, wal)?;
                }
            }
            c.exercise(Exercised::WalAdvance);
        }
        26 if f.wal_moves => {
            // A promotion starts a new timeline; some standbys follow it at once.
            let promoted = (0..n).find(|&i| is_leader(c, i)).unwrap_or(target);
            let mut wal = c.nodes[promoted].wal;
            wal.timeline += 1;
            c.set_wal(promoted, wal)?;
            for i in 0..n {
                if i != promoted && c.rng.uniform(0, 2) == 0 {
                    let lsn = c.nodes[i].wal.lsn.min(wal.lsn);
                    c.set_wal(i, WalPosition { lsn, ..wal })?;
                }
            }
            c.exercise(Exercised::TimelineChange);
        }
        27 if f.campaign_nudges => {
            c.act(target, |r, now| r.campaign(now))
                .map_err(|v| format!("{v} [in Raft::campaign()]"))?;
            c.exercise(Exercised::CampaignNudge);
        }
        32 | 33 if f.clean_stops => {
            // A clean stop (pg_ctl stop, a package upgrade), then a start in the same boot, or
            // after a reboot (one in four) that makes the record worthless.
            if !c.is_up(target) || c.nodes[target].paused_until > c.now {
                return Ok(false);
            }
            c.stop_cleanly(target)?;
            match c.rng.uniform(0, 6) {
                0 => c.nodes[target].stop_record = None,
                // The next start cannot remove the record; the run after must not trust it.
                1 => c.nodes[target].record_removal_fails = true,
                _ => {}
            }
            let down = c.rng.uniform(1, 2 * longest);
            c.restart_after(target, down);
            c.exercise(Exercised::CleanStop);
        }
        28..=30 if f.proposals => {
            if let Some(l) = (0..n).find(|&i| is_leader(c, i) && c.nodes[i].paused_until <= c.now) {
                for _ in 0..c.rng.uniform(1, 9) {
                    let command = c.rng.next_u64().to_le_bytes().to_vec();
                    c.act(l, |r, now| r.propose(command, now))?;
                }
                c.exercise(Exercised::ProposalBurst);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn is_leader(c: &Cluster, i: usize) -> bool {
    c.nodes[i]
        .raft
        .as_ref()
        .is_some_and(|r| r.role() == Role::Leader)
}

/// On the leader, if any: removes `target` when it is a member, else adds it (a voter two times
/// in three). Returns true when the leader accepted the change.
fn change_membership(c: &mut Cluster, target: usize) -> Result<bool, Violation> {
    let Some(l) = c.leader_with_lease() else {
        return Ok(false);
    };
    let id = c.nodes[target].id;
    let member = c.leader_membership().is_some_and(|m| m.contains(id));
    let change = if member {
        MembershipChange::Remove { id }
    } else {
        MembershipChange::Add {
            id,
            address: format!("node{}", id.0),
            voter: c.rng.uniform(0, 3) > 0,
        }
    };
    let accepted = c.act(l, |r, now| r.propose_change(&change, now).is_ok())?;
    Ok(accepted == Some(true))
}

/// Faults stop: every node is up, awake, on a calm network, with healthy disks, and at least
/// one voter allowed to lead. Returns the time to agreement.
fn liveness_phase(c: &mut Cluster) -> Result<u64, Violation> {
    let start = c.now;
    c.network.calm();
    c.maintenance.ending = true;
    for i in 0..c.size() {
        c.nodes[i].disk_fault = None;
        c.nodes[i].slow_fsync_until = 0;
        c.resume(i);
        if !c.is_up(i) {
            c.start(i)?;
        }
    }
    ensure_a_voter_can_lead(c)?;
    wait_for_agreement(c, start, liveness_bound(c), "after the faults stopped")
}

/// Liveness is owed only when a voter may lead (invariant 6): in the configuration of the
/// server with the newest log, turn `can_lead` on for one voter when none has it.
fn ensure_a_voter_can_lead(c: &mut Cluster) -> Result<(), Violation> {
    let newest = (0..c.size())
        .filter_map(|i| {
            let log = c.nodes[i].raft.as_ref()?.log();
            // On a tie the first voters' view: a spare's own list names itself too.
            Some(((log.last_term(), log.last_index()), std::cmp::Reverse(i)))
        })
        .max()
        .map(|(_, std::cmp::Reverse(i))| i);
    let Some(newest) = newest else { return Ok(()) };
    let voters: Vec<usize> = {
        let membership = c.nodes[newest].raft.as_ref().expect("up").membership().0;
        (0..c.size())
            .filter(|&i| membership.is_voter(c.nodes[i].id))
            .collect()
    };
    if !voters.is_empty() && voters.iter().all(|&i| !c.nodes[i].can_lead) {
        c.set_can_lead(voters[0], true)?;
    }
    Ok(())
}

fn wait_for_agreement(
    c: &mut Cluster,
    start: u64,
    bound: u64,
    what: &str,
) -> Result<u64, Violation> {
    let step = 1_000;
    while c.agreed_leader().is_none() {
        if c.now - start > bound {
            c.trace_state();
            return Err(format!("liveness: no agreed leader {}us {what}", bound));
        }
        c.run_until(c.now + step)?;
    }
    Ok(c.now - start)
}

/// Kills the leader at a random point of its heartbeat cycle and times the next lease.
fn failover(c: &mut Cluster, options: &Options) -> Result<(u64, u32), Violation> {
    let offset = c.rng.uniform(0, options.heartbeat.as_micros() * 3);
    c.run_until(c.now + offset)?;
    let leader = match c.agreed_leader() {
        Some((l, _)) => l,
        None => {
            wait_for_agreement(c, c.now, liveness_bound(c), "before the failover")?;
            c.agreed_leader().expect("just agreed").0
        }
    };
    c.trace_state();
    c.crash(leader);
    c.counters.rounds_in_election = 0;
    let start = c.now;
    let elections_before = c.counters.election_rounds.len();
    let step = 1_000;
    loop {
        if let Some(l) = c.leader_with_lease() {
            if l != leader {
                break;
            }
        }
        if c.now - start > liveness_bound(c) {
            c.trace_state();
            return Err("liveness: no new leader after the leader crashed".to_string());
        }
        c.run_until(c.now + step)?;
    }
    let rounds = c
        .counters
        .election_rounds
        .get(elections_before)
        .copied()
        .unwrap_or(1);
    Ok((c.now - start, rounds))
}
