//! The background worker: one per server, started with the postmaster on primaries and standbys
//! alike (it needs no database connection). Its loop: socket + timer + signals -> core -> persist
//! -> publish -> send -> log.

mod clean_stop;
mod facts;
mod going_away;
mod health;
mod maintenance;
mod membership;
mod synchronous;

use crate::changes::CHANGES;
use crate::clock::boottime_now;
use crate::cluster_config::SettingError;
use crate::history::History;
use crate::http::HttpServer;
use crate::role_hook::{self, Outcome, RoleHook};
use crate::settings::NodeSettings;
use crate::shmem::{NodeSlot, PublishedRole, PUBLISHED};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use pg_leader_raft::{
    Body, Cause, Config, Dropped, Duration, Event, Membership, Message, NodeId, Raft, Ready, Role,
    SplitMix64, Status, TransferError, WalPosition,
};
use pg_leader_storage::{Storage, StorageError};
use pg_leader_wire::{Codec, Reject, ReplayWindow, MAX_DATAGRAM};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};

/// The longest the loop sleeps, so that a missed wake-up costs at most this much.
const MAX_SLEEP: Duration = Duration(100_000);

/// The outcome code of a switchover request passed on to the leader (see `operations`).
pub const TRANSFER_FORWARDED: i32 = 5;

/// Registers the worker; called from `_PG_init` in the postmaster.
pub fn register() {
    pgrx::bgworkers::BackgroundWorkerBuilder::new("pg_leader")
        .set_type("pg_leader")
        .set_function("pg_leader_worker_main")
        .set_library("pg_leader")
        .enable_shmem_access(None)
        .set_start_time(pgrx::bgworkers::BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(std::time::Duration::from_secs(1)))
        .load();
}

/// Why the worker cannot run; shown as role `misconfigured` until fixed.
struct StartError {
    message: String,
    detail: Option<String>,
    hint: Option<String>,
    /// A passing condition (a port still in use, a name that does not resolve yet, an I/O
    /// error): try again every second, not only on reload.
    transient: bool,
}

impl From<SettingError> for StartError {
    fn from(e: SettingError) -> StartError {
        StartError {
            message: e.to_string(),
            detail: Some(e.detail),
            hint: e.hint,
            transient: false,
        }
    }
}

impl StartError {
    fn plain(message: String, hint: Option<&str>) -> StartError {
        StartError {
            message,
            detail: None,
            hint: hint.map(str::to_string),
            transient: false,
        }
    }

    fn transient(mut self) -> StartError {
        self.transient = true;
        self
    }

