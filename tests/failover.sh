#!/usr/bin/env bash
# End-to-end: PostgreSQL fails over by itself (`pg_leader.auto_failover`, on in clusters that
# `pg_leader-cluster up` makes). Three real servers; an application writes through one libpq
# multi-host string (target_session_attrs=read-write) the whole time. The primary is lost four
# ways: its postmaster SIGKILLed, a fast stop, a partition of its pg_leader traffic (nftables),
# and its pg_leader worker paused (SIGSTOP). Each time: a standby is promoted and accepts the
# application's writes, it is the leader, the other standby streams from it, the old primary
# comes back as a streaming standby of the new one (`pg_leader.auto_rejoin`), and no server
# answered pg_leader_is_leader() at overlapping moments (`pg_leader-cluster watch`). Then
# switchovers both ways with the writer running: no acknowledged write missing at the end; and a
# standby left with WAL past the new primary's fork is rewound (it cannot stream otherwise).
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN, PG_LEADER_NFT_TABLE,
# FAILOVER_PG_PORT and FAILOVER_RAFT_PORT (base ports, 55850 and 7850), SWITCHOVERS (10),
# FAULTS (all four), KEEP_OUTPUT (a folder to keep the writer's records in).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${FAILOVER_PG_PORT:-55850}
RAFT_PORT=${FAILOVER_RAFT_PORT:-7850}
SWITCHOVERS=${SWITCHOVERS:-10}
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_failover_e2e.XXXXXX)
chmod 755 "$WORK"
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
WRITER="/usr/bin/python3 tests/support/writer.py"
STOP_FILE=$(mktemp -u /tmp/pg_leader_failover_stop.XXXXXX)
OUT=$(mktemp -d /tmp/pg_leader_failover_out.XXXXXX)
chown postgres: "$OUT"
cleanup() {
  touch "$STOP_FILE"
  kill $(jobs -p) 2>/dev/null
  cluster heal >/dev/null 2>&1
  for i in 1 2 3; do cluster resume "$i" >/dev/null 2>&1; done
  [ -n "${KEEP_OUTPUT:-}" ] && cp -r "$OUT" "$KEEP_OUTPUT" && cp "$WORK"/n*.log "$KEEP_OUTPUT"/
  cluster down >/dev/null 2>&1
  rm -rf "$OUT" "$STOP_FILE"
  cluster_cleanup
}
trap cleanup EXIT

wrote_elsewhere() { $WRITER downtime "$OUT/writes.tsv" "$1" "$2" >/dev/null; }

CONN="host=$WORK,$WORK,$WORK port=$((BASE_PG_PORT + 1)),$((BASE_PG_PORT + 2)),$((BASE_PG_PORT + 3)) user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"

echo "# start: auto_failover on"
cluster up --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
check "node 1 is the primary and leads; both standbys stream from it" wait_for 20 "a whole cluster" whole 1
sql 1 "CREATE TABLE acked (n bigint PRIMARY KEY)" >/dev/null
as_pg $WRITER run "$CONN" "$STOP_FILE" "$OUT/writes.tsv" 900 &
writer=$!
wait_for 10 "the first writes" bash -c "grep -q '	ok	' '$OUT/writes.tsv'"

# lose FAULT NODE: takes the primary away the way FAULT says.
lose() {
  case $1 in
    postmaster-kill) kill -KILL "$(node_pid "$2")" ;;
    fast-stop) node_stop "$2" fast ;;
    partition) cluster partition "$2/$(others "$2")" >/dev/null ;;
    worker-pause) cluster pause "$2" >/dev/null ;;
  esac
}
# bring_back FAULT NODE: ends the fault; the node must then rejoin by itself.
bring_back() {
  case $1 in
    postmaster-kill | fast-stop) sleep 1; cluster start "$2" >/dev/null ;;
    partition) cluster heal >/dev/null ;;
    worker-pause) cluster resume "$2" >/dev/null ;;
  esac
}
others() { local i out=""; for i in 1 2 3; do [ "$i" != "$1" ] && out+="$i,"; done; echo "${out%,}"; }

