//! The failover invariants the database model is checked against after every step:
//! (a) at most one database acknowledges commits at any real instant (invariant 8, the write
//! fence: never two primaries that both hold a lease at once);
//! (b) a server promotes only while it holds the lease, and at most once per term it leads;
//! (e) a timeline id names one history (checked by `Histories::create`);
//! (f) no promotion starts while the server's applied state says maintenance mode is on.
//! The liveness check (c) and the count of lost commits (d) are in `failover`.

use crate::checker::Violation;
use pg_leader_raft::{NodeId, Term};
use std::collections::HashSet;

#[derive(Clone, Debug, Default)]
pub struct FailoverChecker {
    /// Per server: the last stretch of real time `[from, to)` during which it acknowledged
    /// commits.
    stretches: Vec<Option<(u64, u64)>>,
    /// Every (server, term) in which a promotion started.
    promotions: HashSet<(NodeId, Term)>,
}

impl FailoverChecker {
    pub fn new(servers: usize) -> FailoverChecker {
        FailoverChecker {
            stretches: vec![None; servers],
            promotions: HashSet::new(),
        }
    }

    /// Server `i` acknowledged commits during `[from, to)`: no other server may have during
    /// any part of it. Steps come in time order, so each server's last stretch is the only one
    /// that can overlap a new one.
    pub fn acknowledged(&mut self, i: usize, from: u64, to: u64) -> Result<(), Violation> {
        for (j, stretch) in self.stretches.iter().enumerate() {
            if let Some((a, b)) = stretch {
                if j != i && from < *b && *a < to {
                    return Err(format!(
                        "two primaries acknowledge commits at once: node {} during [{a}, {b})us and node {} during [{from}, {to})us",
                        j + 1,
                        i + 1
                    ));
                }
            }
        }
        self.stretches[i] = match self.stretches[i] {
            Some((a, b)) if b == from => Some((a, to)),
            _ => Some((from, to)),
        };
        Ok(())
    }

    /// Server `node` starts promoting its database in `term`: it must hold the lease now, and
    /// not have promoted in this term before.
    pub fn promotion_started(
        &mut self,
        node: NodeId,
        term: Term,
        holds_lease: bool,
    ) -> Result<(), Violation> {
        if !holds_lease {
            return Err(format!(
                "node {node} promotes in term {term} without holding the lease"
            ));
        }
        if !self.promotions.insert((node, term)) {
            return Err(format!("node {node} promotes twice in term {term}"));
        }
        Ok(())
    }

    /// (f): server `node` starts promoting while the log it applied says `paused`.
    pub fn no_promotion_in_maintenance(
        &self,
        node: NodeId,
        term: Term,
        paused: bool,
    ) -> Result<(), Violation> {
        if paused {
            return Err(format!(
                "node {node} promotes in term {term} while maintenance mode is on"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_acknowledgements_of_two_servers_are_caught() {
        let mut c = FailoverChecker::new(3);
        c.acknowledged(0, 0, 100).unwrap();
        c.acknowledged(0, 100, 200).unwrap();
        c.acknowledged(1, 200, 300).unwrap();
        let v = c.acknowledged(2, 250, 260).unwrap_err();
        assert!(v.contains("two primaries"), "{v}");
        assert!(
            c.acknowledged(0, 150, 201).is_err(),
            "overlaps node 2's stretch"
        );
    }

    #[test]
    fn a_promotion_without_the_lease_or_twice_in_a_term_is_caught() {
        let mut c = FailoverChecker::new(3);
        c.promotion_started(NodeId(1), Term(2), true).unwrap();
        assert!(c.promotion_started(NodeId(1), Term(2), true).is_err());
        assert!(c.promotion_started(NodeId(2), Term(3), false).is_err());
        c.promotion_started(NodeId(1), Term(4), true).unwrap();
    }
}
