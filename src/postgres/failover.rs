//! PostgreSQL follows the election (`pg_leader.auto_failover`): a standby that leads promotes
//! itself, standbys stream from the leader, and a former primary is told (or, with
//! `pg_leader.auto_rejoin`, made) to rebuild itself as a standby of the leader.
//!
//! Every action is decided afresh each loop turn from facts (the Raft role and lease, what the
//! others said of their data, this server's recovery state and settings), so a worker restarted
//! in the middle of one finds the job half done and finishes it, and an action whose effect is
//! already there is not repeated:
//! - promotion: the leader holds the lease, is in recovery, has replayed all the WAL it
//!   received (or has led for one election timeout: PostgreSQL replays the rest itself before
//!   the promotion ends), and knows no live primary it should hand back to instead: none of the voters
//!   that answered it within the election timeout is a primary that may lead
//!   (`Raft::live_primary`; the leader hands over to such a one, `preference`), and it has
//!   heard every other voter since its election or one heartbeat interval passed without a
//!   word from those it has not (a live primary answers the first heartbeat at once). PostgreSQL's own mechanism does it (the `promote` file and SIGUSR1 to the
//!   postmaster, as `pg_ctl promote`), which needs no connection and returns at once; once
//!   asked, PostgreSQL finishes the promotion even if this worker dies. Asked again only if the
//!   server is still in recovery a while later.
//! - re-pointing: `primary_conninfo` in postgresql.auto.conf (the file ALTER SYSTEM writes,
//!   under its lock, written whole and renamed), then SIGHUP to the postmaster: PostgreSQL 13
//!   and later restart the WAL receiver on a changed `primary_conninfo`. Written only when the
//!   setting in effect differs.
//! - a former primary: a server out of recovery that follows a leader of its own database
//!   system on a newer timeline. Its commits are fenced (it holds no lease); it must be
//!   rebuilt with pg_rewind (`rejoin`).
//! - a standby that replayed WAL the leader's history lacks (`timeline_history`): rebuilt the
//!   same way.

use super::auto_conf::{current_setting, set_setting};
use super::timeline_history;
use pg_leader_raft::{NodeId, Raft, Role, WalPosition};
use pgrx::pg_sys;
use std::time::{Duration, Instant};

/// A promotion asked for and still not visible is asked again after this long.
const PROMOTE_RETRY: Duration = Duration::from_secs(2);
/// A `primary_conninfo` written but not yet in effect is written again after this long.
const REPOINT_RETRY: Duration = Duration::from_secs(5);

/// What the worker did to PostgreSQL this turn, for the log and the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Asked PostgreSQL to promote (the first time in this term).
    Promoted { term: u64 },
    /// Set `primary_conninfo` to stream from `leader`.
    Repointed { leader: NodeId, term: u64 },
}

/// A former primary, or a standby whose WAL left the leader's history, that must be rebuilt
/// as a standby of `leader`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejoinDue {
    pub leader: NodeId,
    pub term: u64,
    pub source_conninfo: String,
    /// A standby whose WAL left the leader's history, rather than a former primary.
    pub diverged_standby: bool,
}

impl RejoinDue {
    /// How the log names this server's state.
    pub fn subject(&self) -> &'static str {
        if self.diverged_standby {
            "standby with WAL the leader's history lacks"
        } else {
            "former primary"
        }
    }
}

/// The worker's memory of what it asked PostgreSQL to do (only to avoid asking too often:
/// the facts decide whether to act).
#[derive(Default)]
pub struct Failover {
    promote_asked: Option<(u64, Instant)>,
    repoint_written: Option<(String, Instant)>,
}

/// Where this server stands, read from shared memory.
pub struct Local {
    pub wal: WalPosition,
    /// On a standby: the WAL received (flushed by the WAL receiver) and replayed.
    pub received: u64,
    pub replayed: u64,
}

impl Local {
    pub fn read() -> Local {
        let wal = crate::wal::current_position();
        let (received, replayed) = if wal.in_recovery {
            // SAFETY: both read shared memory under their spinlocks, callable by any process.
            unsafe {
                (
                    pg_sys::GetWalRcvFlushRecPtr(std::ptr::null_mut(), std::ptr::null_mut()),
                    pg_sys::GetXLogReplayRecPtr(std::ptr::null_mut()),
                )
            }
        } else {
            (0, 0)
        };
        Local {
            wal,
            received,
            replayed,
        }
    }

    /// A standby ready to promote: nothing received is left to replay.
    pub fn replay_caught_up(&self) -> bool {
        self.replayed >= self.received
    }
}

