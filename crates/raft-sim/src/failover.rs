//! One seed of automatic failover (`promotion`): a fresh cluster (one primary, its standbys,
//! `Config::promotes` on every server) goes through a phase of faults aimed at the primary and
//! at failovers in progress: kills of the primary's server (announced or silent), worker crashes
//! that leave PostgreSQL running with the lease its sessions read, partitions, worker pauses,
//! crashes during a promotion and during a rebuild, slow replay, lossy networks, suspends,
//! switchovers. Every step checks Raft's invariants and (a), (b), (e) of `failover_checks`.
//! Then the faults stop and (c) must hold within a bound: exactly one primary on the newest
//! timeline, the agreed leader, every other server streaming from it. Then a measured failover
//! on a calm network: the primary's server is killed; the time to a new primary that
//! acknowledges commits, and to the old one streaming from it, are reported, with (d) the
//! acknowledged commits no longer on the last primary (replication is asynchronous).

use crate::announced;
use crate::checker::Violation;
use crate::cluster::{random_drifts, Cluster, Setup};
use crate::promotion::{DbState, FailoverDatabases, HostRules};
use crate::scenario::liveness_bound;
use pg_leader_raft::{Duration, NodeId, RandomSource, SplitMix64};

#[derive(Clone, Debug)]
pub struct FailoverOptions {
    /// Voters; `None` draws 3, 5 or 7 from the seed.
    pub nodes: Option<usize>,
    pub heartbeat: Duration,
    pub election_timeout: Duration,
    /// Longest fault phase, in real microseconds.
    pub max_fault_phase: u64,
    pub max_drift_ppm: i64,
    pub rules: HostRules,
    pub trace: bool,
}

impl Default for FailoverOptions {
    fn default() -> FailoverOptions {
        FailoverOptions {
            nodes: None,
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            max_fault_phase: 10_000_000,
            max_drift_ppm: 50_000,
            rules: HostRules::default(),
            trace: false,
        }
    }
}

/// A fault of the failover runs, for the share of seeds that reached each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailoverFault {
    KillPrimary,
    KillAny,
    WorkerCrash,
    PartitionPrimary,
    Partition,
    PauseWorker,
    CrashDuringPromotion,
    CrashDuringRejoin,
    SlowReplay,
    LossyNetwork,
    Suspend,
    Switchover,
    /// An operator pauses or resumes automatic actions on a random server.
    Maintenance,
}

impl FailoverFault {
    pub const ALL: [FailoverFault; 13] = [
        FailoverFault::KillPrimary,
        FailoverFault::KillAny,
        FailoverFault::WorkerCrash,
        FailoverFault::PartitionPrimary,
        FailoverFault::Partition,
        FailoverFault::PauseWorker,
        FailoverFault::CrashDuringPromotion,
        FailoverFault::CrashDuringRejoin,
        FailoverFault::SlowReplay,
        FailoverFault::LossyNetwork,
        FailoverFault::Suspend,
        FailoverFault::Switchover,
        FailoverFault::Maintenance,
    ];

