#!/usr/bin/env bash
# End-to-end tests of the extension on real PostgreSQL 15 servers on loopback: the SQL functions
# on one server, the errors without preload and with bad settings, three servers agreeing on one
# leader, hostile datagrams, and a failover after SIGKILL.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
INJECT=${INJECT:-target/release/pg-leader-inject}

WORK=$(mktemp -d /tmp/pg_leader_e2e.XXXXXX)
trap cluster_cleanup EXIT

echo "# one server"
# A 10 s election timeout: a new server (its state directory made at this start) never promised
# anything and waits for nothing, and the only voter needs no one's vote: it leads long before
# T, where a blind wait would take 10 s.
cluster_init "$WORK" 1 "$NO_FENCE" "pg_leader.election_timeout = '10s'"
started=$SECONDS
node_start 1
sql 1 "CREATE EXTENSION pg_leader" >/dev/null
check "a new single server elects itself at once" wait_for 5 "node 1 to lead" one_agreed_leader 1
check "well before its election timeout" test $((SECONDS - started)) -le 6
check "pg_leader_node_id() is 1" test "$(sql 1 'SELECT pg_leader_node_id()')" = 1
check "pg_leader_leader_id() is 1" test "$(sql 1 'SELECT pg_leader_leader_id()')" = 1
check "pg_leader_term() is at least 1" test "$(sql 1 'SELECT pg_leader_term() >= 1')" = t
check "pg_leader_wait_for_leader() returns the leader" test "$(sql 1 'SELECT pg_leader_wait_for_leader(5000)')" = 1
check "pg_leader_status() shows a lease on the leader" \
  test "$(sql 1 "SELECT role || ',' || (lease_remaining_ms > 0) || ',' || coalesce(error, 'none') FROM pg_leader_status()")" = "leader,true,none"
check "pg_leader_nodes() lists this server" \
  test "$(sql 1 "SELECT node_id || ',' || address || ',' || is_self || ',' || is_leader FROM pg_leader_nodes()")" = "1,127.0.0.1:$((BASE_RAFT_PORT + 1)),true,true"
check "pg_leader_history() records the election and the lease" \
  test "$(sql 1 "SELECT bool_or(role = 'leader' AND cause = 'won election') AND bool_or(cause = 'lease' AND lease_until > at) FROM pg_leader_history()")" = t
check "the secret file is hidden from ordinary users" \
  test "$(sql 1 "CREATE ROLE plain LOGIN; SET ROLE plain; SELECT count(*) FROM pg_settings WHERE name = 'pg_leader.secret_file'")" = 0

echo "# bad settings: the worker stays up as 'misconfigured' and says why"
node_stop 1
sed -i "/pg_leader.election_timeout = '10s'/d" "$WORK/n1/postgresql.conf"
echo "pg_leader.node_id = 7" | as_pg tee -a "$WORK/n1/postgresql.conf" >/dev/null
node_start 1
status_error_mentions() { sql 1 "SELECT error FROM pg_leader_status() WHERE role = 'misconfigured'" | grep -q "$1"; }
check "a node id missing from the peers is reported" wait_for 5 "misconfigured" status_error_mentions pg_leader.node_id
check "and logged once" test "$(grep -c 'Node id 7 is not in pg_leader.peers' "$WORK/n1.log")" = 1
check "is_leader is false while misconfigured" test "$(sql 1 'SELECT pg_leader_is_leader()')" = f
node_stop 1
sed -i '/pg_leader.node_id = 7/d' "$WORK/n1/postgresql.conf"
chmod 644 "$WORK/secret"
node_start 1
check "a secret file readable by others is refused" wait_for 5 "misconfigured" status_error_mentions 'mode 0644'
chmod 600 "$WORK/secret"
sql 1 "SELECT pg_reload_conf()" >/dev/null
check "fixing it and reloading is enough" wait_for 5 "node 1 to lead after reload" one_agreed_leader 1
node_stop 1

echo "# without shared_preload_libraries"
sed -i "/shared_preload_libraries/d" "$WORK/n1/postgresql.conf"
node_start 1
err=$(sql 1 "SELECT pg_leader_is_leader()" 2>&1)
check "every function raises a clear error with a hint" \
  bash -c "grep -q 'pg_leader must be loaded via shared_preload_libraries' <<<\"\$0\" && grep -q 'HINT:  Add pg_leader to shared_preload_libraries' <<<\"\$0\"" "$err"
check "and the server keeps running" test "$(sql 1 'SELECT 1')" = 1
node_stop 1
rm -rf "$WORK/n1"

