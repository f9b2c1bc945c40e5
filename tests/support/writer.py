#!/usr/bin/python3
"""A client as an application writes: one libpq multi-host connection string with
target_session_attrs=read-write, one INSERT of the next number per transaction, a reconnect
after any failure. Every attempt is recorded on CLOCK_BOOTTIME, the servers' clock, so that the
write downtime of a failover and the acknowledged writes can be read off afterwards.

  writer.py now
      the current CLOCK_BOOTTIME, in microseconds (to mark a fault)
  writer.py run CONNINFO STOP_FILE OUT.tsv [SECONDS]
      writes into acked(n) until STOP_FILE exists (or SECONDS, 600 by default); a line per
      attempt: n  sent_us  answered_us  outcome  port   (outcome: ok, an SQLSTATE, lost)
  writer.py downtime OUT.tsv FAULT_US OLD_PORT
      the write downtime of a failover, in milliseconds: from the last acknowledgement before
      the first one by another server than OLD_PORT after FAULT_US, to that one
  writer.py missing OUT.tsv PRESENT [AFTER [UP_TO]]
      the acknowledged numbers (above AFTER, up to UP_TO) absent from PRESENT (one number a
      line, as psql -At prints SELECT n FROM acked): prints the count and the first few; exits 1
      when any is missing
"""
import ctypes
import os
import sys
import time

from commit_probe import CONNECTION_OK, attempt, libpq, now_us


def run(conninfo, stop_file, out_path, seconds="600"):
    pq = libpq()
    pq.PQport.restype = ctypes.c_char_p
    pq.PQport.argtypes = [ctypes.c_void_p]
    conn, port = None, "-"
    end = time.monotonic() + float(seconds)
    n = 0
    with open(out_path, "w", buffering=1) as out:
        while time.monotonic() < end and not os.path.exists(stop_file):
            if conn is None:
                conn = pq.PQconnectdb(conninfo.encode())
                if pq.PQstatus(conn) != CONNECTION_OK:
                    pq.PQfinish(conn)
                    conn = None
                    time.sleep(0.005)
                    continue
                port = (pq.PQport(conn) or b"-").decode()
            n += 1
            sent, answered, outcome = attempt(pq, conn, b"INSERT INTO acked VALUES (%d)" % n)
            out.write(f"{n}\t{sent}\t{answered}\t{outcome}\t{port}\n")
            if outcome != "ok":
                # A refused or lost commit: the server may no longer be the primary.
                pq.PQfinish(conn)
                conn = None
                time.sleep(0.005)
            else:
                time.sleep(0.002)
    if conn is not None:
        pq.PQfinish(conn)


def records(path):
    for line in open(path):
        f = line.split()
        if len(f) == 5:
            yield int(f[0]), int(f[1]), int(f[2]), f[3], f[4]


def downtime(path, fault_us, old_port):
    """The write downtime of a failover: the first commit acknowledged by another server than
    the old primary after the fault, less the last acknowledgement before it (the old primary
    may still acknowledge for a moment after the fault, while its lease holds)."""
    fault_us, last_ok = int(fault_us), None
    for _, _, answered, outcome, port in records(path):
        if outcome != "ok":
            continue
        if answered > fault_us and port != old_port and last_ok is not None:
            print((answered - last_ok) // 1000)
            return 0
        last_ok = answered
    print("none")
    return 1


def missing(path, present_path, after="0", up_to=None):
    present = {int(l) for l in open(present_path) if l.strip()}
    top = int(up_to) if up_to else float("inf")
    acked = [
        n for n, _, _, outcome, _ in records(path) if outcome == "ok" and int(after) < n <= top
    ]
    lost = [n for n in acked if n not in present]
    print(f"acknowledged {len(acked)}, missing {len(lost)}" + (f": {lost[:10]}" if lost else ""))
    return 1 if lost else 0


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "now":
        print(now_us())
    elif command == "run":
        run(*args)
    elif command == "downtime":
        sys.exit(downtime(*args))
    else:
        sys.exit(missing(*args))
