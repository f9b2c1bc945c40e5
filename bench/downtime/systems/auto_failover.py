"""pg_auto_failover (Debian's postgresql-15-auto-failover, pg_autoctl): a monitor on port
58100 and 3 data nodes on 58101-58103, defaults (so commits wait for one standby: replication
quorum on, number_sync_standbys 0)."""

import os
import shutil
import subprocess

from ..probes import sql, wait_until
from ..processes import PGBIN, kill_leftover_postmasters, make_dir_for_postgres, record
from .base import System


class AutoFailover(System):
    name = "pg_auto_failover"
    ports = [58101, 58102, 58103]
    monitor_port = 58100
    helper_logs = ("monitor",)
    deadline_s = 150
    repair_s = 180

    def __init__(self):
        super().__init__()
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

    def log_file(self, node):
        return f"{self.dir}/n{node}.log"

    def monitor_uri(self):
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover?sslmode=disable"

    def states(self):
        rows = sql(self.monitor_port, "SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node",
                   dbname="pg_auto_failover", user="autoctl_node")
        return {port: (reported, goal) for port, reported, goal in rows}

    def create(self):
        record(f"dir {self.dir}")
        make_dir_for_postgres(self.dir)
        for sub in ("xdg", "xdg/config", "xdg/data", "xdg/run"):
            make_dir_for_postgres(f"{self.dir}/{sub}")
        os.chmod(f"{self.dir}/xdg/run", 0o700)
        self.created = True
        common = ["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--pgctl", f"{PGBIN}/pg_ctl"]
        self.spawned.start("monitor", ["pg_autoctl", "create", "monitor", "--pgdata", f"{self.dir}/monitor",
                                       "--pgport", str(self.monitor_port), *common, "--run"],
                           f"{self.dir}/monitor.log", self.env)
        wait_until("pg_auto_failover monitor up", 180, lambda: self.states() is not None)
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
