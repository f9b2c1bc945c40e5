#!/usr/bin/env bash
# Measures planned switchovers on a local 3-server cluster: the time pg_leader_transfer_leadership()
# takes on the leader, from the call until the leader has heard from its successor, measured
# inside one psql session (clock_timestamp() before and after). Prints every trial and the median.
#
#   bench/switchover.sh [TRIALS]      (default 20; needs scripts/setup to have run)
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${1:-20}
source bench/local_cluster.sh
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
echo "switchover over $TRIALS trials: $(printf '%s\n' "${times[@]}" | median)"
