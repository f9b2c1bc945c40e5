//! `pg_leader.stopped`: what a clean stop leaves for the next start in the same boot, so that it
//! waits only for what is left of the node's promises instead of a blind election timeout
//! (`pg_leader_raft::restart`).
//!
//! Written after the node's last message (the worker handles nothing more), with the boot id,
//! since `CLOCK_BOOTTIME` starts again at each boot, and the boot epoch of the run that wrote it.
//! Trusted only by the very next start (whose `Storage::open` raised the epoch by one): a record
//! that outlived its start (its removal failed, or a later stop could not write a new one) is
//! older than the promises made since, and is never trusted again. Taken by the next start:
//! removed, and the removal made durable, before the node sends anything. Anything doubtful
//! (another boot, another run, another node, a damaged file) counts as no record: the full wait.

use crate::{decode_payload, frame, io_err, unframe, write_atomically, Storage, StorageError};
use pg_leader_raft::{EarlierPromises, Instant, NodeId};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;

pub const STOP_RECORD_FILE: &str = "pg_leader.stopped";
const MAGIC: &[u8; 4] = b"PGLC";
const FORMAT: u8 = 1;

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StopRecord {
    cluster_name: String,
    node_id: NodeId,
    boot_id: String,
    /// The `boot_epoch` of the run that stopped.
    boot_epoch: u64,
    /// `CLOCK_BOOTTIME` microseconds.
    promises_end: u64,
}

impl Storage {
    /// Records that this node stops cleanly in boot `boot_id` and that none of its promises
    /// runs past `promises_end` (on `CLOCK_BOOTTIME`).
    pub fn record_clean_stop(
        &self,
        boot_id: &str,
        promises_end: Instant,
    ) -> Result<(), StorageError> {
        let record = StopRecord {
            cluster_name: self.stored.cluster_name.clone(),
            node_id: self.stored.node_id,
            boot_id: boot_id.to_string(),
            boot_epoch: self.stored.boot_epoch,
            promises_end: promises_end.as_micros(),
        };
        let payload = bincode::serde::encode_to_vec(&record, crate::bincode_config())
            .expect("a stop record always encodes");
        write_atomically(&self.dir, STOP_RECORD_FILE, &frame(MAGIC, FORMAT, &payload))
    }

    /// What this start knows of the node's earlier promises: the clean-stop record's end when
    /// there is one to trust, `NeverRan` for a state directory created just now, else `Unknown`.
    /// The record is taken in every case; an error is returned with `Unknown` alongside.
    pub fn earlier_promises(&self, boot_id: &str) -> (EarlierPromises, Option<StorageError>) {
        match self.take_clean_stop(boot_id) {
            Ok(Some(end)) => (EarlierPromises::EndAt(end), None),
            Ok(None) if self.is_new() => (EarlierPromises::NeverRan, None),
            Ok(None) => (EarlierPromises::Unknown, None),
            Err(e) => (EarlierPromises::Unknown, Some(e)),
        }
    }

    /// Takes the record a clean stop of this node left in boot `boot_id`: the end of its
    /// promises, or `None` when there is none to trust. The file is gone, durably, when this
    /// returns `Ok`; an `Err` means it may still be there: the caller waits in full, and no later
    /// start trusts it (it names an earlier run).
    pub fn take_clean_stop(&self, boot_id: &str) -> Result<Option<Instant>, StorageError> {
        let path = self.dir.join(STOP_RECORD_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        fs::remove_file(&path).map_err(io_err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        let record = unframe(MAGIC, &bytes).and_then(|(format, payload)| match format {
            FORMAT => decode_payload::<StopRecord>(payload),
            _ => Err("unknown format version"),
        });
        Ok(record.ok().and_then(|r| {
            let ours = r.cluster_name == self.stored.cluster_name
                && r.node_id == self.stored.node_id
                && r.boot_id == boot_id
                && r.boot_epoch + 1 == self.stored.boot_epoch;
            ours.then_some(Instant::from_micros(r.promises_end))
        }))
    }
}
