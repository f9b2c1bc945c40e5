#!/usr/bin/env bash
# End-to-end: the operators' HTTP endpoints (pg_leader.http_port) on three real servers made by
# `pg_leader-cluster up` (a primary, two standbys, auto_failover on): /primary on exactly the
# primary, /replica and /replica?lag= on the streaming standbys (503 with a small lag while a
# standby's replay is paused), /health, /readiness, 400 / 404 / HEAD, /metrics read by
# Prometheus' own Python parser with every metric of the README's table, HAProxy checking
# /primary and /replica?lag= that follows a SIGKILL of the primary's postmaster, and the
# counters moving across that failover.
#
# Environment: TOOL (the pg_leader-cluster binary), PG_LEADER_PGBIN, OPS_HTTP_PG_PORT,
# OPS_HTTP_RAFT_PORT and OPS_HTTP_HTTP_PORT (base ports 56100, 8100, 8150; HAProxy listens on
# the HTTP base + 15 and + 16), PROM_VENV (a venv with prometheus_client, made if missing).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${OPS_HTTP_PG_PORT:-56100}
RAFT_PORT=${OPS_HTTP_RAFT_PORT:-8100}
HTTP_PORT=${OPS_HTTP_HTTP_PORT:-8150}
WRITE_PORT=$((HTTP_PORT + 15)) READ_PORT=$((HTTP_PORT + 16))
PROM_VENV=${PROM_VENV:-/opt/pg_leader_prom_venv}
# `down` removes this nft table: never another test's.
export PG_LEADER_NFT_TABLE=${PG_LEADER_NFT_TABLE:-pg_leader_ops_http}
source tests/lib.sh
WORK=$(mktemp -u /tmp/pg_leader_ops_http.XXXXXX)
SCRATCH=$(mktemp -d /tmp/pg_leader_ops_http_scratch.XXXXXX)
cluster() { "$TOOL" --dir "$WORK" "$@"; }
cleanup() {
  [ -f "$SCRATCH/haproxy.pid" ] && kill "$(cat "$SCRATCH/haproxy.pid")" 2>/dev/null
  cluster down >/dev/null 2>&1
  rm -rf "$SCRATCH"
  cluster_cleanup
}
trap cleanup EXIT

url() { echo "http://127.0.0.1:$((HTTP_PORT + $1))$2"; }
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$(url "$1" "$2")"; }
code_is() { [ "$(http_code "$2" "$3")" = "$1" ]; }
# The nodes among 1..3 whose PATH answers 200, as "1 3".
answering() { local i out=""; for i in 1 2 3; do code_is 200 "$i" "$1" && out+="$i "; done; echo "${out% }"; }
# raw NODE BYTES: the status line the server answers to BYTES sent as they are.
raw() {
  timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1; printf "$2" >&3; head -1 <&3 | tr -d "\r"' _ "$((HTTP_PORT + $1))" "$2"
}

if [ ! -x "$PROM_VENV/bin/python" ] || ! "$PROM_VENV/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  /usr/bin/python3 -m venv "$PROM_VENV" && "$PROM_VENV/bin/pip" install -q prometheus_client >/dev/null
fi
# metrics NODE: every sample as "family type sample{label=value,...} value", through
# Prometheus' Python parser of the text format.
metrics() {
  curl -s -m 2 "$(url "$1" /metrics)" | "$PROM_VENV/bin/python" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f.name, f.type, f"{s.name}{{{labels}}}", s.value)
'
}
# value NODE SAMPLE: one sample's value, as an integer when it is one.
value() { metrics "$1" | awk -v s="$2" '$3 == s { v = $4; sub(/\.0$/, "", v); print v }'; }

echo "# three servers, HTTP on ports $((HTTP_PORT + 1))-$((HTTP_PORT + 3)), PostgreSQL also on TCP for HAProxy"
check "cluster up" cluster up --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" --http-port "$HTTP_PORT" \
  --set "listen_addresses = '127.0.0.1'" >/dev/null || exit 1
check "/primary is 200 on exactly one server" wait_for 30 "one primary" answers 1 answering /primary
P=$(answering /primary)
check "it is the server out of recovery" test "$(sql "$P" 'SELECT pg_is_in_recovery()')" = f
S1=$(( P % 3 + 1 )) S2=$(( (P + 1) % 3 + 1 ))
check "/replica is 200 on both standbys once they stream" wait_for 30 "streaming standbys" \
  answers "$(echo $S1 $S2 | tr ' ' '\n' | sort -n | xargs)" answering /replica
check "/replica?lag=16777216 is 200 on both standbys" \
  answers "$(echo $S1 $S2 | tr ' ' '\n' | sort -n | xargs)" answering '/replica?lag=16777216'