    fn summary(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.message),
            None => self.message.clone(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct PeerStats {
    last_contact_us: u64,
    packets_in: u64,
    packets_out: u64,
    packets_rejected: u64,
}

struct Node {
    settings: NodeSettings,
    raft: Raft,
    storage: Storage,
    socket: UdpSocket,
    poll: Poll,
    codec: Codec,
    addresses: BTreeMap<NodeId, SocketAddr>,
    windows: BTreeMap<NodeId, ReplayWindow>,
    stats: BTreeMap<NodeId, PeerStats>,
    /// Datagrams rejected, by reason, in the order of `Reject::ALL`.
    rejected_by_reason: [u64; Reject::ALL.len()],
    /// Datagrams sent to each peer in this boot: each receiver sees one gapless sequence.
    sent_counters: BTreeMap<NodeId, u64>,
    /// SIGQUIT and the postmaster's death (`going_away`).
    watch: going_away::Watch,
    /// PostgreSQL following the election (`pg_leader.auto_failover`).
    failover: crate::postgres::failover::Failover,
    synchronous: crate::postgres::synchronous::SynchronousStandbys,
    /// This server's `pg_leader.conninfo`, advertised to the others, and when it last was.
    conninfo: String,
    advertised_at: Option<std::time::Instant>,
    /// Why PostgreSQL does not follow the election yet, for `pg_leader_status().error`.
    database_note: Option<String>,
    /// A switchover from this primary to a standby is under way: once this server follows, it
    /// yields (offers no more to lead) until rebuilt as a standby, so that the new leader is
    /// promoted rather than handing back.
    yield_pending: bool,
    yielded: bool,
    /// Why this server will not rejoin by itself (a refused or failed rejoin, or pg_rewind not
    /// possible here): reported, never retried for the same leader and term.
    rejoin_blocked: Option<(u32, u64, String)>,
    /// A rejoin launched by this worker (the server stops within seconds).
    rejoin_launched: bool,
    history: History,
    /// The last transfer request answered.
    transfer_answered: u64,
    http: Option<HttpServer>,
    hook: RoleHook,
    /// A switchover a follower passed on to us (to this target, or to the most caught-up voter
    /// when None), to start once the current Ready is handled.
    forwarded_request: Option<(NodeId, Option<NodeId>)>,
    /// Why the role last changed, published for notifications.
    last_cause: &'static str,
    /// A membership change a session asked for, until it is answered.
    change: Option<membership::ChangeInFlight>,
    /// The last membership change request answered.
    change_answered: u64,
    /// The configuration `pg_leader.peers` asks for, after a reload changed it: the leader
    /// moves the cluster there one server at a time.
    peers_target: Option<Membership>,
    /// Whether this server's PostgreSQL can serve (`health`).
    health: crate::postgres::health::Health,
    /// Elections, leaders and promotions counted for `/metrics`.
    counters: crate::http::facts::Counters,
    /// A maintenance request a session made, until applied; the last one taken; the applied
    /// state the health rule last saw (`maintenance`).
    maintenance_request: Option<maintenance::MaintenanceInFlight>,
    maintenance_answered: u64,
    paused_seen: bool,
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_leader_worker_main(_arg: pg_sys::Datum) {
    // SIGINT: a session left a request in shared memory.
    BackgroundWorker::attach_signal_handlers(
        SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM | SignalWakeFlags::SIGINT,
    );
    let watch = going_away::Watch::install()
        .unwrap_or_else(|e| pgrx::error!("pg_leader: could not install the SIGQUIT handler: {e}"));
    let mut last_error: Option<String> = None;
    loop {
        match Node::start(watch) {
            Ok(mut node) => {
                node.run();
                return;
            }
            Err(e) => {
                publish_misconfigured(&e);
                if last_error.as_deref() != Some(e.summary().as_str()) {
                    ereport_start_error(&e);
                    last_error = Some(e.summary());
                }
                // Stay up, showing the error, until a reload fixes it or the server stops: a
                // restart loop would only repeat the same message. A transient error is retried
                // every second as well.
                loop {
                    if !BackgroundWorker::wait_latch(Some(std::time::Duration::from_secs(1))) {
                        return;
                    }
                    if BackgroundWorker::sighup_received() {
                        reload_config_file();
                        break;
                    }
                    if e.transient {
                        break;
                    }
                }
            }
        }
    }
}

fn reload_config_file() {
    // SAFETY: called on the worker's main thread, outside any critical section.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

fn ereport_start_error(e: &StartError) {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("pg_leader: {}", e.message),
        "pg_leader_worker_main",
    );
    if let Some(d) = &e.detail {
        report = report.set_detail(d.clone());
    }
    if let Some(h) = &e.hint {
        report = report.set_hint(h.clone());
    }
    report.report(PgLogLevel::LOG);
}

fn publish_misconfigured(e: &StartError) {
    let mut p = PUBLISHED.exclusive();
    p.generation += 1;
    p.node_id = crate::settings::NODE_ID.get();
    p.set_role(PublishedRole::Misconfigured);
    p.leader_id = 0;
    p.lease_deadline_us = 0;
    crate::fence::lease::publish(None);
    p.set_error(Some(&e.summary()));
}

/// The node refuses to run on state it cannot trust, and says what to do about it.
fn storage_error(e: StorageError, me: NodeId) -> StartError {
    let hint = match &e {
        StorageError::NotOurs { node_id, .. } => format!(
            "The file was copied from node {node_id}, by pg_basebackup or pg_rewind. If this server \
             never ran as node {me} with this state directory, remove the file; otherwise restore \
             its own."
        ),
        StorageError::Corrupt { .. } => "This node does not vote until its state can be trusted: \
             restore the file from a backup of this server."
            .to_string(),
        StorageError::Io { .. } => "Check that pg_leader.state_dir exists, is writable by the \
             server's user and has free space."
            .to_string(),
    };
    let transient = matches!(e, StorageError::Io { .. });
    StartError {
        message: e.to_string(),
        detail: None,
        hint: Some(hint),
        transient,
    }
}

fn resolve(address: &str) -> Result<SocketAddr, StartError> {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            StartError::plain(
                format!("could not resolve address \"{address}\""),
                Some("Check pg_leader.peers."),
            )
            .transient()
        })
}

impl Node {
    fn start(watch: going_away::Watch) -> Result<Node, StartError> {
        let settings = NodeSettings::read()?;
        let me = NodeId(settings.node_id);
        let storage = Storage::open(&settings.state_dir, &settings.cluster_name, me)
            .map_err(|e| storage_error(e, me))?;
        // Only this server's own address is needed to start; the others' are resolved once, as
        // the configuration in effect comes out of the core (`follow_membership`).
        let own_entry = crate::cluster_config::find_self(&settings.peers, me.0 as i32)?;
        let own = resolve(&own_entry.address())?;
        let addresses = BTreeMap::from([(me, own)]);
        let mut socket = UdpSocket::bind(own).map_err(|e| {
            StartError::plain(
                format!("could not bind UDP socket to {own}: {e}"),
                Some("Is another program using this port? Choose pg_leader ports outside net.ipv4.ip_local_port_range."),
            )
            .transient()
        })?;
        let poll = Poll::new()
            .map_err(|e| StartError::plain(format!("could not create poll: {e}"), None))?;
        poll.registry()
            .register(&mut socket, Token(0), Interest::READABLE)
            .map_err(|e| StartError::plain(format!("could not register socket: {e}"), None))?;
        watch
            .register(poll.registry())
            .map_err(|e| StartError::plain(format!("could not register a pipe: {e}"), None))?;
        let http = match &settings.http_listen {
            None => None,
            Some(listen) => {
                let address = resolve(listen)?;
                Some(HttpServer::bind(address, poll.registry()).map_err(|e| {
                    StartError::plain(
                        format!("could not listen for HTTP on {address}: {e}"),
                        Some("Check pg_leader.http_port and pg_leader.http_address."),
                    )
                    .transient()
                })?)
            }
        };
        let mut config = Config::from_peers(
            me,
            settings.peers.iter().map(|p| (NodeId(p.id), p.address())),
            settings.heartbeat_ms as u64,
            settings.election_timeout_ms as u64,
        );
        config.can_lead = crate::settings::leads_by_settings();
        config.priority = crate::settings::priority();
        config.promotes = crate::settings::AUTO_FAILOVER.get();
        config.synchronous_quorum = crate::settings::synchronous_quorum();
        let conninfo = crate::settings::conninfo(&settings.peers, settings.node_id);
        let now = boottime_now();
        let seed =
            now.as_micros() ^ (std::process::id() as u64) << 20 ^ (settings.node_id as u64) << 48;
        let earlier = clean_stop::earlier_promises(&storage, settings.node_id);
        let raft = Raft::start(
            config,
            storage.persisted().clone(),
            Box::new(SplitMix64::new(seed)),
            now,
            earlier,
        )
        .map_err(|e| StartError::plain(format!("invalid configuration: {e}"), None))?;
        let codec = Codec::new(&settings.cluster_name, &settings.secret);
        pgrx::log!(
            "pg_leader: node {} listening on {own} (cluster \"{}\", term {})",
            me,
            settings.cluster_name,
            raft.term()
        );
        let stats = BTreeMap::new();
        let history = History::new(&settings.state_dir);
        let hook = RoleHook::new(
            &crate::settings::on_role_change(),
            settings.state_dir.join("on_role_change.out"),
        );
        let mut node = Node {
            settings,
            raft,
            storage,
            socket,
            poll,
            codec,
            addresses,
            windows: BTreeMap::new(),
            stats,
            rejected_by_reason: [0; Reject::ALL.len()],
            sent_counters: BTreeMap::new(),
            history,
            transfer_answered: PUBLISHED.share().transfer_asked,
            http,
            hook,
            forwarded_request: None,
            last_cause: Cause::Start.as_str(),
            change: None,
            change_answered: PUBLISHED.share().change_asked,
            peers_target: None,
            watch,
            failover: Default::default(),
            synchronous: Default::default(),
            conninfo,
            advertised_at: None,
            database_note: None,
            yield_pending: false,
            yielded: false,
            rejoin_blocked: None,
            rejoin_launched: false,
            health: crate::postgres::health::Health::start(),
            counters: Default::default(),
            maintenance_request: None,
            maintenance_answered: PUBLISHED.share().maintenance_asked,
            paused_seen: false,
        };
        node.report_earlier_rejoin();
        node.process_ready();
        // Published as a follower: a lease a previous worker of this server gave up on its way
        // out cannot come back through this one.
        crate::lease_gate::reopen();
        node.compare_with_peers();
        Ok(node)
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(16);
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        self.watch.loop_running();
        loop {
            if let Some(reason) = self.watch.reason() {
                self.leave(reason);
                match reason {
                    // As PostgreSQL's own SIGQUIT handler: no exit callbacks in a dying server.
                    // SAFETY: _exit ends the process without touching shared state.
                    going_away::Reason::CrashExit => unsafe { libc::_exit(2) },
                    going_away::Reason::PostmasterDied => {
                        self.unpublish();
                        return;
                    }
                }
            }
            if BackgroundWorker::sigterm_received() {
                self.shut_down();
                self.record_clean_stop();
                return;
            }
            if BackgroundWorker::sighup_received() {
                self.reload();
            }
            let _ = BackgroundWorker::sigint_received();
            self.serve_transfer_request();
            self.serve_change_request();
            self.drive_change();
            self.serve_maintenance_request();
            self.drive_maintenance();
            self.follow_maintenance();
            self.drive_peers_target();
            self.run_role_hook();
            self.follow_health();
            // Unknown when turned off: then no one is refused for its WAL, by us or because of us.
            self.raft.set_wal_position(
                if crate::settings::WAL_AWARE_ELECTION.get()
                    || crate::settings::AUTO_FAILOVER.get()
                    || crate::settings::synchronous_quorum()
                {
                    crate::wal::current_position()
                } else {
                    WalPosition::default()
                },
            );
            self.advertise();
            self.follow_synchronous();
            self.follow_database();
            let now = boottime_now();
            let deadline = self.raft.next_deadline();
            if deadline <= now {
                self.raft.tick(now);
                self.process_ready();
                continue;
            }
            let wait = deadline.saturating_since(now).min(MAX_SLEEP);
            match self.poll.poll(
                &mut events,
                Some(std::time::Duration::from_micros(wait.as_micros())),
            ) {
                Ok(()) => {}
                // A signal: the flags are checked at the top of the loop.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => pgrx::error!("pg_leader: could not wait for events: {e}"),
            }
            self.serve_http(&events);
            self.receive_each(&mut buf, Node::handle_datagram);
            self.serve_forwarded_request();
        }
    }

