//! Watching pg_leader for a benchmark: one open connection per node, so that a poll costs a
//! query (well under a millisecond on loopback) rather than a psql process (tens of ms), and
//! the measured time is the cluster's, not the observer's.

use crate::cluster::Cluster;
use crate::run::Result;
use postgres::{Client, NoTls};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct SqlProbe<'a> {
    cluster: &'a Cluster,
    clients: BTreeMap<u32, Client>,
}

/// What one node answers: its term, whom it follows and whether it is the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Answer {
    term: i64,
    leader: Option<i32>,
    is_leader: bool,
}

impl<'a> SqlProbe<'a> {
    pub fn new(cluster: &'a Cluster) -> SqlProbe<'a> {
        SqlProbe {
            cluster,
            clients: BTreeMap::new(),
        }
    }

    fn connect(&self, node: u32) -> Result<Client> {
        postgres::Config::new()
            .host_path(&self.cluster.dir)
            .port(self.cluster.pg_port(node))
            .user("postgres")
            .dbname("postgres")
            .application_name("pg_leader-bench")
            .connect_timeout(Duration::from_secs(2))
            .connect(NoTls)
            .map_err(|e| format!("could not connect to node {node}: {e}"))
    }

    /// Asks one node; a broken connection (the node was killed) is dropped and opened again on
    /// the next call.
    fn ask(&mut self, node: u32) -> Result<Answer> {
        if !self.clients.contains_key(&node) {
            let client = self.connect(node)?;
            self.clients.insert(node, client);
        }
        let client = self.clients.get_mut(&node).expect("inserted above");
        let row = client.query_one(
            "SELECT term, leader_id, pg_leader_is_leader() FROM pg_leader_status()",
            &[],
        );
        match row {
            Ok(row) => Ok(Answer {
                term: row.get(0),
                leader: row.get(1),
                is_leader: row.get(2),
            }),
            Err(e) => {
                self.clients.remove(&node);
                Err(format!("node {node}: {e}"))
            }
        }
    }

    /// Forgets the connection to a node that is about to go away.
    pub fn forget(&mut self, node: u32) {
        self.clients.remove(&node);
    }

    /// The nodes among `nodes` that answer `pg_leader_is_leader()` = true right now (one sweep;
    /// nodes that do not answer are left out).
    pub fn leaders(&mut self, nodes: &[u32]) -> Vec<u32> {
        nodes
            .iter()
            .copied()
            .filter(|&n| self.ask(n).is_ok_and(|a| a.is_leader))
            .collect()
    }

    /// The leader and term when exactly one of `nodes` answers true and all name it in one term.
    pub fn agreed_leader(&mut self, nodes: &[u32]) -> Option<(u32, u64)> {
        let mut answers = Vec::with_capacity(nodes.len());
        for &n in nodes {
            answers.push((n, self.ask(n).ok()?));
        }
        let leaders: Vec<&(u32, Answer)> = answers.iter().filter(|(_, a)| a.is_leader).collect();
        let [(leader, first)] = leaders[..] else {
            return None;
        };
        let agreed = answers
            .iter()
            .all(|(_, a)| a.leader == Some(*leader as i32) && a.term == first.term);
        agreed.then_some((*leader, first.term as u64))
    }

    /// Polls every millisecond until one leader is agreed among `nodes`; the elapsed time is
    /// measured from `since`.
    pub fn wait_for_leader(
        &mut self,
        nodes: &[u32],
        since: Instant,
        timeout: Duration,
    ) -> Result<(u32, u64, Duration)> {
        loop {
            if let Some((leader, term)) = self.agreed_leader(nodes) {
                return Ok((leader, term, since.elapsed()));
            }
            if since.elapsed() > timeout {
                return Err(format!(
                    "no leader agreed by nodes {nodes:?} within {} s",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
