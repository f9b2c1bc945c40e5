#!/usr/bin/env bash
# Membership changes on real servers: servers added (as voters through joining, or as
# learners) and removed from SQL, one change at a time, the leader removed (it hands over
# first), a change interrupted by a SIGKILL of the leader, pg_leader.peers edited and reloaded,
# and a voter that must never lead. Five independent servers on loopback; 1-3 form the first
# configuration, 4 and 5 are started later and list every server in pg_leader.peers.
set -u
cd "$(dirname "$0")/.."
BASE_PG_PORT=55750
BASE_RAFT_PORT=7750
source tests/lib.sh

WORK=$(mktemp -d /tmp/pg_leader_membership.XXXXXX)
trap cluster_cleanup EXIT
cluster_init "$WORK" 5 "$NO_FENCE" "pg_leader.heartbeat_interval = 50ms" "pg_leader.election_timeout = 500ms"
FIRST="1=127.0.0.1:$((BASE_RAFT_PORT + 1)), 2=127.0.0.1:$((BASE_RAFT_PORT + 2)), 3=127.0.0.1:$((BASE_RAFT_PORT + 3))"
for i in 1 2 3; do
  echo "pg_leader.peers = '$FIRST'" | as_pg tee -a "$WORK/n$i/postgresql.conf" >/dev/null
done
# Each server is a database system of its own: each needs the extension's functions.
for i in 1 2 3 4 5; do
  node_start "$i"
  sql "$i" "CREATE EXTENSION pg_leader" >/dev/null
  [ "$i" -le 3 ] || node_stop "$i"
done
addr() { echo "127.0.0.1:$((BASE_RAFT_PORT + $1))"; }

# The voters (ids, space-separated) node $1 sees in the configuration in effect.
voters_on() { sql "$1" "SELECT string_agg(node_id::text, ' ' ORDER BY node_id) FROM pg_leader_nodes() WHERE membership = 'voter'"; }
# Every member with its role, as node $1 sees it once that configuration is committed.
members_on() { sql "$1" "SELECT string_agg(node_id || ':' || membership, ' ' ORDER BY node_id) FROM pg_leader_nodes()"; }
leader_on() { sql "$1" "SELECT pg_leader_leader_id()"; }
# Nodes $2.. all see the members $1.
all_see() { local want=$1; shift; for i in "$@"; do answers "$want" members_on "$i" || return 1; done; }
# The first of "$@" that is not the leader.
follower_among() { local l=$(leaders_among "$@"); for i in "$@"; do [ "$i " = "$l" ] || { echo "$i"; return; }; done; }
# Runs SQL on node $1 and prints the error message (or the result when there is none).
sql_error() { as_pg psql -X -q -At -h "$WORK" -p $((BASE_PG_PORT + $1)) -U postgres -d postgres -c "$2" 2>&1 | sed -n 's/^ERROR: *//p;t;p' | head -1; }

echo "# the first configuration comes from pg_leader.peers"
check "nodes 1-3 agree on a leader" wait_for 20 "a leader" one_agreed_leader 1 2 3
check "three voters, from pg_leader.peers" wait_for 10 "3 voters" all_see "1:voter 2:voter 3:voter" 1 2 3
check "pg_leader_status() says this server is a voter" test "$(sql 1 'SELECT membership FROM pg_leader_status()')" = voter

echo "# privileges"
sql 1 "CREATE ROLE plain LOGIN" >/dev/null
denied() { as_pg psql -X -q -At -h "$WORK" -p $((BASE_PG_PORT + 1)) -U plain -d postgres -c "$1" 2>&1 | grep -q "permission denied"; }
check "a plain role may not add a node" denied "SELECT pg_leader_add_node(9, '127.0.0.1:9')"
check "a plain role may not remove a node" denied "SELECT pg_leader_remove_node(3)"
check "a plain role may read the membership" test "$(as_pg psql -X -At -h "$WORK" -p $((BASE_PG_PORT + 1)) -U plain -d postgres -c 'SELECT count(*) FROM pg_leader_nodes()')" = 3

