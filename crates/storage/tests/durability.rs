//! Durable state on a real file system: atomic saves, checksums, owner stamps, and the vote
//! surviving a crash between persisting and sending.

use pg_leader_raft::{
    Body, Config, Duration, Instant, LogIndex, Message, NodeId, Raft, SplitMix64, Term, WalPosition,
};
use pg_leader_storage::{Storage, StorageError, STATE_FILE};
use std::fs;

fn config(me: u32) -> Config {
    Config::new(NodeId(me), vec![NodeId(1), NodeId(2), NodeId(3)])
}

fn vote_request(from: u32, term: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(2),
        term: Term(term),
        body: Body::RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            transfer: false,
            wal: WalPosition::default(),
        },
    }
}

fn granted(msgs: &[Message]) -> Option<bool> {
    msgs.iter().find_map(|m| match m.body {
        Body::VoteResponse { granted, .. } => Some(granted),
        _ => None,
    })
}

#[test]
fn a_vote_made_durable_survives_a_crash_before_it_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let later = Instant::from_micros(10_000_000);
    {
        let storage = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
        let mut raft = Raft::new(
            config(2),
            storage.persisted().clone(),
            Box::new(SplitMix64::new(1)),
            Instant::ZERO,
        )
        .unwrap();
        let mut storage = storage;
        raft.step(vote_request(1, 5), later).unwrap();
        let ready = raft.take_ready();
        assert_eq!(granted(&ready.messages), Some(true));
        storage.save(&ready).unwrap();
        // Crash here: the grant never left.
    }
    let storage = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
    assert_eq!(storage.persisted().hard_state.voted_for, Some(NodeId(1)));
    let mut raft = Raft::new(
        config(2),
        storage.persisted().clone(),
        Box::new(SplitMix64::new(2)),
        later,
    )
    .unwrap();
    let after_blackout = Instant::from_micros(20_000_000);
    raft.step(vote_request(3, 5), after_blackout).unwrap();
    assert_eq!(
        granted(&raft.take_ready().messages),
        Some(false),
        "no second vote in term 5"
    );
}

#[test]
fn boot_epochs_grow_and_the_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let a = Storage::open(dir.path(), "prod", NodeId(1))
        .unwrap()
        .boot_epoch();
    let b = Storage::open(dir.path(), "prod", NodeId(1))
        .unwrap()
        .boot_epoch();
    assert!(b > a);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dir.path().join(STATE_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}

#[test]
fn corruption_and_truncation_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    Storage::open(dir.path(), "prod", NodeId(1)).unwrap();
    let path = dir.path().join(STATE_FILE);
    let good = fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 1;
        fs::write(&path, &bad).unwrap();
        let err = Storage::open(dir.path(), "prod", NodeId(1))
            .err()
            .expect("refused");
        assert!(
            matches!(err, StorageError::Corrupt { .. }),
            "byte {i}: {err}"
        );
    }
    fs::write(&path, &good[..good.len() / 2]).unwrap();
    let err = Storage::open(dir.path(), "prod", NodeId(1)).err().unwrap();
    assert!(err.to_string().contains("is corrupt"), "{err}");
}

#[test]
fn state_copied_from_another_node_or_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Storage::open(dir.path(), "prod", NodeId(1)).unwrap();
    let err = Storage::open(dir.path(), "prod", NodeId(2)).err().unwrap();
    assert!(
        matches!(
            err,
            StorageError::NotOurs {
                node_id: NodeId(1),
                ..
            }
        ),
        "{err}"
    );
    let err = Storage::open(dir.path(), "staging", NodeId(1))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "state file \"{}\" belongs to node 1 of cluster \"prod\"",
            dir.path().join(STATE_FILE).display()
        )
    );
}

#[test]
fn an_unwritable_directory_is_an_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
    let mut raft = Raft::new(
        config(2),
        Default::default(),
        Box::new(SplitMix64::new(1)),
        Instant::ZERO,
    )
    .unwrap();
    raft.step(vote_request(1, 5), Instant::from_micros(10_000_000))
        .unwrap();
    let ready = raft.take_ready();
    // A file where the temp file should go makes the write fail, also as root.
    fs::create_dir(dir.path().join(format!("{STATE_FILE}.tmp"))).unwrap();
    assert!(storage.save(&ready).is_err());
    assert_eq!(
        storage.persisted().hard_state.term,
        Term(0),
        "nothing half-applied"
    );
    fs::remove_dir(dir.path().join(format!("{STATE_FILE}.tmp"))).unwrap();
    storage.save(&ready).unwrap();
    assert_eq!(storage.persisted().hard_state.term, Term(5));
}

#[test]
fn a_promise_longer_than_the_election_timeout_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let promise = Duration::from_millis(10_000);
    let heartbeat = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: Body::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
            sent_at: Instant::ZERO,
            lease: promise,
        },
    };
    let heard = Instant::from_micros(5_000_000);
    {
        let mut storage = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
        let mut raft = Raft::new(
            config(2),
            storage.persisted().clone(),
            Box::new(SplitMix64::new(1)),
            Instant::ZERO,
        )
        .unwrap();
        raft.step(heartbeat, heard).unwrap();
        storage.save(&raft.take_ready()).unwrap();
    }
    let storage = Storage::open(dir.path(), "prod", NodeId(2)).unwrap();
    assert_eq!(storage.persisted().hard_state.longest_promise, promise);
    let restarted = heard + Duration::from_millis(1);
    let mut raft = Raft::new(
        config(2),
        storage.persisted().clone(),
        Box::new(SplitMix64::new(2)),
        restarted,
    )
    .unwrap();
    raft.step(
        vote_request(3, 2),
        restarted + promise - Duration::from_micros(1),
    )
    .unwrap();
    assert_eq!(granted(&raft.take_ready().messages), None, "still promised");
    raft.step(vote_request(3, 2), restarted + promise).unwrap();
    assert_eq!(granted(&raft.take_ready().messages), Some(true));
}
