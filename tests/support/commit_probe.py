#!/usr/bin/python3
"""A client that commits in a loop and records every outcome on CLOCK_BOOTTIME, the clock the
servers' leases and role histories use, and the check of those records against a server's role
history. libpq through ctypes, so it needs nothing beyond the PostgreSQL client library.

  commit_probe.py run CONNINFO SECONDS OUT.tsv
      one INSERT per transaction (autocommit) into fence_probe, for SECONDS; a line per attempt:
      sent_us  answered_us  outcome   (outcome: ok, an SQLSTATE, or lost: the connection broke)
  commit_probe.py check OUT.tsv HISTORY [HISTORY.1]
      every ok must overlap one of the server's lease intervals: a commit sent after the lease
      ended and acknowledged is a violation. Prints the counts and exits 1 on a violation.
"""
import ctypes
import sys
import time

CONNECTION_OK = 0
PGRES_COMMAND_OK = 1
PG_DIAG_SQLSTATE = ord("C")


def now_us():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000


def libpq():
    pq = ctypes.CDLL("libpq.so.5")
    pq.PQconnectdb.restype = ctypes.c_void_p
    pq.PQconnectdb.argtypes = [ctypes.c_char_p]
    pq.PQstatus.argtypes = [ctypes.c_void_p]
    pq.PQfinish.argtypes = [ctypes.c_void_p]
    pq.PQexec.restype = ctypes.c_void_p
    pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    pq.PQresultStatus.argtypes = [ctypes.c_void_p]
    pq.PQresultErrorField.restype = ctypes.c_char_p
    pq.PQresultErrorField.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pq.PQclear.argtypes = [ctypes.c_void_p]
    return pq


def attempt(pq, conn, sql):
    """Runs one statement (its own transaction); returns when it was sent and answered, on
    CLOCK_BOOTTIME, and its outcome: ok, the SQLSTATE of its error, or lost."""
    sent = now_us()
    res = pq.PQexec(conn, sql)
    answered = now_us()
    if res and pq.PQresultStatus(res) == PGRES_COMMAND_OK:
        outcome = "ok"
    else:
        state = pq.PQresultErrorField(res, PG_DIAG_SQLSTATE) if res else None
        outcome = state.decode() if state else "lost"
    if res:
        pq.PQclear(res)
    return sent, answered, outcome


def run(conninfo, seconds, out_path):
    pq = libpq()
    conn = None
    end = time.monotonic() + float(seconds)
    with open(out_path, "w") as out:
        i = 0
        while time.monotonic() < end:
            if conn is None:
                conn = pq.PQconnectdb(conninfo.encode())
                if pq.PQstatus(conn) != CONNECTION_OK:
                    pq.PQfinish(conn)
                    conn = None
                    time.sleep(0.01)
                    continue
                # The fence is under test, not the read-only default of sessions that start on
                # a fenced server.
                pq.PQclear(pq.PQexec(conn, b"SET default_transaction_read_only = off"))
            i += 1
            sent, answered, outcome = attempt(pq, conn, b"INSERT INTO fence_probe VALUES (%d)" % i)
            if pq.PQstatus(conn) != CONNECTION_OK:
                pq.PQfinish(conn)
                conn = None
            out.write(f"{sent}\t{answered}\t{outcome}\n")
            if outcome != "ok":
                time.sleep(0.005)
    if conn is not None:
        pq.PQfinish(conn)


def leases(history_lines):
    """[from, until) of every lease the server held, on CLOCK_BOOTTIME microseconds: from the
    line that made it leader until its last lease deadline in that term, cut short by the next
    line that is not a leader line of that term (a step-down)."""
    out, current = [], None
    for line in history_lines:
        f = line.rstrip("\n").split("\t")
        if len(f) != 7:
            continue
        at, term, role, lease = int(f[0]), int(f[2]), f[3], int(f[5])
        if current and role == "leader" and term == current[2]:
            if lease:
                current[1] = max(current[1], lease)
            continue
        if current:
            out.append((current[0], min(current[1], at)))
            current = None
        if role == "leader":
            current = [at, lease, term]
    if current:
        out.append((current[0], current[1]))
    return out


def check(records_path, history_paths):
    lines = []
    for p in history_paths:
        try:
            lines += open(p).readlines()
        except FileNotFoundError:
            pass
    held = leases(sorted(lines, key=lambda l: int(l.split("\t")[0])))
    records = [l.split() for l in open(records_path)]
    counts, late, violations = {}, 0, []
    for sent, answered, outcome in records:
        sent, answered = int(sent), int(answered)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome != "ok":
            continue
        if not any(a < answered and sent < b for a, b in held):
            violations.append((sent, answered))
        if any(sent < b < answered for a, b in held):
            late += 1
    print("outcomes:", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(f"leases: {len(held)}; acknowledgements received after a lease ended but sent for "
          f"within it: {late}; acknowledged commits sent outside every lease: {len(violations)}")
    for sent, answered in violations[:5]:
        print(f"  violation: sent {sent} answered {answered}")
    return 1 if violations else 0


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(*sys.argv[2:5])
    else:
        sys.exit(check(sys.argv[2], sys.argv[3:]))