echo "# three servers: a primary and two pg_basebackup standbys"
cluster_init_replicated "$WORK" 3 "$NO_FENCE" "$ELECTION_ONLY"
sql 1 "CREATE EXTENSION pg_leader" >/dev/null
sql 1 "CREATE ROLE plain_user LOGIN" >/dev/null
for i in 2 3; do node_start $i; done
check "nodes 2 and 3 are standbys" test "$(sql 2 'SELECT pg_is_in_recovery()')$(sql 3 'SELECT pg_is_in_recovery()')" = tt
check "exactly one leader, reported the same by all three" wait_for 10 "one agreed leader" one_agreed_leader 1 2 3
leader=$(leaders_among 1 2 3); leader=${leader% }
follower=$(( leader % 3 + 1 ))
term=$(sql "$leader" "SELECT pg_leader_term()")
echo "leader $leader, term $term; attacking follower $follower"
fport=$((BASE_RAFT_PORT + follower))
timeout 5 tcpdump -i lo -w "$WORK/capture.pcap" -c 20 "udp and dst port $fport" >/dev/null 2>&1
# The kernel's count of datagrams it dropped for this socket (buffer full), from /proc/net/udp.
udp_drops() { awk -v p=":$(printf '%04X' "$1")" '$2 ~ p"$" {print $NF}' /proc/net/udp; }
drops_before=$(udp_drops "$fport")
rejected_before=$(sql "$follower" "SELECT sum(packets_rejected) FROM pg_leader_nodes()")
worker_pid=$(ps -o pid=,args= --ppid "$(node_pid "$follower")" | awk '$2 == "postgres:" && $3 == "pg_leader" && NF == 3 {print $1}')
private_kib() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
private_before=$(private_kib "$worker_pid")
for kind in wrong-secret other-cluster garbage truncated oversized; do
  "$INJECT" --to "127.0.0.1:$fport" --kind "$kind" --count 1000 --from "$leader" --target "$follower" --secret-file "$WORK/secret" >/dev/null
done
"$INJECT" --to "127.0.0.1:$fport" --kind replay --count 1000 --pcap "$WORK/capture.pcap" >/dev/null
sleep 1
rejected_after=$(sql "$follower" "SELECT sum(packets_rejected) FROM pg_leader_nodes()")
drops=$(( $(udp_drops "$fport") - drops_before ))
echo "kernel drops (socket buffer full, never reached the worker): $drops"
echo "packets_rejected on node $follower: $rejected_before -> $rejected_after"
sql "$follower" "SELECT node_id, packets_in, packets_out, packets_rejected FROM pg_leader_nodes()" | sed 's/^/  /'
check "every one of the 6000 hostile datagrams that arrived was rejected and counted" \
  test $((rejected_after - rejected_before + drops)) -eq 6000 -a "$drops" -lt 600
echo "worker private memory: $private_before KiB -> $(private_kib "$worker_pid") KiB"
check "the worker's private memory grew by less than 1 MiB" test $(( $(private_kib "$worker_pid") - private_before )) -lt 1024
check "they changed neither the leader nor the term" \
  test "$(sql "$follower" "SELECT pg_leader_leader_id() || '/' || pg_leader_term()")" = "$leader/$term"
check "the cluster still agrees" one_agreed_leader 1 2 3

echo "# switchover from SQL"
leader=$(leaders_among 1 2 3); leader=${leader% }
target=$(( leader % 3 + 1 )); third=$(( target % 3 + 1 ))
check "pg_leader_transfer_leadership(target) returns the target" \
  test "$(sql "$leader" "SELECT pg_leader_transfer_leadership($target)")" = "$target"
check "and every node agrees on it" wait_for 5 "the new leader" one_agreed_leader 1 2 3
check "the target is the one that answers true" test "$(leaders_among 1 2 3)" = "$target "
moved=$(sql "$third" "SELECT pg_leader_transfer_leadership($third)" 2>&1)
check "called on a follower, it is passed on to the leader and returns the new leader" test "$moved" = "$third"
check "which every node agrees on" wait_for 5 "node $third to lead" one_agreed_leader 1 2 3
check "it is the follower that asked" test "$(leaders_among 1 2 3)" = "$third "
target=$third
err=$(sql "$target" "SELECT pg_leader_transfer_leadership(9)" 2>&1)
check "an unknown target is refused" grep -q "node 9 is not a voter of this cluster" <<<"$err"
err=$(sql "$target" "SET ROLE plain_user; SELECT pg_leader_transfer_leadership()" 2>&1)
check "ordinary roles may not call it" grep -q "permission denied for function pg_leader_transfer_leadership" <<<"$err"
# Granted on the primary; it reaches the standbys with the WAL.
sql 1 "GRANT pgleader_admin TO plain_user" >/dev/null
wait_for 5 "the grant to replicate" answers t sql "$target" "SELECT pg_has_role('plain_user', 'pgleader_admin', 'MEMBER')"
picked=$(sql "$target" "SET ROLE plain_user; SELECT pg_leader_transfer_leadership()")
check "a member of pgleader_admin may; with no target the most caught-up voter takes over" \
  test -n "$picked" -a "$picked" != "$target"
