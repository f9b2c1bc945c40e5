//! The HTTP health check (`pg_leader.http_port`): what HAProxy, keepalived or a load balancer
//! asks to find the server that takes writes, served from the worker's own event loop.
//!
//! - `GET /leader`: 200 only on the leader while its lease holds, else 503.
//! - `GET /replica`: 200 on a follower that hears from a leader, else 503.
//! - `GET /status`: 200 with this node's status and its view of every node, as JSON.
//!
//! Deliberately small: one request per connection (`Connection: close`), requests larger than
//! 4 KiB or slower than 2 s are dropped, at most 64 connections at once. Nothing here blocks:
//! the sockets are non-blocking and registered with the worker's mio poll.

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Tokens below this one are the worker's own (its socket, the postmaster and SIGQUIT pipes).
pub const LISTENER: Token = Token(3);
const FIRST_CONNECTION: usize = 4;
const MAX_CONNECTIONS: usize = 64;
const MAX_REQUEST: usize = 4096;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the worker knows when a request arrives.
pub struct Health {
    pub is_leader: bool,
    pub healthy_follower: bool,
    pub status_json: String,
}

struct Connection {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    opened: Instant,
}

pub struct HttpServer {
    listener: TcpListener,
    connections: BTreeMap<Token, Connection>,
    next_token: usize,
}

/// The answer to one request line, as (status line, body).
pub fn answer(request: &[u8], health: &Health) -> (&'static str, String) {
    let text = String::from_utf8_lossy(request);
    let mut words = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "only GET and HEAD\n".into());
    }
    let path = path.split('?').next().unwrap_or_default();
    let check = |ok: bool, yes: &str, no: &str| {
        if ok {
            ("200 OK", format!("{yes}\n"))
        } else {
            ("503 Service Unavailable", format!("{no}\n"))
        }
    };
    match path {
        "/leader" | "/primary" => check(health.is_leader, "leader", "not the leader"),
        "/replica" => check(health.healthy_follower, "replica", "not a healthy follower"),
        "/status" | "/" => ("200 OK", health.status_json.clone()),
        _ => (
            "404 Not Found",
            "unknown path: try /leader, /replica or /status\n".into(),
        ),
    }
}

fn format_response(request: &[u8], health: &Health) -> Vec<u8> {
    let (status, body) = answer(request, health);
    let json = body.starts_with('{');
    let head_only = request.starts_with(b"HEAD ");
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        if json { "application/json" } else { "text/plain; charset=utf-8" },
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

impl HttpServer {
    pub fn bind(address: SocketAddr, registry: &Registry) -> std::io::Result<HttpServer> {
        let mut listener = TcpListener::bind(address)?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(HttpServer {
            listener,
            connections: BTreeMap::new(),
            next_token: FIRST_CONNECTION,
        })
    }

    pub fn owns(token: Token) -> bool {
        token.0 >= LISTENER.0
    }

    /// Handles one readiness event; `health` is asked only when a request is complete.
    pub fn on_event(&mut self, token: Token, registry: &Registry, health: impl FnOnce() -> Health) {
        if token == LISTENER {
            self.accept(registry);
            return;
        }
        let Some(conn) = self.connections.get_mut(&token) else {
            return;
        };
        let mut done = false;
        if conn.response.is_empty() {
            let mut buf = [0u8; 1024];
            loop {
                match conn.stream.read(&mut buf) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) => conn.request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
                if conn.request.len() > MAX_REQUEST {
                    break;
                }
            }
            if conn.request.len() > MAX_REQUEST {
                conn.response =
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                        .to_vec();
            } else if conn.request.windows(4).any(|w| w == b"\r\n\r\n")
                || conn.request.windows(2).any(|w| w == b"\n\n")
            {
                conn.response = format_response(&conn.request, &health());
            }
        }
        if !conn.response.is_empty() {
            done = Self::write_some(conn);
        }
        if done {
            self.close(token, registry);
        }
    }

    /// Writes what the socket takes; true once everything is written or the peer is gone.
    fn write_some(conn: &mut Connection) -> bool {
        while conn.written < conn.response.len() {
            match conn.stream.write(&conn.response[conn.written..]) {
                Ok(0) => return true,
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
        true
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.connections.len() >= MAX_CONNECTIONS {
                        continue; // dropped: closes the connection
                    }
                    let token = Token(self.next_token);
                    self.next_token = self.next_token.checked_add(1).unwrap_or(FIRST_CONNECTION);
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.connections.insert(
                            token,
                            Connection {
                                stream,
                                request: Vec::new(),
                                response: Vec::new(),
                                written: 0,
                                opened: Instant::now(),
                            },
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn close(&mut self, token: Token, registry: &Registry) {
        if let Some(mut conn) = self.connections.remove(&token) {
            let _ = registry.deregister(&mut conn.stream);
        }
    }

    /// Drops connections that did not finish within the timeout.
    pub fn expire(&mut self, registry: &Registry) {
        let stale: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.opened.elapsed() > REQUEST_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for token in stale {
            self.close(token, registry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{answer, Health};

    fn health(is_leader: bool, healthy_follower: bool) -> Health {
        Health {
            is_leader,
            healthy_follower,
            status_json: "{\"role\":\"leader\"}".into(),
        }
    }

    #[test]
    fn leader_and_replica_checks_follow_the_role() {
        let leader = health(true, false);
        let follower = health(false, true);
        let req = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        assert_eq!(answer(&req("/leader"), &leader).0, "200 OK");
        assert_eq!(
            answer(&req("/leader"), &follower).0,
            "503 Service Unavailable"
        );
        assert_eq!(answer(&req("/replica"), &follower).0, "200 OK");
        assert_eq!(
            answer(&req("/replica"), &leader).0,
            "503 Service Unavailable"
        );
        assert_eq!(answer(&req("/status"), &leader).1, "{\"role\":\"leader\"}");
        assert_eq!(answer(&req("/nope"), &leader).0, "404 Not Found");
        assert_eq!(
            answer(b"POST /leader HTTP/1.1\r\n\r\n", &leader).0,
            "405 Method Not Allowed"
        );
        assert_eq!(
            answer(b"\xff\xfe garbage", &leader).0,
            "405 Method Not Allowed"
        );
    }
}
