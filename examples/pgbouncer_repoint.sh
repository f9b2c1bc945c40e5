#!/usr/bin/env bash
# Keeps pgbouncer pointed at the pg_leader leader. Writes the [databases] entry of the leader to
# an include file of pgbouncer.ini and tells pgbouncer to RELOAD, then waits for the next change
# with pg_leader_wait_for_change() (no polling loop: the call returns the moment the term moves).
#
#   examples/pgbouncer_repoint.sh [--once] INCLUDE_FILE ADMIN_CONNINFO DBNAME NODE=CONNINFO...
#
#   INCLUDE_FILE    written as "[databases]\nDBNAME = <the leader's conninfo>" (pgbouncer.ini:
#                   %include INCLUDE_FILE)
#   ADMIN_CONNINFO  pgbouncer's admin console, for RELOAD: "host=/run/pgbouncer port=6432
#                   dbname=pgbouncer user=pgbouncer"
#   NODE=CONNINFO   each server by its pg_leader.node_id: 1="host=10.0.0.1 port=5432"
#   --once          point pgbouncer at the current leader and exit
set -uo pipefail
ONCE=0
if [ "${1:-}" = "--once" ]; then ONCE=1; shift; fi
[ $# -ge 4 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
INCLUDE=$1 ADMIN=$2 DB=$3; shift 3
declare -A CONNINFO
for spec in "$@"; do CONNINFO[${spec%%=*}]=${spec#*=}; done

ask() {   # ask SQL: the first answer of any reachable server
  local id
  for id in "${!CONNINFO[@]}"; do
    psql -XAt -d "${CONNINFO[$id]} connect_timeout=2" -c "$1" 2>/dev/null && return 0
  done
  return 1
}

current=""
while true; do
  # The leader with a valid lease, and its term; on no answer, try again shortly.
  leader="" term=""
  for id in "${!CONNINFO[@]}"; do
    answer=$(psql -XAt -d "${CONNINFO[$id]} connect_timeout=2" -c 'SELECT pg_leader_is_leader(), pg_leader_term()' 2>/dev/null)
    if [ "${answer%%|*}" = t ]; then
      leader=$id term=${answer#*|}
      break
    fi
  done
  if [ -n "$leader" ] && [ "$leader" != "$current" ]; then
    printf '[databases]\n%s = %s dbname=%s\n' "$DB" "${CONNINFO[$leader]}" "$DB" >"$INCLUDE.tmp" &&
      mv "$INCLUDE.tmp" "$INCLUDE" &&
      psql -XAtq -d "$ADMIN" -c RELOAD &&
      echo "$(date -u '+%F %T') pgbouncer now points $DB at node $leader" &&
      current=$leader
  fi
  [ $ONCE -eq 0 ] || { [ -n "$current" ]; exit $?; }
  # Sleep until any server's term moves on from the leader's (at once if one already has).
  [ -z "$leader" ] || ask "SELECT pg_leader_wait_for_change($term, 60000)" >/dev/null || sleep 1
  sleep 0.1
done
