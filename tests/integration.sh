#!/usr/bin/env bash
# End-to-end tests of what pg_leader offers the tools around PostgreSQL, on real servers (a
# primary and two pg_basebackup standbys): the HTTP health check, pg_leader_wait_for_change(),
# NOTIFY pg_leader, the on_role_change command, WAL-aware elections and the examples.
set -uo pipefail
cd "$(dirname "$0")/.."
# Base ports from INTEGRATION_PG_PORT, INTEGRATION_RAFT_PORT and INTEGRATION_HTTP_PORT (HAProxy
# and pgbouncer listen on the HTTP base + 15, 16, 17), PGBIN for a second installation.
BASE_PG_PORT=${INTEGRATION_PG_PORT:-55450}
BASE_RAFT_PORT=${INTEGRATION_RAFT_PORT:-7450}
HTTP_BASE_PORT=${INTEGRATION_HTTP_PORT:-7480}
WRITE_PORT=$((HTTP_BASE_PORT + 15)) READ_PORT=$((HTTP_BASE_PORT + 16)) PGB_PORT=$((HTTP_BASE_PORT + 17))
source tests/lib.sh

WORK=$(mktemp -d /tmp/pg_leader_integration.XXXXXX)
# Only what this test started is stopped, by its pid (the machine may run other tests).
repointer=""
trap 'kill "$(cat "$WORK/haproxy.pid" "$WORK/pgbouncer/pgbouncer.pid" 2>/dev/null)" 2>/dev/null; [ -z "$repointer" ] || kill -- "$repointer" 2>/dev/null; cluster_cleanup' EXIT
HOOK_LOG=$WORK/on_role_change.log
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$((HTTP_BASE_PORT + $1))$2"; }
fails() { ! "$@" >/dev/null 2>&1; }
leader_now() { local l; l=$(leaders_among 1 2 3); echo "${l% }"; }
transfer_to() {   # transfer_to NODE: make NODE the leader (a planned switchover)
  local l; l=$(leader_now)
  [ "$l" = "$1" ] || sql "$l" "SELECT pg_leader_transfer_leadership($1)" >/dev/null
  wait_for 10 "node $1 to lead" one_agreed_leader 1 2 3 && [ "$(leader_now)" = "$1" ]
}

# wal_aware on|off: pg_leader.wal_aware_election on every server, by reload. Off (ELECTION_ONLY in
# tests/lib.sh) except for the WAL-aware elections: with it on, leadership goes back to the
# writable primary, and the switchovers to standbys that this file makes would be undone.
wal_aware() {
  local i
  for i in 1 2 3; do
    sql "$i" "ALTER SYSTEM SET pg_leader.wal_aware_election TO $1" >/dev/null
    sql "$i" "SELECT pg_reload_conf()" >/dev/null
  done
  wait_for 5 "the reload" wal_aware_is "$1" && sleep 0.3  # a heartbeat round: positions move on
}
wal_aware_is() { test "$(for i in 1 2 3; do sql "$i" "SHOW pg_leader.wal_aware_election"; done | sort -u)" = "$1"; }

echo "# three servers with the HTTP health check and an on_role_change command"
cluster_init_replicated "$WORK" 3 "$NO_FENCE" "$ELECTION_ONLY" "pg_leader.on_role_change = 'echo %r %t %l >> $HOOK_LOG'" \
  "listen_addresses = '127.0.0.1'"
node_start 2; node_start 3
sql 1 "CREATE EXTENSION pg_leader" >/dev/null
check "one leader agreed by all three" wait_for 15 "one leader" one_agreed_leader 1 2 3
L=$(leader_now)
# A follower that is a standby (node 1 is the primary): /replica asks for recovery and streaming.
F=$(( L == 2 ? 3 : 2 ))

echo "# HTTP health check"
check "GET /leader is 200 on the leader" test "$(http_code "$L" /leader)" = 200
check "GET /leader is 503 on a follower" test "$(http_code "$F" /leader)" = 503
check "GET /replica is 200 on a follower" test "$(http_code "$F" /replica)" = 200
check "GET /replica is 503 on the leader" test "$(http_code "$L" /replica)" = 503
check "GET /status is JSON naming the leader" \
  test "$(curl -s -m 2 "http://127.0.0.1:$((HTTP_BASE_PORT + F))/status" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["leader_id"], d["role"], len(d["nodes"]))')" = "$L follower 3"
check "HEAD /leader answers without a body" \
  test "$(curl -s -I -m 2 "http://127.0.0.1:$((HTTP_BASE_PORT + L))/leader" | head -1 | tr -d '\r')" = "HTTP/1.1 200 OK"
check "an unknown path is 404" test "$(http_code "$L" /nothing)" = 404
# A client that connects and says nothing must not hold the worker up.
exec 9<>/dev/tcp/127.0.0.1/$((HTTP_BASE_PORT + L))
check "a silent connection does not stall the health check" test "$(http_code "$L" /leader)" = 200
exec 9>&-

