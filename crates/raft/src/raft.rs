//! The node: state common to every role, the public entry points, the rules that run before any
//! role's own step function, and the `become_*` transitions that set role, step and tick together.

use crate::config::{Config, ConfigError};
use crate::log::RaftLog;
use crate::membership::{apply_change, ChangeError, MemberRole, Membership, MembershipChange};
use crate::message::{Body, EntryData, Message, WalPosition};
use crate::preference::{HeardPositions, NotPreferred};
use crate::progress::{LeaderState, Progress, Transfer, TransferPhase};
use crate::quorum::{majority, quorum_value};
use crate::ready::{Cause, Event, HardState, PersistedState, Ready, Role};
use crate::rng::RandomSource;
use crate::roles::{candidate, follower, leader};

/// The longest `Body::Advert` accepted: a libpq connection string, with room to spare.
pub const MAX_ADVERT_LEN: usize = 1024;
use crate::types::{Duration, Instant, LogIndex, NodeId, Term};
use crate::wal_sample::WalHistory;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// A role's reaction to a message that passed the common term and vote rules.
pub(crate) type StepFn = fn(&mut Raft, Message);
/// A role's reaction to time passing (`Raft::now` has already moved).
pub(crate) type TickFn = fn(&mut Raft);

pub struct Raft {
    pub(crate) config: Config,
    role: Role,
    step_role: StepFn,
    tick_role: TickFn,
    pub(crate) term: Term,
    pub(crate) voted_for: Option<NodeId>,
    pub(crate) leader_id: Option<NodeId>,
    pub(crate) log: RaftLog,
    /// The configuration in effect: the last one in the log, or the bootstrap one.
    pub(crate) membership: Membership,
    /// Index of the entry `membership` came from; 0 for the bootstrap configuration.
    pub(crate) membership_index: LogIndex,
    /// Whether this node was a voter in the configuration before `membership`.
    voter_before_latest: bool,
    pub(crate) rng: Box<dyn RandomSource>,
    /// The latest moment the node has been told about; never moves back.
    pub(crate) now: Instant,
    pub(crate) election_deadline: Instant,
    /// The end of the promises this node made (leader stickiness, the restart blackout): no vote
    /// for anyone else and no campaign before this moment, except for a handover.
    pub(crate) promised_until: Instant,
    /// The longest promise that may still run, as made durable (`HardState::longest_promise`).
    pub(crate) longest_promise: Duration,
    /// Set when this node refused a candidate whose log is behind its own, and no leader has
    /// been heard since: a voter that may not lead then campaigns as a caretaker (see
    /// `may_campaign`).
    pub(crate) refused_a_stale_candidate: bool,
    /// The last candidate this voter refused for the synchronous quorum (`synchronous`).
    pub(crate) quorum_refusal: Option<crate::synchronous::QuorumRefusal>,
    /// The host holds a joining member's promotion: the synchronous setting that covers it is
    /// not in effect yet (`synchronous`).
    pub(crate) voter_promotion_held: bool,
    /// When this node last heard from a leader of its term (or led, or started).
    pub(crate) leader_heard_at: Instant,
    /// This server's data position, told by the host (`set_wal_position`).
    pub(crate) wal: WalPosition,
    /// This server's recent positions, to judge candidates fairly (`wal_sample`).
    pub(crate) wal_history: WalHistory,
    /// What the other servers last said of their data (`preference`).
    pub(crate) heard: HeardPositions,
    /// The latest `Body::Advert` of each member.
    pub(crate) adverts: BTreeMap<NodeId, String>,
    /// The host asked its PostgreSQL, a standby, to promote (`promotion_asked`), and it is still
    /// in recovery: PostgreSQL finishes a promotion once asked, whatever happens to this node.
    pub(crate) promotion_asked: bool,
    /// This server's position when it last sent AppendEntries, with the send time.
    pub(crate) wal_sent: (Instant, WalPosition),
    /// When this node (re)started, and whether it still waits out its first election timeout
    /// since (`campaign_order`).
    pub(crate) started_at: Instant,
    pub(crate) first_wait: bool,
    pub(crate) last_leader_contact: Option<Instant>,
    /// Exists only while leading.
    pub(crate) leader: Option<LeaderState>,
    /// (Pre-)votes received in the current campaign.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) lease_deadline: Option<Instant>,
    /// The commit index of the last AppendEntries from the leader: a follower that has not
    /// applied up to it may lack a maintenance entry the cluster committed (`maintenance`).
    pub(crate) leader_commit_heard: LogIndex,
    /// This follower's place in its leader's succession order (`succession`).
    pub(crate) rank: Option<crate::succession::Rank>,
    /// The slow end of this server's durable writes, as its host reports them.
    pub(crate) fsync_slow: Duration,
    pub(crate) ready: Ready,
}

/// How far ahead of ours a message's term may be before it is taken as forged: 2^32 elections,
/// decades of continuous elections.
pub const MAX_TERM_JUMP: u64 = 1 << 32;

/// The longest vote promise a heartbeat may ask for: twice the largest election timeout the
/// settings allow (600 s).
pub const MAX_LEASE: Duration = Duration::from_millis(1_200_000);

