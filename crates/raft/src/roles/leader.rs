//! The leader: heartbeats, replication, commit, CheckQuorum, the lease and handovers.

use crate::membership::MemberRole;
use crate::message::{Body, EntryData, Message};
use crate::progress::{LeaderState, TransferPhase};
use crate::quorum::quorum_value;
use crate::raft::Raft;
use crate::ready::{Cause, Event};
use crate::succession::decaying_max;
use crate::types::{Duration, Instant, LogIndex, NodeId};

/// The entries of one AppendEntries take at most this many bytes, well inside a datagram.
const MAX_ENTRY_BYTES: usize = 16 * 1024;

pub(crate) fn step(r: &mut Raft, msg: Message) {
    match msg.body {
        Body::AppendResponse {
            success,
            match_index,
            reject_hint,
            sent_at,
            lease,
            can_lead,
            ..
        } => {
            if let Some(p) = r
                .leader
                .as_mut()
                .and_then(|l| l.progress.get_mut(&msg.from))
            {
                p.can_lead = Some(can_lead);
                p.departed = false;
            }
            let answer = Answer {
                success,
                match_index,
                reject_hint,
                sent_at,
                lease,
            };
            handle_append_response(r, msg.from, answer);
            r.hand_over_to_preferred();
        }
        Body::ChangeRequest { change } => r.answer_change_request(msg.from, change),
        Body::Departing => crate::departure::follower_departed(r, msg.from),
        Body::MaintenanceRequest { paused } => {
            // Refused only while a handover runs: the asker sends it again to the next leader.
            let _ = r.propose_maintenance(paused, msg.from);
        }
        Body::TransferRequest { target } => r.ready.events.push(Event::TransferRequested {
            from: msg.from,
            target,
        }),
        _ => {}
    }
}

pub(crate) fn tick(r: &mut Raft) {
    if !check_transfer_timers(r) {
        return;
    }
    let due = r.leader.as_ref().is_some_and(|l| r.now >= l.next_heartbeat);
    if due {
        if r.config.check_quorum && !quorum_active(r) {
            r.become_follower(r.term, None, Cause::LostQuorum);
            return;
        }
        broadcast(r);
        advance_membership(r);
    }
}

pub(crate) fn next_deadline(l: &LeaderState, now: Instant) -> Instant {
    match l.transfer {
        Some(t) if t.phase == TransferPhase::LeaseGivenUp => now,
        Some(t) => l.next_heartbeat.min(t.deadline),
        None => l.next_heartbeat,
    }
}

/// Sends AppendEntries (entries or a bare heartbeat) to every follower.
pub(crate) fn broadcast(r: &mut Raft) {
    let now = r.now;
    let interval = r.config.heartbeat_interval;
    let Some(state) = r.leader.as_mut() else {
        return;
    };
    state.last_broadcast = now;
    state.next_heartbeat = now + interval;
    let peers: Vec<NodeId> = state.progress.keys().copied().collect();
    r.send_succession();
    for peer in peers {
        send_append(r, peer);
    }
    r.refresh_lease();
}

/// Appends an entry of the current term and sends it out; commits at once when alone.
pub(crate) fn append_and_replicate(r: &mut Raft, data: EntryData) -> LogIndex {
    let entry = r.log.append_new(r.term, data);
    let index = entry.index;
    r.ready.push_entries(vec![entry]);
    r.refresh_membership();
    let peers = r.peers();
    for peer in peers {
        send_append(r, peer);
    }
    maybe_commit(r);
    index
}

fn send_append(r: &mut Raft, peer: NodeId) {
    let Some(p) = r.leader.as_ref().and_then(|l| l.progress.get(&peer)) else {
        return;
    };
    let prev = p.next.prev();
    let prev_term = r
        .log
        .term_at(prev)
        .expect("next index never passes the end of the log");
    // Configurations carry addresses: a batch of them must still fit in one datagram.
    let entries = r
        .log
        .slice_bounded(p.next, r.config.max_entries_per_message, MAX_ENTRY_BYTES);
    let lease = r.promise_to_ask();
    let body = Body::AppendEntries {
        prev_log_index: prev,
        prev_log_term: prev_term,
        entries,
        leader_commit: r.log.committed(),
        sent_at: r.now,
        lease,
        wal: r.wal,
    };
    r.wal_sent = (r.now, r.wal);
    if let Some(state) = r.leader.as_mut() {
        state.longest_promise_asked = state.longest_promise_asked.max(lease);
    }
    r.send(peer, r.term, body);
}

