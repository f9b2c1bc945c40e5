//! Asking servers through SQL, the way users do: psql over the cluster's Unix socket.

use crate::cluster::Cluster;
use crate::run::{as_postgres, check, Result};

/// Runs one statement on a node; returns its unaligned output with `|` between columns.
pub fn query(c: &Cluster, node: u32, sql: &str) -> Result<String> {
    let mut psql = as_postgres("psql");
    psql.args([
        "-X",
        "-q",
        "-At",
        "-F",
        "|",
        "-h",
        &c.dir.to_string_lossy(),
        "-p",
        &c.pg_port(node).to_string(),
    ]);
    psql.args(["-U", "postgres", "-d", "postgres", "-c", sql]);
    let out = check(&mut psql, &format!("psql on node {node}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What one node says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub node: u32,
    pub in_recovery: bool,
    pub role: String,
    pub term: u64,
    pub leader: Option<u32>,
    pub is_leader: bool,
    pub lease_ms: Option<i64>,
    pub last_contact_ms: Option<i64>,
    pub error: Option<String>,
}

pub fn view(c: &Cluster, node: u32) -> Result<NodeView> {
    let row = query(
        c,
        node,
        "SELECT pg_is_in_recovery(), role, term, leader_id, pg_leader_is_leader(), lease_remaining_ms, \
         last_leader_contact_ms, error FROM pg_leader_status()",
    )?;
    let f: Vec<&str> = row.split('|').collect();
    if f.len() != 8 {
        return Err(format!("unexpected answer from node {node}: {row:?}"));
    }
    Ok(NodeView {
        node,
        in_recovery: f[0] == "t",
        role: f[1].to_string(),
        term: f[2].parse().unwrap_or(0),
        leader: f[3].parse().ok(),
        is_leader: f[4] == "t",
        lease_ms: f[5].parse().ok(),
        last_contact_ms: f[6].parse().ok(),
        error: Some(f[7].to_string()).filter(|e| !e.is_empty()),
    })
}
