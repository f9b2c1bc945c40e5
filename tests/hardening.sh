#!/usr/bin/env bash
# Hardening on real servers: every setting given absurd values (the server keeps running, the
# error names the setting and the value), and disk faults under the state directory (full,
# read-only, fsync failing): the node stops voting and leading, says why, and recovers when the
# fault is gone.
set -uo pipefail
cd "$(dirname "$0")/.."
BASE_PG_PORT=55430
BASE_RAFT_PORT=7430
source tests/lib.sh

WORK=$(mktemp -d /tmp/pg_leader_hardening.XXXXXX)
STATE3=$WORK/state3
trap 'umount "$STATE3" 2>/dev/null; cluster_cleanup' EXIT
status_of() { sql "$1" "SELECT role || ': ' || coalesce(error, '') FROM pg_leader_status()"; }
says() { local node=$1; shift; status_of "$node" | grep -q -- "$*"; }

echo "# settings abuse: one server, one bad value at a time"
cluster_init "$WORK" 1 "$NO_FENCE"
echo "include_if_exists = 'case.conf'" | as_pg tee -a "$WORK/n1/postgresql.conf" >/dev/null
node_start 1
sql 1 "CREATE EXTENSION pg_leader" >/dev/null
wait_for 10 "node 1 to lead" one_agreed_leader 1
# case "what" "postgresql.conf lines" "text the status error must contain"
bad_setting() {
  local what=$1 lines=$2 expect=$3
  node_stop 1
  printf '%b\n' "$lines" | as_pg tee "$WORK/n1/case.conf" >/dev/null
  if ! node_start 1 2>/dev/null; then
    check "$what: the server still starts" false
    return
  fi
  check "$what: misconfigured, naming it" wait_for 5 "the error" says 1 "$expect"
  check "$what: never leader" test "$(sql 1 'SELECT pg_leader_is_leader()')" = f
}
bad_setting "an empty peer list" "pg_leader.peers = ''" "pg_leader.peers"
bad_setting "a malformed peer list" "pg_leader.peers = '1=127.0.0.1:7431, two=127.0.0.1:7432'" "two=127.0.0.1:7432"
bad_setting "a peer list with one id twice" "pg_leader.peers = '1=127.0.0.1:7431, 1=127.0.0.1:7432'" "pg_leader.peers"
bad_setting "a port out of range" "pg_leader.peers = '1=127.0.0.1:99999'" "99999"
bad_setting "an empty cluster name" "pg_leader.cluster_name = ''" "pg_leader.cluster_name"
bad_setting "a missing secret file" "pg_leader.secret_file = '$WORK/no-such-file'" "no-such-file"
bad_setting "a heartbeat longer than half the election timeout" \
  "pg_leader.heartbeat_interval = '600ms'\npg_leader.election_timeout = '1000ms'" "pg_leader.heartbeat_interval"
# Values PostgreSQL itself refuses: a warning naming the setting, a valid value kept, the server up.
out_of_range() {
  local what=$1 setting=$2 bad=$3
  node_stop 1
  echo "$setting = '$bad'" | as_pg tee "$WORK/n1/case.conf" >/dev/null
  node_start 1 2>/dev/null
  check "$what: the server starts without taking it" test -n "$(sql 1 "SHOW $setting")" -a "$(sql 1 "SHOW $setting")" != "$bad"
  check "$what: the log names the setting" \
    grep -Eq "(invalid value for parameter|is outside the valid range for parameter|parameter) \"$setting\"( requires a Boolean value)?" "$WORK/n1.log"
}
out_of_range "a negative heartbeat" pg_leader.heartbeat_interval -5ms
out_of_range "an enormous election timeout" pg_leader.election_timeout 99999999s
out_of_range "a negative node id" pg_leader.node_id -1
out_of_range "an HTTP port out of range" pg_leader.http_port 70000
out_of_range "a WAL-aware switch that is not a boolean" pg_leader.wal_aware_election maybe
node_stop 1
as_pg truncate -s 0 "$WORK/n1/case.conf"
node_start 1
check "with the settings fixed it leads again" wait_for 10 "node 1 to lead" one_agreed_leader 1
# A malformed peer list on reload: named in the log, and the configuration in effect is kept.
echo "pg_leader.peers = '1=127.0.0.1:7431, two=127.0.0.1:7432'" | as_pg tee "$WORK/n1/case.conf" >/dev/null
sql 1 "SELECT pg_reload_conf()" >/dev/null
check "a malformed peer list on reload is refused with a message" \
  wait_for 5 "the log line" grep -q 'pg_leader: keeping the configuration in effect' "$WORK/n1.log"
