//! raft-soak: runs many simulated seeds of the Raft core under faults and prints the figures.
//!
//!   raft-soak [--seeds N] [--first S] [--threads T] [--nodes N] [--heartbeat MS]
//!             [--election-timeout MS] [--fault-phase MS] [--max-drift PPM] [--margin-divisor D]
//!             [--monotonic-suspend] [--only-old-faults] [--with KNOB] [--without KNOB]
//!   raft-soak --seed S [--trace]      replay one seed exactly (with the same options)
//!
//! `--monotonic-suspend` models a lease clock that stops while the machine sleeps
//! (`CLOCK_MONOTONIC`); `--only-old-faults` turns off every fault of `Faults` (the simulator as
//! it was before them), `--with`/`--without` turn one on or off (see `Faults::NAMES`), in the
//! order given; `--max-drift 55000` lets clocks drift 5.5 %, past the 5.26 % the lease's drift
//! margin (P/10) covers; `--margin-divisor 11` shortens that margin to P/11.

use pg_leader_raft::Duration;
use pg_leader_raft_sim::faults::Faults;
use pg_leader_raft_sim::scenario::{run_seed, Options};
use pg_leader_raft_sim::soak::{exit_code, replayed, run_seeds};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = Options::default();
    let (mut seeds, mut first, mut threads, mut single) = (1_000_000u64, 0u64, 2usize, None);
    let mut i = 0;
    while i < args.len() {
        let value = |i: usize| -> u64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("raft-soak: {} needs a number", args[i]);
                    std::process::exit(2)
                })
        };
        match args[i].as_str() {
            "--seeds" => seeds = value(i),
            "--first" => first = value(i),
            "--threads" => threads = value(i) as usize,
            "--nodes" => options.nodes = Some(value(i) as usize),
            "--heartbeat" => options.heartbeat = Duration::from_millis(value(i)),
            "--election-timeout" => options.election_timeout = Duration::from_millis(value(i)),
            "--fault-phase" => options.max_fault_phase = value(i) * 1000,
            "--seed" => single = Some(value(i)),
            "--max-drift" => options.max_drift_ppm = value(i) as i64,
            "--margin-divisor" => options.margin_divisor = value(i),
            "--with" | "--without" => {
                let name = args.get(i + 1).map(String::as_str).unwrap_or("");
                if !options.faults.set(name, args[i] == "--with") {
                    eprintln!(
                        "raft-soak: no fault named {name:?}; one of {:?}",
                        Faults::NAMES
                    );
                    return ExitCode::from(2);
                }
            }
            "--trace" | "--monotonic-suspend" | "--only-old-faults" => {
                match args[i].as_str() {
                    "--trace" => options.trace = true,
                    "--monotonic-suspend" => options.faults.monotonic_suspend = true,
                    _ => options.faults = Faults::none(),
                }
                i += 1;
                continue;
            }
            other => {
                eprintln!("raft-soak: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
        i += 2;
    }
    if let Some(seed) = single {
        return replayed(seed, run_seed(seed, &options));
    }
    let started = std::time::Instant::now();
    let mut summary = run_seeds(first, seeds, threads, &options);
    summary.print(started.elapsed().as_secs_f64());
    exit_code(summary.violations.len())
}
