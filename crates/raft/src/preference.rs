//! Which server should lead: the writable primary (design.md, invariant 8).
//!
//! Every server tells the others what its database is in the messages it already sends (vote
//! requests, heartbeats and their acknowledgements carry its `WalPosition`). Among the servers
//! of one database system, the preferred leader is one that is not in recovery, on the newest
//! timeline heard of, and holds at least as much WAL as the leader. A primary on an older
//! timeline (a former primary that came back without being rebuilt) is never preferred.
//!
//! None of this touches Raft's rules (votes, terms, leases): it only decides whom a leader hands
//! over to (the existing transfer path, thesis §3.10, which gives up the lease first) and, in
//! `campaign_order`, who campaigns first.

use crate::message::WalPosition;
use crate::raft::Raft;
use crate::ready::Role;
use crate::types::{Instant, NodeId};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

/// Why a server is not the preferred leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotPreferred {
    /// Its position is not known (`pg_leader.wal_aware_election` off, or not read yet).
    Unknown,
    /// A standby.
    InRecovery,
    /// Of another database system than the leader (a witness has its own).
    OtherSystem,
    /// A primary on an older timeline than another server of its system: a former primary
    /// that came back without being rebuilt. It must not lead, whatever WAL it holds.
    OlderTimeline { timeline: u32, newest: u32 },
    /// A primary of the leader's timeline that holds less WAL than the leader.
    BehindLeader { lsn: u64, leader_lsn: u64 },
    /// It runs with `can_lead` off (`pg_leader.can_be_leader = off`).
    CannotLead,
}

impl fmt::Display for NotPreferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotPreferred::Unknown => write!(f, "WAL position unknown: not preferred as leader"),
            NotPreferred::InRecovery => write!(f, "in recovery: not preferred as leader"),
            NotPreferred::OtherSystem => {
                write!(f, "another database system than the leader's: not preferred as leader")
            }
            NotPreferred::OlderTimeline { timeline, newest } => write!(
                f,
                "primary on timeline {timeline}, older than timeline {newest} of another server: not leading (rebuild it as a standby)"
            ),
            NotPreferred::BehindLeader { lsn, leader_lsn } => write!(
                f,
                "primary behind the leader's WAL ({} < {}): not leading",
                lsn_text(*lsn),
                lsn_text(*leader_lsn)
            ),
            NotPreferred::CannotLead => {
                write!(f, "pg_leader.can_be_leader is off: not leading")
            }
        }
    }
}

/// PostgreSQL's way of writing an LSN.
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Is `server` a preferred leader? `newest_timeline` is the newest timeline heard of in its
/// database system; `leader` the position of the leader it is compared with, when there is one.
pub fn assess(
    server: &WalPosition,
    newest_timeline: u32,
    leader: Option<&WalPosition>,
) -> Result<(), NotPreferred> {
    if !server.known() {
        return Err(NotPreferred::Unknown);
    }
    if server.in_recovery {
        return Err(NotPreferred::InRecovery);
    }
    let leader = leader.filter(|l| l.known());
    if leader.is_some_and(|l| l.system != server.system) {
        return Err(NotPreferred::OtherSystem);
    }
    if newest_timeline > server.timeline {
        return Err(NotPreferred::OlderTimeline {
            timeline: server.timeline,
            newest: newest_timeline,
        });
    }
    if let Some(l) = leader.filter(|l| server.is_behind(l)) {
        return Err(NotPreferred::BehindLeader {
            lsn: server.lsn,
            leader_lsn: l.lsn,
        });
    }
    Ok(())
}

/// Does a voter at `voter` refuse a candidate at `candidate` (with the same Raft log) for its
/// WAL? When the candidate is a primary on an older timeline (a former primary), and when it is
/// behind on their common timeline, but then never a primary by a standby: a standby's WAL all came from its primary, and a position that looks ahead only
/// means that the primary wrote more after it sent its request. Refusing there would keep a
/// primary that writes steadily from ever being elected by its standbys.
pub fn refuses_for_wal(candidate: &WalPosition, voter: &WalPosition) -> bool {
    // A primary on an older timeline than the voter's is a former primary: a newer primary was
    // promoted since, and whatever it wrote on its own timeline is not on the candidate's.
    // Elected, it would be writable again on a dead timeline (and lose the newer primary's
    // commits). Whatever its position, it is refused.
    let former_primary = candidate.known()
        && voter.known()
        && !candidate.in_recovery
        && candidate.system == voter.system
        && candidate.timeline < voter.timeline;
    let primary_asks_standby = !candidate.in_recovery && voter.in_recovery;
    former_primary || (candidate.is_behind(voter) && !primary_asks_standby)
}

