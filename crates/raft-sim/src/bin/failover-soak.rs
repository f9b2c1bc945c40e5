//! failover-soak: runs many simulated seeds of automatic failover (promotion, re-pointing,
//! rebuilding the former primary) under faults and prints the figures.
//!
//!   failover-soak [--seeds N] [--first S] [--threads T] [--nodes N] [--heartbeat MS]
//!                 [--election-timeout MS] [--fault-phase MS]
//!                 [--timelines-above-heard | --timelines-reserved [--fence-superseded]]
//!                 [--no-fence] [--promote-without-lease]
//!   failover-soak --seed S [--trace]   replay one seed exactly (with the same options)
//!
//! `--timelines-above-heard`: before promoting, the host writes the history files of every
//! timeline its core heard of, so that PostgreSQL picks a timeline past all of them;
//! `--timelines-reserved`: the leader first commits the timeline it will promote to in the Raft
//! log, one past any it knows of (see `TimelineRule`); `--fence-superseded`: a primary whose
//! Raft log reserves a newer timeline than its own acknowledges no commit;
//! `--no-fence` and `--promote-without-lease` break a host rule on purpose, to show that the
//! checks catch it.

use pg_leader_raft::Duration;
use pg_leader_raft_sim::failover::{run_failover_seed, FailoverOptions};
use pg_leader_raft_sim::failover_soak::run_failover_seeds;
use pg_leader_raft_sim::promotion::TimelineRule;
use pg_leader_raft_sim::soak::{exit_code, replayed};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = FailoverOptions::default();
    let (mut seeds, mut first, mut threads, mut single) = (100_000u64, 0u64, 2usize, None);
    let mut i = 0;
    while i < args.len() {
        let switched = match args[i].as_str() {
            "--trace" => {
                options.trace = true;
                true
            }
            "--timelines-above-heard" => {
                options.rules.timeline = TimelineRule::AboveHeard;
                true
            }
            "--timelines-reserved" => {
                options.rules.timeline = TimelineRule::Reserved;
                true
            }
            "--fence-superseded" => {
                options.rules.fence_superseded = true;
                true
            }
            "--no-fence" => {
                options.rules.fence = false;
                true
            }
            "--promote-without-lease" => {
                options.rules.promote_needs_lease = false;
                true
            }
            _ => false,
        };
        if switched {
            i += 1;
            continue;
        }
        let Some(value) = args.get(i + 1).and_then(|v| v.parse::<u64>().ok()) else {
            eprintln!(
                "failover-soak: unknown argument or missing number: {:?}",
                args[i]
            );
            return ExitCode::from(2);
        };
        match args[i].as_str() {
            "--seeds" => seeds = value,
            "--first" => first = value,
            "--threads" => threads = value as usize,
            "--nodes" => options.nodes = Some(value as usize),
            "--heartbeat" => options.heartbeat = Duration::from_millis(value),
            "--election-timeout" => options.election_timeout = Duration::from_millis(value),
            "--fault-phase" => options.max_fault_phase = value * 1000,
            "--seed" => single = Some(value),
            other => {
                eprintln!("failover-soak: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
        i += 2;
    }
    if let Some(seed) = single {
        return replayed(seed, run_failover_seed(seed, &options));
    }
    let started = std::time::Instant::now();
    let mut summary = run_failover_seeds(first, seeds, threads, &options);
    summary.print(started.elapsed().as_secs_f64());
    exit_code(summary.violations.len())
}