/// Why `step` ignored a message before looking at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    NotForThisNode,
    UnknownSender,
    Malformed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotLeader {
    /// Who leads, when known.
    Leader(Option<NodeId>),
    /// A handover is in progress.
    Transferring,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    NotLeader(Option<NodeId>),
    UnknownTarget(NodeId),
    TargetIsLeader,
    AlreadyInProgress(NodeId),
    /// The target runs with `can_lead` off.
    TargetCannotLead(NodeId),
    /// This leader, a standby, is being promoted (`Raft::promotion_asked`) and the target is a
    /// standby: two promotions from one timeline could name their new timeline alike.
    PromotionUnderWay(NodeId),
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader(Some(l)) => {
                write!(f, "this node is not the leader; node {l} is")
            }
            TransferError::NotLeader(None) => {
                write!(f, "this node is not the leader and no leader is known")
            }
            TransferError::UnknownTarget(t) => write!(f, "node {t} is not a voter of this cluster"),
            TransferError::TargetIsLeader => write!(f, "the target already leads"),
            TransferError::AlreadyInProgress(t) => {
                write!(f, "a transfer to node {t} is already in progress")
            }
            TransferError::TargetCannotLead(t) => {
                write!(f, "node {t} runs with pg_leader.can_be_leader = off")
            }
            TransferError::PromotionUnderWay(t) => write!(
                f,
                "this standby is being promoted: no handover to node {t}, another standby, until it is a primary"
            ),
        }
    }
}

/// A consistent snapshot of the node, for readers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader_id: Option<NodeId>,
    pub voted_for: Option<NodeId>,
    pub commit_index: LogIndex,
    pub last_index: LogIndex,
    pub last_leader_contact: Option<Instant>,
    /// Set only on a leader whose lease is established; valid while the clock is before it.
    pub lease_deadline: Option<Instant>,
    /// On a primary that is not leading: why it is not the preferred leader (`preference`).
    pub not_preferred: Option<NotPreferred>,
    /// The last candidate this voter refused for the synchronous quorum in the last two
    /// election timeouts, and why (`synchronous`).
    pub quorum_refusal: Option<crate::synchronous::QuorumRefusal>,
}

impl Raft {
    /// Starts a node from what it had made durable (empty on first boot).
    ///
    /// Every start is a restart: the node may have promised a leader not to vote before it
    /// crashed, and has forgotten when. It therefore refuses votes, and does not campaign, for
    /// the longest promise it may have made (`HardState::longest_promise`), and at least one
    /// election timeout of its own.
    pub fn new(
        config: Config,
        persisted: PersistedState,
        rng: Box<dyn RandomSource>,
        now: Instant,
    ) -> Result<Raft, ConfigError> {
        config.validate()?;
        let mut raft = Raft {
            config,
            role: Role::Follower,
            step_role: follower::step,
            tick_role: follower::tick,
            term: persisted.hard_state.term,
            voted_for: persisted.hard_state.voted_for,
            leader_id: None,
            log: RaftLog::restore(persisted.entries),
            membership: Membership::default(),
            membership_index: LogIndex(0),
            voter_before_latest: false,
            rng,
            now,
            election_deadline: now,
            promised_until: now,
            longest_promise: persisted.hard_state.longest_promise,
            refused_a_stale_candidate: false,
            quorum_refusal: None,
            voter_promotion_held: false,
            leader_heard_at: now,
            wal: WalPosition::default(),
            wal_history: WalHistory::default(),
            heard: HeardPositions::default(),
            adverts: BTreeMap::new(),
            promotion_asked: false,
            wal_sent: (now, WalPosition::default()),
            started_at: now,
            first_wait: false,
            last_leader_contact: None,
            leader: None,
            votes: BTreeMap::new(),
            lease_deadline: None,
            leader_commit_heard: LogIndex(0),
            rank: None,
            fsync_slow: Duration::ZERO,
            ready: Ready::default(),
        };
        raft.promised_until = now + raft.config.election_timeout.max(raft.longest_promise);
        raft.refresh_membership();
        raft.become_follower(raft.term, None, Cause::Start);
        raft.first_wait = true;
        Ok(raft)
    }

    // ----- entry points -----

    /// A message arrived.
    pub fn step(&mut self, msg: Message, now: Instant) -> Result<(), Dropped> {
        self.advance_clock(now);
        self.check_envelope(&msg)?;
        if let Body::Advert { conninfo } = msg.body {
            // Not Raft: no term, no role, no answer. Bounded, as it comes from the network.
            if conninfo.len() > MAX_ADVERT_LEN {
                return Err(Dropped::Malformed);
            }
            self.adverts.insert(msg.from, conninfo);
            return Ok(());
        }
        // Advisory, and only about the current term: no term or role changes for them.
        match &msg.body {
            Body::Succession { order, step, lead } => {
                if order.len() > crate::succession::MAX_ORDER
                    || *step > MAX_LEASE
                    || *lead > MAX_LEASE
                {
                    return Err(Dropped::Malformed);
                }
                if msg.term == self.term && self.leader_id == Some(msg.from) {
                    self.hear_succession(msg.from, order, *step, *lead);
                }
                return Ok(());
            }
            Body::Priority { priority } => {
                if msg.term == self.term {
                    self.hear_priority(msg.from, *priority);
                }
                return Ok(());
            }
            _ => {}
        }
        match &msg.body {
            Body::RequestVote {
                wal,
                last_log_index,
                last_log_term,
                ..
            } => {
                self.hear_position(msg.from, *wal, None);
                self.defer_to_primary(wal, *last_log_index, *last_log_term);
            }
            Body::AppendEntries { wal, .. } => self.hear_position(msg.from, *wal, None),
            Body::AppendResponse { wal, sent_at, .. } => {
                self.hear_position(msg.from, *wal, Some(*sent_at))
            }
            _ => {}
        }
        match msg.term.cmp(&self.term) {
            Ordering::Greater => {
                if !self.accept_higher_term(&msg) {
                    return Ok(());
                }
            }
            Ordering::Less => {
                self.answer_stale(&msg);
                return Ok(());
            }
            Ordering::Equal => {}
        }
        if let Body::RequestVote { .. } = msg.body {
            self.decide_vote(&msg);
            return Ok(());
        }
        (self.step_role)(self, msg);
        Ok(())
    }

