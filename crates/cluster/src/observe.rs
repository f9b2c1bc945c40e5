//! Watching the cluster through SQL: the status table and bounded waits.

use crate::cluster::Cluster;
use crate::run::Result;
use crate::sql::{view, NodeView};
use std::time::{Duration, Instant};

/// Every node that answers; the others are reported as down.
pub fn views(c: &Cluster, nodes: &[u32]) -> Vec<(u32, Result<NodeView>)> {
    nodes.iter().map(|&n| (n, view(c, n))).collect()
}

/// The leader, when exactly one of `nodes` answers true and all of them name it in one term.
pub fn agreed_leader(c: &Cluster, nodes: &[u32]) -> Option<(u32, u64)> {
    let all: Vec<NodeView> = views(c, nodes)
        .into_iter()
        .map(|(_, v)| v.ok())
        .collect::<Option<_>>()?;
    let leaders: Vec<&NodeView> = all.iter().filter(|v| v.is_leader).collect();
    let [leader] = leaders[..] else { return None };
    let agreed = all
        .iter()
        .all(|v| v.leader == Some(leader.node) && v.term == leader.term);
    agreed.then_some((leader.node, leader.term))
}

/// Polls every 10 ms until one leader is agreed among `nodes`, for at most `timeout`.
pub fn wait_for_leader(
    c: &Cluster,
    nodes: &[u32],
    timeout: Duration,
) -> Result<(u32, u64, Duration)> {
    let start = Instant::now();
    loop {
        if let Some((leader, term)) = agreed_leader(c, nodes) {
            return Ok((leader, term, start.elapsed()));
        }
        if start.elapsed() > timeout {
            let seen: Vec<String> = views(c, nodes)
                .into_iter()
                .map(|(n, v)| match v {
                    Ok(v) => format!(
                        "node {n}: {} term {} leader {:?} is_leader {}",
                        v.role, v.term, v.leader, v.is_leader
                    ),
                    Err(e) => format!("node {n}: {e}"),
                })
                .collect();
            return Err(format!(
                "no leader agreed by nodes {nodes:?} within {} s ({}); see the logs in {}",
                timeout.as_secs(),
                seen.join("; "),
                c.dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".to_string(), |x| x.to_string())
}

/// A table like `patronictl list`.
pub fn print_status(c: &Cluster) {
    println!(
        "{:>4}  {:<8}  {:<13}  {:>5}  {:>6}  {:>9}  {:>12}  address",
        "node", "postgres", "pg_leader", "term", "leader", "lease ms", "last contact"
    );
    let ids: Vec<u32> = c.ids().collect();
    for (node, v) in views(c, &ids) {
        let address = format!("127.0.0.1:{}", c.raft_port(node));
        match v {
            Ok(v) => println!(
                "{:>4}  {:<8}  {:<13}  {:>5}  {:>6}  {:>9}  {:>12}  {address}",
                node,
                if c.is_witness(node) {
                    "witness"
                } else if v.in_recovery {
                    "standby"
                } else {
                    "primary"
                },
                if v.is_leader {
                    format!("{} *", v.role)
                } else {
                    v.role.clone()
                },
                v.term,
                opt(v.leader),
                opt(v.lease_ms),
                // A leader's last contact with a leader is its own past as a follower: not shown.
                if v.role == "leader" {
                    "-".to_string()
                } else {
                    opt(v.last_contact_ms)
                },
            ),
            Err(_) => println!(
                "{:>4}  {:<8}  {:<13}  {:>5}  {:>6}  {:>9}  {:>12}  {address}",
                node, "down", "-", "-", "-", "-", "-"
            ),
        }
    }
    println!("(* = pg_leader_is_leader() is true)");
}
