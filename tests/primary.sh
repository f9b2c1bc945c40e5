#!/usr/bin/env bash
# End-to-end: leadership follows the writable primary, on real servers (a primary and two
# pg_basebackup standbys, made by pg_leader-cluster). A fresh cluster elects its primary; a
# standby elected while the primary was cut off hands leadership back after the heal;
# examples/failover.sh has nothing to do on a healthy cluster; a former primary left on an
# older timeline (a standby promoted by hand while it was down) never leads again, and
# pg_leader_status().error says why. Every scenario ends by checking the role histories.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN (PostgreSQL's programs),
# PG_LEADER_NFT_TABLE, PRIMARY_PG_PORT and PRIMARY_RAFT_PORT (base ports, 55800 and 7800).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${PRIMARY_PG_PORT:-55800}
RAFT_PORT=${PRIMARY_RAFT_PORT:-7800}
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_primary_e2e.XXXXXX)
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
trap 'cluster down >/dev/null 2>&1; cluster_cleanup' EXIT
# psql and examples/failover.sh must be the installation's under test.
export PATH="$PGBIN:$PATH"

# The primary hands back after one heartbeat to be heard, then a handover; a second is plenty
# on a loaded machine, where the promise alone (an election timeout) is already 1 s.
HAND_BACK_MS=3000
# How long a former primary on an older timeline is watched, never leading.
WATCH_OLD_PRIMARY_S=4

now_ms() { echo $(($(date +%s%N) / 1000000)); }
leads() { one_agreed_leader 1 2 3 && [ "$(sql "$1" 'SELECT pg_leader_is_leader()' 2>/dev/null)" = t ]; }
up() {
  cluster down >/dev/null 2>&1
  cluster up --no-auto-failover --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
}
conn() { echo "host=$WORK port=$((BASE_PG_PORT + $1)) user=postgres dbname=postgres"; }
failover() { as_pg env PATH="$PATH" bash examples/failover.sh "$@"; }
below() { [ -n "$1" ] && [ "$1" -lt "$2" ]; }
never_leads_for() {
  local node=$1 end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    [ "$(sql "$node" 'SELECT pg_leader_is_leader()' 2>/dev/null)" = t ] && return 1
    sleep 0.05
  done
}

for round in 1 2; do
  echo "# a fresh cluster, round $round: the primary leads"
  up
  ready=$(now_ms)
  check "round $round: node 1, the primary, holds the lease, agreed by all three" wait_for 15 "node 1 to lead" leads 1
  echo "  node 1 led $(($(now_ms) - ready)) ms after \`up\` returned (every server accepting connections)"
done
check "role histories: one leader per term, no overlapping leases" cluster check

echo "# examples/failover.sh on a healthy cluster"
out=$(failover "$(conn 1)" "$(conn 2)" "$(conn 3)" 2>&1); status=$?
echo "$out" | sed 's/^/  /'
check "failover.sh exits 0" test "$status" -eq 0
check "failover.sh says there is nothing to do" grep -q '^nothing to do: node 1 leads' <<<"$out"
check "failover.sh neither promotes nor re-points" test -z "$(grep -E 'promote|point|warning' <<<"$out")"
check "both standbys still stream from node 1" answers 2 sql 1 "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"

for trial in 1 2; do
  echo "# the primary cut off until a standby leads, then healed (trial $trial)"
  wait_for 15 "node 1 to lead" leads 1
  cluster partition 1/2,3 >/dev/null
  check "trial $trial: the standbys elect one of them" wait_for 15 "a standby leader" one_agreed_leader 2 3
  dry=$(failover --dry-run "$(conn 1)" "$(conn 2)" "$(conn 3)" 2>&1); status=$?
  check "trial $trial: failover.sh does not promote a standby leader while the primary is writable" \
    test "$status" -ne 0 -a -z "$(grep '^would: promote' <<<"$dry")"
  cluster heal >/dev/null
  healed=$(now_ms)
  # One psql per poll, on node 1 alone: a poll of all three costs more than the hand-back.
  wait_for 15 "node 1 to answer true" answers t sql 1 'SELECT pg_leader_is_leader()'
  took=$(($(now_ms) - healed))
  check "trial $trial: the primary holds the lease again ${took} ms after the heal (< $HAND_BACK_MS)" below "$took" "$HAND_BACK_MS"
  check "trial $trial: and all three agree that it leads" wait_for 15 "node 1 to lead" leads 1
done
check "role histories: one leader per term, no overlapping leases" cluster check

echo "# a former primary on an older timeline"
up
wait_for 15 "node 1 to lead" leads 1
cluster stop 1 >/dev/null
check "node 1 stopped: a standby leads" wait_for 15 "a standby leader" one_agreed_leader 2 3
new=$(leaders_among 2 3); new=${new% }
sql "$new" "SELECT pg_promote(wait => true, wait_seconds => 60)" >/dev/null
sql "$new" "CHECKPOINT" >/dev/null
check "node $new promoted by hand: timeline 2" answers 2 sql "$new" "SELECT timeline_id FROM pg_control_checkpoint()"
cluster start 1 >/dev/null
check "node 1 is back as a primary on timeline 1" \
  test "$(sql 1 'SELECT pg_is_in_recovery()')" = f -a "$(sql 1 'SELECT timeline_id FROM pg_control_checkpoint()')" = 1
check "node 1 follows node $new" wait_for 15 "node 1 to follow" answers "$new" sql 1 'SELECT pg_leader_leader_id()'
check "node 1 never leads (watched ${WATCH_OLD_PRIMARY_S} s)" never_leads_for 1 "$WATCH_OLD_PRIMARY_S"
check "node $new still leads" answers t sql "$new" 'SELECT pg_leader_is_leader()'
error=$(sql 1 'SELECT error FROM pg_leader_status()')
echo "  node 1: pg_leader_status().error = $error"
check "node 1's pg_leader_status().error says it is on an older timeline" \
  grep -q 'primary on timeline 1, older than timeline 2 of another server: not leading' <<<"$error"
out=$(failover "$(conn 1)" "$(conn 2)" "$(conn 3)" 2>&1)
echo "$out" | sed 's/^/  /'
check "failover.sh leaves node 1 alone and says to rebuild it" \
  test -n "$(grep 'warning: node 1 is a primary but not the leader' <<<"$out")" -a -z "$(grep 'promote' <<<"$out")"
check "role histories: one leader per term, no overlapping leases" cluster check

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
