"""Asking servers and agents: SQL over TCP, HTTP, and bounded waits."""

import json
import time
import urllib.error
import urllib.request

import psycopg2


def log(text):
    print(text, flush=True)


def sql(port, query, args=None, dbname="postgres", user="postgres", timeout=5):
    conn = psycopg2.connect(host="127.0.0.1", port=port, dbname=dbname, user=user, connect_timeout=2,
                            options=f"-c statement_timeout={timeout * 1000}")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def wait_until(what, seconds, check, step=0.2):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        time.sleep(step)
    raise RuntimeError(f"{what}: not within {seconds} s" + (f" (last error: {last})" if last else ""))


def replication_healthy(ports):
    """One primary and the two others streaming from it; returns the primary's port."""
    primaries = [p for p in ports if not sql(p, "SELECT pg_is_in_recovery()")[0][0]]
    if len(primaries) != 1:
        return None
    streaming = sql(primaries[0], "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")[0][0]
    return primaries[0] if streaming == len(ports) - 1 else None



def http_json(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read().decode())


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