    pub fn bit(self) -> u32 {
        1 << self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            FailoverFault::KillPrimary => "primary's server killed (announced or silent)",
            FailoverFault::KillAny => "any server killed",
            FailoverFault::WorkerCrash => "leader's worker crashed, PostgreSQL running",
            FailoverFault::PartitionPrimary => "primary cut off",
            FailoverFault::Partition => "other partitions",
            FailoverFault::PauseWorker => "worker paused (SIGSTOP)",
            FailoverFault::CrashDuringPromotion => "crash during a promotion",
            FailoverFault::CrashDuringRejoin => "crash during a rebuild",
            FailoverFault::SlowReplay => "slow replay on a standby",
            FailoverFault::LossyNetwork => "lossy, duplicating, slow network",
            FailoverFault::Suspend => "machine suspended",
            FailoverFault::Switchover => "switchover (leadership transfer)",
            FailoverFault::Maintenance => "maintenance mode asked on or off",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct FailoverReport {
    pub nodes: usize,
    pub faults: u64,
    pub exercised: u32,
    pub promotions: u64,
    pub promotions_interrupted: u64,
    pub rejoins: u64,
    pub standby_rewinds: u64,
    /// Real time from the end of the faults to (c).
    pub converged_us: u64,
    /// (d): acknowledged commits not on the primary at the end of the faults, and lost in the
    /// measured failover.
    pub lost_in_faults: u64,
    pub lost_in_failover: u64,
    /// Of the lost ones, those acknowledged by a primary on a timeline a promotion had already
    /// superseded.
    pub superseded: u64,
    /// The primary's server killed on a calm network: to a new primary acknowledging commits,
    /// and from the old one's restart to (c) again.
    pub failover_us: u64,
    pub rejoin_us: u64,
}

pub fn run_failover_seed(
    seed: u64,
    options: &FailoverOptions,
) -> Result<FailoverReport, Violation> {
    let mut exercised = 0;
    run(seed, options, &mut exercised)
}

/// Like `run_failover_seed`; a violation comes with the faults reached before it.
pub fn run_failover_seed_exercising(
    seed: u64,
    options: &FailoverOptions,
) -> Result<FailoverReport, (Violation, u32)> {
    let mut exercised = 0;
    run(seed, options, &mut exercised).map_err(|v| (v, exercised))
}

fn run(
    seed: u64,
    options: &FailoverOptions,
    exercised: &mut u32,
) -> Result<FailoverReport, Violation> {
    let mut pick = SplitMix64::new(seed ^ 0xFA1_10FE5);
    let nodes = options
        .nodes
        .unwrap_or_else(|| [3, 3, 3, 5, 5, 7][pick.uniform(0, 6) as usize]);
    let drifts = random_drifts(nodes, options.max_drift_ppm, &mut pick);
    let mut setup = Setup::uniform(options.heartbeat, options.election_timeout, &drifts);
    setup.adversarial = pick.uniform(0, 4) == 0;
    let primary = pick.uniform(0, nodes as u64) as usize;
    let mut c = failover_cluster(&setup, primary, options.rules, seed, options.trace);
    let mut report = FailoverReport {
        nodes,
        ..FailoverReport::default()
    };
    let fault_end = pick.uniform(options.max_fault_phase / 4, options.max_fault_phase + 1);
    let outcome = fault_phase(&mut c, fault_end, &mut report, exercised);
    report.exercised = *exercised;
    outcome?;
    let faults_ended = c.now;
    let first = settle(&mut c, "after the faults stopped")?;
    report.converged_us = c.now - faults_ended;
    report.lost_in_faults = model(&c).lost_commits(first);
    measured_failover(&mut c, first, &mut report)?;
    let f = model(&c);
    report.promotions = f.actions.promotions;
    report.rejoins = f.actions.rejoins;
    report.standby_rewinds = f.actions.standby_rewinds;
    report.promotions_interrupted = f.actions.promotions_interrupted;
    report.superseded = f.commits_past_a_fork();
    Ok(report)
}

/// A fresh cluster built as `setup` says, every server with `Config::promotes` on, server
/// `primary` the primary of timeline 1 and the others its standbys, started.
pub fn failover_cluster(
    setup: &Setup,
    primary: usize,
    rules: HostRules,
    seed: u64,
    trace: bool,
) -> Cluster {
    let mut c = Cluster::unstarted(setup, seed);
    c.promotes = true;
    c.failover = Some(FailoverDatabases::fresh(
        setup.drifts.len(),
        primary,
        rules,
        seed,
    ));
    c.trace = trace;
    Cluster::start_all(&mut c);
    c
}

fn model(c: &Cluster) -> &FailoverDatabases {
    c.failover.as_ref().expect("a failover run has the model")
}

/// A primary to aim at: the one whose sessions see a lease, else any.
fn a_primary(c: &Cluster) -> Option<usize> {
    let f = model(c);
    let primaries: Vec<usize> = (0..f.dbs.len())
        .filter(|&i| f.dbs[i].state == DbState::Primary)
        .collect();
    primaries
        .iter()
        .copied()
        .find(|&i| c.sessions_lease_until(i) > c.now)
        .or(primaries.first().copied())
}

/// Kills server `i` (PostgreSQL and worker) for `down`, announced half the time. A server
/// being rebuilt crashes mid-way: its rebuild starts over once the machine is back.
pub fn kill_server(c: &mut Cluster, i: usize, down: u64) -> Result<(), Violation> {
    c.failover_step()?;
    if model(c).is_rejoining(i) {
        c.restart_rejoin(i, down);
        return Ok(());
    }
    if let Some(f) = c.failover.as_mut() {
        f.dbs[i].down = true;
    }
    if c.is_up(i) {
        announced::crash(c, i)?;
    }
    c.restart_after(i, down);
    Ok(())
}

fn fault_phase(
    c: &mut Cluster,
    end: u64,
    report: &mut FailoverReport,
    exercised: &mut u32,
) -> Result<(), Violation> {
    let n = c.size();
    while c.now < end {
        let step = c.rng.uniform(20_000, 600_000);
        c.run_until((c.now + step).min(end))?;
        c.failover_step()?;
        let target = c.rng.uniform(0, n as u64) as usize;
        let mut fault =
            FailoverFault::ALL[c.rng.uniform(0, FailoverFault::ALL.len() as u64) as usize];
        // A promotion or a rebuild under way is a short window: aim at it more often.
        let aim = c.rng.uniform(0, 3) == 0;
        let f = model(c);
        if aim {
            if (0..n).any(|i| matches!(f.dbs[i].state, DbState::Promoting { .. })) {
                fault = FailoverFault::CrashDuringPromotion;
            } else if (0..n).any(|i| f.is_rejoining(i)) {
                fault = FailoverFault::CrashDuringRejoin;
            }
        }
        let happened = inject(c, fault, target)?;
        if happened && c.trace {
            println!(
                "{:>10.3} ms  fault: {} (drawn target node {})",
                c.now as f64 / 1000.0,
                fault.name(),
                target + 1
            );
        }
        if happened {
            report.faults += 1;
            *exercised |= fault.bit();
        }
    }
    Ok(())
}

/// Injects `fault`; false when there was nothing to aim it at.
fn inject(c: &mut Cluster, fault: FailoverFault, target: usize) -> Result<bool, Violation> {
    let n = c.size();
    let leader = c.leader_with_lease();
    match fault {
        FailoverFault::KillPrimary => {
            let Some(p) = a_primary(c) else {
                return Ok(false);
            };
            let down = c.rng.uniform(100_000, 3_000_000);
            kill_server(c, p, down)?;
        }
        FailoverFault::KillAny => {
            let down = c.rng.uniform(1, 3_000_000);
            kill_server(c, target, down)?;
        }
        FailoverFault::WorkerCrash => {
            let Some(l) = leader else { return Ok(false) };
            // PostgreSQL runs on; its sessions still read the lease the worker published.
            c.crash(l);
            let down = c.rng.uniform(50_000, 2_000_000);
            c.restart_after(l, down);
        }
        FailoverFault::PartitionPrimary => {
            let Some(p) = a_primary(c).or(leader) else {
                return Ok(false);
            };
            c.network.isolate(&[p]);
        }
        FailoverFault::Partition => {
            if c.rng.uniform(0, 3) == 0 {
                c.network.heal();
            } else {
                let size = c.rng.uniform(1, n as u64 / 2 + 2) as usize;
                let group: Vec<usize> = (0..size).map(|k| (target + k) % n).collect();
                c.network.isolate(&group);
            }
        }
        FailoverFault::PauseWorker => {
            let Some(who) = leader.or(a_primary(c)) else {
                return Ok(false);
            };
            let until = c.now + c.rng.uniform(100_000, 2_500_000);
            c.pause(who, until);
        }
        FailoverFault::CrashDuringPromotion => {
            let f = model(c);
            let Some(p) = (0..n).find(|&i| matches!(f.dbs[i].state, DbState::Promoting { .. }))
            else {
                return Ok(false);
            };
            if let Some(f) = c.failover.as_mut() {
                f.actions.promotions_interrupted += 1;
            }
            if c.rng.uniform(0, 2) == 0 {
                c.crash(p);
                let down = c.rng.uniform(50_000, 2_000_000);
                c.restart_after(p, down);
            } else {
                let down = c.rng.uniform(100_000, 3_000_000);
                kill_server(c, p, down)?;
            }
        }
        FailoverFault::CrashDuringRejoin => {
            let Some(r) = (0..n).find(|&i| model(c).is_rejoining(i)) else {
                return Ok(false);
            };
            let down = c.rng.uniform(100_000, 3_000_000);
            kill_server(c, r, down)?;
        }
        FailoverFault::SlowReplay => {
            let until = c.now + c.rng.uniform(500_000, 5_000_000);
            if let Some(f) = c.failover.as_mut() {
                f.dbs[target].slow_replay_until = until;
            }
        }
        FailoverFault::LossyNetwork => {
            c.network.drop_per_million = c.rng.uniform(0, 300_000);
            c.network.duplicate_per_million = c.rng.uniform(0, 100_000);
            c.network.slow_per_million = c.rng.uniform(0, 50_000);
        }
        FailoverFault::Suspend => {
            let until = c.now + c.rng.uniform(50_000, 3_000_000);
            c.suspend(target, until);
        }
        FailoverFault::Switchover => {
            let Some(l) = leader else { return Ok(false) };
            let to = NodeId(target as u32 + 1);
            c.act(l, |r, now| r.transfer_leadership(to, now))?;
        }
        FailoverFault::Maintenance => {
            // Resumed more often than paused, so that most of the faults still meet failover.
            if !c.is_up(target) {
                return Ok(false);
            }
            let paused = c.rng.uniform(0, 3) == 0;
            c.request_maintenance(target, paused)?;
        }
    }
    Ok(true)
}

/// (c): exactly one primary on the newest timeline, the agreed leader, every other server a
/// running standby streaming from it (on its timeline). Returns that primary, or what is
/// still missing.
pub fn converged(c: &Cluster) -> Result<usize, String> {
    let f = model(c);
    let n = f.dbs.len();
    let newest = (0..n).map(|i| f.timeline(i)).max().unwrap_or(1);
    let primaries: Vec<usize> = (0..n)
        .filter(|&i| f.dbs[i].state == DbState::Primary && f.timeline(i) == newest)
        .collect();
    let [p] = primaries[..] else {
        return Err(format!(
            "{} primaries on the newest timeline {newest} (nodes {:?})",
            primaries.len(),
            primaries.iter().map(|i| i + 1).collect::<Vec<_>>()
        ));
    };
    let leader = c.agreed_leader().map(|(l, _)| l);
    if leader != Some(p) {
        return Err(format!(
            "the primary (node {}) is not the agreed leader (leader: {:?})",
            p + 1,
            leader.map(|l| l + 1)
        ));
    }
    for j in (0..n).filter(|&j| j != p) {
        let d = &f.dbs[j];
        let streams = d.state == (DbState::Standby { upstream: Some(p) })
            && d.history == f.dbs[p].history
            && !d.down
            && !c.network.is_blocked(p, j);
        if !streams {
            return Err(format!(
                "node {} does not stream from the primary node {} ({:?} on timeline {})",
                j + 1,
                p + 1,
                d.state,
                f.timeline(j)
            ));
        }
    }
    Ok(p)
}

/// Faults stop: a calm network, every server up and awake, replay at full speed; (c) within a
/// bound. Returns the primary.
fn settle(c: &mut Cluster, what: &str) -> Result<usize, Violation> {
    c.failover_step()?;
    c.network.calm();
    c.maintenance.ending = true;
    for i in 0..c.size() {
        c.resume(i);
        if let Some(f) = c.failover.as_mut() {
            f.dbs[i].slow_replay_until = 0;
        }
        if !c.is_up(i) && !model(c).is_rejoining(i) {
            c.start(i)?;
        }
    }
    wait_converged(c, what)
}

/// Promotion and rebuild take up to 3 s each, a re-point 0.2 s, catching up a few seconds.
fn convergence_bound(c: &Cluster) -> u64 {
    liveness_bound(c) + 4 * c.longest_timeout().as_micros() + 12_000_000
}

fn wait_converged(c: &mut Cluster, what: &str) -> Result<usize, Violation> {
    let start = c.now;
    let bound = convergence_bound(c);
    loop {
        match converged(c) {
            Ok(p) => return Ok(p),
            Err(missing) if c.now - start > bound => {
                if c.trace {
                    c.trace_state();
                }
                return Err(format!("failover liveness: {missing}, {bound}us {what}"));
            }
            Err(_) => c.run_until(c.now + 1_000)?,
        }
    }
}

/// The primary's server is killed on a calm network; times the new primary, then brings the
/// old one back and times its return as a standby.
fn measured_failover(
    c: &mut Cluster,
    primary: usize,
    report: &mut FailoverReport,
) -> Result<(), Violation> {
    let offset = c.rng.uniform(0, 300_000);
    c.run_until(c.now + offset)?;
    let lost_before = model(c).lost_commits(primary);
    c.failover_step()?;
    if let Some(f) = c.failover.as_mut() {
        f.dbs[primary].down = true;
    }
    c.crash(primary);
    let start = c.now;
    let bound = convergence_bound(c);
    loop {
        let f = model(c);
        let acknowledging = (0..c.size()).find(|&j| {
            j != primary && f.dbs[j].state == DbState::Primary && c.sessions_lease_until(j) > c.now
        });
        if acknowledging.is_some() {
            break;
        }
        if c.now - start > bound {
            return Err(format!(
                "failover liveness: no new primary {bound}us after the primary's server was killed"
            ));
        }
        c.run_until(c.now + 1_000)?;
    }
    report.failover_us = c.now - start;
    let down = c.rng.uniform(0, 2_000_000);
    c.run_until(c.now + down)?;
    c.start(primary)?;
    let back = c.now;
    let last = wait_converged(c, "after the old primary came back")?;
    report.rejoin_us = c.now - back;
    report.lost_in_failover = model(c).lost_commits(last).saturating_sub(lost_before);
    Ok(())
}
