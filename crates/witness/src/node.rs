//! The witness's node: the core, its durable state and its datagrams, driven in the order every
//! host of the core keeps (persist, then send, then log), with none of PostgreSQL. It votes,
//! promises and keeps the log like any voter; it never leads with a lease (`can_lead` off: at
//! most a caretaker that passes the log on to a server that may lead).

use crate::config::WitnessConfig;
use mio::net::UdpSocket;
use pg_leader_http::facts::{Counters, Facts, PeerFacts};
use pg_leader_raft::{
    Config, EarlierPromises, Event, Instant, Message, NodeId, Raft, Role, SplitMix64,
};
use pg_leader_storage::clock::{boot_id, boottime_now};
use pg_leader_storage::Storage;
use pg_leader_wire::{claimed_sender, Codec, Reject, ReplayWindow};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

/// What the node counts of one peer, for `/status` and `/metrics`.
#[derive(Clone, Copy, Default)]
struct PeerStats {
    datagrams_in: u64,
    datagrams_out: u64,
    last_contact: Option<Instant>,
}

pub struct Node {
    config: WitnessConfig,
    pub raft: Raft,
    storage: Storage,
    pub socket: UdpSocket,
    codec: Codec,
    addresses: BTreeMap<NodeId, SocketAddr>,
    windows: BTreeMap<NodeId, ReplayWindow>,
    sent: BTreeMap<NodeId, u64>,
    stats: BTreeMap<NodeId, PeerStats>,
    rejected: [u64; Reject::ALL.len()],
    counters: Counters,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not open the state in \"{dir}\": {source}")]
    State {
        dir: String,
        source: pg_leader_storage::StorageError,
    },
    #[error("could not resolve the address \"{0}\" of this server in peers")]
    Resolve(String),
    #[error("could not bind {address}: {source} (is another program using this port?)")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Core(pg_leader_raft::ConfigError),
}

fn resolve(address: &str) -> Option<SocketAddr> {
    address.to_socket_addrs().ok()?.next()
}

impl Node {
    pub fn start(config: WitnessConfig) -> Result<Node, StartError> {
        let me = NodeId(config.node_id);
        let storage =
            Storage::open(&config.state_dir, &config.cluster_name, me).map_err(|source| {
                StartError::State {
                    dir: config.state_dir.display().to_string(),
                    source,
                }
            })?;
        let own = config
            .peers
            .iter()
            .find(|p| p.id == me.0)
            .expect("the configuration names this server")
            .address();
        let listen = resolve(&own).ok_or(StartError::Resolve(own))?;
        let socket = UdpSocket::bind(listen).map_err(|source| StartError::Bind {
            address: listen,
            source,
        })?;
        let mut core = Config::from_peers(
            me,
            config.peers.iter().map(|p| (NodeId(p.id), p.address())),
            config.heartbeat_ms as u64,
            config.election_timeout_ms as u64,
        );
        core.can_lead = false;
        let now = boottime_now();
        let earlier = take_clean_stop(&storage);
        let seed = now.as_micros() ^ (std::process::id() as u64) << 20 ^ (me.0 as u64) << 48;
        let raft = Raft::start(
            core,
            storage.persisted().clone(),
            Box::new(SplitMix64::new(seed)),
            now,
            earlier,
        )
        .map_err(StartError::Core)?;
        tracing::info!(
            "pg_leader-witness: node {me} listening on {listen} (cluster \"{}\", term {})",
            config.cluster_name,
            raft.term()
        );
        let codec = Codec::new(&config.cluster_name, &config.secret);
        let mut node = Node {
            config,
            raft,
            storage,
            socket,
            codec,
            addresses: BTreeMap::new(),
            windows: BTreeMap::new(),
            sent: BTreeMap::new(),
            stats: BTreeMap::new(),
            rejected: [0; Reject::ALL.len()],
            counters: Counters::default(),
        };
        node.follow_membership();
        node.process_ready()?;
        Ok(node)
    }

    /// One datagram from `source`: authenticated, not a replay, then stepped.
    pub fn admit(&mut self, datagram: &[u8], source: SocketAddr) {
        let claimed = claimed_sender(datagram);
        let (header, msg) = match self.codec.open(datagram) {
            Ok(opened) => opened,
            Err(reason) => return self.reject(reason, claimed),
        };
        let known = self.addresses.contains_key(&header.sender);
        // Replay windows are kept for a bounded number of unknown senders only.
        if header.sender == self.raft.id() || (!known && self.windows.len() >= 64) {
            return self.reject(Reject::UnknownSender, None);
        }
        let window = self.windows.entry(header.sender).or_default();
        if !window.accept(header.epoch, header.counter) {
            return self.reject(Reject::Replay, Some(header.sender));
        }
        let now = boottime_now();
        if let Err(dropped) = self.raft.step(msg, now) {
            if !known {
                self.windows.remove(&header.sender);
            }
            let reason = match dropped {
                pg_leader_raft::Dropped::UnknownSender => Reject::UnknownSender,
                _ => Reject::Malformed,
            };
            return self.reject(reason, Some(header.sender));
        }
        if !known {
            // Answer it where it wrote from, until a configuration names its address.
            self.addresses.insert(header.sender, source);
        }
        let stats = self.stats.entry(header.sender).or_default();
        stats.datagrams_in += 1;
        stats.last_contact = Some(now);
    }

    fn reject(&mut self, reason: Reject, from: Option<NodeId>) {
        self.rejected[reason.index()] += 1;
        tracing::debug!(
            "pg_leader-witness: dropped a datagram{}: {}",
            from.map_or(String::new(), |f| format!(" from node {f}")),
            reason.as_str()
        );
    }

