//! Checks the nodes' role histories (see the extension's `history` module for the format):
//! no term with two leaders, and no two lease intervals that overlap on the shared
//! CLOCK_BOOTTIME.

use crate::cluster::Cluster;
use crate::run::Result;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug)]
struct Lease {
    node: u32,
    term: u64,
    from: u64,
    until: u64,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub lines: usize,
    pub terms_with_leader: usize,
    pub leases: usize,
}

fn read_lines(c: &Cluster, node: u32) -> Vec<String> {
    let dir = c.data_dir(node).join("pg_leader");
    let mut text = std::fs::read_to_string(dir.join("pg_leader.history.1")).unwrap_or_default();
    text.push_str(&std::fs::read_to_string(dir.join("pg_leader.history")).unwrap_or_default());
    text.lines().map(str::to_string).collect()
}

pub fn check(c: &Cluster) -> Result<Verdict> {
    let mut verdict = Verdict::default();
    let mut leaders: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
    let mut leases: Vec<Lease> = Vec::new();
    for node in c.ids() {
        let mut open: Option<Lease> = None;
        for line in read_lines(c, node) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 7 {
                return Err(format!("node {node}: malformed history line {line:?}"));
            }
            let num = |i: usize| {
                f[i].parse::<u64>()
                    .map_err(|_| format!("node {node}: bad number in {line:?}"))
            };
            let (at, term, role, lease) = (num(0)?, num(2)?, f[3], num(5)?);
            verdict.lines += 1;
            if role == "leader" {
                leaders.entry(term).or_default().insert(node);
            }
            // Whatever this line says, an open lease that it does not extend ends here at the latest.
            if let Some(mut l) = open.take() {
                if lease > 0 && role == "leader" && term == l.term {
                    l.until = l.until.max(lease);
                    open = Some(l);
                    continue;
                }
                l.until = l.until.min(at);
                leases.push(l);
            }
            if lease > 0 && role == "leader" {
                open = Some(Lease {
                    node,
                    term,
                    from: at,
                    until: lease,
                });
            }
        }
        leases.extend(open);
    }
    for (term, nodes) in &leaders {
        if nodes.len() > 1 {
            return Err(format!("term {term} had two leaders: nodes {nodes:?}"));
        }
    }
    for (i, a) in leases.iter().enumerate() {
        for b in &leases[i + 1..] {
            if a.node != b.node && a.from < b.until && b.from < a.until {
                return Err(format!(
                    "leases overlap: node {} (term {}) held one over [{}, {}) and node {} (term {}) over [{}, {}) (CLOCK_BOOTTIME us)",
                    a.node, a.term, a.from, a.until, b.node, b.term, b.from, b.until
                ));
            }
        }
    }
    verdict.terms_with_leader = leaders.len();
    verdict.leases = leases.len();
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_with(name: &str, histories: &[&str]) -> (Cluster, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("pg_leader_history_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = Cluster::new(dir.clone(), histories.len() as u32, 55900, 7900);
        for (i, text) in histories.iter().enumerate() {
            let state = c.data_dir(i as u32 + 1).join("pg_leader");
            std::fs::create_dir_all(&state).unwrap();
            std::fs::write(state.join("pg_leader.history"), text).unwrap();
        }
        (c, dir)
    }

    fn line(at: u64, term: u64, role: &str, leader: u32, lease: u64) -> String {
        format!("{at}\t0\t{term}\t{role}\t{leader}\t{lease}\tx\n")
    }

    #[test]
    fn leases_one_after_the_other_pass() {
        let n1 = line(100, 1, "leader", 1, 0)
            + &line(110, 1, "leader", 1, 1000)
            + &line(200, 1, "leader", 1, 1100);
        let n2 = line(100, 1, "follower", 1, 0)
            + &line(1200, 2, "leader", 2, 0)
            + &line(1210, 2, "leader", 2, 2000);
        let (c, dir) = cluster_with("sequential", &[&n1, &n2]);
        let v = check(&c).unwrap();
        assert_eq!((v.terms_with_leader, v.leases), (2, 2));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn overlapping_leases_fail() {
        let n1 = line(110, 1, "leader", 1, 1000) + &line(200, 1, "leader", 1, 1100);
        let n2 = line(1050, 2, "leader", 2, 0) + &line(1060, 2, "leader", 2, 2000);
        let (c, dir) = cluster_with("overlap", &[&n1, &n2]);
        assert!(check(&c).unwrap_err().contains("leases overlap"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lease_ends_when_its_holder_steps_down() {
        // Node 1's last deadline is 1100, but it stepped down at 300: no overlap with node 2 at 1050.
        let n1 = line(110, 1, "leader", 1, 1000)
            + &line(200, 1, "leader", 1, 1100)
            + &line(300, 2, "follower", 0, 0);
        let n2 = line(1050, 2, "leader", 2, 0) + &line(1060, 2, "leader", 2, 2000);
        let (c, dir) = cluster_with("stepdown", &[&n1, &n2]);
        assert!(check(&c).is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn two_leaders_in_one_term_fail() {
        let n1 = line(100, 3, "leader", 1, 0);
        let n2 = line(100, 3, "leader", 2, 0);
        let (c, dir) = cluster_with("twoleaders", &[&n1, &n2]);
        assert!(check(&c).unwrap_err().contains("term 3 had two leaders"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
