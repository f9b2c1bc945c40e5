//! `soak`: random faults on a cluster of real servers for a bounded time, while an observer
//! polls every node; then the proof from the role histories. Faults: SIGKILL and restart, planned
//! stop and start, SIGSTOP/SIGCONT of a worker, symmetric partitions (the leader's side in the
//! minority or majority), one-way and partial cuts. After each fault is healed every node must
//! agree on one leader within the bound, or the run fails.

use crate::bench::probe::SqlProbe;
use crate::bench::{percentile, Jitter};
use crate::cluster::{signal, Cluster};
use crate::history;
use crate::network;
use crate::run::Result;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every node agrees on one leader within this long after a fault is healed.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(15);

struct Observer<'a> {
    probe: SqlProbe<'a>,
    sweeps: u64,
    /// Sweeps in which two nodes answered true. A sweep is not one instant (the nodes are asked
    /// one after another), so this is a warning sign, not a proof; the histories are the proof.
    double_answers: u64,
}

impl Observer<'_> {
    /// Polls every node every 20 ms for `how_long`.
    fn watch(&mut self, nodes: &[u32], how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            self.sweeps += 1;
            if self.probe.leaders(nodes).len() > 1 {
                self.double_answers += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn pick<T: Copy>(rng: &mut Jitter, from: &[T]) -> T {
    from[rng.below(from.len() as u64) as usize]
}

pub fn run(c: &Cluster, minutes: f64) -> Result<()> {
    c.create(&[])?;
    let all: Vec<u32> = c.ids().collect();
    let mut obs = Observer {
        probe: SqlProbe::new(c),
        sweeps: 0,
        double_answers: 0,
    };
    let (_, first_term, _) =
        obs.probe
            .wait_for_leader(&all, Instant::now(), Duration::from_secs(30))?;
    let mut rng = Jitter::new();
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut recoveries = Vec::new();
    let mut last_term = first_term;
    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    while Instant::now() < deadline {
        let leader = obs.probe.agreed_leader(&all).map(|(l, _)| l);
        // Half the faults hit the leader, where they matter most.
        let victim = match leader {
            Some(l) if rng.below(2) == 0 => l,
            _ => pick(&mut rng, &all),
        };
        let hold = Duration::from_millis(500 + rng.below(2500));
        let kind = pick(
            &mut rng,
            &["kill", "stop", "pause", "partition", "one-way", "partial"],
        );
        match kind {
            "kill" | "stop" => {
                obs.probe.forget(victim);
                if kind == "kill" {
                    let pid = c.postmaster_pid(victim).ok_or("a node is not running")?;
                    signal(pid, "KILL")?;
                } else {
                    c.stop(victim, "fast")?;
                }
                let rest: Vec<u32> = all.iter().copied().filter(|n| *n != victim).collect();
                obs.watch(&rest, hold);
                c.start(victim)?;
            }
            "pause" => {
                let pid = c.worker_pid(victim)?;
                signal(pid, "STOP")?;
                obs.watch(&all, hold);
                signal(pid, "CONT")?;
            }
            "partition" => {
                // The victim and, half the time, one more node on one side.
                let mut side = vec![victim];
                if rng.below(2) == 0 {
                    let other = pick(&mut rng, &all);
                    if other != victim {
                        side.push(other);
                    }
                }
                let rest: Vec<String> = all
                    .iter()
                    .filter(|n| !side.contains(n))
                    .map(|n| n.to_string())
                    .collect();
                let side: Vec<String> = side.iter().map(|n| n.to_string()).collect();
                network::partition(c, &format!("{}/{}", side.join(","), rest.join(",")))?;
                obs.watch(&all, hold);
                network::heal()?;
            }
            "one-way" => {
                // The victim stops hearing from everyone, or everyone from the victim.
                let pairs: Vec<(u32, u32)> = all
                    .iter()
                    .filter(|n| **n != victim)
                    .map(|&n| {
                        if rng.below(2) == 0 {
                            (n, victim)
                        } else {
                            (victim, n)
                        }
                    })
                    .collect();
                network::block(c, &pairs)?;
                obs.watch(&all, hold);
                network::heal()?;
            }
            _ => {
                // Two nodes cannot talk to each other; both still reach everyone else.
                let other = all.iter().copied().find(|n| *n != victim).unwrap_or(victim);
                let other = if rng.below(2) == 0 {
                    other
                } else {
                    pick(&mut rng, &all)
                };
                if other != victim {
                    network::block(c, &[(victim, other), (other, victim)])?;
                }
                obs.watch(&all, hold);
                network::heal()?;
            }
        }
        *faults.entry(kind).or_default() += 1;
        let healed = Instant::now();
        let (new_leader, term, took) = obs
            .probe
            .wait_for_leader(&all, healed, RECOVERY_BOUND)
            .map_err(|e| {
                format!(
                    "after a {kind} of node {victim}: {e} (bound {} s); see {}",
                    RECOVERY_BOUND.as_secs(),
                    c.dir.display()
                )
            })?;
        last_term = last_term.max(term);
        recoveries.push(took.as_secs_f64() * 1000.0);
        println!(
            "fault {}: {kind} of node {victim} for {} ms; then node {new_leader} leads term {term}, agreed by all {} ms after the heal",
            recoveries.len(),
            hold.as_millis(),
            took.as_millis()
        );
    }
    let verdict = history::check(c)?;
    recoveries.sort_by(|a, b| a.total_cmp(b));
    let total: u32 = faults.values().sum();
    println!(
        "soak: {} nodes, {minutes} min, {total} faults ({}); terms {first_term} -> {last_term} ({} elections); observer: {} sweeps, {} with two true answers within one sweep",
        all.len(),
        faults
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        last_term - first_term,
        obs.sweeps,
        obs.double_answers
    );
    println!(
        "recovery after the heal: median {:.0} ms, worst {:.0} ms (bound {} s); histories: {} lines, {} terms with a leader, {} leases; violations: 0",
        percentile(&recoveries, 50.0),
        recoveries.last().copied().unwrap_or(0.0),
        RECOVERY_BOUND.as_secs(),
        verdict.lines,
        verdict.terms_with_leader,
        verdict.leases
    );
    Ok(())
}
