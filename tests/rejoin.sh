#!/usr/bin/env bash
# End-to-end: `pg_leader-cluster rejoin` (src/postgres/rejoin.sh) rebuilds a former primary as a
# standby of the new leader, on real servers. Node 1, the primary, is killed; node 2 is promoted
# by hand and leads; node 1 comes back as a primary on the old timeline and writes a row the
# others never see. The rejoin must make node 1 a streaming standby of node 2 with node 2's rows
# and without its own lost one, keeping node 1's own configuration (node id, conninfo) and its
# own Raft state (term, role history); a rerun does nothing. On a cluster without
# wal_log_hints the rejoin is refused, naming wal_log_hints, and node 1 runs on as it was. A
# rejoin killed during pg_rewind is not finished by a rerun, which says to rebuild.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN (PostgreSQL's programs),
# PG_LEADER_NFT_TABLE, REJOIN_PG_PORT and REJOIN_RAFT_PORT (base ports, 55900 and 7900).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${REJOIN_PG_PORT:-55900}
RAFT_PORT=${REJOIN_RAFT_PORT:-7900}
source tests/lib.sh
WORK=$(mktemp -d /tmp/rejoin-e2e.XXXXXX)
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
# The rejoin's work directories (n1.pg_leader-rejoin) are inside $WORK: `down` removes them.
trap 'cluster down >/dev/null 2>&1; cluster_cleanup' EXIT
export PATH="$PGBIN:$PATH"

