#!/usr/bin/env bash
# End-to-end: a leader whose PostgreSQL dies hands over before it goes. Three real servers (a
# primary and pg_basebackup standbys, made by pg_leader-cluster); the leader's PostgreSQL is lost
# three ways: its postmaster SIGKILLed (the worker outlives it by a moment), `pg_ctl stop -m
# immediate`, and a backend SIGKILLed (PostgreSQL's crash-restart cycle); then a follower's
# postmaster is SIGKILLed and the leader must hear of it at once. Each time: a new leader
# within a few heartbeats (the promise alone would take an election timeout), no two servers
# answering true at overlapping moments (an observer on every server, `pg_leader-cluster
# watch`), the old server back (leading again when it is still the writable primary, as nobody
# promoted a standby; a follower otherwise), and every node's role history checked.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN (PostgreSQL's programs),
# PG_LEADER_NFT_TABLE, CRASH_PG_PORT and CRASH_RAFT_PORT (base ports, 55700 and 7700).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${CRASH_PG_PORT:-55700}
RAFT_PORT=${CRASH_RAFT_PORT:-7700}
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_crash_e2e.XXXXXX)
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
trap 'kill $(jobs -p) 2>/dev/null; cluster down >/dev/null 2>&1; cluster_cleanup' EXIT

# The promise alone would keep the others waiting at least 950 ms (T - h/2 at the defaults);
# a handover takes a few heartbeats at most.
FEW_HEARTBEATS_MS=500
# Per fault: the observers run this long; the fault lands after WATCH_LEAD seconds.
WATCH_SECONDS=5
WATCH_LEAD=1.5

others() { local skip=$1 out=""; shift; for i in "$@"; do [ "$i" != "$skip" ] && out+="$i "; done; echo "${out% }"; }
not_leader() { [ "$(sql "$1" 'SELECT pg_leader_is_leader()' 2>/dev/null)" != t ]; }
leads_all() { one_agreed_leader 1 2 3 && follows "$1" "$1"; }
follows() { [ "$(sql "$1" 'SELECT pg_leader_leader_id()' 2>/dev/null)" = "$2" ]; }
below() { awk -v v="$1" -v max="$2" 'BEGIN { exit !(v != "" && v < max) }'; }

# A session on node $1 that sleeps, to be SIGKILLed; prints its backend pid.
victim_backend() {
  as_pg psql -X -q -h "$WORK" -p $((BASE_PG_PORT + $1)) -U postgres -d postgres \
    -c "SET application_name = 'crash-victim'; SELECT pg_sleep(60)" >/dev/null 2>&1 &
  wait_for 10 "the victim session" answers 1 sql "$1" \
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'crash-victim' AND state = 'active'"
  sql "$1" "SELECT pid FROM pg_stat_activity WHERE application_name = 'crash-victim'"
}

# lose_leader NAME: takes the leader's PostgreSQL down the way NAME says.
lose_leader() {
  local name=$1 leader=$2
  case $name in
    postmaster-kill) kill -KILL "$(node_pid "$leader")" ;;
    immediate-stop) as_pg "$PGBIN/pg_ctl" -D "$WORK/n$leader" -m immediate -w -t 30 stop >/dev/null ;;
    backend-kill) kill -KILL "$VICTIM" ;;
  esac
}

echo "# start"
cluster up --no-auto-failover --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
check "exactly one leader, agreed by all three" wait_for 15 "one leader" one_agreed_leader 1 2 3

for fault in postmaster-kill immediate-stop backend-kill; do
  echo "# the leader's PostgreSQL lost: $fault"
  wait_for 30 "one leader" one_agreed_leader 1 2 3
  leader=$(leaders_among 1 2 3); leader=${leader% }
  rest=$(others "$leader" 1 2 3)
  [ "$fault" = backend-kill ] && VICTIM=$(victim_backend "$leader")
  out="$WORK/watch-$fault.out"
  cluster watch --seconds "$WATCH_SECONDS" >"$out" 2>&1 &
  watcher=$!
  sleep "$WATCH_LEAD"
  lose_leader "$fault" "$leader"
  if [ "$fault" = backend-kill ]; then
    # PostgreSQL restarts at once after a backend crash, and the primary then takes leadership
    # back: by the time we ask, it may lead again. The observers saw who led in between.
    wait_for 10 "a leader" one_agreed_leader 1 2 3
    wait "$watcher"; watched=$?
    cat "$out"
    check "$fault: another server led while PostgreSQL restarted" \
      grep -Eq "^watch: leader changed from node $leader to node [0-9]+ " "$out"
  else
    check "$fault: the others agree on a new leader" wait_for 10 "a new leader" one_agreed_leader $rest
    wait "$watcher"; watched=$?
    cat "$out"
  fi
  check "$fault: observers on every server: no two true answers overlap" test "$watched" -eq 0
  gap=$(sed -n "s/^watch: leader changed from node $leader to node [0-9]* (term [0-9]*): no true answer for \([0-9.]*\) ms$/\1/p" "$out" | head -1)
  check "$fault: a new leader within a few heartbeats (${gap:-no} ms without one, < $FEW_HEARTBEATS_MS)" below "$gap" "$FEW_HEARTBEATS_MS"
  check "$fault: the old leader handed over on its way out" \
    grep -q "node $leader leaving (.*): lease given up, leadership handed to node" "$WORK/n$leader.log"
  new=$(leaders_among $rest); new=${new% }
  [ "$fault" = backend-kill ] || cluster start "$leader" >/dev/null
  if [ "$(sql "$leader" 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then
    # Nobody was promoted: the old leader is still the writable primary with all the WAL, and
    # leadership follows the writable primary (the standby leader hands back).
    check "$fault: the old server, the writable primary, is back and leads again" \
      wait_for 30 "node $leader to lead" leads_all "$leader"
  else
    check "$fault: the old server is back, following node $new" wait_for 30 "node $leader to follow" follows "$leader" "$new"
    check "$fault: and it is not the leader" not_leader "$leader"
  fi
  check "$fault: role histories: one leader per term, no overlapping leases" cluster check
done

echo "# a follower's PostgreSQL lost: its worker tells the leader"
wait_for 30 "one leader" one_agreed_leader 1 2 3
leader=$(leaders_among 1 2 3); leader=${leader% }
set -- $(others "$leader" 1 2 3); follower=$1
kill -KILL "$(node_pid "$follower")"
check "the leader hears at once that node $follower is going away" \
  wait_for 2 "the leader's log line" grep -q "node $follower is going away" "$WORK/n$leader.log"
check "the leader keeps its lease with the other follower" wait_for 5 "one leader" one_agreed_leader "$leader" "$2"
cluster start "$follower" >/dev/null
check "the follower is back" wait_for 30 "node $follower to follow" follows "$follower" "$leader"
check "role histories: one leader per term, no overlapping leases" cluster check

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
