//! `pg_leader-cluster rejoin N`: rebuilds node N, a former primary, as a streaming standby of
//! the current leader with the extension's own script (src/postgres/rejoin.sh), the way an
//! operator would when `pg_leader.auto_rejoin` is off.

use crate::cluster::{pgbin, Cluster};
use crate::run::{as_postgres, Result};
use crate::sql::{query, view};
use std::process::Stdio;

/// The script the extension runs for `pg_leader.auto_rejoin`, byte for byte.
pub const SCRIPT: &str = include_str!("../../../src/postgres/rejoin.sh");

/// The application_name of node N on its primary; the extension's `application_name(N)`.
pub fn application_name(node: u32) -> String {
    format!("pg_leader_{node}")
}

/// The leader as the running nodes see it: the only one answering `pg_leader_is_leader()`.
fn current_leader(c: &Cluster) -> Result<(u32, u64, bool)> {
    let views: Vec<_> = c.ids().filter_map(|n| view(c, n).ok()).collect();
    let leaders: Vec<_> = views.iter().filter(|v| v.is_leader).collect();
    match leaders[..] {
        [l] => Ok((l.node, l.term, l.in_recovery)),
        [] => Err(format!(
            "no leader is known ({} of {} nodes answer, none holds the lease): rejoin needs a leader to rewind from",
            views.len(),
            c.nodes
        )),
        _ => Err("more than one node answers that it leads: not rejoining now".into()),
    }
}

/// The leader's `pg_leader.conninfo`, or the cluster's own way to reach it.
fn leader_conninfo(c: &Cluster, leader: u32) -> String {
    query(c, leader, "SHOW pg_leader.conninfo")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| c.conninfo(leader))
}

pub fn run(c: &Cluster, node: u32) -> Result<()> {
    if c.is_witness(node) {
        return Err(format!(
            "node {node} is a witness: it has no data of the cluster's to rejoin with"
        ));
    }
    let (leader, term, leader_in_recovery) = current_leader(c)?;
    if leader == node {
        return Err(format!(
            "node {node} is the leader (term {term}): there is nothing to rejoin"
        ));
    }
    if leader_in_recovery {
        return Err(format!(
            "the leader, node {leader}, is a standby: promote it before rejoining node {node} to it"
        ));
    }
    let source = leader_conninfo(c, leader);
    println!("rejoining node {node} as a standby of node {leader} (term {term}) from '{source}'");
    let mut script = as_postgres("bash");
    script
        .arg("-c")
        .arg(SCRIPT)
        .arg("rejoin.sh")
        .args(["--pgdata", &c.data_dir(node).to_string_lossy()])
        .args(["--bindir", &pgbin()])
        .args(["--source", &source])
        .args(["--application-name", &application_name(node)])
        .args(["--log", &c.log_file(node).to_string_lossy()])
        .args(["--term", &term.to_string(), "--leader", &leader.to_string()])
        .stdin(Stdio::null());
    let status = script
        .status()
        .map_err(|e| format!("could not run the rejoin script: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the rejoin of node {node} did not complete ({status}); the marker in {}.pg_leader-rejoin says where it stands",
            c.data_dir(node).display()
        ));
    }
    println!("node {node} is a standby of node {leader}");
    Ok(())
}
