#!/usr/bin/python3
"""Write downtime of pg_leader, Patroni and pg_auto_failover, measured by one harness.

Each trial: a steady 3-server cluster, a client committing one INSERT every 10 ms through one
libpq multi-host connection string (`target_session_attrs=read-write connect_timeout=1`), then
a SIGKILL of the primary, and the time from the kill to the first commit acknowledged again
(retries every 10 ms, bounded by a per-trial deadline). Afterwards the rows the client saw
acknowledged are looked up on the new primary: missing ones are reported, not judged
(asynchronous replication may lose them).

Faults: `postmaster-kill` (the primary's postmaster alone) and `host-kill` (every process of the
primary's "host" at once: its postmaster, its children and the HA agent that runs it, all
stopped with SIGSTOP first so that none sees another die, then SIGKILLed).

Runs as root (servers and agents run as `postgres`), with /usr/bin/python3 and Debian's
python3-psycopg2; bench/write_downtime.sh installs what it needs. Ports: PostgreSQL
58001-58003 (pg_leader), 58011-58013 (Patroni), 58100-58103 (pg_auto_failover: the monitor and
its nodes); Raft 9001-9003; etcd 58379/58380; Patroni REST 58008-58010. Folders /tmp/downtime-*.
"""


import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys

from downtime.probes import log
from downtime.processes import PID_RECORD, alive, descendants, kill_leftover_postmasters, send
from downtime.systems.auto_failover import AutoFailover
from downtime.systems.patroni import Patroni
from downtime.systems.pg_leader import PgLeader
from downtime.trials import measure


def sweep(tool):
    """Stops what an interrupted run left, as its record says: the programs it started (still
    ours if their command line names a /tmp/downtime- folder) and the servers in the folders it
    created. Nothing else: another run may be using the other folders."""
    try:
        with open(PID_RECORD) as f:
            lines = [line.split() for line in f if line.strip()]
    except OSError:
        lines = []
    for kind, value in (line for line in lines if len(line) == 2):
        if kind != "pid" or not value.isdigit():
            continue
        pid = int(value)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = b"/tmp/downtime-" in f.read()
        except OSError:
            continue
        if ours and alive(pid):
            tree = [pid] + descendants(pid)
            send(tree, signal.SIGKILL)
            log(f"sweep: stopped {len(tree)} processes left by the harness (pid {pid})")
    folders = dict.fromkeys(v for k, v in (line for line in lines if len(line) == 2)
                            if k == "dir" and v.startswith("/tmp/downtime-"))
    for folder in folders:
        if os.path.exists(os.path.join(folder, "cluster.conf")) and os.path.exists(tool):
            subprocess.run([tool, "--dir", folder, "down"], capture_output=True, timeout=120)
        kill_leftover_postmasters(sorted(os.path.dirname(p) for p in glob.glob(f"{folder}/*/postmaster.pid")))
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.remove(PID_RECORD)
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out")
    ap.add_argument("--sweep", action="store_true", help="stop what an interrupted run left, and exit")
    ap.add_argument("--quick", action="store_true", help="2 trials of each, to check the harness")
    ap.add_argument("--systems", default="pg_leader,patroni,pg_auto_failover")
    ap.add_argument("--faults", default="postmaster-kill,host-kill")
    ap.add_argument("--trials", type=int, default=30, help="pg_leader trials per fault (30)")
    ap.add_argument("--ref-trials", type=int, default=10, help="most trials per fault for the references (10)")
    ap.add_argument("--ref-min", type=int, default=5, help="fewest trials per fault for the references (5)")
    ap.add_argument("--ref-minutes", type=float, default=8, help="time budget per reference and fault (8 min)")
    ap.add_argument("--tool", default="target/release/pg_leader-cluster")
    ap.add_argument("--patroni", default="/opt/downtime/patroni-venv/bin/patroni")
    ap.add_argument("--pg-leader-set", action="append", default=[], help="a postgresql.conf line for pg_leader")
    a = ap.parse_args()
    if a.sweep:
        sweep(os.path.abspath(a.tool))
        return
    if not a.out:
        ap.error("--out is required")
    os.makedirs(a.out, exist_ok=True)
    if a.quick:
        a.trials, a.ref_trials, a.ref_min = 2, 2, 2
    makers = {
        "pg_leader": lambda: PgLeader(os.path.abspath(a.tool), a.pg_leader_set),
        "patroni": lambda: Patroni(a.patroni),
        "pg_auto_failover": lambda: AutoFailover(),
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lines, versions = [], []
    for name in a.systems.split(","):
        system = makers[name]()
        system.evidence_dir = a.out
        load_before = os.getloadavg()[0]
        try:
            system.ensure_healthy()
            versions.append(system.versions())
            for fault in a.faults.split(","):
                log(f"\n== write downtime: {name}, {fault}")
                if name == "pg_leader":
                    trials, minimum, budget = a.trials, a.trials, float("inf")
                else:
                    trials, minimum, budget = a.ref_trials, a.ref_min, a.ref_minutes * 60
                lines.append(measure(system, fault, trials, minimum, budget, a.out, give_up=2 if a.quick else 3))
        except Exception as e:  # noqa: BLE001
            lines.append(f"{name}: not measured: {e}")
            log(lines[-1])
        finally:
            system.destroy()
        # The machine is shared: say how busy it was.
        versions.append(f"{name}: machine load average {load_before:.1f} at the start, "
                        f"{os.getloadavg()[0]:.1f} at the end ({os.cpu_count()} cores)")
    with open(os.path.join(a.out, "downtime-summary.txt"), "a") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "downtime-versions.txt"), "a") as f:
        f.write("\n".join(versions) + "\n")
    log("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