check "and not applied: one member, still the leader" \
  test "$(sql 1 "SELECT count(*) FROM pg_leader_nodes()")/$(sql 1 'SELECT pg_leader_is_leader()')" = "1/t"
node_stop 1 immediate
rm -rf "$WORK"/n1 "$WORK/n1.log"

echo "# disk faults: node 3's state directory on a 64 KiB tmpfs"
cluster_init_replicated "$WORK" 3 "$NO_FENCE"
mkdir -p "$STATE3"
mount -t tmpfs -o size=64k,mode=0700 tmpfs "$STATE3"
chown postgres: "$STATE3" 2>/dev/null || true
echo "pg_leader.state_dir = '$STATE3'" | as_pg tee -a "$WORK/n3/node.conf" >/dev/null
sql 1 "CREATE EXTENSION pg_leader" >/dev/null
node_start 2; node_start 3
check "three servers agree on a leader" wait_for 15 "one leader" one_agreed_leader 1 2 3
leader_now() { local l; l=$(leaders_among 1 2 3); echo "${l% }"; }
# A planned switchover between nodes 1 and 2: node 3 must write the new term.
switch_between_1_and_2() {
  local l; l=$(leader_now)
  if [ "$l" = 3 ]; then sql 3 "SELECT pg_leader_transfer_leadership(1)" >/dev/null; return; fi
  sql "$l" "SELECT pg_leader_transfer_leadership($(( 3 - l )))" >/dev/null
}
for fault in full read-only; do
  [ "$(leader_now)" != 3 ] || sql 3 "SELECT pg_leader_transfer_leadership(1)" >/dev/null
  wait_for 10 "a leader other than node 3" one_agreed_leader 1 2 3
  if [ $fault = full ]; then
    dd if=/dev/zero of="$STATE3/filler" bs=4k 2>/dev/null
    message="No space left on device"
  else
    mount -o remount,ro "$STATE3"
    message="Read-only file system"
  fi
  switch_between_1_and_2
  check "$fault: node 3 stops and says why" wait_for 10 "node 3's error" says 3 "$message"
  check "$fault: node 3 is not leader" test "$(sql 3 'SELECT pg_leader_is_leader()')" = f
  check "$fault: nodes 1 and 2 keep a leader" wait_for 10 "a leader" one_agreed_leader 1 2
  check "$fault: the log says it too" grep -q "$message" "$WORK/n3.log"
  if [ $fault = full ]; then rm -f "$STATE3/filler"; else mount -o remount,rw "$STATE3"; fi
  check "$fault: once the fault is gone node 3 rejoins" wait_for 15 "all three" one_agreed_leader 1 2 3
  check "$fault: as a follower with no error" test "$(status_of 3)" = "follower: "
done

echo "# disk faults: fsync of node 3's state directory fails (an LD_PRELOAD shim, tests/support)"
gcc -shared -fPIC -O2 -o "$WORK/fail_fsync.so" tests/support/fail_fsync.c -ldl
chmod 755 "$WORK/fail_fsync.so"
node_stop 3
as_pg env LD_PRELOAD="$WORK/fail_fsync.so" FAIL_FSYNC_DIR="$STATE3" FAIL_FSYNC_FLAG="$WORK/fail-fsync" \
  "$PGBIN/pg_ctl" -D "$WORK/n3" -l "$WORK/n3.log" -w -t 30 start >/dev/null
check "fsync: node 3 runs with the shim and rejoins" wait_for 15 "all three" one_agreed_leader 1 2 3
[ "$(leader_now)" != 3 ] || sql 3 "SELECT pg_leader_transfer_leadership(1)" >/dev/null
wait_for 10 "a leader other than node 3" one_agreed_leader 1 2 3
touch "$WORK/fail-fsync"
switch_between_1_and_2
check "fsync: node 3 stops and says why" wait_for 10 "node 3's error" says 3 "Input/output error"
check "fsync: node 3 is not leader" test "$(sql 3 'SELECT pg_leader_is_leader()')" = f
check "fsync: nodes 1 and 2 keep a leader" wait_for 10 "a leader" one_agreed_leader 1 2
check "fsync: PostgreSQL itself is unaffected (its own fsyncs succeed)" test "$(sql 3 'SELECT pg_is_in_recovery()')" = t
rm -f "$WORK/fail-fsync"
check "fsync: once fsync works again node 3 rejoins" wait_for 15 "all three" one_agreed_leader 1 2 3
check "fsync: as a follower with no error" test "$(status_of 3)" = "follower: "

echo "hardening: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
