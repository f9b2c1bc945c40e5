#!/usr/bin/env bash
# Rebuilds this host's PostgreSQL, a former primary, as a streaming standby of the pg_leader
# leader, on a host where systemd runs PostgreSQL (Debian/Ubuntu's postgresql@15-main here).
#
#   sudo -u postgres examples/rejoin-systemd.sh 'host=10.0.0.2 port=5432 user=postgres dbname=postgres'
#
# The argument is the leader's conninfo (its pg_leader.conninfo; pg_rewind needs the dbname and
# a superuser, or a user granted pg_rewind's functions). The steps are those of
# src/postgres/rejoin.sh, which does the work; only stopping and starting PostgreSQL differ:
# they go through systemctl, so that systemd keeps supervising the server (a server started
# with pg_ctl would run outside its unit, and `systemctl stop` would no longer stop it).
#   1. stop the server cleanly (systemctl stop: a fast shutdown);
#   2. save this server's own files that pg_rewind would replace with the leader's: the *.conf
#      files in the data directory (on Debian postgresql.auto.conf; postgresql.conf and
#      pg_hba.conf live in /etc/postgresql and are not touched) and pg_leader's state directory
#      (term, vote, role history: they must stay this node's);
#   3. pg_rewind --dry-run: if it refuses (no wal_log_hints and no data checksums, WAL missing
#      on either side) everything is put back and the server started again as it was;
#   4. pg_rewind; the saved files back; standby.signal; primary_conninfo (the leader's conninfo
#      and application_name=pg_leader_<node id>) in postgresql.auto.conf;
#   5. systemctl start.
# Every step is recorded in /var/lib/postgresql/15/main.pg_leader-rejoin/marker: run this again
# after a crash or a power cut and it finishes the job without doing a step twice. One thing
# cannot be finished: an interrupted pg_rewind (the marker then says "failed"); rebuild the data
# directory with pg_basebackup from the leader and put the saved files back from
# /var/lib/postgresql/15/main.pg_leader-rejoin/saved.
#
# Runs as postgres (pg_rewind refuses root). systemctl needs root, through sudo, for this one
# unit only; in /etc/sudoers.d/pg_leader (edit with visudo -f):
#   postgres ALL=(root) NOPASSWD: /usr/bin/systemctl stop postgresql@15-main, /usr/bin/systemctl start postgresql@15-main
#
# Environment (the Debian defaults shown): UNIT=postgresql@15-main,
# PGBIN=/usr/lib/postgresql/15/bin, PGDATA=/var/lib/postgresql/15/main,
# LOG=/var/log/postgresql/postgresql-15-main.log (where the server logs; pg_ctl's -l, unused
# with systemd but required), NODE_ID (default: asked of the running server),
# REJOIN_SCRIPT (default: rejoin.sh next to this file, else the source tree's).
set -euo pipefail

LEADER_CONNINFO=${1:?usage: rejoin-systemd.sh LEADER_CONNINFO}
UNIT=${UNIT:-postgresql@15-main}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGDATA=${PGDATA:-/var/lib/postgresql/15/main}
LOG=${LOG:-/var/log/postgresql/postgresql-15-main.log}
here=$(dirname "$0")
REJOIN_SCRIPT=${REJOIN_SCRIPT:-$( [ -f "$here/rejoin.sh" ] && echo "$here/rejoin.sh" || echo "$here/../src/postgres/rejoin.sh")}

if [ "$(id -u)" -eq 0 ]; then
  echo "run as the owner of $PGDATA (sudo -u postgres $0 ...): pg_rewind refuses root" >&2
  exit 2
fi

# The name this server gives itself on the leader. Asked of the running server; a server
# already stopped (a rerun after a crash) needs NODE_ID in the environment.
if [ -z "${NODE_ID:-}" ]; then
  NODE_ID=$(psql -X -At -d postgres -c 'SHOW pg_leader.node_id' 2>/dev/null) || {
    echo "the server does not answer: set NODE_ID to this server's pg_leader.node_id" >&2
    exit 2
  }
fi

# The leader must answer and be a primary: rewinding from a standby that is not going to lead
# would only move the problem.
if [ "$(psql -X -At -d "$LEADER_CONNINFO" -c 'SELECT pg_is_in_recovery()')" != f ]; then
  echo "the leader ($LEADER_CONNINFO) is not a primary that answers: not rejoining" >&2
  exit 1
fi

exec bash "$REJOIN_SCRIPT" \
  --pgdata "$PGDATA" \
  --bindir "$PGBIN" \
  --source "$LEADER_CONNINFO" \
  --application-name "pg_leader_$NODE_ID" \
  --log "$LOG" \
  --stop-command "sudo -n /usr/bin/systemctl stop $UNIT" \
  --start-command "sudo -n /usr/bin/systemctl start $UNIT"
