//! Leadership goes back to the writable primary after a partition: the primary (node 1) is cut
//! off until the standbys agree on a leader among themselves, then the network heals; timed
//! from the heal to the primary holding the lease again, agreed through SQL by every server.
//! The primary holds the newest timeline and all the WAL, so the standby leader must hand over.

use super::probe::SqlProbe;
use super::{Jitter, Timing, Trials};
use crate::cluster::Cluster;
use crate::network;
use crate::run::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PRIMARY: u32 = 1;

pub fn primary_return(
    c: &Cluster,
    trials: u32,
    timing: Timing,
    csv: Option<PathBuf>,
) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let standbys: Vec<u32> = all.iter().copied().filter(|&n| n != PRIMARY).collect();
    let spec = format!(
        "{PRIMARY}/{}",
        standbys
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut results = Trials::new("primary return", csv);
    let patience = Duration::from_secs(30);
    let mut jitter = Jitter::new();
    let result = (|| -> Result<()> {
        for trial in 1..=trials {
            let mut probe = SqlProbe::new(c);
            wait_for(&mut probe, &all, PRIMARY, patience)
                .map_err(|e| format!("trial {trial}, before the cut: {e}"))?;
            std::thread::sleep(Duration::from_millis(
                jitter.below(u64::from(timing.heartbeat_ms)),
            ));
            network::partition(c, &spec)?;
            let cut = Instant::now();
            let (standby_leader, standby_term) = loop {
                if let Some(found) = probe.agreed_leader(&standbys) {
                    break found;
                }
                if cut.elapsed() > patience {
                    return Err(format!(
                        "trial {trial}: no standby led within {} s of the cut",
                        patience.as_secs()
                    ));
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            let standby_led_after = cut.elapsed();
            network::heal()?;
            let healed = Instant::now();
            let term = wait_for(&mut probe, &all, PRIMARY, patience)
                .map_err(|e| format!("trial {trial}, after the heal: {e}"))?;
            results.record(
                healed.elapsed().as_secs_f64() * 1000.0,
                term.saturating_sub(standby_term),
                &format!(
                    "node {standby_leader} led {} ms after the cut; the primary leads term {term} again",
                    standby_led_after.as_millis()
                ),
            );
        }
        Ok(())
    })();
    let _ = network::heal();
    result?;
    results.finish()
}

/// Waits until `node` is the leader agreed by all of `nodes`; returns its term.
fn wait_for(probe: &mut SqlProbe, nodes: &[u32], node: u32, patience: Duration) -> Result<u64> {
    let start = Instant::now();
    loop {
        if let Some((leader, term)) = probe.agreed_leader(nodes) {
            if leader == node {
                return Ok(term);
            }
        }
        if start.elapsed() > patience {
            return Err(format!(
                "node {node} did not lead within {} s",
                patience.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