err=$(sql "$target" "SET ROLE plain_user; SHOW pg_leader.on_role_change" 2>&1)
check "the role command is hidden from ordinary roles" grep -q "permission denied\|must be superuser" <<<"$err"
check "and the cluster agrees" wait_for 5 "one leader" one_agreed_leader 1 2 3

echo "# SIGKILL of the leader's postmaster"
survivors=$(for i in 1 2 3; do [ "$i" != "$leader" ] && echo -n "$i "; done)
kill -9 "$(node_pid "$leader")"
start_ns=$(date +%s%N)
check "the survivors elect exactly one new leader" wait_for 10 "a new leader" one_agreed_leader $survivors
echo "new leader seen through SQL on every survivor after $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"
new_term=$(sql "${survivors%% *}" "SELECT pg_leader_term()")
# The killed postmaster's children exit on their own; wait before restarting it.
sleep 2
rm -f "$WORK/n$leader/postmaster.pid"
node_start "$leader"
check "the old leader rejoins as a follower" wait_for 10 "three agree" one_agreed_leader 1 2 3
check "without raising the term (PreVote)" test "$(sql "$leader" "SELECT pg_leader_term()")" = "$new_term"

echo "# planned stop of the leader hands over"
leader=$(leaders_among 1 2 3); leader=${leader% }
survivors=$(for i in 1 2 3; do [ "$i" != "$leader" ] && echo -n "$i "; done)
# Only what the logs say after the stop counts: earlier switchovers wrote the same lines.
declare -A lines_before
for i in 1 2 3; do lines_before[$i]=$(wc -l <"$WORK/n$i.log"); done
since_stop() { tail -n +"$((lines_before[$1] + 1))" "$WORK/n$1.log"; }
node_stop "$leader" fast
handed_over() { since_stop "$leader" | grep -q "handed leadership to node"; }
took_over() { for i in $survivors; do since_stop "$i" | grep -q "leader unknown (leadership transfer)" && return 0; done; return 1; }
check "the stopping leader handed over before its worker exited" handed_over ||
  since_stop "$leader" | grep "pg_leader" | tail -n 5 | sed 's/^/# /'
check "a survivor campaigned at once on TimeoutNow" wait_for 5 "the transfer" took_over
check "and leads, agreed by both survivors" wait_for 5 "one agreed leader" one_agreed_leader $survivors
node_start "$leader"
check "the stopped node rejoins" wait_for 10 "three agree" one_agreed_leader 1 2 3

echo "# a standby with hot_standby = off still takes part"
echo "hot_standby = off" | as_pg tee -a "$WORK/n3/postgresql.conf" >/dev/null
node_stop 3
node_start_unready() { as_pg "$PGBIN/pg_ctl" -D "$WORK/n$1" -l "$WORK/n$1.log" -W start >/dev/null; }
node_start_unready 3
# Followers answer only the leader: ask the leader whether it hears node 3.
node3_heard() {
  local l; l=$(leaders_among 1 2); l=${l% }
  [ -n "$l" ] && [ "$(sql "$l" "SELECT last_contact_ms < 500 FROM pg_leader_nodes() WHERE node_id = 3")" = t ]
}
check "its worker talks to the others although it accepts no connections" wait_for 10 "node 3's datagrams" node3_heard
node_stop 3
sed -i '/hot_standby = off/d' "$WORK/n3/postgresql.conf"
node_start 3

echo "# the worker restarts after a crash"
worker_pid() { pgrep -f "postgres: pg_leader" -P "$(node_pid 2)"; }
old_worker=$(worker_pid)
kill -9 "$old_worker"
new_worker_up() { local p; p=$(worker_pid) && [ -n "$p" ] && [ "$p" != "$old_worker" ]; }
check "a killed worker is started again" wait_for 15 "a new worker" new_worker_up
check "and the node rejoins the cluster" wait_for 15 "three agree" one_agreed_leader 1 2 3

echo "# settings through SHOW and reload"
check "SHOW speaks PostgreSQL units" test "$(sql 1 'SHOW pg_leader.election_timeout')" = 1s
sql 1 "ALTER SYSTEM SET pg_leader.heartbeat_interval = '50ms'" >/dev/null
sql 1 "SELECT pg_reload_conf()" >/dev/null
check "a reload changes the heartbeat interval" wait_for 5 "the reload" grep -q "heartbeat interval 50ms" "$WORK/n1.log"
sql 1 "ALTER SYSTEM SET pg_leader.heartbeat_interval = '900ms'" >/dev/null
sql 1 "SELECT pg_reload_conf()" >/dev/null
check "an unsafe heartbeat is refused on reload and the old one kept" wait_for 5 "the refusal" \
  grep -q "keeping heartbeat interval 50ms" "$WORK/n1.log"
check "the cluster still agrees after the reloads" one_agreed_leader 1 2 3

echo
echo "extension: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