echo "# waiting for a change, NOTIFY and the role command"
T=$(sql "$F" "SELECT pg_leader_term()")
check "pg_leader_wait_for_change() returns the same term on timeout" \
  test "$(sql "$F" "SELECT pg_leader_wait_for_change($T, 200)")" = "$T"
check "a negative timeout is refused" fails sql "$F" "SELECT pg_leader_wait_for_change(1, -1)"
sql "$F" "SELECT pg_leader_wait_for_change($T, 20000)" >"$WORK/changed" 2>&1 &
waiter=$!
# A session listening on the primary (notifications need a server that accepts writes).
as_pg psql -X -q -h "$WORK" -p $((BASE_PG_PORT + 1)) -U postgres -d postgres \
  -c "LISTEN pg_leader" -c "SELECT pg_sleep(4)" >"$WORK/notified" 2>&1 &
listener=$!
sleep 1
check "switchover to node $F" transfer_to "$F"
wait $waiter
check "pg_leader_wait_for_change() returned the new term" test "$(cat "$WORK/changed")" -gt "$T"
wait $listener
check "a LISTEN pg_leader session on the primary got the new term and leader as JSON" \
  grep -q "payload \"{\"term\": [0-9]*, \"leader\": $F, \"previous\": $L" "$WORK/notified"
check "the role command ran on the new leader" wait_for 5 "the hook" grep -q "^leader [0-9]* $F$" "$HOOK_LOG"
check "the role command ran on a follower" wait_for 5 "the hook" grep -q "^follower [0-9]* $F$" "$HOOK_LOG"
check "the role command's run is logged" wait_for 5 "the log line" grep -q 'on_role_change "echo leader' "$WORK/n$F.log"

echo "# WAL-aware elections: a standby with replay paused is never elected"
check "WAL positions are on on every server" wal_aware on
check "replay paused on node 3" test "$(sql 3 "SELECT pg_wal_replay_pause(); SELECT pg_get_wal_replay_pause_state()")" != "not paused"
sql 1 "CREATE TABLE wal_test (x int)" >/dev/null
for round in 1 2 3; do
  check "round $round: node 1 (the primary) leads" transfer_to 1
  # The flush position right after the commit: a standby that replayed up to it has the rows.
  lsn=$(sql 1 "INSERT INTO wal_test SELECT generate_series(1, 10000); SELECT pg_current_wal_flush_lsn()")
  # After a kill of the primary, node 2's WAL receiver reconnects within wal_retrieve_retry_interval.
  check "round $round: node 2 replayed the new rows" wait_for 30 "node 2 to replay" \
    answers t sql 2 "SELECT pg_last_wal_replay_lsn() >= '$lsn'"
  check "round $round: node 3 is behind" test "$(sql 3 "SELECT pg_last_wal_replay_lsn() < '$lsn'")" = t
  kill -9 "$(node_pid 1)"
  check "round $round: a leader among the survivors" wait_for 15 "a new leader" one_agreed_leader 2 3
  check "round $round: it is node 2, the one with the most WAL" test "$(leaders_among 2 3)" = "2 "
  sleep 0.5
  node_start 1 2>/dev/null
  wait_for 15 "all three agree" one_agreed_leader 1 2 3
done
sql 3 "SELECT pg_wal_replay_resume()" >/dev/null

echo "# the keepalived check"
check "keepalived check passes on the leader" examples/keepalived_check.sh "http://127.0.0.1:$((HTTP_BASE_PORT + $(leader_now)))/leader"
F=$(( $(leader_now) % 3 + 1 ))
check "keepalived check fails on a follower" fails examples/keepalived_check.sh "http://127.0.0.1:$((HTTP_BASE_PORT + F))/leader"

echo "# WAL positions off again: leadership moves by switchovers alone"
check "WAL positions are off on every server" wal_aware off

echo "# HAProxy routes writes to the leader (examples/haproxy.cfg)"
tcp_sql() { as_pg psql -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null; }
for i in 1 2 3; do export "PG$i=127.0.0.1:$((BASE_PG_PORT + i))" "CHECK_PORT$i=$((HTTP_BASE_PORT + i))"; done
export WRITE_BIND=127.0.0.1:$WRITE_PORT READ_BIND=127.0.0.1:$READ_PORT
if haproxy -q -D -p "$WORK/haproxy.pid" -f examples/haproxy.cfg; then
  check "HAProxy's write port reaches the leader" wait_for 10 "HAProxy to find the leader" \
    answers t tcp_sql "$WRITE_PORT" 'SELECT pg_leader_is_leader()'
  check "HAProxy's read port reaches a follower" wait_for 10 "HAProxy to find a follower" \
    answers f tcp_sql "$READ_PORT" 'SELECT pg_leader_is_leader()'
  F=$(( $(leader_now) % 3 + 1 ))
  check "switchover to node $F" transfer_to "$F"
  check "after the switchover HAProxy's write port reaches the new leader" wait_for 10 "HAProxy to follow" \
    answers "$F" tcp_sql "$WRITE_PORT" 'SELECT pg_leader_node_id()'
