//! `/metrics`: the facts in Prometheus' text exposition format, encoded by `prometheus-client`
//! (the Prometheus project's own Rust client) so that names, escaping and number formatting
//! follow the format exactly. A registry is built per request from a snapshot: the worker keeps
//! its numbers where it already had them, and a scrape costs nothing between scrapes.
//!
//! The encoder writes OpenMetrics text, where a counter family `x` has the sample `x_total`.
//! That is what Prometheus asks for (`Accept: application/openmetrics-text`); other clients
//! get the classic text format (0.0.4), where the family is named like its sample, `x_total`:
//! read as OpenMetrics, a classic parser would take `x_total` for a second, untyped metric.
//! Every metric here is documented in the README's table.

use super::facts::Facts;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The roles `pg_leader_role` has a series for, as `pg_leader_status().role` spells them.
const ROLES: [&str; 4] = ["follower", "pre-candidate", "candidate", "leader"];

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn seconds(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// `name` is given without `_total`: the encoder appends it.
fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// LSNs fit an i64 for the first 8 EiB of WAL.
fn position(lsn: u64) -> i64 {
    i64::try_from(lsn).unwrap_or(i64::MAX)
}

/// The metrics as (content type, body): OpenMetrics when the client asks for it, else the
/// classic text format.
pub fn render(f: &Facts, openmetrics: bool) -> (&'static str, String) {
    let text = openmetrics_text(f);
    if openmetrics {
        (OPENMETRICS, text)
    } else {
        (CLASSIC, classic(&text))
    }
}

/// OpenMetrics text to the classic format: counter families take their sample's name
/// (`_total`), and the `# EOF` line goes.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines().filter(|l| *l != "# EOF") {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn openmetrics_text(f: &Facts) -> String {
    let mut r = Registry::with_prefix("pg_leader");
    let roles = Family::<Labels, Gauge>::default();
    for role in ROLES {
        roles
            .get_or_create(&vec![("role", role.to_string())])
            .set(i64::from(f.role == role));
    }
    r.register(
        "role",
        "1 for this server's Raft role, 0 for the others",
        roles,
    );
    gauge(
        &mut r,
        "node_id",
        "this server's pg_leader.node_id",
        f.node_id.into(),
    );
    gauge(&mut r, "term", "the current Raft term", f.term as i64);
    gauge(
        &mut r,
        "leader_id",
        "the node this server knows as leader, 0 while none is known",
        f.leader_id.map_or(0, i64::from),
    );
    seconds(
        &mut r,
        "lease_remaining_seconds",
        "on the leader, how long its lease holds without another acknowledgement; 0 elsewhere",
        f.lease_remaining_us.map_or(0.0, |us| us as f64 / 1e6),
    );
    let c = &f.counters;
    counter(
        &mut r,
        "elections_started",
        "elections this server started as candidate",
        c.elections_started,
    );
    counter(
        &mut r,
        "elections_won",
        "elections this server won",
        c.elections_won,
    );
    counter(
        &mut r,
        "leader_changes",
        "times the leader this server knows changed",
        c.leader_changes,
    );
    counter(
        &mut r,
        "promotions",
        "promotions of this server's PostgreSQL asked by pg_leader (failovers)",
        c.promotions,
    );
    let contact = Family::<Labels, FloatGauge>::default();
    let (sent, received) = (
        Family::<Labels, Counter>::default(),
        Family::<Labels, Counter>::default(),
    );
    for peer in &f.peers {
        let labels = vec![("peer", peer.id.to_string())];
        if let Some(s) = peer.last_contact_seconds {
            contact.get_or_create(&labels).set(s);
        }
        received.get_or_create(&labels).inc_by(peer.datagrams_in);
        sent.get_or_create(&labels).inc_by(peer.datagrams_out);
    }
    r.register(
        "peer_last_contact_seconds",
        "seconds since the last authentic datagram from the peer",
        contact,
    );
    r.register(
        "datagrams_received",
        "authentic datagrams received from the peer",
        received,
    );
    r.register("datagrams_sent", "datagrams sent to the peer", sent);
    let rejected = Family::<Labels, Counter>::default();
    for (reason, count) in &f.rejected_by_reason {
        rejected
            .get_or_create(&vec![("reason", reason.replace(' ', "_"))])
            .inc_by(*count);
    }
    r.register(
        "datagrams_rejected",
        "datagrams dropped, by reason",
        rejected,
    );
    counter(
        &mut r,
        "fence_refused_commits",
        "commits the write fence refused (SQLSTATE 25006)",
        f.fence_refused,
    );
    counter(
        &mut r,
        "fence_withheld_acknowledgements",
        "commits whose acknowledgement the write fence withheld by closing the connection",
        f.fence_withheld,
    );
    gauge(
        &mut r,
        "in_recovery",
        "1 while PostgreSQL is in recovery (a standby)",
        f.in_recovery.into(),
    );
    gauge(
        &mut r,
        "wal_receiver_streaming",
        "1 while the WAL receiver is connected and streaming",
        f.wal_receiver_streaming.into(),
    );
    gauge(
        &mut r,
        "wal_position_bytes",
        "the flush position on a primary, the replay position on a standby (LSN in bytes)",
        position(f.wal_position),
    );
    gauge(
        &mut r,
        "leader_wal_position_bytes",
        "on a follower, the leader's WAL position as its last heartbeat announced it; 0 when unknown",
        f.leader_wal_position.map_or(0, position),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::PeerFacts;

    /// Every metric that `render` writes has its row in the README's table, with its type.
    #[test]
    fn every_metric_is_documented() {
        let facts = Facts {
            role: "follower",
            peers: vec![PeerFacts {
                id: 2,
                last_contact_seconds: Some(1.0),
                ..PeerFacts::default()
            }],
            rejected_by_reason: vec![("replay", 1)],
            ..Facts::default()
        };
        let readme = include_str!("../../../README.md");
        let (_, text) = render(&facts, true);
        let mut seen = 0;
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split_whitespace().skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let exposed = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            let row = format!("| `{exposed}` | {kind} |");
            assert!(readme.contains(&row), "the README lacks {row}");
            seen += 1;
        }
        assert_eq!(seen, 19);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_classic_format_names_counter_families_like_their_samples() {
        let facts = Facts {
            role: "leader",
            ..Facts::default()
        };
        let (content_type, text) = render(&facts, false);
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(!text.contains("# EOF"));
        assert!(text.contains(
            "\n# TYPE pg_leader_elections_won_total counter\npg_leader_elections_won_total 0\n"
        ));
        assert!(text.contains("\n# HELP pg_leader_elections_won_total elections this server won"));
        assert!(text.contains("\n# TYPE pg_leader_term gauge\npg_leader_term 0\n"));
    }
}
