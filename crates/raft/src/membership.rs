//! Who belongs to the cluster, replicated through the log (thesis §4).
//!
//! A configuration is an ordinary log entry and takes effect on every server as soon as it is in
//! its log, committed or not; truncating it reverts to the previous one. Changes are made one
//! voter at a time (thesis §4.3): any majority of the old voters and any majority of the new ones
//! then share a server, so two disjoint majorities can never exist. A leader starts a change
//! only when the previous one is committed and it has committed an entry of its own term
//! (the fix to single-server changes in Ongaro's raft-dev note of 2015).
//!
//! Adding a voter takes two entries: the new server first joins as a non-voter (`Joining`) and
//! is promoted once it has caught up, so that it never stalls commits while it copies the log.
//! Removing a voter also takes two: it is first demoted (`Leaving`), so that it learns it no
//! longer votes and stops campaigning, then dropped.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    /// Votes and counts for quorum; may lead.
    Voter,
    /// Follows the leader's log and never counts: a read replica.
    Learner,
    /// Being added: follows like a learner until caught up, then the leader promotes it.
    Joining,
    /// Being removed: no longer votes; the leader drops it once it has heard so.
    Leaving,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Joining => "joining",
            MemberRole::Leaving => "leaving",
        }
    }

    /// A change is under way while a member is joining or leaving.
    pub fn in_transition(self) -> bool {
        matches!(self, MemberRole::Joining | MemberRole::Leaving)
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// Where its peers reach it (`host:port`); opaque to the core.
    pub address: String,
    pub role: MemberRole,
}

/// One configuration: its members, sorted by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    members: Vec<Member>,
}

/// An operator's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Adds a server: a voter (after catching up) or a learner.
    Add {
        id: NodeId,
        address: String,
        voter: bool,
    },
    /// Removes a server, whatever its role.
    Remove { id: NodeId },
}

impl Membership {
    pub fn new(mut members: Vec<Member>) -> Membership {
        members.sort_by_key(|m| m.id);
        members.dedup_by_key(|m| m.id);
        Membership { members }
    }

    /// Every server a voter, as `pg_leader.peers` lists them.
    pub fn of_voters(voters: impl IntoIterator<Item = (NodeId, String)>) -> Membership {
        Membership::new(
            voters
                .into_iter()
                .map(|(id, address)| Member {
                    id,
                    address,
                    role: MemberRole::Voter,
                })
                .collect(),
        )
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.get(id).is_some()
    }

    pub fn role_of(&self, id: NodeId) -> Option<MemberRole> {
        self.get(id).map(|m| m.role)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.role_of(id) == Some(MemberRole::Voter)
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .filter(|m| m.role == MemberRole::Voter)
            .map(|m| m.id)
    }

    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// The member whose change is under way, if any.
    pub fn in_transition(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.role.in_transition())
    }

    /// The same configuration with `id` in `role` (added when absent).
    pub fn with_role(&self, id: NodeId, address: &str, role: MemberRole) -> Membership {
        let mut members: Vec<Member> = self
            .members
            .iter()
            .filter(|m| m.id != id)
            .cloned()
            .collect();
        members.push(Member {
            id,
            address: address.to_string(),
            role,
        });
        Membership::new(members)
    }

    pub fn without(&self, id: NodeId) -> Membership {
        Membership::new(
            self.members
                .iter()
                .filter(|m| m.id != id)
                .cloned()
                .collect(),
        )
    }

    /// How many servers are voters in one configuration and not in the other.
    pub fn voter_difference(&self, other: &Membership) -> usize {
        let only_here = self.voters().filter(|v| !other.is_voter(*v)).count();
        let only_there = other.voters().filter(|v| !self.is_voter(*v)).count();
        only_here + only_there
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", m.id, m.address)?;
            if m.role != MemberRole::Voter {
                write!(f, " ({})", m.role)?;
            }
        }
        Ok(())
    }
}

/// Why a membership change was not started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeError {
    NotLeader(Option<NodeId>),
    /// The change of this member (or an uncommitted configuration) must finish first.
    InProgress(Option<NodeId>),
    /// The leader has not yet committed an entry of its term; retry in a moment.
    NotReady,
    /// A leadership transfer is in progress.
    Transferring,
    AlreadyMember(NodeId, MemberRole),
    NotMember(NodeId),
    AddressInUse(NodeId),
    /// The leader cannot remove itself: hand leadership over first.
    RemovingLeader,
    /// The last voter cannot go.
    LastVoter,
}

impl ChangeError {
    /// A stable code, for the host to pass between processes.
    pub fn code(&self) -> u8 {
        match self {
            ChangeError::NotLeader(_) => 1,
            ChangeError::InProgress(_) => 2,
            ChangeError::NotReady => 3,
            ChangeError::Transferring => 4,
            ChangeError::AlreadyMember(..) => 5,
            ChangeError::NotMember(_) => 6,
            ChangeError::AddressInUse(_) => 7,
            ChangeError::RemovingLeader => 8,
            ChangeError::LastVoter => 9,
        }
    }
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::NotLeader(Some(l)) => {
                write!(f, "this node is not the leader; node {l} is")
            }
            ChangeError::NotLeader(None) => write!(f, "no leader is known"),
            ChangeError::InProgress(Some(id)) => {
                write!(f, "a membership change of node {id} is already in progress")
            }
            ChangeError::InProgress(None) => {
                write!(f, "a membership change is already in progress")
            }
            ChangeError::NotReady => {
                write!(f, "the leader has not yet committed an entry of its term")
            }
            ChangeError::Transferring => write!(f, "a leadership transfer is in progress"),
            ChangeError::AlreadyMember(id, role) => write!(f, "node {id} is already a {role}"),
            ChangeError::NotMember(id) => write!(f, "node {id} is not a member of this cluster"),
            ChangeError::AddressInUse(id) => write!(f, "node {id} already uses this address"),
            ChangeError::RemovingLeader => write!(f, "the leader cannot remove itself"),
            ChangeError::LastVoter => write!(f, "the last voter cannot be removed"),
        }
    }
}

