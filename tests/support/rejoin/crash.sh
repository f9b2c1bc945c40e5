# Shared by the stand-ins: where their state lives (the "fake" folder next to the data
# directory they are given: fake_dir DATADIR), and how a crash is made.
fake_dir() { FAKE=$(cd "$1/../fake" && pwd); }

# crash: kills every rejoin.sh among the calling stand-in's nearest ancestors, the outermost
# first (a command substitution runs a stand-in in a subshell, itself a rejoin.sh, and timeout
# may sit in between), as a power cut would.
crash() {
  local p=$PPID pids=() level
  for level in 1 2 3 4; do
    [ "$p" -gt 1 ] || break
    if tr '\0' ' ' </proc/$p/cmdline | grep -q 'rejoin\.sh'; then pids=("$p" "${pids[@]}"); fi
    p=$(awk '{print $4}' /proc/$p/stat)
  done
  kill -9 "${pids[@]}"
}
