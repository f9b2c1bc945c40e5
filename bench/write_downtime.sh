#!/usr/bin/env bash
# Write downtime after a SIGKILL of the primary, pg_leader against Patroni (etcd) and
# pg_auto_failover, measured by one client (bench/write_downtime.py): writes the CSVs, a
# markdown section and a chart into OUT (bench/results/DATE by default).
#
#   bench/write_downtime.sh [--quick] [OUT] [-- options of bench/write_downtime.py]
#
# Installs what it needs on a fresh Debian machine: etcd-server, postgresql-15-auto-failover,
# python3-psycopg2, python3-matplotlib and python3-venv from Debian, Patroni (current release)
# from PyPI into /opt/downtime/patroni-venv. The pg_leader extension must be installed
# (scripts/setup). Runs as root (the servers and agents as postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=()
if [ "${1:-}" = "--quick" ]; then QUICK=(--quick); shift; fi
OUT=bench/results/$(date -u +%F)
if [ $# -gt 0 ] && [ "$1" != "--" ]; then OUT=$1; shift; fi
[ "${1:-}" = "--" ] && shift
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

fail() { echo "write_downtime: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root: the servers run as postgres through runuser"
[ -f /usr/lib/postgresql/15/lib/pg_leader.so ] ||
  fail "the pg_leader extension is not installed into PostgreSQL 15: run scripts/setup first"

missing=()
for p in etcd-server postgresql-15-auto-failover python3-psycopg2 python3-matplotlib python3-venv; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  printf '\n== installing Debian packages: %s\n' "${missing[*]}"
  apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    fail "could not install ${missing[*]} from Debian (etcd-server and postgresql-15-auto-failover are in bookworm's main)"
fi
[ -x /usr/bin/etcd ] || fail "etcd-server is installed but /usr/bin/etcd is missing"
command -v pg_autoctl >/dev/null || fail "postgresql-15-auto-failover is installed but pg_autoctl is missing"

VENV=/opt/downtime/patroni-venv
if ! "$VENV/bin/patroni" --version >/dev/null 2>&1; then
  printf '\n== installing Patroni from PyPI into %s\n' "$VENV"
  rm -rf "$VENV"
  mkdir -p /opt/downtime
  /usr/bin/python3 -m venv "$VENV" || fail "python3 -m venv failed (python3-venv)"
  "$VENV/bin/pip" install -q --cache-dir /opt/downtime/pip-cache 'patroni[etcd3]' psycopg2-binary ||
    fail "pip could not install Patroni (patroni[etcd3], psycopg2-binary) from PyPI"
fi

cargo build --release -q -p pg_leader_cluster

# Every program the harness starts is recorded by PID; whatever is still alive when this script
# ends (an interrupted run) is stopped here, with the servers in the harness's folders.
export DOWNTIME_PID_RECORD=/tmp/downtime-pids
: >"$DOWNTIME_PID_RECORD"
HARNESS=""
cleanup() {
  if [ -n "$HARNESS" ] && kill -0 "$HARNESS" 2>/dev/null; then
    kill -TERM "$HARNESS" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$HARNESS" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$HARNESS" 2>/dev/null || true
  fi
  /usr/bin/python3 bench/write_downtime.py --sweep || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

/usr/bin/python3 bench/write_downtime.py --out "$OUT" "${QUICK[@]}" "$@" &
HARNESS=$!
wait "$HARNESS"
HARNESS=""
PYTHONPATH=bench /usr/bin/python3 -m downtime.report "$OUT"
echo "write downtime: $OUT/write-downtime.md"
