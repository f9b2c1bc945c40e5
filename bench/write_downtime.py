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
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import psycopg2

PGBIN = "/usr/lib/postgresql/15/bin"
WRITE_INTERVAL_S = 0.010
RETRY_INTERVAL_S = 0.010
STEADY_ACKS = 100  # acknowledged commits on the primary before the fault (1 s at 10 ms)
AFTER_RESTORE_S = 2.0
PID_RECORD = os.environ.get("DOWNTIME_PID_RECORD", "/tmp/downtime-pids")  # the client keeps writing this long after the first ack, to see flaps


def log(text):
    print(text, flush=True)


# ---------------------------------------------------------------- processes


def parent_map():
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            parents[int(name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return parents


def descendants(root):
    """The processes below `root` (not `root` itself), from /proc."""
    parents = parent_map()
    found, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        frontier += kids
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def postmaster_pid(data_dir):
    """The postmaster of `data_dir`, checked by its working directory (PostgreSQL chdirs there)."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pid = int(f.readline().strip())
        if os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(data_dir) and alive(pid):
            return pid
    except (OSError, ValueError):
        pass
    return None


def send(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


def as_postgres(argv, env=None):
    pre = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    envs = ["env"] + [f"{k}={v}" for k, v in (env or {}).items()] if env else []
    return pre + envs + argv


def run(argv, timeout, what, env=None):
    out = subprocess.run(
        as_postgres(argv, env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}): {out.stderr.strip()[-800:]} {out.stdout.strip()[-400:]}")
    return out.stdout


def make_dir_for_postgres(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


class Spawned:
    """Long-running programs this harness started (recorded by PID), stopped by PID at the end."""

    def __init__(self):
        self.procs = {}  # key -> Popen

    def start(self, key, argv, log_path, env=None):
        logf = open(log_path, "ab")
        p = subprocess.Popen(
            as_postgres(argv, env), stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logf.close()
        self.procs[key] = p
        # For the wrapper's trap, should this process die before its own cleanup.
        with open(PID_RECORD, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def tree(self, key):
        p = self.procs.get(key)
        if p is None or p.poll() is not None:
            return []
        return [p.pid] + descendants(p.pid)

    def stop(self, key, grace):
        """SIGTERM to the program (below runuser), a bounded wait, then SIGKILL to its tree."""
        p = self.procs.pop(key, None)
        if p is None:
            return
        if p.poll() is None:
            tree = [p.pid] + descendants(p.pid)
            send(tree[1:] or tree, signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            tree = [x for x in tree + descendants(p.pid) if alive(x)]
            send(tree, signal.SIGKILL)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def forget(self, key):
        p = self.procs.pop(key, None)
        if p is not None:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


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


# ---------------------------------------------------------------- the three systems


class System:
    name = ""
    ports = []
    deadline_s = 120

    def __init__(self, work):
        self.work = work
        self.spawned = Spawned()

    def dsn(self):
        return (
            f"host={','.join('127.0.0.1' for _ in self.ports)} port={','.join(map(str, self.ports))} "
            "dbname=postgres user=postgres target_session_attrs=read-write connect_timeout=1 "
            "application_name=downtime_writer"
        )

    def node_of_port(self, port):
        return self.ports.index(port) + 1

    def primary_port(self):
        return replication_healthy(self.ports)

    def host_pids(self, node):
        """Every process of the node's 'host': the postmaster's tree and the agent's."""
        pm = postmaster_pid(self.data_dir(node))
        pids = [pm] if pm else []
        pids += descendants(pm) if pm else []
        for p in self.spawned.tree(self.agent_key(node)):
            if p not in pids:
                pids.append(p)
        return pids

    def agent_key(self, node):
        return f"agent{node}"

    def inflict(self, node, fault):
        """Returns the monotonic time of the fault."""
        pm = postmaster_pid(self.data_dir(node))
        if pm is None:
            raise RuntimeError(f"{self.name}: node {node} has no postmaster")
        if fault == "postmaster-kill":
            t = time.monotonic()
            os.kill(pm, signal.SIGKILL)
            return t
        pids = self.host_pids(node)
        t = time.monotonic()
        send(pids, signal.SIGSTOP)
        send(pids, signal.SIGKILL)
        return t

    def versions(self):
        return ""

    def ensure_healthy(self, after_fault_on=None, fault=None):
        """Repairs after a trial (restarting what was killed), or rebuilds from scratch."""
        if after_fault_on is not None:
            try:
                self.repair(after_fault_on, fault)
                wait_until(f"{self.name} healthy after repair", self.repair_s, self.healthy, step=0.5)
                return
            except Exception as e:  # noqa: BLE001
                log(f"  {self.name}: not healthy after the repair ({e}); building a fresh cluster")
        elif self.created:
            try:
                if self.healthy():
                    return
            except Exception:  # noqa: BLE001
                pass
        self.destroy()
        self.create()
        wait_until(f"{self.name} healthy after creation", 180, self.healthy, step=0.5)
        port = self.primary_port()
        sql(port, "CREATE TABLE IF NOT EXISTS downtime_log (trial int, seq int, PRIMARY KEY (trial, seq))")

    repair_s = 120
    created = False


class PgLeader(System):
    name = "pg_leader"
    ports = [58001, 58002, 58003]
    deadline_s = 60
    repair_s = 60

    def __init__(self, work, tool, settings):
        super().__init__(work)
        self.tool = tool
        self.dir = "/tmp/downtime-pgl"
        self.settings = settings

    def data_dir(self, node):
        return f"{self.dir}/n{node}"

    def cli(self, *args, timeout=180):
        out = subprocess.run([self.tool, "--dir", self.dir, *args], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"pg_leader-cluster {args[0]}: {out.stderr.strip()[-600:]}")
        return out.stdout

    def create(self):
        sets = ["--set", "listen_addresses = '127.0.0.1'"]
        for s in self.settings:
            sets += ["--set", s]
        self.cli("up", "--nodes", "3", "--port", "58000", "--raft-port", "9000", *sets)
        self.created = True

    def destroy(self):
        if os.path.exists(os.path.join(self.dir, "cluster.conf")):
            try:
                self.cli("down", timeout=120)
            except Exception as e:  # noqa: BLE001
                log(f"  pg_leader-cluster down: {e}")
        self.created = False

    def healthy(self):
        return self.primary_port() is not None

    def repair(self, node, fault):
        if postmaster_pid(self.data_dir(node)) is None:
            self.cli("start", str(node), timeout=90)

    def versions(self):
        auto = "unknown"
        try:
            auto = sql(self.ports[0], "SHOW pg_leader.auto_failover")[0][0]
        except Exception:  # noqa: BLE001
            pass
        return f"pg_leader: this tree ({git_head()}), pg_leader.auto_failover = {auto}"


class Patroni(System):
    name = "patroni"
    ports = [58011, 58012, 58013]
    rest = [58008, 58009, 58010]
    deadline_s = 120

    def __init__(self, work, patroni_bin):
        super().__init__(work)
        self.bin = patroni_bin
        self.dir = "/tmp/downtime-patroni"

    def data_dir(self, node):
        return f"{self.dir}/node{node}"

    def config(self, node):
        i = node - 1
        return f"""scope: downtime
name: node{node}
restapi:
  listen: 127.0.0.1:{self.rest[i]}
  connect_address: 127.0.0.1:{self.rest[i]}
etcd3:
  hosts: 127.0.0.1:58379
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    synchronous_mode: false
    postgresql:
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        max_connections: 40
        shared_buffers: 16MB
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{self.ports[i]}
  connect_address: 127.0.0.1:{self.ports[i]}
  data_dir: {self.data_dir(node)}
  bin_dir: {PGBIN}
  pgpass: {self.dir}/pgpass{node}
  authentication:
    replication:
      username: replicator
      password: downtime
    superuser:
      username: postgres
      password: downtime
    rewind:
      username: rewinder
      password: downtime
  parameters:
    unix_socket_directories: {self.dir}
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
"""

    def start_agent(self, node):
        conf = f"{self.dir}/node{node}.yml"
        self.spawned.start(self.agent_key(node), [self.bin, conf], f"{self.dir}/node{node}.log")

    def create(self):
        make_dir_for_postgres(self.dir)
        make_dir_for_postgres(f"{self.dir}/etcd")
        for node in (1, 2, 3):
            path = f"{self.dir}/node{node}.yml"
            with open(path, "w") as f:
                f.write(self.config(node))
            os.chmod(path, 0o644)
        self.created = True
        self.spawned.start("etcd", [
            "/usr/bin/etcd", "--name", "downtime", "--data-dir", f"{self.dir}/etcd/data",
            "--listen-client-urls", "http://127.0.0.1:58379", "--advertise-client-urls", "http://127.0.0.1:58379",
            "--listen-peer-urls", "http://127.0.0.1:58380", "--initial-advertise-peer-urls", "http://127.0.0.1:58380",
            "--initial-cluster", "downtime=http://127.0.0.1:58380",
        ], f"{self.dir}/etcd.log")
        wait_until("etcd healthy", 30, lambda: http_json("http://127.0.0.1:58379/health").get("health") == "true")
        self.start_agent(1)
        wait_until("Patroni node 1 primary", 90, lambda: http_status(f"http://127.0.0.1:{self.rest[0]}/primary") == 200)
        self.start_agent(2)
        self.start_agent(3)

    def healthy(self):
        members = http_json(f"http://127.0.0.1:{self.rest[0]}/cluster").get("members", [])
        if len(members) != 3:
            return False
        leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        streaming = [m for m in members if m.get("role") == "replica" and m.get("state") == "streaming"]
        return len(leaders) == 1 and len(streaming) == 2 and self.primary_port() is not None

    def repair(self, node, fault):
        key = self.agent_key(node)
        if not self.spawned.tree(key):
            self.spawned.forget(key)
            self.start_agent(node)

    def destroy(self):
        for node in (1, 2, 3):
            self.spawned.stop(self.agent_key(node), grace=40)
        self.spawned.stop("etcd", grace=10)
        kill_leftover_postmasters([self.data_dir(n) for n in (1, 2, 3)])
        shutil.rmtree(self.dir, ignore_errors=True)
        self.created = False

    def versions(self):
        out = subprocess.run([self.bin, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        etcd = subprocess.run(["/usr/bin/etcd", "--version"], capture_output=True, text=True, timeout=30).stdout
        return f"{out}; etcd {etcd.splitlines()[0].split()[-1]} (one member, not faulted); ttl 30, loop_wait 10, retry_timeout 10, synchronous_mode off"


class AutoFailover(System):
    name = "pg_auto_failover"
    ports = [58101, 58102, 58103]
    monitor_port = 58100
    deadline_s = 150
    repair_s = 180

    def __init__(self, work):
        super().__init__(work)
        self.dir = "/tmp/downtime-paf"
        self.env = {
            "XDG_CONFIG_HOME": f"{self.dir}/xdg/config",
            "XDG_DATA_HOME": f"{self.dir}/xdg/data",
            "XDG_RUNTIME_DIR": f"{self.dir}/xdg/run",
            "PG_CONFIG": f"{PGBIN}/pg_config",
            "PATH": f"{PGBIN}:/usr/bin:/bin",
        }

    def data_dir(self, node):
        return f"{self.dir}/n{node}"

    def monitor_uri(self):
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover?sslmode=disable"

    def states(self):
        rows = sql(self.monitor_port, "SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node",
                   dbname="pg_auto_failover", user="autoctl_node")
        return {port: (reported, goal) for port, reported, goal in rows}

    def create(self):
        make_dir_for_postgres(self.dir)
        for sub in ("xdg", "xdg/config", "xdg/data", "xdg/run"):
            make_dir_for_postgres(f"{self.dir}/{sub}")
        os.chmod(f"{self.dir}/xdg/run", 0o700)
        self.created = True
        common = ["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--pgctl", f"{PGBIN}/pg_ctl"]
        self.spawned.start("monitor", ["pg_autoctl", "create", "monitor", "--pgdata", f"{self.dir}/monitor",
                                       "--pgport", str(self.monitor_port), *common, "--run"],
                           f"{self.dir}/monitor.log", self.env)
        wait_until("pg_auto_failover monitor up", 90, lambda: self.states() is not None)
        for node in (1, 2, 3):
            self.spawned.start(self.agent_key(node), [
                "pg_autoctl", "create", "postgres", "--pgdata", self.data_dir(node), "--pgport",
                str(self.ports[node - 1]), "--name", f"n{node}", "--monitor", self.monitor_uri(), *common, "--run",
            ], f"{self.dir}/n{node}.log", self.env)
            want = "single" if node == 1 else "secondary"
            wait_until(f"pg_auto_failover node {node} {want}", 180,
                       lambda n=node, w=want: self.states().get(self.ports[n - 1], ("", ""))[0] == w, step=0.5)

    def healthy(self):
        s = self.states()
        if len(s) != 3:
            return False
        roles = sorted(r for r, g in s.values() if r == g)
        return roles == ["primary", "secondary", "secondary"] and self.primary_port() is not None

    def repair(self, node, fault):
        key = self.agent_key(node)
        if not self.spawned.tree(key):
            self.spawned.forget(key)
            self.spawned.start(key, ["pg_autoctl", "run", "--pgdata", self.data_dir(node)],
                               f"{self.dir}/n{node}.log", self.env)

    def destroy(self):
        for node in (1, 2, 3):
            self.spawned.stop(self.agent_key(node), grace=40)
        self.spawned.stop("monitor", grace=30)
        kill_leftover_postmasters([self.data_dir(n) for n in (1, 2, 3)] + [f"{self.dir}/monitor"])
        shutil.rmtree(self.dir, ignore_errors=True)
        self.created = False

    def versions(self):
        out = subprocess.run(["pg_autoctl", "--version"], capture_output=True, text=True, timeout=30).stdout
        return f"{out.splitlines()[0]}; monitor + 3 data nodes, defaults (number_sync_standbys 0, replication quorum on)"


def kill_leftover_postmasters(data_dirs):
    pms = [p for p in (postmaster_pid(d) for d in data_dirs) if p]
    if pms:
        send(pms, signal.SIGQUIT)
        if not wait_gone(pms, 10):
            send([p for p in pms if alive(p)], signal.SIGKILL)
            wait_gone(pms, 10)


def http_json(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read().decode())


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


# ---------------------------------------------------------------- the client


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


def one_trial(system, fault, trial):
    primary_port = system.primary_port()
    if primary_port is None:
        raise RuntimeError("no single primary with two streaming standbys")
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
    fields = ["system", "fault", "trial", "node", "ms", "restored_port", "failed_attempts", "acked", "lost", "note"]
    started = time.monotonic()
    done, timeouts_in_a_row, results = 0, 0, []
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        previous = None
        for trial in range(1, trials + 1):
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


def sweep(tool):
    """Stops what an interrupted run left: the recorded programs (checked to be still ours by
    their command line naming a /tmp/downtime- folder), the servers in those folders."""
    try:
        with open(PID_RECORD) as f:
            recorded = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        recorded = []
    for pid in recorded:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = b"/tmp/downtime-" in f.read()
        except OSError:
            continue
        if ours and alive(pid):
            tree = [pid] + descendants(pid)
            send(tree, signal.SIGKILL)
            log(f"sweep: stopped {len(tree)} processes left by the harness (pid {pid})")
    if os.path.exists("/tmp/downtime-pgl/cluster.conf") and os.path.exists(tool):
        subprocess.run([tool, "--dir", "/tmp/downtime-pgl", "down"], capture_output=True, timeout=120)
    kill_leftover_postmasters([f"/tmp/downtime-patroni/node{n}" for n in (1, 2, 3)]
                              + [f"/tmp/downtime-paf/n{n}" for n in (1, 2, 3)] + ["/tmp/downtime-paf/monitor"])
    for d in ("/tmp/downtime-pgl", "/tmp/downtime-patroni", "/tmp/downtime-paf"):
        shutil.rmtree(d, ignore_errors=True)
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
        "pg_leader": lambda: PgLeader(a.out, os.path.abspath(a.tool), a.pg_leader_set),
        "patroni": lambda: Patroni(a.out, a.patroni),
        "pg_auto_failover": lambda: AutoFailover(a.out),
    }
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lines, versions = [], []
    for name in a.systems.split(","):
        system = makers[name]()
        try:
            for fault in a.faults.split(","):
                log(f"\n== write downtime: {name}, {fault}")
                if name == "pg_leader":
                    trials, minimum, budget = a.trials, a.trials, float("inf")
                else:
                    trials, minimum, budget = a.ref_trials, a.ref_min, a.ref_minutes * 60
                lines.append(measure(system, fault, trials, minimum, budget, a.out, give_up=2 if a.quick else 3))
            try:
                system.ensure_healthy()
                versions.append(system.versions())
            except Exception as e:  # noqa: BLE001
                versions.append(f"{name}: version unknown ({e})")
        except Exception as e:  # noqa: BLE001
            lines.append(f"{name}: not measured: {e}")
            log(lines[-1])
        finally:
            system.destroy()
    with open(os.path.join(a.out, "downtime-summary.txt"), "a") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "downtime-versions.txt"), "a") as f:
        f.write("\n".join(versions) + "\n")
    log("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
