"""What the trials need of a system: its servers, its primary, a fault, a repair, a rebuild.
The three systems differ only in how they are created, asked, repaired and destroyed."""

import os
import signal
import time

from ..probes import log, replication_healthy, sql, wait_until
from ..processes import Spawned, descendants, postmaster_pid, send


class System:
    name = ""
    ports = []
    deadline_s = 120

    def __init__(self):
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

    evidence_dir = None  # where the logs of a failed repair or creation are kept (the results folder)
    helper_logs = ()  # the logs of the programs beside the nodes (a store, a monitor)

    def keep_logs(self, what, names):
        """Keeps the last lines of these logs before a rebuild removes them."""
        if not self.evidence_dir:
            return
        folder = os.path.join(self.evidence_dir, "repair-failures")
        for name in names:
            path = self.log_file(name) if isinstance(name, int) else f"{self.dir}/{name}.log"
            if not path or not os.path.exists(path):
                continue
            os.makedirs(folder, exist_ok=True)
            dest = os.path.join(folder, f"{self.name}-{time.strftime('%H%M%S')}-{what}-{name}.log")
            with open(path, "rb") as src, open(dest, "wb") as out:
                out.write(b"".join(src.readlines()[-300:]))
            log(f"  kept the last lines of {os.path.basename(path)}: {dest}")

    def log_file(self, node):
        return None

    def ensure_healthy(self, after_fault_on=None, fault=None):
        """Repairs after a trial (restarting what was killed), or rebuilds from scratch."""
        if after_fault_on is not None:
            try:
                self.repair(after_fault_on, fault)
                wait_until(f"{self.name} healthy after repair", self.repair_s, self.healthy, step=0.5)
                return
            except Exception as e:  # noqa: BLE001
                reason = " ".join(str(e).split())
                log(f"  {self.name}: not healthy after the repair ({reason}); building a fresh cluster")
                self.keep_logs("repair", [after_fault_on])
        elif self.created:
            try:
                if self.healthy():
                    return
            except Exception:  # noqa: BLE001
                pass
        self.destroy()
        try:
            self.create()
            wait_until(f"{self.name} healthy after creation", 180, self.healthy, step=0.5)
        except BaseException:
            self.keep_logs("creation", [*self.helper_logs, 1, 2, 3])
            raise
        port = self.primary_port()
        sql(port, "CREATE TABLE IF NOT EXISTS downtime_log (trial int, seq int, PRIMARY KEY (trial, seq))")

    repair_s = 120
    created = False
    build = ""  # which build of the software the current cluster runs, where it can change
