//! Datagrams over real loopback sockets: authentication, cluster binding, replays, size limits and
//! garbage. Every bad datagram is rejected with its reason; none panics.

use pg_leader_raft::{Body, Duration, Instant, LogIndex, Message, NodeId, Term};
use pg_leader_wire::{Codec, Reject, ReplayWindow, MAX_DATAGRAM};
use std::net::UdpSocket;

fn heartbeat() -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: Instant::from_micros(5),
            lease: Duration::from_millis(1000),
            wal: pg_leader_raft::WalPosition::default(),
        },
    }
}

fn through_loopback(datagram: &[u8]) -> Vec<u8> {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(datagram, rx.local_addr().unwrap()).unwrap();
    let mut buf = vec![0u8; 65_536];
    rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let n = rx.recv(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

#[test]
fn an_authentic_datagram_opens_once_over_a_real_socket() {
    let codec = Codec::new("prod", SECRET);
    let sealed = codec.seal(&heartbeat(), 9, 1);
    let received = through_loopback(&sealed);
    let (header, msg) = codec.open(&received).expect("opens");
    assert_eq!(msg, heartbeat());
    assert_eq!(
        (header.sender, header.epoch, header.counter),
        (NodeId(1), 9, 1)
    );
    let mut window = ReplayWindow::default();
    assert!(window.accept(header.epoch, header.counter));
    // The same datagram captured and sent again is a replay.
    let (again, _) = codec.open(&through_loopback(&sealed)).unwrap();
    assert!(!window.accept(again.epoch, again.counter));
}

#[test]
fn wrong_secret_other_cluster_and_tampering_are_rejected() {
    let ours = Codec::new("prod", SECRET);
    let sealed = ours.seal(&heartbeat(), 1, 1);
    assert_eq!(
        Codec::new("prod", b"another secret of 32 bytes......")
            .open(&sealed)
            .err(),
        Some(Reject::Authentication)
    );
    assert_eq!(
        Codec::new("staging", SECRET).open(&sealed).err(),
        Some(Reject::Cluster)
    );
    for i in [0, 4, 14, 20, 30, 40, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[i] ^= 0x40;
        assert!(
            ours.open(&bad).is_err(),
            "a flipped bit at {i} must not pass"
        );
    }
}

#[test]
fn garbage_truncation_and_oversize_are_rejected_without_panicking() {
    let codec = Codec::new("prod", SECRET);
    let sealed = codec.seal(&heartbeat(), 1, 1);
    for len in 0..sealed.len() {
        assert!(codec.open(&sealed[..len]).is_err(), "truncated to {len}");
    }
    assert_eq!(
        codec.open(&vec![0u8; MAX_DATAGRAM + 1]).err(),
        Some(Reject::Size)
    );
    let mut state = 0x1234_5678_9abc_def0u64;
    for _ in 0..10_000 {
        let len = (state % 300) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(codec.open(&bytes).is_err());
        let mut framed = b"PGLR\x01".to_vec();
        framed.extend_from_slice(&bytes);
        assert!(codec.open(&framed).is_err());
    }
}

#[test]
fn an_authentic_header_with_a_lying_payload_is_malformed() {
    // A holder of the secret claims to be node 3 while the message says node 1.
    let codec = Codec::new("prod", SECRET);
    let mut msg = heartbeat();
    msg.from = NodeId(3);
    let sealed = codec.seal(&msg, 1, 1);
    let (header, opened) = codec.open(&sealed).unwrap();
    assert_eq!((header.sender, opened.from), (NodeId(3), NodeId(3)));
    // Re-seal with a header that disagrees with the payload.
    let mut forged = sealed[..sealed.len() - 32].to_vec();
    forged[13..17].copy_from_slice(&1u32.to_be_bytes());
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(&forged);
    forged.extend_from_slice(&mac.finalize().into_bytes());
    assert_eq!(codec.open(&forged).err(), Some(Reject::Malformed));
}

#[test]
fn each_reject_reason_indexes_its_own_counter() {
    for (i, reason) in pg_leader_wire::Reject::ALL.iter().enumerate() {
        assert_eq!(reason.index(), i, "{reason}");
    }
}
