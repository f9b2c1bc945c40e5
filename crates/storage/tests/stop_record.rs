//! The clean-stop record (`pg_leader.stopped`): trusted by one start only, and only when it is
//! this node's, from this boot, and intact.

use pg_leader_raft::{Instant, NodeId};
use pg_leader_storage::{Storage, STOP_RECORD_FILE};
use std::fs;

const BOOT: &str = "5b1c7f6e-0d3a-4c55-9a0e-2f7c1e9b8a10";

fn open(dir: &std::path::Path, node: u32) -> Storage {
    Storage::open(dir, "main", NodeId(node)).unwrap()
}

#[test]
fn a_record_serves_the_next_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let end = Instant::from_micros(42_000_000);
    open(dir.path(), 1).record_clean_stop(BOOT, end).unwrap();
    let storage = open(dir.path(), 1);
    assert_eq!(storage.take_clean_stop(BOOT).unwrap(), Some(end));
    assert!(!dir.path().join(STOP_RECORD_FILE).exists(), "removed");
    // A crash after that start: the next one finds nothing and waits in full.
    assert_eq!(open(dir.path(), 1).take_clean_stop(BOOT).unwrap(), None);
}

#[test]
fn a_record_of_another_boot_is_not_trusted_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), 1)
        .record_clean_stop(BOOT, Instant::from_micros(1))
        .unwrap();
    let storage = open(dir.path(), 1);
    assert_eq!(storage.take_clean_stop("another boot").unwrap(), None);
    assert!(!dir.path().join(STOP_RECORD_FILE).exists());
}

#[test]
fn a_record_of_another_node_is_not_trusted() {
    // pg_basebackup copies the state directory when it lives in the data directory.
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), 1)
        .record_clean_stop(BOOT, Instant::from_micros(1))
        .unwrap();
    fs::remove_file(dir.path().join(pg_leader_storage::STATE_FILE)).unwrap();
    assert_eq!(open(dir.path(), 2).take_clean_stop(BOOT).unwrap(), None);
}

#[test]
fn a_damaged_record_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    open(dir.path(), 1)
        .record_clean_stop(BOOT, Instant::from_micros(7))
        .unwrap();
    let path = dir.path().join(STOP_RECORD_FILE);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 40;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    assert_eq!(open(dir.path(), 1).take_clean_stop(BOOT).unwrap(), None);
}

#[test]
fn a_record_that_outlived_its_start_is_never_trusted() {
    // Its removal failed at the start that followed it; that run made newer promises and
    // crashed: the record is older than them.
    let dir = tempfile::tempdir().unwrap();
    let end = Instant::from_micros(42_000_000);
    open(dir.path(), 1).record_clean_stop(BOOT, end).unwrap();
    let record = fs::read(dir.path().join(STOP_RECORD_FILE)).unwrap();
    let _run_whose_removal_failed = open(dir.path(), 1);
    fs::write(dir.path().join(STOP_RECORD_FILE), record).unwrap();
    assert_eq!(open(dir.path(), 1).take_clean_stop(BOOT).unwrap(), None);
}