check "/replica is 503 on the primary" code_is 503 "$P" /replica
check "/leader is 200 on the primary" code_is 200 "$P" /leader
check "/health is 200 everywhere" answers "1 2 3" answering /health
check "/readiness is 200 everywhere" answers "1 2 3" answering /readiness
check "a lag that is no number is 400" code_is 400 "$S1" '/replica?lag=16MB'
check "a negative lag is 400" code_is 400 "$S1" '/replica?lag=-1'
check "an unknown path is 404" code_is 404 "$P" /nothing
check "garbage is 400" test "$(raw "$P" '\x16\x03\x01\x02\x00 garbage\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
check "a request line with two spaces is 400" test "$(raw "$P" 'GET  /primary HTTP/1.1\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
check "a request in two writes is answered once complete" test "$(timeout 3 bash -c '
  exec 3<>/dev/tcp/127.0.0.1/$1; printf "GET /prim" >&3; sleep 0.3; printf "ary HTTP/1.1\r\n\r\n" >&3
  head -1 <&3 | tr -d "\r"' _ "$((HTTP_PORT + P))")" = "HTTP/1.1 200 OK"
check "HEAD /primary is 200 without a body" test "$(curl -s -I -m 2 "$(url "$P" /primary)" | head -1 | tr -d '\r')" = "HTTP/1.1 200 OK"
check "POST is 405" test "$(curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST "$(url "$P" /primary)")" = 405

echo "# a standby whose replay is paused is behind by more than a small lag"
sql "$S2" 'SELECT pg_wal_replay_pause()' >/dev/null
sql "$P" 'CREATE TABLE ops_http AS SELECT g, repeat($$x$$, 100) AS pad FROM generate_series(1, 20000) g' >/dev/null
check "/replica?lag=65536 is 503 on the paused standby" wait_for 10 "the paused standby to fall behind" \
  code_is 503 "$S2" '/replica?lag=65536'
check "/replica (no lag) is still 200 on it: it streams" code_is 200 "$S2" /replica
check "/replica?lag=65536 is 200 on the other standby" wait_for 10 "the other standby to replay" \
  code_is 200 "$S1" '/replica?lag=65536'
check "the paused standby's lag shows in its metrics" \
  test "$(( $(value "$S2" 'pg_leader_leader_wal_position_bytes{}') - $(value "$S2" 'pg_leader_wal_position_bytes{}') ))" -gt 65536
sql "$S2" 'SELECT pg_wal_replay_resume()' >/dev/null
check "after resuming, /replica?lag=65536 is 200 on it again" wait_for 15 "the standby to catch up" \
  code_is 200 "$S2" '/replica?lag=65536'

echo "# /metrics through Prometheus' text parser"
# The README's table: "| `name` | type | labels | meaning |".
documented=$(grep -o '^  | `pg_leader_[a-z_]*` | [a-z]* |' README.md | tr -d '`|' | awk '{print $1, $2}')
check "the README documents 19 metrics" test "$(echo "$documented" | wc -l)" = 19
for i in 1 2 3; do
  metrics "$i" >"$SCRATCH/m$i"
  missing=""
  while read -r name type; do
    # The parser names a counter family without _total and keeps _total on its samples.
    family=$name; [ "$type" = counter ] && family=${name%_total}
    awk -v f="$family" -v t="$type" -v n="$name" '$1 == f && $2 == t && index($3, n "{") == 1 { found = 1 } END { exit !found }' "$SCRATCH/m$i" ||
      missing+="$name "
  done <<<"$documented"
  check "node $i: every documented metric is present with its type${missing:+ (missing: $missing)}" test -z "$missing"
done
term=$(sql "$P" 'SELECT pg_leader_term()')
check "the term agrees with pg_leader_term()" test "$(value "$S1" 'pg_leader_term{}')" = "$term"
check "the leader id agrees with pg_leader_leader_id()" test "$(value "$S1" 'pg_leader_leader_id{}')" = "$P"
check "the primary's role series says leader" test "$(value "$P" 'pg_leader_role{role=leader}')" = 1
check "a standby is in recovery, streaming" \
  test "$(value "$S1" 'pg_leader_in_recovery{}') $(value "$S1" 'pg_leader_wal_receiver_streaming{}')" = "1 1"
check "the primary's lease is between 0 and 1 s" \
  awk -v l="$(value "$P" 'pg_leader_lease_remaining_seconds{}')" 'BEGIN { exit !(l > 0 && l <= 1) }'
check "datagrams from each peer are counted" \
  test "$(grep -c '^pg_leader_datagrams_received counter pg_leader_datagrams_received_total{peer=' "$SCRATCH/m$P")" = 2
check "the rejection reasons are all there" \
  test "$(grep -c '^pg_leader_datagrams_rejected counter' "$SCRATCH/m$P")" = 8
