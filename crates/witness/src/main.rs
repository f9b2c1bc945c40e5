//! `pg_leader-witness`: a voter of a pg_leader cluster with no PostgreSQL and no database. It
//! runs the same core, datagrams and state file as the extension's worker, with `can_be_leader`
//! off: two data servers and a witness survive the loss of either data server. Configured with
//! the extension's setting names in a small file (`config`); logs to stderr (journald under
//! systemd); exits cleanly on SIGTERM or SIGINT; serves `/status`, `/metrics`, `/health` and
//! `/readiness` when `http_port` is set.

mod config;
mod node;

use clap::Parser;
use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token};
use node::Node;
use pg_leader_http::HttpServer;
use pg_leader_storage::clock::boottime_now;
use pg_leader_wire::MAX_DATAGRAM;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SOCKET: Token = Token(0);
const SIGNALS: Token = Token(1);
/// The longest sleep: the HTTP server drops requests slower than it allows.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Parser)]
#[command(
    name = "pg_leader-witness",
    version,
    about = "A pg_leader voter that never leads, with no PostgreSQL"
)]
struct Args {
    /// The configuration file (node_id, peers, cluster_name, secret_file, state_dir, timings,
    /// http_port), one `name = value` a line.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let args = Args::parse();
    let config = match config::WitnessConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("pg_leader-witness: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("configuration ok: node {}", config.node_id);
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("pg_leader-witness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: config::WitnessConfig) -> Result<(), Box<dyn std::error::Error>> {
    let http_listen = config.http_listen.clone();
    let mut node = Node::start(config)?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut node.socket, SOCKET, Interest::READABLE)?;
    // SIGTERM and SIGINT stop, SIGHUP is noted (a restart applies new settings): each sets its
    // flag and wakes the loop through a pipe.
    let (mut wake, wake_writer) = UnixStream::pair()?;
    poll.registry()
        .register(&mut wake, SIGNALS, Interest::READABLE)?;
    let stop = Arc::new(AtomicBool::new(false));
    let hangup = Arc::new(AtomicBool::new(false));
    let writer = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(wake_writer));
    for (signal, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGHUP, &hangup),
    ] {
        signal_hook::flag::register(signal, Arc::clone(flag))?;
        signal_hook::low_level::pipe::register(signal, writer.try_clone()?)?;
    }
    let mut http = match http_listen {
        None => None,
        Some(listen) => {
            let address = listen
                .parse()
                .map_err(|e| format!("http address \"{listen}\": {e}"))?;
            Some(HttpServer::bind(address, poll.registry())?)
        }
    };
    let mut events = Events::with_capacity(32);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let wait = node
            .raft
            .next_deadline()
            .saturating_since(boottime_now())
            .as_micros();
        let wait = std::time::Duration::from_micros(wait).min(MAX_WAIT);
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        for event in events.iter() {
            match event.token() {
                SOCKET => loop {
                    match node.socket.recv_from(&mut buf) {
                        Ok((len, from)) => node.admit(&buf[..len], from),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::debug!("pg_leader-witness: receive failed: {e}");
                            break;
                        }
                    }
                },
                SIGNALS => {
                    let mut drain = [0u8; 64];
                    while matches!(wake.read(&mut drain), Ok(n) if n > 0) {}
                }
                token => {
                    if let Some(http) = http.as_mut().filter(|_| HttpServer::owns(token)) {
                        http.on_event(token, poll.registry(), || node.facts());
                    }
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            node.stop();
            return Ok(());
        }
        if hangup.swap(false, Ordering::Relaxed) {
            tracing::info!("pg_leader-witness: SIGHUP: settings take effect at the next start");
        }
        let now = boottime_now();
        if node.raft.next_deadline() <= now {
            node.raft.tick(now);
        }
        node.process_ready()?;
        if let Some(http) = http.as_mut() {
            http.expire(poll.registry());
        }
    }
}
