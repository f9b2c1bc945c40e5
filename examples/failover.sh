#!/usr/bin/env bash
# failover.sh: make the pg_leader leader the writable primary, and point the other standbys at it.
#
#   failover.sh [--dry-run] CONNINFO [CONNINFO ...]
#
# Each CONNINFO is a libpq connection string of one server, for example
# "host=10.0.0.1 port=5432 user=postgres dbname=postgres". Run it from cron, a systemd timer or a
# keepalived check: it does nothing when all is already in place, and it only acts on a leader
# that holds a valid lease (pg_leader_is_leader() = true), so it never promotes two servers.
# A former primary that is not the leader is left alone and reported: fence it and rebuild it
# with pg_rewind or pg_basebackup.
set -euo pipefail

dry_run=false
if [ "${1:-}" = "--dry-run" ]; then dry_run=true; shift; fi
if [ $# -eq 0 ]; then
  echo "usage: failover.sh [--dry-run] CONNINFO [CONNINFO ...]" >&2
  exit 2
fi

ask() { psql -X -q -At -F '|' -d "$1" -c "$2" 2>/dev/null; }
act() {
  if $dry_run; then echo "would: $1"; else echo "$1"; ask "$2" "$3" >/dev/null; fi
}

declare -A conninfo in_recovery
leader=""
for c in "$@"; do
  row=$(ask "$c" "SELECT pg_leader_node_id(), pg_leader_is_leader(), pg_is_in_recovery()") || {
    echo "unreachable: $c"
    continue
  }
  IFS='|' read -r id is_leader recovery <<<"$row"
  conninfo[$id]=$c
  in_recovery[$id]=$recovery
  [ "$is_leader" = t ] && leader=$id
done

if [ -z "$leader" ]; then
  echo "no reachable server holds the pg_leader lease; nothing done (try again shortly)" >&2
  exit 1
fi
echo "leader: node $leader"

if [ "${in_recovery[$leader]}" = t ]; then
  act "promote node $leader" "${conninfo[$leader]}" "SELECT pg_promote(wait => true, wait_seconds => 60)"
fi

# Standbys follow the leader; recovery_target_timeline = 'latest' (the default) lets them cross
# onto the new timeline.
target=${conninfo[$leader]}
for id in "${!conninfo[@]}"; do
  [ "$id" = "$leader" ] && continue
  if [ "${in_recovery[$id]}" = t ]; then
    current=$(ask "${conninfo[$id]}" "SHOW primary_conninfo")
    if [ "$current" != "$target" ]; then
      quoted=${target//\'/\'\'}
      act "point node $id at node $leader" "${conninfo[$id]}" "ALTER SYSTEM SET primary_conninfo = '$quoted'"
      $dry_run || ask "${conninfo[$id]}" "SELECT pg_reload_conf()" >/dev/null
    fi
  else
    echo "warning: node $id is a primary but not the leader: fence it, then rebuild it as a standby of node $leader (pg_rewind)" >&2
  fi
done
