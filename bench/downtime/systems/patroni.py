"""Patroni (from PyPI) with one etcd member (Debian's etcd-server) as its store, which is
never faulted: 3 nodes on PostgreSQL ports 58011-58013, REST 58008-58010, etcd 58379/58380.
Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10), synchronous_mode off; pg_rewind on
so that a former primary can come back as a standby (it changes no failover timing)."""

import os
import shutil
import subprocess

from ..probes import http_json, http_status, wait_until
from ..processes import PGBIN, kill_leftover_postmasters, make_dir_for_postgres, record
from .base import System


class Patroni(System):
    name = "patroni"
    ports = [58011, 58012, 58013]
    rest = [58008, 58009, 58010]
    helper_logs = ("etcd",)
    deadline_s = 120

    def __init__(self, patroni_bin):
        super().__init__()
        self.bin = patroni_bin
        self.dir = "/tmp/downtime-patroni"

    def data_dir(self, node):
        return f"{self.dir}/node{node}"

    def log_file(self, node):
        return f"{self.dir}/node{node}.log"

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
        record(f"dir {self.dir}")
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
