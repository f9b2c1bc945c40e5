//! Launching rejoin.sh detached under the work directory's lock, and reading what it left.
//! No PostgreSQL calls: the caller resolves the paths (tested here against stand-ins for
//! PostgreSQL's programs).

use super::marker::{self, Marker, RejoinOutcome};
use super::plan::{self, application_name, RejoinPaths, RejoinPlan};
use super::SCRIPT;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The file descriptor under which the script finds the lock already taken for it.
const LOCK_FD: i32 = 9;

/// `start` for the server at `paths`.
pub fn start_with(plan: &RejoinPlan, paths: &RejoinPaths) -> Result<(), String> {
    plan::check_conninfo(&plan.source_conninfo)?;
    let work = paths.work_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&work)
        .map_err(|e| format!("could not create \"{}\": {e}", work.display()))?;
    let lock = take_lock(&paths.lock())?;
    let existing = read_marker(&paths.marker())?;
    marker::may_start(existing.as_ref(), plan.term, plan.leader)?;
    if marker::needs_new_plan(existing.as_ref()) {
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
    }
    write_atomically(&paths.script(), SCRIPT, 0o700)?;
    launch(paths, &plan::script_args(plan, paths), &lock)
    // `lock` closes here; the script holds the same lock through its inherited descriptor.
}

/// `on_worker_start` for the work directory `work`.
pub fn outcome_at(work: &Path) -> Option<RejoinOutcome> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// Stand-ins for PostgreSQL's programs, shared with crates/cluster's tests of the script.
    const STAND_INS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/rejoin");

    /// A running "server": a data directory with its own files, stand-in programs, and the
    /// paths `start` would resolve for it.
    struct Server {
        root: PathBuf,
        paths: RejoinPaths,
    }

    impl Server {
        fn new(name: &str) -> Server {
            let root = std::env::temp_dir().join(format!(
                "pg_leader-rejoin-launch-{name}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&root);
            for dir in ["data/pg_leader", "fake"] {
                fs::create_dir_all(root.join(dir)).unwrap();
            }
            for (file, text) in [
                ("data/PG_VERSION", "15\n"),
                ("data/node.conf", "pg_leader.node_id = 1\n"),
                ("data/pg_leader/pg_leader.state", "node 1's\n"),
                ("fake/running", ""),
            ] {
                fs::write(root.join(file), text).unwrap();
            }
            let paths = RejoinPaths {
                data_dir: root.join("data"),
                state_dir: root.join("data/pg_leader"),
                bin_dir: STAND_INS.into(),
                server_log: root.join("server.log"),
            };
            Server { root, paths }
        }

        fn plan(&self, term: u64) -> RejoinPlan {
            RejoinPlan {
                term,
                leader: 2,
                source_conninfo: "host=/tmp/x port=5433 dbname=postgres".into(),
                node_id: 1,
            }
        }

        fn fake(&self, file: &str) -> String {
            fs::read_to_string(self.root.join("fake").join(file)).unwrap_or_default()
        }

        /// Waits (at most 20 s) until the script has let go of the lock.
        fn wait_for_script(&self) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while take_lock(&self.paths.lock()).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "the script still runs after 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
            let _ = fs::remove_dir_all(self.paths.work_dir());
        }
    }

    #[test]
    fn start_runs_the_script_detached_in_its_own_session_to_the_end() {
        let s = Server::new("detached");
        start_with(&s.plan(5), &s.paths).unwrap();
        s.wait_for_script();
        assert_eq!(s.fake("calls"), "stop\ndry-run\nrewind\nstart\n");
        // SAFETY: getsid(0) asks for our own session.
        let ours = unsafe { libc::getsid(0) };
        let theirs: i32 = s.fake("stop_session").trim().parse().unwrap();
        assert_ne!(
            theirs, ours,
            "the script must not share the caller's session"
        );
        let log = fs::read_to_string(s.paths.script_log()).unwrap();
        assert!(log.contains("step: done"), "{log}");
        assert_eq!(
            fs::read_to_string(s.root.join("data/pg_leader/pg_leader.state")).unwrap(),
            "node 1's\n"
        );
        let work = s.paths.work_dir();
        assert_eq!(
            outcome_at(&work),
            Some(RejoinOutcome::Done {
                term: Some(5),
                leader: Some(2)
            })
        );
        assert_eq!(outcome_at(&work), None, "done is reported once");
    }

    #[test]
    fn a_second_start_is_refused_while_the_script_holds_the_lock() {
        let s = Server::new("twice");
        fs::write(s.root.join("fake/slow"), "").unwrap();
        start_with(&s.plan(5), &s.paths).unwrap();
        let second = start_with(&s.plan(5), &s.paths).unwrap_err();
        assert!(second.contains("already running"), "{second}");
        assert!(matches!(
            outcome_at(&s.paths.work_dir()),
            Some(RejoinOutcome::InProgress { running: true, .. })
        ));
        s.wait_for_script();
        assert_eq!(s.fake("calls"), "stop\ndry-run\nrewind\nstart\n");
    }

    #[test]
    fn a_refusal_is_kept_and_not_retried_for_the_same_term_and_leader() {
        let s = Server::new("refused");
        fs::write(s.root.join("fake/refuse"), "").unwrap();
        start_with(&s.plan(5), &s.paths).unwrap();
        s.wait_for_script();
        let work = s.paths.work_dir();
        let Some(RejoinOutcome::Refused { reason, .. }) = outcome_at(&work) else {
            panic!("not refused: {:?}", outcome_at(&work));
        };
        assert!(reason.contains("wal_log_hints"), "{reason}");
        assert!(outcome_at(&work).is_some(), "a refusal stays");
        assert!(start_with(&s.plan(5), &s.paths).is_err());
        assert_eq!(s.fake("calls"), "stop\nstart\n");
        assert!(s.root.join("fake/running").exists());
        // A new term is a new plan.
        start_with(&s.plan(6), &s.paths).unwrap();
        s.wait_for_script();
        assert_eq!(s.fake("calls"), "stop\nstart\nstop\nstart\n");
    }
}
