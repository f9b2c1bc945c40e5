# Sourced by the benchmark scripts: a fresh local cluster of NODES servers (default 3) made with
# pg_leader-cluster on PostgreSQL ports 55701.. and pg_leader ports 7701.., removed on exit, and
# psql_on NODE ARGS... to run psql on one of them as the postgres user; median summarises the
# milliseconds it reads, one a line.
cargo build --release -q -p pg_leader_cluster
TOOL=target/release/pg_leader-cluster
DIR=$(mktemp -d /tmp/pg_leader_bench.XXXXXX); rmdir "$DIR"
PORT=55700
RAFT=7700
trap '"$TOOL" --dir "$DIR" down >/dev/null 2>&1' EXIT
"$TOOL" --dir "$DIR" up --nodes "${NODES:-3}" --port $PORT --raft-port $RAFT >/dev/null
if [ "$(id -u)" -eq 0 ]; then RUN_AS=(runuser -u postgres --); else RUN_AS=(); fi
psql_on() { "${RUN_AS[@]}" psql -X -q -At -h "$DIR" -p $((PORT + $1)) -U postgres -d postgres "${@:2}"; }
median() { sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "min %s ms, median %.2f ms, max %s ms", a[1], m, a[NR]}'; }
