# Shared by the stand-ins: where their state lives (the "fake" folder next to the data
# directory they are given: fake_dir DATADIR), and how a crash is made.
fake_dir() { FAKE=$(cd "$1/../fake" && pwd); }

# crash: kills every rejoin.sh above the calling stand-in, the outermost first (a command
# substitution runs a stand-in in a subshell, itself a rejoin.sh), as a power cut would.
crash() {
  local p=$PPID pids=()
  while [ "$p" -gt 1 ] && tr '\0' ' ' </proc/$p/cmdline | grep -q rejoin.sh; do
    pids=("$p" "${pids[@]}")
    p=$(awk '{print $4}' /proc/$p/stat)
  done
  kill -9 "${pids[@]}"
}