    /// Answers the HTTP connections that became ready.
    fn serve_http(&mut self, events: &Events) {
        let Some(mut http) = self.http.take() else {
            return;
        };
        let registry = self.poll.registry();
        for event in events.iter().filter(|e| HttpServer::owns(e.token())) {
            http.on_event(event.token(), registry, || self.facts());
        }
        http.expire(registry);
        self.http = Some(http);
    }

    /// Hands every datagram waiting on the socket to `handle`.
    fn receive_each(&mut self, buf: &mut [u8], handle: impl Fn(&mut Node, &[u8], SocketAddr)) {
        loop {
            match self.socket.recv_from(buf) {
                Ok((len, from)) => {
                    let datagram = buf[..len].to_vec();
                    handle(self, &datagram, from);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    pgrx::debug1!("pg_leader: receive failed: {e}");
                    return;
                }
            }
        }
    }

    fn reject(&mut self, claimed: Option<NodeId>, reason: Reject) {
        let me = self.raft.id();
        let who = claimed
            .filter(|id| self.stats.contains_key(id))
            .unwrap_or(me);
        self.stats.entry(who).or_default().packets_rejected += 1;
        let count = &mut self.rejected_by_reason[reason.index()];
        *count += 1;
        // Rate-limited: the first of each reason, then every 1000th.
        if *count == 1 || (*count).is_multiple_of(1000) {
            pgrx::log!(
                "pg_leader: rejected {} datagram(s) claiming to be from node {} ({reason})",
                count,
                who
            );
        }
        // No publish here: a flood of bad datagrams must stay cheap. The counters reach shared
        // memory with the next publish, at the latest with the next heartbeat or timer tick.
    }

    fn handle_datagram(&mut self, datagram: &[u8], source: SocketAddr) {
        if self.admit(datagram, source) {
            self.process_ready();
        }
    }