else
  check "haproxy starts with examples/haproxy.cfg" false
fi

echo "# pgbouncer follows the leader (examples/pgbouncer_repoint.sh)"
as_pg mkdir -p "$WORK/pgbouncer"
cat <<INI | as_pg tee "$WORK/pgbouncer/pgbouncer.ini" >/dev/null
%include $WORK/pgbouncer/databases.ini
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir = $WORK/pgbouncer
auth_type = trust
auth_file = $WORK/pgbouncer/users.txt
admin_users = postgres
pool_mode = session
server_reset_query =
pidfile = $WORK/pgbouncer/pgbouncer.pid
logfile = $WORK/pgbouncer/pgbouncer.log
INI
echo '"postgres" ""' | as_pg tee "$WORK/pgbouncer/users.txt" >/dev/null
echo '[databases]' | as_pg tee "$WORK/pgbouncer/databases.ini" >/dev/null
NODES=()
for i in 1 2 3; do NODES+=("$i=host=$WORK port=$((BASE_PG_PORT + i)) user=postgres"); done
ADMIN="host=$WORK/pgbouncer port=$PGB_PORT dbname=pgbouncer user=postgres"
through_pgbouncer() { as_pg psql -X -q -At -h 127.0.0.1 -p $PGB_PORT -U postgres -d postgres -c "$1" 2>/dev/null; }
if as_pg /usr/sbin/pgbouncer -d -q "$WORK/pgbouncer/pgbouncer.ini"; then
  check "the re-point script points pgbouncer at the leader" \
    as_pg examples/pgbouncer_repoint.sh --once "$WORK/pgbouncer/databases.ini" "$ADMIN" postgres "${NODES[@]}"
  check "a session through pgbouncer lands on the leader" test "$(through_pgbouncer 'SELECT pg_leader_is_leader()')" = t
  # In a session of its own, so that the whole group (runuser, the script, its sleep) is
  # stopped by its id: killing runuser alone left the script running.
  setsid "${RUN_AS[@]}" examples/pgbouncer_repoint.sh "$WORK/pgbouncer/databases.ini" "$ADMIN" postgres "${NODES[@]}" >"$WORK/repoint.log" 2>&1 &
  repointer=-$!
  F=$(( $(leader_now) % 3 + 1 ))
  check "switchover to node $F" transfer_to "$F"
  check "pgbouncer follows: new sessions land on node $F" wait_for 10 "pgbouncer to follow" \
    answers "$F" through_pgbouncer 'SELECT pg_leader_node_id()'
  kill -- "$repointer" 2>/dev/null
  kill "$(cat "$WORK/pgbouncer/pgbouncer.pid")" 2>/dev/null
else
  check "pgbouncer starts" false
fi

echo "# authentic frames with absurd fields, sealed with the cluster's secret"
# They claim to come from a follower and go to the leader. Whoever holds the secret is trusted
# as a member: such frames (with boot epochs far ahead) also cut that follower's own datagrams to
# the leader off until it restarts, which is why this runs last. What is checked here is that
# absurd fields are dropped, counted, and change nothing.
INJECT=${INJECT:-target/release/pg-leader-inject}
L=$(leader_now); F=$(( L % 3 + 1 ))
T=$(sql "$L" "SELECT pg_leader_term()")
rejected() { sql "$L" "SELECT packets FROM pg_leader_rejections() WHERE reason = '$1'"; }
malformed_before=$(rejected malformed); unknown_before=$(rejected 'unknown sender')
epoch=$((1 << 40))
for kind in huge-term second-leader huge-lease unknown-node; do
  epoch=$((epoch + 1))
  "$INJECT" --to "127.0.0.1:$((BASE_RAFT_PORT + L))" --kind "$kind" --count 1000 --from "$F" --target "$L" \
    --term "$T" --epoch "$epoch" --cluster e2e --secret-file "$WORK/secret" >/dev/null
done
sleep 1
echo "on node $L: malformed $malformed_before -> $(rejected malformed), unknown sender $unknown_before -> $(rejected 'unknown sender')"
check "3000 frames with a huge term, a second leader or a year-long promise are dropped as malformed" \
  test $(( $(rejected malformed) - malformed_before )) -eq 3000
check "1000 authentic frames from an unknown node id are dropped" test $(( $(rejected 'unknown sender') - unknown_before )) -eq 1000
check "the leader and the term are unchanged" \
  test "$(sql "$L" "SELECT pg_leader_is_leader() || '/' || pg_leader_term()")" = "true/$T"
check "every node still names node $L in term $T" one_agreed_leader 1 2 3

echo "integration: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
