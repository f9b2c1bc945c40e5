//! The synchronous quorum on the PostgreSQL side (`pg_leader.synchronous = quorum`): every
//! server that bears data keeps `synchronous_standby_names = 'ANY k (pg_leader_<id>, ...)'`
//! over the other data-bearing voters, with `k` from the configurations that may elect
//! (`pg_leader_raft::synchronous`). On a standby the setting does nothing until it is promoted,
//! and then it is already right: no commit of the new primary is acknowledged before its own
//! list is in effect. The standbys are named by the `application_name` that
//! `failover::primary_conninfo` gives them.
//!
//! Written like `primary_conninfo` (`auto_conf`), only when the value in effect differs, and
//! written again a while later if the reload did not take it. Turned off, a list of ours is
//! cleared (one the operator wrote is left alone).
//!
//! A joining member's promotion to voter is held until the setting that covers it has been in
//! effect here for `SETTLE` (every walsender reloads on the same SIGHUP; the margin covers the
//! ones still busy with a message), so that no commit is acknowledged under a `k` too small
//! for the new configuration (`Raft::hold_voter_promotion`).

use super::auto_conf::{current_setting, set_setting};
use pg_leader_raft::{NodeId, Raft, WalPosition};
use std::time::{Duration, Instant};

const NAME: &str = "synchronous_standby_names";
/// A value written but not yet in effect is written again after this long.
const REWRITE_AFTER: Duration = Duration::from_secs(5);
/// How long the wanted value must have been in effect before a promotion that needs it.
const SETTLE: Duration = Duration::from_millis(500);

/// The worker's memory of what it wrote (only to avoid writing too often: the value in effect
/// decides).
#[derive(Default)]
pub struct SynchronousStandbys {
    written: Option<(String, Instant)>,
    in_effect: Option<(String, Instant)>,
}

/// What one turn did or found.
#[derive(Default)]
pub struct Turn {
    /// The value written (for the log and the history).
    pub written: Option<String>,
    /// Hold a joining member's promotion: the setting for it is not settled.
    pub hold_promotion: bool,
    /// Why the setting could not be written.
    pub note: Option<String>,
}

/// A value pg_leader wrote: `ANY k (...)` over `pg_leader_<id>` names only.
fn is_ours(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("ANY ") else {
        return false;
    };
    let Some((_, list)) = rest.split_once(" (") else {
        return false;
    };
    list.trim_end_matches(')')
        .split(", ")
        .all(|n| n.starts_with("pg_leader_"))
}

impl SynchronousStandbys {
    pub fn drive(&mut self, raft: &Raft, local: &WalPosition, quorum: bool) -> Turn {
        let mut turn = Turn::default();
        let current = current_setting(NAME);
        let wanted = if quorum {
            if !local.known() {
                turn.hold_promotion = true;
                return turn;
            }
            // A member whose position says it is another database system (a witness) has no
            // WAL to wait for; one not heard of yet is listed (it may be a standby).
            let data_bearing = |id: NodeId| {
                raft.heard_position(id)
                    .is_none_or(|w| !w.known() || w.system == local.system)
            };
            raft.synchronous_setting(None, data_bearing).to_string()
        } else if is_ours(&current) {
            String::new()
        } else {
            self.written = None;
            return turn;
        };
        if current == wanted {
            self.written = None;
            let since = match &self.in_effect {
                Some((v, at)) if *v == wanted => *at,
                _ => {
                    self.in_effect = Some((wanted, Instant::now()));
                    Instant::now()
                }
            };
            turn.hold_promotion = quorum && since.elapsed() < SETTLE;
            return turn;
        }
        turn.hold_promotion = quorum;
        self.in_effect = None;
        let due = match &self.written {
            Some((w, at)) => *w != wanted || at.elapsed() >= REWRITE_AFTER,
            None => true,
        };
        if due {
            match set_setting(NAME, &wanted) {
                Ok(()) => {
                    self.written = Some((wanted.clone(), Instant::now()));
                    turn.written = Some(wanted);
                }
                Err(e) => turn.note = Some(format!("could not set {NAME}: {e}")),
            }
        }
        turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lists_of_pg_leader_standbys_are_taken_for_ours() {
        assert!(is_ours("ANY 1 (pg_leader_2, pg_leader_3)"));
        assert!(is_ours(
            "ANY 2 (pg_leader_1, pg_leader_2, pg_leader_4, pg_leader_5)"
        ));
        assert!(!is_ours(""));
        assert!(!is_ours("FIRST 1 (pg_leader_2)"));
        assert!(!is_ours("ANY 1 (pg_leader_2, reporting)"));
        assert!(!is_ours("*"));
    }
}
