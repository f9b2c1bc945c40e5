//! `NOTIFY pg_leader`: a second background worker, connected to `pg_leader.notify_database`,
//! that sends a notification whenever this server's term or leader changes, so that a session
//! running `LISTEN pg_leader` learns of a failover without polling. The payload is JSON:
//! `{"term": 8, "leader": 2, "previous": 1, "cause": "won election"}` (`leader` and `previous`
//! are null when unknown).
//!
//! PostgreSQL does not deliver notifications on a standby, so this worker starts once the server
//! accepts writes (the primary, or a standby after promotion); on standbys
//! `pg_leader_wait_for_change()` serves the same purpose. It sleeps on the condition variable
//! the Raft worker broadcasts on, so a change is sent within milliseconds.

use crate::changes::CHANGES;
use crate::shmem::PUBLISHED;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use std::ffi::CString;

pub static NOTIFY_DATABASE: pgrx::guc::GucSetting<Option<CString>> =
    pgrx::guc::GucSetting::<Option<CString>>::new(Some(c"postgres"));

pub fn register() {
    BackgroundWorkerBuilder::new("pg_leader notifier")
        .set_type("pg_leader notifier")
        .set_function("pg_leader_notifier_main")
        .set_library("pg_leader")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(std::time::Duration::from_secs(5)))
        .load();
}

fn json_id(id: i32) -> String {
    if id == 0 {
        "null".into()
    } else {
        id.to_string()
    }
}

/// The notification for a change from `previous` to `now` (term, leader).
pub fn payload(term: u64, leader: i32, previous: i32, cause: &str) -> String {
    let cause: String = cause
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!(
        "{{\"term\": {term}, \"leader\": {}, \"previous\": {}, \"cause\": \"{cause}\"}}",
        json_id(leader),
        json_id(previous)
    )
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_leader_notifier_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // Its NOTIFY transactions acknowledge nothing to a client.
    crate::fence::exempt_this_process();
    let database = NOTIFY_DATABASE
        .get()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postgres".into());
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    let read = || {
        let p = PUBLISHED.share();
        (p.term, p.leader_id, p.cause().to_string())
    };
    // What was last seen, and the last leader announced (the "previous" of the next message).
    let (mut term, mut leader, _) = read();
    let mut announced = leader;
    // pgrx's flag is consumed when read: remember it.
    let mut stopping = false;
    loop {
        let mut now = (term, leader, String::new());
        CHANGES.wait_until(1000, || {
            now = read();
            stopping |= BackgroundWorker::sigterm_received();
            (now.0, now.1) != (term, leader) || stopping
        });
        if stopping {
            return;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the worker's main thread, outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let (new_term, new_leader, cause) = now;
        let changed = (new_term, new_leader) != (term, leader);
        // Losing sight of the leader within a term is not news; a new term or leader is.
        let news = changed && (new_leader != 0 || new_term != term);
        term = new_term;
        leader = new_leader;
        if !news {
            continue;
        }
        let message = payload(term, leader, announced, &cause);
        BackgroundWorker::transaction(|| {
            Spi::run_with_args(
                "SELECT pg_notify('pg_leader', $1)",
                &[message.as_str().into()],
            )
        })
        .unwrap_or_else(|e| pgrx::warning!("pg_leader: could not send NOTIFY pg_leader: {e}"));
        if leader != 0 {
            announced = leader;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::payload;

    #[test]
    fn payload_is_json_with_nulls_for_unknown_leaders() {
        assert_eq!(
            payload(8, 2, 1, "won election"),
            "{\"term\": 8, \"leader\": 2, \"previous\": 1, \"cause\": \"won election\"}"
        );
        assert_eq!(
            payload(3, 0, 0, "higher \"term\" seen"),
            "{\"term\": 3, \"leader\": null, \"previous\": null, \"cause\": \"higher term seen\"}"
        );
    }
}
