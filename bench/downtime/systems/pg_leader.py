"""pg_leader through its cluster tool (target/release/pg_leader-cluster): 3 servers on
PostgreSQL ports 58001-58003 (TCP on 127.0.0.1 as well as the tool's Unix sockets), Raft ports
9001-9003, automatic failover as `up` sets it."""

import os
import subprocess

from ..probes import log, sql
from ..processes import postmaster_pid, record
from .base import System


class PgLeader(System):
    name = "pg_leader"
    ports = [58001, 58002, 58003]
    deadline_s = 60
    repair_s = 60

    def __init__(self, tool, settings):
        super().__init__()
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
        record(f"dir {self.dir}")
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
        """The former primary restarted, then rebuilt as a standby of the leader (`rejoin`); a
        tool without `rejoin` leaves it a fenced former primary, so the cluster is rebuilt."""
        if postmaster_pid(self.data_dir(node)) is None:
            self.cli("start", str(node), timeout=90)
        if "rejoin NODE" not in self.cli("help"):
            raise RuntimeError("this pg_leader-cluster has no rejoin")
        self.cli("rejoin", str(node), timeout=180)

    def versions(self):
        auto = "unknown"
        try:
            auto = sql(self.ports[0], "SHOW pg_leader.auto_failover")[0][0]
        except Exception:  # noqa: BLE001
            pass
        return f"pg_leader: this tree ({git_head()}), pg_leader.auto_failover = {auto}"


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except Exception:  # noqa: BLE001
        return "?"


# ---------------------------------------------------------------- the client