impl std::error::Error for ChangeError {}

/// The configuration that results from `change`, or why it may not be made now. Pure
/// arithmetic on configurations; whether the leader may start a change at all is checked by
/// the caller.
pub fn apply_change(
    current: &Membership,
    change: &MembershipChange,
    leader: NodeId,
) -> Result<Membership, ChangeError> {
    let pending = current.in_transition().map(|m| m.id);
    match change {
        MembershipChange::Add { id, address, voter } => {
            if pending.is_some() {
                return Err(ChangeError::InProgress(pending));
            }
            if let Some(m) = current.get(*id) {
                return Err(ChangeError::AlreadyMember(*id, m.role));
            }
            if let Some(m) = current.members().iter().find(|m| m.address == *address) {
                return Err(ChangeError::AddressInUse(m.id));
            }
            let role = if *voter {
                MemberRole::Joining
            } else {
                MemberRole::Learner
            };
            Ok(current.with_role(*id, address, role))
        }
        MembershipChange::Remove { id } => {
            let Some(member) = current.get(*id) else {
                return Err(ChangeError::NotMember(*id));
            };
            // Cancelling a join is the one change allowed while another is pending: it is that
            // same change, and a non-voter's departure moves no majority.
            if pending.is_some_and(|p| p != *id) {
                return Err(ChangeError::InProgress(pending));
            }
            match member.role {
                MemberRole::Voter if *id == leader => Err(ChangeError::RemovingLeader),
                MemberRole::Voter if current.voter_count() == 1 => Err(ChangeError::LastVoter),
                MemberRole::Voter => {
                    Ok(current.with_role(*id, &member.address, MemberRole::Leaving))
                }
                MemberRole::Leaving => Err(ChangeError::InProgress(Some(*id))),
                MemberRole::Learner | MemberRole::Joining => Ok(current.without(*id)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        Membership::of_voters((1..=3).map(|i| (NodeId(i), format!("h:{i}"))))
    }

    fn add(id: u32, voter: bool) -> MembershipChange {
        MembershipChange::Add {
            id: NodeId(id),
            address: format!("h:{id}"),
            voter,
        }
    }

    #[test]
    fn adding_a_voter_starts_as_joining_and_moves_no_majority() {
        let c = three();
        let next = apply_change(&c, &add(4, true), NodeId(1)).unwrap();
        assert_eq!(next.role_of(NodeId(4)), Some(MemberRole::Joining));
        assert_eq!(next.voter_difference(&c), 0);
        let promoted = next.with_role(NodeId(4), "h:4", MemberRole::Voter);
        assert_eq!(promoted.voter_difference(&next), 1);
        assert_eq!(promoted.voter_count(), 4);
    }

    #[test]
    fn one_change_at_a_time() {
        let joining = apply_change(&three(), &add(4, true), NodeId(1)).unwrap();
        assert_eq!(
            apply_change(&joining, &add(5, false), NodeId(1)),
            Err(ChangeError::InProgress(Some(NodeId(4))))
        );
        assert_eq!(
            apply_change(
                &joining,
                &MembershipChange::Remove { id: NodeId(2) },
                NodeId(1)
            ),
            Err(ChangeError::InProgress(Some(NodeId(4))))
        );
        // Cancelling the join itself is allowed.
        let cancelled = apply_change(
            &joining,
            &MembershipChange::Remove { id: NodeId(4) },
            NodeId(1),
        )
        .unwrap();
        assert_eq!(cancelled, three());
    }

    #[test]
    fn removing_a_voter_demotes_it_first_and_never_the_leader_or_the_last() {
        let c = three();
        let leaving =
            apply_change(&c, &MembershipChange::Remove { id: NodeId(3) }, NodeId(1)).unwrap();
        assert_eq!(leaving.role_of(NodeId(3)), Some(MemberRole::Leaving));
        assert_eq!(leaving.voter_difference(&c), 1);
        assert_eq!(
            apply_change(&c, &MembershipChange::Remove { id: NodeId(1) }, NodeId(1)),
            Err(ChangeError::RemovingLeader)
        );
        let alone = Membership::of_voters([(NodeId(1), "h:1".to_string())]);
        let with_learner = alone.with_role(NodeId(2), "h:2", MemberRole::Learner);
        assert_eq!(
            apply_change(
                &with_learner,
                &MembershipChange::Remove { id: NodeId(1) },
                NodeId(2)
            ),
            Err(ChangeError::LastVoter)
        );
    }

    #[test]
    fn duplicates_are_refused_by_id_and_by_address() {
        let c = three();
        assert_eq!(
            apply_change(&c, &add(2, true), NodeId(1)),
            Err(ChangeError::AlreadyMember(NodeId(2), MemberRole::Voter))
        );
        let same_address = MembershipChange::Add {
            id: NodeId(9),
            address: "h:3".into(),
            voter: false,
        };
        assert_eq!(
            apply_change(&c, &same_address, NodeId(1)),
            Err(ChangeError::AddressInUse(NodeId(3)))
        );
        assert_eq!(
            apply_change(&c, &MembershipChange::Remove { id: NodeId(7) }, NodeId(1)),
            Err(ChangeError::NotMember(NodeId(7)))
        );
    }
}
