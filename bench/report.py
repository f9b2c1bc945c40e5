"""Writes report.md and failover.png from the files bench/run leaves in a results folder."""

import csv
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from downtime import report as downtime_report  # noqa: E402  (beside this file)

OUT = sys.argv[1]


def path(name):
    return os.path.join(OUT, name)


def rows(name):
    if not os.path.exists(path(name)):
        return None
    with open(path(name)) as f:
        return list(csv.DictReader(f))


def percentile(sorted_values, p):
    """Nearest rank, as the cluster tool prints it."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def trials(name):
    r = rows(name + ".csv")
    if not r:
        return None
    ms = sorted(float(x["ms"]) for x in r)
    more = sum(1 for x in r if int(x["rounds"]) > 1)
    return {
        "ms": ms,
        "n": len(ms),
        "min": ms[0],
        "median": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": ms[-1],
        "split": 100.0 * more / len(ms),
    }


def fmt_row(label, s, rounds=True):
    if s is None:
        return f"| {label} | not measured | | | | | | |"
    split = f"{s['split']:.1f} %" if rounds else "not counted"
    return (
        f"| {label} | {s['n']} | {s['min']:.0f} | {s['median']:.0f} | {s['p90']:.0f} | "
        f"{s['p99']:.0f} | {s['max']:.0f} | {split} |"
    )


def verdict(ok):
    return "met" if ok else "**missed**"


machine = open(path("machine.txt")).read().strip().splitlines()
etcd_version = open(path("etcd-version.txt")).read().strip()
lines = ["# pg_leader benchmark report", ""]
lines += [f"- {m}" for m in machine] + [f"- etcd: {etcd_version}", ""]

profiles = [("default", "heartbeat 100 ms, election timeout 1000 ms"), ("fast", "heartbeat 25 ms, election timeout 150 ms")]
lines += [
    "## Failover after the loss of the leader's host (every process SIGKILLed; 3 nodes)",
    "",
    "From the kill to a new leader agreed by every survivor: for pg_leader through SQL on open "
    "connections (`pg_leader_is_leader()`, `pg_leader_status()`), for etcd through each member's "
    "`/v3/maintenance/status`. Times in ms; the last column is the share of failovers that needed "
    "more than one election round (term advanced by more than one).",
    "",
    "| system, profile | trials | min | median | p90 | p99 | max | >1 round |",
    "|---|---|---|---|---|---|---|---|",
]
stats = {}
for prof, desc in profiles:
    stats[("ours", prof)] = trials(f"failover-{prof}")
    stats[("etcd", prof)] = trials(f"etcd-{prof}")
    lines.append(fmt_row(f"pg_leader, {prof} ({desc})", stats[("ours", prof)]))
    lines.append(fmt_row(f"etcd, {prof}", stats[("etcd", prof)]))
lines.append("")
targets = []
for prof, _ in profiles:
    ours, etcd = stats[("ours", prof)], stats[("etcd", prof)]
    if ours and etcd:
        lines.append(
            f"- {prof}: median ratio pg_leader/etcd {ours['median'] / etcd['median']:.2f}, "
            f"p90 ratio {ours['p90'] / etcd['p90']:.2f}, max ratio {ours['max'] / etcd['max']:.2f}"
        )
d, e, f = stats[("ours", "default")], stats[("etcd", "default")], stats[("ours", "fast")]
if d and e:
    targets.append(("default median no worse than etcd's", f"{d['median']:.0f} vs {e['median']:.0f} ms", d["median"] <= e["median"]))
    targets.append(("default p90 at most 0.8 of etcd's", f"{d['p90'] / e['p90']:.2f}", d["p90"] <= 0.8 * e["p90"]))
if d:
    targets.append(("split votes at most 5 %", f"{d['split']:.1f} %", d["split"] <= 5.0))
if f:
    targets.append(("fast median at most 250 ms", f"{f['median']:.0f} ms", f["median"] <= 250))

crash, drop = trials("failover-process-crash"), trials("failover-host-drop")
lines += [
    "",
    "## Process crash and host loss, apart (default profile)",
    "",
    "A process crash: the leader's postmaster SIGKILLed; its worker outlives it by a moment, takes "
    "the lease away from every session and hands over. A host loss: every process SIGKILLed at "
    "once (the first table), or every datagram dropped (nftables): nothing is left to speak, and the "
    "others wait out the promise.",
    "",
    "| fault | trials | min | median | p90 | p99 | max | >1 round |",
    "|---|---|---|---|---|---|---|---|",
    fmt_row("process crash: postmaster SIGKILL", crash),
    fmt_row("host loss: every process SIGKILLed", stats[("ours", "default")]),
    fmt_row("host loss: all datagrams dropped", drop),
]
lines += [""] + downtime_report.section(OUT)
if os.path.exists(path("downtime-error.txt")):
    lines += [open(path("downtime-error.txt")).read().strip(), ""]
if crash:
    targets.append(("process crash: new leader within 50 ms (median)", f"{crash['median']:.0f} ms", crash["median"] <= 50))

h = trials("handover")
lines += ["", "## Planned stop of the leader (`pg_ctl stop -m fast`)", "", "| | trials | min | median | p90 | p99 | max | >1 round |", "|---|---|---|---|---|---|---|---|", fmt_row("handover", h)]
if h:
    targets.append(("handover within 50 ms (median)", f"{h['median']:.0f} ms", h["median"] <= 50))

c = trials("cold-start")
lines += [
    "",
    "## Cold start (3 servers started at once, to an agreed leader)",
    "",
    "Includes PostgreSQL's own start and the one-election-timeout vote blackout every restarted node keeps (the restart rule that keeps a vote given just before a crash from being given twice). Rounds are not counted: stopping the servers hands leadership over, which moves the term too.",
    "",
    "| | trials | min | median | p90 | p99 | max | >1 round |",
    "|---|---|---|---|---|---|---|---|",
    fmt_row("cold start", c, rounds=False),
]

idle = rows("idle.csv")
lines += ["", "## Idle cost of each worker (default profile)", ""]
if idle:
    lines += [
        "| node | role | CPU (% of a core) | resident (KiB) | private (KiB) | datagrams in/s | out/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in idle:
        lines.append(f"| {r['node']} | {r['role']} | {float(r['cpu_percent']):.3f} | {r['rss_kib']} | {r['rss_anon_kib']} | {float(r['packets_in_per_s']):.1f} | {float(r['packets_out_per_s']):.1f} |")
    worst_cpu = max(float(r["cpu_percent"]) for r in idle)
    worst_rss = max(int(r["rss_kib"]) for r in idle)
    lines += ["", "Resident memory counts the pages of PostgreSQL's shared memory and binary the worker touched; private is the worker's own (RssAnon)."]
    targets.append(("idle CPU at most 0.5 % of a core", f"{worst_cpu:.3f} %", worst_cpu <= 0.5))
    targets.append(("idle memory at most 10 MiB per worker (resident)", f"{worst_rss / 1024:.1f} MiB", worst_rss <= 10 * 1024))

if os.path.exists(path("notify.txt")):
    summary = [l for l in open(path("notify.txt")) if l.startswith("notify over")]
    lines += ["", "## Telling the tools: NOTIFY pg_leader and GET /leader", "",
              "A standby leader is SIGKILLed (so that the primary, where notifications are delivered, survives); times from the kill to the new leader agreed through SQL, to the first notification naming it at a `LISTEN pg_leader` session on the primary, and to the first 200 from its `GET /leader`.", ""]
    lines += ["    " + l.strip() for l in summary]
pg = rows("pgbench.csv")
lines += ["", "## SQL cost (pgbench, 2 clients, prepared, alternated runs on one server)", ""]
if pg:
    by = {}
    for r in pg:
        by.setdefault(r["script"], []).append(float(r["tps"]))
    for k, v in by.items():
        lines.append(f"- `{ 'SELECT 1' if k == 'select_1' else 'SELECT pg_leader_is_leader()' }`: " + ", ".join(f"{x:.0f}" for x in v) + f" tps (mean {sum(v) / len(v):.0f})")
    ratio = (sum(by["is_leader"]) / len(by["is_leader"])) / (sum(by["select_1"]) / len(by["select_1"]))
    lines.append(f"- ratio: {ratio:.3f}")
    targets.append(("pg_leader_is_leader() at least 0.95 of SELECT 1", f"{ratio:.3f}", ratio >= 0.95))

soak = open(path("soak.txt")).read() if os.path.exists(path("soak.txt")) else ""
m = re.search(r"seeds per second\s+(\d+)", soak)
lines += ["", "## Simulator (release build, `raft-soak`)", "", "```", soak.strip(), "```"]
if m:
    lines.append(f"\nSeeds per second: {m.group(1)}.")

lines += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
lines += [f"| {t} | {v} | {verdict(ok)} |" for t, v, ok in targets]

fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, (prof, desc) in zip(axes, profiles):
    for who, color in (("ours", "tab:blue"), ("etcd", "tab:orange")):
        s = stats[(who, prof)]
        if s:
            y = [(i + 1) / s["n"] for i in range(s["n"])]
            ax.step(s["ms"], y, where="post", color=color, label=f"{'pg_leader' if who == 'ours' else 'etcd'} (median {s['median']:.0f} ms)")
    ax.set_title(f"{prof}: {desc}", fontsize=10)
    ax.set_xlabel("kill -> new leader agreed by the survivors (ms)")
    ax.set_ylabel("share of failovers")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
fig.suptitle("Failover time after the leader's host is lost, 3 nodes on loopback")
fig.tight_layout()
fig.savefig(path("failover.png"), dpi=110)
lines += ["", "![failover time distributions](failover.png)", ""]

with open(path("report.md"), "w") as out:
    out.write("\n".join(lines))
print("\n".join(lines))
