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
//!   a primary and `pg_leader.auto_rejoin` is on. It returns at once, after launching the script;
//!   the server is stopped within seconds, which ends the worker too. `Err` when a rejoin is
//!   running (the lock is held), when this term and leader were refused before, or when an
//!   earlier rejoin failed. Call from the worker's main thread only (it reads PostgreSQL's
//!   globals). It never launches a second script while one runs: the work directory's lock is
//!   taken before the marker is written and handed down to the script.
//!
//! # What cannot be recovered
//! An interrupted or failed pg_rewind: the data directory may be partly rewound, and PostgreSQL
//! documents no way back; the marker says `failed`, the server is left stopped, and this node's
//! own files stay in the work directory for the rebuild (pg_basebackup from the leader, then
//! put node.conf, postgresql.auto.conf and the state directory back). A server started by hand
//! between the rewind and the restore of its files runs with the leader's configuration:
//! rejoin.sh then refuses to go on.

mod marker;
mod plan;

pub use marker::{Marker, RejoinOutcome, Step};
pub use plan::{application_name, work_dir, RejoinPaths, RejoinPlan};

use crate::settings;
use pgrx::pg_sys;
use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The script, as shipped.
pub const SCRIPT: &str = include_str!("rejoin.sh");

/// The file descriptor under which the script finds the lock already taken for it.
const LOCK_FD: i32 = 9;

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
    plan::check_conninfo(&plan.source_conninfo)?;
    let paths = this_server(&settings::NodeSettings::state_dir());
    let work = paths.work_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&work)
        .map_err(|e| format!("could not create \"{}\": {e}", work.display()))?;
    let lock = take_lock(&paths.lock())?;
    let existing = read_marker(&paths.marker())?;
    marker::may_start(existing.as_ref(), plan.term, plan.leader)?;
    write_atomically(
        &paths.marker(),
        &Marker::planned(
            plan.term,
            plan.leader,
            &plan.source_conninfo,
            &application_name(plan.node_id),
        ),
        0o600,
    )?;
    write_atomically(&paths.script(), SCRIPT, 0o700)?;
    launch(&paths, &plan::script_args(plan, &paths), &lock)
    // `lock` closes here; the script holds the same lock through its inherited descriptor.
}

/// What an earlier rejoin left for the worker that starts now; see the module's contract.
pub fn on_worker_start(state_dir: &Path) -> Option<RejoinOutcome> {
    let work = work_dir(&settings::data_directory(), state_dir);
    let marker_path = work.join("marker");
    let found = match read_marker(&marker_path) {
        Ok(found) => found?,
        Err(e) => {
            return Some(RejoinOutcome::Failed {
                reason: format!("could not read the rejoin marker: {e}"),
            })
        }
    };
    let running = take_lock(&work.join("lock")).is_err();
    let (outcome, remove) = marker::outcome(&found, running);
    if remove {
        // Reported once: a failure to remove only repeats the report at the next start.
        let _ = fs::remove_file(&marker_path);
    }
    Some(outcome)
}

/// The paths of the server this worker runs in.
fn this_server(state_dir: &Path) -> RejoinPaths {
    let data_dir = settings::data_directory();
    let state_dir = if state_dir.is_relative() {
        data_dir.join(state_dir)
    } else {
        state_dir.to_path_buf()
    };
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

/// An exclusive, non-blocking flock on the work directory's lock file.
fn take_lock(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("could not open \"{}\": {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "a rejoin is already running (\"{}\" is locked; its log: \"{}\")",
            path.display(),
            path.with_file_name("rejoin.log").display()
        ));
    }
    Ok(file)
}

fn read_marker(path: &Path) -> Result<Option<Marker>, String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Marker::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("could not read \"{}\": {e}", path.display())),
    }
}

/// Temporary file, fsync, rename, fsync of the directory: the old content or the new.
fn write_atomically(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let err = |e: std::io::Error| format!("could not write \"{}\": {e}", path.display());
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).map_err(err)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(err)?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
        file.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// Starts `bash rejoin.sh ARGS` in a session of its own, as a grandchild that nobody waits for.
///
/// PostgreSQL signals the whole process group of its children, and the script stops this very
/// server: without `setsid` it would die with the postmaster it stops. The intermediate shell
/// exits at once (and is reaped here), so the script never lingers as a zombie of the worker.
fn launch(paths: &RejoinPaths, args: &[String], lock: &File) -> Result<(), String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.script_log())
        .map_err(|e| format!("could not open \"{}\": {e}", paths.script_log().display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("could not open the rejoin log twice: {e}"))?;
    let lock_fd = lock.as_raw_fd();
    let path = std::env::var("PATH").unwrap_or_default();
    let mut command = Command::new("/bin/bash");
    command
        .arg("-c")
        .arg("\"$@\" &")
        .arg("pg_leader-rejoin")
        .arg("/bin/bash")
        .arg(paths.script())
        .args(args)
        .env("PG_LEADER_REJOIN_LOCK_FD", LOCK_FD.to_string())
        .env(
            "PATH",
            format!("{path}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        )
        .current_dir(paths.work_dir())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, sigprocmask, signal,
    // dup2.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A background worker runs with signals blocked and some ignored; the script and
            // the programs it runs must get the defaults.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            for signal in [
                libc::SIGHUP,
                libc::SIGINT,
                libc::SIGQUIT,
                libc::SIGTERM,
                libc::SIGPIPE,
                libc::SIGCHLD,
                libc::SIGALRM,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ] {
                libc::signal(signal, libc::SIG_DFL);
            }
            // dup2 leaves the new descriptor open across exec: the script inherits the lock.
            // Already there, it still carries close-on-exec, which is cleared instead.
            let inherited = if lock_fd == LOCK_FD {
                libc::fcntl(LOCK_FD, libc::F_SETFD, 0)
            } else {
                libc::dup2(lock_fd, LOCK_FD)
            };
            if inherited < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = command
        .status()
        .map_err(|e| format!("could not launch the rejoin script: {e}"))?;
    if !status.success() {
        return Err(format!("the rejoin script's launcher exited with {status}"));
    }
    Ok(())
}
