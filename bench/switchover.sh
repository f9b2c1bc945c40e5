#!/usr/bin/env bash
# Measures planned switchovers on a local 3-server cluster: the time pg_leader_transfer_leadership()
# takes on the leader, from the call until the leader has heard from its successor, measured
# inside one psql session (clock_timestamp() before and after). Prints every trial and the median.
#
#   bench/switchover.sh [TRIALS]      (default 20; needs scripts/setup to have run)
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
cargo build --release -q -p pg_leader_cluster
TOOL=target/release/pg_leader-cluster
DIR=$(mktemp -d /tmp/pg_leader_bench.XXXXXX); rmdir "$DIR"
PORT=55700
trap '"$TOOL" --dir "$DIR" down >/dev/null 2>&1' EXIT
"$TOOL" --dir "$DIR" up --port $PORT --raft-port 7700 >/dev/null
if [ "$(id -u)" -eq 0 ]; then RUN_AS=(runuser -u postgres --); else RUN_AS=(); fi
psql_on() { "${RUN_AS[@]}" psql -X -q -At -h "$DIR" -p $((PORT + $1)) -U postgres -d postgres "${@:2}"; }
leader_now() { for i in 1 2 3; do [ "$(psql_on "$i" -c 'SELECT pg_leader_is_leader()')" = t ] && { echo "$i"; return; }; done; return 1; }

times=()
for k in $(seq 1 "$TRIALS"); do
  leader=""
  for _ in $(seq 1 500); do leader=$(leader_now) && break; sleep 0.01; done
  [ -n "$leader" ] || { echo "no leader" >&2; exit 1; }
  target=$(( leader % 3 + 1 ))
  sleep 0.3   # let the target catch up and the lease settle, as between real switchovers
  ms=$(psql_on "$leader" <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT pg_leader_transfer_leadership($target) \gset
SELECT round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 2);
SQL
)
  echo "trial $k: node $leader -> node $target: $ms ms"
  times+=("$ms")
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "switchover over %d trials: min %s ms, median %.2f ms, max %s ms\n", NR, a[1], m, a[NR]}'
