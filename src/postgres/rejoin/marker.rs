//! The rejoin marker: one `key=value` line per fact, written by `start` (the plan) and then by
//! the script at every step (the whole file replaced by a rename, so it is never half written).
//! Pure: parsed and rendered here, read and written by the caller.

use std::fmt;

/// Where a rejoin stands. The order is the order of the steps in `rejoin.sh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Planned,
    Stopped,
    Saved,
    Checked,
    /// pg_rewind was started; if the script is gone and the marker still says so, it was
    /// interrupted and the data directory must be rebuilt.
    Rewinding,
    Rewound,
    Restored,
    Configured,
    Done,
    /// Nothing changed: the server runs as it did. `reason` says why.
    Refused,
    /// An operator must look; `reason` says why and what to do.
    Failed,
    /// A step this build does not know (a newer script): treated as in progress.
    Other(String),
}

impl Step {
    pub fn parse(text: &str) -> Step {
        match text {
            "planned" => Step::Planned,
            "stopped" => Step::Stopped,
            "saved" => Step::Saved,
            "checked" => Step::Checked,
            "rewinding" => Step::Rewinding,
            "rewound" => Step::Rewound,
            "restored" => Step::Restored,
            "configured" => Step::Configured,
            "done" => Step::Done,
            "refused" => Step::Refused,
            "failed" => Step::Failed,
            other => Step::Other(other.to_string()),
        }
    }

    /// Neither finished nor given up: a script is running, or was interrupted.
    pub fn in_progress(&self) -> bool {
        !matches!(self, Step::Done | Step::Refused | Step::Failed)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Step::Planned => "planned",
            Step::Stopped => "stopped",
            Step::Saved => "saved",
            Step::Checked => "checked",
            Step::Rewinding => "rewinding",
            Step::Rewound => "rewound",
            Step::Restored => "restored",
            Step::Configured => "configured",
            Step::Done => "done",
            Step::Refused => "refused",
            Step::Failed => "failed",
            Step::Other(s) => s,
        };
        f.write_str(text)
    }
}

/// What a marker file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub step: Step,
    /// The term in which the rejoin was planned; None when an operator ran the script by hand.
    pub term: Option<u64>,
    /// The leader it rejoins; None when an operator ran the script by hand.
    pub leader: Option<u32>,
    /// The leader's conninfo: the source of pg_rewind and of primary_conninfo.
    pub source: String,
    pub reason: Option<String>,
}

impl Marker {
    /// The marker of a new plan, as `start` writes it.
    pub fn planned(term: u64, leader: u32, source: &str, application_name: &str) -> String {
        format!(
            "term={term}\nleader={leader}\nsource={source}\napplication_name={application_name}\nstep=planned\n"
        )
    }

    /// None when the text has no step (not a marker, or an empty file).
    pub fn parse(text: &str) -> Option<Marker> {
        // The script appends a key it changes after removing its older line; should a line ever
        // appear twice, the last one is the newest, as for the script's own reader.
        let value = |key: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .next_back()
                .map(str::to_string)
        };
        let step = Step::parse(&value("step")?);
        Some(Marker {
            step,
            term: value("term").and_then(|v| v.parse().ok()),
            leader: value("leader").and_then(|v| v.parse().ok()),
            source: value("source").unwrap_or_default(),
            reason: value("reason").filter(|r| !r.is_empty()),
        })
    }

    /// Planned for this term and this leader.
    pub fn is_for(&self, term: u64, leader: u32) -> bool {
        self.term == Some(term) && self.leader == Some(leader)
    }
}

