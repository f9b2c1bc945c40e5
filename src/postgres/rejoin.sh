#!/usr/bin/env bash
# Rebuilds a former primary as a streaming standby of the leader with pg_rewind, keeping this
# server's own configuration and pg_leader state.
#
#   rejoin.sh --pgdata DIR --bindir DIR --source CONNINFO --application-name NAME --log FILE
#             [--marker FILE] [--state-dir DIR] [--term T] [--leader ID]
#             [--stop-command CMD] [--start-command CMD]
#
# --source is the leader's libpq conninfo with a dbname (pg_rewind needs one); it also becomes
# primary_conninfo, with application_name=NAME (replication ignores the dbname). --log is the
# server's log file for `pg_ctl start -l`. --stop-command / --start-command replace `pg_ctl stop`
# / `pg_ctl start` where a service manager runs PostgreSQL (examples/rejoin-systemd.sh).
#
# It runs as the owner of the data directory (pg_rewind refuses root). It is used by the
# pg_leader worker (auto_rejoin, embedded in the extension) and by `pg_leader-cluster rejoin`.
#
# Steps, each recorded in the marker file (key=value lines, replaced atomically) before the next
# begins, so that a rerun after a crash finishes the job without doing a step twice or by half:
#   planned    the plan: source, term, leader
#   stopped    the server is cleanly stopped (pg_ctl stop -m fast); was_running says if it ran
#   saved      this server's own files are copied out of the data directory (one rename makes the
#              copy whole): every top-level *.conf and the state directory (term and vote must
#              stay this node's; pg_rewind would replace them with the leader's)
#   checked    pg_rewind --dry-run accepted the rewind
#   rewinding  pg_rewind runs: if it is interrupted, or fails, the data directory may be partly
#              rewound and PostgreSQL cannot tell: it must be rebuilt (pg_basebackup). The step
#              stays "failed" and the saved files stay in the work directory for the rebuild
#   rewound    the rewind finished
#   restored   the saved files are back in place (the leader's copies removed)
#   configured standby.signal and primary_conninfo are written
#   done       written just before the start; a rerun starts a server found stopped
# Outcomes that stop here: "refused" (nothing changed, the server runs as before, a new plan may
# be tried) and "failed" (an operator must look; the marker stays until removed by hand).
#
# The marker and the saved files live in a work directory outside the data directory, which
# pg_rewind replaces wholesale: the marker's directory, by default "<state dir>/rejoin" when the
# state directory is outside the data directory, "<data dir>.pg_leader-rejoin" otherwise. One
# rejoin at a time holds the work directory's lock (flock).
#
# Exit status: 0 done (or nothing to do), 1 refused or failed (the marker says why), 2 usage,
# 3 another rejoin holds the lock.
set -uo pipefail
umask 077

STOP_TIMEOUT=${PG_LEADER_REJOIN_STOP_TIMEOUT:-120}
START_TIMEOUT=${PG_LEADER_REJOIN_START_TIMEOUT:-300}
# The dry run changes nothing and may be cut short; the rewind itself is never interrupted (an
# interrupted rewind cannot be repaired), but neither waits long for a leader that is gone.
DRY_RUN_TIMEOUT=${PG_LEADER_REJOIN_DRY_RUN_TIMEOUT:-600}
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}

usage() {
  echo "usage: rejoin.sh --pgdata DIR --bindir DIR --source CONNINFO --application-name NAME --log FILE [--marker FILE] [--state-dir DIR] [--term T] [--leader ID] [--stop-command CMD] [--start-command CMD]" >&2
  echo "rejoin.sh: $*" >&2
  exit 2
}

