//! How long a starting server keeps its promises (design invariant 7, traps: "a node that
//! restarts has forgotten when it last heard from the leader").
//!
//! A server that crashed does not know which promise it made last: it waits for the longest one
//! it made durable (`HardState::longest_promise`), and at least its own election timeout, before
//! it votes or campaigns. That wait is blind; two cases need none of it:
//! - A server that stopped cleanly wrote down, after its last message, when its last promise
//!   ends on a clock that runs across process restarts within one boot (`CLOCK_BOOTTIME` with
//!   the boot id). Started again in the same boot, it waits only for what is left of it.
//! - A server that never ran before (the host created its state directory just now) promised
//!   nothing. Its state shows it too: a promise raises the term and is made durable before its
//!   acknowledgement leaves (`Raft::promise`), so a state with a term is never taken for new. A
//!   state that is merely empty (a file removed by hand) may have been lost rather than never
//!   made: that is `Unknown`, the full wait.
//!
//! The host must hand a clean-stop record to one start only (it deletes the record before the
//! node sends anything): a crash after that start makes the next start wait in full again.

use crate::config::{Config, ConfigError};
use crate::raft::Raft;
use crate::ready::PersistedState;
use crate::rng::RandomSource;
use crate::types::{Duration, Instant, Term};

/// What a starting server knows of the promises it made before it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlierPromises {
    /// Nothing: it crashed, or stopped in another boot, or the record could not be read.
    Unknown,
    /// It stopped cleanly in this boot; none of its promises runs past this instant (on the
    /// clock the node is driven with).
    EndAt(Instant),
    /// It never ran before: its state is new, not lost.
    NeverRan,
}

impl Raft {
    /// Starts a node from what it had made durable, with what the host knows of its earlier
    /// promises (see the module documentation). `Raft::new` is the same with nothing known.
    pub fn start(
        config: Config,
        persisted: PersistedState,
        rng: Box<dyn RandomSource>,
        now: Instant,
        earlier: EarlierPromises,
    ) -> Result<Raft, ConfigError> {
        let empty = persisted.hard_state.term == Term(0) && persisted.entries.is_empty();
        let mut raft = Raft::new(config, persisted, rng, now)?;
        let promise_end = match earlier {
            EarlierPromises::EndAt(end) => Some(end.max(now)),
            EarlierPromises::NeverRan if empty => Some(now),
            EarlierPromises::NeverRan | EarlierPromises::Unknown => None,
        };
        if let Some(end) = promise_end {
            raft.promised_until = end;
            raft.election_deadline = raft.first_deadline_after_known_promises();
        }
        Ok(raft)
    }

    /// The end of every promise this node made: no vote for another and no campaign before it,
    /// except for a handover. A host that stops cleanly records it (`EarlierPromises::EndAt`)
    /// once the node has handled its last message.
    pub fn promises_end(&self) -> Instant {
        self.promised_until
    }

    /// The first election deadline once the earlier promises are known: the usual spread after
    /// their end (no blind timeout first), and none for the only voter, which needs no one's vote.
    fn first_deadline_after_known_promises(&mut self) -> Instant {
        if self.membership.voter_count() == 1 && self.membership.is_voter(self.config.id) {
            return self.promised_until;
        }
        let t = self.config.election_timeout.as_micros();
        self.promised_until + Duration::from_micros(self.rng.uniform(0, t))
    }
}
