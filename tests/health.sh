#!/usr/bin/env bash
# End-to-end: a leader whose PostgreSQL cannot serve steps down and hands over to a healthy voter
# (src/postgres/health.rs), on three real servers (a primary and two pg_basebackup standbys, made
# by pg_leader-cluster):
#
# - the leader's postmaster stopped (SIGSTOP; the pg_leader worker, a process of its own, runs
#   on): the connection probe gets no answer, a standby leads within about one election timeout,
#   the stopped server says why (log, pg_leader_status().error through a session opened before
#   the stop), and after SIGCONT the error clears and the primary, the preferred leader, leads
#   again;
# - the leader's WAL writes hang (its pg_wal on an ext4 file system frozen with fsfreeze): the
#   WAL stall check, likewise;
# - the leader's pg_wal full (a small tmpfs): PostgreSQL PANICs, and its crash-restart hands
#   over (worker/going_away.rs); the full server does not lead while it stays full.
# Each time observers on every server (`pg_leader-cluster watch`) check that no two true answers
# overlap, and the role histories are checked. Times are read from the servers' log lines.
#
# Needs root (mount, losetup, fsfreeze). Environment: TOOL (the pg_leader-cluster binary),
# PG_LEADER_PGBIN (PostgreSQL's programs), PG_LEADER_NFT_TABLE, HEALTH_PG_PORT and
# HEALTH_RAFT_PORT (base ports, 55900 and 7900).
set -uo pipefail
cd "$(dirname "$0")/.."
TOOL=${TOOL:-target/release/pg_leader-cluster}
PGBIN=${PG_LEADER_PGBIN:-/usr/lib/postgresql/15/bin}
BASE_PG_PORT=${HEALTH_PG_PORT:-55900}
RAFT_PORT=${HEALTH_RAFT_PORT:-7900}
source tests/lib.sh
WORK=$(mktemp -d /tmp/health-e2e.XXXXXX)
rmdir "$WORK"
cluster() { "$TOOL" --dir "$WORK" "$@"; }
# Mounts live outside $WORK, which `cluster down` removes.
MNT=$(mktemp -d /tmp/health-mnt.XXXXXX)
chmod 755 "$MNT"
LOOP=""
STOPPED=""
SESSION_PID=""

cleanup() {
  # Thaw and resume first: a frozen file system or a stopped postmaster would hang the stop.
  [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
  mountpoint -q "$MNT/ext4" && timeout 10 fsfreeze -u "$MNT/ext4" 2>/dev/null
  [ -n "$SESSION_PID" ] && kill "$SESSION_PID" 2>/dev/null
  kill $(jobs -p) 2>/dev/null
  [ -z "${KEEP_LOGS:-}" ] || cp "$WORK"/n*.log "$KEEP_LOGS"/ 2>/dev/null
  timeout 60 "$TOOL" --dir "$WORK" down >/dev/null 2>&1
  cluster_cleanup
  for m in "$MNT/ext4" "$MNT/tmpfs"; do
    mountpoint -q "$m" && { timeout 10 umount "$m" || timeout 10 umount -l "$m"; }
  done
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
  rm -rf "$MNT"
}
trap cleanup EXIT

T_MS=1000
# Half the election timeout to notice (plus one probe interval, 150 ms), then a handover of a
# few milliseconds; the promise alone would take an election timeout, a lost host more.
STEP_DOWN_MS=1500
WATCH_SECONDS=6
WATCH_LEAD=1.5

not() { ! "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
below_ms() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -lt "$2" ]; }
leads() { one_agreed_leader 1 2 3 && [ "$(sql "$1" 'SELECT pg_leader_is_leader()' 2>/dev/null)" = t ]; }
log_size() { stat -c %s "$WORK/n$1.log"; }
# log_ms NODE OFFSET PATTERN: the time (ms since the epoch) of the first line of node NODE's log
# after byte OFFSET that matches PATTERN (log_line_prefix '%m': milliseconds, UTC).
log_ms() {
  local line
  line=$(tail -c +$(($2 + 1)) "$WORK/n$1.log" | grep -m1 -E "$3") || return 1
  echo $(($(date -d "$(cut -d' ' -f1-3 <<<"$line")" +%s%N) / 1000000))
}
# The first line of node NODE's log after OFFSET that matches PATTERN.
log_line() { tail -c +$(($2 + 1)) "$WORK/n$1.log" | grep -m1 -E "$3"; }
logged_since() { log_line "$@" >/dev/null; }
new_leader_line() { echo "pg_leader: node [23] is now leader in term"; }