    /// Authenticates a datagram and steps the core with it; false when it was rejected.
    fn admit(&mut self, datagram: &[u8], source: SocketAddr) -> bool {
        let claimed = pg_leader_wire::frame::claimed_sender(datagram);
        let (header, msg) = match self.codec.open(datagram) {
            Ok(opened) => opened,
            Err(reason) => {
                self.reject(claimed, reason);
                return false;
            }
        };
        let known = self.addresses.contains_key(&header.sender);
        // A sender outside our configuration may be a leader added while we were away (the
        // core decides); the number of such senders we keep replay windows for is bounded.
        if header.sender == self.raft.id()
            || (!known && self.windows.len() >= 4 * crate::shmem::MAX_NODES)
        {
            self.reject(None, Reject::UnknownSender);
            return false;
        }
        if !self
            .windows
            .entry(header.sender)
            .or_default()
            .accept(header.epoch, header.counter)
        {
            self.reject(Some(header.sender), Reject::Replay);
            return false;
        }
        let now = boottime_now();
        match self.raft.step(msg, now) {
            Ok(()) => {}
            Err(Dropped::UnknownSender) => {
                if !known {
                    self.windows.remove(&header.sender);
                }
                self.reject(None, Reject::UnknownSender);
                return false;
            }
            Err(_) => {
                self.reject(Some(header.sender), Reject::Malformed);
                return false;
            }
        }
        if !known {
            // Answer it where it wrote from, until a configuration names its address.
            self.addresses.insert(header.sender, source);
        }
        let stats = self.stats.entry(header.sender).or_default();
        stats.packets_in += 1;
        stats.last_contact_us = now.as_micros();
        true
    }

    /// The fixed order: persist, publish, send, log.
    fn process_ready(&mut self) {
        let ready = self.raft.take_ready();
        let durable = ready.hard_state.is_some() || !ready.entries.is_empty();
        let before = boottime_now();
        let saved = self.storage.save(&ready);
        if durable {
            // The succession step allows for slow writes (`pg_leader_raft::succession`).
            self.raft
                .note_fsync(boottime_now().saturating_since(before));
        }
        if let Err(e) = saved {
            self.unpublish();
            // Nothing that depends on this state may leave: exit, and restart from the disk.
            pgrx::error!("pg_leader: could not make its state durable: {e}");
        }
        // Addresses first: messages to a server just added leave with this Ready.
        if ready
            .events
            .iter()
            .any(|e| matches!(e, Event::MembershipChanged { .. }))
        {
            self.follow_membership();
        }
        for event in &ready.events {
            if let Event::ChangeAnswered { outcome } = event {
                self.leader_answered_change(*outcome);
            }
        }
        self.counters.observe(&ready.events, self.raft.leader_id());
        if let Some(cause) = ready.events.iter().rev().find_map(|e| match e {
            Event::RoleChanged { cause, .. } => Some(*cause),
            _ => None,
        }) {
            self.last_cause = cause.as_str();
        }
        // The history first: a lease is on record before any session can act on it, so a
        // worker stopped between the two never leaves a lease in use that the record lacks.
        self.record_history(&ready);
        self.publish();
        self.send(&ready);
        self.log_events(&ready);
        if let Some(request) = ready.events.iter().rev().find_map(|e| match e {
            Event::TransferRequested { from, target } => Some((*from, *target)),
            _ => None,
        }) {
            self.forwarded_request = Some(request);
        }
        if let Some(outcome) = ready.events.iter().rev().find_map(|e| match e {
            Event::TransferRefused { outcome } => Some(*outcome),
            _ => None,
        }) {
            // The session that passed the switchover on waits for this, or for the handover.
            let mut p = PUBLISHED.exclusive();
            p.transfer_refusals += 1;
            p.transfer_refusal_outcome = outcome as i32;
            drop(p);
            CHANGES.broadcast();
        }
        let status = self.raft.status();
        match (status.role, status.leader_id) {
            // A server that may not lead leads only as a caretaker (passing entries on to one
            // that may, without a lease): no leader to the outside world.
            (Role::Leader, _) if !self.raft.config().can_lead => {}
            (Role::Leader, _) => self.hook.observe("leader", status.term.0, status.id.0),
            (Role::Follower, Some(l)) => self.hook.observe("follower", status.term.0, l.0),
            _ => {}
        }
        // Last: it may run the core again (a server that yields), with this Ready all handled.
        self.settle_yield();
    }

    /// Starts, reaps and logs the `pg_leader.on_role_change` command.
    fn run_role_hook(&mut self) {
        for outcome in self.hook.poll() {
            match outcome {
                Outcome::Started(command) => {
                    pgrx::log!("pg_leader: running on_role_change: {command}")
                }
                Outcome::CouldNotStart(command, e) => {
                    pgrx::warning!("pg_leader: could not run on_role_change \"{command}\": {e}")
                }
                Outcome::Finished(command, status, output) if status.success() => {
                    pgrx::log!(
                        "pg_leader: on_role_change \"{command}\" succeeded; output: {output}"
                    )
                }
                Outcome::Finished(command, status, output) => {
                    pgrx::warning!("pg_leader: on_role_change \"{command}\" failed ({status}); output: {output}")
                }
                Outcome::Lost(command, e) => {
                    pgrx::warning!("pg_leader: lost track of on_role_change \"{command}\": {e}")
                }
                Outcome::TimedOut(command) => pgrx::warning!(
                    "pg_leader: on_role_change \"{command}\" was killed after {} s",
                    role_hook::TIMEOUT.as_secs()
                ),
            }
        }
    }

    fn record_history(&mut self, ready: &Ready) {
        let now = boottime_now();
        let status = self.raft.status();
        for event in &ready.events {
            match event {
                Event::RoleChanged { cause, .. } => {
                    self.history.role_changed(now, &status, cause.as_str())
                }
                Event::MaintenanceChanged {
                    paused,
                    by,
                    term,
                    index,
                } => self.maintenance_changed(*paused, *by, *term, *index),
                _ => {}
            }
        }
        self.history.lease(now, &status);
    }

    fn send(&mut self, ready: &Ready) {
        for msg in &ready.messages {
            self.send_message(msg);
        }
    }

