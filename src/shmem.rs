//! What the worker publishes for sessions: one block under one LWLock, written as a whole, so a
//! reader always sees one consistent snapshot.

use pg_leader_raft::MemberRole;
use pgrx::{PGRXSharedMemory, PgLwLock};

pub const MAX_NODES: usize = 16;
const ADDRESS_LEN: usize = 128;
const ERROR_LEN: usize = 512;
const CAUSE_LEN: usize = 32;

/// The worker's state as sessions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PublishedRole {
    /// The worker has not published anything yet.
    Starting = 0,
    Follower = 1,
    PreCandidate = 2,
    Candidate = 3,
    Leader = 4,
    /// The settings or the state directory are unusable; `error` says why.
    Misconfigured = 5,
}

impl PublishedRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishedRole::Starting => "starting",
            PublishedRole::Follower => "follower",
            PublishedRole::PreCandidate => "pre-candidate",
            PublishedRole::Candidate => "candidate",
            PublishedRole::Leader => "leader",
            PublishedRole::Misconfigured => "misconfigured",
        }
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct NodeSlot {
    pub id: i32,
    address: [u8; ADDRESS_LEN],
    address_len: u16,
    /// CLOCK_BOOTTIME microseconds of the last authentic datagram from it; 0 never.
    pub last_contact_us: u64,
    pub match_index: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub packets_rejected: u64,
    /// Its role in the configuration in effect (`encode_member_role`).
    membership: u8,
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Published {
    /// Bumped on every publish; 0 until the worker first published.
    pub generation: u64,
    pub node_id: i32,
    role: u8,
    pub term: u64,
    /// 0 when no leader is known.
    pub leader_id: i32,
    /// 0 when no vote was cast in this term.
    pub voted_for: i32,
    pub commit_index: u64,
    /// CLOCK_BOOTTIME microseconds; the lease holds while the clock is before it. 0: no lease.
    pub lease_deadline_us: u64,
    pub last_leader_contact_us: u64,
    error: [u8; ERROR_LEN],
    error_len: u16,
    /// Why the role last changed (a `Cause`), for notifications.
    cause: [u8; CAUSE_LEN],
    cause_len: u16,
    pub node_count: u32,
    /// Datagrams rejected since the worker started, by reason (`pg_leader_wire::Reject::ALL`).
    pub rejected_by_reason: [u64; pg_leader_wire::Reject::ALL.len()],
    pub nodes: [NodeSlot; MAX_NODES],
    /// The worker's pid, for sessions that signal it a request.
    pub worker_pid: i32,
    /// Leadership transfer requests: a session bumps `transfer_asked` (with `transfer_target`,
    /// 0 for the most caught-up voter) and sends SIGINT; the worker answers by setting
    /// `transfer_answered` to it, with `transfer_outcome` (0: started, else a `TransferError`
    /// code) and the node it chose.
    pub transfer_asked: u64,
    pub transfer_target: i32,
    pub transfer_answered: u64,
    pub transfer_outcome: i32,
    pub transfer_chosen: i32,
    /// Switchovers passed on to the leader that it refused, and the last refusal's code.
    pub transfer_refusals: u64,
    pub transfer_refusal_outcome: i32,
    /// This server's own role in the configuration in effect; 0 when it is not a member.
    self_membership: u8,
    /// Index of the log entry the configuration in effect came from (0: `pg_leader.peers`).
    pub membership_index: u64,
    /// Membership change requests, like transfer requests: a session fills in the change and
    /// bumps `change_asked`; the worker sets `change_answered` to it with `change_outcome`
    /// (0: started or already made, else a `ChangeError::code`, or `CHANGE_TIMED_OUT`).
    pub change_asked: u64,
    pub change_remove: bool,
    pub change_node: i32,
    change_address: [u8; ADDRESS_LEN],
    change_address_len: u16,
    pub change_voter: bool,
    /// CLOCK_BOOTTIME microseconds after which the worker stops trying: the session gave up.
    pub change_deadline_us: u64,
    pub change_answered: u64,
    pub change_outcome: i32,
    /// Maintenance mode as this server applied it from the log (`pg_leader_pause()`), who asked
    /// for it and in which term; `paused_by` 0 when it was never asked.
    pub paused: bool,
    pub paused_by: i32,
    pub paused_term: u64,
    /// `pg_leader_pause()` / `pg_leader_resume()`: a session sets `maintenance_want`, the
    /// deadline, bumps `maintenance_asked` and sends SIGINT; the worker keeps asking the leader
    /// until this server applied that state or the deadline passed. Sessions wait for `paused`.
    pub maintenance_asked: u64,
    pub maintenance_want: bool,
    pub maintenance_deadline_us: u64,
}

/// `change_outcome` when no leader took the change within the session's timeout.
pub const CHANGE_TIMED_OUT: i32 = 100;

fn encode_member_role(role: Option<MemberRole>) -> u8 {
    match role {
        None => 0,
        Some(MemberRole::Voter) => 1,
        Some(MemberRole::Learner) => 2,
        Some(MemberRole::Joining) => 3,
        Some(MemberRole::Leaving) => 4,
    }
}

fn decode_member_role(code: u8) -> Option<MemberRole> {
    match code {
        1 => Some(MemberRole::Voter),
        2 => Some(MemberRole::Learner),
        3 => Some(MemberRole::Joining),
        4 => Some(MemberRole::Leaving),
        _ => None,
    }
}

/// How sessions name a membership role; "none" for a server outside the configuration.
pub fn member_role_name(role: Option<MemberRole>) -> &'static str {
    role.map_or("none", MemberRole::as_str)
}

