#!/usr/bin/env bash
# The write fence (pg_leader.fence_writes) on real servers, with pg_leader-cluster: a primary
# that does not hold the lease refuses writing commits with SQLSTATE 25006, looks read-only to
# new sessions, and never acknowledges a commit after its lease ended: a client commits in a
# loop on the primary while it is partitioned from both standbys, and again while its worker is
# SIGSTOPped, recording every outcome on CLOCK_BOOTTIME; the records are checked against the
# lease intervals in the primary's role history.
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PROBE=tests/support/commit_probe.py
DIR=$(mktemp -d /tmp/pg_leader_fence_e2e.XXXXXX)
rmdir "$DIR"
PORT=55720
LONE_PORT=55729
source tests/lib.sh   # wait_for, check
cluster() { "$TOOL" --dir "$DIR" "$@"; }
# Servers inherit the environment: a backtrace in the DETAIL of errors is not what users see.
unset RUST_BACKTRACE
if [ "$(id -u)" -eq 0 ]; then RUN_AS=(runuser -u postgres --); else RUN_AS=(); fi
LONE=$DIR-lone
trap 'cluster down >/dev/null 2>&1; "${RUN_AS[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$LONE/data" -m immediate stop >/dev/null 2>&1; rm -rf "$DIR" "$LONE"' EXIT

conninfo() { echo "host=$DIR port=$((PORT + $1)) user=postgres dbname=postgres"; }
sql() { "${RUN_AS[@]}" psql -X -q -At -h "$DIR" -p $((PORT + $1)) -U postgres -d postgres -c "$2" 2>/dev/null; }
# sql_error NODE QUERY: the error psql prints (verbose: with the SQLSTATE, DETAIL and HINT). The
# session asks to start read-write: the fence is under test, not the read-only default that new
# sessions of a fenced server get.
READ_WRITE=(env PGOPTIONS='-c default_transaction_read_only=off')
sql_error() { "${RUN_AS[@]}" "${READ_WRITE[@]}" psql -X -q -At -v VERBOSITY=verbose -h "$DIR" -p $((PORT + $1)) -U postgres -d postgres -c "$2" 2>&1 >/dev/null; }
is_leader() { [ "$(sql "$1" 'SELECT pg_leader_is_leader()')" = t ]; }
some_leader() { is_leader 1 || is_leader 2 || is_leader 3; }
fence_is() { [ "$(sql 1 'SHOW pg_leader.fence_writes')" = "$1" ]; }
# lead NODE: switchover to NODE (asked on it; a follower passes it on to the leader). Retried:
# right after a fault heals, the request can reach a server that is about to step down.
lead() {
  local try
  for try in 1 2 3 4 5; do
    is_leader "$1" && return 0
    wait_for 10 "a leader" some_leader
    sql "$1" "SELECT pg_leader_transfer_leadership($1)" >/dev/null
    wait_for 3 "node $1 to lead" is_leader "$1" && return 0
  done
  return 1
}
writes() { [ "$(sql 1 "INSERT INTO fence_probe VALUES (0) RETURNING 1")" = 1 ]; }
refused_25006() { grep -q '^ERROR:  25006: cannot commit: this server does not hold the pg_leader leadership' <<<"$(sql_error 1 'INSERT INTO fence_probe VALUES (0)')"; }
history_files() { echo "$DIR/n1/pg_leader/pg_leader.history.1 $DIR/n1/pg_leader/pg_leader.history"; }

echo "# a primary that does not lead"
# Without WAL positions (ELECTION_ONLY, tests/lib.sh) leadership stays where a switchover puts
# it, so the primary can be made a follower on a healthy cluster; tests/primary.sh shows that
# with them, leadership goes back to the primary.
cluster up --no-auto-failover --port $PORT --raft-port 7720 --set 'max_prepared_transactions = 4' --set "$ELECTION_ONLY" >/dev/null
wait_for 10 "a leader" some_leader
lead 2
# The table exists before the fence is tested: created while the fence is lifted (below).
check "the fence is on by default" test "$(sql 1 'SHOW pg_leader.fence_writes')" = on
err=$(sql_error 1 "CREATE TABLE fence_probe (i int)")
echo "$err" | sed 's/^/  /'
check "a writing commit fails with SQLSTATE 25006: this server does not hold the pg_leader leadership" \
  grep -q '^ERROR:  25006: cannot commit: this server does not hold the pg_leader leadership' <<<"$err"
