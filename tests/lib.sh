#!/usr/bin/env bash
# Helpers for end-to-end tests on real PostgreSQL 15 servers on loopback. Servers run as the
# postgres user when the caller is root (PostgreSQL refuses root), as the caller otherwise.
# Every server a test starts is stopped by `cluster_cleanup`, which tests install as an EXIT trap.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${BASE_PG_PORT:-55400}
# Below 32768: outside the ephemeral port range, so no outgoing socket can hold one by chance.
BASE_RAFT_PORT=${BASE_RAFT_PORT:-7400}

if [ "$(id -u)" -eq 0 ]; then
  RUN_AS=(runuser -u postgres --)
else
  RUN_AS=()
fi

as_pg() { "${RUN_AS[@]}" "$@"; }

# The write fence (pg_leader.fence_writes) refuses commits on a primary that does not hold the
# lease. Tests of elections, settings and membership write on servers that need not lead
# (independent servers are each a primary; a new primary holds no lease before its standbys
# exist), so they pass this line to turn the fence off explicitly. tests/fence.sh tests the fence.
NO_FENCE="pg_leader.fence_writes = off"
# Leadership follows the writable primary (tests/primary.sh): a switchover to a standby is handed
# back at once, and a primary that comes back takes leadership back. Tests of the election's own
# mechanics on a primary and its standbys (switchovers, PreVote on rejoin, routing that follows
# the leader) send no WAL positions, so that leadership stays where the election puts it.
ELECTION_ONLY="pg_leader.wal_aware_election = off"

# cluster_init WORKDIR N [extra postgresql.conf lines...]
# N independent servers (each its own initdb), all running pg_leader.
cluster_init() {
  WORK=$1; N=$2; shift 2
  cluster_prepare "$N"
  for i in $(seq 1 "$N"); do
    as_pg "$PGBIN/initdb" -D "$WORK/n$i" -A trust -U postgres --no-sync >/dev/null
    node_configure "$i" "$@"
  done
}

# cluster_init_replicated WORKDIR N [extra lines...]
# The real topology: node 1 is a primary, nodes 2..N are streaming standbys made with
# pg_basebackup. Node 1 is left running.
cluster_init_replicated() {
  WORK=$1; N=$2; shift 2
  cluster_prepare "$N"
  as_pg "$PGBIN/initdb" -D "$WORK/n1" -A trust -U postgres --no-sync >/dev/null
  node_configure 1 "$@"
  node_start 1
  for i in $(seq 2 "$N"); do
    as_pg "$PGBIN/pg_basebackup" -h "$WORK" -p $((BASE_PG_PORT + 1)) -U postgres -D "$WORK/n$i" -R -X stream >/dev/null
    # The copy carries node 1's pg_leader state, which node $i must never take as its own.
    as_pg rm -rf "$WORK/n$i/pg_leader"
    node_write_identity "$i"
  done
}

cluster_prepare() {
  mkdir -p "$WORK"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"
  as_pg bash -c "umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > '$WORK/secret'"
  PEERS=""
  for i in $(seq 1 "$1"); do
    PEERS+="${PEERS:+, }$i=127.0.0.1:$((BASE_RAFT_PORT + i))"
  done
}

# The settings every node shares go to postgresql.conf; the node's own (port, id) to node.conf,
# which pg_basebackup copies too and node_write_identity then rewrites.
node_configure() {
  local i=$1; shift
  cat <<CONF | as_pg tee -a "$WORK/n$i/postgresql.conf" >/dev/null
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_buffers = 16MB
max_connections = 20
wal_level = replica
max_wal_senders = 10
hot_standby = on
shared_preload_libraries = 'pg_leader'
pg_leader.peers = '$PEERS'
pg_leader.cluster_name = 'e2e'
pg_leader.secret_file = '$WORK/secret'
include_if_exists = 'node.conf'
CONF
  for line in "$@"; do echo "$line" | as_pg tee -a "$WORK/n$i/postgresql.conf" >/dev/null; done
  node_write_identity "$i"
}

node_write_identity() {
  {
    printf "port = %s\npg_leader.node_id = %s\n" $((BASE_PG_PORT + $1)) "$1"
    # HTTP_BASE_PORT set: node i serves its HTTP health check on HTTP_BASE_PORT + i.
    [ -z "${HTTP_BASE_PORT:-}" ] || printf "pg_leader.http_port = %s\n" $((HTTP_BASE_PORT + $1))
  } | as_pg tee "$WORK/n$1/node.conf" >/dev/null
}

