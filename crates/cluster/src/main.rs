//! pg_leader-cluster: a local pg_leader cluster of real PostgreSQL 15 servers on loopback, and
//! the faults to throw at it.

mod bench;
mod cluster;
mod demo;
mod history;
mod network;
mod observe;
mod rejoin;
mod run;
mod soak;
mod sql;
mod watch;

use cluster::{signal, Cluster};
use run::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: pg_leader-cluster [--dir DIR] COMMAND
  up [--nodes N] [--port BASE] [--raft-port BASE] [--http-port BASE] [--witness]
     [--no-auto-failover] [--no-wal-log-hints]
     [--set 'NAME = VALUE']...   create and start N servers (default 3): node 1 primary, the rest
                                 pg_basebackup standbys; wait for a leader. Node i listens on
                                 PostgreSQL port BASE+i (55500), pg_leader port BASE+i (7500)
                                 and HTTP port BASE+i (the pg_leader base + 1000).
                                 PostgreSQL follows the election (pg_leader.auto_failover and
                                 auto_rejoin on) unless --no-auto-failover: election only.
                                 --witness: node N is a witness instead, a minimal server of its
                                 own that votes and never leads (pg_leader.can_be_leader = off)
                                 --no-wal-log-hints: wal_log_hints off (on by default, for
                                 pg_rewind): a cluster where rejoin is refused
                                 --set: a postgresql.conf line for every server
  status                         node, PostgreSQL role, pg_leader role, term, leader, lease, contact
  kill NODE|leader               SIGKILL the node's postmaster
  rejoin NODE                    rebuild NODE, a former primary, as a standby of the leader
                                 (src/postgres/rejoin.sh: pg_rewind, keeping the node's own
                                 configuration and pg_leader state); a rerun finishes an
                                 interrupted rejoin and never rewinds twice
  stop NODE [--mode fast|immediate]  /  start NODE
  pause NODE  /  resume NODE     SIGSTOP / SIGCONT the node's pg_leader worker
  partition A,B/C                drop pg_leader datagrams between the groups (nftables)
  block A B                      drop datagrams from A to B only
  heal                           remove every network fault
  check                          check every node's role history: no term with two leaders, no
                                 two leases at one instant
  watch [--seconds S]            an observer on every server for S seconds (10), asking
                                 pg_leader_is_leader() every 2 ms between two readings of the
                                 clock; fails if two servers answered true at overlapping
                                 moments, and prints each change of leader with its gap
  down                           stop every server and remove the folder and the nft table
  demo                           up, kill the leader, time the failover, restart it, down
  soak [--nodes N] [--minutes M]  random faults on N servers (5) for M minutes (10): kills,
                                 stops, pauses, partitions; a leader agreed by all within 15 s
                                 after each heal; then the role histories are checked
  bench KIND [--trials N] [--heartbeat MS] [--election-timeout MS] [--csv FILE]
                                 measurements on a fresh cluster (bench/run runs them all):
                                 failover [--fault F]  N timed losses of the leader (30):
                                                 postmaster-kill  a process crash: SIGKILL of
                                                   its postmaster (the worker hands over)
                                                 host-kill  a host loss: all its processes
                                                   SIGKILLed at once (the default)
                                                 host-drop  a host loss: all its datagrams
                                                   dropped (nftables)
                                 handover        N timed `pg_ctl stop -m fast` of the leader (20)
                                 cold-start      N timed starts of all servers at once (5)
                                 idle [--seconds S]  worker CPU, memory, datagrams/s (60 s)
                                 etcd-failover   the failover benchmark against 3 etcd members
                                 notify          N failovers: kill -> NOTIFY pg_leader on the
                                                 primary and GET /leader 200 (20)
                                 primary-start   N fresh clusters (20): the last server
                                                 accepting connections -> the primary
                                                 (node 1) leads, agreed by all
                                 primary-return  N cuts of the primary until a standby
                                                 leads (10): the heal -> the primary
                                                 leads again, agreed by all
The folder defaults to $TMPDIR/pg_leader-cluster (or /tmp/pg_leader-cluster).";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let dir = take_option(&mut args, "--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pg_leader-cluster"));
    match dispatch(&dir, &mut args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg_leader-cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    let Some(i) = args.iter().position(|a| a == name) else {
        return false;
    };
    args.remove(i);
    true
}