    /// Time passed; call at `next_deadline()` or later.
    pub fn tick(&mut self, now: Instant) {
        self.advance_clock(now);
        (self.tick_role)(self);
    }

    /// When `tick` must next be called.
    pub fn next_deadline(&self) -> Instant {
        match &self.leader {
            Some(l) => leader::next_deadline(l, self.now),
            None => self.election_deadline,
        }
    }

    /// Hands out what accumulated since the last call; see `Ready` for the order to handle it.
    pub fn take_ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    /// Starts an election now (tests, and an operator's nudge), unless this node must not: it
    /// leads, cannot lead, or still keeps a promise not to (a vote for itself is a vote).
    pub fn campaign(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.role != Role::Leader && self.may_start_election() {
            self.start_campaign(Cause::ElectionTimeout);
        }
    }

    /// Appends a command to the log, on the leader.
    pub fn propose(&mut self, command: Vec<u8>, now: Instant) -> Result<LogIndex, NotLeader> {
        self.advance_clock(now);
        match &self.leader {
            None => Err(NotLeader::Leader(self.leader_id)),
            Some(l) if l.transfer.is_some() => Err(NotLeader::Transferring),
            Some(_) => Ok(leader::append_and_replicate(
                self,
                EntryData::Command(command),
            )),
        }
    }

    /// Hands leadership to `target` (thesis §3.10): catch it up, give up the lease, TimeoutNow.
    pub fn transfer_leadership(
        &mut self,
        target: NodeId,
        now: Instant,
    ) -> Result<(), TransferError> {
        self.advance_clock(now);
        let Some(state) = &self.leader else {
            return Err(TransferError::NotLeader(self.leader_id));
        };
        if target == self.config.id {
            return Err(TransferError::TargetIsLeader);
        }
        if !self.membership.is_voter(target) {
            return Err(TransferError::UnknownTarget(target));
        }
        if let Some(t) = state.transfer {
            return Err(TransferError::AlreadyInProgress(t.target));
        }
        if state
            .progress
            .get(&target)
            .is_some_and(|p| p.can_lead == Some(false))
        {
            return Err(TransferError::TargetCannotLead(target));
        }
        if self.promotion_asked
            && self.wal.in_recovery
            && self.heard.get(target).is_none_or(|h| h.wal.in_recovery)
        {
            return Err(TransferError::PromotionUnderWay(target));
        }
        let deadline = self.now + self.config.election_timeout;
        let transfer = Transfer {
            target,
            deadline,
            phase: TransferPhase::CatchingUp,
            waits_for_wal: true,
            wal_floor: None,
            wal_floor_final: false,
        };
        self.leader.as_mut().expect("checked above").transfer = Some(transfer);
        leader::advance_transfer(self);
        Ok(())
    }

    /// Hands leadership to the voter that holds the most of the log (heard from most recently
    /// on a tie), skipping those that must never lead. Returns the target chosen.
    pub fn hand_over(&mut self, now: Instant) -> Result<NodeId, TransferError> {
        self.advance_clock(now);
        let target = self
            .best_transfer_target()
            .ok_or(TransferError::UnknownTarget(NodeId(0)))?;
        self.transfer_leadership(target, now)?;
        Ok(target)
    }

    /// The voter a handover would go to, on a leader: the one holding the most WAL of this
    /// database system (newest timeline, then position), then the most of the log, then the highest `pg_leader.priority`. The WAL
    /// comes first because the target's vote requests carry the transfer flag, which voters do
    /// not judge on WAL (`handle_request_vote`): a leader that hands over on its way out
    /// (`depart`) or on a planned stop would otherwise pick a standby that lags in replay as
    /// readily as the most caught-up one. Servers that told no position rank last; with
    /// `wal_aware` off nobody tells one, and the log alone decides as before.
    ///
    /// Only a voter heard from within the election timeout is a target, and one that said in
    /// this term that it may lead ranks before one that has not answered yet: a handover to a
    /// server that is down, or to one that may not lead, times out without a leader, and a
    /// leader that must hand over (one elected while its demotion was pending) started the same
    /// handover again at once, for ever, while a voter that could take over stood by.
    pub fn best_transfer_target(&self) -> Option<NodeId> {
        let state = self.leader.as_ref()?;
        let window = self.config.election_timeout;
        let wal_rank = |id: NodeId| {
            self.heard
                .get(id)
                .filter(|h| h.wal.system == self.wal.system)
                .map(|h| (h.wal.timeline, h.wal.lsn))
        };
        state
            .progress
            .iter()
            .filter(|(id, p)| {
                p.can_lead != Some(false)
                    && !p.departed
                    && self.now < p.last_heard + window
                    && self.membership.is_voter(**id)
            })
            .max_by_key(|(id, p)| {
                let said_it_may_lead = p.can_lead == Some(true);
                let priority = p.priority;
                (
                    said_it_may_lead,
                    wal_rank(**id),
                    p.matched,
                    priority,
                    p.last_heard,
                )
            })
            .map(|(id, _)| *id)
    }

