#!/usr/bin/env bash
# An on_role_change command that moves a virtual IP (or re-points a pooler) only for the newest
# term: the term pg_leader passes as %t is a fencing token.
#
#   pg_leader.on_role_change = '/usr/local/bin/fencing_token.sh %r %t %l'
#
# Invocations can arrive late (a slow script, a stuck host resumed): one for an older term than
# an action already taken must do nothing. The script keeps the highest term it acted on in
# STATE_FILE (under a lock, so two invocations never interleave) and refuses anything older;
# before acting as leader it also asks the server itself whether this term is still current and
# this server still holds the lease.
set -euo pipefail
role=$1 term=$2 leader=$3
STATE_FILE=${STATE_FILE:-/var/lib/postgresql/pg_leader_vip.term}
PSQL=${PSQL:-psql -XAtq -d postgres}

exec 9>>"$STATE_FILE.lock"
flock 9
last=$(cat "$STATE_FILE" 2>/dev/null || echo 0)
if [ "$term" -lt "$last" ]; then
  echo "stale invocation: term $term is older than term $last, already acted on; nothing done" >&2
  exit 0
fi
case $role in
  leader)
    now=$($PSQL -c "SELECT pg_leader_term() || ' ' || pg_leader_is_leader()")
    if [ "$now" != "$term t" ]; then
      echo "term $term is no longer current here (now: $now); nothing done" >&2
      exit 0
    fi
    echo "$term" >"$STATE_FILE"
    # Take the address, e.g.: ip addr add 10.0.0.100/24 dev eth0 || true
    echo "term $term: this server leads; taking the virtual IP"
    ;;
  follower)
    echo "$term" >"$STATE_FILE"
    # Release it, e.g.: ip addr del 10.0.0.100/24 dev eth0 || true
    echo "term $term: node $leader leads; releasing the virtual IP"
    ;;
esac
