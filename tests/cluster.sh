#!/usr/bin/env bash
# End-to-end fault tests with pg_leader-cluster: real servers (a primary and pg_basebackup
# standbys), SIGKILL, SIGSTOP, nftables partitions. Each scenario ends by checking every node's
# role history: no term with two leaders, no two leases that overlap on the shared clock.
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
DIR=$(mktemp -d /tmp/pg_leader_cluster_e2e.XXXXXX)
rmdir "$DIR"
# Base ports (CLUSTER_PG_PORT, CLUSTER_RAFT_PORT); PG_LEADER_PGBIN and PG_LEADER_NFT_TABLE reach
# the tool, so that a second installation can be tested beside the default one.
PORT=${CLUSTER_PG_PORT:-55600}
RAFT_PORT=${CLUSTER_RAFT_PORT:-7600}
cluster() { "$TOOL" --dir "$DIR" "$@"; }
trap 'cluster down >/dev/null 2>&1; rm -rf "$DIR"' EXIT

if [ "$(id -u)" -eq 0 ]; then RUN_AS=(runuser -u postgres --); else RUN_AS=(); fi
sql() { "${RUN_AS[@]}" psql -X -q -At -h "$DIR" -p $((PORT + $1)) -U postgres -d postgres -c "$2" 2>/dev/null; }
is_leader() { [ "$(sql "$1" 'SELECT pg_leader_is_leader()')" = t ]; }
term_of() { sql "$1" 'SELECT pg_leader_term()'; }
leaders_among() { local out=""; for i in "$@"; do is_leader "$i" && out+="$i "; done; echo "${out% }"; }
one_agreed_leader() {
  local l; l=$(leaders_among "$@")
  [ -n "$l" ] && [ "$(echo $l | wc -w)" -eq 1 ] || return 1
  local want; want=$(sql "$l" "SELECT pg_leader_leader_id() || '/' || pg_leader_term()")
  for i in "$@"; do [ "$(sql "$i" "SELECT pg_leader_leader_id() || '/' || pg_leader_term()")" = "$want" ] || return 1; done
}
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "gave up after ${timeout}s waiting for: $what" >&2; return 1; }
    sleep 0.02
  done
}
others() { local skip=$1 out=""; shift; for i in "$@"; do [ "$i" != "$skip" ] && out+="$i "; done; echo "${out% }"; }
not_leader() { ! is_leader "$1"; }

PASSED=0; FAILED=0
check() {
  local name=$1; shift
  if "$@"; then echo "ok - $name"; PASSED=$((PASSED + 1)); else echo "FAILED - $name"; FAILED=$((FAILED + 1)); return 1; fi
}
histories_hold() { cluster check; }
up() {
  cluster down >/dev/null 2>&1 || cluster down
  cluster up --no-auto-failover --port $PORT --raft-port $RAFT_PORT "$@" >/dev/null
}

echo "# 1. start"
up
check "exactly one leader, agreed by all three" wait_for 10 "one leader" one_agreed_leader 1 2 3 || {
  cluster status; for i in 1 2 3; do echo "--- node $i"; sql "$i" "SELECT error FROM pg_leader_status()"; grep pg_leader "$DIR/n$i.log" | tail -n 5; done
}
check "histories hold" histories_hold

echo "# 4. the leader cut off from the majority"
leader=$(leaders_among 1 2 3); rest=$(others "$leader" 1 2 3)
cluster partition "$leader/${rest// /,}" >/dev/null
old_false_at=""; new_true_at=""
for _ in $(seq 1 400); do
  now=$(date +%s%N)
  [ -z "$old_false_at" ] && ! is_leader "$leader" && old_false_at=$now
  for i in $rest; do [ -z "$new_true_at" ] && is_leader "$i" && new_true_at=$now; done
  [ -n "$old_false_at" ] && [ -n "$new_true_at" ] && break
  sleep 0.01
done
[ -n "$old_false_at" ] && [ -n "$new_true_at" ] && echo "the old leader answered false $(( (new_true_at - old_false_at) / 1000000 )) ms before a new one answered true"
check "the cut-off leader's answer turns false before any other turns true" \
  test -n "$old_false_at" -a -n "$new_true_at" -a "${old_false_at:-0}" -le "${new_true_at:-0}"
check "the majority agrees on a new leader" wait_for 10 "majority leader" one_agreed_leader $rest
cluster heal >/dev/null
check "after healing there is one leader for all three" wait_for 10 "one leader" one_agreed_leader 1 2 3
check "histories hold" histories_hold

echo "# 5. asymmetric and partial partitions"
leader=$(leaders_among 1 2 3); set -- $(others "$leader" 1 2 3); f1=$1; f2=$2
term=$(term_of "$leader")
cluster block "$leader" "$f1" >/dev/null     # f1 stops hearing the leader; the leader still hears f1
sleep 4
check "one-way loss to a follower: the leader stays, no flapping" \
  test "$(leaders_among 1 2 3)" = "$leader" -a "$(term_of "$f2")" -le $((term + 1))