echo "# adding a voter, asked on a follower"
node_start 4
F=$(follower_among 1 2 3)
start_ms=$(date +%s%3N)
got=$(sql "$F" "SELECT pg_leader_add_node(4, '$(addr 4)')")
echo "node $F: pg_leader_add_node(4) returned '$got' after $(( $(date +%s%3N) - start_ms )) ms"
check "the call returns 'voter' once node 4 has joined and been promoted" test "$got" = voter
check "every server, node 4 included, sees four voters" wait_for 10 "4 voters" all_see "1:voter 2:voter 3:voter 4:voter" 1 2 3 4
check "node 4 follows the leader" wait_for 10 "agreement" one_agreed_leader 1 2 3 4
check "the worker logs the new configuration" grep -q "configuration in effect (replicated, log index .*4=127.0.0.1:$((BASE_RAFT_PORT + 4))" "$WORK/n$F.log"

echo "# bad requests get clear errors and change nothing"
err=$(sql_error 1 "SELECT pg_leader_add_node(4, '$(addr 4)')")
echo "add 4 again: $err"
check "adding a member again is refused" test "$err" = "node 4 is already a member of the cluster"
err=$(sql_error 1 "SELECT pg_leader_add_node(6, 'no port')")
echo "bad address: $err"
check "a malformed address is refused" test "$err" = 'invalid address "no port"'
err=$(sql_error 2 "SELECT pg_leader_remove_node(9)")
check "removing a stranger is refused" test "$err" = "node 9 is not a member of the cluster"
err=$(sql_error 2 "SELECT pg_leader_add_node(6, '$(addr 2)')")
check "an address in use is refused" test "$err" = "address $(addr 2) is already used by another member"
check "still four voters" all_see "1:voter 2:voter 3:voter 4:voter" 1 2 3 4

echo "# one change at a time; a join that cannot finish can be cancelled"
out=$(as_pg psql -X -q -At -h "$WORK" -p $((BASE_PG_PORT + 1)) -U postgres -d postgres -c "SELECT pg_leader_add_node(5, '$(addr 5)', timeout_ms => 1500)" 2>&1)
echo "add 5 (not running): $out" | tr '\n' ' '; echo
check "a server that is not running stays 'joining', with a NOTICE" bash -c "echo '$out' | grep -q '^joining$' && echo '$out' | grep -q 'NOTICE:  node 5 is joining'"
err=$(sql_error 2 "SELECT pg_leader_add_node(6, '127.0.0.1:7999')")
echo "second change: $err"
check "a second change while one is pending is refused" test "$err" = "another membership change is in progress"
check "the cancel returns 'removed'" test "$(sql 3 'SELECT pg_leader_remove_node(5)')" = removed
check "back to four voters" wait_for 10 "4 voters" all_see "1:voter 2:voter 3:voter 4:voter" 1 2 3 4

echo "# a learner follows without counting"
node_start 5
check "node 5 joins as a learner" test "$(sql 1 "SELECT pg_leader_add_node(5, '$(addr 5)', voter => false)")" = learner
check "every server sees the learner" wait_for 10 "learner" all_see "1:voter 2:voter 3:voter 4:voter 5:learner" 1 2 3 4 5
L=$(leaders_among 1 2 3 4); L=${L% }
check "the learner names the leader" wait_for 5 "learner follows" answers "$L" leader_on 5
as_pg kill -9 "$(node_pid "$L")"
others=$(for i in 1 2 3 4; do [ "$i" = "$L" ] || echo -n "$i "; done)
check "after a SIGKILL of leader $L the voters elect another" wait_for 20 "new leader" one_agreed_leader $others
NEW=$(leaders_among $others); NEW=${NEW% }
check "the learner never leads and follows the new leader" wait_for 10 "learner follows" answers "$NEW" leader_on 5
check "the learner never answered true" test "$(sql 5 'SELECT pg_leader_is_leader()')" = f
node_start "$L"
check "the restarted node keeps the replicated configuration" wait_for 10 "config" all_see "1:voter 2:voter 3:voter 4:voter 5:learner" "$L"
check "it says pg_leader.peers differs from the replicated configuration" grep -q "pg_leader.peers differs from the replicated configuration, which is used" "$WORK/n$L.log"
check "all five agree" wait_for 10 "agreement" one_agreed_leader 1 2 3 4 5

