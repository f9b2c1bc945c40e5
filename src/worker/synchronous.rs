//! The worker's side of the synchronous quorum (`pg_leader.synchronous`): the setting into the
//! core (the vote rule), `synchronous_standby_names` into PostgreSQL
//! (`postgres::synchronous`), and the hold on a joining member's promotion until the setting
//! that covers it is in effect.

use super::Node;
use crate::clock::boottime_now;

impl Node {
    /// On reload: the vote rule follows the setting.
    pub(super) fn reload_synchronous(&mut self) {
        let quorum = crate::settings::synchronous_quorum();
        if quorum != self.raft.config().synchronous_quorum {
            self.raft.set_synchronous_quorum(quorum);
            pgrx::log!(
                "pg_leader: pg_leader.synchronous is {}",
                if quorum {
                    "quorum: commits wait for ANY k of the other voters, and votes go only to servers holding every acknowledged commit"
                } else {
                    "off"
                }
            );
        }
    }

    /// One turn: keep `synchronous_standby_names` right for the configuration.
    pub(super) fn follow_synchronous(&mut self) {
        let quorum = crate::settings::synchronous_quorum();
        let local = crate::wal::current_position();
        let turn = self.synchronous.drive(&self.raft, &local, quorum);
        self.raft.hold_voter_promotion(turn.hold_promotion);
        if let Some(value) = &turn.written {
            pgrx::log!("pg_leader: synchronous_standby_names set to '{value}' and reloaded");
            let status = self.raft.status();
            self.history.action(
                boottime_now(),
                &status,
                &format!("synchronous_standby_names = '{value}'"),
            );
        }
        if let Some(note) = &turn.note {
            pgrx::warning!("pg_leader: {note}");
        }
    }
}
