#!/usr/bin/env bash
# End-to-end: a start waits only for the promises it may still owe. Three real servers stopped
# cleanly (pg_ctl stop -m fast) and started again in the same boot each take their clean-stop
# record (pg_leader.stopped) and wait only for what is left of their last promise, not a blind
# election timeout; the record serves one start only. After a crash (every postmaster
# SIGKILLed) no record is there and the full wait stays: no leader before one election
# timeout has passed since the first server started. A one-server cluster elects itself at once.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN, RESTART_PG_PORT and
# RESTART_RAFT_PORT (base ports, 55950 and 7950).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${RESTART_PG_PORT:-55950}
RAFT_PORT=${RESTART_RAFT_PORT:-7950}
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_restart_e2e.XXXXXX)
chmod 755 "$WORK"
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
cleanup() {
  cluster down >/dev/null 2>&1
  cluster_cleanup
}
trap cleanup EXIT
ELECTION_MS=1000
now_ms() { echo $(($(date +%s%N) / 1000000)); }
record_of() { echo "$WORK/n$1/pg_leader/pg_leader.stopped"; }
log_since() { tail -c +"$(($2 + 1))" "$WORK/n$1.log"; }
log_size() { stat -c %s "$WORK/n$1.log"; }

cluster up --no-auto-failover --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null ||
  { echo "FAILED - cluster up"; exit 1; }
check "three servers agree on a leader" wait_for 20 "a leader" one_agreed_leader 1 2 3

echo "# a clean stop of every server, then a start in the same boot"
for i in 1 2 3; do cluster stop "$i" >/dev/null; done
recorded=0
for i in 1 2 3; do [ -f "$(record_of "$i")" ] && recorded=$((recorded + 1)); done
check "each server left a clean-stop record" test "$recorded" = 3
declare -A size
for i in 1 2 3; do size[$i]=$(log_size "$i"); done
for i in 1 2 3; do cluster start "$i" >/dev/null & done
wait
accepting=$(now_ms)
check "they agree on a leader" wait_for 20 "a leader" one_agreed_leader 1 2 3
echo "# agreed leader $(($(now_ms) - accepting)) ms after the last server accepted connections"
taken=0
for i in 1 2 3; do
  log_since "$i" "${size[$i]}" | grep -q "stopped cleanly in this boot" && [ ! -f "$(record_of "$i")" ] && taken=$((taken + 1))
done
check "each start took its record (logged, file gone)" test "$taken" = 3

echo "# a crash: every postmaster SIGKILLed, then started again"
for i in 1 2 3; do size[$i]=$(log_size "$i"); done
for i in 1 2 3; do cluster kill "$i" >/dev/null; done
sleep 1
first_start=$(now_ms)
for i in 1 2 3; do cluster start "$i" >/dev/null & done
# Sample until an agreed leader, noting when one was first seen.
seen=""
for _ in $(seq 1 400); do
  if [ -n "$(leaders_among 1 2 3)" ]; then seen=$(now_ms); break; fi
  sleep 0.02
done
wait
check "a leader after the crash" test -n "$seen"
echo "# first leader $((${seen:-0} - first_start)) ms after the first start command"
check "no leader before one election timeout after the first start (the blind wait stays)" \
  test "$((${seen:-0} - first_start))" -ge "$ELECTION_MS"
clean=0
for i in 1 2 3; do log_since "$i" "${size[$i]}" | grep -q "stopped cleanly in this boot" && clean=$((clean + 1)); done
check "no start claimed a clean stop" test "$clean" = 0

echo "# one server alone"
cluster down >/dev/null 2>&1
cluster up --nodes 1 --no-auto-failover --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null ||
  { echo "FAILED - cluster up --nodes 1"; exit 1; }
check "a single server leads" wait_for 10 "a leader" one_agreed_leader 1
cluster stop 1 >/dev/null
cluster start 1 >/dev/null
accepting=$(now_ms)
check "and leads again after a clean stop" wait_for 10 "a leader" one_agreed_leader 1
echo "# single server: leader $(($(now_ms) - accepting)) ms after it accepted connections"

echo
echo "restart: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