# After a SIGKILL of the postmaster its children may hold shared memory for a moment: retry.
node_start() {
  local try
  for try in $(seq 1 40); do
    as_pg "$PGBIN/pg_ctl" -D "$WORK/n$1" -l "$WORK/n$1.log" -w -t 30 start >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "node $1 did not start; see $WORK/n$1.log" >&2
  return 1
}
node_stop() { as_pg "$PGBIN/pg_ctl" -D "$WORK/n$1" -m "${2:-fast}" -w -t 30 stop >/dev/null 2>&1 || true; }
node_pid() { head -1 "$WORK/n$1/postmaster.pid" 2>/dev/null; }

# sql NODE QUERY: one value, unaligned
sql() { as_pg psql -X -q -At -h "$WORK" -p $((BASE_PG_PORT + $1)) -U postgres -d postgres -c "$2"; }

cluster_cleanup() {
  [ -n "${WORK:-}" ] || return 0
  for d in "$WORK"/n*/; do
    [ -f "$d/postmaster.pid" ] || continue
    as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w -t 10 stop >/dev/null 2>&1 || kill -9 "$(head -1 "$d/postmaster.pid")" 2>/dev/null || true
  done
  rm -rf "$WORK"
}

# wait_for TIMEOUT_S DESCRIPTION COMMAND...: retries COMMAND every 50 ms until it succeeds.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "gave up after ${timeout}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.05
  done
}

# answers WANT COMMAND...: COMMAND prints WANT. For wait_for, which runs it anew on every try
# (a "$(...)" argument would be evaluated once, before the first try).
answers() { local want=$1; shift; [ "$("$@" 2>/dev/null)" = "$want" ]; }

# The ids of the nodes among "$@" that answer pg_leader_is_leader() = true.
leaders_among() {
  local out="" i
  for i in "$@"; do
    [ "$(sql "$i" 'SELECT pg_leader_is_leader()' 2>/dev/null)" = "t" ] && out+="$i "
  done
  echo "$out"
}

# True when exactly one of "$@" leads and all of them name it and agree on the term.
one_agreed_leader() {
  local leaders; leaders=$(leaders_among "$@")
  [ "$(echo $leaders | wc -w)" -eq 1 ] || return 1
  local l=${leaders% } first="" i
  for i in "$@"; do
    local row; row=$(sql "$i" "SELECT pg_leader_leader_id() || '/' || pg_leader_term()")
    [ -n "$first" ] || first=$row
    [ "$row" = "$first" ] && [ "${row%%/*}" = "$l" ] || return 1
  done
}

# A primary and its streaming standbys (auto_failover clusters). Node $1 is in recovery or not.
in_recovery() { sql "$1" "SELECT pg_is_in_recovery()" 2>/dev/null; }
# Node $1 is the writable primary and the leader, agreed by nodes 1 to 3.
is_primary_leader() {
  one_agreed_leader 1 2 3 && [ "$(leaders_among 1 2 3)" = "$1 " ] && [ "$(in_recovery "$1")" = f ]
}
# Node $1 is in recovery and streams from node $2.
streams_from() {
  [ "$(in_recovery "$1")" = t ] &&
    [ "$(sql "$2" "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_leader_$1' AND state = 'streaming'" 2>/dev/null)" = 1 ]
}
# The cluster of nodes 1 to 3 is whole: node $1 the primary leading, both others streaming from it.
whole() {
  local p=$1 i
  is_primary_leader "$p" || return 1
  for i in 1 2 3; do [ "$i" = "$p" ] || streams_from "$i" "$p" || return 1; done
}

# The one of nodes 1 to 3 that is the primary and leads, agreed by all.
current_primary() {
  local i
  for i in 1 2 3; do is_primary_leader "$i" && { echo "$i"; return 0; }; done
  return 1
}
# A former standby among the nodes other than $1 that is now out of recovery and leads.
promoted_among_others() {
  local i
  for i in 1 2 3; do
    [ "$i" != "$1" ] && [ "$(sql "$i" "SELECT NOT pg_is_in_recovery() AND pg_leader_is_leader()" 2>/dev/null)" = t ] &&
      { echo "$i"; return 0; }
  done
  return 1
}

# Plain test bookkeeping.
PASSED=0; FAILED=0
check() {
  local name=$1; shift
  if "$@"; then echo "ok - $name"; PASSED=$((PASSED + 1)); else echo "FAILED - $name"; FAILED=$((FAILED + 1)); return 1; fi
}