impl Default for Published {
    fn default() -> Self {
        // SAFETY: every field is a plain integer or an array of them; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

// SAFETY: plain old data with no pointers, valid in any process that maps the segment.
unsafe impl PGRXSharedMemory for Published {}

pub static PUBLISHED: PgLwLock<Published> = unsafe { PgLwLock::new(c"pg_leader") };

fn copy_into<const N: usize>(dst: &mut [u8; N], len: &mut u16, text: &str) {
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    dst[..end].copy_from_slice(&text.as_bytes()[..end]);
    *len = end as u16;
}

impl Published {
    pub fn role(&self) -> PublishedRole {
        match self.role {
            1 => PublishedRole::Follower,
            2 => PublishedRole::PreCandidate,
            3 => PublishedRole::Candidate,
            4 => PublishedRole::Leader,
            5 => PublishedRole::Misconfigured,
            _ => PublishedRole::Starting,
        }
    }

    pub fn set_role(&mut self, role: PublishedRole) {
        self.role = role as u8;
    }

    pub fn error(&self) -> Option<&str> {
        (self.error_len > 0)
            .then(|| std::str::from_utf8(&self.error[..self.error_len as usize]).unwrap_or("?"))
    }

    pub fn set_error(&mut self, error: Option<&str>) {
        copy_into(&mut self.error, &mut self.error_len, error.unwrap_or(""));
    }

    pub fn cause(&self) -> &str {
        std::str::from_utf8(&self.cause[..self.cause_len as usize]).unwrap_or("?")
    }

    pub fn set_cause(&mut self, cause: &str) {
        copy_into(&mut self.cause, &mut self.cause_len, cause);
    }

    pub fn nodes(&self) -> &[NodeSlot] {
        &self.nodes[..(self.node_count as usize).min(MAX_NODES)]
    }

    pub fn self_membership(&self) -> Option<MemberRole> {
        decode_member_role(self.self_membership)
    }

    pub fn set_self_membership(&mut self, role: Option<MemberRole>) {
        self.self_membership = encode_member_role(role);
    }

    /// The role of `id` in the configuration in effect, as this server knows it.
    pub fn membership_of(&self, id: i32) -> Option<MemberRole> {
        self.nodes()
            .iter()
            .find(|n| n.id == id)
            .and_then(NodeSlot::membership)
    }

    pub fn change_address(&self) -> &str {
        std::str::from_utf8(&self.change_address[..self.change_address_len as usize]).unwrap_or("?")
    }

    pub fn set_change_address(&mut self, address: &str) {
        copy_into(
            &mut self.change_address,
            &mut self.change_address_len,
            address,
        );
    }
}

impl NodeSlot {
    pub fn new(id: u32, address: &str) -> NodeSlot {
        // SAFETY: as for `Published`.
        let mut slot: NodeSlot = unsafe { std::mem::zeroed() };
        slot.id = id as i32;
        copy_into(&mut slot.address, &mut slot.address_len, address);
        slot
    }

    pub fn address(&self) -> &str {
        std::str::from_utf8(&self.address[..self.address_len as usize]).unwrap_or("?")
    }

    pub fn membership(&self) -> Option<MemberRole> {
        decode_member_role(self.membership)
    }

    pub fn set_membership(&mut self, role: Option<MemberRole>) {
        self.membership = encode_member_role(role);
    }
}
