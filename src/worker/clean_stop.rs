//! A clean stop tells the next start how long it must still keep its promises
//! (`pg_leader_raft::restart`, `pg_leader_storage`'s `pg_leader.stopped`): a server restarted in
//! the same boot after `pg_ctl stop` or a package upgrade votes and campaigns as soon as its
//! last promise ends, not one blind election timeout later; after a crash or a reboot it still
//! waits in full.

use super::Node;
use crate::clock::{boot_id, boottime_now};
use pg_leader_raft::EarlierPromises;
use pg_leader_storage::Storage;

/// What this start knows of the node's earlier promises (`Storage::earlier_promises`); the
/// clean-stop record is taken (removed) so that it serves this start only.
pub(super) fn earlier_promises(storage: &Storage, me: u32) -> EarlierPromises {
    // Without a boot id nothing can be trusted, but a record must still be removed.
    let boot = boot_id().unwrap_or_default();
    let (earlier, error) = storage.earlier_promises(&boot);
    if let Some(e) = error {
        pgrx::warning!(
            "pg_leader: node {me} could not take its clean-stop record, so it waits a full election timeout: {e}"
        );
    }
    match earlier {
        // With the synchronous quorum a standby's vote compares the WAL it flushed, which it
        // under-reports after a start until its replay reads pg_wal back: the full wait keeps
        // it from voting in that time (README, "Synchronous quorum").
        EarlierPromises::EndAt(_) if crate::settings::synchronous_quorum() => {
            EarlierPromises::Unknown
        }
        EarlierPromises::EndAt(end) => {
            let left = end.saturating_since(boottime_now());
            pgrx::log!(
                "pg_leader: node {me} stopped cleanly in this boot: its promises end in {} ms, no longer wait",
                left.as_millis()
            );
            earlier
        }
        _ => earlier,
    }
}

impl Node {
    /// The last act of a clean stop, once nothing more will be handled: record when this
    /// node's promises end.
    pub(super) fn record_clean_stop(&self) {
        let me = self.raft.id();
        let Some(boot) = boot_id() else {
            return;
        };
        if let Err(e) = self
            .storage
            .record_clean_stop(&boot, self.raft.promises_end())
        {
            pgrx::log!(
                "pg_leader: node {me} could not record its clean stop (its next start waits a full election timeout): {e}"
            );
        }
    }
}
