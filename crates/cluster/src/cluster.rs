//! The cluster's layout on disk and the life of its servers: node 1 is a primary made with
//! initdb, the others streaming standbys made with pg_basebackup, all running pg_leader. With a
//! witness, the last node is instead a minimal server of its own (initdb, no data of the
//! cluster's) that only runs pg_leader to vote, with `pg_leader.can_be_leader = off`.

use crate::run::{as_postgres, check, is_root, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where PostgreSQL's programs are, unless `PG_LEADER_PGBIN` says otherwise (a second
/// installation, so that two clusters can be tested side by side).
pub const PGBIN: &str = "/usr/lib/postgresql/15/bin";

/// PostgreSQL's programs: `PG_LEADER_PGBIN`, or `PGBIN`.
pub fn pgbin() -> String {
    std::env::var("PG_LEADER_PGBIN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| PGBIN.to_string())
}
const LAYOUT_FILE: &str = "cluster.conf";

#[derive(Clone, Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: u32,
    pub base_pg_port: u16,
    pub base_raft_port: u16,
    /// The last node is a witness.
    pub witness: bool,
    /// Node i serves its HTTP endpoints on this port + i.
    pub base_http_port: u16,
}

/// What a witness needs beyond the shared settings: it never leads, and serves next to nothing.
const WITNESS_SETTINGS: [&str; 4] = [
    "pg_leader.can_be_leader = off",
    "shared_buffers = 8MB",
    "max_connections = 10",
    "max_wal_senders = 0",
];

impl Cluster {
    /// pg_leader's UDP ports sit below 32768, outside Linux's ephemeral range, so that no
    /// outgoing socket of another program can hold one of them by chance.
    pub fn new(dir: PathBuf, nodes: u32, base_pg_port: u16, base_raft_port: u16) -> Cluster {
        Cluster {
            dir,
            nodes,
            base_pg_port,
            base_raft_port,
            witness: false,
            base_http_port: base_raft_port + 1000,
        }
    }

    /// The same cluster with its HTTP endpoints on `base` + i (raft base port + 1000 + i when
    /// None).
    pub fn with_http_port(mut self, base: Option<u16>) -> Cluster {
        if let Some(base) = base {
            self.base_http_port = base;
        }
        self
    }

    /// The same cluster whose last node is a witness.
    pub fn with_witness(mut self, witness: bool) -> Cluster {
        self.witness = witness;
        self
    }

    pub fn is_witness(&self, node: u32) -> bool {
        self.witness && node == self.nodes
    }

    /// The cluster that `up` left in `dir`.
    pub fn load(dir: &Path) -> Result<Cluster> {
        let text = fs::read_to_string(dir.join(LAYOUT_FILE)).map_err(|_| {
            format!(
                "no cluster in \"{}\": run `pg_leader-cluster up` first",
                dir.display()
            )
        })?;
        let value = |key: &str| -> Result<u32> {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    format!("\"{}\" has no valid {key}", dir.join(LAYOUT_FILE).display())
                })
        };
        Ok(Cluster::new(
            dir.to_path_buf(),
            value("nodes")?,
            value("base_pg_port")? as u16,
            value("base_raft_port")? as u16,
        )
        .with_witness(value("witness").unwrap_or(0) == 1)
        .with_http_port(value("base_http_port").ok().map(|p| p as u16)))
    }

    fn save(&self) -> Result<()> {
        let text = format!(
            "nodes={}\nbase_pg_port={}\nbase_raft_port={}\nwitness={}\nbase_http_port={}\n",
            self.nodes,
            self.base_pg_port,
            self.base_raft_port,
            u8::from(self.witness),
            self.base_http_port
        );
        fs::write(self.dir.join(LAYOUT_FILE), text)
            .map_err(|e| format!("could not write the layout: {e}"))
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> {
        1..=self.nodes
    }

    pub fn pg_port(&self, node: u32) -> u16 {
        self.base_pg_port + node as u16
    }

    pub fn raft_port(&self, node: u32) -> u16 {
        self.base_raft_port + node as u16
    }

    /// The node's HTTP health check (`pg_leader.http_port`), on 127.0.0.1.
    pub fn http_port(&self, node: u32) -> u16 {
        self.base_http_port + node as u16
    }

    pub fn data_dir(&self, node: u32) -> PathBuf {
        self.dir.join(format!("n{node}"))
    }

    pub fn log_file(&self, node: u32) -> PathBuf {
        self.dir.join(format!("n{node}.log"))
    }

    pub fn check_node(&self, node: u32) -> Result<u32> {
        if (1..=self.nodes).contains(&node) {
            Ok(node)
        } else {
            Err(format!(
                "no node {node}: this cluster has nodes 1 to {}",
                self.nodes
            ))
        }
    }

    fn peers(&self) -> String {
        self.ids()
            .map(|i| format!("{i}=127.0.0.1:{}", self.raft_port(i)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Creates every server and starts them; returns once all are accepting connections.
    pub fn create(&self, extra: &[String]) -> Result<()> {
        if self.dir.join(LAYOUT_FILE).exists() {
            return Err(format!(
                "a cluster already exists in \"{}\": run `pg_leader-cluster down` first",
                self.dir.display()
            ));
        }
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("could not create \"{}\": {e}", self.dir.display()))?;
        if is_root() {
            check(
                Command::new("chown").args(["postgres:", &self.dir.to_string_lossy()]),
                "chown",
            )?;
        }
        self.write_secret()?;
        self.save()?;
        self.create_own_system(1, extra)?;
        for node in 2..=self.nodes {
            if self.is_witness(node) {
                let mut settings: Vec<String> = extra.to_vec();
                settings.extend(WITNESS_SETTINGS.iter().map(|s| s.to_string()));
                self.create_own_system(node, &settings)?;
                continue;
            }
            let mut backup = as_postgres(&format!("{}/pg_basebackup", pgbin()));
            backup.args([
                "-h",
                &self.dir.to_string_lossy(),
                "-p",
                &self.pg_port(1).to_string(),
                "-U",
                "postgres",
            ]);
            backup.args([
                "-D",
                &self.data_dir(node).to_string_lossy(),
                "-R",
                "-X",
                "stream",
            ]);
            check(&mut backup, "pg_basebackup")?;
            // The copy holds node 1's pg_leader state: node {node} must start with its own.
            let copied = self.data_dir(node).join("pg_leader");
            check(
                &mut as_postgres_rm(&copied),
                "removing the copied pg_leader state",
            )?;
            self.write_identity(node)?;
            self.start(node)?;
        }
        Ok(())
    }

    /// A server with a database system of its own (initdb): the primary, or a witness.
    fn create_own_system(&self, node: u32, settings: &[String]) -> Result<()> {
        let mut initdb = as_postgres(&format!("{}/initdb", pgbin()));
        initdb.args([
            "-D",
            &self.data_dir(node).to_string_lossy(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        check(&mut initdb, "initdb")?;
        self.configure(node, settings)?;
        self.start(node)?;
        // Alone, it has no standby to confirm the commit, which pg_leader.synchronous = quorum
        // would wait for: this one is local.
        self.with_fence_lifted(
            node,
            "SET synchronous_commit = local; CREATE EXTENSION IF NOT EXISTS pg_leader",
        )
        .map(|_| ())
    }

    /// Runs `sql` on `node` with its write fence off. A server alone holds no lease, so the
    /// fence (`pg_leader.fence_writes`, on by default) refuses the catalog writes of CREATE
    /// EXTENSION on a new primary: the fence is lifted for that statement and put back (through
    /// postgresql.auto.conf, which pg_basebackup then copies without it).
    pub fn with_fence_lifted(&self, node: u32, sql: &str) -> Result<String> {
        self.set_fence(node, "SET pg_leader.fence_writes = off", "off")?;
        let result = crate::sql::query(self, node, sql);
        self.set_fence(node, "RESET pg_leader.fence_writes", "on")?;
        result
    }

    /// `ALTER SYSTEM <change>`, a reload, and a wait until new sessions see `want`.
    fn set_fence(&self, node: u32, change: &str, want: &str) -> Result<()> {
        crate::sql::query(self, node, &format!("ALTER SYSTEM {change}"))?;
        crate::sql::query(self, node, "SELECT pg_reload_conf()")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if crate::sql::query(self, node, "SHOW pg_leader.fence_writes")? == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {node}: pg_leader.fence_writes is not {want} 10 s after a reload"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn write_secret(&self) -> Result<()> {
        let path = self.dir.join("secret");
        let script = format!(
            "umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > '{}'",
            path.display()
        );
        let mut sh = as_postgres("bash");
        sh.args(["-c", &script]);
        check(&mut sh, "writing the secret file").map(|_| ())
    }

    fn append_as_postgres(&self, path: &Path, text: &str, truncate: bool) -> Result<()> {
        let op = if truncate { ">" } else { ">>" };
        let script = format!(
            "cat {op} '{}' <<'PGLEADER_EOF'\n{text}PGLEADER_EOF\n",
            path.display()
        );
        let mut sh = as_postgres("bash");
        sh.args(["-c", &script]);
        check(&mut sh, "writing the configuration").map(|_| ())
    }

    /// The settings every server shares, then `extra` (a later line wins). wal_log_hints and
    /// wal_keep_size are for `rejoin`: pg_rewind needs the hints, and this server's WAL back to
    /// the last checkpoint before the divergence (a restart's checkpoint would remove it).
    fn configure(&self, node: u32, extra: &[String]) -> Result<()> {
        let mut conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{dir}'\nshared_buffers = 16MB\n\
             max_connections = 20\nwal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n\
             wal_log_hints = on\nwal_keep_size = 256MB\n\
             shared_preload_libraries = 'pg_leader'\npg_leader.peers = '{peers}'\n\
             pg_leader.cluster_name = 'local'\npg_leader.secret_file = '{dir}/secret'\n\
             include_if_exists = 'node.conf'\n",
            dir = self.dir.display(),
            peers = self.peers()
        );
        for line in extra {
            conf.push_str(line);
            conf.push('\n');
        }
        self.append_as_postgres(&self.data_dir(node).join("postgresql.conf"), &conf, false)?;
        self.write_identity(node)
    }

    /// How the other servers reach `node`'s PostgreSQL (`pg_leader.conninfo`): the cluster's
    /// Unix socket directory, since the servers listen on no TCP address.
    pub fn conninfo(&self, node: u32) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.display(),
            self.pg_port(node)
        )
    }

    /// Each node's own settings live in node.conf, which pg_basebackup copies and we rewrite.
    fn write_identity(&self, node: u32) -> Result<()> {
        // The cluster listens on its folder's unix socket only: the others reach this server's
        // PostgreSQL there (streaming replication, pg_rewind), as the postgres user.
        let text = format!(
            "port = {}\npg_leader.node_id = {node}\npg_leader.http_port = {}\npg_leader.conninfo = '{}'\n",
            self.pg_port(node),
            self.http_port(node),
            self.conninfo(node).replace('\'', "''")
        );
        self.append_as_postgres(&self.data_dir(node).join("node.conf"), &text, true)
    }

    pub fn postmaster_pid(&self, node: u32) -> Option<i32> {
        let text = fs::read_to_string(self.data_dir(node).join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Starts a node; after a SIGKILL its old children may still hold shared memory for a
    /// moment, so retry for a bounded time.
    pub fn start(&self, node: u32) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log_before = std::fs::metadata(self.log_file(node)).map_or(0, |m| m.len());
            let mut ctl = as_postgres(&format!("{}/pg_ctl", pgbin()));
            ctl.args([
                "-D",
                &self.data_dir(node).to_string_lossy(),
                "-l",
                &self.log_file(node).to_string_lossy(),
            ]);
            ctl.args(["-w", "-t", "30", "start"]);
            match check(&mut ctl, &format!("starting node {node}")) {
                Ok(_) => return Ok(()),
                // It started, and something stopped it before pg_ctl looked (a rejoin that
                // stops the server for pg_rewind within milliseconds): starting it again would
                // run it under the rewind.
                Err(_) if self.became_ready_since(node, log_before) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "{e} (gave up after 20 s; see {})",
                        self.log_file(node).display()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Whether node's log, past its first `offset` bytes, says the server accepted connections.
    fn became_ready_since(&self, node: u32, offset: u64) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(self.log_file(node)) else {
            return false;
        };
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(offset)).is_ok()
            && file.read_to_end(&mut tail).is_ok()
            && String::from_utf8_lossy(&tail)
                .contains("database system is ready to accept connections")
    }

    pub fn stop(&self, node: u32, mode: &str) -> Result<()> {
        let mut ctl = as_postgres(&format!("{}/pg_ctl", pgbin()));
        ctl.args([
            "-D",
            &self.data_dir(node).to_string_lossy(),
            "-m",
            mode,
            "-w",
            "-t",
            "30",
            "stop",
        ]);
        check(&mut ctl, &format!("stopping node {node}")).map(|_| ())
    }

    /// The pg_leader worker among the postmaster's children.
    pub fn worker_pid(&self, node: u32) -> Result<i32> {
        let postmaster = self
            .postmaster_pid(node)
            .ok_or_else(|| format!("node {node} is not running"))?;
        children_of(postmaster)?
            .into_iter()
            .find(|pid| {
                fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .contains("pg_leader")
            })
            .ok_or_else(|| format!("node {node} has no pg_leader worker running"))
    }

    /// Stops every server that is still running, by PID, and removes the folder.
    pub fn destroy(&self) -> Result<()> {
        for node in self.ids() {
            if let Some(pid) = self.postmaster_pid(node) {
                if self.stop(node, "immediate").is_err() {
                    // It may have exited meanwhile: then there is nothing left to kill.
                    let _ = signal(pid, "KILL");
                }
            }
        }
        // Children of a postmaster killed earlier may still be writing as they exit: a
        // removal that races with them is tried again, for a bounded time.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match fs::remove_dir_all(&self.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("could not remove \"{}\": {e}", self.dir.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

/// The processes whose parent is `parent`, from /proc.
pub fn children_of(parent: i32) -> Result<Vec<i32>> {
    let entries = fs::read_dir("/proc").map_err(|e| format!("could not read /proc: {e}"))?;
    let parent_of = |pid: i32| {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok())
    };
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect())
}

fn as_postgres_rm(path: &Path) -> Command {
    let mut rm = as_postgres("rm");
    rm.args(["-rf", &path.to_string_lossy()]);
    rm
}

/// Sends a signal (`KILL`, `STOP`, `CONT`) to a process.
pub fn signal(pid: i32, name: &str) -> Result<()> {
    check(
        Command::new("kill").args([&format!("-{name}"), &pid.to_string()]),
        &format!("kill -{name} {pid}"),
    )
    .map(|_| ())
}
