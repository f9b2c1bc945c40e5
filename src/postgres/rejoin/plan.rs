//! What a rejoin needs to know, where its files go, and the script's command line. Pure.

use std::path::{Path, PathBuf};

/// A rejoin decided by the worker: this server becomes a standby of `leader`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejoinPlan {
    /// The term in which the leader leads; a refusal is remembered per term and leader.
    pub term: u64,
    pub leader: u32,
    /// The leader's `pg_leader.conninfo` (libpq key=value, with a dbname: pg_rewind needs one).
    pub source_conninfo: String,
    /// This server's `pg_leader.node_id`: its application_name on the leader.
    pub node_id: u32,
}

/// The name a standby gives itself on its primary (`pg_stat_replication.application_name`,
/// `synchronous_standby_names`): `pg_leader_<node id>`.
pub fn application_name(node_id: u32) -> String {
    format!("pg_leader_{node_id}")
}

/// The files of one server that a rejoin touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejoinPaths {
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    /// PostgreSQL's programs (pg_ctl, pg_rewind).
    pub bin_dir: PathBuf,
    /// The server's log, for `pg_ctl start -l`.
    pub server_log: PathBuf,
}

impl RejoinPaths {
    /// Where the marker, the saved files and the script's own log live: outside the data
    /// directory, which pg_rewind replaces wholesale (a file there that the leader lacks is
    /// removed). `<state dir>/rejoin` when the state directory is elsewhere, else the data
    /// directory's sibling `<data dir>.pg_leader-rejoin`. rejoin.sh applies the same rule.
    pub fn work_dir(&self) -> PathBuf {
        work_dir(&self.data_dir, &self.state_dir)
    }

    pub fn marker(&self) -> PathBuf {
        self.work_dir().join("marker")
    }

    pub fn lock(&self) -> PathBuf {
        self.work_dir().join("lock")
    }

    /// What the script prints, appended run after run.
    pub fn script_log(&self) -> PathBuf {
        self.work_dir().join("rejoin.log")
    }

    /// Where `start` writes the embedded script before running it.
    pub fn script(&self) -> PathBuf {
        self.work_dir().join("rejoin.sh")
    }
}

/// See [`RejoinPaths::work_dir`].
pub fn work_dir(data_dir: &Path, state_dir: &Path) -> PathBuf {
    let state = if state_dir.is_relative() {
        data_dir.join(state_dir)
    } else {
        state_dir.to_path_buf()
    };
    if state.starts_with(data_dir) {
        let mut name = data_dir.as_os_str().to_os_string();
        name.push(".pg_leader-rejoin");
        PathBuf::from(name)
    } else {
        state.join("rejoin")
    }
}

/// A value that goes into the marker and into postgresql.auto.conf on one line.
pub fn check_conninfo(conninfo: &str) -> Result<(), String> {
    if conninfo.trim().is_empty() {
        return Err("the leader's conninfo is empty".into());
    }
    if conninfo.contains(['\n', '\r', '\0']) {
        return Err(format!(
            "the leader's conninfo {conninfo:?} contains a line break"
        ));
    }
    Ok(())
}

/// The script's arguments (after the script's own path).
pub fn script_args(plan: &RejoinPlan, paths: &RejoinPaths) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--pgdata".into(),
        path(&paths.data_dir),
        "--bindir".into(),
        path(&paths.bin_dir),
        "--source".into(),
        plan.source_conninfo.clone(),
        "--application-name".into(),
        application_name(plan.node_id),
        "--log".into(),
        path(&paths.server_log),
        "--marker".into(),
        path(&paths.marker()),
        "--state-dir".into(),
        path(&paths.state_dir),
        "--term".into(),
        plan.term.to_string(),
        "--leader".into(),
        plan.leader.to_string(),
    ]
}

/// The server's log from the postmaster's standard error (`readlink /proc/PID/fd/2`): a
/// regular file's absolute path. A pipe (logging_collector), a socket (journald) or /dev/null
/// give none.
pub fn log_from_stderr_link(link: &Path) -> Option<PathBuf> {
    let text = link.to_str()?;
    (text.starts_with('/') && !text.starts_with("/dev/") && !text.ends_with(" (deleted)"))
        .then(|| link.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(state: &str) -> RejoinPaths {
        RejoinPaths {
            data_dir: "/var/lib/pg/main".into(),
            state_dir: state.into(),
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
            server_log: "/var/log/pg.log".into(),
        }
    }

    #[test]
    fn the_work_dir_is_never_inside_the_data_dir() {
        assert_eq!(
            paths("/var/lib/pg/main/pg_leader").work_dir(),
            PathBuf::from("/var/lib/pg/main.pg_leader-rejoin")
        );
        assert_eq!(
            paths("pg_leader").work_dir(),
            PathBuf::from("/var/lib/pg/main.pg_leader-rejoin")
        );
        assert_eq!(
            paths("/srv/pg_leader").marker(),
            PathBuf::from("/srv/pg_leader/rejoin/marker")
        );
        // A sibling whose name merely starts like the data directory is outside it.
        assert_eq!(
            paths("/var/lib/pg/main2/state").work_dir(),
            PathBuf::from("/var/lib/pg/main2/state/rejoin")
        );
    }

    #[test]
    fn the_script_gets_every_path_and_the_plan() {
        let plan = RejoinPlan {
            term: 12,
            leader: 2,
            source_conninfo: "host=/tmp/x port=5433 user=postgres dbname=postgres".into(),
            node_id: 1,
        };
        let args = script_args(&plan, &paths("/var/lib/pg/main/pg_leader"));
        let value = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(value("--pgdata"), "/var/lib/pg/main");
        assert_eq!(value("--bindir"), "/usr/lib/postgresql/15/bin");
        assert_eq!(value("--source"), plan.source_conninfo);
        assert_eq!(value("--application-name"), "pg_leader_1");
        assert_eq!(value("--log"), "/var/log/pg.log");
        assert_eq!(
            value("--marker"),
            "/var/lib/pg/main.pg_leader-rejoin/marker"
        );
        assert_eq!(value("--state-dir"), "/var/lib/pg/main/pg_leader");
        assert_eq!(
            (value("--term"), value("--leader")),
            ("12".into(), "2".into())
        );
        assert_eq!(args.len(), 18);
    }

    #[test]
    fn a_conninfo_must_fit_on_one_line() {
        assert!(check_conninfo("host=a port=1 dbname=postgres").is_ok());
        assert!(check_conninfo("host=a\nport=1").is_err());
        assert!(check_conninfo("  ").is_err());
    }

    #[test]
    fn only_a_regular_log_file_is_taken_from_stderr() {
        assert_eq!(
            log_from_stderr_link(Path::new("/tmp/c/n1.log")),
            Some(PathBuf::from("/tmp/c/n1.log"))
        );
        assert_eq!(log_from_stderr_link(Path::new("pipe:[1234]")), None);
        assert_eq!(log_from_stderr_link(Path::new("socket:[99]")), None);
        assert_eq!(log_from_stderr_link(Path::new("/dev/null")), None);
        assert_eq!(
            log_from_stderr_link(Path::new("/tmp/old.log (deleted)")),
            None
        );
    }
}