    /// The fixed order: persist, then send, then log.
    pub fn process_ready(&mut self) -> Result<(), StartError> {
        let ready = self.raft.take_ready();
        if let Err(source) = self.storage.save(&ready) {
            // Nothing that depends on this state may leave: stop, and start again from disk.
            return Err(StartError::State {
                dir: self.config.state_dir.display().to_string(),
                source,
            });
        }
        if ready
            .events
            .iter()
            .any(|e| matches!(e, Event::MembershipChanged { .. }))
        {
            self.follow_membership();
        }
        self.counters.observe(&ready.events, self.raft.leader_id());
        for msg in &ready.messages {
            self.send(msg);
        }
        for event in &ready.events {
            if let Event::RoleChanged {
                role,
                term,
                leader,
                cause,
            } = event
            {
                let leader = leader.map_or("unknown".to_string(), |l| l.to_string());
                tracing::info!(
                    "pg_leader-witness: node {} is now {role} in term {term}, leader {leader} ({cause})",
                    self.raft.id()
                );
            }
        }
        Ok(())
    }

    fn send(&mut self, msg: &Message) {
        let Some(address) = self.addresses.get(&msg.to).copied() else {
            return;
        };
        let counter = self.sent.entry(msg.to).or_default();
        *counter += 1;
        let datagram = self.codec.seal(msg, self.storage.boot_epoch(), *counter);
        match self.socket.send_to(&datagram, address) {
            Ok(_) => self.stats.entry(msg.to).or_default().datagrams_out += 1,
            Err(e) => tracing::debug!("pg_leader-witness: could not send to {address}: {e}"),
        }
    }

    /// The address book follows the configuration in the log (servers added and removed).
    fn follow_membership(&mut self) {
        let me = self.raft.id();
        let members: Vec<(NodeId, String)> = self
            .raft
            .membership()
            .0
            .members()
            .iter()
            .filter(|m| m.id != me)
            .map(|m| (m.id, m.address.clone()))
            .collect();
        self.addresses.clear();
        for (id, address) in members {
            match resolve(&address) {
                Some(a) => {
                    self.addresses.insert(id, a);
                }
                None => tracing::warn!(
                    "pg_leader-witness: could not resolve the address \"{address}\" of node {id}"
                ),
            }
        }
        let addresses = &self.addresses;
        self.windows.retain(|id, _| addresses.contains_key(id));
    }

    /// A clean stop: depart (a caretaker passes the log on), then record when the promises end.
    pub fn stop(&mut self) {
        let _ = self.raft.depart(boottime_now());
        if let Err(e) = self.process_ready() {
            tracing::error!("pg_leader-witness: {e}");
            return;
        }
        match boot_id() {
            Some(boot) => {
                if let Err(e) = self
                    .storage
                    .record_clean_stop(&boot, self.raft.promises_end())
                {
                    tracing::warn!("pg_leader-witness: could not record the clean stop: {e}");
                }
            }
            None => tracing::warn!("pg_leader-witness: no boot id: the next start waits in full"),
        }
        tracing::info!("pg_leader-witness: node {} stopped", self.raft.id());
    }

    /// What the HTTP endpoints report.
    pub fn facts(&self) -> Facts {
        let now = boottime_now();
        let status = self.raft.status();
        let role = match status.role {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        let peers: Vec<PeerFacts> = self
            .stats
            .iter()
            .map(|(id, s)| PeerFacts {
                id: id.0,
                last_contact_seconds: s
                    .last_contact
                    .map(|t| now.saturating_since(t).as_micros() as f64 / 1e6),
                datagrams_in: s.datagrams_in,
                datagrams_out: s.datagrams_out,
            })
            .collect();
        let leader_contact_ms = status
            .last_leader_contact
            .map(|t| now.saturating_since(t).as_millis());
        let status_json = serde_json::json!({
            "node_id": status.id.0,
            "witness": true,
            "role": role,
            "term": status.term.0,
            "leader_id": status.leader_id.map(|l| l.0),
            "is_leader": false,
            "lease_remaining_ms": null,
            "last_leader_contact_ms": leader_contact_ms,
            "commit_index": status.commit_index.0,
            "nodes": peers.iter().map(|p| serde_json::json!({
                "node_id": p.id,
                "last_contact_ms": p.last_contact_seconds.map(|s| (s * 1000.0) as u64),
                "packets_in": p.datagrams_in,
                "packets_out": p.datagrams_out,
            })).collect::<Vec<_>>(),
        });
        Facts {
            node_id: status.id.0,
            role,
            term: status.term.0,
            leader_id: status.leader_id.map(|l| l.0),
            // Never a lease: a witness does not lead.
            lease_remaining_us: None,
            leader_contact_ms,
            election_timeout_ms: self.config.election_timeout_ms as u64,
            // No PostgreSQL: nothing to be in recovery or to stream; it serves what it has.
            accepts_connections: true,
            counters: self.counters,
            peers,
            rejected_by_reason: Reject::ALL
                .iter()
                .map(|r| (r.as_str(), self.rejected[r.index()]))
                .collect(),
            status_json: format!("{status_json}\n"),
            ..Facts::default()
        }
    }
}

/// What this start knows of the witness's earlier promises; the clean-stop record is taken so
/// that it serves this start only.
fn take_clean_stop(storage: &Storage) -> EarlierPromises {
    let (earlier, error) = storage.earlier_promises(&boot_id().unwrap_or_default());
    if let Some(e) = error {
        tracing::warn!("pg_leader-witness: {e}: waiting a full election timeout");
    }
    earlier
}
