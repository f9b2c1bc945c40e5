//! The `pg_leader.*` settings: their definitions, and the validated configuration they read into.

use crate::cluster_config::{self, Peer, SettingError};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{CStr, CString};
use std::path::PathBuf;

pub static NODE_ID: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static PEERS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CLUSTER_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static SECRET_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static HEARTBEAT_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static ELECTION_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(1000);
pub static STATE_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ON_ROLE_CHANGE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static WAL_AWARE_ELECTION: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static CAN_BE_LEADER: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static PRIORITY: GucSetting<i32> = GucSetting::<i32>::new(100);
/// The largest `pg_leader.priority`: room for any ranking an operator needs.
pub const MAX_PRIORITY: i32 = 1_000_000;
pub static HTTP_PORT: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static FENCE_WRITES: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static HTTP_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static AUTO_FAILOVER: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static AUTO_REJOIN: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static CONNINFO: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static SYNCHRONOUS: GucSetting<Synchronous> = GucSetting::<Synchronous>::new(Synchronous::Off);

/// `pg_leader.synchronous`: whether the primary that leads waits for a quorum of standbys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, pgrx::PostgresGucEnum)]
pub enum Synchronous {
    #[name = c"off"]
    Off,
    #[name = c"quorum"]
    Quorum,
}

/// `pg_leader.synchronous = quorum` is in effect.
pub fn synchronous_quorum() -> bool {
    SYNCHRONOUS.get() == Synchronous::Quorum
}

/// Defines every setting and reserves the `pg_leader` prefix, so a misspelt
/// `pg_leader.something` is reported instead of silently ignored.
pub fn define() {
    GucRegistry::define_int_guc(
        c"pg_leader.node_id",
        c"This server's id in pg_leader.peers.",
        c"Each server of the cluster has its own id.",
        &NODE_ID,
        0,
        i32::MAX,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_leader.peers",
        c"Every voter of the cluster, this server included, as 'id=host:port, ...'.",
        c"It sets the first configuration; afterwards the replicated one is used. Changed on every server and reloaded, the leader applies it one server at a time.",
        &PEERS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_leader.cluster_name",
        c"Name of the pg_leader cluster; must be the same on every server.",
        c"Messages from servers of another cluster are rejected.",
        &CLUSTER_NAME,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_leader.secret_file",
        c"File holding the secret that authenticates every message between servers.",
        c"The file must be readable by its owner only (mode 0600) and hold at least 16 bytes.",
        &SECRET_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_int_guc(
        c"pg_leader.heartbeat_interval",
        c"How often the leader sends heartbeats.",
        c"Must be at most half of pg_leader.election_timeout.",
        &HEARTBEAT_INTERVAL,
        1,
        60_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_leader.election_timeout",
        c"How long followers wait for the leader before electing a new one.",
        c"Each wait is drawn at random between this value and twice this value.",
        &ELECTION_TIMEOUT,
        10,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pg_leader.state_dir",
        c"Directory where pg_leader keeps its term, vote and log.",
        c"Empty means the pg_leader directory inside the data directory.",
        &STATE_DIR,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_leader.wal_aware_election",
        c"Refuse votes to candidates with less WAL than this server on the same timeline.",
        c"Then the elected leader is the server whose promotion loses the least data.",
        &WAL_AWARE_ELECTION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_leader.can_be_leader",
        c"Whether this server may become the leader.",
        c"Off for a witness or a server that must stay a standby: it still votes and counts for quorum.",
        &CAN_BE_LEADER,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_leader.priority",
        c"This server's place in the succession among servers that hold the same WAL: higher first.",
        c"0 means the server never leads, as pg_leader.can_be_leader = off. The leader ranks its followers by WAL held, then by this, and the first campaigns first when it falls silent.",
        &PRIORITY,
        0,
        MAX_PRIORITY,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_leader.fence_writes",
        c"Refuse commits of writing transactions on a server that is not in recovery and does not hold the lease.",
        c"Such commits fail with SQLSTATE 25006, and no commit is acknowledged once the lease has ended.",
        &FENCE_WRITES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_leader.auto_failover",
        c"Make PostgreSQL follow the election: the leader promotes itself, the standbys stream from it.",
        c"Off: pg_leader only elects, and scripts act on its answer.",
        &AUTO_FAILOVER,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pg_leader.synchronous",
        c"Keep every acknowledged commit on every later leader: off or quorum.",
        c"quorum: the primary that leads waits for ANY k of the other voters (synchronous_standby_names, set by pg_leader), and votes go only to servers holding all the WAL the voter flushed.",
        &SYNCHRONOUS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_leader.auto_rejoin",
        c"Rebuild a former primary as a standby of the leader (pg_rewind) without an operator.",
        c"Needs wal_log_hints = on or data checksums; off: pg_leader_status() says the rejoin is due.",
        &AUTO_REJOIN,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_leader.conninfo",
        c"How the other servers reach this server's PostgreSQL, as libpq key=value pairs.",
        c"Used for primary_conninfo and pg_rewind on the others; empty means this server's host in pg_leader.peers and its port.",
        &CONNINFO,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_leader.on_role_change",
        c"Shell command run when this server becomes leader or follows a new leader.",
        c"%r is replaced by the role (leader or follower), %t by the term, %l by the leader's id.",
        &ON_ROLE_CHANGE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"pg_leader.notify_database",
        c"Database in which changes of leader or term are sent as NOTIFY pg_leader.",
        c"Sessions connected to this database can LISTEN pg_leader.",
        &crate::notifier::NOTIFY_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_leader.http_port",
        c"TCP port of the HTTP health check (GET /leader, /replica, /status); 0 turns it off.",
        c"Lets HAProxy or a load balancer find the leader without an agent.",
        &HTTP_PORT,
        0,
        65535,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_leader.http_address",
        c"Address the HTTP health check listens on.",
        c"Empty means the host of this server's own entry in pg_leader.peers; '*' means every address.",
        &HTTP_ADDRESS,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init in the postmaster, where GUC functions may be called.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"pg_leader".as_ptr()) };
}

