//! The role history: one line per role change and per lease extension, appended to
//! `pg_leader.history` in the state directory. Times are CLOCK_BOOTTIME microseconds (one clock
//! for every server of a machine, so histories of local servers compare directly) and wall-clock
//! microseconds for people. Tests and `pg_leader-cluster check` read it to prove that no term had
//! two leaders and that no two leases overlapped.
//!
//! ```text
//! boottime_us  wall_us  term  role  leader  lease_until_us  cause
//! ```
//! The file is rotated at 1 MiB (one previous file kept as `pg_leader.history.1`); it is not
//! fsync'd: it is a record, not state, and a SIGKILL loses nothing that was written.

use pg_leader_raft::{Instant, Status};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

pub const HISTORY_FILE: &str = "pg_leader.history";
const ROTATE_AT: u64 = 1 << 20;

pub struct History {
    path: PathBuf,
    last_lease_until: u64,
}

fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl History {
    pub fn new(state_dir: &std::path::Path) -> History {
        History {
            path: state_dir.join(HISTORY_FILE),
            last_lease_until: 0,
        }
    }

    /// Records a role change.
    pub fn role_changed(&mut self, now: Instant, status: &Status, cause: &str) {
        let lease = status.lease_deadline.map_or(0, |d| d.as_micros());
        self.last_lease_until = lease;
        self.append(now, status, lease, cause);
    }

    /// Records the lease deadline when it moved.
    pub fn lease(&mut self, now: Instant, status: &Status) {
        let lease = status.lease_deadline.map_or(0, |d| d.as_micros());
        if lease != self.last_lease_until {
            self.last_lease_until = lease;
            self.append(now, status, lease, "lease");
        }
    }

    /// Records a change in the health of this server's PostgreSQL (`postgres::health`), with
    /// the role and lease it found.
    pub fn health_changed(&mut self, now: Instant, status: &Status, cause: &str) {
        let lease = status.lease_deadline.map_or(0, |d| d.as_micros());
        self.last_lease_until = lease;
        self.append(now, status, lease, cause);
    }

    /// Records that the lease ended here, before its deadline: a leader whose server is going
    /// away gave it up (`worker::going_away`).
    pub fn lease_given_up(&mut self, now: Instant, status: &Status, cause: &str) {
        self.last_lease_until = 0;
        self.append(now, status, 0, cause);
    }

    /// Records something done to PostgreSQL (a promotion, a re-pointing, a rejoin), with the
    /// lease as it stands: `cause` says what and why.
    pub fn action(&mut self, now: Instant, status: &Status, cause: &str) {
        self.append(now, status, self.last_lease_until, cause);
    }

    fn append(&self, now: Instant, status: &Status, lease: u64, cause: &str) {
        if fs::metadata(&self.path).is_ok_and(|m| m.len() > ROTATE_AT) {
            let _ = fs::rename(&self.path, self.path.with_extension("history.1"));
        }
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{lease}\t{cause}\n",
            now.as_micros(),
            wall_us(),
            status.term,
            status.role,
            status.leader_id.map_or(0, |l| l.0)
        );
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            pgrx::debug1!(
                "pg_leader: could not append to \"{}\": {e}",
                self.path.display()
            );
        }
    }
}
