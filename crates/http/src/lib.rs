//! The operators' HTTP endpoints (`pg_leader.http_port`): what HAProxy, keepalived, Kubernetes
//! probes and Prometheus ask, served from the worker's own event loop. The answers are pure
//! functions of `Facts` (`answer`, `metrics`); this file is the sockets.
//!
//! Deliberately small: one request per connection (`Connection: close`), requests larger than
//! 4 KiB or slower than 2 s are dropped, at most 64 connections at once. Nothing here blocks:
//! the sockets are non-blocking and registered with the worker's mio poll.

pub mod answer;
pub mod facts;
pub mod metrics;
pub mod request;

pub use facts::Facts;

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

    /// Handles one readiness event; `facts` is asked only when a request is complete.
    pub fn on_event(&mut self, token: Token, registry: &Registry, facts: impl FnOnce() -> Facts) {
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
            } else if let Some(response) = answer::respond(&conn.request, facts) {
                conn.response = response.to_bytes();
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