/// A follower the leader might hand over to: its last reported position, and the leader's own
/// position when it sent the message that the report answered (so that a primary whose report
/// is a heartbeat old is not taken as behind a standby that replayed meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contender {
    pub id: NodeId,
    pub wal: WalPosition,
    pub leader_then: WalPosition,
}

/// The server a leader at `own` should hand over to, if any: only a leader that is not itself
/// preferred hands over, and only to a preferred server of its own database system, so the new
/// leader never hands back (no loops). Among several, the one with the most WAL.
pub fn handover_target(
    own: &WalPosition,
    newest_timeline: u32,
    contenders: &[Contender],
) -> Option<NodeId> {
    if !own.known() || assess(own, newest_timeline, None).is_ok() {
        return None;
    }
    contenders
        .iter()
        .filter(|c| c.wal.system == own.system)
        .filter(|c| assess(&c.wal, newest_timeline, Some(&c.leader_then)).is_ok())
        .max_by_key(|c| (c.wal.timeline, c.wal.lsn, Reverse(c.id)))
        .map(|c| c.id)
}

/// What a server last said of its data, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Heard {
    pub wal: WalPosition,
    pub at: Instant,
    /// For an acknowledgement: the send time of the leader's message it answered.
    pub answering: Option<Instant>,
}

/// The positions other servers told this one, kept across roles and terms: a timeline once
/// heard of stays the newest known until a newer one appears.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeardPositions {
    by_node: BTreeMap<NodeId, Heard>,
}

impl HeardPositions {
    pub fn record(&mut self, from: NodeId, heard: Heard) {
        if heard.wal.known() {
            self.by_node.insert(from, heard);
        }
    }

    pub fn get(&self, id: NodeId) -> Option<&Heard> {
        self.by_node.get(&id)
    }

    /// The newest timeline of `own`'s database system, `own` included.
    pub fn newest_timeline(&self, own: &WalPosition) -> u32 {
        self.by_node
            .values()
            .filter(|h| h.wal.system == own.system)
            .map(|h| h.wal.timeline)
            .fold(own.timeline, u32::max)
    }
}

impl Raft {
    /// Notes what a message says of its sender's data (before any rule looks at it).
    pub(crate) fn hear_position(
        &mut self,
        from: NodeId,
        wal: WalPosition,
        answering: Option<Instant>,
    ) {
        let at = self.now;
        self.heard.record(from, Heard { wal, at, answering });
    }

    /// Why this server, a primary that is not leading, is not the preferred leader (for
    /// `Status`); `None` on a leader, a standby, or a preferred primary.
    pub(crate) fn not_preferred(&self) -> Option<NotPreferred> {
        if self.role() == Role::Leader || !self.wal.known() || self.wal.in_recovery {
            return None;
        }
        if !self.config.can_lead {
            return Some(NotPreferred::CannotLead);
        }
        let leader = self
            .leader_id
            .and_then(|l| self.heard.get(l))
            .map(|h| h.wal);
        assess(
            &self.wal,
            self.heard.newest_timeline(&self.wal),
            leader.as_ref(),
        )
        .err()
    }

    /// On a leader: a voter that has answered it within the election timeout, says it may lead,
    /// and is a primary of this server's database system on the newest timeline heard of. A
    /// standby that leads while such a primary lives hands leadership to it (or waits until it
    /// can) and is never promoted (`Config::promotes`): there is no failover to make.
    pub fn live_primary(&self) -> Option<NodeId> {
        let state = self.leader.as_ref()?;
        let window = self.config.election_timeout;
        let newest = self.heard.newest_timeline(&self.wal);
        state
            .progress
            .iter()
            .filter(|(id, p)| {
                p.can_lead == Some(true)
                    && !p.departed
                    && self.membership.is_voter(**id)
                    && self.now < p.last_heard + window
            })
            .find(|(id, _)| {
                self.heard.get(**id).is_some_and(|h| {
                    self.now < h.at + window
                        && h.wal.system == self.wal.system
                        && assess(&h.wal, newest, None).is_ok()
                })
            })
            .map(|(id, _)| *id)
    }