/// What the worker learns at its start from a marker left by an earlier run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejoinOutcome {
    /// The rejoin finished: this server is a standby of `leader` (planned in `term`). The
    /// marker has been removed.
    Done {
        term: Option<u64>,
        leader: Option<u32>,
    },
    /// pg_rewind would not rewind (for instance wal_log_hints off): the server was left as it
    /// was. The marker stays, so the same leader and term are not tried again automatically.
    Refused {
        term: Option<u64>,
        leader: Option<u32>,
        reason: String,
    },
    /// The rejoin failed in a way only an operator can repair (an interrupted pg_rewind). The
    /// marker stays until removed by hand; no rejoin starts meanwhile.
    Failed { reason: String },
    /// A script still holds the lock, or was interrupted at `step` (the next `start`, or the
    /// operator's rerun, finishes it).
    InProgress { step: Step, running: bool },
}

/// The outcome that a marker reports at the worker's start, and whether to remove the marker.
pub fn outcome(marker: &Marker, script_running: bool) -> (RejoinOutcome, bool) {
    let reason = || {
        marker
            .reason
            .clone()
            .unwrap_or_else(|| "no reason given".into())
    };
    match marker.step {
        Step::Done => (
            RejoinOutcome::Done {
                term: marker.term,
                leader: marker.leader,
            },
            true,
        ),
        Step::Refused => (
            RejoinOutcome::Refused {
                term: marker.term,
                leader: marker.leader,
                reason: reason(),
            },
            false,
        ),
        Step::Failed => (RejoinOutcome::Failed { reason: reason() }, false),
        ref step => (
            RejoinOutcome::InProgress {
                step: step.clone(),
                running: script_running,
            },
            false,
        ),
    }
}

/// Whether `start` may launch the script for (term, leader), given the marker found (under the
/// lock, so no script is running).
pub fn may_start(existing: Option<&Marker>, term: u64, leader: u32) -> Result<(), String> {
    let Some(m) = existing else { return Ok(()) };
    match m.step {
        Step::Refused if m.is_for(term, leader) => Err(format!(
            "the rejoin to node {leader} in term {term} was refused: {}",
            m.reason.as_deref().unwrap_or("no reason given")
        )),
        Step::Failed => Err(format!(
            "an earlier rejoin failed and needs an operator: {}",
            m.reason.as_deref().unwrap_or("no reason given")
        )),
        // Done or refused for another leader or term: a new plan. In progress with no script
        // holding the lock: the script resumes it (each step is recorded, none is redone).
        _ => Ok(()),
    }
}