/// The settings, validated.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub node_id: u32,
    pub peers: Vec<Peer>,
    pub cluster_name: String,
    pub secret: Vec<u8>,
    pub heartbeat_ms: u32,
    pub election_timeout_ms: u32,
    pub state_dir: PathBuf,
    /// Where the HTTP health check listens, as "host:port"; None when it is off.
    pub http_listen: Option<String>,
}

fn text(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn data_directory() -> PathBuf {
    // SAFETY: DataDir is set before any worker or backend starts and never freed.
    let dir = unsafe { pg_sys::DataDir };
    if dir.is_null() {
        return PathBuf::from(".");
    }
    PathBuf::from(
        unsafe { CStr::from_ptr(dir) }
            .to_string_lossy()
            .into_owned(),
    )
}

impl NodeSettings {
    /// `pg_leader.state_dir`, resolved against the data directory.
    pub fn state_dir() -> PathBuf {
        match text(&STATE_DIR) {
            dir if dir.is_empty() => data_directory().join("pg_leader"),
            dir if PathBuf::from(&dir).is_relative() => data_directory().join(dir),
            dir => PathBuf::from(dir),
        }
    }

    /// Reads and checks every setting; the first problem found is returned.
    pub fn read() -> Result<NodeSettings, SettingError> {
        let node_id = NODE_ID.get();
        if node_id <= 0 {
            return Err(SettingError {
                setting: "pg_leader.node_id",
                value: node_id.to_string(),
                detail: "pg_leader.node_id is not set.".into(),
                hint: Some("Give each server a positive id listed in pg_leader.peers.".into()),
            });
        }
        let peers = cluster_config::parse_peers(&text(&PEERS))?;
        cluster_config::find_self(&peers, node_id)?;
        if peers.len() > crate::shmem::MAX_NODES {
            return Err(SettingError {
                setting: "pg_leader.peers",
                value: text(&PEERS),
                detail: format!("At most {} servers are supported.", crate::shmem::MAX_NODES),
                hint: None,
            });
        }
        let cluster_name = text(&CLUSTER_NAME);
        if cluster_name.is_empty() {
            return Err(SettingError {
                setting: "pg_leader.cluster_name",
                value: cluster_name,
                detail: "pg_leader.cluster_name is not set.".into(),
                hint: Some("Set the same name on every server of the cluster.".into()),
            });
        }
        let secret = cluster_config::read_secret(&text(&SECRET_FILE))?;
        let heartbeat_ms = HEARTBEAT_INTERVAL.get() as u32;
        let election_timeout_ms = ELECTION_TIMEOUT.get() as u32;
        cluster_config::check_timing(heartbeat_ms, election_timeout_ms)?;
        let state_dir = NodeSettings::state_dir();
        let http_listen = http_listen(&peers, node_id as u32);
        Ok(NodeSettings {
            node_id: node_id as u32,
            peers,
            cluster_name,
            secret,
            heartbeat_ms,
            election_timeout_ms,
            state_dir,
            http_listen,
        })
    }
}

/// `pg_leader.peers` as currently loaded.
pub fn peers_text() -> String {
    text(&PEERS)
}

/// `pg_leader.priority`, as the core takes it.
pub fn priority() -> u32 {
    PRIORITY.get().max(0) as u32
}

/// Whether the settings let this server lead: `pg_leader.can_be_leader` on and
/// `pg_leader.priority` above 0 (0 means the same as `can_be_leader = off`).
pub fn leads_by_settings() -> bool {
    CAN_BE_LEADER.get() && priority() > 0
}

/// `pg_leader.conninfo`, or by default this server's host in `pg_leader.peers` and PostgreSQL's
/// `port`, as the user that runs PostgreSQL to the `postgres` database (pg_rewind needs one).
pub fn conninfo(peers: &[Peer], me: u32) -> String {
    let set = text(&CONNINFO);
    if !set.trim().is_empty() {
        return set.trim().to_string();
    }
    let host = peers
        .iter()
        .find(|p| p.id == me)
        .map_or_else(|| "127.0.0.1".to_string(), |p| p.host.clone());
    // SAFETY: PostPortNumber is set from the configuration before any worker starts.
    let port = unsafe { pg_sys::PostPortNumber };
    format!("host={host} port={port} dbname=postgres")
}

/// `pg_leader.on_role_change`; empty when not set.
pub fn on_role_change() -> String {
    text(&ON_ROLE_CHANGE)
}

/// `pg_leader.http_address` and `pg_leader.http_port` as one address, None when turned off.
fn http_listen(peers: &[Peer], me: u32) -> Option<String> {
    let port = HTTP_PORT.get();
    if port == 0 {
        return None;
    }
    let host = match text(&HTTP_ADDRESS).trim() {
        "" => peers
            .iter()
            .find(|p| p.id == me)
            .map_or_else(|| "127.0.0.1".to_string(), |p| p.host.clone()),
        "*" => "0.0.0.0".to_string(),
        h => h.to_string(),
    };
    // An IPv6 literal needs brackets before the port.
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}