impl Failover {
    /// One turn: promote, re-point, or say a rejoin is due. `may_promote`: the leader holds the
    /// lease and knows of no live primary to hand back to (see the module documentation).
    pub fn drive(
        &mut self,
        raft: &Raft,
        local: &Local,
        may_promote: bool,
        replay_wait_over: bool,
    ) -> Turn {
        let status = raft.status();
        let term = status.term.0;
        let mut turn = Turn::default();
        if !local.wal.known() {
            return turn;
        }
        match (status.role, status.leader_id) {
            (Role::Leader, _) if local.wal.in_recovery && may_promote => {
                if !local.replay_caught_up() && !replay_wait_over {
                    turn.note = Some(format!(
                        "leader in recovery: replaying WAL before promotion ({} of {})",
                        lsn(local.replayed),
                        lsn(local.received)
                    ));
                    return turn;
                }
                let due = match self.promote_asked {
                    Some((t, at)) => t != term || at.elapsed() >= PROMOTE_RETRY,
                    None => true,
                };
                if due {
                    let first = self.promote_asked.is_none_or(|(t, _)| t != term);
                    match ask_promotion() {
                        Ok(()) => {
                            self.promote_asked = Some((term, Instant::now()));
                            if first {
                                turn.action = Some(Action::Promoted { term });
                            }
                        }
                        Err(e) => turn.note = Some(format!("could not ask for promotion: {e}")),
                    }
                }
            }
            (Role::Follower, Some(leader)) if leader != status.id => {
                let Some(theirs) = raft.heard_position(leader) else {
                    return turn;
                };
                // A witness or a server of another system has nothing to stream from.
                if theirs.system != local.wal.system {
                    return turn;
                }
                let Some(conninfo) = raft.advert_of(leader) else {
                    turn.note = Some(format!(
                        "the leader (node {leader}) has not said how to reach its PostgreSQL yet"
                    ));
                    return turn;
                };
                if local.wal.in_recovery {
                    // A standby with WAL the leader's history lacks cannot stream from it:
                    // rewound like a former primary.
                    let pg_wal = crate::settings::data_directory().join("pg_wal");
                    if !theirs.in_recovery
                        && timeline_history::has_left_history(
                            &pg_wal,
                            theirs.timeline,
                            local.wal.timeline,
                            local.replayed,
                        ) == Some(true)
                    {
                        turn.rejoin = Some(RejoinDue {
                            leader,
                            term,
                            source_conninfo: conninfo.to_string(),
                            diverged_standby: true,
                        });
                        return turn;
                    }
                    let wanted = primary_conninfo(conninfo, status.id);
                    if current_setting("primary_conninfo") == wanted {
                        self.repoint_written = None;
                        return turn;
                    }
                    let due = match &self.repoint_written {
                        Some((w, at)) => *w != wanted || at.elapsed() >= REPOINT_RETRY,
                        None => true,
                    };
                    if due {
                        match set_setting("primary_conninfo", &wanted) {
                            Ok(()) => {
                                self.repoint_written = Some((wanted, Instant::now()));
                                turn.action = Some(Action::Repointed { leader, term });
                            }
                            Err(e) => {
                                turn.note = Some(format!("could not set primary_conninfo: {e}"))
                            }
                        }
                    }
                } else if !theirs.in_recovery && theirs.timeline > local.wal.timeline {
                    turn.rejoin = Some(RejoinDue {
                        leader,
                        term,
                        source_conninfo: conninfo.to_string(),
                        diverged_standby: false,
                    });
                }
            }
            _ => {}
        }
        turn
    }
}

/// What one turn did or found.
#[derive(Default)]
pub struct Turn {
    pub action: Option<Action>,
    pub rejoin: Option<RejoinDue>,
    /// Why nothing could be done yet, for `pg_leader_status().error`.
    pub note: Option<String>,
}

fn lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
}

/// The leader's conninfo with this standby's name, so that the primary can tell its standbys
/// apart (`pg_stat_replication.application_name`, `synchronous_standby_names`).
pub fn primary_conninfo(leader_conninfo: &str, me: NodeId) -> String {
    let has_name = leader_conninfo
        .split_whitespace()
        .any(|kv| kv.trim_start().starts_with("application_name"));
    if has_name {
        leader_conninfo.to_string()
    } else {
        format!("{leader_conninfo} application_name=pg_leader_{me}")
    }
}

/// PostgreSQL's own promotion request: what `pg_ctl promote` does.
fn ask_promotion() -> Result<(), String> {
    let file = crate::settings::data_directory().join("promote");
    std::fs::write(&file, b"").map_err(|e| format!("{}: {e}", file.display()))?;
    super::auto_conf::signal_postmaster(libc::SIGUSR1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standby_names_itself_unless_the_conninfo_does() {
        assert_eq!(
            primary_conninfo("host=h port=5", NodeId(3)),
            "host=h port=5 application_name=pg_leader_3"
        );
        assert_eq!(
            primary_conninfo("host=h application_name=x", NodeId(3)),
            "host=h application_name=x"
        );
    }
}