echo "# removing the leader hands over first"
L=$(leaders_among 1 2 3 4); L=${L% }
F=$(follower_among 1 2 3 4)
start_ms=$(date +%s%3N)
got=$(sql "$F" "SELECT pg_leader_remove_node($L)")
echo "node $F: pg_leader_remove_node($L) returned '$got' after $(( $(date +%s%3N) - start_ms )) ms"
check "the call returns 'removed'" test "$got" = removed
rest=$(for i in 1 2 3 4; do [ "$i" = "$L" ] || echo -n "$i "; done)
check "the others agree on a new leader" wait_for 10 "agreement" one_agreed_leader $rest 5
check "the removed node is not the leader any more" test "$(leaders_among $rest)" != "$L "
check "the removed node knows it is leaving" test "$(sql "$L" 'SELECT membership FROM pg_leader_status()')" = leaving
check "the removed node never answers true" test "$(sql "$L" 'SELECT pg_leader_is_leader()')" = f
check "it logged the handover" grep -q "passed on a membership change (remove node $L): handing leadership over first" "$WORK/n$L.log"
REMOVED=$L

echo "# changes interrupted by a SIGKILL of the leader: the old or the new configuration, never both, never none"
# Alternately re-add and remove node $REMOVED, killing the leader right after the request
# reaches it; then every live member must agree on one leader and one configuration, which is
# the old or the new one.
voters=$rest
for round in 1 2 3 4; do
  L=$(leaders_among $voters); L=${L% }
  before=$(voters_on "$L")
  if [ "$(sql "$L" "SELECT count(*) FROM pg_leader_nodes() WHERE node_id = $REMOVED")" = 0 ]; then
    what="add node $REMOVED"; query="SELECT pg_leader_add_node($REMOVED, '$(addr $REMOVED)')"
  else
    what="remove node $REMOVED"; query="SELECT pg_leader_remove_node($REMOVED)"
  fi
  sql "$L" "$query" >/dev/null 2>&1 &
  sleep "0.0$((round * 2))"
  as_pg kill -9 "$(node_pid "$L")"
  wait
  live=$(for i in 1 2 3 4; do [ "$i" = "$L" ] || echo -n "$i "; done)
  wait_for 20 "leader" one_agreed_leader $(for i in $live; do [ "$i" = "$REMOVED" ] && [ "$(sql "$i" 'SELECT membership FROM pg_leader_status()')" != voter ] || echo "$i"; done) || true
  # Settle: a committed join is completed (promotion) by the next leader.
  sleep 2
  views=$(for i in $live; do [ "$(sql "$i" 'SELECT membership FROM pg_leader_status()')" = voter ] && voters_on "$i"; done | sort -u)
  after=$(echo "$views" | head -1)
  if [ "$what" = "add node $REMOVED" ]; then new=$(echo $before $REMOVED | tr ' ' '\n' | sort -n | tr '\n' ' '); else new=$(echo $before | tr ' ' '\n' | grep -vx "$REMOVED" | sort -n | tr '\n' ' '); fi
  echo "round $round ($what, leader $L killed): before [$before] now [$after] (views: $(echo "$views" | wc -l))"
  check "round $round: every voter sees one configuration" test "$(echo "$views" | wc -l)" -eq 1
  check "round $round: it is the old or the new one" bash -c "[ '$after' = '$before' ] || [ '$after ' = '$new' ]"
  node_start "$L"
  voters=$(voters_on "$(echo $live | cut -d' ' -f1)")
  check "round $round: one agreed leader once node $L is back" wait_for 20 "agreement" one_agreed_leader $voters