    fn send_message(&mut self, msg: &Message) {
        let Some(addr) = self.addresses.get(&msg.to) else {
            return;
        };
        let counter = self.sent_counters.entry(msg.to).or_default();
        *counter += 1;
        let datagram = self.codec.seal(msg, self.storage.boot_epoch(), *counter);
        match self.socket.send_to(&datagram, *addr) {
            Ok(_) => self.stats.entry(msg.to).or_default().packets_out += 1,
            Err(e) => {
                pgrx::debug1!("pg_leader: could not send to node {} ({addr}): {e}", msg.to)
            }
        }
    }

    fn log_events(&self, ready: &Ready) {
        for event in &ready.events {
            match event {
                Event::RoleChanged {
                    role,
                    term,
                    leader,
                    cause,
                } => {
                    let leader = leader.map_or("unknown".to_string(), |l| l.to_string());
                    let text = format!(
                        "pg_leader: node {} is now {role} in term {term}, leader {leader} ({cause})",
                        self.raft.id()
                    );
                    // Campaign steps of a cut-off node would flood the log: keep them at DEBUG1.
                    let quiet = matches!(role, Role::PreCandidate)
                        || matches!(cause, Cause::LostElection | Cause::Start);
                    if quiet {
                        pgrx::debug1!("{text}");
                    } else {
                        pgrx::log!("{text}");
                    }
                }
                Event::LeaderChanged { term, leader } => {
                    pgrx::log!("pg_leader: node {leader} leads term {term}");
                }
                Event::TransferRequested { from, target } => {
                    let to =
                        target.map_or("the most caught-up voter".into(), |t| format!("node {t}"));
                    pgrx::log!("pg_leader: node {from} passed on a switchover request to {to}");
                }
                Event::MembershipChanged { membership, index } => {
                    let source = if index.0 == 0 {
                        "from pg_leader.peers".to_string()
                    } else {
                        format!("replicated, log index {index}")
                    };
                    pgrx::log!("pg_leader: configuration in effect ({source}): {membership}");
                }
                Event::ChangeRequested {
                    from,
                    change,
                    outcome,
                } => {
                    pgrx::log!(
                        "pg_leader: node {from} passed on a membership change ({}): {}",
                        membership::describe(change),
                        membership::outcome_text(*outcome)
                    );
                }
                Event::ChangeAnswered { outcome } => {
                    pgrx::debug1!(
                        "pg_leader: the leader answered a membership change: {}",
                        membership::outcome_text(*outcome)
                    );
                }
                Event::FollowerDeparted { node } => pgrx::log!(
                    "pg_leader: node {node} is going away (its PostgreSQL stopped); not counted until it answers again"
                ),
                Event::TransferRefused { outcome } => {
                    pgrx::log!("pg_leader: the leader refused a switchover passed on to it (code {outcome})");
                }
                // Logged with the history record (`maintenance_changed`).
                Event::MaintenanceChanged { .. } => {}
            }
        }
    }

    fn publish(&self) {
        let status: Status = self.raft.status();
        let mut p = PUBLISHED.exclusive();
        // Sessions wait on changes of role, term and leader, and of the configuration (and its
        // commit) for membership changes.
        let before = (
            p.role(),
            p.term,
            p.leader_id,
            p.membership_index,
            p.membership_index <= p.commit_index,
            p.paused,
        );
        p.generation += 1;
        p.node_id = status.id.0 as i32;
        p.set_role(published_role(status.role));
        p.term = status.term.0;
        p.leader_id = status.leader_id.map_or(0, |l| l.0 as i32);
        p.voted_for = status.voted_for.map_or(0, |v| v.0 as i32);
        p.commit_index = status.commit_index.0;
        p.lease_deadline_us = status.lease_deadline.map_or(0, |d| d.as_micros());
        crate::fence::lease::publish(
            status
                .lease_deadline
                .filter(|_| status.role == Role::Leader)
                .map(|d| d.as_micros()),
        );
        p.last_leader_contact_us = status.last_leader_contact.map_or(0, |t| t.as_micros());
        let error = self
            .health
            .sickness()
            .map(|s| s.to_string())
            .or_else(|| status.not_preferred.map(|r| r.to_string()))
            .or_else(|| status.quorum_refusal.map(|r| r.to_string()))
            .or_else(|| self.database_note.clone());
        p.set_error(error.as_deref());
        // SAFETY: getpid cannot fail.
        p.worker_pid = unsafe { libc::getpid() };
        let (membership, membership_index) = self.raft.membership();
        let members = membership.members();
        p.node_count = members.len().min(crate::shmem::MAX_NODES) as u32;
        p.membership_index = membership_index.0;
        p.set_self_membership(membership.role_of(status.id));
        p.rejected_by_reason = self.rejected_by_reason;
        p.set_cause(self.last_cause);
        let maintenance = self.raft.maintenance();
        p.paused = maintenance.paused;
        p.paused_by = maintenance.by.map_or(0, |n| n.0 as i32);
        p.paused_term = maintenance.term.0;
        for (slot, member) in p.nodes.iter_mut().zip(members) {
            let id = member.id;
            let stats = self.stats.get(&id).copied().unwrap_or_default();
            *slot = NodeSlot::new(id.0, &member.address);
            slot.set_membership(Some(member.role));
            slot.last_contact_us = stats.last_contact_us;
            slot.packets_in = stats.packets_in;
            slot.packets_out = stats.packets_out;
            slot.packets_rejected = stats.packets_rejected;
            slot.match_index = if id == status.id {
                status.last_index.0
            } else {
                self.raft.follower_progress(id).map_or(0, |(m, _)| m.0)
            };
        }
        let changed = before
            != (
                p.role(),
                p.term,
                p.leader_id,
                p.membership_index,
                p.membership_index <= p.commit_index,
                p.paused,
            );
        drop(p);
        if changed {
            CHANGES.broadcast();
        }
    }

