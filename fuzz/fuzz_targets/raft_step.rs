//! The Raft core's `step` and `tick` with arbitrary messages and times: never panics, and the
//! node's own state stays sane after every call (its term never decreases, its commit index
//! never passes its log, a vote once given in a term is never changed in that term).
//!
//! Input: chunks of `[len: u8][flags: u8][advance_ms: u8][payload: len bytes]`; the payload is
//! decoded as a message, and `flags` can aim it at node 1 from a real peer so that it gets past
//! the envelope checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_leader_raft::{Config, Duration, Instant, NodeId, PersistedState, Raft, SplitMix64};

fuzz_target!(|data: &[u8]| {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let config = Config::new(NodeId(1), voters);
    let mut now = Instant::ZERO + Duration::from_millis(1_000_000);
    let Ok(mut raft) = Raft::new(
        config,
        PersistedState::default(),
        Box::new(SplitMix64::new(7)),
        now,
    ) else {
        return;
    };
    let mut disk = PersistedState::default();
    let mut rest = data;
    while rest.len() >= 3 {
        let (len, flags, advance) = (rest[0] as usize, rest[1], rest[2]);
        rest = &rest[3..];
        let payload = &rest[..len.min(rest.len())];
        rest = &rest[payload.len()..];
        now = now + Duration::from_millis(advance as u64 * 10);
        let before = raft.status();
        if flags & 1 == 1 {
            raft.tick(now);
        } else if let Ok(mut msg) = pg_leader_wire::decode_message(payload) {
            if flags & 2 == 2 {
                msg.to = NodeId(1);
                msg.from = NodeId(2 + (flags as u32 >> 2) % 2);
            }
            let _ = raft.step(msg, now);
        }
        let ready = raft.take_ready();
        disk.apply(&ready);
        let after = raft.status();
        assert!(after.term >= before.term, "the term went back");
        assert!(after.commit_index <= after.last_index, "commit past the log");
        if after.term == before.term && before.voted_for.is_some() {
            assert_eq!(after.voted_for, before.voted_for, "a second vote in one term");
        }
        if let Some(hs) = ready.hard_state {
            assert!(hs.term >= before.term);
        }
    }
});
