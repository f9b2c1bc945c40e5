"""Trials: a steady cluster, the client, the fault, the figures; and a series of them."""

import csv
import math
import os
import time

from .client import Writer, analyse, lost_rows
from .probes import log, wait_until

STEADY_ACKS = 100  # acknowledged commits on the primary before the fault (1 s at 10 ms)
AFTER_RESTORE_S = 2.0  # the client keeps writing this long after the first ack, to see flaps


def one_trial(system, fault, trial):
    # A cluster just repaired may still be settling (a standby re-pointed to the new primary).
    wait_until("a primary with two streaming standbys", 15, lambda: system.primary_port() is not None, step=0.2)
    primary_port = system.primary_port()
    node = system.node_of_port(primary_port)
    writer = Writer(system.dsn(), trial)
    writer.start()
    try:
        wait_until(f"{STEADY_ACKS} commits on the primary", 30,
                   lambda: sum(1 for e in writer.events if e[0] and e[4] == primary_port) >= STEADY_ACKS, step=0.05)
        t_kill = system.inflict(node, fault)
        deadline = t_kill + system.deadline_s
        while time.monotonic() < deadline:
            events = list(writer.events)
            errors = any(not e[0] for e in events if e[2] >= t_kill)
            if errors and analyse(events, t_kill)[0] is not None:
                break  # restored
            if not errors and time.monotonic() - t_kill > 10:
                break  # ten seconds without one error: the fault did not stop the writes
            time.sleep(0.02)
        end = min(time.monotonic() + AFTER_RESTORE_S, deadline + 0.001)
        while time.monotonic() < end:
            time.sleep(0.05)
    finally:
        if not writer.finish():
            log("  the client did not stop within 15 s")
    events = list(writer.events)
    down, port, fails, note = analyse(events, t_kill)
    acked = [e[3] for e in events if e[0]]
    lost = lost_rows(system, trial, acked) if down is not None else None
    return {
        "node": node,
        "ms": None if down is None else round(down * 1000, 1),
        "restored_port": port,
        "failed_attempts": fails,
        "acked": len(acked),
        "lost": None if lost is None else len(lost),
        "note": note,
        "build": system.build,
    }


# ---------------------------------------------------------------- the run


def percentile(sorted_values, p):
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(ms):
    s = sorted(ms)
    if not s:
        return "no trial restored writes"
    return (f"median {percentile(s, 50):.0f} ms, p90 {percentile(s, 90):.0f}, p99 {percentile(s, 99):.0f}, "
            f"max {s[-1]:.0f} (min {s[0]:.0f}) over {len(s)} trials")


def measure(system, fault, trials, minimum, budget_s, out, give_up):
    path = os.path.join(out, f"downtime-{system.name}-{fault}.csv")
    fields = ["system", "fault", "trial", "node", "ms", "restored_port", "failed_attempts", "acked", "lost", "note", "build"]
    started = time.monotonic()
    done, timeouts_in_a_row, results = 0, 0, []
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        previous = None
        # A trial that could not be run (no steady cluster) is not counted, within a bound.
        trial = 0
        while done < trials and trial < 2 * trials:
            trial += 1
            if done >= minimum and time.monotonic() - started > budget_s:
                log(f"  time budget of {budget_s:.0f} s spent after {done} trials")
                break
            try:
                system.ensure_healthy(*(previous or (None, None)))
                previous = None
                r = one_trial(system, fault, trial)
                previous = (r["node"], fault)
            except Exception as e:  # noqa: BLE001
                log(f"  trial {trial}: not run: {e}")
                previous = None
                system.destroy()
                r = None
            if r is None:
                timeouts_in_a_row += 1
            else:
                done += 1
                w.writerow({"system": system.name, "fault": fault, "trial": trial, **r})
                f.flush()
                if r["ms"] is None:
                    timeouts_in_a_row += 1
                else:
                    timeouts_in_a_row = 0
                    results.append(r["ms"])
                lost = "?" if r["lost"] is None else r["lost"]
                shown = "no write within %d s" % system.deadline_s if r["ms"] is None else f"{r['ms']:.0f} ms"
                log(f"  trial {trial}: {shown} (node {r['node']} killed; restored on port {r['restored_port']}, "
                    f"{r['failed_attempts']} failed attempts, {lost} of {r['acked']} acknowledged rows missing)"
                    + (f"; {r['note']}" if r["note"] else ""))
            if timeouts_in_a_row >= give_up:
                log(f"  {give_up} trials in a row without restored writes: giving up on {system.name} {fault}")
                break
    line = f"{system.name} {fault}: {summary(results)}"
    log(line)
    return line