    /// No lease, no role: what sessions must see once this worker stops driving the core.
    fn unpublish(&self) {
        let mut p = PUBLISHED.exclusive();
        p.generation += 1;
        p.set_role(PublishedRole::Starting);
        p.lease_deadline_us = 0;
        crate::fence::lease::publish(None);
        p.leader_id = 0;
        drop(p);
        CHANGES.broadcast();
    }

    fn reload(&mut self) {
        reload_config_file();
        let promotes = crate::settings::AUTO_FAILOVER.get();
        if promotes != self.raft.config().promotes {
            self.raft.set_promotes(promotes);
            pgrx::log!(
                "pg_leader: pg_leader.auto_failover is {}",
                if promotes {
                    "on: PostgreSQL follows the election"
                } else {
                    "off: pg_leader only elects"
                }
            );
        }
        self.reload_synchronous();
        let conninfo = crate::settings::conninfo(&self.settings.peers, self.settings.node_id);
        if conninfo != self.conninfo {
            self.conninfo = conninfo;
            self.advertised_at = None;
        }
        self.hook.set_template(&crate::settings::on_role_change());
        let peers_text = crate::settings::peers_text();
        match crate::cluster_config::parse_peers(&peers_text) {
            Ok(peers) if peers == self.settings.peers => {}
            _ => self.reload_peers(&peers_text),
        }
        let priority = crate::settings::priority();
        if priority != self.raft.config().priority {
            self.raft.set_priority(priority);
            pgrx::log!("pg_leader: pg_leader.priority is {priority}");
        }
        self.follow_can_lead();
        let heartbeat = crate::settings::HEARTBEAT_INTERVAL.get() as u32;
        let election = crate::settings::ELECTION_TIMEOUT.get() as u32;
        if (heartbeat, election)
            != (
                self.settings.heartbeat_ms,
                self.settings.election_timeout_ms,
            )
        {
            let result = crate::cluster_config::check_timing(heartbeat, election)
                .map_err(StartError::from)
                .and_then(|_| {
                    self.raft
                        .set_timing(
                            Duration::from_millis(heartbeat as u64),
                            Duration::from_millis(election as u64),
                        )
                        .map_err(|e| StartError::plain(e.to_string(), None))
                });
            match result {
                Ok(()) => {
                    self.settings.heartbeat_ms = heartbeat;
                    self.settings.election_timeout_ms = election;
                    pgrx::log!("pg_leader: heartbeat interval {heartbeat}ms, election timeout {election}ms");
                }
                Err(e) => {
                    ereport_start_error(&e);
                    pgrx::log!(
                        "pg_leader: keeping heartbeat interval {}ms and election timeout {}ms",
                        self.settings.heartbeat_ms,
                        self.settings.election_timeout_ms
                    );
                }
            }
        }
        match crate::cluster_config::read_secret(
            &crate::settings::SECRET_FILE
                .get()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ) {
            Ok(secret) if secret != self.settings.secret => {
                self.codec = Codec::new(&self.settings.cluster_name, &secret);
                self.settings.secret = secret;
                pgrx::log!("pg_leader: secret reloaded");
            }
            Ok(_) => {}
            Err(e) => {
                ereport_start_error(&StartError::from(e));
                pgrx::log!("pg_leader: keeping the previous secret");
            }
        }
    }

    /// A session's switchover request (`pg_leader_transfer_leadership()`): started here on the
    /// leader, passed on to the leader from a follower.
    fn serve_transfer_request(&mut self) {
        let (asked, target) = {
            let p = PUBLISHED.share();
            (p.transfer_asked, p.transfer_target)
        };
        if asked <= self.transfer_answered {
            return;
        }
        self.transfer_answered = asked;
        let target = (target > 0).then_some(NodeId(target as u32));
        let status = self.raft.status();
        let (code, chosen) = match (status.role, status.leader_id) {
            (Role::Leader, _) => self.start_transfer(target),
            (_, Some(leader)) => {
                self.raft
                    .send_from_host(leader, Body::TransferRequest { target });
                pgrx::log!(
                    "pg_leader: passed a switchover request on to node {leader}, the leader"
                );
                (TRANSFER_FORWARDED, target)
            }
            _ => (1, None),
        };
        {
            let mut p = PUBLISHED.exclusive();
            p.transfer_answered = asked;
            p.transfer_outcome = code;
            p.transfer_chosen = chosen.map_or(0, |c| c.0 as i32);
        }
        // The session waits on the condition variable.
        CHANGES.broadcast();
        self.process_ready();
    }

    /// A switchover a follower passed on.
    fn serve_forwarded_request(&mut self) {
        if let Some((from, target)) = self.forwarded_request.take() {
            let (code, _) = self.start_transfer(target);
            if code != 0 {
                let outcome = code as u8;
                self.raft
                    .send_from_host(from, Body::TransferRefused { outcome });
            }
            self.process_ready();
        }
    }

    /// Starts a handover on this leader to `target` or the most caught-up voter; returns the
    /// outcome code sessions read (0: started) and the node chosen.
    fn start_transfer(&mut self, target: Option<NodeId>) -> (i32, Option<NodeId>) {
        let chosen = target.or_else(|| self.raft.best_transfer_target());
        // A standby that leads is promoted (auto_failover): handing over to another standby
        // before it is a primary could promote both, each naming its new timeline alike.
        let standby_to_standby = self.raft.config().promotes
            && self.raft.role() == Role::Leader
            && crate::wal::current_position().in_recovery
            && chosen
                .and_then(|t| self.raft.heard_position(t))
                .is_some_and(|w| w.in_recovery);
        if standby_to_standby {
            return (7, chosen);
        }
        let outcome = match chosen {
            Some(t) => self.raft.transfer_leadership(t, boottime_now()),
            None => Err(TransferError::UnknownTarget(NodeId(0))),
        };
        let code = match outcome {
            Ok(()) => 0,
            Err(TransferError::NotLeader(_)) => 1,
            Err(TransferError::UnknownTarget(_)) => 2,
            Err(TransferError::TargetIsLeader) => 3,
            Err(TransferError::AlreadyInProgress(_)) => 4,
            Err(TransferError::TargetCannotLead(_)) => 6,
            Err(TransferError::PromotionUnderWay(_)) => 7,
        };
        if code == 0 {
            pgrx::log!(
                "pg_leader: handing leadership to node {} on request",
                chosen.map_or(0, |c| c.0)
            );
            let to_standby = chosen
                .and_then(|t| self.raft.heard_position(t))
                .is_some_and(|w| w.in_recovery);
            let primary = !crate::wal::current_position().in_recovery;
            self.yield_pending = self.raft.config().promotes && primary && to_standby;
        }
        (code, chosen)
    }