check "its DETAIL names the leader and the term" grep -Eq "^DETAIL:  The leader is node 2 in term [0-9]+\.$" <<<"$err"
check "it has a HINT" grep -q '^HINT:  Write on the leader' <<<"$err"
check "the transaction rolled back" test "$(sql 1 "SELECT count(*) FROM pg_class WHERE relname = 'fence_probe'")" = 0
check "a read-only transaction still works" test "$(sql 1 'BEGIN; SELECT count(*) > 0 FROM pg_class; COMMIT')" = t
check "a new session starts read-only" test "$(sql 1 'SHOW default_transaction_read_only')" = on
check "so its writes fail at once with 25006, like a standby's" \
  grep -q '^ERROR:  25006: cannot execute CREATE TABLE in a read-only transaction' <<<"$("${RUN_AS[@]}" psql -X -q -v VERBOSITY=verbose -h "$DIR" -p $((PORT + 1)) -U postgres -d postgres -c 'CREATE TABLE read_only_probe (i int)' 2>&1)"
check "pg_leader_fence() shows the fence and counts the refusal" \
  test "$(sql 1 'SELECT fence_writes AND fenced AND refused_commits >= 1 FROM pg_leader_fence()')" = t

echo "# the fence off (reload)"
sql 1 "ALTER SYSTEM SET pg_leader.fence_writes = off" >/dev/null; sql 1 "SELECT pg_reload_conf()" >/dev/null
wait_for 10 "the reload" fence_is off
check "with the fence off, a primary that does not lead commits" \
  test "$(sql 1 "CREATE TABLE fence_probe (i int); INSERT INTO fence_probe VALUES (0) RETURNING 1")" = 1
check "and new sessions start read-write" test "$(sql 1 'SHOW default_transaction_read_only')" = off
sql 1 "BEGIN; INSERT INTO fence_probe VALUES (-1); PREPARE TRANSACTION 'held'" >/dev/null
sql 1 "ALTER SYSTEM RESET pg_leader.fence_writes" >/dev/null; sql 1 "SELECT pg_reload_conf()" >/dev/null
check "on again after a reload: refused again" wait_for 10 "the fence back on" refused_25006

echo "# two-phase commit"
check "PREPARE TRANSACTION is refused with 25006" \
  grep -q '^ERROR:  25006: cannot prepare transaction: this server does not hold the pg_leader leadership' \
  <<<"$(sql_error 1 "BEGIN; INSERT INTO fence_probe VALUES (-2); PREPARE TRANSACTION 'refused'")"
check "COMMIT PREPARED is refused with 25006" \
  grep -q '^ERROR:  25006: cannot commit prepared transaction: this server does not hold the pg_leader leadership' \
  <<<"$(sql_error 1 "COMMIT PREPARED 'held'")"
check "the prepared transaction is still there" test "$(sql 1 "SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'held'")" = 1

echo "# target_session_attrs=read-write"
"${RUN_AS[@]}" mkdir -p "$LONE"
"${RUN_AS[@]}" /usr/lib/postgresql/15/bin/initdb -D "$LONE/data" -A trust -U postgres --no-sync >/dev/null
printf "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\nshared_preload_libraries = 'pg_leader'\n" "$LONE" $LONE_PORT |
  "${RUN_AS[@]}" tee -a "$LONE/data/postgresql.conf" >/dev/null
"${RUN_AS[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$LONE/data" -l "$LONE/log" -w start >/dev/null
lone() { "${RUN_AS[@]}" psql -X -q -At -h "$LONE" -p $LONE_PORT -U postgres -d postgres -c "$1" 2>&1; }
check "a server where pg_leader is not configured commits (not fenced)" \
  test "$(lone "CREATE TABLE t (i int); INSERT INTO t VALUES (1) RETURNING i")" = 1
