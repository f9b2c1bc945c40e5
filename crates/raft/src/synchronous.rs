//! The synchronous quorum (`pg_leader.synchronous = quorum`, design.md "The quorum algebra",
//! invariant 9): no commit acknowledged to a client is missing on a later leader.
//!
//! Raft keeps a committed entry because every election majority overlaps every majority that
//! stored it. The same rule for PostgreSQL's WAL: the primary acknowledges a commit once it and
//! `k` standbys of `synchronous_standby_names = 'ANY k (...)'` flushed it, with `k` chosen so that
//! the primary plus any `k` of the list shares a server with every majority that may elect; a
//! voter then grants its vote only to a candidate holding all the WAL it flushed itself
//! (`lacks_flushed_wal`), so whoever wins holds every acknowledged commit.
//!
//! Membership changes (one voter at a time, `membership`): a configuration may elect from the
//! moment it is in a log, and the one before it until it is committed. `k` is therefore computed
//! for every configuration that may elect now or next (`may_elect`): the latest, the one before
//! it while the latest is not committed, and the one the next step leads to (a joining member's
//! promotion, an operator's change about to be proposed). `k` is thus raised before a voter
//! counts (the leader holds a promotion, and the host an operator's change, until the raised
//! setting is in effect) and lowered only once a voter's departure is committed.

use crate::membership::{MemberRole, Membership};
use crate::message::{EntryData, WalPosition};
use crate::quorum::majority;
use crate::raft::Raft;
use crate::types::{Instant, NodeId};
use std::collections::BTreeSet;
use std::fmt;

/// What `synchronous_standby_names` must say on a primary `own`: `k` of `names`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbySetting {
    pub k: usize,
    pub names: Vec<NodeId>,
}

impl fmt::Display for StandbySetting {
    /// PostgreSQL's syntax, the standbys named by the `application_name` pg_leader gives them
    /// in `primary_conninfo` (`pg_leader_<id>`). Nothing to wait for: the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.k == 0 {
            return Ok(());
        }
        let names: Vec<String> = self.names.iter().map(|n| standby_name(*n)).collect();
        write!(f, "ANY {} ({})", self.k, names.join(", "))
    }
}

/// The `application_name` of server `id` streaming as a standby.
pub fn standby_name(id: NodeId) -> String {
    format!("pg_leader_{id}")
}

/// How many of `list` must hold a commit, besides the primary `own`, so that every majority of
/// `voters` includes a server that holds it. The worst case puts as many of them as possible
/// outside `voters`; the holders inside must outnumber the voters a majority can leave out.
fn needed(own: NodeId, voters: &BTreeSet<NodeId>, list: &BTreeSet<NodeId>) -> usize {
    let left_out = voters.len() - majority(voters.len());
    let own_counts = usize::from(voters.contains(&own));
    let outside = list.difference(voters).count();
    (left_out + 1 + outside).saturating_sub(own_counts)
}

/// The voter sets that may elect a leader now: the latest configuration's voters and, while it
/// is not committed, those of the configuration before it (`previous`: `None` once the latest is
/// committed).
pub fn electing(latest: &Membership, previous: Option<&Membership>) -> Vec<BTreeSet<NodeId>> {
    let mut sets = vec![latest.voters().collect::<BTreeSet<NodeId>>()];
    if let Some(p) = previous {
        sets.push(p.voters().collect());
    }
    sets
}

/// The voter sets that may elect now or after the next step of a change: `electing`; with a
/// member joining, the voters with it (the leader promotes it on its own once it caught up);
/// and `upcoming`, a configuration the host is about to propose (an operator's removal demotes
/// a voter at once). `k` is thus raised before the step that needs it.
pub fn may_elect(
    latest: &Membership,
    previous: Option<&Membership>,
    upcoming: Option<&Membership>,
) -> Vec<BTreeSet<NodeId>> {
    let mut sets = electing(latest, previous);
    if let Some(u) = upcoming {
        sets.push(u.voters().collect());
    }
    if let Some(j) = latest
        .in_transition()
        .filter(|m| m.role == MemberRole::Joining)
    {
        let mut with: BTreeSet<NodeId> = latest.voters().collect();
        with.insert(j.id);
        sets.push(with);
    }
    sets
}