    /// Runs the core, bounded by one election timeout, until a handover this leader started has
    /// sent TimeoutNow (or was abandoned): on a stop, where the target first has to replay the
    /// primary's WAL (`Config::promotes`).
    fn finish_planned_handover(&mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut events = Events::with_capacity(16);
        let until =
            boottime_now() + Duration::from_millis(self.settings.election_timeout_ms as u64);
        loop {
            let now = boottime_now();
            // The primary's WAL as it is now: commits acknowledged up to the lease's end count.
            if crate::settings::WAL_AWARE_ELECTION.get()
                || crate::settings::AUTO_FAILOVER.get()
                || crate::settings::synchronous_quorum()
            {
                self.raft.set_wal_position(crate::wal::current_position());
            }
            self.raft.tick(now);
            self.process_ready();
            if !self.raft.transfer_pending() || now >= until {
                return;
            }
            let wait = self.raft.next_deadline().min(until).saturating_since(now);
            let wait = std::time::Duration::from_micros(wait.as_micros().max(1000));
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => self.receive_each(&mut buf, Node::handle_datagram),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Whether this server may lead now: `pg_leader.can_be_leader` on and `pg_leader.priority`
    /// above 0, unless it yielded.
    fn may_lead(&self) -> bool {
        crate::settings::leads_by_settings() && !self.yielded
    }

    /// A switchover this primary started has left it following: it yields. One abandoned (still
    /// leading, nothing pending) is forgotten.
    fn settle_yield(&mut self) {
        if !self.yield_pending {
            return;
        }
        match self.raft.role() {
            // TimeoutNow not sent yet: the switchover may still be abandoned.
            Role::Leader if self.raft.transfer_pending() => {}
            Role::Leader if self.raft.transfer_target().is_none() => self.yield_pending = false,
            // TimeoutNow has left (or this server follows): yield now, so that its very next
            // answer (a lost vote request may make a heartbeat the first it hears) says so.
            _ => {
                self.yield_pending = false;
                self.yielded = true;
                self.follow_can_lead();
                pgrx::log!(
                    "pg_leader: this primary handed leadership to a standby: it offers no more to lead until it is rebuilt as a standby"
                );
            }
        }
    }

    /// Tells every other member how this server's PostgreSQL is reached, every second (a
    /// datagram may be lost; a server may start later), and at once after a change.
    fn advertise(&mut self) {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(1);
        if self.advertised_at.is_some_and(|at| at.elapsed() < EVERY) {
            return;
        }
        self.advertised_at = Some(std::time::Instant::now());
        let me = self.raft.id();
        let others: Vec<NodeId> = self
            .raft
            .membership()
            .0
            .members()
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != me)
            .collect();
        for id in others {
            let conninfo = self.conninfo.clone();
            self.raft.send_from_host(id, Body::Advert { conninfo });
        }
        self.process_ready();
    }

    /// PostgreSQL follows the election (`postgres::failover`): each action is logged with its
    /// term and cause and recorded in the history.
    fn follow_database(&mut self) {
        if !crate::settings::AUTO_FAILOVER.get() {
            self.database_note = None;
            return;
        }
        use crate::postgres::failover::{Action, Local};
        let local = Local::read();
        let now = boottime_now();
        let heartbeat = Duration::from_millis(self.settings.heartbeat_ms as u64);
        let may_promote = self.raft.has_lease(now)
            && !self.raft.transfer_pending()
            && self.raft.live_primary().is_none()
            && (self.raft.heard_all_since_elected()
                || self
                    .raft
                    .leader_since()
                    .is_some_and(|since| now >= since + heartbeat));
        // Maintenance mode (or not sure yet that it is off): no promotion, re-pointing or
        // rejoin; decided again from the facts once it is off.
        if self.raft.automatic_actions_held() {
            if self.raft.maintenance().paused && self.database_note.is_some() {
                self.database_note = None;
                self.publish();
            }
            return;
        }
        // PostgreSQL replays what it received before it finishes a promotion anyway: waiting for
        // the replay first only keeps a slow or held-up replay from stretching the read-only
        // time after the lease was won; it must not stop the promotion for good.
        // With the synchronous quorum the vote compared what this standby flushed: it replays
        // all of it before the promotion is asked, however long that takes.
        let replay_wait_over = !crate::settings::synchronous_quorum()
            && self.raft.leader_since().is_some_and(|since| {
                now >= since + Duration::from_millis(self.settings.election_timeout_ms as u64)
            });
        let turn = self
            .failover
            .drive(&self.raft, &local, may_promote, replay_wait_over);
        if self.yielded && local.wal.in_recovery && turn.rejoin.is_none() {
            // Rebuilt as a standby: it may lead again, as any standby.
            self.yielded = false;
            self.follow_can_lead();
        }
        let status = self.raft.status();
        match &turn.action {
            Some(Action::Promoted { term }) => {
                self.raft.promotion_asked();
                self.counters.promoted();
                pgrx::log!(
                    "pg_leader: promoting this standby: it leads term {term} with the lease and has replayed all WAL received"
                );
                self.history
                    .action(boottime_now(), &status, "promote (leader in recovery)");
            }
            Some(Action::Repointed { leader, term }) => {
                pgrx::log!(
                    "pg_leader: streaming from node {leader}, the leader of term {term}: primary_conninfo set and reloaded"
                );
                self.history.action(
                    boottime_now(),
                    &status,
                    &format!("repoint to node {leader} (new leader)"),
                );
            }
            None => {}
        }
        if let Some(due) = &turn.rejoin {
            if !self.yielded {
                // A former primary (or a standby past the fork) must not lead again: its data
                // forked from the leader's.
                self.yielded = true;
                self.follow_can_lead();
            }
            self.rejoin(due);
        }
        let note = match &turn.rejoin {
            Some(due) => Some(match &self.rejoin_blocked {
                Some((_, _, why)) => format!(
                    "{}: node {} leads on a newer timeline; rejoin refused: {why}",
                    due.subject(),
                    due.leader
                ),
                None if self.rejoin_launched => format!(
                    "{}: rejoining as a standby of node {} (pg_rewind)",
                    due.subject(),
                    due.leader
                ),
                None => format!(
                    "{}: node {} leads on a newer timeline; rebuild this server as its standby (pg_rewind): pg_leader.auto_rejoin is off",
                    due.subject(),
                    due.leader
                ),
            }),
            None => turn.note.clone(),
        };
        if note != self.database_note {
            if let Some(n) = &note {
                pgrx::log!("pg_leader: {n}");
            }
            self.database_note = note;
            self.publish();
        }
    }

    /// A former primary rebuilds itself as a standby of the leader (`postgres::rejoin`), with
    /// `pg_leader.auto_rejoin` on; once, not again for a leader and term that were refused.
    fn rejoin(&mut self, due: &crate::postgres::failover::RejoinDue) {
        use crate::postgres::rejoin;
        if !crate::settings::AUTO_REJOIN.get() || self.rejoin_launched {
            return;
        }
        let leader = due.leader.0;
        if self
            .rejoin_blocked
            .as_ref()
            .is_some_and(|(l, t, _)| *l == leader && *t == due.term)
        {
            return;
        }
        let plan = rejoin::RejoinPlan {
            term: due.term,
            leader,
            source_conninfo: due.source_conninfo.clone(),
            node_id: self.settings.node_id,
        };
        match rejoin::possible().and_then(|()| rejoin::start(&plan)) {
            Ok(()) => {
                self.rejoin_launched = true;
                pgrx::log!(
                    "pg_leader: {}: rejoining as a standby of node {leader}, the leader of term {}: this server stops for pg_rewind and restarts in recovery",
                    due.subject(),
                    due.term
                );
                let status = self.raft.status();
                self.history.action(
                    boottime_now(),
                    &status,
                    &format!("rejoin from node {leader} ({})", due.subject()),
                );
            }
            Err(why) => {
                pgrx::warning!(
                    "pg_leader: {}: no rejoin with node {leader}: {why}",
                    due.subject()
                );
                self.rejoin_blocked = Some((leader, due.term, why));
            }
        }
    }

    /// What a rejoin before this worker's start left behind (`postgres::rejoin`).
    fn report_earlier_rejoin(&mut self) {
        use crate::postgres::rejoin::{on_worker_start, RejoinOutcome};
        let status = self.raft.status();
        match on_worker_start(&self.settings.state_dir) {
            Some(RejoinOutcome::Done { term, leader }) => {
                let leader = leader.unwrap_or(0);
                pgrx::log!(
                    "pg_leader: rejoined as a standby of node {leader} (term {})",
                    term.unwrap_or(0)
                );
                self.history.action(
                    boottime_now(),
                    &status,
                    &format!("rejoined as standby of node {leader}"),
                );
            }
            Some(RejoinOutcome::Refused {
                term,
                leader,
                reason,
            }) => {
                pgrx::warning!("pg_leader: an earlier rejoin was refused: {reason}");
                self.rejoin_blocked = Some((leader.unwrap_or(0), term.unwrap_or(0), reason));
            }
            Some(RejoinOutcome::Failed { reason }) => {
                pgrx::warning!("pg_leader: an earlier rejoin failed: {reason}");
                self.rejoin_blocked = Some((0, 0, reason));
                self.rejoin_launched = true;
            }
            Some(RejoinOutcome::InProgress { running: true, .. }) => self.rejoin_launched = true,
            Some(RejoinOutcome::InProgress { running: false, .. }) | None => {}
        }
    }

    /// A clean stop: a leader hands over to the most caught-up voter before it goes, so the
    /// cluster need not wait for an election timeout.
    fn shut_down(&mut self) {
        if self.raft.role() == Role::Leader {
            let me = self.raft.id();
            match self.raft.best_transfer_target() {
                Some(target) => match self.raft.transfer_leadership(target, boottime_now()) {
                    Ok(()) => {
                        // The lease is given up and published first; TimeoutNow leaves at a tick,
                        // at once unless the target, a standby to promote, still lacks WAL.
                        self.process_ready();
                        self.finish_planned_handover();
                        pgrx::log!(
                            "pg_leader: node {me} shutting down, handed leadership to node {target}"
                        );
                    }
                    Err(e) => pgrx::log!(
                        "pg_leader: node {me} shutting down as leader without a handover to node {target}: {e}"
                    ),
                },
                None => pgrx::log!(
                    "pg_leader: node {me} shutting down as leader without a handover: no voter that may lead was heard within the election timeout"
                ),
            }
        }
        self.unpublish();
    }
}

fn published_role(role: Role) -> PublishedRole {
    match role {
        Role::Follower => PublishedRole::Follower,
        Role::PreCandidate => PublishedRole::PreCandidate,
        Role::Candidate => PublishedRole::Candidate,
        Role::Leader => PublishedRole::Leader,
    }
}
