//! pg-leader-inject: sends hostile datagrams to a pg_leader node, for tests.
//!
//!   pg-leader-inject --to HOST:PORT --kind KIND [--count N] [--cluster NAME]
//!                    [--secret-file FILE] [--from ID] [--target ID] [--pcap FILE]
//!
//! KIND: wrong-secret, other-cluster, garbage, truncated, oversized, or replay --pcap FILE:
//! sends again the UDP payloads of real datagrams captured with `tcpdump -i lo -w FILE`.
//!
//! Authentic frames with absurd fields (sealed with --secret-file as node --from, boot epoch
//! --epoch, about term --term): huge-term (a term 2^62), second-leader (a heartbeat of term
//! --term with indexes far ahead, from a node that does not lead it), huge-lease (a heartbeat
//! asking for a vote promise of a year), unknown-node (a frame from node 99).

use pg_leader_raft::{
    Body, Duration, Instant, LogIndex, Message, NodeId, RandomSource, SplitMix64, Term,
};
use pg_leader_wire::{Codec, MAX_DATAGRAM};
use std::net::UdpSocket;
use std::process::ExitCode;

fn heartbeat(from: u32, to: u32, term: u64, prev: u64, lease_ms: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(prev),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(prev),
            sent_at: Instant::ZERO,
            lease: Duration::from_millis(lease_ms),
            wal: pg_leader_raft::WalPosition::default(),
        },
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(to), Some(kind)) = (get("--to"), get("--kind")) else {
        eprintln!("usage: pg-leader-inject --to HOST:PORT --kind KIND [--count N] ...");
        return ExitCode::from(2);
    };
    let count: u64 = get("--count").and_then(|c| c.parse().ok()).unwrap_or(1000);
    let cluster = get("--cluster").unwrap_or_else(|| "e2e".into());
    let from: u32 = get("--from").and_then(|c| c.parse().ok()).unwrap_or(1);
    let target: u32 = get("--target").and_then(|c| c.parse().ok()).unwrap_or(2);
    let secret = match get("--secret-file") {
        Some(f) => match std::fs::read(&f) {
            Ok(bytes) => bytes.trim_ascii().to_vec(),
            Err(e) => {
                eprintln!("pg-leader-inject: could not read {f}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => b"not the cluster's secret at all".to_vec(),
    };
    let captured = match (kind.as_str(), get("--pcap")) {
        ("replay", Some(file)) => match std::fs::read(&file).map(|b| udp_payloads(&b)) {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => {
                eprintln!("pg-leader-inject: no UDP datagram in {file}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("pg-leader-inject: could not read {file}: {e}");
                return ExitCode::FAILURE;
            }
        },
        ("replay", None) => {
            eprintln!("pg-leader-inject: replay needs --pcap FILE");
            return ExitCode::from(2);
        }
        _ => Vec::new(),
    };
    let epoch: u64 = get("--epoch").and_then(|c| c.parse().ok()).unwrap_or(1);
    let term: u64 = get("--term").and_then(|c| c.parse().ok()).unwrap_or(1);
    let authentic = Codec::new(&cluster, &secret);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
    let mut rng = SplitMix64::new(0xBAD_5EED);
    let msg = heartbeat(from, target, 1_000_000, 0, 1000);
    const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
    for i in 0..count {
        let datagram = match kind.as_str() {
            "wrong-secret" => {
                Codec::new(&cluster, b"a different secret, 32 bytes....").seal(&msg, epoch, i + 1)
            }
            "other-cluster" => Codec::new("another-cluster", &secret).seal(&msg, epoch, i + 1),
            "garbage" => (0..rng.uniform(0, 2000))
                .map(|_| rng.next_u64() as u8)
                .collect(),
            "truncated" => {
                let full = Codec::new(&cluster, &secret).seal(&msg, epoch, i + 1);
                full[..rng.uniform(0, full.len() as u64) as usize].to_vec()
            }
            "oversized" => vec![0x55; MAX_DATAGRAM + 1],
            "replay" => captured[(i as usize) % captured.len()].clone(),
            "huge-term" => authentic.seal(&heartbeat(from, target, 1 << 62, 0, 1000), epoch, i + 1),
            "second-leader" => {
                authentic.seal(&heartbeat(from, target, term, 1 << 60, 1000), epoch, i + 1)
            }
            "huge-lease" => {
                authentic.seal(&heartbeat(from, target, term, 0, YEAR_MS), epoch, i + 1)
            }
            "unknown-node" => authentic.seal(&heartbeat(99, target, term, 0, 1000), epoch, i + 1),
            other => {
                eprintln!("pg-leader-inject: unknown kind {other:?}");
                return ExitCode::from(2);
            }
        };
        // Paced, so that the receiver's socket buffer never overflows: every datagram must arrive
        // to be counted.
        std::thread::sleep(std::time::Duration::from_micros(if datagram.len() > 4096 {
            500
        } else {
            50
        }));
        if let Err(e) = socket.send_to(&datagram, &to) {
            eprintln!("pg-leader-inject: send to {to}: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("sent {count} {kind} datagrams to {to}");
    ExitCode::SUCCESS
}

/// The UDP payloads of a classic pcap file of Ethernet (or Linux "any") frames carrying IPv4.
fn udp_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if pcap.len() < 24 {
        return out;
    }
    let little = pcap[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8], at: usize| {
        let bytes: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let link_header = match u32_at(pcap, 20) {
        1 => 14,   // Ethernet
        113 => 16, // Linux cooked capture
        _ => return out,
    };
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32_at(pcap, at + 8) as usize;
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        let Some(ip) = frame.get(link_header..) else {
            continue;
        };
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
            continue;
        }
        let ihl = (ip[0] & 0x0f) as usize * 4;
        if let Some(payload) = ip.get(ihl + 8..) {
            out.push(payload.to_vec());
        }
    }
    out
}
