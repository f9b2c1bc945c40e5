//! Who campaigns first: the writable primary, so that handing leadership to it afterwards
//! (`preference`) is the exception.
//!
//! Only the moment a server campaigns changes here; every vote rule stays (design.md, traps): a
//! server that started grants no vote and does not campaign before its start blackout ends
//! (`promised_until`: at least `T` after a crash, `restart`), and no server campaigns before its own promise to a leader
//! ends, since its own vote would otherwise count for a new leader while the old lease may hold.
//! Every deadline set here is past `promised_until`.
//!
//! - At start, once the host tells what the server is: a primary campaigns twice the drift margin
//!   of `T` after its own start blackout (servers started at the same moment after a crash, with
//!   the same blackout, are past theirs by then whatever the clock rates; one that waits less,
//!   after a clean stop, only makes the PreVote fail and be retried); a standby first waits half a
//!   timeout more than usual, `[T/2, 3T/2)` after its blackout. Unknown positions keep the usual
//!   draw.
//! - A preferred primary with no leader to follow, and no vote given to another server in the
//!   term, retries its PreVote after `[T/4, T/2)` instead of `[T, 2T)`, but never before its
//!   promises end. A PreVote raises no one's term, so frequent probes disturb no one; without
//!   PreVote each retry would raise the term, so the usual draw stays.
//! - A standby still in its first wait that hears a request from a preferred primary whose log
//!   it would accept waits `[T/2, T)` more from then, so that the primary, probing more often,
//!   gathers its majority as the other servers come up one by one. Never past `5T` after its
//!   start: a primary that cannot win (one that cannot hear the answers) delays the standbys'
//!   first campaign, never their later ones.
//! - Everything else draws from `[T, 2T)` at microsecond resolution, as before.

use crate::message::WalPosition;
use crate::preference::assess;
use crate::raft::Raft;
use crate::ready::Role;
use crate::types::{Duration, Instant, LogIndex, Term};

impl Raft {
    /// The end of a shorter election wait, for a primary with no leader; `None` for the usual.
    pub(crate) fn early_campaign_deadline(&mut self) -> Option<Instant> {
        if !self.campaigns_early() {
            return None;
        }
        let t = self.config.election_timeout.as_micros();
        let wait = Duration::from_micros(self.rng.uniform(t / 4, t / 2));
        Some((self.now + wait).max(self.promised_until))
    }

    fn campaigns_early(&self) -> bool {
        self.config.pre_vote
            && self.leader_id.is_none()
            && self.voted_for.is_none_or(|v| v == self.config.id)
            && self.may_campaign()
            && self.is_preferred_primary()
    }

    /// Called when what the host says of this server changes (known at last, or out of
    /// recovery): while the node still waits out its first timeout after starting, that wait
    /// is redrawn by role.
    pub(crate) fn standing_changed(&mut self) {
        if !self.first_wait || self.role() != Role::Follower || !self.wal.known() {
            return;
        }
        let t = self.config.election_timeout;
        let wait = if self.is_preferred_primary() && self.may_campaign() {
            let margin = self.config.drift_margin(t);
            margin + margin
        } else {
            let t = t.as_micros();
            Duration::from_micros(self.rng.uniform(t / 2, t + t / 2))
        };
        self.election_deadline = self.promised_until + wait;
    }

    /// A vote request arrived: a standby in its first wait makes way for a preferred primary.
    pub(crate) fn defer_to_primary(
        &mut self,
        candidate: &WalPosition,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let standby_waiting = self.first_wait
            && self.role() == Role::Follower
            && self.wal.known()
            && self.wal.in_recovery;
        let preferred = candidate.system == self.wal.system
            && assess(candidate, self.heard.newest_timeline(&self.wal), None).is_ok();
        if !standby_waiting || !preferred || !self.log.is_up_to_date(last_log_index, last_log_term)
        {
            return;
        }
        let t = self.config.election_timeout.as_micros();
        let cap = self.started_at + Duration::from_micros(5 * t);
        let wait = Duration::from_micros(self.rng.uniform(t / 2, t));
        self.election_deadline = self.election_deadline.max((self.now + wait).min(cap));
    }
}