cluster heal >/dev/null
cluster partition "$f1/$f2" >/dev/null       # the followers cannot talk, both reach the leader
sleep 3
check "followers cut from each other: nothing changes" wait_for 5 "one leader" one_agreed_leader 1 2 3
check "at most one election in all of it" test "$(term_of "$f2")" -le $((term + 1))
cluster heal >/dev/null
check "histories hold" histories_hold

echo "# 6. the leader's worker paused past the election timeout"
wait_for 10 "one leader" one_agreed_leader 1 2 3
leader=$(leaders_among 1 2 3); rest=$(others "$leader" 1 2 3)
cluster pause "$leader" >/dev/null
check "the others elect" wait_for 10 "a new leader" one_agreed_leader $rest
check "the paused leader answers false (its lease ran out on the clock)" not_leader "$leader"
cluster resume "$leader" >/dev/null
check "on resume it steps down without disrupting" wait_for 10 "one leader" one_agreed_leader 1 2 3
check "histories hold" histories_hold

echo "# 8. rolling restart"
term=$(term_of 1)
for i in 1 2 3; do
  cluster stop "$i" >/dev/null
  cluster start "$i" >/dev/null
  wait_for 15 "one leader after restarting node $i" one_agreed_leader 1 2 3 || true
done
check "one leader after restarting every node" one_agreed_leader 1 2 3
check "at most one election per restart" test "$(term_of 1)" -le $((term + 3))
check "histories hold" histories_hold

echo "# 9. five servers lose two, then three"
up --nodes 5
check "five servers elect one leader" wait_for 15 "one leader" one_agreed_leader 1 2 3 4 5
leader=$(leaders_among 1 2 3 4 5)
set -- $(others "$leader" 1 2 3 4 5)
cluster kill "$leader" >/dev/null
cluster kill "$1" >/dev/null
survivors="$2 $3 $4"
check "three of five elect after losing two" wait_for 15 "a new leader" one_agreed_leader $survivors
leader=$(leaders_among $survivors)
cluster kill "$leader" >/dev/null
two=$(others "$leader" $survivors)
sleep 5
check "two of five never elect" test -z "$(leaders_among $two)"
check "histories hold" histories_hold

echo "# the failover script, after a real failover"
up
wait_for 10 "one leader" one_agreed_leader 1 2 3
conn() { echo "host=$DIR port=$((PORT + $1)) user=postgres dbname=postgres"; }
failover() { "${RUN_AS[@]}" bash examples/failover.sh "$@"; }
cluster kill 1 >/dev/null                      # the primary dies
check "the standbys agree on a leader" wait_for 15 "a leader among 2 and 3" one_agreed_leader 2 3
leader=$(leaders_among 2 3); other=$(others "$leader" 2 3)
dry=$(failover --dry-run "$(conn 1)" "$(conn 2)" "$(conn 3)")
echo "$dry" | sed 's/^/  /'
check "--dry-run says what it would do and does nothing" \
  test "$(echo "$dry" | grep -c '^would: ')" = 2 -a "$(sql "$leader" 'SELECT pg_is_in_recovery()')" = t
failover "$(conn 1)" "$(conn 2)" "$(conn 3)" | sed 's/^/  /'
check "the leader is promoted" test "$(sql "$leader" 'SELECT pg_is_in_recovery()')" = f
sql "$leader" "CREATE TABLE failover_probe AS SELECT 42 AS answer" >/dev/null
replicated() { [ "$(sql "$other" 'SELECT answer FROM failover_probe')" = 42 ]; }
check "the other standby follows the new primary" wait_for 30 "replication from node $leader" replicated
check "a second run changes nothing" test -z "$(failover --dry-run "$(conn 2)" "$(conn 3)" | grep '^would: ')"

echo "# a witness: two servers that can lead, and a minimal one that only votes"
up --witness
check "one of the two data servers leads" wait_for 15 "one leader" one_agreed_leader 1 2 3
# grep reads the whole output (not -q): the tool must not meet a closed pipe.
witness_listed() { cluster status | grep -E '^ +3  witness ' >/dev/null; }
check "status shows node 3 as the witness" witness_listed
check "the witness runs with pg_leader.can_be_leader = off" test "$(sql 3 'SHOW pg_leader.can_be_leader')" = off
check "the witness is a database system of its own" \
  test "$(sql 3 'SELECT system_identifier FROM pg_control_system()')" != "$(sql 1 'SELECT system_identifier FROM pg_control_system()')"
witness_never_led=1
for round in 1 2 3; do
  leader=$(leaders_among 1 2); other=$(others "$leader" 1 2)
  cluster kill "$leader" >/dev/null
  # Only the other data server can win: the witness's vote makes its majority.
  wait_for 15 "node $other to lead" one_agreed_leader "$other" 3 || witness_never_led=0
  is_leader "$other" || witness_never_led=0
  cluster start "$leader" >/dev/null
  wait_for 15 "agreement" one_agreed_leader 1 2 3 || witness_never_led=0
done
check "three SIGKILLs of the leader: the other data server took over each time, the witness never led" test "$witness_never_led" = 1
check "histories hold" histories_hold

echo
echo "cluster: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
