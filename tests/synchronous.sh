#!/usr/bin/env bash
# End-to-end: the synchronous quorum (`pg_leader.synchronous = quorum`) loses no acknowledged
# write. Three real servers from `pg_leader-cluster up --set "pg_leader.synchronous = quorum"`;
# an application writes unique numbers through one libpq multi-host string
# (target_session_attrs=read-write) and records every acknowledgement. The primary keeps
# synchronous_standby_names = 'ANY 1 (the two others)' and both standbys show sync_state quorum.
# Then the primary's postmaster is SIGKILLed ROUNDS times: each time a standby is promoted,
# sets its own list, takes the writes, and the old primary comes back as its standby. At the
# end every acknowledged number is on the final primary. Figures: failovers, writes
# acknowledged, acknowledged writes lost, write downtime per failover.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN, SYNC_PG_PORT and
# SYNC_RAFT_PORT (base ports, 56700 and 8700), ROUNDS (3), KEEP_OUTPUT (a folder to keep the
# writer's records and the logs in).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${SYNC_PG_PORT:-56700}
RAFT_PORT=${SYNC_RAFT_PORT:-8700}
ROUNDS=${ROUNDS:-3}
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_sync_e2e.XXXXXX)
chmod 755 "$WORK"
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
WRITER="/usr/bin/python3 tests/support/writer.py"
STOP_FILE=$(mktemp -u /tmp/pg_leader_sync_stop.XXXXXX)
OUT=$(mktemp -d /tmp/pg_leader_sync_out.XXXXXX)
chown postgres: "$OUT"
cleanup() {
  touch "$STOP_FILE"
  kill $(jobs -p) 2>/dev/null
  [ -n "${KEEP_OUTPUT:-}" ] && cp -r "$OUT" "$KEEP_OUTPUT" && cp "$WORK"/n*.log "$KEEP_OUTPUT"/
  cluster down >/dev/null 2>&1
  rm -rf "$OUT" "$STOP_FILE"
  cluster_cleanup
}
trap cleanup EXIT

wrote_elsewhere() { $WRITER downtime "$OUT/writes.tsv" "$1" "$2" >/dev/null; }
# The list node $1 must keep: ANY 1 of the two others.
expected_list() {
  local i names=()
  for i in 1 2 3; do [ "$i" = "$1" ] || names+=("pg_leader_$i"); done
  echo "ANY 1 (${names[0]}, ${names[1]})"
}
keeps_its_list() { answers "$(expected_list "$1")" sql "$1" "SHOW synchronous_standby_names"; }
both_standbys_quorum() {
  answers 2 sql "$1" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum' AND application_name LIKE 'pg_leader_%'"
}

rejoined() { whole "$1" && both_standbys_quorum "$1"; }

CONN="host=$WORK,$WORK,$WORK port=$((BASE_PG_PORT + 1)),$((BASE_PG_PORT + 2)),$((BASE_PG_PORT + 3)) user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"

echo "# start: auto_failover on, pg_leader.synchronous = quorum"
cluster up --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" --set "pg_leader.synchronous = quorum" >/dev/null ||
  { echo "FAILED - cluster up"; exit 1; }
check "node 1 is the primary and leads; both standbys stream from it" wait_for 30 "a whole cluster" whole 1
check "the primary keeps synchronous_standby_names = '$(expected_list 1)'" wait_for 10 "the list" keeps_its_list 1
check "pg_stat_replication shows both standbys with sync_state quorum" wait_for 10 "quorum standbys" both_standbys_quorum 1
sql 1 "CREATE TABLE acked (n bigint PRIMARY KEY)" >/dev/null
as_pg $WRITER run "$CONN" "$STOP_FILE" "$OUT/writes.tsv" 900 &
writer=$!
wait_for 10 "the first writes" bash -c "grep -q '	ok	' '$OUT/writes.tsv'"

failovers=0
downtimes=""
for round in $(seq 1 "$ROUNDS"); do
  wait_for 60 "a primary that leads" current_primary >/dev/null
  old=$(current_primary)
  # Let writes flow for a while, so that some are in flight when the primary dies.
  sleep 2
  fault_us=$($WRITER now)
  kill -KILL "$(node_pid "$old")"
  check "round $round: a standby is promoted and takes the application's writes" \
    wait_for 30 "a write on another server" wrote_elsewhere "$fault_us" $((BASE_PG_PORT + old))
  downtime=$($WRITER downtime "$OUT/writes.tsv" "$fault_us" $((BASE_PG_PORT + old)))
  downtimes+="$downtime "
  wait_for 10 "a new primary" promoted_among_others "$old" >/dev/null
  new=$(promoted_among_others "$old")
  [ -n "$new" ] && failovers=$((failovers + 1))
  check "round $round: the new primary (node ${new:-?}) sets its own list" wait_for 10 "its list" keeps_its_list "${new:-0}"
  sleep 1
  cluster start "$old" >/dev/null
  check "round $round: the old primary comes back as a streaming standby; both standbys quorum" \
    wait_for 90 "node $old to rejoin" rejoined "$new"
done

touch "$STOP_FILE"
wait "$writer"
p=$(current_primary)
sql "$p" "SELECT n FROM acked" >"$OUT/present.txt"
acknowledged=$(awk -F'\t' '$4 == "ok"' "$OUT/writes.tsv" | wc -l)
lost=$($WRITER missing "$OUT/writes.tsv" "$OUT/present.txt" 2>&1 | head -1)
echo "# failovers run: $failovers; writes acknowledged: $acknowledged; acknowledged writes lost: $lost; write downtime per failover (ms): $downtimes"
check "no acknowledged write missing on the final primary (node $p)" \
  $WRITER missing "$OUT/writes.tsv" "$OUT/present.txt"
grep -E "pg_leader: (promoting|synchronous_standby_names)" "$WORK"/n*.log | sed 's/^/# /' | tail -n 8
check "the role histories show no term with two leaders and no two leases at once" cluster check

echo
echo "synchronous: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
