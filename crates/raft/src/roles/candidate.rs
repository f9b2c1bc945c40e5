//! The pre-candidate and the candidate: gather (pre-)votes until a majority says yes or no.

use crate::message::{Body, Message};
use crate::raft::Raft;
use crate::ready::Cause;
use crate::roles::follower;

pub(crate) fn step_pre_candidate(r: &mut Raft, msg: Message) {
    match msg.body {
        Body::AppendEntries { .. } => {
            // A leader of our term exists: follow it.
            r.become_follower(msg.term, Some(msg.from), Cause::LeaderSeen);
            follower::handle_append(r, msg);
        }
        Body::VoteResponse {
            pre_vote: true,
            granted,
        } => {
            // A grant echoes the term we asked about; a refusal carries the voter's own term.
            let current = if granted {
                msg.term == r.term.next()
            } else {
                msg.term == r.term
            };
            if current {
                r.votes.insert(msg.from, granted);
                count_votes(r);
            }
        }
        _ => {}
    }
}

pub(crate) fn step_candidate(r: &mut Raft, msg: Message) {
    match msg.body {
        Body::AppendEntries { .. } => {
            // §5.2: another server won this term.
            r.become_follower(msg.term, Some(msg.from), Cause::LeaderSeen);
            follower::handle_append(r, msg);
        }
        Body::VoteResponse {
            pre_vote: false,
            granted,
        } => {
            r.votes.insert(msg.from, granted);
            count_votes(r);
        }
        _ => {}
    }
}

/// Both candidates time out the same way as a follower: try again, with a fresh random timeout
/// (or give up, when a new configuration made this node a non-voter meanwhile).
pub(crate) fn tick(r: &mut Raft) {
    follower::tick(r);
}

/// Moves on once a majority has answered one way (§5.2).
pub(crate) fn count_votes(r: &mut Raft) {
    // Only the voters of the configuration count: a candidate that it demotes (still
    // campaigning until that is committed) does not count itself.
    let (mut granted, mut refused) = (0, 0);
    for (id, grant) in &r.votes {
        if r.membership.is_voter(*id) {
            if *grant {
                granted += 1;
            } else {
                refused += 1;
            }
        }
    }
    let majority = r.majority();
    let pre_vote = r.role() == crate::ready::Role::PreCandidate;
    if granted >= majority {
        if pre_vote {
            r.become_candidate(Cause::PreVoteGranted);
        } else {
            r.become_leader();
        }
    } else if refused >= majority {
        r.become_follower(r.term, None, Cause::LostElection);
    }
}
