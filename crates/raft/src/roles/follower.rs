//! The follower: accepts the leader's entries and waits for it to fall silent.

use crate::message::{Body, Message};
use crate::raft::Raft;
use crate::ready::{Cause, Event, Role};

pub(crate) fn step(r: &mut Raft, msg: Message) {
    match msg.body {
        Body::AppendEntries { .. } => handle_append(r, msg),
        Body::TimeoutNow if r.leader_id == Some(msg.from) && r.may_lead() => {
            // The leader has given up its lease and asks us to take over (thesis §3.10).
            r.become_candidate(Cause::Transfer);
        }
        Body::CampaignNow if r.leader_id == Some(msg.from) && r.may_start_election() => {
            r.start_campaign(Cause::HandedBack);
        }
        Body::ChangeAnswer { outcome } => r.ready.events.push(Event::ChangeAnswered { outcome }),
        Body::TransferRefused { outcome } => {
            r.ready.events.push(Event::TransferRefused { outcome })
        }
        _ => {}
    }
}

/// The election deadline is never before the end of a promise this node made (see
/// `Raft::reset_election_timer`), so a timeout here never breaks one.
pub(crate) fn tick(r: &mut Raft) {
    if r.now < r.election_deadline {
        return;
    }
    if r.may_campaign() {
        r.start_campaign(Cause::ElectionTimeout);
    } else if r.leader_id.is_some() || r.role() != Role::Follower {
        // A learner, or a voter that must not lead, cannot campaign; it only stops naming a
        // leader it no longer hears from.
        r.become_follower(r.term, None, Cause::ElectionTimeout);
    } else {
        r.reset_election_timer();
    }
}

/// AppendEntries from the leader of our term (§5.3), also used by candidates that step down.
pub(crate) fn handle_append(r: &mut Raft, msg: Message) {
    let Body::AppendEntries {
        prev_log_index,
        prev_log_term,
        entries,
        leader_commit,
        sent_at,
        lease,
        ..
    } = msg.body
    else {
        return;
    };
    r.note_leader(msg.from);
    r.leader_commit_heard = leader_commit;
    r.last_leader_contact = Some(r.now);
    r.refused_a_stale_candidate = false;
    r.leader_heard_at = r.now;
    // The promise behind the leader's lease: no vote for anyone else for `lease` from now. It is
    // made whether or not the entries fit our log, since every answer below counts for the lease.
    r.promise(lease);
    r.reset_election_timer();
    let body = match r.log.try_append(prev_log_index, prev_log_term, &entries) {
        Ok((last_new, changed)) => {
            let log_changed = !changed.is_empty();
            r.ready.push_entries(changed);
            if log_changed {
                r.refresh_membership();
            }
            if r.log.commit_to(leader_commit.min(last_new)) {
                r.collect_committed();
            }
            Body::AppendResponse {
                success: true,
                match_index: last_new,
                reject_hint: last_new,
                sent_at,
                lease,
                can_lead: r.config.can_lead,
                wal: r.wal,
            }
        }
        Err(mismatch) => Body::AppendResponse {
            success: false,
            match_index: crate::types::LogIndex(0),
            reject_hint: mismatch.last_index,
            sent_at,
            lease,
            can_lead: r.config.can_lead,
            wal: r.wal,
        },
    };
    r.send(msg.from, r.term, body);
}