done

echo "# pg_leader.peers edited on every server and reloaded"
current=$(voters_on 1)
target=""
for i in 1 2 3 4; do target+="${target:+, }$i=$(addr $i)"; done
for i in 1 2 3 4 5; do
  echo "pg_leader.peers = '$target'" | as_pg tee -a "$WORK/n$i/postgresql.conf" >/dev/null
  sql "$i" "SELECT pg_reload_conf()" >/dev/null
done
echo "voters before the reload: [$current]; pg_leader.peers now lists 1-4"
check "the cluster moves to the four voters pg_leader.peers lists" wait_for 30 "peers" all_see "1:voter 2:voter 3:voter 4:voter 5:learner" 1 2 3 4 5
check "the leader logged that it follows pg_leader.peers" bash -c "grep -q 'pg_leader.peers changed; the leader moves the cluster to' '$WORK'/n*.log"
check "one agreed leader" wait_for 20 "agreement" one_agreed_leader 1 2 3 4 5

echo "# a voter that must never lead"
# Node 4 leads first, so that turning the setting off must make it hand over.
L=$(leaders_among 1 2 3 4); L=${L% }
[ "$L" = 4 ] || sql "$L" "SELECT pg_leader_transfer_leadership(4)" >/dev/null
leading_4() { one_agreed_leader 1 2 3 4 && [ "$(leaders_among 4)" = "4 " ]; }
check "node 4 leads (after a switchover to it)" wait_for 10 "node 4 to lead" leading_4
echo "pg_leader.can_be_leader = off" | as_pg tee -a "$WORK/n4/postgresql.conf" >/dev/null
sql 4 "SELECT pg_reload_conf()" >/dev/null
check "SHOW pg_leader.can_be_leader" wait_for 5 "reload" answers off sql 4 "SHOW pg_leader.can_be_leader"
not_leading_4() { one_agreed_leader 1 2 3 4 && [ -z "$(leaders_among 4)" ]; }
check "if it leads, it hands leadership over" wait_for 10 "another leader" not_leading_4
check "and says why" grep -q "handing leadership to node .*: pg_leader.can_be_leader is off" "$WORK/n4.log"
sleep 0.3
log_lines=$(wc -l < "$WORK/n4.log")
L=$(leaders_among 1 2 3 4); L=${L% }
err=$(sql_error "$L" "SELECT pg_leader_transfer_leadership(4)")
echo "switchover to node 4 on leader $L: $err"
check "a switchover to it is refused" test "$err" = "node 4 cannot be leader"
F=$(follower_among 1 2 3)
start_ms=$(date +%s%3N)
err=$(sql_error "$F" "SELECT pg_leader_transfer_leadership(4)")
took=$(( $(date +%s%3N) - start_ms ))
echo "switchover to node 4 asked on follower $F: $err (after $took ms)"
check "asked on a follower, the leader's refusal comes back as the same error" test "$err" = "node 4 cannot be leader"
check "at once, not at the timeout" test "$took" -lt 5000
never_led=1
for round in 1 2 3; do
  L=$(leaders_among 1 2 3 4); L=${L% }
  as_pg kill -9 "$(node_pid "$L")"
  others=$(for i in 1 2 3 4; do [ "$i" = "$L" ] || echo -n "$i "; done)
  wait_for 20 "new leader" one_agreed_leader $others || never_led=0
  [ "$(leaders_among 4)" = "" ] || never_led=0
  node_start "$L"
  wait_for 20 "agreement" one_agreed_leader 1 2 3 4 || never_led=0
done
check "over three SIGKILLs of the leader node 4 voted but never led" test "$never_led" = 1
check "node 4 never logged becoming leader" test "$(tail -n +"$((log_lines + 1))" "$WORK/n4.log" | grep -c 'node 4 is now leader')" = 0

echo
echo "membership: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