# A session on node 1 opened while it is healthy: it keeps answering while the postmaster is
# stopped (a backend is a process of its own). query_session SQL prints the answer.
open_session() {
  rm -f "$WORK/session.in" "$WORK/session.out"
  mkfifo -m 666 "$WORK/session.in"
  # Held open for writing here, so that psql never reads end-of-file between queries.
  exec 7<>"$WORK/session.in"
  as_pg bash -c "stdbuf -oL psql -X -q -At -h '$WORK' -p $((BASE_PG_PORT + 1)) -U postgres -d postgres < '$WORK/session.in' > '$WORK/session.out' 2>&1" &
  SESSION_PID=$!
  wait_for 10 "the session" query_session_is t "SELECT true"
}
query_session() {
  local before; before=$(wc -l <"$WORK/session.out" 2>/dev/null || echo 0)
  echo "$1;" >&7
  local end=$((SECONDS + 5))
  while [ "$(wc -l <"$WORK/session.out")" -le "$before" ] && [ $SECONDS -lt $end ]; do sleep 0.02; done
  tail -n +$((before + 1)) "$WORK/session.out" | head -1
}
query_session_is() { [ "$(query_session "$2")" = "$1" ]; }

new_leader_logged() { logged_since 2 "${offsets[2]}" "$(new_leader_line)" || logged_since 3 "${offsets[3]}" "$(new_leader_line)"; }

# fault_and_measure NAME WATCH_SECONDS FAULT_COMMAND SICK_PATTERN HANDOVER_PATTERN [FAULT_PATTERN]:
# starts the observers, applies the fault to node 1 (the leader), and reports when node 1 logged
# SICK_PATTERN and when another server led, counted from the fault (from node 1's first log line
# matching FAULT_PATTERN when given).
fault_and_measure() {
  local name=$1 seconds=$2 fault=$3 sick=$4 handover=$5 fault_line=${6:-}
  out="$WORK/watch-$name.out"
  cluster watch --seconds "$seconds" >"$out" 2>&1 &
  watcher=$!
  sleep "$WATCH_LEAD"
  offsets=("" "$(log_size 1)" "$(log_size 2)" "$(log_size 3)")
  fault_at=$(now_ms)
  eval "$fault"
  local took=$(($(now_ms) - fault_at))
  check "$name: another server leads" wait_for 15 "a new leader" new_leader_logged
  [ -z "$fault_line" ] || fault_at=$(log_ms 1 "${offsets[1]}" "$fault_line")
  local led="" t
  for n in 2 3; do
    t=$(log_ms "$n" "${offsets[n]}" "$(new_leader_line)") && { [ -z "$led" ] || [ "$t" -lt "$led" ]; } && led=$t
  done
  sick_at=$(log_ms 1 "${offsets[1]}" "$sick")
  wait "$watcher"; watched=$?
  grep '^watch: leader changed' "$out" | sed 's/^/  /'
  check "$name: observers on every server: no two true answers overlap" test "$watched" -eq 0
  detect=none; step_down=none
  [ -n "$sick_at" ] && [ -n "$fault_at" ] && detect=$((sick_at - fault_at))
  [ -n "$led" ] && [ -n "$fault_at" ] && step_down=$((led - fault_at))
  echo "  $name: node 1 logged it after ${detect} ms; another server led after ${step_down} ms (the fault command took ${took} ms)"
  echo "MEASURE $name detect_ms=$detect new_leader_ms=$step_down" >>"${MEASURES:-/dev/null}"
  check "$name: node 1 logged why, with its term" test -n "$sick_at"
  check "$name: a new leader ${step_down} ms after the fault (< $STEP_DOWN_MS)" \
    below_ms "$step_down" "$STEP_DOWN_MS"
  check "$name: node 1 handed over, saying why" \
    wait_for 3 "the handover line" logged_since 1 "${offsets[1]}" "$handover"
}

echo "# start"
cluster up --no-auto-failover --port "$BASE_PG_PORT" --raft-port "$RAFT_PORT" --set 'pg_leader.http_port = 0' >/dev/null ||
  { echo "FAILED - cluster up"; exit 1; }
check "node 1, the primary, leads" wait_for 15 "node 1 to lead" leads 1
sql 1 "CREATE TABLE filler (id bigint, pad text)" >/dev/null

echo "# the leader's postmaster stopped (SIGSTOP)"
open_session
quiet=$(log_size 1)
sleep 3
check "the health probe (20 connections in 3 s) leaves no line in the server log" \
  test -z "$(tail -c +$((quiet + 1)) "$WORK/n1.log" | grep -iE 'startup packet|SSL|could not|connection|EOF')"
