//! The node's durable state: one file, `pg_leader.state`, in `pg_leader.state_dir`.
//!
//! ```text
//! magic "PGLS" | format u8 | length u32 | payload (bincode) | SHA-256 of all before it
//! ```
//! The payload holds the cluster name and node id it belongs to, the boot epoch, and the core's
//! `PersistedState` (term, vote, longest promise, log). Format 2 added the longest promise; a
//! format 1 file (written before) is still read, with the promise unknown (zero: the core then
//! waits its own election timeout after a start, as it did), and is rewritten as format 2. Every save writes `pg_leader.state.tmp`, fsyncs it,
//! renames it over the old file and fsyncs the directory, so a crash leaves either the old or the
//! new state, never a mix. A file that fails its checksum, or that belongs to another node or
//! cluster (copied by pg_basebackup or pg_rewind), is refused with a reason: the node then does
//! not vote rather than guess.

pub mod clock;
mod format1;
mod stop_record;

pub use stop_record::STOP_RECORD_FILE;

use pg_leader_raft::{NodeId, PersistedState, Ready};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "pg_leader.state";
const MAGIC: &[u8; 4] = b"PGLS";
const FORMAT: u8 = 2;
const HEADER: usize = 4 + 1 + 4;
const CHECKSUM: usize = 32;
/// The log holds a no-op per term and rare commands; 64 MiB is far beyond any real state.
const MAX_STATE: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    cluster_name: String,
    node_id: NodeId,
    /// Grows at every start; the transport uses it so that datagrams of an earlier boot are
    /// recognised as replays.
    boot_epoch: u64,
    state: PersistedState,
}

#[derive(Debug)]
pub enum StorageError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    Corrupt {
        path: PathBuf,
        why: &'static str,
    },
    NotOurs {
        path: PathBuf,
        cluster_name: String,
        node_id: NodeId,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, source } => {
                write!(f, "could not access \"{}\": {source}", path.display())
            }
            StorageError::Corrupt { path, why } => {
                write!(f, "state file \"{}\" is corrupt ({why})", path.display())
            }
            StorageError::NotOurs {
                path,
                cluster_name,
                node_id,
            } => write!(
                f,
                "state file \"{}\" belongs to node {node_id} of cluster \"{cluster_name}\"",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StorageError {}

pub struct Storage {
    dir: PathBuf,
    stored: Stored,
    /// `open` created the directory: this node never ran here before (`EarlierPromises::NeverRan`).
    created: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_STATE>()
}

impl Storage {
    /// Opens (or creates, mode 0700) `dir`, loads and checks the state, and records a new boot.
    pub fn open(dir: &Path, cluster_name: &str, node_id: NodeId) -> Result<Storage, StorageError> {
        let created = !dir.exists();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        let path = dir.join(STATE_FILE);
        let stored = match fs::read(&path) {
            Ok(bytes) => {
                let stored = decode(&bytes).map_err(|why| StorageError::Corrupt {
                    path: path.clone(),
                    why,
                })?;
                if stored.cluster_name != cluster_name || stored.node_id != node_id {
                    return Err(StorageError::NotOurs {
                        path,
                        cluster_name: stored.cluster_name,
                        node_id: stored.node_id,
                    });
                }
                stored
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Stored {
                cluster_name: cluster_name.to_string(),
                node_id,
                boot_epoch: 0,
                state: PersistedState::default(),
            },
            Err(e) => return Err(StorageError::Io { path, source: e }),
        };
        let mut storage = Storage {
            dir: dir.to_path_buf(),
            stored,
            created,
        };
        storage.stored.boot_epoch += 1;
        storage.write()?;
        Ok(storage)
    }

    pub fn persisted(&self) -> &PersistedState {
        &self.stored.state
    }

    /// True when this open created the state directory: the node never ran here before, so it
    /// made no promise. A directory that exists without a state file (removed by hand) is not
    /// new: what it held may have been lost.
    pub fn is_new(&self) -> bool {
        self.created
    }

    pub fn boot_epoch(&self) -> u64 {
        self.stored.boot_epoch
    }

    /// Makes a Ready's durable part durable; does nothing when it has none.
    pub fn save(&mut self, ready: &Ready) -> Result<(), StorageError> {
        if ready.hard_state.is_none() && ready.entries.is_empty() {
            return Ok(());
        }
        let before = self.stored.state.clone();
        self.stored.state.apply(ready);
        if let Err(e) = self.write() {
            // Nothing was made durable: keep the in-memory copy equal to the disk.
            self.stored.state = before;
            return Err(e);
        }
        Ok(())
    }

    fn write(&self) -> Result<(), StorageError> {
        write_atomically(&self.dir, STATE_FILE, &encode(&self.stored))
    }
}

/// Writes `name` in `dir` so that a crash leaves the old file or the new one, never a mix: a
/// temporary file, fsync'd, renamed over the old one, then the directory fsync'd.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

fn encode(stored: &Stored) -> Vec<u8> {
    let payload =
        bincode::serde::encode_to_vec(stored, bincode_config()).expect("state always encodes");
    frame(MAGIC, FORMAT, &payload)
}

/// Header, payload and checksum around an encoded payload of format `format`.
fn frame(magic: &[u8; 4], format: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + CHECKSUM);
    out.extend_from_slice(magic);
    out.push(format);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The format and payload inside `frame`'s envelope, checked.
fn unframe<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<(u8, &'a [u8]), &'static str> {
    if bytes.len() < HEADER + CHECKSUM {
        return Err("too short");
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch");
    }
    if &body[..4] != magic {
        return Err("not a pg_leader state file");
    }
    let len = u32::from_be_bytes(body[5..9].try_into().expect("4 bytes")) as usize;
    if HEADER + len != body.len() {
        return Err("length mismatch");
    }
    Ok((body[4], &body[HEADER..]))
}

fn decode(bytes: &[u8]) -> Result<Stored, &'static str> {
    let (format, payload) = unframe(MAGIC, bytes)?;
    match format {
        FORMAT => decode_payload::<Stored>(payload),
        format1::FORMAT => decode_payload::<format1::Stored>(payload).map(Stored::from),
        _ => Err("unknown format version"),
    }
}

fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, &'static str> {
    let (value, used): (T, usize) =
        bincode::serde::decode_from_slice(payload, bincode_config()).map_err(|_| "undecodable")?;
    if used != payload.len() {
        return Err("trailing bytes");
    }
    Ok(value)
}