fn take_option(args: &mut Vec<String>, name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    if i + 1 >= args.len() {
        return None;
    }
    let value = args.remove(i + 1);
    args.remove(i);
    Some(value)
}

/// `--name N`, or `default` when absent; an error names the option and the bad value.
fn number_option<T: std::str::FromStr>(
    args: &mut Vec<String>,
    name: &str,
    default: T,
) -> Result<T> {
    match take_option(args, name) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("{name} takes a number, not {v:?}")),
        None => Ok(default),
    }
}

fn raft_port(args: &mut Vec<String>) -> Result<u16> {
    number_option(args, "--raft-port", 7500)
}

fn node_arg(c: &Cluster, args: &[String], i: usize) -> Result<u32> {
    let text = args.get(i).ok_or("which node?")?;
    if text == "leader" {
        let all: Vec<u32> = c.ids().collect();
        return observe::agreed_leader(c, &all)
            .map(|(l, _)| l)
            .or_else(|| {
                all.iter()
                    .copied()
                    .find(|n| sql::view(c, *n).map(|v| v.is_leader).unwrap_or(false))
            })
            .ok_or_else(|| "no node is leader right now".to_string());
    }
    c.check_node(text.parse().map_err(|_| format!("not a node: {text:?}"))?)
}

fn dispatch(dir: &std::path::Path, args: &mut Vec<String>) -> Result<()> {
    let command = args.first().cloned().unwrap_or_default();
    match command.as_str() {
        "up" => {
            let nodes: u32 = number_option(args, "--nodes", 3)?;
            let port: u16 = number_option(args, "--port", 55500)?;
            let witness = take_flag(args, "--witness");
            let election_only = take_flag(args, "--no-auto-failover");
            let mut settings: Vec<String> = Vec::new();
            if !election_only {
                settings.push("pg_leader.auto_failover = on".into());
                settings.push("pg_leader.auto_rejoin = on".into());
            }
            // Every server writes `wal_log_hints = on`; a later line wins in postgresql.conf.
            if take_flag(args, "--no-wal-log-hints") {
                settings.push("wal_log_hints = off".into());
            }
            // Given last, so that a --set wins over the defaults above.
            settings.extend(std::iter::from_fn(|| take_option(args, "--set")));
            if !(1..=16).contains(&nodes) {
                return Err(format!("--nodes must be between 1 and 16, not {nodes}"));
            }
            if witness && nodes < 3 {
                return Err(
                    "--witness needs at least 3 nodes: two that can lead and the witness".into(),
                );
            }
            // 0: the default, raft base port + 1000.
            let http_port: u16 = number_option(args, "--http-port", 0)?;
            let c = Cluster::new(dir.to_path_buf(), nodes, port, raft_port(args)?)
                .with_witness(witness)
                .with_http_port((http_port != 0).then_some(http_port));
            c.create(&settings)?;
            let all: Vec<u32> = c.ids().collect();
            let (leader, term, _) = observe::wait_for_leader(&c, &all, Duration::from_secs(30))?;
            println!(
                "cluster up in {}: node {leader} leads term {term}",
                dir.display()
            );
            observe::print_status(&c);
            Ok(())
        }
        "demo" => {
            let port: u16 = number_option(args, "--port", 55500)?;
            let nodes: u32 = number_option(args, "--nodes", 3)?;
            demo::run(&Cluster::new(
                dir.to_path_buf(),
                nodes,
                port,
                raft_port(args)?,
            ))
        }
        "bench" => bench_command(dir, args),
        "soak" => {
            let nodes: u32 = number_option(args, "--nodes", 5)?;
            let minutes: f64 = number_option(args, "--minutes", 10.0)?;
            let port: u16 = number_option(args, "--port", 55500)?;
            let c = Cluster::new(dir.to_path_buf(), nodes, port, raft_port(args)?);
            let result = soak::run(&c, minutes);
            let _ = network::heal();
            let _ = c.destroy();
            result
        }
        "help" | "--help" | "-h" | "" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            let c = Cluster::load(dir)?;
            match command.as_str() {
                "status" => {
                    observe::print_status(&c);
                    Ok(())
                }
                "kill" => {
                    let node = node_arg(&c, args, 1)?;
                    let pid = c
                        .postmaster_pid(node)
                        .ok_or_else(|| format!("node {node} is not running"))?;
                    signal(pid, "KILL")?;
                    println!("killed node {node} (postmaster pid {pid})");
                    Ok(())
                }
                "rejoin" => {
                    let node = node_arg(&c, args, 1)?;
                    rejoin::run(&c, node)
                }
                "stop" => {
                    let mode = take_option(args, "--mode").unwrap_or_else(|| "fast".into());
                    let node = node_arg(&c, args, 1)?;
                    c.stop(node, &mode)?;
                    println!("stopped node {node} ({mode})");
                    Ok(())
                }
                "start" => {
                    let node = node_arg(&c, args, 1)?;
                    c.start(node)?;
                    println!("started node {node}");
                    Ok(())
                }
                "pause" | "resume" => {
                    let node = node_arg(&c, args, 1)?;
                    let pid = c.worker_pid(node)?;
                    signal(pid, if command == "pause" { "STOP" } else { "CONT" })?;
                    println!(
                        "{} node {node}'s pg_leader worker (pid {pid})",
                        if command == "pause" {
                            "paused"
                        } else {
                            "resumed"
                        }
                    );
                    Ok(())
                }
                "partition" => {
                    let spec = args.get(1..).map(|a| a.join("")).unwrap_or_default();
                    let pairs = network::partition(&c, &spec)?;
                    println!("partitioned {spec}: {} links cut", pairs.len());
                    Ok(())
                }
                "block" => {
                    let (from, to) = (node_arg(&c, args, 1)?, node_arg(&c, args, 2)?);
                    network::block(&c, &[(from, to)])?;
                    println!("datagrams from node {from} to node {to} are dropped");
                    Ok(())
                }
                "check" => {
                    let v = history::check(&c)?;
                    println!(
                        "history: {} lines, {} terms with a leader, {} lease intervals; no term with two leaders, no overlapping leases",
                        v.lines, v.terms_with_leader, v.leases
                    );
                    Ok(())
                }
                "watch" => {
                    let seconds: f64 = number_option(args, "--seconds", 10.0)?;
                    watch::run(&c, seconds)
                }
                "heal" => {
                    network::heal()?;
                    println!("network healed");
                    Ok(())
                }
                "down" => {
                    network::heal()?;
                    c.destroy()?;
                    println!("cluster in {} is down", dir.display());
                    Ok(())
                }
                other => Err(format!("unknown command {other:?}\n{USAGE}")),
            }
        }
    }
}