STOPPED=$(node_pid 1)
fault_and_measure stop "$WATCH_SECONDS" 'kill -STOP $STOPPED' \
  "its PostgreSQL cannot serve: no answer from this server's PostgreSQL for [0-9]+ ms" \
  "handing leadership to node [23]: no answer from this server's PostgreSQL"
echo "  node 1: $(log_line 1 "${offsets[1]}" 'cannot serve' | sed 's/.*LOG: *//')"
check "stop: node 1 does not lead while stopped (its own session says so)" query_session_is f "SELECT pg_leader_is_leader()"
error=$(query_session "SELECT error FROM pg_leader_status()")
echo "  node 1: pg_leader_status().error = $error"
check "stop: node 1's pg_leader_status().error says why" grep -qE "^no answer from this server's PostgreSQL for [0-9]+ ms$" <<<"$error"
check "stop: the role history records it" grep -q "unhealthy: no answer" "$WORK/n1/pg_leader/pg_leader.history"
cont=$(log_size 1)
kill -CONT "$STOPPED"; STOPPED=""
check "stop: after SIGCONT node 1 serves again" wait_for 5 "the log line" logged_since 1 "$cont" "its PostgreSQL serves again"
check "stop: and its error is cleared" wait_for 5 "no error" answers "" sql 1 "SELECT coalesce(error, '') FROM pg_leader_status()"
check "stop: node 1, the writable primary, leads again" wait_for 10 "node 1 to lead" leads 1
check "stop: role histories: one leader per term, no overlapping leases" cluster check
echo '\q' >&7; exec 7>&-; wait "$SESSION_PID" 2>/dev/null; SESSION_PID=""

# move_wal DIR: node 1's pg_wal moves to DIR (node 1 stopped meanwhile), then node 1 leads again.
move_wal() {
  cluster stop 1 >/dev/null
  mv "$WORK/n1/pg_wal" "$1/pg_wal.tmp" && cp -a "$1/pg_wal.tmp/." "$1/pg_wal/" && rm -rf "$1/pg_wal.tmp"
  chown postgres: "$1/pg_wal"
  ln -s "$1/pg_wal" "$WORK/n1/pg_wal"
  cluster start 1 >/dev/null
  wait_for 15 "node 1 to lead" leads 1
}

echo "# the leader's WAL writes hang (pg_wal on ext4, frozen)"
truncate -s 300M "$MNT/ext4.img"
mkfs.ext4 -q -F "$MNT/ext4.img"
LOOP=$(losetup -f --show "$MNT/ext4.img")
mkdir -p "$MNT/ext4" && mount -o errors=remount-ro "$LOOP" "$MNT/ext4"
mkdir -p "$MNT/ext4/pg_wal"
check "node 1 leads with its pg_wal on a file system of its own" move_wal "$MNT/ext4"
# A writer that keeps inserting WAL, whose commits hang once the file system is frozen.
writer() {
  for _ in $(seq 1 200); do
    sql 1 "INSERT INTO filler SELECT g, 'x' FROM generate_series(1, 1000) g" >/dev/null 2>&1 || true
    sleep 0.05
  done
}
writer &
WRITER=$!
fault_and_measure freeze "$WATCH_SECONDS" 'timeout 10 fsfreeze -f "$MNT/ext4"' \
  "its PostgreSQL cannot serve: WAL flush stuck at [0-9A-F]+/[0-9A-F]+ for [0-9]+ ms while [0-9A-F]+/[0-9A-F]+ is written" \
  "handing leadership to node [23]: WAL flush stuck"
echo "  node 1: $(log_line 1 "${offsets[1]}" 'cannot serve' | sed 's/.*LOG: *//')"
sleep 2
check "freeze: node 1 did not lead while its WAL was stuck (2 s more)" \
  not logged_since 1 "${offsets[1]}" "pg_leader: node 1 is now leader"
thaw=$(log_size 1)
timeout 10 fsfreeze -u "$MNT/ext4"
check "freeze: after the thaw node 1 serves again" wait_for 10 "the log line" logged_since 1 "$thaw" "its PostgreSQL serves again"
check "freeze: node 1, the writable primary, leads again" wait_for 15 "node 1 to lead" leads 1
kill "$WRITER" 2>/dev/null; wait "$WRITER" 2>/dev/null
check "freeze: role histories: one leader per term, no overlapping leases" cluster check

