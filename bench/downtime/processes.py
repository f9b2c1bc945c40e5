"""Processes: the ones this harness starts (recorded by PID, run as `postgres`), the trees
below them, and the postmasters of the harness's own data directories."""

import os
import shutil
import signal
import subprocess
import time

PGBIN = "/usr/lib/postgresql/15/bin"

# Every program started is recorded here, for bench/write_downtime.sh's trap should this
# process die before its own cleanup.
PID_RECORD = os.environ.get("DOWNTIME_PID_RECORD", "/tmp/downtime-pids")


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


def make_dir_for_postgres(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def record(line):
    """Notes a program started (`pid N`) or a folder of servers created (`dir PATH`), for
    bench/write_downtime.sh's trap should this process die before its own cleanup."""
    with open(PID_RECORD, "a") as f:
        f.write(line + "\n")


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
        record(f"pid {p.pid}")
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


def kill_leftover_postmasters(data_dirs):
    pms = [p for p in (postmaster_pid(d) for d in data_dirs) if p]
    if pms:
        send(pms, signal.SIGQUIT)
        if not wait_gone(pms, 10):
            send([p for p in pms if alive(p)], signal.SIGKILL)
            wait_gone(pms, 10)
