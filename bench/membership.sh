#!/usr/bin/env bash
# Measures membership changes on a local 4-server cluster: node 4 (a standby) is removed with
# pg_leader_remove_node(4) (demoted to leaving, then dropped) and added back with
# pg_leader_add_node(4, ...) (joining, caught up, promoted), alternately. Each call is timed
# inside one psql session on a follower (the request is passed on to the leader) from the call
# until the change is committed as that server sees it. Prints every trial and the medians.
#
#   bench/membership.sh [ROUNDS]      (default 10; needs scripts/setup to have run)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
NODES=4 source bench/local_cluster.sh
# A follower other than node 4, to ask on.
asker() { for i in 1 2 3; do [ "$(psql_on "$i" -c 'SELECT pg_leader_is_leader()')" = f ] && { echo "$i"; return; }; done; return 1; }
timed() {
  psql_on "$1" <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT $2 AS result \gset
SELECT :'result' || ' ' || round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 2);
SQL
}

removes=(); adds=()
for k in $(seq 1 "$ROUNDS"); do
  sleep 0.3
  on=$(asker)
  read -r result ms <<<"$(timed "$on" "pg_leader_remove_node(4)")"
  echo "round $k: remove node 4, asked on node $on: $result in $ms ms"
  [ "$result" = removed ] || { echo "unexpected: $result" >&2; exit 1; }
  removes+=("$ms")
  sleep 0.3
  on=$(asker)
  read -r result ms <<<"$(timed "$on" "pg_leader_add_node(4, '127.0.0.1:$((RAFT + 4))')")"
  echo "round $k: add node 4 as a voter, asked on node $on: $result in $ms ms"
  [ "$result" = voter ] || { echo "unexpected: $result" >&2; exit 1; }
  adds+=("$ms")
done
echo "remove (leaving, then dropped) over $ROUNDS rounds: $(printf '%s\n' "${removes[@]}" | median)"
echo "add (joining, caught up, promoted) over $ROUNDS rounds: $(printf '%s\n' "${adds[@]}" | median)"
