//! Invariant 8 in the simulator (design.md): once faults stop, a caught-up primary of the newest
//! timeline that is a healthy voter leads within a bound. Also the two figures behind it: how
//! often a fresh cluster elects its primary first, and how long a primary that was cut off takes
//! to get leadership back once the network heals.

use crate::checker::Violation;
use crate::cluster::{random_drifts, Cluster, Setup};
use crate::database::Layout;
use crate::scenario::Options;
use pg_leader_raft::{RandomSource, SplitMix64};

/// Runs until the preferred server (the primary of the newest timeline, if any) is the agreed
/// leader, and returns the real time since `faults_ended`; `None` when there is nothing to
/// require: no primary, or one that may not lead or that the configuration does not count as a
/// voter.
pub fn wait_for_preferred_leader(
    c: &mut Cluster,
    faults_ended: u64,
    bound: u64,
) -> Result<Option<u64>, Violation> {
    let Some(primary) = c.databases.preferred() else {
        return Ok(None);
    };
    let id = c.nodes[primary].id;
    loop {
        if !c.nodes[primary].can_lead {
            return Ok(None);
        }
        if let Some((leader, _)) = c.agreed_leader() {
            if leader == primary {
                return Ok(Some(c.now - faults_ended));
            }
            let membership = c.leader_membership().expect("an agreed leader has one");
            if !membership.is_voter(id) && membership.in_transition().is_none() {
                return Ok(None);
            }
        }
        if c.now - faults_ended > bound {
            let leader = c.agreed_leader().map(|(l, _)| c.nodes[l].id);
            return Err(format!(
                "preferred leader: the primary (node {id}) does not lead {bound}us after the faults stopped (agreed leader: {leader:?}, databases {:?})",
                c.databases.layout
            ));
        }
        c.run_until(c.now + 1_000)?;
    }
}

/// A fresh cluster of `nodes` voters, one of them (drawn from the seed) the primary, on a calm
/// network. The primary starts first; each standby starts at a random moment within
/// `stagger_us` after it (zero: all at once), as when standbys are cloned from the primary one
/// by one. Returns whether the first leader elected was the primary, and the real time until
/// the primary was the agreed leader.
pub fn fresh_start(
    seed: u64,
    nodes: usize,
    stagger_us: u64,
    options: &Options,
) -> Result<(bool, u64), Violation> {
    let mut c = fresh_cluster(seed, nodes, options);
    let primary = primary_of(&c);
    let bound = bound(options) + stagger_us;
    let mut starts: Vec<(u64, usize)> = (0..nodes)
        .filter(|&i| i != primary && stagger_us > 0)
        .map(|i| (c.rng.uniform(0, stagger_us), i))
        .collect();
    starts.sort_unstable();
    for (_, i) in &starts {
        c.crash(*i);
    }
    while c.checker.first_leader().is_none() {
        if c.now > bound {
            return Err("fresh start: no leader".to_string());
        }
        let next = c.now + 1_000;
        c.run_until(next)?;
        while starts.first().is_some_and(|(at, _)| *at <= next) {
            let (_, i) = starts.remove(0);
            c.start(i)?;
        }
    }
    for (_, i) in starts {
        c.start(i)?;
    }
    let first_is_primary = c.checker.first_leader() == Some(c.nodes[primary].id);
    let time = wait_for_preferred_leader(&mut c, 0, bound)?.ok_or("the primary is a voter")?;
    Ok((first_is_primary, time))
}

/// The primary leads; it is cut off until another server holds a lease, and a little longer;
/// then the network heals. Returns the real time from the heal until the primary is the agreed
/// leader again.
pub fn hand_back_after_heal(seed: u64, nodes: usize, options: &Options) -> Result<u64, Violation> {
    let mut c = fresh_cluster(seed, nodes, options);
    let primary = primary_of(&c);
    let bound = bound(options);
    wait_for_preferred_leader(&mut c, 0, bound)?;
    c.network.isolate(&[primary]);
    let cut_at = c.now;
    while c.leader_with_lease().is_none_or(|l| l == primary) {
        if c.now - cut_at > bound {
            return Err("no other leader while the primary was cut off".to_string());
        }
        c.run_until(c.now + 1_000)?;
    }
    let extra = c.rng.uniform(0, 2 * options.election_timeout.as_micros());
    c.run_until(c.now + extra)?;
    c.network.heal();
    let healed_at = c.now;
    wait_for_preferred_leader(&mut c, healed_at, bound)?.ok_or("the primary is a voter".into())
}

fn fresh_cluster(seed: u64, nodes: usize, options: &Options) -> Cluster {
    let mut rng = SplitMix64::new(seed ^ 0xF4E5_4157);
    let drifts = random_drifts(nodes, options.max_drift_ppm, &mut rng);
    let primary = rng.uniform(0, nodes as u64) as usize;
    let setup = Setup::uniform(options.heartbeat, options.election_timeout, &drifts);
    let mut c = Cluster::with_layout(&setup, Layout::Fresh { primary }, seed);
    c.trace = options.trace;
    c
}

fn primary_of(c: &Cluster) -> usize {
    c.databases
        .preferred()
        .expect("a fresh layout has a primary")
}

/// A leader within this much of a calm start: the restart blackout, then at worst a few rounds
/// of timeouts.
fn bound(options: &Options) -> u64 {
    13 * options.election_timeout.as_micros()
}
