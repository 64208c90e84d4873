#!/usr/bin/env bash
# The daemon side of `make bench`, run by bench/run.sh against the home its
# backfill runs filled (a large cache): idle RSS after boot, after
# backfill-on-join and after the export of the whole cache that follows it,
# the confirm-to-spawn latency read from the daemon log,
# `hyp status --json` wall time, and the static binary's size. Prints figures
# and targets; never fails on a missed target.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
hyp=$here/target/release/hyp
central_bin=$here/target/release/examples/hyp-fake-central
# The daemon runs the shipped static binary when `make static` built one.
static=$( (ls "$here"/target/*-linux-*/release/hyp 2>/dev/null || true) | head -n 1)
size_label="static binary"
[ -n "$static" ] || { static=$hyp; size_label="release binary (run 'make static' for the static one)"; }
work=$(mktemp -d /tmp/hyp-bench-daemon.XXXXXX)
central_pid=
daemon_pid=
cleanup() {
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  [ -n "$central_pid" ] && kill -TERM "$central_pid" 2>/dev/null && wait "$central_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export HYP_TIME_SCALE=20
log=$HYP_HOME/hypaware/logs/daemon.log

wait_for() { # SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "bench: timed out waiting for: $*" >&2; exit 1; }
    sleep 0.05
  done
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
verdict() { python3 -c "print('ok' if $1 <= $2 else 'MISSED')"; }
actions_done() { [ "$(grep -c '"event":"client_action.done"' "$log")" -ge 2 ]; }

"$central_bin" --url-file "$work/url" --token bench-token >"$work/central.log" 2>&1 &
central_pid=$!
wait_for 10 test -s "$work/url"
url=$(cat "$work/url")
"$hyp" join "$url" bench-token >/dev/null 2>&1

# Boot with nothing served yet (404s): the idle daemon after boot.
"$static" daemon run >"$work/daemon.out" 2>&1 &
daemon_pid=$!
wait_for 10 "$hyp" daemon status
# The first poll waits for this host's splay offset (up to 300 s / 20).
wait_for 60 grep -q '"http_status":404' "$log"
rss_boot=$(rss_kb "$daemon_pid")

doc="{\"version\":2,\"plugins\":[{\"name\":\"@hypaware/central\"},{\"name\":\"@hypaware/claude\"},{\"name\":\"@hypaware/codex\"}],
      \"sinks\":{\"central\":{\"plugin\":\"@hypaware/central\",\"config\":{\"url\":\"$url\",\"identity\":{},\"poll_interval_seconds\":5}}}}"
curl -fsS -X POST "$url/_admin/config" -d "{\"etag\":\"rev-1\",\"document\":$doc}" >/dev/null
wait_for 300 actions_done
rss_done=$(rss_kb "$daemon_pid")
# Backfill-on-join asked for an export of the whole cache: wait for it, then
# for the daemon to be idle again.
wait_for 600 grep -q '"event":"central.forward.export".*"status":"exported"' "$log"
export_line=$(grep '"event":"central.forward.export".*"status":"exported"' "$log" | head -n 1)
exported_rows=$(echo "$export_line" | python3 -c "import json,sys; print(json.load(sys.stdin)['rows_sent'])")
rss_export=$(rss_kb "$daemon_pid")

latency_ms=$(python3 - "$log" <<'PY'
import json, sys
from datetime import datetime
def ts(line): return datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cleared = next(l for l in lines if l["event"] == "config.probation_cleared")
spawn = next(l for l in lines if l["event"] == "client_action.backfill_spawn" and ts(l) >= ts(cleared))
print(round((ts(spawn) - ts(cleared)).total_seconds() * 1000, 1))
PY
)

status_ms=$(python3 - "$hyp" <<'PY'
import subprocess, sys, time
runs = []
for _ in range(21):
    start = time.perf_counter()
    subprocess.run([sys.argv[1], "status", "--json"], stdout=subprocess.DEVNULL, check=True)
    runs.append((time.perf_counter() - start) * 1000)
runs.sort()
print(round(runs[len(runs) // 2], 1))
PY
)
rows=$("$hyp" status --json | python3 -c "import json,sys; print(json.load(sys.stdin)['cache']['rows'])")

size_bytes=$(stat -c %s "$static")

echo
echo "daemon"
echo "idle RSS after boot: $((rss_boot / 1024)).$(( (rss_boot % 1024) * 10 / 1024 )) MiB (target <= 5 MiB) $(verdict "$rss_boot" 5120)"
echo "idle RSS after backfill-on-join: $((rss_done / 1024)).$(( (rss_done % 1024) * 10 / 1024 )) MiB (target <= 5 MiB) $(verdict "$rss_done" 5120)"
echo "idle RSS after exporting ${exported_rows} rows, capture on: $((rss_export / 1024)).$(( (rss_export % 1024) * 10 / 1024 )) MiB (target <= 6 MiB) $(verdict "$rss_export" 6144)"
echo "confirming poll -> backfill spawn: ${latency_ms} ms (target <= 10 ms) $(verdict "$latency_ms" 10)"
echo "hyp status --json, joined, ${rows} cached rows: ${status_ms} ms median of 21 (target <= 10 ms) $(verdict "$status_ms" 10)"
echo "$size_label: $(python3 -c "print(round($size_bytes/1048576, 1))") MiB (target <= 10 MiB) $(verdict "$size_bytes" 10485760)"