/// A follower's AppendResponse, as the leader reads it.
struct Answer {
    success: bool,
    match_index: LogIndex,
    reject_hint: LogIndex,
    /// The send time of the AppendEntries it answers.
    sent_at: Instant,
    /// The promise the follower made on receiving it.
    lease: Duration,
}

fn handle_append_response(r: &mut Raft, from: NodeId, answer: Answer) {
    let Answer {
        success,
        match_index,
        reject_hint,
        sent_at,
        lease,
    } = answer;
    let now = r.now;
    let last_index = r.log.last_index();
    let Some(state) = r.leader.as_mut() else {
        return;
    };
    let asked = state.longest_promise_asked;
    let counted = r.config.lease_for(lease.min(asked));
    if sent_at <= now && state.progress.contains_key(&from) {
        // The round trips the succession step allows for (`succession`).
        state.ack_slow = decaying_max(state.ack_slow, now.saturating_since(sent_at));
    }
    let Some(p) = state.progress.get_mut(&from) else {
        return;
    };
    p.last_heard = now;
    // Only a time this leader actually sent can count for the lease; a bogus echo from the
    // future is ignored. A refusal counts as well as a success: the follower promised either way.
    // The promise counted is the one the follower says it made (design invariant 7), never more
    // than this leader asked for.
    if sent_at <= now {
        p.acked_sent_at = p.acked_sent_at.max(Some(sent_at));
        let kept_until = sent_at + counted;
        p.promised_until = p.promised_until.max(Some(kept_until));
    }
    let resend = if success {
        let matched = match_index.min(last_index);
        p.matched = p.matched.max(matched);
        p.next = p.next.max(p.matched.next());
        p.next <= last_index
    } else {
        // §5.3: back up and retry; the hint skips over a follower's missing entries at once.
        let back = p.next.prev().min(reject_hint.next());
        p.next = back.max(p.matched.next()).max(LogIndex(1));
        true
    };
    if success {
        maybe_commit(r);
    }
    if resend {
        send_append(r, from);
    }
    r.refresh_lease();
    advance_transfer(r);
    advance_membership(r);
    end_caretaking(r);
}

/// A leader that may not lead (elected because only it held entries the servers that may lead
/// lacked, see `Raft::may_campaign`) steps down once one of those holds its whole log, and asks
/// it to campaign at once: it can win now, under the usual rules (its WAL compared with the
/// others'). Waiting for the followers' timers instead could take for ever: every caretaker
/// term resets them. A handover the host started instead is left to finish.
fn end_caretaking(r: &mut Raft) {
    let last_index = r.log.last_index();
    let Some(state) = &r.leader else { return };
    if r.config.can_lead || state.transfer.is_some() {
        return;
    }
    let successor = state
        .progress
        .iter()
        .filter(|(id, p)| {
            p.can_lead == Some(true) && p.matched == last_index && r.membership.is_voter(**id)
        })
        .max_by_key(|(_, p)| p.last_heard)
        .map(|(id, _)| *id);
    if let Some(successor) = successor {
        let term = r.term;
        r.become_follower(term, None, Cause::HandedBack);
        r.send(successor, term, Body::CampaignNow);
    }
}

/// §5.3, §5.4.2: commit the highest index a majority holds, but only by counting replicas of an
/// entry of the current term.
fn maybe_commit(r: &mut Raft) {
    let Some(state) = &r.leader else { return };
    let mut matched = r.per_voter(state, |p| p.matched, r.log.last_index());
    let Some(n) = quorum_value(&mut matched) else {
        return;
    };
    let before = r.log.committed();
    if n > before && r.log.term_at(n) == Some(r.term) && r.log.commit_to(n) {
        r.collect_committed();
        let now = r.now;
        if let Some(l) = r.leader.as_mut() {
            l.commit_advanced_at = now;
        }
        // A configuration just committed: tell everyone now rather than at the next heartbeat,
        // so that its next step (a promotion, a departure) and the operator's call that waits
        // for it need not wait a heartbeat interval each.
        if before < r.membership_index && r.membership_index <= n {
            broadcast(r);
        }
    }
}

/// CheckQuorum (thesis §6.2): has a majority, this node included, been heard from within T?
/// A new leader gives its followers one timeout to answer; one that said it is leaving
/// (`departure`) does not count.
pub(crate) fn quorum_active(r: &Raft) -> bool {
    let Some(state) = &r.leader else { return false };
    let window = r.config.election_timeout;
    let in_grace = r.now < state.since + window;
    let heard = r
        .per_voter(
            state,
            |p| !p.departed && (in_grace || r.now < p.last_heard + window),
            true,
        )
        .into_iter()
        .filter(|h| *h)
        .count();
    heard >= r.majority()
}