/// The setting for primary `own`: the latest configuration's voters other than `own` that bear
/// data (`data_bearing`: not a witness, whose database is its own), with the largest `k` any
/// set in `may_elect` needs.
pub fn standby_setting(
    own: NodeId,
    latest: &Membership,
    previous: Option<&Membership>,
    upcoming: Option<&Membership>,
    data_bearing: impl Fn(NodeId) -> bool,
) -> StandbySetting {
    let list: BTreeSet<NodeId> = latest
        .voters()
        .filter(|v| *v != own && data_bearing(*v))
        .collect();
    let k = may_elect(latest, previous, upcoming)
        .iter()
        .map(|voters| needed(own, voters, &list))
        .max()
        .unwrap_or(0);
    StandbySetting {
        k,
        names: list.into_iter().collect(),
    }
}

/// Does a voter that has flushed WAL up to `voter` refuse `candidate`, which may lack commits
/// acknowledged with that WAL? Positions of another database system (a witness) say nothing;
/// an unknown candidate proves nothing and is refused. A primary candidate is refused only on
/// an older timeline (a former primary), or behind another primary: a standby's WAL all came
/// from its primary. A standby candidate must be on the voter's timeline (or a newer one, which
/// forked after every commit acknowledged before the promotion that started it) and hold at
/// least as much: the comparison is with the voter's position now, not an earlier one, since
/// a commit acknowledged a moment ago counts as much as any.
pub fn lacks_flushed_wal(candidate: &WalPosition, voter: &WalPosition) -> bool {
    if !voter.known() {
        return false;
    }
    if !candidate.known() {
        return true;
    }
    if candidate.system != voter.system {
        return false;
    }
    if candidate.timeline != voter.timeline {
        return candidate.timeline < voter.timeline;
    }
    if !candidate.in_recovery && voter.in_recovery {
        return false;
    }
    candidate.lsn < voter.lsn
}

/// A candidate a voter refused for the synchronous quorum: what each said of its WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuorumRefusal {
    pub candidate: NodeId,
    pub theirs: WalPosition,
    pub ours: WalPosition,
    pub at: Instant,
}

impl fmt::Display for QuorumRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "waiting for a server that holds every acknowledged commit (pg_leader.synchronous = quorum): no vote for node {}, whose WAL ({}) may lack commits acknowledged with the WAL this server flushed ({}); pg_leader_force_failover() accepts the loss",
            self.candidate,
            position_text(&self.theirs),
            position_text(&self.ours)
        )
    }
}

fn position_text(w: &WalPosition) -> String {
    if !w.known() {
        return "unknown".to_string();
    }
    format!(
        "{:X}/{:X} on timeline {}{}",
        w.lsn >> 32,
        w.lsn & 0xFFFF_FFFF,
        w.timeline,
        if w.in_recovery {
            ", a standby"
        } else {
            ", a primary"
        }
    )
}

impl Raft {
    /// Sets `pg_leader.synchronous = quorum` on or off (`Config::synchronous_quorum`).
    pub fn set_synchronous_quorum(&mut self, on: bool) {
        self.config.synchronous_quorum = on;
        if !on {
            self.quorum_refusal = None;
        }
    }

    /// The host holds (or releases) a joining member's promotion: the setting that covers the
    /// configuration with it as a voter is not in effect yet.
    pub fn hold_voter_promotion(&mut self, hold: bool) {
        self.voter_promotion_held = hold;
    }

    /// The vote rule of the synchronous quorum, noting a refusal for `Status`.
    pub(crate) fn refuses_for_quorum(&mut self, candidate: NodeId, theirs: &WalPosition) -> bool {
        let refused = lacks_flushed_wal(theirs, &self.wal);
        if refused {
            self.quorum_refusal = Some(QuorumRefusal {
                candidate,
                theirs: *theirs,
                ours: self.wal,
                at: self.now,
            });
        }
        refused
    }

