//! The worker's side of maintenance mode (`pg_leader_pause()`, `pg_leader_resume()`): a
//! session's request appended here on the leader or passed on to the leader until this server
//! applied the state asked for; the state logged, recorded and published as applied; and the
//! health rule, which hands leadership away from a sick server, suspended meanwhile.

use super::Node;
use crate::clock::boottime_now;
use crate::shmem::PUBLISHED;
use pg_leader_raft::{Duration, Instant, LogIndex, NodeId, Term};

/// How often a request is asked again while this server has not applied it: a request passed
/// on may be lost, and a leader may change before it commits.
const RESEND: Duration = Duration::from_millis(300);

/// A session's request, until this server applied it or the session gave up.
pub(super) struct MaintenanceInFlight {
    want: bool,
    next_try: Instant,
    deadline: Instant,
}

fn on_off(paused: bool) -> &'static str {
    if paused {
        "on"
    } else {
        "off"
    }
}

impl Node {
    /// A session asked for maintenance mode on or off.
    pub(super) fn serve_maintenance_request(&mut self) {
        let request = {
            let p = PUBLISHED.share();
            (p.maintenance_asked > self.maintenance_answered).then(|| {
                (
                    p.maintenance_asked,
                    p.maintenance_want,
                    Instant::from_micros(p.maintenance_deadline_us),
                )
            })
        };
        let Some((asked, want, deadline)) = request else {
            return;
        };
        self.maintenance_answered = asked;
        pgrx::log!("pg_leader: maintenance mode {} asked", on_off(want));
        self.maintenance_request = Some(MaintenanceInFlight {
            want,
            next_try: boottime_now(),
            deadline,
        });
    }

    /// Appends the request on the leader, or passes it on to the leader, again every `RESEND`
    /// until this server applied it (the session waits for that) or the session's deadline.
    pub(super) fn drive_maintenance(&mut self) {
        let now = boottime_now();
        let Some(request) = self.maintenance_request.as_ref() else {
            return;
        };
        let want = request.want;
        if self.raft.maintenance().paused == want || now >= request.deadline {
            self.maintenance_request = None;
            return;
        }
        if now < request.next_try {
            return;
        }
        match self.raft.request_maintenance(want, now) {
            Ok(Some(index)) => pgrx::log!(
                "pg_leader: maintenance mode {} appended at log index {index}",
                on_off(want)
            ),
            Ok(None) => {}
            Err(e) => pgrx::debug1!("pg_leader: maintenance request waits: {e}"),
        }
        self.process_ready();
        if let Some(request) = self.maintenance_request.as_mut() {
            request.next_try = now + RESEND;
        }
    }

    /// This server applied a change of maintenance mode: said at LOG and recorded in the
    /// history, with who asked and the term of the entry.
    pub(super) fn maintenance_changed(
        &mut self,
        paused: bool,
        by: NodeId,
        term: Term,
        index: LogIndex,
    ) {
        let status = self.raft.status();
        if paused {
            pgrx::log!(
                "pg_leader: maintenance mode on (paused by node {by}, term {term}, log index {index}): the election goes on, nothing is done to PostgreSQL by itself until pg_leader_resume()"
            );
        } else {
            pgrx::log!(
                "pg_leader: maintenance mode off (resumed by node {by}, term {term}, log index {index}): automatic actions run again"
            );
        }
        let what = if paused { "pause" } else { "resume" };
        self.history.action(
            boottime_now(),
            &status,
            &format!(
                "{what} (maintenance mode {}, asked on node {by})",
                on_off(paused)
            ),
        );
    }

    /// Once per loop turn: when the applied state changed, the health rule is judged again (a
    /// server that fell sick while paused hands over once resumed).
    pub(super) fn follow_maintenance(&mut self) {
        let paused = self.raft.maintenance().paused;
        if paused != self.paused_seen {
            self.paused_seen = paused;
            self.follow_can_lead();
        }
    }
}