check "OpenMetrics for a client that asks for it" \
  bash -c "curl -s -m 2 -H 'Accept: application/openmetrics-text; version=1.0.0' '$(url "$P" /metrics)' | tail -1 | grep -qx '# EOF'"

echo "# HAProxy with option httpchk GET /primary and GET /replica?lag="
cat >"$SCRATCH/haproxy.cfg" <<CFG
global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen pg_write
    bind 127.0.0.1:$WRITE_PORT
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 300ms fall 1 rise 1 on-marked-down shutdown-sessions
    server node1 127.0.0.1:$((BASE_PG_PORT + 1)) check port $((HTTP_PORT + 1))
    server node2 127.0.0.1:$((BASE_PG_PORT + 2)) check port $((HTTP_PORT + 2))
    server node3 127.0.0.1:$((BASE_PG_PORT + 3)) check port $((HTTP_PORT + 3))
listen pg_read
    bind 127.0.0.1:$READ_PORT
    balance roundrobin
    option httpchk GET /replica?lag=16777216
    http-check expect status 200
    default-server inter 300ms fall 1 rise 1 on-marked-down shutdown-sessions
    server node1 127.0.0.1:$((BASE_PG_PORT + 1)) check port $((HTTP_PORT + 1))
    server node2 127.0.0.1:$((BASE_PG_PORT + 2)) check port $((HTTP_PORT + 2))
    server node3 127.0.0.1:$((BASE_PG_PORT + 3)) check port $((HTTP_PORT + 3))
CFG
tcp_sql() { as_pg psql -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2" 2>/dev/null; }
check "haproxy starts" haproxy -q -D -p "$SCRATCH/haproxy.pid" -f "$SCRATCH/haproxy.cfg"
check "the write port reaches the primary" wait_for 10 "HAProxy to find the primary" \
  answers "$P" tcp_sql "$WRITE_PORT" 'SELECT pg_leader_node_id()'
check "the read port reaches a standby" wait_for 10 "HAProxy to find a standby" \
  answers t tcp_sql "$READ_PORT" 'SELECT pg_is_in_recovery()'

echo "# SIGKILL of the primary's postmaster: the counters move, HAProxy follows"
before_won=$(( $(value "$S1" 'pg_leader_elections_won_total{}') + $(value "$S2" 'pg_leader_elections_won_total{}') ))
before_changes=$(value "$S1" 'pg_leader_leader_changes_total{}')
before_promotions=$(( $(value "$S1" 'pg_leader_promotions_total{}') + $(value "$S2" 'pg_leader_promotions_total{}') ))
cluster kill "$P" >/dev/null
check "a standby becomes the primary (/primary)" wait_for 30 "a new primary" \
  bash -c "for i in $S1 $S2; do [ \"\$(curl -s -o /dev/null -m 2 -w '%{http_code}' http://127.0.0.1:\$(( $HTTP_PORT + i ))/primary)\" = 200 ] && exit 0; done; exit 1"
N=$(for i in $S1 $S2; do code_is 200 "$i" /primary && echo "$i"; done)
O=$(( S1 + S2 - N ))
check "exactly one: node $N" test "$(echo "$N" | wc -w)" = 1
check "node $N is out of recovery" test "$(sql "$N" 'SELECT pg_is_in_recovery()')" = f
# At least one: a winner may hand over to a survivor with more WAL, which then wins too.
check "elections won went up" \
  test "$(( $(value "$S1" 'pg_leader_elections_won_total{}') + $(value "$S2" 'pg_leader_elections_won_total{}') ))" -gt "$before_won"
check "promotions went up by one, on node $N" \
  test "$(( $(value "$S1" 'pg_leader_promotions_total{}') + $(value "$S2" 'pg_leader_promotions_total{}') )) $(value "$N" 'pg_leader_promotions_total{}')" = "$((before_promotions + 1)) 1"
check "node $S1 saw the leader change" test "$(value "$S1" 'pg_leader_leader_changes_total{}')" -gt "$before_changes"
check "node $N's elections started went up" test "$(value "$N" 'pg_leader_elections_started_total{}')" -ge 1
check "the term went up" test "$(value "$N" 'pg_leader_term{}')" -gt "$term"
check "HAProxy's write port reaches node $N" wait_for 10 "HAProxy to follow" \
  answers "$N" tcp_sql "$WRITE_PORT" 'SELECT pg_leader_node_id()'
check "node $O streams from node $N: /replica?lag=16777216 is 200" wait_for 30 "node $O to stream" \
  code_is 200 "$O" '/replica?lag=16777216'
check "HAProxy's read port reaches node $O" wait_for 10 "HAProxy's read port" \
  answers "$O" tcp_sql "$READ_PORT" 'SELECT pg_leader_node_id()'
check "/readiness is 200 on both survivors" answers "$(echo $S1 $S2 | tr ' ' '\n' | sort -n | xargs)" answering /readiness

echo
echo "operators_http: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
