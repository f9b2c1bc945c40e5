//! Which faults a run injects (one knob each), and which of them a seed actually exercised, so
//! that a soak can say what share of its seeds reached each one.

/// The knobs. Every fault is on by default except the suspend that stops a `CLOCK_MONOTONIC`
/// lease clock: the product counts its lease on `CLOCK_BOOTTIME`, which runs through a suspend.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Heartbeat interval and election timeout differ per server from the start.
    pub mixed_timings: bool,
    /// `Raft::set_timing` on any subset of servers at any moment (a reload).
    pub timing_reloads: bool,
    /// Voters with `can_lead` off, from the start and toggled at random moments.
    pub voters_that_cannot_lead: bool,
    /// Clock rates change at random moments, within the allowed drift.
    pub clock_rate_changes: bool,
    /// A server's machine sleeps: its processes stop, packets to it are lost, and on wake it
    /// sees its clock jump (`CLOCK_BOOTTIME` runs on).
    pub suspends: bool,
    /// Suspends stop the lease clock instead, as `CLOCK_MONOTONIC` does. Off by default: it
    /// shows why the product does not count its lease on that clock.
    pub monotonic_suspend: bool,
    /// Some messages arrive more than an election timeout late.
    pub late_messages: bool,
    /// A crash loses the write that was not yet synced (the messages that waited on it never
    /// leave).
    pub lost_unsynced_writes: bool,
    /// A save fails: the server stops, as the extension's worker does, and is restarted.
    pub failed_saves: bool,
    /// fsync takes long: the server is blocked and its messages leave late.
    pub slow_fsync: bool,
    /// WAL positions advance and change timeline (a promotion), standbys follow.
    pub wal_moves: bool,
    /// Bursts of proposals on the leader, so logs grow.
    pub proposals: bool,
    /// `Raft::campaign()` called on a random server (an operator's nudge).
    pub campaign_nudges: bool,
    /// A server stops cleanly and records when its promises end; started again in the same
    /// boot it waits only for what is left (`EarlierPromises::EndAt`), after a reboot in full.
    pub clean_stops: bool,
    /// One seed in four runs adversarially: election timers draw their minimum half the time,
    /// network delays sit at the edges of their range, every clock at the edge of its drift.
    pub adversarial: bool,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            mixed_timings: true,
            timing_reloads: true,
            voters_that_cannot_lead: true,
            clock_rate_changes: true,
            suspends: true,
            monotonic_suspend: false,
            late_messages: true,
            lost_unsynced_writes: true,
            failed_saves: true,
            slow_fsync: true,
            wal_moves: true,
            proposals: true,
            campaign_nudges: true,
            clean_stops: true,
            adversarial: true,
        }
    }
}

impl Faults {
    /// Only the faults the simulator had before these knobs existed.
    pub fn none() -> Faults {
        Faults {
            mixed_timings: false,
            timing_reloads: false,
            voters_that_cannot_lead: false,
            clock_rate_changes: false,
            suspends: false,
            monotonic_suspend: false,
            late_messages: false,
            lost_unsynced_writes: false,
            failed_saves: false,
            slow_fsync: false,
            wal_moves: false,
            proposals: false,
            campaign_nudges: false,
            clean_stops: false,
            adversarial: false,
        }
    }
}

impl Faults {
    /// The knobs by name, for the command line.
    pub const NAMES: [&'static str; 15] = [
        "mixed-timings",
        "timing-reloads",
        "cannot-lead",
        "clock-rates",
        "suspends",
        "monotonic-suspend",
        "late-messages",
        "lost-writes",
        "failed-saves",
        "slow-fsync",
        "wal-moves",
        "proposals",
        "campaign-nudges",
        "clean-stops",
        "adversarial",
    ];

