#!/usr/bin/env bash
# End-to-end: two data servers and a `pg_leader-witness` (no PostgreSQL). A 3-server cluster is
# made with pg_leader-cluster; node 3's PostgreSQL is stopped for good and the witness takes its
# place in pg_leader.peers, with the same cluster name and secret. Either data server's
# postmaster is SIGKILLed in turn: the other one is promoted and leads, the witness's vote making
# the majority; the witness never leads; it reports through /status and /metrics; SIGTERM stops
# it cleanly. Prints the witness's resident memory and idle CPU (not asserted: bench figures).
#
# Environment: TOOL (the pg_leader-cluster binary), WITNESS (the pg_leader-witness binary),
# PG_LEADER_PGBIN, WITNESS_PG_PORT, WITNESS_RAFT_PORT (base ports, 55980 and 7980).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
WITNESS=$(realpath "${WITNESS:-target/release/pg_leader-witness}")
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${WITNESS_PG_PORT:-55980}
RAFT_PORT=${WITNESS_RAFT_PORT:-7980}
HTTP_PORT=$((RAFT_PORT + 50))
source tests/lib.sh
WORK=$(mktemp -d /tmp/pg_leader_witness_e2e.XXXXXX)
chmod 755 "$WORK"
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
witness_pid=""
cleanup() {
  [ -n "$witness_pid" ] && kill -KILL "$witness_pid" 2>/dev/null
  cluster down >/dev/null 2>&1
  cluster_cleanup
}
trap cleanup EXIT
status_of_witness() { curl -s -m 2 "http://127.0.0.1:$HTTP_PORT/status"; }
witness_field() { status_of_witness | /usr/bin/python3 -c "import json,sys; v=json.load(sys.stdin)['$1']; print('' if v is None else v)"; }
in_recovery() { sql "$1" "SELECT pg_is_in_recovery()" 2>/dev/null; }
# Node $1 (a data server) leads as the writable primary, and the witness names it.
leads_as_primary() {
  [ "$(leaders_among 1 2)" = "$1 " ] && [ "$(in_recovery "$1")" = f ] && [ "$(witness_field leader_id)" = "$1" ]
}

cluster up --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" >/dev/null || { echo "FAILED - cluster up"; exit 1; }
check "node 1 leads" wait_for 20 "node 1 to lead" one_agreed_leader 1 2 3
peers=$(sql 1 "SHOW pg_leader.peers")
cluster stop 3 >/dev/null
mkdir -p "$WORK/w3" && chown postgres: "$WORK/w3" && chmod 700 "$WORK/w3"
cat >"$WORK/witness.conf" <<CONF
# node 3 is now a witness
node_id = 3
pg_leader.peers = '$peers'
cluster_name = 'local'
secret_file = '$WORK/secret'
state_dir = '$WORK/w3'
http_port = $HTTP_PORT
CONF
runuser -u postgres -- "$WITNESS" --config "$WORK/witness.conf" --check >/dev/null
check "the configuration checks" test $? = 0
runuser -u postgres -- "$WITNESS" --config "$WORK/witness.conf" 2>"$WORK/w3.log" &
witness_pid=$!
sleep 0.5
witness_pid=$(pgrep -f -n "pg_leader-witness --config $WORK/witness.conf")
check "the witness follows node 1" wait_for 15 "the witness to name node 1" leads_as_primary 1

never_led=1
watch_witness() {
  local role; role=$(witness_field role 2>/dev/null)
  [ "$role" = leader ] && never_led=0
  return 0
}
for victim in 1 2; do
  other=$((3 - victim))
  echo "# SIGKILL of node $victim's postmaster"
  cluster kill "$victim" >/dev/null
  ok=0
  for _ in $(seq 1 300); do
    watch_witness
    leads_as_primary "$other" && { ok=1; break; }
    sleep 0.05
  done
  check "node $other is promoted and leads, the witness naming it" test "$ok" = 1
  cluster start "$victim" >/dev/null
  streams() { [ "$(in_recovery "$victim")" = t ] && [ "$(witness_field leader_id)" = "$other" ]; }
  check "node $victim comes back as a standby" wait_for 60 "node $victim to rejoin" streams
done
check "the witness never led" test "$never_led" = 1

metrics=$(curl -s -m 2 "http://127.0.0.1:$HTTP_PORT/metrics")
check "/metrics reports the witness's term and datagrams" \
  bash -c "grep -q '^pg_leader_term ' <<<\"\$0\" && grep -q 'pg_leader_datagrams_received' <<<\"\$0\"" "$metrics"
rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$witness_pid/status")
ticks_before=$(awk '{print $14 + $15}' "/proc/$witness_pid/stat")
sleep 10
ticks_after=$(awk '{print $14 + $15}' "/proc/$witness_pid/stat")
hz=$(getconf CLK_TCK)
hundredths=$(( (ticks_after - ticks_before) * 1000 / hz ))
printf '# witness: resident %d.%d MiB; idle CPU over 10 s: %d.%02d %% of a core\n' \
  $((rss_kib / 1024)) $(((rss_kib % 1024) * 10 / 1024)) $((hundredths / 100)) $((hundredths % 100))

kill -TERM "$witness_pid"
stopped() { ! kill -0 "$witness_pid" 2>/dev/null; }
check "SIGTERM stops the witness" wait_for 5 "the witness to exit" stopped
check "after recording its clean stop" test -f "$WORK/w3/pg_leader.stopped"
check "its log says it stopped" grep -q "stopped" "$WORK/w3.log"
witness_pid=""

echo
echo "witness: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
