# Shared helpers for the smoke flows. Source it; it sets `set -euo pipefail`.
#
# Each flow gets a private temporary root with its own HOME and HYP_HOME, the
# release binaries, and a trap that stops everything it started. Waiting is
# always on a condition with a deadline, never a bare sleep.

set -euo pipefail

SMOKE_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HYP_BIN=${HYP_BIN:-$SMOKE_TOP/target/release/hyp}
FAKE_CENTRAL_BIN=${FAKE_CENTRAL_BIN:-$SMOKE_TOP/target/release/examples/hyp-fake-central}
# The project's own history generator (`make build` builds it with the examples).
GEN_HISTORY=${GEN_HISTORY:-$SMOKE_TOP/target/release/examples/hyp-gen-history}

SMOKE_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/hyp-smoke.XXXXXX")
export HOME=$SMOKE_ROOT/home
export HYP_HOME=$HOME/.hyp
export HYP_NO_GIT=1
export NO_COLOR=1
unset HYP_CONFIG CLAUDE_CONFIG_DIR CODEX_HOME
mkdir -p "$HOME"

SMOKE_PIDS=()

smoke_cleanup() {
  local pid
  for pid in "${SMOKE_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SMOKE_PIDS[@]:-}"; do
    [ -n "$pid" ] && wait_gone "$pid" 20 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "${SMOKE_KEEP:-}" = 1 ]; then
    echo "smoke: kept $SMOKE_ROOT" >&2
  else
    rm -rf "$SMOKE_ROOT"
  fi
}
trap smoke_cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [ -f "$HYP_HOME/hypaware/logs/daemon.log" ]; then
    echo "--- last daemon log lines" >&2
    tail -n 30 "$HYP_HOME/hypaware/logs/daemon.log" >&2 || true
  fi
  exit 1
}

hyp() { "$HYP_BIN" "$@"; }

# wait_for SECONDS DESCRIPTION COMMAND...: run COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      fail "timed out after ${seconds}s waiting for: $what"
    fi
    sleep 0.05
  done
}

# wait_gone PID SECONDS: wait until PID no longer exists.
wait_gone() {
  local pid=$1 seconds=$2
  local deadline=$((SECONDS + seconds))
  while kill -0 "$pid" 2>/dev/null; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.05
  done
}

# make_history PRESET: generate a Claude + Codex history under $SMOKE_ROOT/corpus
# and link it where Claude Code and Codex keep theirs in $HOME.
make_history() {
  "$GEN_HISTORY" --preset "${1:-small}" --out "$SMOKE_ROOT/corpus" >/dev/null
  mkdir -p "$HOME/.claude" "$HOME/.codex"
  ln -s "$SMOKE_ROOT/corpus/claude/projects" "$HOME/.claude/projects"
  ln -s "$SMOKE_ROOT/corpus/codex/sessions" "$HOME/.codex/sessions"
}

# expected_rows PROVIDER: the manifest's expected row count.
expected_rows() {
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["providers"][sys.argv[2]]["expected_rows"])' \
    "$SMOKE_ROOT/corpus/manifest.json" "$1"
}

