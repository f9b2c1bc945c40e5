"""The write-downtime section of the benchmark report, and its chart, from the CSVs that
bench/write_downtime.py leaves in a results folder.

    PYTHONPATH=bench /usr/bin/python3 -m downtime.report OUT    writes OUT/write-downtime.md, .png

bench/report.py includes the same section in report.md.
"""

import csv
import glob
import math
import os
import random
import sys

SYSTEMS = [("pg_leader", "pg_leader"), ("patroni", "Patroni + etcd"), ("pg_auto_failover", "pg_auto_failover")]
FAULTS = [
    ("postmaster-kill", "postmaster SIGKILLed (the agent survives)"),
    ("host-kill", "host lost: postmaster, children and agent SIGKILLed"),
]
CHART = "write-downtime.png"
TICKS_S = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]


def percentile(sorted_values, p):
    """Nearest rank, as the cluster tool prints it."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def load(out):
    """{(system, fault): [row, ...]} from every downtime-*.csv in `out`."""
    found = {}
    for path in sorted(glob.glob(os.path.join(out, "downtime-*-*.csv"))):
        with open(path) as f:
            for row in csv.DictReader(f):
                found.setdefault((row["system"], row["fault"]), []).append(row)
    return found


def stats(rows):
    ms = sorted(float(r["ms"]) for r in rows if r["ms"] not in ("", None))
    lost = [int(r["lost"]) for r in rows if r["lost"] not in ("", None)]
    s = {
        "rows": len(rows),
        "ms": ms,
        "restored": len(ms),
        "unrestored": len(rows) - len(ms),
        "lost_rows": sum(lost),
        "lossy_trials": sum(1 for x in lost if x > 0),
        "acked": sum(int(r["acked"]) for r in rows),
        "flaps": sum(1 for r in rows if "failures after" in (r.get("note") or "")),
        # Every system's node i listens on a port ending in i (58001, 58011, 58101, ...).
        "elsewhere": sum(1 for r in rows if r["restored_port"] and int(r["restored_port"]) % 10 != int(r["node"])),
    }
    if ms:
        s.update(median=percentile(ms, 50), p90=percentile(ms, 90), p99=percentile(ms, 99), min=ms[0], max=ms[-1])
    return s


def seconds(ms):
    return f"{ms / 1000:.2f}"


def section(out):
    """Markdown lines of the section; draws the chart when there is anything to draw."""
    data = load(out)
    lines = [
        "## Write downtime: SIGKILL of the primary to the first commit acknowledged again",
        "",
        "One client (bench/write_downtime.py) commits an INSERT every 10 ms through one libpq "
        "multi-host connection string (`host=127.0.0.1,127.0.0.1,127.0.0.1 port=p1,p2,p3 "
        "target_session_attrs=read-write connect_timeout=1`), and on any error reconnects and "
        "retries every 10 ms. Each trial starts on a steady 3-server cluster (the killed server is "
        "brought back and must stream again, or the cluster is rebuilt) after 100 commits on the "
        "primary; the time runs from the SIGKILL to the first commit acknowledged after the "
        "client's first error. Seconds. `lost` counts the acknowledged rows missing on the primary "
        "afterwards (reported, not judged: asynchronous replication may lose them).",
        "",
    ]
    versions = os.path.join(out, "downtime-versions.txt")
    if os.path.exists(versions):
        seen = dict.fromkeys(v.strip() for v in open(versions) if v.strip())
        lines += [f"- {v}" for v in seen] + [""]
    if not data:
        return lines + ["Not measured (no downtime-*.csv in this folder).", ""]
    lines += [
        "| fault | system | trials | restored (on another server) | min | median | p90 | p99 | max | lost rows (trials) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_stats = {}
    for fault, _ in FAULTS:
        for system, label in SYSTEMS:
            rows = data.get((system, fault))
            if not rows:
                lines.append(f"| {fault} | {label} | not measured | | | | | | | |")
                continue
            s = all_stats[(system, fault)] = stats(rows)
            if s["restored"]:
                figures = " | ".join(seconds(s[k]) for k in ("min", "median", "p90", "p99", "max"))
            else:
                figures = " | ".join(["-"] * 5)
            lines.append(
                f"| {fault} | {label} | {s['rows']} | {s['restored']} ({s['elsewhere']}) | {figures} | "
                f"{s['lost_rows']} of {s['acked']} ({s['lossy_trials']}) |"
            )
    lines.append("")
    for fault, _ in FAULTS:
        ours = all_stats.get(("pg_leader", fault))
        for system, label in SYSTEMS[1:]:
            other = all_stats.get((system, fault))
            if ours and other and ours["restored"] and other["restored"]:
                lines.append(
                    f"- {fault}: {label} median / pg_leader median = "
                    f"{other['median'] / ours['median']:.1f} ({seconds(other['median'])} s / {seconds(ours['median'])} s)"
                )
    unrestored = [(k, s["unrestored"]) for k, s in all_stats.items() if s["unrestored"]]
    for (system, fault), n in unrestored:
        lines.append(f"- {system}, {fault}: {n} trials without any commit before the deadline (left out of the figures)")
    for (system, fault), rows in sorted(data.items()):
        builds = {}
        for r in rows:
            if r.get("build"):
                builds[r["build"]] = builds.get(r["build"], 0) + 1
        if len(builds) > 1:
            mixed = ", ".join(f"{b}: {n} trials" for b, n in builds.items())
            lines.append(f"- {system}, {fault}: **the extension was reinstalled during the run** ({mixed})")
        elif builds:
            lines.append(f"- {system}, {fault}: every trial on extension build {next(iter(builds))} (SHA-256 prefix)")
    flapping = [(k, s["flaps"]) for k, s in all_stats.items() if s["flaps"]]
    for (system, fault), n in flapping:
        lines.append(f"- {system}, {fault}: in {n} trials the client saw errors again after the first restored commit")
    if draw(all_stats, os.path.join(out, CHART)):
        lines += ["", f"![write downtime per system and fault]({CHART})"]
    return lines + [""]


def draw(all_stats, path):
    measured = [(f, d) for f, d in FAULTS if any(all_stats.get((s, f), {}).get("restored") for s, _ in SYSTEMS)]
    if not measured:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jitter = random.Random(7)
    fig, axes = plt.subplots(1, len(measured), figsize=(5.5 * len(measured), 4.4), squeeze=False, sharey=True)
    for ax, (fault, desc) in zip(axes[0], measured):
        labels, series = [], []
        for system, label in SYSTEMS:
            s = all_stats.get((system, fault))
            labels.append(label)
            series.append([x / 1000 for x in s["ms"]] if s else [])
        present = [i for i, v in enumerate(series) if v]
        ax.boxplot([series[i] for i in present], positions=[i + 1 for i in present], widths=0.5,
                   showfliers=False, medianprops={"color": "black"})
        for i in present:
            xs = [i + 1 + jitter.uniform(-0.18, 0.18) for _ in series[i]]
            ax.scatter(xs, series[i], s=12, alpha=0.6, color=f"C{i}", zorder=3)
            med = percentile(sorted(series[i]), 50)
            ax.annotate(f"{med:.2f} s", (i + 1.28, med), fontsize=8, va="center")
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels([f"{l}\n(n={len(series[i])})" for i, l in enumerate(labels)], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(0.05, 150)
        ax.set_yticks(TICKS_S)
        ax.set_yticklabels([f"{t:g}" for t in TICKS_S])
        ax.minorticks_off()
        ax.set_ylabel("kill -> first acknowledged commit (s, log scale)")
        ax.set_title(f"{fault}: {desc}", fontsize=9)
        ax.grid(alpha=0.3, axis="y", which="both")
    fig.suptitle("Write downtime through a libpq multi-host client, 3 servers on loopback")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    target = sys.argv[1]
    text = "\n".join(section(target))
    with open(os.path.join(target, "write-downtime.md"), "w") as f:
        f.write(text)
    print(text)