PGDATA_DIR="" BINDIR="" SOURCE="" APP_NAME="" SERVER_LOG="" MARKER="" STATE_DIR="" TERM_ARG="" LEADER_ARG=""
STOP_COMMAND="" START_COMMAND=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage "$1 needs a value"
  case $1 in
    --pgdata) PGDATA_DIR=$2 ;;
    --bindir) BINDIR=$2 ;;
    --source) SOURCE=$2 ;;
    --application-name) APP_NAME=$2 ;;
    --log) SERVER_LOG=$2 ;;
    --marker) MARKER=$2 ;;
    --state-dir) STATE_DIR=$2 ;;
    --term) TERM_ARG=$2 ;;
    --leader) LEADER_ARG=$2 ;;
    --stop-command) STOP_COMMAND=$2 ;;
    --start-command) START_COMMAND=$2 ;;
    *) usage "unknown option $1" ;;
  esac
  shift 2
done
[ -n "$PGDATA_DIR" ] || usage "--pgdata is missing"
[ -n "$BINDIR" ] || usage "--bindir is missing"
[ -n "$SOURCE" ] || usage "--source is missing"
[ -n "$APP_NAME" ] || usage "--application-name is missing"
[ -n "$SERVER_LOG" ] || usage "--log is missing"
case $APP_NAME in *[!A-Za-z0-9_.-]*) usage "--application-name takes letters, digits, _ . - only" ;; esac

