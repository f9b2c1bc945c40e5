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
# with pg_rewind or pg_basebackup. A leader that is a standby is not promoted while a writable
# primary answers: pg_leader hands leadership back to a primary of the newest timeline that holds
# all the WAL, and promoting then would make two writable primaries.
# A standby is in place when it streams from the leader, or its primary_conninfo names the
# leader's host and port (pg_basebackup -R writes more keywords than the CONNINFO given here).
set -euo pipefail

dry_run=false
if [ "${1:-}" = "--dry-run" ]; then dry_run=true; shift; fi
if [ $# -eq 0 ]; then
  echo "usage: failover.sh [--dry-run] CONNINFO [CONNINFO ...]" >&2
  exit 2
fi

ask() { psql -X -q -At -F '|' -d "$1" -c "$2" 2>/dev/null; }
acted=false
act() {
  acted=true
  if $dry_run; then echo "would: $1"; else echo "$1"; ask "$2" "$3" >/dev/null; fi
}
# where CONNINFO: the host and port psql reached ("host|port").
where() { psql -X -q -At -d "$1" -c '\echo :HOST|:PORT' 2>/dev/null; }
# keyword NAME CONNINFO: the value of one keyword of a keyword=value connection string.
keyword() {
  local re="(^|[[:space:]])$1[[:space:]]*=[[:space:]]*('([^']*)'|([^[:space:]]*))"
  [[ $2 =~ $re ]] && echo "${BASH_REMATCH[3]}${BASH_REMATCH[4]}"
}
# follows_leader NODE: the standby streams from the leader or is configured for it.
follows_leader() {
  local c=${conninfo[$1]} current
  [ "$(ask "$c" "SELECT sender_host || '|' || sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'")" = "$leader_at" ] && return 0
  current=$(ask "$c" "SHOW primary_conninfo")
  [ "$current" = "$target" ] && return 0
  [ -n "$current" ] && [ "$(keyword host "$current")|$(keyword port "$current")" = "$leader_at" ]
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
  for id in "${!conninfo[@]}"; do
    if [ "${in_recovery[$id]}" = f ]; then
      echo "node $leader leads but is a standby while node $id is a writable primary: not promoting; pg_leader hands leadership back to a primary of the newest timeline that holds all the WAL (try again shortly)" >&2
      exit 1
    fi
  done
  act "promote node $leader" "${conninfo[$leader]}" "SELECT pg_promote(wait => true, wait_seconds => 60)"
fi

# Standbys follow the leader; recovery_target_timeline = 'latest' (the default) lets them cross
# onto the new timeline.
target=${conninfo[$leader]}
leader_at=$(where "$target")
warned=false
for id in "${!conninfo[@]}"; do
  [ "$id" = "$leader" ] && continue
  if [ "${in_recovery[$id]}" = t ]; then
    if ! follows_leader "$id"; then
      quoted=${target//\'/\'\'}
      act "point node $id at node $leader" "${conninfo[$id]}" "ALTER SYSTEM SET primary_conninfo = '$quoted'"
      $dry_run || ask "${conninfo[$id]}" "SELECT pg_reload_conf()" >/dev/null
    fi
  else
    warned=true
    echo "warning: node $id is a primary but not the leader: fence it, then rebuild it as a standby of node $leader (pg_rewind)" >&2
  fi
done
if ! $acted && ! $warned; then
  echo "nothing to do: node $leader leads and is the writable primary; every standby reached follows it"
fi