    /// A refusal of the last two election timeouts, unless this node leads: why the cluster
    /// waits.
    pub(crate) fn recent_quorum_refusal(&self) -> Option<QuorumRefusal> {
        let window = self.config.election_timeout + self.config.election_timeout;
        self.quorum_refusal
            .filter(|r| self.leader.is_none() && self.now < r.at + window)
    }

    /// What `synchronous_standby_names` must say while this server is the primary, for the
    /// configurations that may elect now (the latest, the one before while the latest is not
    /// committed) and next (`upcoming`, a change the host is about to propose).
    pub fn synchronous_setting(
        &self,
        upcoming: Option<&Membership>,
        data_bearing: impl Fn(NodeId) -> bool,
    ) -> StandbySetting {
        let previous = (self.membership_index > self.log.committed()).then(|| {
            self.log
                .entries()
                .iter()
                .rev()
                .filter_map(|e| match &e.data {
                    EntryData::Membership(m) if e.index < self.membership_index => Some(m.clone()),
                    _ => None,
                })
                .next()
                .unwrap_or_else(|| self.config.bootstrap_membership())
        });
        standby_setting(
            self.config.id,
            &self.membership,
            previous.as_ref(),
            upcoming,
            data_bearing,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Member;

    fn config(members: &[(u32, MemberRole)]) -> Membership {
        Membership::new(
            members
                .iter()
                .map(|(id, role)| Member {
                    id: NodeId(*id),
                    address: String::new(),
                    role: *role,
                })
                .collect(),
        )
    }

    fn voters(n: u32) -> Membership {
        config(&(1..=n).map(|i| (i, MemberRole::Voter)).collect::<Vec<_>>())
    }

    fn setting(own: u32, latest: &Membership) -> String {
        standby_setting(NodeId(own), latest, None, None, |_| true).to_string()
    }

    #[test]
    fn k_is_voters_minus_majority() {
        assert_eq!(setting(1, &voters(1)), "");
        // Two voters: every majority is both, the primary included.
        assert_eq!(setting(1, &voters(2)), "");
        assert_eq!(setting(1, &voters(3)), "ANY 1 (pg_leader_2, pg_leader_3)");
        assert_eq!(
            setting(2, &voters(4)),
            "ANY 1 (pg_leader_1, pg_leader_3, pg_leader_4)"
        );
        assert_eq!(
            setting(3, &voters(5)),
            "ANY 2 (pg_leader_1, pg_leader_2, pg_leader_4, pg_leader_5)"
        );
    }

    #[test]
    fn a_witness_is_not_listed_but_still_counts_as_a_voter() {
        let s = standby_setting(NodeId(1), &voters(3), None, None, |id| id != NodeId(3));
        assert_eq!(s.to_string(), "ANY 1 (pg_leader_2)");
    }

    /// Every set of `k` listed standbys plus the primary meets every majority of every voter
    /// set in `sets`: the property itself, checked by brute force.
    fn overlaps_everywhere(own: NodeId, s: &StandbySetting, sets: &[BTreeSet<NodeId>]) -> bool {
        let n = s.names.len();
        (0u32..1 << n)
            .filter(|mask| mask.count_ones() as usize == s.k)
            .all(|mask| {
                let mut holders: BTreeSet<NodeId> = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| s.names[i])
                    .collect();
                holders.insert(own);
                sets.iter().all(|v| {
                    let inside = v.intersection(&holders).count();
                    v.len() - inside < majority(v.len())
                })
            })
    }

    /// A state of the cluster: the latest configuration, the one before while it is not
    /// committed, and the one about to be proposed once it is.
    type State = (Membership, Option<Membership>, Option<Membership>);

    /// The states a cluster goes through while `configs` are appended one after the other,
    /// each first uncommitted (its predecessor may still elect), then committed (and the host
    /// about to propose the next).
    fn states(configs: &[Membership]) -> Vec<State> {
        let mut out = vec![(configs[0].clone(), None, configs.get(1).cloned())];
        for (i, w) in configs.windows(2).enumerate() {
            out.push((w[1].clone(), Some(w[0].clone()), None));
            out.push((w[1].clone(), None, configs.get(i + 2).cloned()));
        }
        out
    }

    fn setting_in(state: &State) -> StandbySetting {
        let (latest, previous, upcoming) = state;
        standby_setting(
            NodeId(1),
            latest,
            previous.as_ref(),
            upcoming.as_ref(),
            |_| true,
        )
    }

    fn grow_and_shrink() -> Vec<Membership> {
        use MemberRole::*;
        let v = Voter;
        vec![
            config(&[(1, v), (2, v), (3, v)]),
            config(&[(1, v), (2, v), (3, v), (4, Joining)]),
            config(&[(1, v), (2, v), (3, v), (4, v)]),
            config(&[(1, v), (2, v), (3, v), (4, v), (5, Joining)]),
            config(&[(1, v), (2, v), (3, v), (4, v), (5, v)]),
            config(&[(1, v), (2, v), (3, v), (4, v), (5, Leaving)]),
            config(&[(1, v), (2, v), (3, v), (4, v)]),
            config(&[(1, v), (2, v), (3, v), (4, Leaving)]),
            config(&[(1, v), (2, v), (3, v)]),
        ]
    }

    #[test]
    fn k_rises_before_a_voter_counts_and_falls_only_after_one_left() {
        let ks: Vec<usize> = states(&grow_and_shrink())
            .iter()
            .map(|state| setting_in(state).k)
            .collect();
        // 3 voters (1 of 2); 4 joins, is promoted (2 of 3 until committed, the three old
        // voters may still elect), committed (1 of 3); 5 joins (2 of 3: raised before it is
        // promoted), promoted, committed (2 of 4); 5 leaves (2 until the demotion is
        // committed, then 1 of 3), dropped; 4 about to leave (2 of 3: raised before the
        // demotion), leaves (1 of 2: no longer listed, the two others cover both sets).
        assert_eq!(ks, vec![1, 1, 1, 2, 1, 2, 2, 2, 2, 2, 1, 1, 2, 1, 1, 1, 1]);
    }

    #[test]
    fn every_setting_covers_its_own_state_and_the_next_one() {
        // The setting in effect when the next entry lands was computed for the state before:
        // it must cover the voter sets that may elect after that entry as well, or a commit
        // acknowledged between the entry and the reload could be lost. (A promotion lands only
        // once the setting for the joining member is in effect: the leader holds it until then.)
        let walk = states(&grow_and_shrink());
        for (i, state) in walk.iter().enumerate() {
            let s = setting_in(state);
            let now = may_elect(&state.0, state.1.as_ref(), state.2.as_ref());
            assert!(overlaps_everywhere(NodeId(1), &s, &now), "{s} in state {i}");
            if let Some((next, next_previous, _)) = walk.get(i + 1) {
                let then = electing(next, next_previous.as_ref());
                assert!(
                    overlaps_everywhere(NodeId(1), &s, &then),
                    "{s} after state {i}"
                );
            }
        }
    }

    #[test]
    fn a_voter_refuses_a_candidate_that_may_lack_what_it_flushed() {
        let s = |tl, lsn| WalPosition::standby(7, tl, lsn);
        let p = |tl, lsn| WalPosition::primary(7, tl, lsn);
        let table = [
            (s(1, 100), s(1, 100), false, "level"),
            (s(1, 99), s(1, 100), true, "behind on one timeline"),
            (s(1, 101), s(1, 100), false, "ahead"),
            (s(1, 500), s(2, 100), true, "older timeline"),
            (s(2, 10), s(1, 100), false, "newer timeline"),
            (
                s(1, 50),
                p(1, 100),
                true,
                "standby behind the primary voting",
            ),
            (p(1, 50), s(1, 100), false, "the primary it streamed from"),
            (p(1, 500), s(2, 10), true, "former primary"),
            (WalPosition::default(), s(1, 1), true, "unknown candidate"),
            (
                s(1, 1),
                WalPosition::default(),
                false,
                "voter that knows nothing",
            ),
            (
                WalPosition::standby(8, 1, 1),
                s(1, 100),
                false,
                "another system",
            ),
        ];
        for (candidate, voter, refused, case) in table {
            assert_eq!(lacks_flushed_wal(&candidate, &voter), refused, "{case}");
        }
    }
}