log() { printf '%s rejoin: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

[ -f "$PGDATA_DIR/PG_VERSION" ] || { log "\"$PGDATA_DIR\" is not a PostgreSQL data directory"; exit 2; }
PGDATA_DIR=$(cd "$PGDATA_DIR" && pwd -P)
[ -n "$STATE_DIR" ] || STATE_DIR=$PGDATA_DIR/pg_leader
case $STATE_DIR in /*) ;; *) STATE_DIR=$PGDATA_DIR/$STATE_DIR ;; esac
# Physical paths, as the extension passes them: the same rejoin always finds the same lock.
[ ! -d "$STATE_DIR" ] || STATE_DIR=$(cd "$STATE_DIR" && pwd -P)
inside_data_dir() { case "$1/" in "$PGDATA_DIR"/*) return 0 ;; *) return 1 ;; esac; }
if [ -z "$MARKER" ]; then
  if inside_data_dir "$STATE_DIR"; then MARKER=$PGDATA_DIR.pg_leader-rejoin/marker; else MARKER=$STATE_DIR/rejoin/marker; fi
fi
WORK=$(dirname "$MARKER")
mkdir -p "$WORK" || { log "could not create the work directory \"$WORK\""; exit 2; }
WORK=$(cd "$WORK" && pwd -P)
MARKER=$WORK/$(basename "$MARKER")
inside_data_dir "$WORK" && usage "the marker must be outside the data directory (pg_rewind replaces it): $MARKER"
SAVED=$WORK/saved

# One rejoin at a time. The extension takes the lock before it writes the plan and hands it down
# as fd 9; every program started here gets fd 9 closed (9>&-), so that a server started by this
# script does not hold the lock for its whole life.
if [ "${PG_LEADER_REJOIN_LOCK_FD:-}" != 9 ]; then
  exec 9>>"$WORK/lock" || { log "could not open \"$WORK/lock\""; exit 2; }
fi
flock -n 9 || { log "another rejoin holds \"$WORK/lock\": not starting a second one"; exit 3; }

# --- the marker --------------------------------------------------------------------------------
marker_get() { sed -n "s/^$1=//p" "$MARKER" 2>/dev/null | tail -1; }
# marker_set KEY=VALUE...: the whole file is rewritten to a temporary file, synced and renamed.
marker_set() {
  local tmp=$MARKER.tmp pair key
  if [ -f "$MARKER" ]; then cp "$MARKER" "$tmp"; else : >"$tmp"; fi
  for pair in "$@"; do
    key=${pair%%=*}
    grep -v "^$key=" "$tmp" >"$tmp.1"
    printf '%s\n' "${pair//$'\n'/ | }" >>"$tmp.1"
    mv "$tmp.1" "$tmp"
  done
  sync "$tmp" && mv "$tmp" "$MARKER" && sync "$WORK"
}
set_step() { marker_set "step=$1" "updated_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; log "step: $1"; }

# --- the server ------------------------------------------------------------------------------
server_running() { "$BINDIR/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1 9>&-; }
stop_server() {
  if [ -n "$STOP_COMMAND" ]; then bash -c "$STOP_COMMAND" 9>&-; return; fi
  "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t "$STOP_TIMEOUT" stop 9>&-
}
start_server() {
  if [ -n "$START_COMMAND" ]; then bash -c "$START_COMMAND" </dev/null 9>&-; return; fi
  "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$SERVER_LOG" -w -t "$START_TIMEOUT" start </dev/null 9>&-
}

# primary_conninfo: the leader's conninfo and this node's application_name, as one single-quoted
# postgresql.conf value (a quote inside is doubled).
PRIMARY_CONNINFO="$SOURCE application_name=$APP_NAME"
CONNINFO_LINE="primary_conninfo = '${PRIMARY_CONNINFO//\'/\'\'}'"

# fsync of every file and folder below (and of) the given ones: what this script wrote is on
# disk before the step that depends on it is recorded (sync without arguments would flush every
# file system of the host).
sync_tree() { find "$@" -exec sync {} +; }

# The top-level configuration files, one name a line.
conf_files() { find "$1" -maxdepth 1 -type f -name '*.conf' -printf '%f\n' | sort; }

refuse() {
  marker_set "step=refused" "reason=$1" "updated_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  log "refused: $1"
  exit 1
}
fail() {
  marker_set "step=failed" "reason=$1" "updated_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  log "FAILED: $1"
  exit 1
}

# --- the plan: new, resumed, or nothing to do ----------------------------------------------------
step=$(marker_get step)
new_plan() {
  rm -f "$MARKER"
  marker_set "term=$TERM_ARG" "leader=$LEADER_ARG" "source=$SOURCE" "application_name=$APP_NAME" \
    "started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  set_step planned
  step=planned
}
configured_as_standby_of_source() {
  [ -f "$PGDATA_DIR/standby.signal" ] &&
    grep -qxF "$CONNINFO_LINE" "$PGDATA_DIR/postgresql.auto.conf" 2>/dev/null
}
case $step in
  ""|done)
    # The data directory itself says whether the job is done (a marker may be gone, consumed
    # by the worker, or may be an old one while the server has been promoted since).
    if configured_as_standby_of_source; then
      if server_running; then
        log "nothing to do: the server is running as a standby with primary_conninfo '$PRIMARY_CONNINFO'"
        exit 0
      fi
      if [ "$step" = done ]; then
        log "the rejoin to '$SOURCE' is done; starting the server"
        start_server || { log "the server did not start: see $SERVER_LOG"; exit 1; }
        exit 0
      fi
    fi
    new_plan ;;
  refused)
    new_plan ;;
  failed)
    log "an earlier rejoin failed: $(marker_get reason)"
    log "resolve it, then remove \"$MARKER\" (own files saved earlier are in \"$SAVED\")"
    exit 1 ;;
  *)
    # "planned" is where the extension leaves a new plan; any other step means an interrupted run.
    [ "$step" = planned ] || log "resuming an interrupted rejoin at step \"$step\" (plan: source '$(marker_get source)')"
    if server_running; then
      case $step in
        planned) ;;
        stopped|saved|checked)
          # Somebody started the server again before the rewind: its files are its own and live,
          # so the copy is stale. Start over.
          log "the server runs again and nothing was rewound yet: starting over"
          rm -rf "$SAVED" "$SAVED.tmp"
          new_plan ;;
        configured)
          set_step done
          log "the server already runs as a standby"
          exit 0 ;;
        *)
          fail "the server was started in the middle of a rejoin, after pg_rewind began (step $step): its data directory and configuration are not its own; stop it and rebuild it from the leader (pg_basebackup); its own files are in $SAVED" ;;
      esac
    fi
    if [ "$(marker_get source)" != "$SOURCE" ]; then
      log "the source changed from '$(marker_get source)' to '$SOURCE'"
      marker_set "source=$SOURCE" "term=$TERM_ARG" "leader=$LEADER_ARG" "application_name=$APP_NAME"
      # The dry run checked the old source; a rewind already done stays (only where this
      # server streams from changes).
      [ "$step" = checked ] && { set_step saved; step=saved; }
    fi ;;
esac

# --- the steps -----------------------------------------------------------------------------------
restore_saved() {
  local name
  # The leader's configuration files that this server did not have go; this server's come back.
  conf_files "$PGDATA_DIR" | while read -r name; do
    [ -f "$SAVED/conf/$name" ] || rm -f "$PGDATA_DIR/$name"
  done
  if [ -n "$(conf_files "$SAVED/conf")" ]; then cp -p "$SAVED"/conf/*.conf "$PGDATA_DIR"/ || return 1; fi
  if [ -d "$SAVED/state" ]; then
    rm -rf "$STATE_DIR" && cp -pR "$SAVED/state" "$STATE_DIR" || return 1
  elif inside_data_dir "$STATE_DIR"; then
    # This server had no state directory: the leader's copy must not become its own.
    rm -rf "$STATE_DIR"
  fi
  sync "$PGDATA_DIR"/*.conf "$PGDATA_DIR" && { [ ! -d "$STATE_DIR" ] || sync_tree "$STATE_DIR"; }
}

if [ "$step" = planned ]; then
  if server_running; then
    marker_set "was_running=yes"
    log "stopping the server (fast, at most ${STOP_TIMEOUT} s)"
    if ! out=$(stop_server 2>&1); then
      server_running && refuse "could not stop the server: $out"
    fi
  elif [ -z "$(marker_get was_running)" ]; then
    # Not running, and no earlier run of this plan stopped it (a rerun after a crash that
    # followed the stop keeps "yes", so that a refusal still starts the server again).
    marker_set "was_running=no"
  fi
  server_running && refuse "the server is still running after the stop"
  set_step stopped
  step=stopped
fi

if [ "$step" = stopped ]; then
  rm -rf "$SAVED" "$SAVED.tmp"
  mkdir -p "$SAVED.tmp/conf" || fail "could not create \"$SAVED.tmp\""
  conf_files "$PGDATA_DIR" | while read -r name; do
    cp -p "$PGDATA_DIR/$name" "$SAVED.tmp/conf/$name" || exit 1
  done || fail "could not copy the configuration files to \"$SAVED.tmp\""
  if inside_data_dir "$STATE_DIR" && [ -d "$STATE_DIR" ]; then
    cp -pR "$STATE_DIR" "$SAVED.tmp/state" || fail "could not copy \"$STATE_DIR\" to \"$SAVED.tmp\""
  fi
  sync_tree "$SAVED.tmp" && mv "$SAVED.tmp" "$SAVED" && sync "$WORK" || fail "could not finish the copy in \"$SAVED\""
  log "saved: $(conf_files "$SAVED/conf" | tr '\n' ' ')$([ -d "$SAVED/state" ] && echo "and $STATE_DIR")"
  set_step saved
  step=saved
fi

# pg_rewind reads this server's WAL back to the last checkpoint before the divergence: from
# pg_wal (wal_keep_size keeps it), else through restore_command when one is set.
REWIND=("$BINDIR/pg_rewind" --target-pgdata "$PGDATA_DIR" --source-server "$SOURCE")
if [ -n "$("$BINDIR/postgres" -D "$PGDATA_DIR" -C restore_command 2>/dev/null 9>&-)" ]; then
  REWIND+=(--restore-target-wal)
fi

# A standby promoted a moment ago still has its old timeline in its control file until its next
# checkpoint (PostgreSQL does not wait for one on promotion), and pg_rewind reads the timeline
# there: without a checkpoint it would find no divergence, or the wrong one.
checkpoint_source() {
  [ -x "$BINDIR/psql" ] || return 0
  log "CHECKPOINT on the source, so that its control file names its current timeline"
  "$BINDIR/psql" -X -q -d "$SOURCE" -c CHECKPOINT 2>&1 9>&- || log "the CHECKPOINT on the source failed; pg_rewind decides"
}

if [ "$step" = saved ] || [ "$step" = checked ]; then
  checkpoint_source
fi

if [ "$step" = saved ]; then
  log "pg_rewind --dry-run from '$SOURCE'"
  if ! out=$(timeout "$DRY_RUN_TIMEOUT" "${REWIND[@]}" --dry-run 2>&1 9>&-); then
    printf '%s\n' "$out"
    why=$(grep -E 'error|fatal|FATAL|ERROR|could not' <<<"$out")
    [ -n "$why" ] || why=$(tail -3 <<<"$out")
    reason="pg_rewind --dry-run refused: $(tr '\n' ' ' <<<"$why" | sed 's/ *$//')"
    restore_saved || fail "$reason; and the saved files could not be put back from \"$SAVED\""
    if [ "$(marker_get was_running)" = yes ]; then
      log "starting the server again, as it was"
      start_server || fail "$reason; and the server did not start again: see $SERVER_LOG"
    fi
    rm -rf "$SAVED"
    refuse "$reason"
  fi
  printf '%s\n' "$out"
  set_step checked
  step=checked
fi

if [ "$step" = rewinding ]; then
  fail "pg_rewind was interrupted: the data directory may be partly rewound, which PostgreSQL cannot repair; rebuild it from the leader (pg_basebackup) and put back this server's own files from $SAVED"
fi

if [ "$step" = checked ] && server_running; then
  # Started again since the stop (a service manager, an operator): pg_rewind must not run under
  # it, and nothing was rewound yet. The worker of the running server resumes the plan, which
  # starts over with a stop.
  log "the server was started again before pg_rewind: nothing rewound; the next run starts over"
  exit 1
fi

if [ "$step" = checked ]; then
  set_step rewinding
  log "pg_rewind from '$SOURCE'"
  if ! "${REWIND[@]}" 2>&1 9>&-; then
    fail "pg_rewind failed: the data directory may be partly rewound; rebuild it from the leader (pg_basebackup) and put back this server's own files from $SAVED"
  fi
  set_step rewound
  step=rewound
fi

if [ "$step" = rewound ]; then
  restore_saved || fail "could not put back this server's own files from \"$SAVED\""
  log "restored this server's own configuration and state"
  set_step restored
  step=restored
fi

if [ "$step" = restored ]; then
  auto=$PGDATA_DIR/postgresql.auto.conf
  { grep -vE '^[[:space:]]*primary_conninfo[[:space:]]*=' "$auto" 2>/dev/null; printf '%s\n' "$CONNINFO_LINE"; } >"$auto.rejoin" &&
    sync "$auto.rejoin" && mv "$auto.rejoin" "$auto" && : >"$PGDATA_DIR/standby.signal" &&
    sync "$PGDATA_DIR/standby.signal" "$PGDATA_DIR" ||
    fail "could not write standby.signal and primary_conninfo"
  log "standby.signal written; $CONNINFO_LINE"
  set_step configured
  step=configured
fi

if [ "$step" = configured ]; then
  set_step done
  log "starting the server as a standby"
  if ! start_server; then
    if ! server_running; then
      set_step configured
      log "the server did not start: see $SERVER_LOG; a rerun starts it"
      exit 1
    fi
  fi
  rm -rf "$SAVED"
  log "done: a standby of '$SOURCE' as $APP_NAME"
fi
exit 0