/// Whether a new plan replaces `existing`, or the script resumes it: a run that stopped halfway
/// is finished from its recorded step (an interrupted rewind then fails, a server started again
/// before the rewind starts over), never restarted from scratch over its half-done work, which
/// would save a partly rewound data directory's files as this server's own.
pub fn needs_new_plan(existing: Option<&Marker>) -> bool {
    existing.is_none_or(|m| matches!(m.step, Step::Done | Step::Refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_done_rejoin_is_resumed_not_planned_again() {
        let at = |step: &str| {
            Marker::parse(&format!(
                "term=7\nleader=2\nsource=host=x dbname=postgres\nstep={step}\n"
            ))
            .unwrap()
        };
        assert!(needs_new_plan(None));
        assert!(needs_new_plan(Some(&at("done"))));
        assert!(needs_new_plan(Some(&at("refused"))));
        for step in [
            "planned",
            "stopped",
            "checked",
            "rewinding",
            "rewound",
            "configured",
        ] {
            assert!(!needs_new_plan(Some(&at(step))), "{step}");
        }
    }

    #[test]
    fn a_planned_marker_reads_back_as_written() {
        let text = Marker::planned(7, 2, "host=/tmp/x port=5433 dbname=postgres", "pg_leader_1");
        let m = Marker::parse(&text).unwrap();
        assert_eq!(m.step, Step::Planned);
        assert_eq!((m.term, m.leader), (Some(7), Some(2)));
        assert_eq!(m.source, "host=/tmp/x port=5433 dbname=postgres");
        assert!(m.is_for(7, 2) && !m.is_for(8, 2) && !m.is_for(7, 3));
    }

    #[test]
    fn the_last_line_of_a_key_wins_and_values_keep_their_equals_signs() {
        let m = Marker::parse(
            "term=3\nstep=planned\nsource=host=a port=1\nstep=refused\nreason=pg_rewind: x = y\n",
        )
        .unwrap();
        assert_eq!(m.step, Step::Refused);
        assert_eq!(m.source, "host=a port=1");
        assert_eq!(m.reason.as_deref(), Some("pg_rewind: x = y"));
        assert_eq!(m.leader, None);
    }

    #[test]
    fn a_file_without_a_step_is_no_marker() {
        assert_eq!(Marker::parse(""), None);
        assert_eq!(Marker::parse("term=3\nsteps=done\n"), None);
    }

    #[test]
    fn unknown_steps_count_as_in_progress() {
        let m = Marker::parse("step=verifying\n").unwrap();
        assert_eq!(m.step, Step::Other("verifying".into()));
        assert!(m.step.in_progress());
        assert_eq!(m.step.to_string(), "verifying");
    }

    #[test]
    fn every_step_reads_back_from_its_name() {
        for step in [
            Step::Planned,
            Step::Stopped,
            Step::Saved,
            Step::Checked,
            Step::Rewinding,
            Step::Rewound,
            Step::Restored,
            Step::Configured,
            Step::Done,
            Step::Refused,
            Step::Failed,
        ] {
            assert_eq!(Step::parse(&step.to_string()), step);
        }
    }

    #[test]
    fn done_is_reported_once_and_removed() {
        let m = Marker::parse("term=4\nleader=2\nstep=done\n").unwrap();
        assert_eq!(
            outcome(&m, false),
            (
                RejoinOutcome::Done {
                    term: Some(4),
                    leader: Some(2)
                },
                true
            )
        );
    }

    #[test]
    fn refused_and_failed_markers_stay() {
        let refused = Marker::parse("term=4\nleader=2\nstep=refused\nreason=wal_log_hints\n");
        let (o, remove) = outcome(&refused.unwrap(), false);
        assert!(!remove);
        assert!(
            matches!(o, RejoinOutcome::Refused { ref reason, .. } if reason == "wal_log_hints")
        );
        let failed = Marker::parse("step=failed\n").unwrap();
        assert_eq!(
            outcome(&failed, false),
            (
                RejoinOutcome::Failed {
                    reason: "no reason given".into()
                },
                false
            )
        );
    }

    #[test]
    fn an_interrupted_rejoin_is_reported_in_progress_and_kept() {
        let m = Marker::parse("step=rewound\n").unwrap();
        assert_eq!(
            outcome(&m, false),
            (
                RejoinOutcome::InProgress {
                    step: Step::Rewound,
                    running: false
                },
                false
            )
        );
    }

    #[test]
    fn a_refusal_blocks_only_the_same_term_and_leader() {
        let m = Marker::parse("term=4\nleader=2\nstep=refused\nreason=no hints\n").unwrap();
        assert!(may_start(Some(&m), 4, 2).unwrap_err().contains("no hints"));
        assert!(may_start(Some(&m), 5, 2).is_ok());
        assert!(may_start(Some(&m), 4, 3).is_ok());
    }

    #[test]
    fn a_failure_blocks_every_new_rejoin() {
        let m = Marker::parse("term=4\nleader=2\nstep=failed\nreason=interrupted\n").unwrap();
        assert!(may_start(Some(&m), 9, 3)
            .unwrap_err()
            .contains("needs an operator: interrupted"));
    }

    #[test]
    fn an_interrupted_or_finished_rejoin_or_none_lets_a_start_go_on() {
        assert!(may_start(None, 1, 2).is_ok());
        for step in ["planned", "rewound", "configured", "done"] {
            let m = Marker::parse(&format!("term=4\nleader=2\nstep={step}\n")).unwrap();
            assert!(may_start(Some(&m), 4, 2).is_ok(), "{step}");
        }
    }
}
