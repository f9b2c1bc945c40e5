//! The answer to each endpoint, from the facts alone (no PostgreSQL call, no I/O):
//!
//! - `/primary`: 200 on the leader whose PostgreSQL is out of recovery and whose lease holds.
//! - `/leader`: 200 on the leader while its lease holds (in recovery or not).
//! - `/replica[?lag=BYTES]`: 200 on a follower of a live leader whose PostgreSQL is in recovery
//!   with its WAL receiver streaming, and, with `lag`, whose replay is within BYTES of the
//!   leader's last announced WAL position (503 while the leader announces none).
//! - `/health`: 200 whenever the worker answers at all.
//! - `/readiness`: 200 while this server is part of an agreed cluster (it leads with a lease, or
//!   follows a leader heard from within the election timeout) and its PostgreSQL accepts
//!   connections.
//! - `/status` (and `/`): this node's status and its view of every node, as JSON.
//! - `/metrics`: Prometheus' text format (`metrics`).
//!
//! 503 says "not this server, or not now", which is what load balancers act on; 400 a request
//! we cannot read, 404 a path we do not serve, 405 a method other than GET and HEAD.

use super::facts::Facts;
use super::metrics;
use super::request::{Method, Parsed, Request};

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// HEAD: the head of the GET answer, without its body.
    pub head_only: bool,
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

fn text(status: u16, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    Response {
        status,
        content_type: TEXT,
        body,
        head_only: false,
    }
}

fn check(ok: bool, yes: &str, no: impl Into<String>) -> Response {
    if ok {
        text(200, yes)
    } else {
        text(503, no)
    }
}

/// The answer to the bytes received so far, or None while the request is incomplete. `facts`
/// is asked only for a complete request to a path that needs it.
pub fn respond(bytes: &[u8], facts: impl FnOnce() -> Facts) -> Option<Response> {
    match super::request::parse(bytes) {
        Parsed::Incomplete => None,
        Parsed::Bad(why) => Some(text(400, format!("bad request: {why}"))),
        Parsed::Complete(request) => Some(answer(&request, facts)),
    }
}

pub fn answer(request: &Request, facts: impl FnOnce() -> Facts) -> Response {
    if request.method == Method::Other {
        return text(405, "only GET and HEAD");
    }
    let mut response = route(request, facts);
    response.head_only = request.method == Method::Head;
    response
}

fn route(request: &Request, facts: impl FnOnce() -> Facts) -> Response {
    match request.path.as_str() {
        // Answering at all is the whole check: the worker's loop runs.
        "/health" => text(200, "running"),
        "/primary" => primary(&facts()),
        "/leader" => {
            let f = facts();
            check(f.holds_lease(), "leader", "not the leader")
        }
        "/replica" => match parse_lag(request.query_value("lag")) {
            Ok(lag) => replica(&facts(), lag),
            Err(why) => text(400, why),
        },
        "/readiness" => readiness(&facts()),
        "/status" | "/" => Response {
            status: 200,
            content_type: JSON,
            body: facts().status_json,
            head_only: false,
        },
        "/metrics" => {
            let (content_type, body) = metrics::render(&facts(), request.accepts_openmetrics);
            Response {
                status: 200,
                content_type,
                body,
                head_only: false,
            }
        }
        _ => text(
            404,
            "unknown path: try /primary, /replica, /health, /readiness, /leader, /status or /metrics",
        ),
    }
}

/// `lag=BYTES`: a whole number of bytes.
fn parse_lag(value: Option<&str>) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("invalid lag \"{v}\": a number of bytes is expected")),
    }
}

fn primary(f: &Facts) -> Response {
    if !f.holds_lease() {
        return text(503, "not the leader");
    }
    check(!f.in_recovery, "primary", "the leader is still in recovery")
}

fn replica(f: &Facts, max_lag: Option<u64>) -> Response {
    if !f.follows_live_leader() {
        return text(503, "not a follower of a live leader");
    }
    if !f.in_recovery {
        return text(503, "not in recovery");
    }
    if !f.wal_receiver_streaming {
        return text(503, "the WAL receiver is not streaming");
    }
    let Some(max) = max_lag else {
        return text(200, "replica");
    };
    match f.lag_bytes() {
        None => text(503, "the leader announces no WAL position"),
        Some(lag) => check(
            lag <= max,
            &format!("replica, {lag} bytes behind"),
            format!("{lag} bytes behind the leader, more than {max}"),
        ),
    }
}

fn readiness(f: &Facts) -> Response {
    if !(f.holds_lease() || f.follows_live_leader()) {
        return text(503, "no leader with a live lease is known");
    }
    check(
        f.accepts_connections,
        "ready",
        "PostgreSQL does not accept connections",
    )
}

impl Response {
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        }
    }

    /// The whole response; every connection carries one request (`Connection: close`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
