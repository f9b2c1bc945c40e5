//! `bench-failover`: repeated SIGKILLs of the leader on one cluster, each timed from the kill to
//! a new leader agreed through SQL by every survivor. The kill lands at a random point of the
//! heartbeat cycle; the old leader is started again and the cluster settles before the next trial.

use crate::cluster::{signal, Cluster};
use crate::observe::wait_for_leader;
use crate::run::Result;
use std::time::{Duration, Instant};

pub fn run(c: &Cluster, trials: u32, extra: &[String]) -> Result<()> {
    c.create(extra)?;
    let all: Vec<u32> = c.ids().collect();
    let mut times = Vec::new();
    let mut extra_rounds = 0;
    // A cheap, dependency-free spread of kill moments over 0..300 ms.
    let mut jitter = std::process::id() as u64;
    for trial in 1..=trials {
        let (leader, term, _) = wait_for_leader(c, &all, Duration::from_secs(30))?;
        jitter = jitter
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(500 + (jitter >> 33) % 300));
        let pid = c
            .postmaster_pid(leader)
            .ok_or("the leader's postmaster is not running")?;
        signal(pid, "KILL")?;
        let killed = Instant::now();
        let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
        let (new_leader, new_term, _) = wait_for_leader(c, &survivors, Duration::from_secs(30))?;
        let took = killed.elapsed();
        if new_term > term + 1 {
            extra_rounds += 1;
        }
        println!(
            "trial {trial}: node {leader} killed, node {new_leader} leads term {new_term} after {} ms",
            took.as_millis()
        );
        times.push(took.as_secs_f64() * 1000.0);
        c.start(leader)?;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pick = |p: f64| times[((p / 100.0) * (times.len() - 1) as f64).round() as usize];
    println!(
        "failover over {} trials: min {:.0} ms, median {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; elections needing more than one round: {} ({:.1} %)",
        times.len(),
        times[0],
        pick(50.0),
        pick(90.0),
        pick(99.0),
        times[times.len() - 1],
        extra_rounds,
        100.0 * extra_rounds as f64 / times.len() as f64
    );
    Ok(())
}
