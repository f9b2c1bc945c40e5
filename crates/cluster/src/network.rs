//! Network faults between the nodes' pg_leader ports: nftables drops in the input hook, silent
//! like a real outage. Everything lives in one table, removed by `heal` and `down`.

use crate::cluster::Cluster;
use crate::run::{check, Result};
use std::io::Write;
use std::process::{Command, Stdio};

/// The nft table, unless `PG_LEADER_NFT_TABLE` names another (two clusters tested side by side
/// must not heal each other's faults).
const TABLE: &str = "pg_leader_cluster";

fn table() -> String {
    std::env::var("PG_LEADER_NFT_TABLE")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| TABLE.to_string())
}

fn ensure_nft() -> Result<()> {
    if Command::new("nft").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("nft is missing: installing Debian's nftables");
    check(
        Command::new("apt-get").args(["install", "-y", "-qq", "nftables"]),
        "apt-get install nftables",
    )
    .map(|_| ())
}

fn nft_script(script: &str) -> Result<()> {
    ensure_nft()?;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("nft: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Drops every datagram from `from`'s pg_leader port to `to`'s.
pub fn block(c: &Cluster, pairs: &[(u32, u32)]) -> Result<()> {
    let table = table();
    let mut script = format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
    );
    for (from, to) in pairs {
        script.push_str(&format!(
            "    udp sport {} udp dport {} drop\n",
            c.raft_port(*from),
            c.raft_port(*to)
        ));
    }
    script.push_str("  }\n}\n");
    nft_script(&script)
}

/// `1,2/3`: no datagram crosses between the groups, either way.
pub fn partition(c: &Cluster, spec: &str) -> Result<Vec<(u32, u32)>> {
    let groups: Vec<Vec<u32>> = spec
        .split('/')
        .map(|g| {
            g.split(',')
                .map(|n| {
                    n.trim()
                        .parse::<u32>()
                        .map_err(|_| format!("bad node {n:?} in {spec:?}"))
                        .and_then(|n| c.check_node(n))
                })
                .collect::<Result<Vec<u32>>>()
        })
        .collect::<Result<_>>()?;
    if groups.len() < 2 {
        return Err(format!(
            "a partition needs at least two groups, like 1,2/3: {spec:?}"
        ));
    }
    let mut pairs = Vec::new();
    for (i, a) in groups.iter().enumerate() {
        for (j, b) in groups.iter().enumerate() {
            if i != j {
                pairs.extend(a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y))));
            }
        }
    }
    block(c, &pairs)?;
    Ok(pairs)
}

pub fn heal() -> Result<()> {
    let table = table();
    let exists = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if exists {
        check(
            Command::new("nft").args(["delete", "table", "inet", &table]),
            "nft delete table",
        )?;
    }
    Ok(())
}
