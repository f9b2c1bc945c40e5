//! src/postgres/rejoin.sh against stand-ins for pg_ctl and pg_rewind, without PostgreSQL: the
//! order of the steps, what is kept and what is replaced, the refusal that leaves the server as
//! it was, and reruns after a crash at each kind of step, which finish the job without a second
//! rewind. tests/rejoin.sh runs it on real servers.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const SCRIPT: &str = include_str!("../../../src/postgres/rejoin.sh");
const SOURCE: &str = "host='/tmp/a b' port=5433 user=postgres dbname=postgres";

/// Stand-ins for PostgreSQL's programs: what each does is said in it.
const STAND_INS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/support/rejoin");

struct Node {
    root: PathBuf,
}

impl Node {
    /// A data directory of a primary that runs, with its own configuration and state.
    fn new() -> Node {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "pg_leader-rejoin-script-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        for dir in ["data/pg_leader", "fake"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let node = Node { root };
        node.write("data/PG_VERSION", "15\n");
        node.write(
            "data/postgresql.conf",
            "shared_preload_libraries = 'pg_leader'\n",
        );
        node.write("data/node.conf", "pg_leader.node_id = 1\n");
        node.write(
            "data/postgresql.auto.conf",
            "work_mem = '8MB'\nprimary_conninfo = 'host=old'\n",
        );
        node.write("data/pg_leader/pg_leader.state", "term 7, voted for 1\n");
        node.write("data/base", "own rows\n");
        node.write("fake/running", "");
        node.write("fake/calls", "");
        node
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        fs::write(self.path(rel), text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    fn marker(&self) -> String {
        self.read("data.pg_leader-rejoin/marker")
    }

    fn step(&self) -> String {
        self.marker()
            .lines()
            .filter_map(|l| l.strip_prefix("step="))
            .next_back()
            .unwrap_or_default()
            .to_string()
    }

    fn calls(&self) -> Vec<String> {
        self.read("fake/calls").lines().map(String::from).collect()
    }

    fn running(&self) -> bool {
        self.path("fake/running").exists()
    }

    /// `rejoin.sh` with the node's paths, plus `extra` arguments; `fault` names a stand-in's
    /// trigger file.
    fn rejoin_with(&self, fault: Option<&str>, extra: &[&str]) -> Output {
        if let Some(f) = fault {
            self.write(&format!("fake/{f}"), "");
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(SCRIPT)
            .arg("rejoin.sh")
            .args(["--pgdata", &self.path("data").to_string_lossy()])
            .args(["--bindir", STAND_INS])
            .args(["--source", SOURCE, "--application-name", "pg_leader_1"])
            .args(["--log", &self.path("server.log").to_string_lossy()])
            .args(extra)
            .output()
            .unwrap();
        eprintln!(
            "--- rejoin.sh ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn rejoin(&self, fault: Option<&str>) -> Output {
        self.rejoin_with(fault, &[])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn assert_own_files_kept(n: &Node) {
    assert_eq!(n.read("data/node.conf"), "pg_leader.node_id = 1\n");
    assert_eq!(
        n.read("data/pg_leader/pg_leader.state"),
        "term 7, voted for 1\n"
    );
    assert!(n
        .read("data/postgresql.auto.conf")
        .contains("work_mem = '8MB'"));
}

#[test]
fn a_rejoin_rewinds_once_and_keeps_the_nodes_own_files() {
    let n = Node::new();
    assert!(n.rejoin(None).status.success());
    assert_eq!(n.calls(), ["stop", "dry-run", "rewind", "start"]);
    assert_eq!(n.step(), "done");
    assert!(n.running());
    assert_eq!(n.read("data/base"), "leader's rows\n");
    assert_own_files_kept(&n);
    assert!(!n.path("data/leader_only.conf").exists());
    assert!(!n.path("data/pg_leader/history").exists());
    assert!(n.path("data/standby.signal").exists());
    assert!(!n.path("data.pg_leader-rejoin/saved").exists());
}

#[test]
fn primary_conninfo_replaces_the_old_line_and_doubles_quotes() {
    let n = Node::new();
    assert!(n.rejoin(None).status.success());
    let auto = n.read("data/postgresql.auto.conf");
    let lines: Vec<&str> = auto
        .lines()
        .filter(|l| l.starts_with("primary_conninfo"))
        .collect();
    assert_eq!(
        lines,
        ["primary_conninfo = 'host=''/tmp/a b'' port=5433 user=postgres dbname=postgres application_name=pg_leader_1'"]
    );
}

#[test]
fn a_rerun_after_the_rejoin_does_nothing() {
    let n = Node::new();
    assert!(n.rejoin(None).status.success());
    let out = n.rejoin(None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
    assert_eq!(n.calls(), ["stop", "dry-run", "rewind", "start"]);
    // The marker gone (the worker consumed it), the server's own files still say it all.
    fs::remove_file(n.path("data.pg_leader-rejoin/marker")).unwrap();
    assert!(n.rejoin(None).status.success());
    assert_eq!(n.calls(), ["stop", "dry-run", "rewind", "start"]);
}

#[test]
fn a_refusal_leaves_the_server_running_as_it_was() {
    let n = Node::new();
    let before = n.read("data/postgresql.auto.conf");
    let out = n.rejoin(Some("refuse"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(n.calls(), ["stop", "start"]);
    assert!(n.running());
    assert_eq!(n.step(), "refused");
    assert!(n.marker().contains("wal_log_hints"), "{}", n.marker());
    assert_own_files_kept(&n);
    assert_eq!(n.read("data/postgresql.auto.conf"), before);
    assert_eq!(n.read("data/base"), "own rows\n");
    assert!(!n.path("data/standby.signal").exists());
    // Once pg_rewind accepts (wal_log_hints turned on), a new run goes through.
    fs::remove_file(n.path("fake/refuse")).unwrap();
    assert!(n.rejoin(None).status.success());
    assert_eq!(n.step(), "done");
}

/// Crashes the script at `fault`, checks the step it stopped at, reruns it, and checks that the
/// rerun finished the job with `calls` in all.
fn crash_and_rerun(fault: &str, stopped_at: &str, calls: &[&str]) {
    let n = Node::new();
    assert!(!n.rejoin(Some(fault)).status.success());
    assert_eq!(n.step(), stopped_at);
    assert!(!n.running());
    assert!(n.rejoin(None).status.success());
    assert!(n.running());
    assert_eq!(n.calls(), calls);
    assert_own_files_kept(&n);
    assert_eq!(n.step(), "done");
}

#[test]
fn a_crash_before_the_rewind_is_finished_by_a_rerun_with_one_rewind() {
    // The dry run is repeated (it changes nothing), the rewind is not.
    crash_and_rerun(
        "crash_after_dry_run",
        "saved",
        &["stop", "dry-run", "dry-run", "rewind", "start"],
    );
}

#[test]
fn a_crash_after_the_rewind_is_finished_without_a_second_rewind() {
    crash_and_rerun(
        "crash_at_start",
        "done",
        &["stop", "dry-run", "rewind", "start"],
    );
}

#[test]
fn an_interrupted_rewind_is_a_failure_that_keeps_the_saved_files() {
    let n = Node::new();
    assert!(!n.rejoin(Some("crash_in_rewind")).status.success());
    assert_eq!(n.step(), "rewinding");
    let out = n.rejoin(None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(n.step(), "failed");
    assert!(n.marker().contains("pg_basebackup"), "{}", n.marker());
    assert_eq!(n.calls(), ["stop", "dry-run", "rewind"]);
    assert!(!n.running());
    assert_eq!(
        n.read("data.pg_leader-rejoin/saved/conf/node.conf"),
        "pg_leader.node_id = 1\n"
    );
    assert_eq!(
        n.read("data.pg_leader-rejoin/saved/state/pg_leader.state"),
        "term 7, voted for 1\n"
    );
    // And it stays failed: no automatic retry.
    assert_eq!(n.rejoin(None).status.code(), Some(1));
    assert_eq!(n.calls(), ["stop", "dry-run", "rewind"]);
}

#[test]
fn a_server_started_again_before_the_rewind_is_saved_afresh() {
    let n = Node::new();
    assert!(!n.rejoin(Some("crash_after_dry_run")).status.success());
    // Somebody starts the server and it writes as a primary again.
    n.write("fake/running", "");
    n.write("data/node.conf", "pg_leader.node_id = 1\n# edited\n");
    assert!(n.rejoin(None).status.success());
    assert_eq!(
        n.calls(),
        ["stop", "dry-run", "stop", "dry-run", "rewind", "start"]
    );
    assert_eq!(
        n.read("data/node.conf"),
        "pg_leader.node_id = 1\n# edited\n"
    );
}

#[test]
fn a_server_started_again_after_the_dry_run_is_not_rewound_under_it() {
    let n = Node::new();
    assert_eq!(n.rejoin(Some("start_after_dry_run")).status.code(), Some(1));
    assert_eq!(n.step(), "checked");
    assert_eq!(n.calls(), ["stop", "dry-run"]);
    assert_own_files_kept(&n);
    // The rerun (the worker of the server that runs again) starts over with a stop.
    assert!(n.rejoin(None).status.success());
    assert_eq!(
        n.calls(),
        ["stop", "dry-run", "stop", "dry-run", "rewind", "start"]
    );
    assert_own_files_kept(&n);
}

#[test]
fn a_second_rejoin_waits_for_the_lock() {
    let n = Node::new();
    fs::create_dir_all(n.path("data.pg_leader-rejoin")).unwrap();
    let lock = n.path("data.pg_leader-rejoin/lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Command::new("flock")
        .args(["-n", &lock.to_string_lossy(), "true"])
        .status()
        .unwrap()
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "flock never held");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = n.rejoin(None);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(3));
    assert!(n.calls().is_empty());
    assert!(n.running());
}

#[test]
fn the_marker_must_live_outside_the_data_directory() {
    let n = Node::new();
    let inside = n.path("data/pg_leader/marker");
    let out = n.rejoin_with(None, &["--marker", &inside.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(n.calls().is_empty());
    assert!(!inside.exists());
}

#[test]
fn a_service_manager_stops_and_starts_the_server_when_told_to() {
    let n = Node::new();
    let fake = n.path("fake").to_string_lossy().into_owned();
    let stop = format!("echo service-stop >>'{fake}/calls'; rm '{fake}/running'");
    let start = format!("echo service-start >>'{fake}/calls'; touch '{fake}/running'");
    let out = n.rejoin_with(None, &["--stop-command", &stop, "--start-command", &start]);
    assert!(out.status.success());
    assert_eq!(
        n.calls(),
        ["service-stop", "dry-run", "rewind", "service-start"]
    );
    assert!(n.running());
}

#[test]
fn a_node_promoted_since_its_last_rejoin_is_rewound_again() {
    let n = Node::new();
    assert!(n.rejoin(None).status.success());
    // Promoted later (standby.signal gone), the old "done" marker still there.
    fs::remove_file(n.path("data/standby.signal")).unwrap();
    assert_eq!(n.step(), "done");
    assert!(n.rejoin(None).status.success());
    assert_eq!(
        n.calls(),
        ["stop", "dry-run", "rewind", "start", "stop", "dry-run", "rewind", "start"]
    );
    assert!(n.path("data/standby.signal").exists());
}
