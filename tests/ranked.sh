#!/usr/bin/env bash
# End-to-end: ranked candidacy and pg_leader.priority on real servers (`pg_leader-cluster up`,
# auto_failover on). The leader's host is lost (postmaster and children SIGSTOPped then
# SIGKILLed together, as `bench failover --fault host-kill` does), so no handover happens and the
# successor comes from the leader's succession order:
# - on 3 servers whose standbys hold the same WAL, the standby of higher pg_leader.priority wins;
# - a server with pg_leader.priority = 0 never leads, also when it is the only other standby;
# - on 5 servers, the leader and its rank-0 successor lost at once: the rank-1 server wins, and
#   the time from the kill to a leader agreed by the survivors is printed.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN, RANKED_PG_PORT and
# RANKED_RAFT_PORT (base ports, 56500 and 8500; the 5-server cluster uses base + 20).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${RANKED_PG_PORT:-56500}
RAFT_PORT=${RANKED_RAFT_PORT:-8500}
export PG_LEADER_NFT_TABLE=${PG_LEADER_NFT_TABLE:-pg_leader_ranked}
source tests/lib.sh
WORK=$(mktemp -u /tmp/pg_leader_ranked_e2e.XXXXXX)
cluster() { "$TOOL" --dir "$WORK" "$@"; }
cleanup() {
  cluster down >/dev/null 2>&1
  cluster_cleanup
}
trap cleanup EXIT

# set_priority NODE VALUE: ALTER SYSTEM on that server alone, and a reload.
set_priority() {
  sql "$1" "ALTER SYSTEM SET pg_leader.priority = $2" >/dev/null &&
    sql "$1" "SELECT pg_reload_conf()" >/dev/null
}
# host_kill NODE: its postmaster and every child stopped, then killed, at once (a lost host).
host_kill() {
  local pm; pm=$(node_pid "$1")
  [ -n "$pm" ] || return 1
  local pids="$pm $(ps -o pid= --ppid "$pm" | tr '\n' ' ')"
  kill -STOP $pids 2>/dev/null
  kill -KILL $pids 2>/dev/null
  return 0
}
# leader_of NODES...: the agreed leader among them, if there is one.
leader_of() { one_agreed_leader "$@" && leaders_among "$@" | tr -d ' '; }
# never_led NODE: its server log has no line saying it became the leader.
never_led() { ! grep -q "node $1 is now leader in term" "$WORK/n$1.log"; }
now_ms() { date +%s%3N; }

echo "# three servers: node 1 the primary, priorities 100, 50, 150"
cluster up --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
check "node 1 is the primary and leads; both standbys stream from it" wait_for 30 "a whole cluster" whole 1
set_priority 2 50 && set_priority 3 150
check "SHOW pg_leader.priority on node 3 says 150" answers 150 sql 3 "SHOW pg_leader.priority"
refusal=$(sql 3 "ALTER SYSTEM SET pg_leader.priority = -1" 2>&1)
check "a bad value is refused naming the setting and the value" \
  grep -q -- '-1 is outside the valid range for parameter "pg_leader.priority"' <<<"$refusal"
sleep 1
host_kill 1
check "node 3 (priority 150) wins over node 2 (priority 50), WAL equal" wait_for 20 "a leader among 2, 3" answers 3 leader_of 2 3
check "node 3 is promoted" wait_for 20 "node 3 writable" answers f in_recovery 3
cluster start 1 >/dev/null
check "node 1 comes back as a standby of node 3" wait_for 60 "a whole cluster" whole 3

echo "# priority 0: node 2 never leads"
set_priority 2 0
sleep 1
host_kill 3
check "node 1 wins; node 2 (priority 0) does not" wait_for 20 "a leader among 1, 2" answers 1 leader_of 1 2
cluster start 3 >/dev/null
check "node 3 comes back as a standby of node 1" wait_for 60 "a whole cluster" whole 1
sleep 1
host_kill 1
check "node 3 wins; node 2 (priority 0) still does not" wait_for 20 "a leader among 2, 3" answers 3 leader_of 2 3
check "node 2 never led" never_led 2
cluster down >/dev/null 2>&1

echo "# five servers: the leader and its rank-0 successor lost at once"
BASE_PG_PORT=$((BASE_PG_PORT + 20))
cluster up --nodes 5 --port "$BASE_PG_PORT" --raft-port "$((RAFT_PORT + 20))" >/dev/null || { echo "FAILED - cluster up (5)"; exit 1; }
check "node 1 leads five servers" wait_for 30 "node 1 leads" answers 1 leader_of 1 2 3 4 5
set_priority 2 200 && set_priority 3 150 && set_priority 4 100 && set_priority 5 50
sleep 1
start=$(now_ms)
host_kill 1
host_kill 2
wait_for 20 "a leader among 3, 4, 5" answers 3 leader_of 3 4 5
won=$?
# The server's own log dates its win (the polling above takes its own time on a loaded machine).
won_at=$(grep "node 3 is now leader in term" "$WORK/n3.log" | tail -1 | cut -c1-23)
[ -n "$won_at" ] && echo "# rank 1 (node 3) leader $(($(date -d "$won_at UTC" +%s%3N) - start)) ms after the kill by its log, agreed through SQL after $(($(now_ms) - start)) ms (election timeout 1000 ms)"
check "node 3, rank 1, wins when rank 0 (node 2) is lost with the leader" [ "$won" = 0 ]

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