leads() { one_agreed_leader "$@" && [ "$(sql "$1" 'SELECT pg_leader_is_leader()' 2>/dev/null)" = t ]; }
marker_step() { sed -n 's/^step=//p' "$WORK/n1.pg_leader-rejoin/marker" 2>/dev/null | tail -1; }
# The configuration files of node 1, with their contents.
own_conf() { (cd "$WORK/n1" && sha256sum ./*.conf); }
cluster_conninfo() { echo "host=$WORK port=$((BASE_PG_PORT + $1)) user=postgres dbname=postgres"; }
history_head() { head -1 "$WORK/n$1/pg_leader/pg_leader.history"; }

# A row written on node 1 while it is a primary that does not lead: the write fence refuses it,
# so the fence is lifted for that statement (pg_leader.fence_writes is a reload setting).
write_on_node_1() {
  sql 1 "ALTER SYSTEM SET pg_leader.fence_writes = off" >/dev/null &&
    sql 1 "SELECT pg_reload_conf()" >/dev/null &&
    wait_for 10 "the fence off on node 1" answers off sql 1 "SHOW pg_leader.fence_writes" &&
    sql 1 "$1" >/dev/null
  local status=$?
  sql 1 "ALTER SYSTEM RESET pg_leader.fence_writes" >/dev/null
  sql 1 "SELECT pg_reload_conf()" >/dev/null
  return $status
}

# up [options]: a fresh cluster whose primary, node 1, has a table with one row in it; then
# node 1 killed, node 2 promoted by hand and leading, node 1 started again on the old timeline
# with a row of its own that nobody else has.
diverge() {
  cluster down >/dev/null 2>&1
  cluster up --no-auto-failover --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" "$@" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
  wait_for 15 "node 1 to lead" leads 1 2 3 || { echo "FAILED - node 1 never led"; exit 1; }
  sql 1 "CREATE TABLE t (v text); INSERT INTO t VALUES ('from node 1, replicated')" >/dev/null
  wait_for 15 "the row on node 2" answers 1 sql 2 "SELECT count(*) FROM t"
  cluster kill 1 >/dev/null
  wait_for 15 "a standby leader" one_agreed_leader 2 3
  as_pg "$PGBIN/pg_ctl" -D "$WORK/n2" promote -w -t 60 >/dev/null
  check "node 2 promoted by hand leads" wait_for 15 "node 2 to lead" leads 2 3
  sql 2 "INSERT INTO t VALUES ('from node 2')" >/dev/null
  cluster start 1 >/dev/null
  check "node 1 is back as a primary on timeline 1, following node 2" \
    wait_for 15 "node 1 to follow node 2" answers "f|1|2" \
    sql 1 "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint()), pg_leader_leader_id()"
  check "node 1 writes a row of its own on timeline 1" \
    write_on_node_1 "CREATE TABLE lost (v text); INSERT INTO lost VALUES ('only on node 1')"
}

echo "# a former primary rejoins as a standby of the leader"
diverge
term_before=$(sql 1 "SELECT pg_leader_term()")
history_before=$(history_head 1)
conf_before=$(own_conf)
out=$(cluster rejoin 2 2>&1); status=$?
check "rejoin of the leader itself is refused, saying so" \
  test "$status" -ne 0 -a -n "$(grep 'node 2 is the leader' <<<"$out")"
began=$(date +%s%N)
out=$(cluster rejoin 1 2>&1); status=$?
took_ms=$((($(date +%s%N) - began) / 1000000))
echo "$out" | sed 's/^/  /'
echo "  the rejoin took $took_ms ms (stop, dry run, rewind, start)"
check "rejoin 1 succeeds" test "$status" -eq 0
check "it rewound node 1 (pg_rewind ran, not only its dry run)" grep -q 'step: rewound' <<<"$out"
check "node 1 is in recovery" wait_for 30 "node 1 in recovery" answers t sql 1 "SELECT pg_is_in_recovery()"
check "node 1 streams from node 2 (pg_stat_wal_receiver)" \
  wait_for 30 "node 1 streaming" answers streaming sql 1 "SELECT status FROM pg_stat_wal_receiver"
check "node 2 sends to node 1 as pg_leader_1 (pg_stat_replication)" \
  wait_for 30 "node 2 sending" answers streaming sql 2 "SELECT state FROM pg_stat_replication WHERE application_name = 'pg_leader_1'"
check "node 1 has node 2's row" wait_for 30 "the row on node 1" answers 1 sql 1 "SELECT count(*) FROM t WHERE v = 'from node 2'"
sql 2 "INSERT INTO t VALUES ('after the rejoin')" >/dev/null
check "and what node 2 writes next" wait_for 30 "the new row on node 1" answers 1 sql 1 "SELECT count(*) FROM t WHERE v = 'after the rejoin'"
check "node 1's own row of timeline 1 is gone" answers 0 sql 1 "SELECT count(*) FROM pg_class WHERE relname = 'lost'"
check "node 1 keeps its own node id" answers 1 sql 1 "SHOW pg_leader.node_id"
check "node 1 keeps its own conninfo (node.conf)" answers "$(cluster_conninfo 1)" sql 1 "SHOW pg_leader.conninfo"
check "node 1's configuration files are its own, unchanged but for primary_conninfo" \
  test "$(own_conf | grep -v postgresql.auto.conf)" = "$(grep -v postgresql.auto.conf <<<"$conf_before")"
check "node 1's pg_leader worker runs and follows node 2" \
  wait_for 15 "node 1's worker to follow" answers "follower|2|" sql 1 "SELECT role, leader_id, error FROM pg_leader_status()"
term_after=$(sql 1 "SELECT pg_leader_term()")
check "node 1's term is its own, not reset (before $term_before, after $term_after)" test "$term_after" -ge "$term_before"
check "node 1's role history is its own (not node 2's copy)" \
  test "$(history_head 1)" = "$history_before" -a "$(history_head 1)" != "$(history_head 2)"
# The restarted worker reports a finished rejoin once, in its log, and removes the marker.
reported_done() { grep -q "pg_leader: rejoined as a standby of node 2" "$WORK/n1.log" && [ -z "$(marker_step)" ]; }
rejoin_done() { [ "$(marker_step)" = done ] || reported_done; }
check "the marker says done, or the restarted worker reported it done and removed it" \
  wait_for 10 "the rejoin reported done" rejoin_done
pid=$(node_pid 1)
out=$(cluster rejoin 1 2>&1); status=$?
echo "$out" | sed 's/^/  /'
check "a rerun succeeds and says there is nothing to do" \
  test "$status" -eq 0 -a -n "$(grep 'nothing to do' <<<"$out")"
check "the rerun neither rewound nor restarted node 1" \
  test -z "$(grep -E 'pg_rewind|step:' <<<"$out")" -a "$(node_pid 1)" = "$pid"
check "node 1 still streams" answers streaming sql 1 "SELECT status FROM pg_stat_wal_receiver"
check "role histories: one leader per term, no overlapping leases" cluster check

echo "# without wal_log_hints the rejoin is refused and node 1 runs on as it was"
diverge --no-wal-log-hints
conf_before=$(own_conf)
history_before=$(history_head 1)
out=$(cluster rejoin 1 2>&1); status=$?
echo "$out" | sed 's/^/  /'
check "rejoin 1 fails" test "$status" -ne 0
check "the message names wal_log_hints" grep -q 'wal_log_hints' <<<"$out"
check "the marker says refused, with the reason" \
  test "$(marker_step)" = refused -a -n "$(grep '^reason=.*wal_log_hints' "$WORK/n1.pg_leader-rejoin/marker")"
check "node 1 runs again as a primary" answers f sql 1 "SELECT pg_is_in_recovery()"
check "node 1 still has its own row (nothing removed)" answers 1 sql 1 "SELECT count(*) FROM lost"
check "and the replicated one" answers 1 sql 1 "SELECT count(*) FROM t"
check "no standby.signal was written" test ! -e "$WORK/n1/standby.signal"
check "node 1's configuration files are unchanged" test "$(own_conf)" = "$conf_before"
check "node 1's worker runs with its own state" \
  wait_for 15 "node 1's worker to follow" answers "follower|2" sql 1 "SELECT role, leader_id FROM pg_leader_status()"
check "node 1's role history is its own" test "$(history_head 1)" = "$history_before"
# Alone, node 1 cannot hold a lease (a leader stopping may hand over to it first: then it
# steps down once its majority is gone).
cluster stop 3 >/dev/null
cluster stop 2 >/dev/null
wait_for 15 "node 1 without a lease" answers f sql 1 "SELECT pg_leader_is_leader()"
out=$(cluster rejoin 1 2>&1); status=$?
echo "$out" | sed 's/^/  /'
check "with no leader, rejoin is refused, saying so" \
  test "$status" -ne 0 -a -n "$(grep 'no leader is known' <<<"$out")"
check "and leaves the marker as it was" answers refused marker_step

echo "# a rejoin cut short during pg_rewind is not finished by a rerun: it says to rebuild"
# Every process of the rejoin, the outermost first, as a power cut would take them.
tree() { echo "$1"; local c; for c in $(pgrep -P "$1"); do tree "$c"; done; }
diverge
cluster rejoin 1 >"$WORK/cut.log" 2>&1 &
tool=$!
check "pg_rewind starts" wait_for 60 "the step rewinding" answers rewinding marker_step
kill -9 $(tree "$tool") 2>/dev/null
wait "$tool" 2>/dev/null
out=$(cluster rejoin 1 2>&1); status=$?
echo "$out" | sed 's/^/  /'
check "the rerun fails and says to rebuild from the leader" \
  test "$status" -ne 0 -a -n "$(grep 'pg_basebackup' <<<"$out")"
check "the rerun did not run pg_rewind again" test -z "$(grep -E '^pg_rewind' <<<"$out")"
check "the marker says failed" answers failed marker_step
check "node 1 is left stopped" test -z "$(node_pid 1)" -o ! -e "/proc/$(node_pid 1)"
check "node 1's own files are kept for the rebuild" \
  test -s "$WORK/n1.pg_leader-rejoin/saved/conf/node.conf" -a -s "$WORK/n1.pg_leader-rejoin/saved/state/pg_leader.state"

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