    /// Turns the knob `name` (one of `NAMES`) on or off; false when there is no such knob.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        let knob = match name {
            "mixed-timings" => &mut self.mixed_timings,
            "timing-reloads" => &mut self.timing_reloads,
            "cannot-lead" => &mut self.voters_that_cannot_lead,
            "clock-rates" => &mut self.clock_rate_changes,
            "suspends" => &mut self.suspends,
            "monotonic-suspend" => &mut self.monotonic_suspend,
            "late-messages" => &mut self.late_messages,
            "lost-writes" => &mut self.lost_unsynced_writes,
            "failed-saves" => &mut self.failed_saves,
            "slow-fsync" => &mut self.slow_fsync,
            "wal-moves" => &mut self.wal_moves,
            "proposals" => &mut self.proposals,
            "campaign-nudges" => &mut self.campaign_nudges,
            "clean-stops" => &mut self.clean_stops,
            "adversarial" => &mut self.adversarial,
            _ => return false,
        };
        *knob = on;
        true
    }
}

/// A fault that happened at least once in a seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exercised {
    MixedTimings,
    TimingReload,
    LeaderReloadThenCut,
    CannotLead,
    ClockRateChange,
    Suspend,
    LateMessage,
    LateVote,
    LateTimeoutNow,
    LateAcknowledgement,
    LostUnsyncedWrite,
    FailedSave,
    SlowFsync,
    WalAdvance,
    TimelineChange,
    ProposalBurst,
    CampaignNudge,
    CleanStop,
    Adversarial,
    /// Not a fault: a server that may not lead was elected (a caretaker) in the seed.
    CaretakerElected,
}

impl Exercised {
    pub const ALL: [Exercised; 20] = [
        Exercised::MixedTimings,
        Exercised::TimingReload,
        Exercised::LeaderReloadThenCut,
        Exercised::CannotLead,
        Exercised::ClockRateChange,
        Exercised::Suspend,
        Exercised::LateMessage,
        Exercised::LateVote,
        Exercised::LateTimeoutNow,
        Exercised::LateAcknowledgement,
        Exercised::LostUnsyncedWrite,
        Exercised::FailedSave,
        Exercised::SlowFsync,
        Exercised::WalAdvance,
        Exercised::TimelineChange,
        Exercised::ProposalBurst,
        Exercised::CampaignNudge,
        Exercised::CleanStop,
        Exercised::Adversarial,
        Exercised::CaretakerElected,
    ];

    /// A share of another fault (the kinds of late messages) or an outcome, reported for
    /// information.
    pub fn is_breakdown(self) -> bool {
        matches!(
            self,
            Exercised::LateVote
                | Exercised::LateTimeoutNow
                | Exercised::LateAcknowledgement
                | Exercised::CaretakerElected
        )
    }

    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    pub fn name(self) -> &'static str {
        match self {
            Exercised::MixedTimings => "mixed timings from the start",
            Exercised::TimingReload => "timing reloads",
            Exercised::LeaderReloadThenCut => "leader reloaded then cut off",
            Exercised::CannotLead => "voters with can_lead off",
            Exercised::ClockRateChange => "clock rate changes",
            Exercised::Suspend => "suspends (clock jumps on wake)",
            Exercised::LateMessage => "messages later than an election timeout",
            Exercised::LateVote => "  of which (pre-)vote grants",
            Exercised::LateTimeoutNow => "  of which TimeoutNow",
            Exercised::LateAcknowledgement => "  of which heartbeat acknowledgements",
            Exercised::LostUnsyncedWrite => "crash losing the unsynced write",
            Exercised::FailedSave => "failed saves (server stops)",
            Exercised::SlowFsync => "slow fsync",
            Exercised::WalAdvance => "WAL positions advancing",
            Exercised::TimelineChange => "timeline changes",
            Exercised::ProposalBurst => "proposal bursts on the leader",
            Exercised::CampaignNudge => "campaign() nudges",
            Exercised::CleanStop => "clean stops (restart waits only for the promise left)",
            Exercised::Adversarial => "adversarial timers and delays",
            Exercised::CaretakerElected => "(outcome) a server that may not lead elected caretaker",
        }
    }
}
