#!/usr/bin/env bash
# End-to-end: maintenance mode (`pg_leader_pause()`, `pg_leader_resume()`) on three real servers
# with auto_failover and auto_rejoin on (as `pg_leader-cluster up` makes them). Paused from a
# follower and from the leader, every server reports it; a role outside pgleader_admin is
# refused. The primary's postmaster is SIGKILLed while paused: the election goes on (a standby
# may lead) but for at least three election timeouts nothing is promoted, no standby is
# re-pointed and no server takes a write. Resumed: the standby that leads promotes, writes
# succeed through one libpq multi-host string (target_session_attrs=read-write), and the old
# primary, started again, rejoins as a streaming standby by itself.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN, PAUSE_PG_PORT and
# PAUSE_RAFT_PORT (base ports, 56300 and 8300).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${PAUSE_PG_PORT:-56300}
RAFT_PORT=${PAUSE_RAFT_PORT:-8300}
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_pause_e2e.XXXXXX)
chmod 755 "$WORK"
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
cleanup() {
  cluster down >/dev/null 2>&1
  cluster_cleanup
}
trap cleanup EXIT

CONN="host=$WORK,$WORK,$WORK port=$((BASE_PG_PORT + 1)),$((BASE_PG_PORT + 2)),$((BASE_PG_PORT + 3)) user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"
write_through_conn() { as_pg psql -X -q -At -d "$CONN" -c "INSERT INTO marks VALUES ($1)" >/dev/null 2>&1; }
paused_on() { sql "$1" "SELECT paused FROM pg_leader_status()" 2>/dev/null; }
# Every node in "$@" reports maintenance mode as $1.
all_report() {
  local want=$1 i; shift
  for i in "$@"; do [ "$(paused_on "$i")" = "$want" ] || return 1; done
}
# The node among 2 and 3 that both name as leader, if any.
standby_leader() {
  local l2 l3
  l2=$(sql 2 "SELECT pg_leader_leader_id()" 2>/dev/null)
  l3=$(sql 3 "SELECT pg_leader_leader_id()" 2>/dev/null)
  [ -n "$l2" ] && [ "$l2" = "$l3" ] && [ "$l2" != 1 ] && echo "$l2"
}

echo "# start: auto_failover and auto_rejoin on"
cluster up --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
check "node 1 is the primary and leads; both standbys stream from it" wait_for 30 "a whole cluster" whole 1
sql 1 "CREATE TABLE marks (n int); CREATE ROLE plain LOGIN" >/dev/null
T=$(sql 1 "SELECT setting::int FROM pg_settings WHERE name = 'pg_leader.election_timeout'")
echo "# election timeout ${T} ms"

wait_for 10 "the role to replicate" answers 1 sql 3 "SELECT count(*) FROM pg_roles WHERE rolname = 'plain'"
refusal=$(as_pg psql -X -q -At -h "$WORK" -p $((BASE_PG_PORT + 2)) -U plain -d postgres -c "SELECT pg_leader_pause()" 2>&1)
check "a role outside pgleader_admin may not pause" grep -q "permission denied for function pg_leader_pause" <<<"$refusal"
resume_refused() { ! as_pg psql -X -q -At -h "$WORK" -p $((BASE_PG_PORT + 3)) -U plain -d postgres -c "SELECT pg_leader_resume()" >/dev/null 2>&1; }
check "nor resume" resume_refused
check "and nothing was paused by them" all_report f 1 2 3

check "pg_leader_pause() on a follower (node 2) changes the state: true" answers t sql 2 "SELECT pg_leader_pause()"
check "every server reports paused" wait_for 5 "every server paused" all_report t 1 2 3
check "pausing again on the leader changes nothing: false" answers f sql 1 "SELECT pg_leader_pause()"
check "pg_leader_resume() on the leader: true" answers t sql 1 "SELECT pg_leader_resume()"
check "every server reports not paused" wait_for 5 "every server resumed" all_report f 1 2 3
check "resuming again on a follower changes nothing: false" answers f sql 3 "SELECT pg_leader_resume()"
check "pg_leader_pause() on the leader: true" answers t sql 1 "SELECT pg_leader_pause()"
check "every server reports paused again" wait_for 5 "every server paused" all_report t 1 2 3
check "the log says it at LOG with who asked and the term" \
  grep -q "pg_leader: maintenance mode on (paused by node 2, term" "$WORK/n3.log"
check "pg_leader_history() records pause and resume" \
  answers 3 sql 2 "SELECT count(*) FROM pg_leader_history() WHERE cause LIKE 'pause (maintenance mode on%' OR cause LIKE 'resume (maintenance mode off%'"
check "the write fence is unchanged: the leader holding its lease takes writes while paused" \
  write_through_conn 0

echo "# the primary's postmaster SIGKILLed while paused"
conninfo3=$(sql 3 "SHOW primary_conninfo")
kill -KILL "$(node_pid 1)"
killed_at=$SECONDS
# Watch for at least three election timeouts (and no less than 5 s): nothing promoted, no
# re-pointing, no write taken anywhere.
watch_until=$(( SECONDS + (3 * T + 999) / 1000 + 2 ))
[ $((watch_until - SECONDS)) -ge 5 ] || watch_until=$((SECONDS + 5))
promoted=0; repointed=0; written=0; leader_seen=""
k=1
while [ $SECONDS -lt $watch_until ]; do
  for i in 2 3; do [ "$(in_recovery "$i")" = f ] && promoted=1; done
  [ "$(sql 3 "SHOW primary_conninfo" 2>/dev/null)" = "$conninfo3" ] || repointed=1
  write_through_conn "$k" && written=1
  [ -n "$leader_seen" ] || leader_seen=$(standby_leader)
  k=$((k + 1))
  sleep 0.2
done
echo "# watched $((SECONDS - killed_at)) s; leader among the standbys: ${leader_seen:-none}"
check "paused: no standby was promoted" test "$promoted" = 0
check "paused: no standby was re-pointed (primary_conninfo unchanged)" test "$repointed" = 0
check "paused: no server took a write" test "$written" = 0
check "paused: the election went on, a standby leads" wait_for 10 "a standby leader" standby_leader
check "both standbys still report paused" all_report t 2 3

echo "# resume"
check "pg_leader_resume() on a standby: true" answers t sql 3 "SELECT pg_leader_resume()"
resumed_at=$SECONDS
check "after resume, a write succeeds through the multi-host string" wait_for 20 "a write" write_through_conn 100000
new=$(standby_leader)
echo "# writable $((SECONDS - resumed_at)) s after resume; node ${new:-?} leads"
check "the standby that leads was promoted" answers f in_recovery "${new:-0}"
cluster start 1 >/dev/null
check "the old primary, started again, rejoins as a streaming standby of the new one" \
  wait_for 90 "node 1 to rejoin" whole "${new:-0}"
check "no server reports paused" all_report f 1 2 3
grep -hE "pg_leader: (maintenance mode|promoting|streaming from|former primary: rejoining)" "$WORK"/n*.log | sed 's/^/# /' | tail -n 12
check "the role histories show no term with two leaders and no two leases at once" cluster check

echo
echo "pause: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
