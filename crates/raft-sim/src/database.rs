//! The PostgreSQL side of each simulated server: a primary that writes WAL, standbys that replay
//! it while they can reach the primary, timelines, and (in one layout) a former primary that
//! came back on an older timeline without being rebuilt. Promotion is not modelled: the primary
//! stays where the layout put it.
//!
//! The simulated host tells the core each server's position before every step, as the worker
//! does before every tick (`Raft::set_wal_position`).

use pg_leader_raft::{RandomSource, SplitMix64, WalPosition};

/// The database system every server of the simulated cluster belongs to.
pub const SYSTEM: u64 = 7_300_000_000_000_000_001;

/// WAL the primary writes per millisecond of real time.
const WAL_PER_MS: u64 = 1_000;

/// How the servers' databases start out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A fresh cluster: server `primary` is the primary of timeline 1, the rest its standbys.
    Fresh { primary: usize },
    /// After a failover: `primary` leads timeline 2 with the rest as its standbys, but `former`,
    /// the old primary, came back as it was: a primary on timeline 1.
    FormerPrimaryBack { primary: usize, former: usize },
    /// Only standbys (the primary is gone): no one is preferred.
    StandbysOnly,
    /// No database model: each server tells the position the fault phase sets on it
    /// (`SimNode::wal`: standbys of timeline 1 whose WAL the faults move), so no one is preferred.
    FaultDriven,
}

impl Layout {
    /// One of the layouts, for a run over `voters` voters (spares are standbys).
    pub fn draw(rng: &mut SplitMix64, voters: usize) -> Layout {
        let primary = rng.uniform(0, voters as u64) as usize;
        match rng.uniform(0, 20) {
            0..=8 => Layout::Fresh { primary },
            9..=13 if voters >= 2 => {
                let former = (primary + 1 + rng.uniform(0, voters as u64 - 1) as usize) % voters;
                Layout::FormerPrimaryBack { primary, former }
            }
            14..=16 => Layout::StandbysOnly,
            _ => Layout::FaultDriven,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Database {
    timeline: u32,
    in_recovery: bool,
    lsn: u64,
    /// On a standby: how far behind the primary its replay runs while connected, in real µs.
    replay_lag: u64,
}

#[derive(Clone, Debug)]
pub struct Databases {
    pub layout: Layout,
    servers: Vec<Database>,
    last_advance: u64,
}

impl Databases {
    pub fn new(layout: Layout, size: usize, rng: &mut SplitMix64) -> Databases {
        let fork = 1_000_000 + rng.uniform(0, 1_000_000);
        let servers = (0..size)
            .map(|i| {
                let replay_lag = rng.uniform(0, 50_000);
                let (timeline, in_recovery, lsn) = match layout {
                    Layout::Fresh { primary } => (1, i != primary, 0),
                    Layout::FormerPrimaryBack { former, .. } if i == former => {
                        (1, false, fork + rng.uniform(0, 100_000))
                    }
                    Layout::FormerPrimaryBack { primary, .. } => (2, i != primary, fork),
                    Layout::StandbysOnly => (1, true, fork - rng.uniform(0, 10_000)),
                    Layout::FaultDriven => (0, true, 0),
                };
                Database {
                    timeline,
                    in_recovery,
                    lsn,
                    replay_lag,
                }
            })
            .collect();
        Databases {
            layout,
            servers,
            last_advance: 0,
        }
    }

    /// What server `i` tells its core.
    pub fn position(&self, i: usize) -> WalPosition {
        let d = &self.servers[i];
        if d.timeline == 0 {
            return WalPosition::default();
        }
        WalPosition {
            system: SYSTEM,
            timeline: d.timeline,
            lsn: d.lsn,
            in_recovery: d.in_recovery,
        }
    }

    /// The server that should lead: the primary of the newest timeline, if any.
    pub fn preferred(&self) -> Option<usize> {
        let newest = self.servers.iter().map(|d| d.timeline).max()?;
        (0..self.servers.len())
            .find(|&i| !self.servers[i].in_recovery && self.servers[i].timeline == newest)
            .filter(|_| newest > 0)
    }

    /// Real time moved to `now`: primaries that run write; standbys that run and hear the
    /// primary of their timeline replay up to what it had `replay_lag` ago.
    pub fn advance(
        &mut self,
        now: u64,
        running: impl Fn(usize) -> bool,
        connected: impl Fn(usize, usize) -> bool,
    ) {
        let elapsed_ms = now.saturating_sub(self.last_advance) / 1_000;
        if elapsed_ms == 0 {
            return;
        }
        self.last_advance += elapsed_ms * 1_000;
        for (i, d) in self.servers.iter_mut().enumerate() {
            if !d.in_recovery && d.timeline > 0 && running(i) {
                d.lsn += elapsed_ms * WAL_PER_MS;
            }
        }
        let sources: Vec<(usize, Database)> = self
            .servers
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, d)| !d.in_recovery && d.timeline > 0)
            .collect();
        for (i, d) in self.servers.iter_mut().enumerate() {
            if !d.in_recovery || !running(i) {
                continue;
            }
            let source = sources
                .iter()
                .find(|(p, s)| s.timeline == d.timeline && running(*p) && connected(*p, i));
            if let Some((_, s)) = source {
                let lag = d.replay_lag / 1_000 * WAL_PER_MS;
                d.lsn = d.lsn.max(s.lsn.saturating_sub(lag));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standbys_replay_only_while_they_hear_the_primary_and_never_pass_it() {
        let mut rng = SplitMix64::new(1);
        let mut dbs = Databases::new(Layout::Fresh { primary: 0 }, 3, &mut rng);
        let cut = |from: usize, to: usize| !(from == 0 && to == 2);
        for ms in 1..=1_000 {
            dbs.advance(ms * 1_000, |_| true, cut);
        }
        let (p, s1, s2) = (dbs.position(0), dbs.position(1), dbs.position(2));
        assert_eq!(p.lsn, 1_000 * WAL_PER_MS);
        assert!(!p.in_recovery && s1.in_recovery && s2.in_recovery);
        assert!(s1.lsn > 900 * WAL_PER_MS && s1.lsn <= p.lsn);
        assert_eq!(s2.lsn, 0, "cut off from the primary: no replay");
        assert_eq!(dbs.preferred(), Some(0));
    }

    #[test]
    fn the_former_primary_is_never_the_preferred_one() {
        let mut rng = SplitMix64::new(2);
        let dbs = Databases::new(
            Layout::FormerPrimaryBack {
                primary: 2,
                former: 0,
            },
            3,
            &mut rng,
        );
        assert_eq!(dbs.preferred(), Some(2));
        assert!(
            dbs.position(0).lsn > dbs.position(2).lsn,
            "it even has more WAL"
        );
        let none = Databases::new(Layout::StandbysOnly, 3, &mut rng);
        assert_eq!(none.preferred(), None);
        let fault_driven = Databases::new(Layout::FaultDriven, 3, &mut rng);
        assert_eq!(fault_driven.preferred(), None);
    }
}
