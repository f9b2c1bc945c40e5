//! Rejoin: a former primary rebuilt as a streaming standby of the leader with pg_rewind, keeping
//! its own configuration files and pg_leader state (design.md, "Traps": state copied from
//! another node must never be taken as this node's own).
//!
//! The work is done by one shell script, `rejoin.sh` (embedded here, and in `pg_leader-cluster
//! rejoin`): stop the server, save its own files, `pg_rewind --dry-run`, `pg_rewind`, put the
//! files back, `standby.signal` and `primary_conninfo`, start. It stops the very server that runs
//! the worker, so it runs detached, in a session of its own, and records every step in a marker
//! file outside the data directory; the restarted worker reads the outcome there.
//!
//! # Contract for the worker
//! - [`on_worker_start`]`(state_dir)`, once, when the worker starts (before it may plan a new
//!   rejoin): `Done` means this server just came back as a standby of that leader (log it at
//!   LOG; the marker is gone). `Refused` (nothing was changed: the server ran on as it was)
//!   and `Failed` (an operator must repair, see the reason) keep their marker: report the
//!   reason (`pg_leader_status().error`) and do not retry the same term and leader. `InProgress`
//!   means a script runs (`running`) or was interrupted; wait, or call `start` again to resume.
//! - [`possible`]`()` before planning: `Err` names the setting that forbids pg_rewind
//!   (`wal_log_hints = off` and no data checksums) or the missing program; report it, do not start.
//! - [`start`]`(&plan)` when this server is a primary, not the leader, the leader is known, is
//!   a primary and `pg_leader.auto_rejoin` is on. The plan: the leader's term and id, its
//!   advertised conninfo (`pg_leader.conninfo` on the leader, with a dbname), and this server's
//!   node id, which names it on the leader as [`application_name`]`(id)` = `pg_leader_<id>`
//!   (use the same name in `synchronous_standby_names`). It returns at once, after launching the script;
//!   the server is stopped within seconds, which ends the worker too. `Err` when a rejoin is
//!   running (the lock is held), when this term and leader were refused before, or when an
//!   earlier rejoin failed. Call from the worker's main thread only (it reads PostgreSQL's
//!   globals). It never launches a second script while one runs: the work directory's lock is
//!   taken before the marker is written and handed down to the script.
//!
//! Files: `<data dir>.pg_leader-rejoin/` (or `<state dir>/rejoin/` when the state directory is
//! outside the data directory) holds `marker`, `lock`, `rejoin.log` (the script's output),
//! `rejoin.sh` and, during a rejoin, `saved/`. An operator's `pg_leader-cluster rejoin` or a
//! rerun of the script by hand uses the same files and lock, so either finishes the other's
//! interrupted run, and its `done` is reported by the next `on_worker_start`.
//!
//! # What cannot be recovered
//! An interrupted or failed pg_rewind: the data directory may be partly rewound, and PostgreSQL
//! documents no way back; the marker says `failed`, the server is left stopped, and this node's
//! own files stay in the work directory for the rebuild (pg_basebackup from the leader, then
//! put node.conf, postgresql.auto.conf and the state directory back). A server started by hand
//! between the rewind and the restore of its files runs with the leader's configuration:
//! rejoin.sh then refuses to go on.

mod launch;
mod marker;
mod plan;

pub use marker::{Marker, RejoinOutcome, Step};
pub use plan::{application_name, work_dir, RejoinPaths, RejoinPlan};

use crate::settings;
use pgrx::pg_sys;
use std::ffi::CStr;
use std::fs;
use std::path::{Path, PathBuf};

/// The script, as shipped.
pub const SCRIPT: &str = include_str!("rejoin.sh");

/// Whether pg_rewind can work on this server: it needs `wal_log_hints = on` or data checksums
/// (to know which pages changed after the divergence), and the program itself.
pub fn possible() -> Result<(), String> {
    // SAFETY: both read settings of the running server; the worker calls from its main thread.
    let hints = unsafe {
        let value = pg_sys::GetConfigOption(c"wal_log_hints".as_ptr(), true, false);
        !value.is_null() && CStr::from_ptr(value).to_bytes() == b"on"
    };
    let checksums = unsafe { pg_sys::DataChecksumsEnabled() };
    if !hints && !checksums {
        return Err("pg_rewind needs wal_log_hints = on or data checksums: set wal_log_hints = on and restart, or rebuild this server with pg_basebackup".into());
    }
    let rewind = bin_dir().join("pg_rewind");
    if !rewind.is_file() {
        return Err(format!(
            "pg_rewind is not installed: \"{}\" does not exist",
            rewind.display()
        ));
    }
    Ok(())
}

/// Launches the rejoin for `plan`, detached; see the module's contract.
pub fn start(plan: &RejoinPlan) -> Result<(), String> {
    launch::start_with(plan, &this_server(&settings::NodeSettings::state_dir()))
}

/// What an earlier rejoin left for the worker that starts now; see the module's contract.
pub fn on_worker_start(state_dir: &Path) -> Option<RejoinOutcome> {
    let data_dir = physical(&settings::data_directory());
    launch::outcome_at(&work_dir(&data_dir, &physical(&data_dir.join(state_dir))))
}

/// A path with its symbolic links resolved, as rejoin.sh resolves them (`pwd -P`), so that the
/// worker, the script and an operator's rerun agree on one work directory and one lock. A path
/// that does not exist yet is kept as it is.
fn physical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The paths of the server this worker runs in.
fn this_server(state_dir: &Path) -> RejoinPaths {
    let data_dir = physical(&settings::data_directory());
    // join keeps an absolute state directory as it is.
    let state_dir = physical(&data_dir.join(state_dir));
    let work = work_dir(&data_dir, &state_dir);
    RejoinPaths {
        server_log: server_log().unwrap_or_else(|| work.join("server.log")),
        data_dir,
        state_dir,
        bin_dir: bin_dir(),
    }
}

/// The directory of the running postgres executable (`my_exec_path`).
fn bin_dir() -> PathBuf {
    // SAFETY: my_exec_path is a NUL-terminated array filled in at the postmaster's start.
    let exe = unsafe { CStr::from_ptr(std::ptr::addr_of!(pg_sys::my_exec_path).cast()) };
    PathBuf::from(exe.to_string_lossy().into_owned())
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where the postmaster's standard error goes, when that is a log file.
fn server_log() -> Option<PathBuf> {
    // SAFETY: PostmasterPid is set before any worker starts.
    let pid = unsafe { pg_sys::PostmasterPid };
    let link = fs::read_link(format!("/proc/{pid}/fd/2")).ok()?;
    plan::log_from_stderr_link(&link)
}