check "and says so once, with a WARNING at start" \
  test "$(grep -c 'WARNING:  pg_leader.node_id is not set: pg_leader does not run on this server and does not fence its writes' "$LONE/log")" = 1
"${RUN_AS[@]}" psql -X -q -h "$LONE" -p $LONE_PORT -U postgres -d postgres -c "CREATE EXTENSION pg_leader" >/dev/null
echo "pg_leader.node_id = 1" | "${RUN_AS[@]}" tee -a "$LONE/data/postgresql.conf" >/dev/null
"${RUN_AS[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$LONE/data" -l "$LONE/log" -w restart >/dev/null
misconfigured() { [ "$(lone 'SELECT role FROM pg_leader_status()')" = misconfigured ]; }
wait_for 10 "the configured lone server to say it is misconfigured" misconfigured
check "a configured but misconfigured server is fenced, and its error says so" \
  grep -q '^ERROR:  25006: cannot commit: pg_leader is misconfigured on this server' \
  <<<"$("${RUN_AS[@]}" "${READ_WRITE[@]}" psql -X -q -v VERBOSITY=verbose -h "$LONE" -p $LONE_PORT -U postgres -d postgres -c 'INSERT INTO t VALUES (2)' 2>&1)"
"${RUN_AS[@]}" sed -i '/^pg_leader.node_id = 1$/d' "$LONE/data/postgresql.conf"
"${RUN_AS[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$LONE/data" -l "$LONE/log" -w restart >/dev/null
rw_port() { "${RUN_AS[@]}" psql -X -At -d "host=$1 port=$2 user=postgres dbname=postgres target_session_attrs=read-write" -c 'SHOW port' 2>/dev/null; }
check "target_session_attrs=read-write skips the fenced primary for the next host" \
  test "$(rw_port "$DIR,$LONE" "$((PORT + 1)),$LONE_PORT")" = $LONE_PORT
check "and finds no read-write server in the fenced primary alone" test -z "$(rw_port "$DIR" $((PORT + 1)))"

echo "# the primary leads"
check "switchover to the primary" lead 1
check "it commits" writes
check "COMMIT PREPARED now commits" test -z "$(sql_error 1 "COMMIT PREPARED 'held'")"
check "new sessions start read-write" test "$(sql 1 'SHOW default_transaction_read_only')" = off
check "target_session_attrs=read-write connects to it" test "$(rw_port "$DIR" $((PORT + 1)))" = $((PORT + 1))

# fault_under_load WHAT START STOP: a client commits on node 1 for 10 s; the fault starts after
# 1.5 s and ends after 5 s; node 1 is then made leader again.
fault_under_load() {
  local what=$1 start=$2 stop=$3 out="$DIR/acks-$1.tsv"
  "${RUN_AS[@]}" /usr/bin/python3 "$PROBE" run "$(conninfo 1)" 10 "$out" &
  local client=$!
  sleep 1.5; $start >/dev/null
  sleep 3.5; $stop >/dev/null
  lead 1
  wait "$client"
  local verdict; verdict=$(/usr/bin/python3 "$PROBE" check "$out" $(history_files))
  echo "$verdict" | sed 's/^/  /'
  check "$what: no commit acknowledged outside the primary's lease (CLOCK_BOOTTIME, role history)" \
    grep -q 'acknowledged commits sent outside every lease: 0$' <<<"$verdict"
  check "$what: commits failed with 25006 once the lease had ended" grep -Eq 'outcomes: .*25006=[1-9]' <<<"$verdict"
  check "$what: commits succeed again once it leads again" test "$(tail -n 1 "$out" | cut -f3)" = ok
}
echo "# the primary partitioned from both standbys while a client commits"
fault_under_load partition "cluster partition 1/2,3" "cluster heal"
echo "# the primary's worker SIGSTOPped while a client commits"
fault_under_load pause "cluster pause 1" "cluster resume 1"
check "histories hold" cluster check >/dev/null
check "pg_leader_fence() counts refusals" test "$(sql 1 'SELECT refused_commits > 0 FROM pg_leader_fence()')" = t
echo "  $(sql 1 'SELECT * FROM pg_leader_fence()')"

echo
echo "fence: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
