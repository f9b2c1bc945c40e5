//! How fast the tools around PostgreSQL learn of a failover: a session on the primary that runs
//! `LISTEN pg_leader`, and an HTTP client polling every survivor's `GET /leader` (what HAProxy
//! does). Each trial makes a standby the leader (so that the primary, where notifications are
//! delivered, survives), SIGKILLs it, and times from the kill: the new leader agreed through
//! SQL, the first notification naming it, and the first 200 from its `/leader`.

use super::probe::SqlProbe;
use super::{percentile, Jitter, Timing};
use crate::cluster::{signal, Cluster};
use crate::run::Result;
use crate::sql::query;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// True when the node's health check answers 200 to `GET /leader`.
fn http_leader(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /leader HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

fn listen_on(c: &Cluster, node: u32) -> Result<Client> {
    let mut client = postgres::Config::new()
        .host_path(&c.dir)
        .port(c.pg_port(node))
        .user("postgres")
        .dbname("postgres")
        .connect(NoTls)
        .map_err(|e| format!("could not connect to node {node}: {e}"))?;
    client
        .batch_execute("LISTEN pg_leader")
        .map_err(|e| format!("LISTEN failed: {e}"))?;
    Ok(client)
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 50.0)
}

pub fn notify_http(c: &Cluster, trials: u32, timing: Timing) -> Result<()> {
    c.create(&timing.settings())?;
    let all: Vec<u32> = c.ids().collect();
    let mut probe = SqlProbe::new(c);
    let mut jitter = Jitter::new();
    let patience = Duration::from_secs(30);
    let (mut sql_ms, mut notify_ms, mut http_ms) = (Vec::new(), Vec::new(), Vec::new());
    for trial in 1..=trials {
        // A standby leads: node 2 or 3 in turn.
        let target = 2 + trial % 2;
        let (leader, _, _) = probe.wait_for_leader(&all, Instant::now(), patience)?;
        if leader != target {
            query(
                c,
                leader,
                &format!("SELECT pg_leader_transfer_leadership({target})"),
            )?;
        }
        let (leader, term, _) = probe.wait_for_leader(&all, Instant::now(), patience)?;
        let mut listener = listen_on(c, 1)?;
        std::thread::sleep(Duration::from_millis(
            300 + jitter.below(3 * timing.heartbeat_ms as u64),
        ));
        let survivors: Vec<u32> = all.iter().copied().filter(|n| *n != leader).collect();
        let pid = c
            .postmaster_pid(leader)
            .ok_or("the leader is not running")?;
        probe.forget(leader);
        signal(pid, "KILL")?;
        let killed = Instant::now();
        let outcome = std::thread::scope(|s| -> Result<(u32, u64, f64, f64, f64)> {
            let notified = s.spawn(|| -> Result<f64> {
                let mut note = listener.notifications();
                let mut it = note.timeout_iter(patience);
                while let Some(n) = it.next().map_err(|e| e.to_string())? {
                    let new_term = n
                        .payload()
                        .split("\"term\": ")
                        .nth(1)
                        .and_then(|r| r.split(',').next())
                        .and_then(|t| t.parse::<u64>().ok())
                        .unwrap_or(0);
                    if new_term > term && !n.payload().contains("\"leader\": null") {
                        return Ok(killed.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                Err("no notification within 30 s".into())
            });
            let http = s.spawn(|| -> Result<f64> {
                while killed.elapsed() < patience {
                    if survivors.iter().any(|&n| http_leader(c.http_port(n))) {
                        return Ok(killed.elapsed().as_secs_f64() * 1000.0);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err("no /leader answered 200 within 30 s".into())
            });
            let (new_leader, new_term, took) =
                probe.wait_for_leader(&survivors, killed, patience)?;
            let n = notified.join().map_err(|_| "listener panicked")??;
            let h = http.join().map_err(|_| "HTTP poller panicked")??;
            Ok((new_leader, new_term, took.as_secs_f64() * 1000.0, n, h))
        })?;
        let (new_leader, new_term, s_ms, n_ms, h_ms) = outcome;
        println!(
            "notify trial {trial}: node {leader} killed in term {term}; node {new_leader} leads term {new_term}: SQL {s_ms:.1} ms, NOTIFY {n_ms:.1} ms, GET /leader 200 {h_ms:.1} ms"
        );
        sql_ms.push(s_ms);
        notify_ms.push(n_ms);
        http_ms.push(h_ms);
        c.start(leader)?;
    }
    let deltas = |v: &[f64]| -> Vec<f64> { v.iter().zip(&sql_ms).map(|(a, b)| a - b).collect() };
    println!(
        "notify over {trials} failovers, medians from the kill: SQL agreed {:.1} ms, NOTIFY received {:.1} ms, GET /leader 200 {:.1} ms; after SQL agreement: NOTIFY {:+.1} ms, /leader {:+.1} ms",
        median_ms(sql_ms.clone()),
        median_ms(notify_ms.clone()),
        median_ms(http_ms.clone()),
        median_ms(deltas(&notify_ms)),
        median_ms(deltas(&http_ms)),
    );
    Ok(())
}