    /// Starts a membership change on the leader (see `membership`): appends the next
    /// configuration and returns its index. Asking again for a change already made or under way
    /// is not an error, so a request that was passed on twice does no harm.
    pub fn propose_change(
        &mut self,
        change: &MembershipChange,
        now: Instant,
    ) -> Result<LogIndex, ChangeError> {
        self.advance_clock(now);
        let Some(state) = &self.leader else {
            return Err(ChangeError::NotLeader(self.leader_id));
        };
        if state.transfer.is_some() {
            return Err(ChangeError::Transferring);
        }
        if self.already_made(change) {
            return Ok(self.membership_index);
        }
        // A leader's log may end in a configuration an earlier leader never committed; only
        // after committing an entry of its own term is it sure which one the cluster has.
        if self.log.term_at(self.log.committed()) != Some(self.term) {
            return Err(ChangeError::NotReady);
        }
        if self.membership_index > self.log.committed() {
            let pending = self.membership.in_transition().map(|m| m.id);
            return Err(ChangeError::InProgress(pending));
        }
        let next = apply_change(&self.membership, change, self.config.id)?;
        Ok(leader::append_and_replicate(
            self,
            EntryData::Membership(next),
        ))
    }

    fn already_made(&self, change: &MembershipChange) -> bool {
        match change {
            MembershipChange::Add { id, address, voter } => {
                self.membership.get(*id).is_some_and(|m| {
                    m.address == *address
                        && match m.role {
                            MemberRole::Voter | MemberRole::Joining => *voter,
                            MemberRole::Learner => !*voter,
                            MemberRole::Leaving => false,
                        }
                })
            }
            MembershipChange::Remove { id } => {
                self.membership.role_of(*id) == Some(MemberRole::Leaving)
            }
        }
    }

    /// A follower passed on an operator's membership change: start it and answer. A request to
    /// remove this leader starts a handover first; the asker retries with the next leader.
    pub(crate) fn answer_change_request(&mut self, from: NodeId, change: MembershipChange) {
        let now = self.now;
        let outcome = match self.propose_change(&change, now) {
            Ok(_) => 0,
            Err(ChangeError::RemovingLeader) => {
                let _ = self.hand_over(now);
                ChangeError::RemovingLeader.code()
            }
            Err(e) => e.code(),
        };
        self.ready.events.push(Event::ChangeRequested {
            from,
            change,
            outcome,
        });
        self.send(from, self.term, Body::ChangeAnswer { outcome });
    }

    /// Changes the timings (a reload). Safe at any moment, on any subset of the servers: no lease
    /// arithmetic uses the local election timeout. A heartbeat asks for the sender's current
    /// timeout and its acknowledgement echoes the promise made, which is what the leader counts
    /// (so a longer timeout lengthens the lease only once acknowledgements carry it); a follower
    /// neither votes nor campaigns before the end of the promises it made, whatever its own
    /// timeout; and a restart waits for the longest promise made durable. The new timeout applies
    /// to this server's next promise requests, election timer draws and restart blackouts.
    pub fn set_timing(
        &mut self,
        heartbeat: Duration,
        election_timeout: Duration,
    ) -> Result<(), ConfigError> {
        let candidate = self.config.clone().with_timing(heartbeat, election_timeout);
        candidate.validate()?;
        self.config = candidate;
        if let Some(l) = &mut self.leader {
            l.next_heartbeat = l.next_heartbeat.min(self.now + heartbeat);
        } else {
            let redrawn = self.next_election_deadline();
            self.election_deadline = self.election_deadline.min(redrawn);
        }
        Ok(())
    }

    // ----- readers -----

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The configuration in effect and the index of the entry it came from (0: bootstrap).
    pub fn membership(&self) -> (&Membership, LogIndex) {
        (&self.membership, self.membership_index)
    }

    /// Queues a message the host composes (a request passed on to the leader, a refusal) in
    /// the next `Ready`, stamped with this node's id and term like every other.
    pub fn send_from_host(&mut self, to: NodeId, body: Body) {
        self.send(to, self.term, body);
    }

    /// Lets this voter lead or not (`Config::can_lead`); followers tell the leader with every
    /// answer. A leader told it may not asks no promise from then on (its lease lapses with the
    /// promises already made) and, unless the host hands over first, hands back as a caretaker
    /// does once a server that may lead holds its log.
    pub fn set_can_lead(&mut self, can_lead: bool) {
        self.config.can_lead = can_lead;
    }

    /// The host asked PostgreSQL to promote this standby. Until the position says it left
    /// recovery, this leader neither hands back to the old primary (it would hold a lease on
    /// the timeline the promotion supersedes) nor hands over to another standby (a second
    /// promotion from the same timeline).
    pub fn promotion_asked(&mut self) {
        self.promotion_asked = true;
    }

    /// Whether the host promotes a leader that is a standby (`Config::promotes`).
    pub fn set_promotes(&mut self, promotes: bool) {
        self.config.promotes = promotes;
    }

    /// What `member` last advertised of how its database is reached (`Body::Advert`).
    pub fn advert_of(&self, member: NodeId) -> Option<&str> {
        self.adverts.get(&member).map(String::as_str)
    }

    /// The data position `member` last told this server, and whether it is a standby.
    pub fn heard_position(&self, member: NodeId) -> Option<WalPosition> {
        self.heard.get(member).map(|h| h.wal)
    }

    /// True on a leader that has heard, since it was elected, from every other voter that has
    /// not announced its departure: by then a preferred primary among them has told it so, and
    /// the leader has handed over to it rather than be promoted (`preference`).
    pub fn heard_all_since_elected(&self) -> bool {
        let Some(state) = &self.leader else {
            return false;
        };
        state.progress.iter().all(|(id, p)| {
            *id == self.config.id
                || !self.membership.is_voter(*id)
                || p.departed
                || p.last_heard > state.since
        })
    }

