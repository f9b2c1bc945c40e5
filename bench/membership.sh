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
cargo build --release -q -p pg_leader_cluster
TOOL=target/release/pg_leader-cluster
DIR=$(mktemp -d /tmp/pg_leader_bench.XXXXXX); rmdir "$DIR"
PORT=55700
RAFT=7700
trap '"$TOOL" --dir "$DIR" down >/dev/null 2>&1' EXIT
"$TOOL" --dir "$DIR" up --nodes 4 --port $PORT --raft-port $RAFT >/dev/null
if [ "$(id -u)" -eq 0 ]; then RUN_AS=(runuser -u postgres --); else RUN_AS=(); fi
psql_on() { "${RUN_AS[@]}" psql -X -q -At -h "$DIR" -p $((PORT + $1)) -U postgres -d postgres "${@:2}"; }
# A follower other than node 4, to ask on.
asker() { for i in 1 2 3; do [ "$(psql_on "$i" -c 'SELECT pg_leader_is_leader()')" = f ] && { echo "$i"; return; }; done; return 1; }
timed() {
  psql_on "$1" <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT $2 AS result \gset
SELECT :'result' || ' ' || round((extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000)::numeric, 2);
SQL
}
median() { sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "min %s ms, median %.2f ms, max %s ms", a[1], m, a[NR]}'; }

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
