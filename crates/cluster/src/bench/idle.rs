//! Idle cost: CPU time and resident memory of each node's pg_leader worker, and the datagrams
//! it sends and receives per second, over a quiet window with a stable leader.

use super::probe::SqlProbe;
use super::Timing;
use crate::cluster::Cluster;
use crate::run::Result;
use crate::sql::query;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// User + system CPU time of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: i32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("could not read /proc/{pid}/stat: {e}"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // After the command name, field 3 (state) is index 0: utime is 14, stime 15.
    let tick = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Ok(tick(14).unwrap_or(0) + tick(15).unwrap_or(0))
}

/// A memory line of /proc/PID/status, in KiB.
fn status_kib(pid: i32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Datagrams in and out of a node's worker so far, summed over its peers.
fn packets(c: &Cluster, node: u32) -> Result<(u64, u64)> {
    let row = query(
        c,
        node,
        "SELECT sum(packets_in), sum(packets_out) FROM pg_leader_nodes() WHERE NOT is_self",
    )?;
    let mut f = row.split('|').map(|v| v.parse::<u64>().unwrap_or(0));
    Ok((f.next().unwrap_or(0), f.next().unwrap_or(0)))
}

pub fn idle(c: &Cluster, seconds: u64, timing: Timing, csv: Option<PathBuf>) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let (leader, _, _) =
        SqlProbe::new(c).wait_for_leader(&all, Instant::now(), Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    let pids: Vec<i32> = all
        .iter()
        .map(|&n| c.worker_pid(n))
        .collect::<Result<_>>()?;
    let before_cpu: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect::<Result<_>>()?;
    let before_packets: Vec<(u64, u64)> =
        all.iter().map(|&n| packets(c, n)).collect::<Result<_>>()?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let elapsed = start.elapsed().as_secs_f64();
    let hz = clock_ticks_per_second() as f64;
    let mut text = String::from(
        "node,role,cpu_percent,rss_kib,rss_anon_kib,packets_in_per_s,packets_out_per_s\n",
    );
    for (i, &node) in all.iter().enumerate() {
        let cpu = (cpu_ticks(pids[i])? - before_cpu[i]) as f64 / hz / elapsed * 100.0;
        let (pin, pout) = packets(c, node)?;
        let pin = (pin - before_packets[i].0) as f64 / elapsed;
        let pout = (pout - before_packets[i].1) as f64 / elapsed;
        let rss = status_kib(pids[i], "VmRSS:");
        let anon = status_kib(pids[i], "RssAnon:");
        let role = if node == leader { "leader" } else { "follower" };
        println!(
            "idle node {node} ({role}, worker pid {}): CPU {cpu:.3} % of a core over {elapsed:.0} s; resident {rss} KiB of which private {anon} KiB; datagrams in {pin:.1}/s, out {pout:.1}/s",
            pids[i]
        );
        let _ = writeln!(
            text,
            "{node},{role},{cpu:.4},{rss},{anon},{pin:.2},{pout:.2}"
        );
    }
    if let Some(path) = csv {
        std::fs::write(&path, text)
            .map_err(|e| format!("could not write \"{}\": {e}", path.display()))?;
    }
    Ok(())
}