    /// On a leader that is a primary, where the host promotes a standby that leads
    /// (`Config::promotes`): has `target`, a standby of the same timeline, replayed less WAL than
    /// this primary holds? A switchover then waits for it, so that the promoted standby holds
    /// every commit the old primary acknowledged before its lease was given up.
    pub(crate) fn target_lacks_wal(&self, target: NodeId) -> bool {
        if !self.config.promotes || !self.wal.known() || self.wal.in_recovery {
            return false;
        }
        let floor = self
            .leader
            .as_ref()
            .and_then(|l| l.transfer)
            .and_then(|t| t.wal_floor)
            .unwrap_or(self.wal.lsn);
        self.heard.get(target).is_some_and(|h| {
            h.wal.in_recovery
                && h.wal.system == self.wal.system
                && h.wal.timeline == self.wal.timeline
                && h.wal.lsn < floor
        })
    }

    /// True when this server is, as far as it knows, a preferred leader: a primary on the newest
    /// timeline it has heard of.
    pub(crate) fn is_preferred_primary(&self) -> bool {
        self.config.can_lead
            && assess(&self.wal, self.heard.newest_timeline(&self.wal), None).is_ok()
    }

    /// On a leader that is not itself preferred: hands over to a preferred server among the
    /// healthy voters (heard within the election timeout, allowed to lead), unless a handover is
    /// already under way. The transfer gives up the lease before TimeoutNow leaves.
    pub(crate) fn hand_over_to_preferred(&mut self) {
        let Some(state) = &self.leader else { return };
        if state.transfer.is_some() || !self.wal.known() {
            return;
        }
        // Maintenance mode: handing back to a primary is an automatic action like a promotion.
        if self.automatic_actions_held() {
            return;
        }
        // Promotion asked: the old primary's timeline is superseded, whatever it says.
        if self.promotion_asked && self.wal.in_recovery {
            return;
        }
        let window = self.config.election_timeout;
        let contenders: Vec<Contender> = state
            .progress
            .iter()
            .filter(|(id, p)| {
                p.can_lead == Some(true)
                    && self.membership.is_voter(**id)
                    && self.now < p.last_heard + window
            })
            .filter_map(|(id, _)| {
                let heard = self.heard.get(*id)?;
                let fresh = self.now < heard.at + window;
                let leader_then = match heard.answering {
                    Some(sent) if sent == self.wal_sent.0 => self.wal_sent.1,
                    // An answer to an older message: compare with the position now, which a
                    // standby's replay only moves forward (never hands over too early).
                    _ => self.wal,
                };
                fresh.then_some(Contender {
                    id: *id,
                    wal: heard.wal,
                    leader_then,
                })
            })
            .collect();
        let newest = self.heard.newest_timeline(&self.wal);
        if let Some(target) = handover_target(&self.wal, newest, &contenders) {
            let now = self.now;
            // Refused only when the target stopped being eligible meanwhile: nothing to do.
            let _ = self.transfer_leadership(target, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: u64 = 7;

    fn primary(timeline: u32, lsn: u64) -> WalPosition {
        WalPosition::primary(SYSTEM, timeline, lsn)
    }

    fn standby(timeline: u32, lsn: u64) -> WalPosition {
        WalPosition::standby(SYSTEM, timeline, lsn)
    }

    #[test]
    fn assess_follows_the_rule_row_by_row() {
        let witness = WalPosition::primary(99, 1, 10);
        let leader = standby(2, 100);
        // (server, newest timeline, leader, expected)
        type Row = (
            WalPosition,
            u32,
            Option<WalPosition>,
            Result<(), NotPreferred>,
        );
        let cases: Vec<Row> = vec![
            (primary(2, 100), 2, Some(leader), Ok(())),
            (primary(2, 150), 2, Some(leader), Ok(())),
            (primary(2, 100), 2, None, Ok(())),
            (
                WalPosition::default(),
                2,
                Some(leader),
                Err(NotPreferred::Unknown),
            ),
            (
                standby(2, 500),
                2,
                Some(leader),
                Err(NotPreferred::InRecovery),
            ),
            (witness, 1, Some(leader), Err(NotPreferred::OtherSystem)),
            (
                primary(1, 900),
                2,
                Some(leader),
                Err(NotPreferred::OlderTimeline {
                    timeline: 1,
                    newest: 2,
                }),
            ),
            (
                primary(1, 900),
                2,
                None,
                Err(NotPreferred::OlderTimeline {
                    timeline: 1,
                    newest: 2,
                }),
            ),
            (
                primary(2, 99),
                2,
                Some(leader),
                Err(NotPreferred::BehindLeader {
                    lsn: 99,
                    leader_lsn: 100,
                }),
            ),
            // A leader whose position is unknown is no reference.
            (primary(2, 1), 2, Some(WalPosition::default()), Ok(())),
        ];
        for (server, newest, leader, expected) in cases {
            assert_eq!(
                assess(&server, newest, leader.as_ref()),
                expected,
                "{server:?} newest {newest} leader {leader:?}"
            );
        }
    }

    #[test]
    fn a_standby_never_refuses_its_primary_for_wal() {
        // (candidate, voter, refused)
        let cases = [
            (primary(1, 100), standby(1, 110), false),
            (standby(1, 100), standby(1, 110), true),
            (standby(1, 110), standby(1, 100), false),
            (primary(1, 100), primary(1, 110), true),
            (standby(1, 100), primary(1, 110), true),
            (standby(2, 100), standby(1, 110), false),
            // A former primary: refused on any position, by standbys and primaries alike.
            (primary(1, 500), standby(2, 100), true),
            (primary(1, 500), primary(2, 100), true),
            (primary(2, 500), standby(2, 100), false),
            (standby(1, 500), standby(2, 100), false),
        ];
        for (candidate, voter, refused) in cases {
            assert_eq!(
                refuses_for_wal(&candidate, &voter),
                refused,
                "{candidate:?} asking {voter:?}"
            );
        }
    }

    fn contender(id: u32, wal: WalPosition, leader_then: WalPosition) -> Contender {
        Contender {
            id: NodeId(id),
            wal,
            leader_then,
        }
    }

    #[test]
    fn a_leader_hands_over_only_to_a_strictly_preferred_server() {
        let me = standby(2, 100);
        let other_system = WalPosition::primary(99, 2, 500);
        // (leader, newest timeline, contenders, expected target)
        let cases: Vec<(WalPosition, u32, Vec<Contender>, Option<u32>)> = vec![
            (me, 2, vec![contender(1, primary(2, 100), me)], Some(1)),
            // Compared with the leader's position when it sent what the report answers.
            (
                me,
                2,
                vec![contender(1, primary(2, 90), standby(2, 90))],
                Some(1),
            ),
            (me, 2, vec![contender(1, primary(2, 99), me)], None),
            (me, 2, vec![contender(1, standby(2, 500), me)], None),
            (me, 2, vec![contender(1, primary(1, 900), me)], None),
            (me, 2, vec![contender(1, other_system, me)], None),
            // The former primary is passed over for the new one.
            (
                me,
                2,
                vec![
                    contender(1, primary(1, 900), me),
                    contender(3, primary(2, 120), me),
                ],
                Some(3),
            ),
            // A preferred leader never hands over: no loops between primaries.
            (
                primary(2, 100),
                2,
                vec![contender(1, primary(2, 200), primary(2, 100))],
                None,
            ),
            // A former primary that leads hands over to the primary of the newest timeline.
            (
                primary(1, 900),
                2,
                vec![contender(2, primary(2, 50), primary(1, 900))],
                Some(2),
            ),
            // Nothing known of the leader itself: the feature is off.
            (
                WalPosition::default(),
                2,
                vec![contender(1, primary(2, 100), WalPosition::default())],
                None,
            ),
        ];
        for (leader, newest, contenders, expected) in cases {
            assert_eq!(
                handover_target(&leader, newest, &contenders),
                expected.map(NodeId),
                "leader {leader:?} contenders {contenders:?}"
            );
        }
    }

    #[test]
    fn the_newest_timeline_is_remembered_per_system() {
        let mut heard = HeardPositions::default();
        let at = Instant::ZERO;
        for (id, wal) in [
            (1, primary(1, 10)),
            (2, standby(3, 5)),
            (3, WalPosition::primary(99, 9, 1)),
            (4, WalPosition::default()),
        ] {
            heard.record(
                NodeId(id),
                Heard {
                    wal,
                    at,
                    answering: None,
                },
            );
        }
        assert_eq!(heard.newest_timeline(&primary(1, 10)), 3);
        assert_eq!(heard.newest_timeline(&primary(4, 10)), 4);
        assert!(
            heard.get(NodeId(4)).is_none(),
            "unknown positions are not kept"
        );
    }
}