for fault in ${FAULTS:-postmaster-kill fast-stop partition worker-pause}; do
  echo "# the primary lost: $fault"
  wait_for 60 "a primary that leads" current_primary >/dev/null
  old=$(current_primary)
  cluster watch --seconds 8 >"$OUT/watch-$fault.out" 2>&1 &
  watcher=$!
  sleep 1
  fault_us=$($WRITER now)
  lose "$fault" "$old"
  check "$fault: a standby is promoted and takes the application's writes" \
    wait_for 15 "a write on another server" wrote_elsewhere "$fault_us" $((BASE_PG_PORT + old))
  echo "# write downtime: $($WRITER downtime "$OUT/writes.tsv" "$fault_us" $((BASE_PG_PORT + old))) ms"
  wait_for 10 "a new primary" promoted_among_others "$old" >/dev/null
  new=$(promoted_among_others "$old")
  check "$fault: the new primary is a former standby that leads" test -n "$new"
  wait "$watcher"; watched=$?
  check "$fault: no two servers answered true at overlapping moments" test "$watched" -eq 0
  [ "$watched" -eq 0 ] || cat "$OUT/watch-$fault.out"
  bring_back "$fault" "$old"
  check "$fault: the old primary comes back as a streaming standby of the new one; the cluster is whole" \
    wait_for 60 "node $old to rejoin" whole "$new"
done

# Failures may lose what the old primary acknowledged but had not sent (asynchronous
# replication); switchovers wait for the target's WAL and must lose nothing.
switch_from=$(awk 'END { print $1 + 0 }' "$OUT/writes.tsv")
echo "# switchovers both ways, $SWITCHOVERS times, the writer running"
for k in $(seq 1 "$SWITCHOVERS"); do
  wait_for 60 "a primary that leads" current_primary >/dev/null
  p=$(current_primary)
  target=$(( p % 3 + 1 ))
  sql "$p" "SELECT pg_leader_transfer_leadership($target)" >/dev/null 2>&1
  wait_for 60 "node $target to be the primary with the others streaming" whole "$target" || break
  done_switchovers=$k
done
check "every switchover ended with the target the primary, the others streaming from it" \
  test "${done_switchovers:-0}" = "$SWITCHOVERS"

touch "$STOP_FILE"
wait "$writer"
p=$(current_primary)
sql "$p" "SELECT n FROM acked" >"$OUT/present.txt"
echo "# failures: $($WRITER missing "$OUT/writes.tsv" "$OUT/present.txt" 0 "$switch_from" 2>&1)"
check "switchovers: no acknowledged write missing" \
  $WRITER missing "$OUT/writes.tsv" "$OUT/present.txt" "$switch_from"
# A standby that still streams from the old primary when the old primary stops (its rejoin's
# shutdown checkpoint) holds WAL past the point where the new primary's timeline forked:
# PostgreSQL cannot follow the new primary from there, and the standby is rewound like a former
# primary. Its worker is paused through the switchover, so that it is not re-pointed in time.
echo "# a standby that received the old primary's last WAL is rewound too"
p=$(current_primary)
target=$(( p % 3 + 1 ))
lagger=$(( target % 3 + 1 ))
cluster pause "$lagger" >/dev/null
sql "$p" "SELECT pg_leader_transfer_leadership($target)" >/dev/null 2>&1
old_back() { [ "$(in_recovery "$target")" = f ] && streams_from "$p" "$target"; }
wait_for 60 "node $p to stream from node $target" old_back
cluster resume "$lagger" >/dev/null
check "a standby past the new primary's fork is rewound and streams from it; the cluster is whole" \
  wait_for 90 "node $lagger to stream from node $target" whole "$target"
check "the standby had WAL past the fork (PostgreSQL said so) and pg_leader rewound it" \
  bash -c "grep -q 'forked off current database system timeline' '$WORK/n$lagger.log' &&
    grep -q \"pg_leader: standby with WAL the leader's history lacks: rejoining\" '$WORK/n$lagger.log'"

grep -E "pg_leader: (promoting|streaming from|rejoin|former|standby with)" "$WORK"/n*.log | sed 's/^/# /' | tail -n 12
check "the role histories show no term with two leaders and no two leases at once" cluster check

echo
echo "failover: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