# failure_report NAME: which mechanism acted, and whether node 1's PostgreSQL came back.
failure_report() {
  echo "  node 1: $(log_line 1 "${offsets[1]}" 'PANIC' | sed 's/.*PANIC: *//')"
  echo "  node 1: $(log_line 1 "${offsets[1]}" 'leaving \(|cannot serve' | sed 's/.*LOG: *//')"
  logged_since 1 "${offsets[1]}" 'leaving \(' &&
    echo "  $1: PostgreSQL's PANIC and crash-restart handed over (worker/going_away.rs)"
  logged_since 1 "${offsets[1]}" 'cannot serve' && echo "  $1: the health checks acted"
  sleep 5
  if pm=$(node_pid 1) && [ -d "/proc/$pm" ]; then
    echo "  $1: node 1's PostgreSQL runs again after its crash-restart"
  else
    echo "  $1: node 1's PostgreSQL did not come back: $(tail -c +$((offsets[1] + 1)) "$WORK/n1.log" | grep -E 'LOG: +(startup process|database system is shut)' | tail -2 | sed 's/.*LOG: *//' | tr '\n' ' ')"
  fi
}

echo "# the leader's pg_wal turns read-only (its ext4 remounted read-only on an error)"
writer &
WRITER=$!
fault_and_measure readonly "$WATCH_SECONDS" 'echo "pg_leader health test" > "/sys/fs/ext4/$(basename "$LOOP")/trigger_fs_error"' \
  "leaving \(|cannot serve" "leadership handed to node [23]|handing leadership to node [23]" "Read-only file system"
kill "$WRITER" 2>/dev/null; wait "$WRITER" 2>/dev/null
failure_report readonly
check "readonly: node 1 does not lead while its pg_wal is read-only" not leads 1
check "readonly: role histories: one leader per term, no overlapping leases" cluster check

# stop_hard NODE: an immediate stop; a server wedged by its failed disk is SIGKILLed with its
# children.
stop_hard() {
  cluster stop "$1" --mode immediate >/dev/null 2>&1
  local pm; pm=$(node_pid "$1")
  if [ -n "$pm" ] && [ -d "/proc/$pm" ]; then
    pkill -KILL -P "$pm"; kill -KILL "$pm"
    wait_for 10 "node $1's processes to exit" test ! -d "/proc/$pm"
  fi
}

echo "# the leader's pg_wal full (tmpfs)"
used_mb=$(du -sm "$MNT/ext4/pg_wal" | cut -f1)
size_mb=$(( used_mb + 40 ))
mkdir -p "$MNT/tmpfs" && mount -t tmpfs -o size=${size_mb}M tmpfs "$MNT/tmpfs"
echo "  pg_wal holds ${used_mb} MB; tmpfs of ${size_mb} MB"
mkdir -p "$MNT/tmpfs/pg_wal"
stop_hard 1
cp -a "$MNT/ext4/pg_wal/." "$MNT/tmpfs/pg_wal/"
chown postgres: "$MNT/tmpfs/pg_wal"
rm "$WORK/n1/pg_wal" && ln -s "$MNT/tmpfs/pg_wal" "$WORK/n1/pg_wal"
cluster start 1 >/dev/null
check "node 1 leads with its pg_wal on a small tmpfs" wait_for 15 "node 1 to lead" leads 1
# Fill it: each statement writes about 10 MB of WAL.
fill() {
  for _ in $(seq 1 40); do
    sql 1 "INSERT INTO filler SELECT g, repeat('x', 80) FROM generate_series(1, 100000) g" >/dev/null 2>&1 || return 0
  done
}
fault_and_measure full 20 'fill' "leaving \(|cannot serve" \
  "leadership handed to node [23]|handing leadership to node [23]" "No space left on device"
failure_report full
check "full: node 1 does not lead while its pg_wal is full (5 s)" \
  bash -c "for i in \$(seq 1 50); do [ \"\$(timeout 2 runuser -u postgres -- psql -X -q -At -h '$WORK' -p $((BASE_PG_PORT + 1)) -U postgres -d postgres -c 'SELECT pg_leader_is_leader()' 2>/dev/null)\" = t ] && exit 1; sleep 0.1; done"
check "full: another server leads, agreed by both" wait_for 10 "a leader" one_agreed_leader 2 3
check "full: role histories: one leader per term, no overlapping leases" cluster check
mount -o remount,size=$((size_mb + 200))M "$MNT/tmpfs"
cluster start 1 >/dev/null
check "full: given room, node 1 comes back and, the writable primary, leads again" wait_for 30 "node 1 to lead" leads 1
check "role histories at the end: one leader per term, no overlapping leases" cluster check

echo "# $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
