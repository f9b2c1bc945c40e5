#!/usr/bin/env bash
# The cost of the write fence (pg_leader.fence_writes): pgbench's simple-update script (-N, a
# writing commit per transaction) on the leader primary of a local 3-server cluster, with the
# fence on and off in alternated runs on the same server (turned by ALTER SYSTEM and a reload).
# Prints every run, the mean tps of each, and the ratio on/off. With synchronous_commit = on the
# commit's WAL flush dominates; SYNCHRONOUS_COMMIT=off makes the runs CPU-bound, which shows the
# fence's own cost more sharply. Then the cost per commit inside one backend, where the noise of
# a shared machine weighs least: a procedure that commits 20,000 one-row inserts, timed in one
# session, 8 alternated calls per mode, fastest of each (synchronous_commit = off).
#
#   [SYNCHRONOUS_COMMIT=off] bench/fence_cost.sh [RUNS_EACH] [SECONDS]   (default 6 and 20)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-6}
SECS=${2:-20}
source bench/local_cluster.sh
is_leader() { [ "$(psql_on "$1" -c 'SELECT pg_leader_is_leader()')" = t ]; }
for _ in $(seq 1 50); do is_leader 1 && break; psql_on 1 -c 'SELECT pg_leader_transfer_leadership(1)' >/dev/null 2>&1 || sleep 0.2; done
is_leader 1 || { echo "node 1 does not lead" >&2; exit 1; }
psql_on 1 -c "ALTER SYSTEM SET synchronous_commit = ${SYNCHRONOUS_COMMIT:-on}" -c 'SELECT pg_reload_conf()' >/dev/null
"${RUN_AS[@]}" /usr/lib/postgresql/15/bin/pgbench -q -i -s 2 -h "$DIR" -p $((PORT + 1)) -U postgres postgres >/dev/null 2>&1
fence() {
  psql_on 1 -c "ALTER SYSTEM SET pg_leader.fence_writes = $1" -c 'SELECT pg_reload_conf()' >/dev/null
  for _ in $(seq 1 100); do [ "$(psql_on 1 -c 'SHOW pg_leader.fence_writes')" = "$1" ] && return; sleep 0.05; done
  echo "the reload did not take" >&2; exit 1
}
run() {
  "${RUN_AS[@]}" /usr/lib/postgresql/15/bin/pgbench -n -N -M prepared -c 2 -j 2 -T "$SECS" \
    -h "$DIR" -p $((PORT + 1)) -U postgres postgres 2>/dev/null | awk '/^tps = / {printf "%.0f", $3}'
}
declare -A sum=([on]=0 [off]=0)
for k in $(seq 1 "$RUNS"); do
  # Alternate which goes first, so that a drift over time weighs on both alike.
  order="on off"; [ $((k % 2)) -eq 0 ] && order="off on"
  for mode in $order; do
    fence "$mode"
    tps=$(run)
    echo "run $k, fence $mode: $tps tps"
    sum[$mode]=$((sum[$mode] + tps))
  done
done
psql_on 1 -c "CREATE TABLE fence_cost (i int)" \
  -c "CREATE PROCEDURE fence_cost(n int) LANGUAGE plpgsql AS \$\$ BEGIN FOR i IN 1..n LOOP INSERT INTO fence_cost VALUES (i); COMMIT; END LOOP; END \$\$" >/dev/null
declare -A best=([on]=999999 [off]=999999)
for k in $(seq 1 8); do
  for mode in on off; do
    fence "$mode"
    ms=$(psql_on 1 <<'SQL'
SET synchronous_commit = off;
SELECT clock_timestamp() AS t0 \gset
CALL fence_cost(20000);
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric);
SQL
)
    echo "call $k, fence $mode: 20000 commits in $ms ms"
    [ "$ms" -lt "${best[$mode]}" ] && best[$mode]=$ms
  done
done
awk -v on="${best[on]}" -v off="${best[off]}" 'BEGIN {
  printf "one backend, 20000 commits (synchronous_commit = off), fastest of 8: fence on %d ms, off %d ms: %.2f us per commit\n", on, off, (on - off) * 1000 / 20000 }'
refused=$(psql_on 1 -c 'SELECT refused_commits FROM pg_leader_fence()')
awk -v sc="${SYNCHRONOUS_COMMIT:-on}" -v on="${sum[on]}" -v off="${sum[off]}" -v n="$RUNS" -v r="$refused" 'BEGIN {
  printf "pgbench -N -M prepared -c 2 -j 2, synchronous_commit = %s, %d alternated runs each: fence on %.0f tps, off %.0f tps, ratio %.3f (commits refused: %d)\n", sc, n, on / n, off / n, on / off, r }'
