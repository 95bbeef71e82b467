#!/usr/bin/env bash
# The web console beside the lab of `make run`:
#   console.sh start [HOST:PORT]   start `bulkhead ui` in the background, print its URL
#   console.sh stop                stop the one this script started (`make down`)
# Its pid and log live in the CLI's state dir, beside the control plane's address file.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${BULKHEAD_VENV:-$here/.venv}
state=${BULKHEAD_STATE_DIR:-$HOME/.local/state/bulkhead}
pidfile=$state/console.pid
log=$state/console.log

ours() {  # the pid in the file is a `bulkhead ui` still running
  [ -f "$pidfile" ] && pid=$(cat "$pidfile") && [ -r "/proc/$pid/cmdline" ] \
    && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'bulkhead ui'
}

case ${1:-start} in
start)
  listen=${2:-127.0.0.1:12000}
  if ours; then kill "$(cat "$pidfile")"; sleep 0.5; fi
  mkdir -p "$state"
  setsid "$venv/bin/bulkhead" ui --listen "$listen" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 50); do
    if grep -q '^bulkhead console: ' "$log"; then
      grep '^bulkhead console: ' "$log" | sed 's/^bulkhead console: /==> web console: /'
      exit 0
    fi
    ours || break
    sleep 0.2
  done
  echo "==> the web console did not start, see $log:" >&2
  tail -5 "$log" >&2
  exit 1
  ;;
stop)
  if ours; then kill "$(cat "$pidfile")"; echo "==> web console stopped" >&2; fi
  rm -f "$pidfile"
  ;;
*)
  echo "usage: $0 start [HOST:PORT] | stop" >&2; exit 2 ;;
esac