    /// The target of this leader's handover, in any phase (TimeoutNow sent included).
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.leader
            .as_ref()
            .and_then(|l| l.transfer)
            .map(|t| t.target)
    }

    /// When this leader was elected.
    pub fn leader_since(&self) -> Option<Instant> {
        self.leader.as_ref().map(|l| l.since)
    }

    /// True on a leader whose handover has not sent TimeoutNow yet (it may be waiting for the
    /// target's log or, where the host promotes, its WAL).
    pub fn transfer_pending(&self) -> bool {
        self.leader
            .as_ref()
            .and_then(|l| l.transfer)
            .is_some_and(|t| t.phase != TransferPhase::Sent)
    }

    /// The moment the lease ends, on a leader that holds one.
    pub fn lease_deadline(&self) -> Option<Instant> {
        if self.role == Role::Leader {
            self.lease_deadline
        } else {
            None
        }
    }

    /// What `pg_leader_is_leader()` answers: leader, with a lease that holds at `now`.
    pub fn has_lease(&self, now: Instant) -> bool {
        self.lease_deadline().is_some_and(|d| now < d)
    }

    /// Tells the core how far this server's data goes; sent with vote requests and compared
    /// with candidates' (`Config::wal_aware`). The host updates it before each tick.
    pub fn set_wal_position(&mut self, wal: WalPosition) {
        let standing = |w: &WalPosition| (w.known(), w.in_recovery);
        let changed = standing(&wal) != standing(&self.wal);
        self.wal = wal;
        if let Some(t) = self.leader.as_mut().and_then(|l| l.transfer.as_mut()) {
            if let (Some(floor), false) = (t.wal_floor, t.wal_floor_final) {
                t.wal_floor = Some(floor.max(wal.lsn));
                t.wal_floor_final = true;
            }
        }
        if wal.known() && !wal.in_recovery {
            self.promotion_asked = false;
        }
        // Dated at the last call that brought the time: it may have changed any moment since.
        // Dated at the next one instead, a follower whose leader died (no call until its timer
        // or a candidate's request) would take a position it has held for a second as new, and
        // judge candidates against the one it had before (`wal_sample`).
        self.wal_history
            .observe(wal, self.now, self.config.heartbeat_interval);
        if changed {
            self.standing_changed();
        }
    }

    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.term,
            leader_id: self.leader_id,
            voted_for: self.voted_for,
            commit_index: self.log.committed(),
            last_index: self.log.last_index(),
            last_leader_contact: self.last_leader_contact,
            lease_deadline: self.lease_deadline(),
            not_preferred: self.not_preferred(),
            quorum_refusal: self.recent_quorum_refusal(),
        }
    }

    /// Progress of each follower as the leader sees it: (match index, last heard).
    pub fn follower_progress(&self, peer: NodeId) -> Option<(LogIndex, Instant)> {
        let p = self.leader.as_ref()?.progress.get(&peer)?;
        Some((p.matched, p.last_heard))
    }

    // ----- rules common to every role -----

    pub(crate) fn advance_clock(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // The host updates the position before each call: now it is known when it was seen.
        self.wal_history
            .observe(self.wal, self.now, self.config.heartbeat_interval);
    }

    fn check_envelope(&self, msg: &Message) -> Result<(), Dropped> {
        if msg.to != self.config.id {
            return Err(Dropped::NotForThisNode);
        }
        if msg.from == self.config.id {
            return Err(Dropped::UnknownSender);
        }
        // A server outside our configuration may be one added while we were away: our log lacks
        // the entry (thesis §4.1: servers answer without consulting their configuration). It is
        // heard as a leader of its term or a later one, and as a candidate once our log holds a
        // configuration (a lagging voter must still vote, or the servers that have the new
        // configuration may lack a majority). The usual rules then decide: a removed server's
        // log lacks its removal, so it gets no vote, and leader stickiness keeps it from
        // disrupting. Before any configuration is replicated, a stranger is not heard at all:
        // servers bootstrapped with other peer lists must not elect each other.
        if !self.membership.contains(msg.from) {
            let heard = match msg.body {
                Body::AppendEntries { .. } => {
                    msg.term > self.term
                        || (msg.term == self.term && self.leader_id.is_none_or(|l| l == msg.from))
                }
                Body::RequestVote { .. } => self.membership_index > LogIndex(0),
                _ => false,
            };
            if !heard {
                return Err(Dropped::UnknownSender);
            }
        }
        // PreVote keeps terms from running away while a node is cut off, so a term this far
        // ahead is forged or corrupt; taking it would end every election to come.
        if msg.term.0 > self.term.0.saturating_add(MAX_TERM_JUMP) {
            return Err(Dropped::Malformed);
        }
        if let Body::AppendEntries { lease, .. } = &msg.body {
            // A promise longer than any election timeout would stop this node voting for good.
            if *lease > MAX_LEASE {
                return Err(Dropped::Malformed);
            }
            // One leader per term (§5.2): a second one in the term we know a leader of is forged.
            if msg.term == self.term && self.leader_id.is_some_and(|l| l != msg.from) {
                return Err(Dropped::Malformed);
            }
        }
        if let Body::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            ..
        } = &msg.body
        {
            // Entries must follow `prev` one by one with terms that never go past the sender's;
            // anything else is forged or corrupt and could tear the log apart.
            let mut expected = prev_log_index.next();
            let mut last_term = *prev_log_term;
            for e in entries {
                if e.index != expected || e.term < last_term || e.term > msg.term {
                    return Err(Dropped::Malformed);
                }
                expected = expected.next();
                last_term = e.term;
            }
            if *prev_log_term > msg.term {
                return Err(Dropped::Malformed);
            }
            // Committed entries never change (Leader Completeness, §5.4): a message that would
            // replace one is not from a real leader.
            let committed = self.log.committed();
            let rewrites_committed = entries.iter().any(|e| {
                e.index <= committed && self.log.term_at(e.index).is_some_and(|t| t != e.term)
            });
            if rewrites_committed {
                return Err(Dropped::Malformed);
            }
        }
        Ok(())
    }

    /// §5.1: a later term makes us a follower of it. Returns false when the message is to be
    /// ignored altogether.
    fn accept_higher_term(&mut self, msg: &Message) -> bool {
        match &msg.body {
            Body::RequestVote { transfer, .. } if self.in_lease() && !transfer => {
                // Leader stickiness (thesis §4.2.3): a live leader exists, so a candidate with a
                // later term is a disruptive one; its term must not depose the leader.
                false
            }
            // PreVote changes no one's term: the asked term is only hypothetical.
            Body::RequestVote { pre_vote: true, .. } => true,
            Body::VoteResponse {
                pre_vote: true,
                granted: true,
            } => true,
            Body::AppendEntries { .. } | Body::TimeoutNow => {
                self.become_follower(msg.term, Some(msg.from), Cause::HigherTerm);
                true
            }
            _ => {
                self.become_follower(msg.term, None, Cause::HigherTerm);
                true
            }
        }
    }

    /// A message from an earlier term: tell its sender our term so a stale leader or candidate
    /// steps down, and otherwise ignore it.
    fn answer_stale(&mut self, msg: &Message) {
        let body = match &msg.body {
            Body::AppendEntries { sent_at, .. } => Body::AppendResponse {
                success: false,
                match_index: LogIndex(0),
                reject_hint: self.log.last_index(),
                sent_at: *sent_at,
                lease: Duration::ZERO,
                can_lead: self.config.can_lead,
                wal: self.wal,
            },
            Body::RequestVote { pre_vote, .. } => Body::VoteResponse {
                pre_vote: *pre_vote,
                granted: false,
            },
            _ => return,
        };
        self.send(msg.from, self.term, body);
    }

    /// True while this node must not vote for anyone else: it leads, or a promise it made (to a
    /// leader it heard, or the restart blackout) still runs.
    pub(crate) fn in_lease(&self) -> bool {
        self.role == Role::Leader || self.promised()
    }

    /// True while a promise this node made still runs: it must not vote for anyone else, nor
    /// campaign, which is voting for itself (design invariant 7).
    pub(crate) fn promised(&self) -> bool {
        self.now < self.promised_until
    }

    /// A follower accepted a heartbeat asking for `lease`: no vote for anyone else (itself
    /// included) for that long from now. A promise longer than any that may still run is made
    /// durable first (the Ready carries the hard state before the acknowledgement), so that a
    /// restart waits for it; once every longer one has ended, the durable length comes down to
    /// this one, so that one long timeout tried once does not lengthen every later restart.
    /// Heartbeats asking for the same promise write nothing.
    pub(crate) fn promise(&mut self, lease: Duration) {
        let longer_ones_ran_out = self.promised_until <= self.now + lease;
        self.promised_until = self.promised_until.max(self.now + lease);
        let durable_length_moves =
            lease > self.longest_promise || (lease < self.longest_promise && longer_ones_ran_out);
        if durable_length_moves {
            self.longest_promise = lease;
            self.persist_hard_state();
        }
    }

    /// The vote decision (§5.2, §5.4.1, thesis §9.6), the same for every role.
    fn decide_vote(&mut self, msg: &Message) {
        let Body::RequestVote {
            pre_vote,
            last_log_index,
            last_log_term,
            transfer,
            wal,
        } = msg.body
        else {
            return;
        };
        let sticky = self.in_lease() && !transfer;
        // The WAL decides only between candidates Raft finds equal (the same last log entry):
        // a voter ahead in WAL but behind in the log must still elect the candidate with the
        // newer log, or neither could win. A handover target, chosen by the leader or the
        // operator, is not judged on its WAL. Nor is any candidate by a voter that cannot lead
        // itself: it would refuse the only servers that can, for ever, while a majority is up
        // (design invariant 6); the preference only picks among servers that may lead.
        let same_log =
            last_log_index == self.log.last_index() && last_log_term == self.log.last_term();
        let behind = self.config.wal_aware
            && !transfer
            && same_log
            && self.may_lead()
            && crate::preference::refuses_for_wal(&wal, &self.wal_history.reference(&self.wal));
        let free_to_vote = self.voted_for == Some(msg.from)
            || (self.voted_for.is_none() && self.leader_id.is_none())
            || (pre_vote && msg.term > self.term);
        let log_ok = self.log.is_up_to_date(last_log_index, last_log_term);
        if !sticky && !log_ok && self.membership.is_voter(msg.from) {
            self.refused_a_stale_candidate = true;
        }
        // With the synchronous quorum, whatever the logs: the winner must hold every commit
        // acknowledged with the WAL this voter flushed (design invariant 9, `synchronous`).
        let lacks_acknowledged =
            self.config.synchronous_quorum && self.refuses_for_quorum(msg.from, &wal);
        let granted = !sticky && !behind && !lacks_acknowledged && free_to_vote && log_ok;
        if granted && !pre_vote {
            // Durable before the grant leaves: the Ready carries the hard state first.
            self.voted_for = Some(msg.from);
            self.persist_hard_state();
            self.reset_election_timer();
        }
        // A granted pre-vote echoes the asked term so that the asker can tell it from a stale one.
        let term = if granted { msg.term } else { self.term };
        self.send(msg.from, term, Body::VoteResponse { pre_vote, granted });
    }

    // ----- transitions: role, step and tick always change together -----

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>, cause: Cause) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state();
        }
        self.set_role(Role::Follower, follower::step, follower::tick);
        self.leader_id = leader;
        self.reset_election_timer();
        self.emit_role_change(cause);
    }

    pub(crate) fn become_pre_candidate(&mut self, cause: Cause) {
        assert_ne!(
            self.role,
            Role::Leader,
            "a leader cannot become a pre-candidate"
        );
        self.set_role(
            Role::PreCandidate,
            candidate::step_pre_candidate,
            candidate::tick,
        );
        self.leader_id = None;
        self.reset_election_timer();
        self.emit_role_change(cause);
        self.request_votes(true, false);
        candidate::count_votes(self);
    }

    pub(crate) fn become_candidate(&mut self, cause: Cause) {
        assert_ne!(
            self.role,
            Role::Leader,
            "a leader cannot become a candidate"
        );
        self.term = self.term.next();
        self.voted_for = Some(self.config.id);
        self.persist_hard_state();
        self.set_role(Role::Candidate, candidate::step_candidate, candidate::tick);
        self.leader_id = None;
        self.reset_election_timer();
        self.emit_role_change(cause);
        self.request_votes(false, cause == Cause::Transfer);
        candidate::count_votes(self);
    }

    pub(crate) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate can become leader"
        );
        let state = LeaderState::new(self.peers(), self.log.last_index(), self.now);
        self.set_role(Role::Leader, leader::step, leader::tick);
        self.leader = Some(state);
        self.refused_a_stale_candidate = false;
        self.leader_heard_at = self.now;
        self.leader_id = Some(self.config.id);
        self.emit_role_change(Cause::WonElection);
        // §5.4.2: an entry of the new term lets the leader commit what earlier terms left. The
        // first leader makes it the bootstrap configuration, so that servers added later learn
        // every member's address from the log; later leaders append a no-op.
        let first = if self.membership_index == LogIndex(0) {
            EntryData::Membership(self.membership.clone())
        } else {
            EntryData::Noop
        };
        leader::append_and_replicate(self, first);
        leader::broadcast(self);
    }

    fn set_role(&mut self, role: Role, step: StepFn, tick: TickFn) {
        self.role = role;
        self.step_role = step;
        self.tick_role = tick;
        self.votes.clear();
        self.leader = None;
        self.lease_deadline = None;
    }

    /// PreVote first when enabled, so that a node that was cut off cannot raise the term of a
    /// healthy cluster (thesis §9.6).
    pub(crate) fn start_campaign(&mut self, cause: Cause) {
        if self.config.pre_vote {
            self.become_pre_candidate(cause);
        } else {
            self.become_candidate(cause);
        }
    }

    fn request_votes(&mut self, pre_vote: bool, transfer: bool) {
        self.votes.insert(self.config.id, true);
        let term = if pre_vote {
            self.term.next()
        } else {
            self.term
        };
        let body = Body::RequestVote {
            pre_vote,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
            wal: self.wal,
        };
        self.send_to_other_voters(term, &body);
    }

    /// Sends `body` in `term` to every voter but this node.
    pub(crate) fn send_to_other_voters(&mut self, term: Term, body: &Body) {
        let voters: Vec<NodeId> = self
            .membership
            .voters()
            .filter(|v| *v != self.config.id)
            .collect();
        for voter in voters {
            self.send(voter, term, body.clone());
        }
    }

    // ----- helpers for the roles -----

    pub(crate) fn send(&mut self, to: NodeId, term: Term, body: Body) {
        self.ready.messages.push(Message {
            from: self.config.id,
            to,
            term,
            body,
        });
    }

    pub(crate) fn persist_hard_state(&mut self) {
        self.ready.hard_state = Some(HardState {
            term: self.term,
            voted_for: self.voted_for,
            longest_promise: self.longest_promise,
        });
    }

    pub(crate) fn collect_committed(&mut self) {
        let before = self.maintenance();
        let newly = self.log.take_committed();
        self.ready.committed.extend(newly);
        self.maintenance_applied(before);
    }

    /// A fresh election deadline: at least `T` from now and past every promise this node made
    /// (campaigning is voting for itself), plus a wait drawn from [0, T) at microsecond
    /// resolution (coarse draws cause split votes). With equal timings that is the usual [T, 2T)
    /// after the last heartbeat; with a leader on a longer timeout, the followers spread out over
    /// `T` after their promises end. Every deadline comes from here, and a promise only grows
    /// where the timer is reset (a heartbeat, a start), so no timeout fires while promised.
    fn next_election_deadline(&mut self) -> Instant {
        if let Some(ranked) = self.ranked_deadline() {
            return ranked;
        }
        if let Some(early) = self.early_campaign_deadline() {
            return early;
        }
        let t = self.config.election_timeout;
        let spread = Duration::from_micros(self.rng.uniform(0, t.as_micros()));
        (self.now + t).max(self.promised_until) + spread
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.first_wait = false;
        self.election_deadline = self.next_election_deadline();
    }

    pub(crate) fn majority(&self) -> usize {
        majority(self.membership.voter_count())
    }

    /// One value per voter of the configuration, for quorum arithmetic: `of` each voting
    /// follower's progress, and `own` when this leader is a voter itself (a leader that its
    /// latest configuration demotes does not count).
    pub(crate) fn per_voter<T>(
        &self,
        state: &LeaderState,
        of: impl Fn(&Progress) -> T,
        own: T,
    ) -> Vec<T> {
        let mut values: Vec<T> = state
            .progress
            .iter()
            .filter(|(id, _)| self.membership.is_voter(**id))
            .map(|(_, p)| of(p))
            .collect();
        if self.membership.is_voter(self.config.id) {
            values.push(own);
        }
        values
    }

    /// Every other member, voter or not: all of them get the log.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        self.membership
            .members()
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != self.config.id)
            .collect()
    }

    /// Only a voter that is allowed to lead takes a handover or has its WAL preferred. A server
    /// that its latest configuration demotes still counts until that configuration is committed
    /// (thesis §4.1): it may hold the newest log, which the others need until then.
    pub(crate) fn may_lead(&self) -> bool {
        self.config.can_lead && self.votes_or_may_hold_the_newest_log()
    }

    fn votes_or_may_hold_the_newest_log(&self) -> bool {
        let demoted_pending =
            self.voter_before_latest && self.membership_index > self.log.committed();
        self.membership.is_voter(self.config.id) || demoted_pending
    }

    /// Whether this node starts elections: a voter that may lead; or a voter that may not but
    /// refused a candidate for a log behind its own, or heard no leader for two of its election
    /// timeouts. Raft cannot elect a server that lacks committed entries (§5.4.1), and a server
    /// that misses the entry making it a voter does not campaign at all; when only servers that
    /// may not lead hold those entries, one of them must lead for a while to pass them on, or no
    /// one ever leads while a majority is up (design invariant 6). Such a caretaker holds no
    /// lease, asks no promise, and hands back as soon as a server that may lead holds its whole
    /// log (see `roles::leader`).
    pub(crate) fn may_campaign(&self) -> bool {
        let leaderless_for_long = self.now
            >= self.leader_heard_at + self.config.election_timeout + self.config.election_timeout;
        (self.config.can_lead || self.refused_a_stale_candidate || leaderless_for_long)
            && self.votes_or_may_hold_the_newest_log()
    }

    /// The promise this node asks its followers for when it leads: its election timeout, or
    /// none as a caretaker, which holds no lease to protect.
    pub(crate) fn promise_to_ask(&self) -> Duration {
        if self.config.can_lead {
            self.config.election_timeout
        } else {
            Duration::ZERO
        }
    }

    /// Whether this node may start an election on its own now: it may campaign, and no promise
    /// it made still runs. (TimeoutNow alone skips the promise: the leader it was made to gave up
    /// its lease first, and any earlier leader's lease ended before that one was elected.)
    pub(crate) fn may_start_election(&self) -> bool {
        self.may_campaign() && !self.promised()
    }

    /// Takes the last configuration in the log (the bootstrap one when there is none), and
    /// tells the host when it changed. Called whenever the log changed.
    pub(crate) fn refresh_membership(&mut self) {
        let mut configurations = self
            .log
            .entries()
            .iter()
            .rev()
            .filter_map(|e| match &e.data {
                EntryData::Membership(m) => Some((m, e.index)),
                _ => None,
            });
        let latest = configurations.next().map(|(m, i)| (m.clone(), i));
        let before = configurations
            .next()
            .map(|(m, _)| m.is_voter(self.config.id));
        let bootstrap_voter = self.config.voters.contains(&self.config.id);
        let (membership, index) =
            latest.unwrap_or_else(|| (self.config.bootstrap_membership(), LogIndex(0)));
        self.voter_before_latest = before.unwrap_or(bootstrap_voter);
        if (&membership, index) == (&self.membership, self.membership_index) {
            return;
        }
        self.membership = membership;
        self.membership_index = index;
        let last_index = self.log.last_index();
        let now = self.now;
        let peers = self.peers();
        if let Some(state) = self.leader.as_mut() {
            state.track_only(&peers, last_index, now);
        }
        self.ready.events.push(Event::MembershipChanged {
            membership: self.membership.clone(),
            index,
        });
    }

    /// The lease: the latest moment until which a majority of the voters (this node counting
    /// its own latest round) keep the promises their acknowledgements carried, each counted from
    /// the send time of the heartbeat it answers, less the drift margin for that promise. See
    /// `lease` for the model. Learners and servers joining or leaving do not count: they are not
    /// among the voters a new leader needs.
    pub(crate) fn refresh_lease(&mut self) {
        let Some(state) = &self.leader else { return };
        if state.lease_given_up() {
            self.lease_deadline = None;
            return;
        }
        // Its own acknowledgement stands for the promise it asks of the others: a caretaker
        // asks none and so never holds a lease.
        let own = state.last_broadcast + self.config.lease_for(self.promise_to_ask());
        let mut promised = self.per_voter(state, |p| p.promised_until, Some(own));
        self.lease_deadline = quorum_value(&mut promised).flatten();
    }

    fn emit_role_change(&mut self, cause: Cause) {
        let event = Event::RoleChanged {
            role: self.role,
            term: self.term,
            leader: self.leader_id,
            cause,
        };
        self.ready.events.push(event);
    }

    pub(crate) fn note_leader(&mut self, leader: NodeId) {
        if self.leader_id != Some(leader) {
            self.leader_id = Some(leader);
            self.ready.events.push(Event::LeaderChanged {
                term: self.term,
                leader,
            });
        }
    }
}