# json_get FILE_OR_- EXPR: evaluate a Python expression over the JSON document `d`.
json_get() {
  python3 -c 'import json,sys; d=json.load(sys.stdin if sys.argv[1]=="-" else open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}

# ---- the fleet: fake central, join, daemon -------------------------------

export HYP_TIME_SCALE=${HYP_TIME_SCALE:-20}
CENTRAL_URL=
DAEMON_PID=

# start_central: run the fake central on an ephemeral port; sets CENTRAL_URL.
# Rows it stores land in $CENTRAL_DATA/ingest/proxy.ndjson.
CENTRAL_DATA=$SMOKE_ROOT/central-data
start_central() {
  "$FAKE_CENTRAL_BIN" --url-file "$SMOKE_ROOT/central.url" --token smoke-token \
    --data-dir "$CENTRAL_DATA" >"$SMOKE_ROOT/central.log" 2>&1 &
  SMOKE_PIDS+=($!)
  wait_for 10 "the fake central to listen" test -s "$SMOKE_ROOT/central.url"
  CENTRAL_URL=$(cat "$SMOKE_ROOT/central.url")
}

# central_rows: rows central stored (every stored copy counted).
central_rows() {
  curl -fsS "$CENTRAL_URL/_admin/ingest" | json_get - "d['stored_rows']"
}

# central_distinct: distinct part_ids among the rows central stored.
central_distinct() {
  python3 -c 'import json,sys; print(len({json.loads(l)["part_id"] for l in open(sys.argv[1]) if l.strip()}))' \
    "$CENTRAL_DATA/ingest/proxy.ndjson" 2>/dev/null || echo 0
}

# central_has ROWS: central stored exactly ROWS rows, all distinct.
central_has() {
  [ "$(central_rows)" = "$1" ] && [ "$(central_distinct)" = "$1" ]
}

# central_batches: chunks central stored.
central_batches() {
  curl -fsS "$CENTRAL_URL/_admin/ingest" | json_get - "d['stored_batches']"
}
central_batches_above() { [ "$(central_batches)" -gt "$1" ]; }

# cache_total: rows in the cache.
cache_total() { cache_count "SELECT count(*) FROM ai_gateway_messages"; }

# admin METHOD PATH [JSON]: call the fake central's admin API.
admin() {
  curl -fsS -X "$1" "$CENTRAL_URL$2" ${3:+-d "$3"} >/dev/null
}

# fleet_doc [CLAUDE_CONFIG_JSON] [CODEX_CONFIG_JSON]: a fleet config document.
fleet_doc() {
  local claude=${1:-'{}'} codex=${2:-'{}'}
  cat <<JSON
{"version": 2,
 "plugins": [{"name": "@hypaware/central"},
             {"name": "@hypaware/claude", "config": $claude},
             {"name": "@hypaware/codex", "config": $codex}],
 "sinks": {"central": {"plugin": "@hypaware/central",
                       "config": {"url": "$CENTRAL_URL", "identity": {}, "poll_interval_seconds": 5}}}}
JSON
}

# serve ETAG DOCUMENT: the fake central serves this revision from now on.
serve() {
  admin POST /_admin/config "{\"etag\": \"$1\", \"document\": $2}"
}

# start_daemon: run `hyp daemon run` in the background; sets DAEMON_PID.
start_daemon() {
  "$HYP_BIN" daemon run >>"$SMOKE_ROOT/daemon.out" 2>&1 &
  DAEMON_PID=$!
  SMOKE_PIDS+=("$DAEMON_PID")
  wait_for 10 "the daemon to hold its lock" daemon_running
}

daemon_running() { "$HYP_BIN" daemon status >/dev/null 2>&1; }

# joined_and_backfilled: the small history, a fleet serving rev-1 with both
# providers, a joined host and its daemon, until both backfills are done.
joined_and_backfilled() {
  make_history small
  start_central
  serve rev-1 "$(fleet_doc)"
  hyp join "$CENTRAL_URL" smoke-token >/dev/null
  start_daemon
  wait_for 60 "claude backfill done" action_is @hypaware/claude done
  wait_for 60 "codex backfill done" action_is @hypaware/codex done
}

# stop_daemon: SIGTERM and wait for a clean exit 0.
stop_daemon() {
  kill -TERM "$DAEMON_PID"
  local rc=0
  wait "$DAEMON_PID" || rc=$?
  [ "$rc" -eq 0 ] || fail "daemon exited $rc on SIGTERM"
}

# status_json EXPR: evaluate EXPR over `hyp status --json` as `d`.
status_json() {
  "$HYP_BIN" status --json | json_get - "$1"
}

# serve_then_silence ETAG DOCUMENT: serve it once, then go silent, so the
# host applies it and can never confirm it.
serve_then_silence() {
  admin POST /_admin/config "{\"etag\": \"$1\", \"document\": $2, \"then_silence\": true}"
}

# Predicates over `hyp status --json`, for wait_for.
confirmed() { [ "$(status_json "d['remote_config']['running_etag'] if d['remote_config']['probation'] is None else None")" = "$1" ]; }
under_probation() { [ "$(status_json "(d['remote_config']['probation'] or {}).get('etag')")" = "$1" ]; }
bad_etag_is() { [ "$(status_json "(d['remote_config']['bad_etag'] or {}).get('etag')")" = "$1" ]; }
rolled_back_for() { [ "$(status_json "(d['remote_config']['last_rollback'] or {}).get('reason')")" = "$1" ]; }

# event_count EVENT: how many times the daemon logged EVENT.
event_count() { grep -c "\"event\":\"$1\"" "$HYP_HOME/hypaware/logs/daemon.log" || true; }
event_count_above() { [ "$(event_count "$1")" -gt "$2" ]; }

# action_state KEY: the client action state of backfill KEY (or "none").
action_state() {
  status_json "next((r.get('state') for r in (d['client_actions'] or []) if r['request_key']=='$1'), 'none')"
}

action_is() { [ "$(action_state "$1")" = "$2" ]; }

# cache_rows PROVIDER_CLIENT: rows in the cache for client_name (claude|codex).
cache_count() {
  "$HYP_BIN" query sql "$1" --json | json_get - "list(d[0].values())[0]"
}

# assert_eq ACTUAL EXPECTED WHAT
assert_eq() {
  [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"
}

# no_backfill_children: no `hyp backfill` process of this flow is alive.
no_backfill_children() {
  ! pgrep -f "$HYP_BIN backfill" >/dev/null
}

# new_session NAME LINES [FROM]: append LINES lines (one row each, numbered
# from FROM, default 0) to Claude Code session NAME in the generated
# history, stamped now; a new session when FROM is 0.
new_session() {
  python3 - "$SMOKE_ROOT/corpus/claude/projects/-smoke-live" "$1" "$2" "${3:-0}" <<'PY'
import json, os, sys, time
folder, name, lines, first = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(folder, exist_ok=True)
now = time.time()
with open(os.path.join(folder, name + ".jsonl"), "a") as out:
    for i in range(first, first + lines):
        role = "user" if i % 2 == 0 else "assistant"
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now + i)) + ".000Z"
        out.write(json.dumps({"sessionId": name, "uuid": f"{name}-{i}", "type": role,
                              "cwd": "/smoke/live", "timestamp": ts,
                              "message": {"role": role, "content": [{"type": "text", "text": f"live line {i}"}]}}) + "\n")
PY
}