/// `bench KIND ...`: each benchmark on its own fresh cluster, removed afterwards.
fn bench_command(dir: &std::path::Path, args: &mut Vec<String>) -> Result<()> {
    let kind = args.get(1).cloned().unwrap_or_default();
    let port: u16 = number_option(args, "--port", 55800)?;
    let raft = raft_port(args)?;
    let timing = bench::Timing {
        heartbeat_ms: number_option(args, "--heartbeat", 100)?,
        election_timeout_ms: number_option(args, "--election-timeout", 1000)?,
    };
    let csv = take_option(args, "--csv").map(PathBuf::from);
    let default_trials = match kind.as_str() {
        "handover" | "notify" | "primary-start" => 20,
        "primary-return" => 10,
        "cold-start" => 5,
        _ => 30,
    };
    let trials: u32 = number_option(args, "--trials", default_trials)?;
    let seconds: u64 = number_option(args, "--seconds", 60)?;
    let fault = bench::Fault::parse(
        &take_option(args, "--fault").unwrap_or_else(|| "host-kill".to_string()),
    )?;
    if kind == "etcd-failover" {
        return bench::etcd_failover(dir, port, trials, timing, csv);
    }
    let c = Cluster::new(dir.to_path_buf(), 3, port, raft);
    let result = match kind.as_str() {
        "failover" => bench::failover(&c, trials, timing, csv, fault),
        "handover" => bench::handover(&c, trials, timing, csv),
        "cold-start" => bench::cold_start(&c, trials, timing, csv),
        "idle" => bench::idle(&c, seconds, timing, csv),
        "notify" => bench::notify_http(&c, trials, timing),
        "primary-start" => bench::primary_start(&c, trials, timing, csv),
        "primary-return" => bench::primary_return(&c, trials, timing, csv),
        other => return Err(format!("unknown benchmark {other:?}\n{USAGE}")),
    };
    let _ = c.destroy();
    result
}
