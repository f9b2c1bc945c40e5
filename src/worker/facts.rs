//! What the operators' HTTP endpoints are told (`http::Facts`), gathered on the worker's main
//! thread when a request is complete: the core's status, the transport's counters, and a few
//! readings of shared memory (WAL positions, the WAL receiver, the fence's counters), each a
//! spinlock at most. Nothing is gathered between requests.

use super::{published_role, Node};
use crate::clock::boottime_now;
use crate::http::facts::{Facts, PeerFacts};
use pg_leader_raft::Role;
use pg_leader_wire::Reject;

fn json_text(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

impl Node {
    pub(super) fn facts(&self) -> Facts {
        let now = boottime_now();
        let status = self.raft.status();
        let lease_remaining_us = status
            .lease_deadline
            .filter(|d| *d > now && status.role == Role::Leader)
            .map(|d| d.saturating_since(now).as_micros());
        let leader_contact_ms = status
            .last_leader_contact
            .map(|t| now.saturating_since(t).as_millis());
        let ago_us = |us: u64| (us != 0).then(|| now.as_micros().saturating_sub(us));
        let wal = crate::wal::current_position();
        let fence = crate::fence::view();
        let peers = self
            .raft
            .membership()
            .0
            .members()
            .iter()
            .filter(|m| m.id != status.id)
            .map(|m| {
                let s = self.stats.get(&m.id).copied().unwrap_or_default();
                PeerFacts {
                    id: m.id.0,
                    last_contact_seconds: ago_us(s.last_contact_us).map(|us| us as f64 / 1e6),
                    datagrams_in: s.packets_in,
                    datagrams_out: s.packets_out,
                }
            })
            .collect();
        let mut facts = Facts {
            node_id: status.id.0,
            role: published_role(status.role).as_str(),
            term: status.term.0,
            leader_id: status.leader_id.map(|l| l.0),
            lease_remaining_us,
            leader_contact_ms,
            election_timeout_ms: self.settings.election_timeout_ms as u64,
            in_recovery: wal.in_recovery,
            wal_receiver_streaming: wal.in_recovery && crate::wal::receiver_streaming(),
            wal_position: wal.lsn,
            leader_wal_position: status
                .leader_id
                .filter(|l| *l != status.id)
                .and_then(|l| self.raft.heard_position(l))
                .filter(|p| p.known())
                .map(|p| p.lsn),
            accepts_connections: self.health.accepts_connections(),
            counters: self.counters,
            peers,
            rejected_by_reason: Reject::ALL
                .iter()
                .map(|r| (r.as_str(), self.rejected_by_reason[r.index()]))
                .collect(),
            fence_refused: fence.refused_commits,
            fence_withheld: fence.withheld_acknowledgements,
            status_json: String::new(),
        };
        facts.status_json = self.status_json(&facts);
        facts
    }

    /// `/status`: the same facts as pg_leader_status() and pg_leader_nodes().
    fn status_json(&self, f: &Facts) -> String {
        let now = boottime_now();
        let ms_ago = |us: u64| (us != 0).then(|| now.as_micros().saturating_sub(us) / 1000);
        let leader = self.raft.leader_id();
        let nodes: Vec<String> = self
            .raft
            .membership()
            .0
            .members()
            .iter()
            .map(|member| {
                let id = member.id;
                let s = self.stats.get(&id).copied().unwrap_or_default();
                format!(
                    "{{\"node_id\":{},\"address\":{},\"membership\":\"{}\",\"is_self\":{},\"is_leader\":{},\"last_contact_ms\":{},\"packets_in\":{},\"packets_out\":{},\"packets_rejected\":{}}}",
                    id.0,
                    json_text(&member.address),
                    member.role,
                    id == self.raft.id(),
                    leader == Some(id),
                    json_opt(ms_ago(s.last_contact_us)),
                    s.packets_in,
                    s.packets_out,
                    s.packets_rejected
                )
            })
            .collect();
        format!(
            "{{\"node_id\":{},\"role\":{},\"term\":{},\"leader_id\":{},\"is_leader\":{},\"lease_remaining_ms\":{},\"last_leader_contact_ms\":{},\"commit_index\":{},\"paused\":{},\"nodes\":[{}]}}\n",
            f.node_id,
            json_text(f.role),
            f.term,
            json_opt(f.leader_id),
            f.holds_lease(),
            json_opt(f.lease_remaining_us.map(|us| us / 1000)),
            json_opt(f.leader_contact_ms),
            self.raft.status().commit_index.0,
            self.raft.maintenance().paused,
            nodes.join(",")
        )
    }
}
