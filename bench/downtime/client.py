"""The client: one connection string for the whole cluster, a commit every 10 ms, retries
every 10 ms after any error; and what its record says about a fault."""

import threading
import time

import psycopg2

WRITE_INTERVAL_S = 0.010
RETRY_INTERVAL_S = 0.010


class Writer(threading.Thread):
    """One client: INSERT every 10 ms through the multi-host string; on any error, reconnect and
    retry every 10 ms. Each event: (ok, sent, done, seq, port-or-error)."""

    def __init__(self, dsn, trial):
        super().__init__(daemon=True)
        self.dsn, self.trial = dsn, trial
        self.events = []
        self.stopping = threading.Event()
        self.conn = None

    def run(self):
        seq = 0
        due = time.monotonic()
        while not self.stopping.is_set():
            if self.conn is None:
                t0 = time.monotonic()
                try:
                    conn = psycopg2.connect(self.dsn)
                    conn.autocommit = True
                    self.conn = conn
                except psycopg2.Error as e:
                    self.events.append((False, t0, time.monotonic(), None, first_line(e)))
                    time.sleep(RETRY_INTERVAL_S)
                    continue
            seq += 1
            t0 = time.monotonic()
            try:
                with self.conn.cursor() as cur:
                    cur.execute("INSERT INTO downtime_log (trial, seq) VALUES (%s, %s) RETURNING inet_server_port()",
                                (self.trial, seq))
                    port = cur.fetchone()[0]
                self.events.append((True, t0, time.monotonic(), seq, port))
            except psycopg2.Error as e:
                self.events.append((False, t0, time.monotonic(), seq, first_line(e)))
                try:
                    self.conn.close()
                except psycopg2.Error:
                    pass
                self.conn = None
                time.sleep(RETRY_INTERVAL_S)
                continue
            due += WRITE_INTERVAL_S
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                due = time.monotonic()
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass

    def finish(self):
        self.stopping.set()
        self.join(timeout=5)
        if self.is_alive() and self.conn is not None:
            try:
                self.conn.cancel()  # a commit hanging on a live server past the deadline
            except psycopg2.Error:
                pass
            self.join(timeout=10)
        return not self.is_alive()


def first_line(e):
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def analyse(events, t_kill):
    """(downtime s or None, restoring port, failed attempts, note)."""
    after = [e for e in events if e[2] >= t_kill]
    first_fail = next((i for i, e in enumerate(after) if not e[0]), None)
    if first_fail is None:
        oks = [t_kill] + [e[2] for e in after if e[0]]
        gap = max((b - a for a, b in zip(oks, oks[1:])), default=None)
        return gap, (after[-1][4] if after else None), 0, "no error seen: largest gap between acks"
    restore = next((e for e in after[first_fail:] if e[0]), None)
    fails = sum(1 for e in after if not e[0])
    if restore is None:
        last = next((e[4] for e in reversed(after) if not e[0]), "")
        return None, None, fails, f"no commit acknowledged before the deadline; last error: {last}"
    flaps = sum(1 for e in after if not e[0] and e[1] > restore[2])
    note = f"{flaps} failures after the restoring commit" if flaps else ""
    return restore[2] - t_kill, restore[4], fails, note


def lost_rows(system, trial, acked):
    """Acknowledged sequence numbers missing on the current primary (None if it cannot be asked)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = psycopg2.connect(system.dsn())
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT seq FROM downtime_log WHERE trial = %s", (trial,))
                    present = {r[0] for r in cur.fetchall()}
            finally:
                conn.close()
            return sorted(set(acked) - present)
        except psycopg2.Error:
            time.sleep(0.5)
    return None