/// Moves a membership change along (see `membership`), once the last configuration is
/// committed: promotes a joining member that has caught up, and drops a leaving member once it
/// knows it is leaving and that this is committed (or has been silent for an election timeout:
/// a dead server can be removed too). One step at a time.
fn advance_membership(r: &mut Raft) {
    let Some(state) = &r.leader else { return };
    let committed = r.log.committed();
    if state.transfer.is_some()
        || r.membership_index > committed
        || r.log.term_at(committed) != Some(r.term)
    {
        return;
    }
    let Some(member) = r.membership.in_transition().cloned() else {
        return;
    };
    if member.id == r.config.id {
        // Elected while its demotion was pending: the configuration is committed now, so hand
        // over to a voter, which then drops this node.
        let now = r.now;
        let _ = r.hand_over(now);
        return;
    }
    let Some(p) = state.progress.get(&member.id) else {
        return;
    };
    let next = match member.role {
        MemberRole::Joining if p.matched >= committed && !r.voter_promotion_held => r
            .membership
            .with_role(member.id, &member.address, MemberRole::Voter),
        // It must know its demotion is committed, or it would go on campaigning (§4.1).
        MemberRole::Leaving
            if (p.matched >= r.membership_index
                && p.acked_sent_at
                    .is_some_and(|t| t > state.commit_advanced_at))
                || r.now >= p.last_heard + r.config.election_timeout =>
        {
            r.membership.without(member.id)
        }
        _ => return,
    };
    append_and_replicate(r, EntryData::Membership(next));
}

/// Moves a handover along: once the target holds the whole log, give up the lease; TimeoutNow
/// leaves at the next tick, after the lease loss has been published.
pub(crate) fn advance_transfer(r: &mut Raft) {
    let last_index = r.log.last_index();
    let Some(state) = r.leader.as_mut() else {
        return;
    };
    let Some(transfer) = state.transfer.as_mut() else {
        return;
    };
    if transfer.phase == TransferPhase::AwaitingWal {
        let target = transfer.target;
        if !transfer.waits_for_wal || !r.target_lacks_wal(target) {
            // TimeoutNow at the next tick, as after a lease given up.
            if let Some(t) = r.leader.as_mut().and_then(|s| s.transfer.as_mut()) {
                t.phase = TransferPhase::LeaseGivenUp;
            }
        }
        return;
    }
    if transfer.phase != TransferPhase::CatchingUp {
        return;
    }
    let caught_up = state
        .progress
        .get(&transfer.target)
        .is_some_and(|p| p.matched == last_index);
    if caught_up {
        transfer.phase = TransferPhase::LeaseGivenUp;
        transfer.wal_floor = Some(r.wal.lsn);
        r.refresh_lease();
    } else {
        let target = transfer.target;
        send_append(r, target);
    }
}

/// Returns false when the node stopped leading.
fn check_transfer_timers(r: &mut Raft) -> bool {
    let now = r.now;
    let term = r.term;
    let lacks_wal = r
        .leader
        .as_ref()
        .and_then(|s| s.transfer)
        .is_some_and(|t| t.waits_for_wal && r.target_lacks_wal(t.target));
    let Some(state) = r.leader.as_mut() else {
        return false;
    };
    let Some(transfer) = state.transfer.as_mut() else {
        return true;
    };
    match transfer.phase {
        TransferPhase::LeaseGivenUp | TransferPhase::AwaitingWal if lacks_wal => {
            if now >= transfer.deadline {
                // The target never replayed all the WAL. No TimeoutNow left, so no server was
                // told to campaign past the followers' promises: the lease may be counted again.
                state.transfer = None;
                r.refresh_lease();
            } else {
                transfer.phase = TransferPhase::AwaitingWal;
            }
            true
        }
        TransferPhase::LeaseGivenUp | TransferPhase::AwaitingWal => {
            transfer.phase = TransferPhase::Sent;
            let target = transfer.target;
            r.send(target, term, Body::TimeoutNow);
            true
        }
        TransferPhase::CatchingUp if now >= transfer.deadline => {
            // The target never caught up; the lease was never given up, so keep leading.
            state.transfer = None;
            true
        }
        TransferPhase::Sent if now >= transfer.deadline => {
            // The lease is gone for this term; let a fresh election pick a leader.
            r.become_follower(term, None, Cause::TransferFailed);
            false
        }
        _ => true,
    }
}
