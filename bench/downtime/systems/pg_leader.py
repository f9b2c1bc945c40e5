"""pg_leader through its cluster tool (target/release/pg_leader-cluster): 3 servers on
PostgreSQL ports 58001-58003 (TCP on 127.0.0.1 as well as the tool's Unix sockets), Raft ports
9001-9003, automatic failover as `up` sets it."""

import hashlib
import os
import subprocess

from ..probes import log, sql
from ..processes import postmaster_pid, record
from .base import System


EXTENSION = "/usr/lib/postgresql/15/lib/pg_leader.so"


def extension_build():
    """Which build of the installed extension the servers load (it may be reinstalled while
    the benchmark runs): the start of its SHA-256."""
    with open(EXTENSION, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


class PgLeader(System):
    name = "pg_leader"
    ports = [58001, 58002, 58003]
    deadline_s = 60
    repair_s = 30  # a rejoin takes a few seconds (pg_rewind of a small cluster)

    def __init__(self, tool, settings):
        super().__init__()
        self.tool = tool
        self.dir = "/tmp/downtime-pgl"
        self.settings = settings
        self.node_builds = {}

    def data_dir(self, node):
        return f"{self.dir}/n{node}"

    def log_file(self, node):
        return f"{self.dir}/n{node}.log"

    def cli(self, *args, timeout=180):
        """Runs the tool; stopped with us, so an interrupted `up` leaves no server behind."""
        tool = subprocess.Popen([self.tool, "--dir", self.dir, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = tool.communicate(timeout=timeout)
        except BaseException:
            tool.kill()
            tool.communicate()
            raise
        if tool.returncode != 0:
            raise RuntimeError(f"pg_leader-cluster {args[0]}: {err.strip()[-600:]}")
        return out

    def create(self):
        record(f"dir {self.dir}")
        sets = ["--set", "listen_addresses = '127.0.0.1'"]
        for s in self.settings:
            sets += ["--set", s]
        self.node_builds = dict.fromkeys((1, 2, 3), extension_build())
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

    @property
    def build(self):
        """The build each server loaded when it started; one name when they agree."""
        builds = set(self.node_builds.values())
        if len(builds) == 1:
            return builds.pop()
        return "mixed " + "/".join(f"{n}={b}" for n, b in sorted(self.node_builds.items()))

    def repair(self, node, fault):
        """The former primary restarted: with auto_rejoin on (as `up` sets it) its worker rebuilds
        it as a standby of the leader (pg_rewind); if the cluster does not come back whole
        within repair_s, it is rebuilt."""
        if postmaster_pid(self.data_dir(node)) is None:
            self.node_builds[node] = extension_build()
            self.cli("start", str(node), timeout=90)

    def versions(self):
        auto = "unknown"
        try:
            auto = sql(self.ports[0], "SHOW pg_leader.auto_failover")[0][0]
        except Exception:  # noqa: BLE001
            pass
        return (f"pg_leader: the cluster tool of this tree ({git_head()}), extension build {self.build} "
                f"(SHA-256 prefix of {EXTENSION}), pg_leader.auto_failover = {auto}, defaults (heartbeat 100 ms, "
                "election timeout 1000 ms)")


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


# ---------------------------------------------------------------- the client
