#!/usr/bin/env bash
# The forward sink and continuous capture, end to end: a joined host's
# backfill-on-join reaches central exactly once; a session written
# afterwards, and lines appended to it, reach it with no one touching the
# host; a kill -9 while central holds a
# stored chunk unanswered, then a restart, still leaves every row on central
# exactly once.
source "$(dirname "$0")/../lib.sh"

make_history small
start_central
capture='{"capture": {"interval_seconds": 30}}'
serve rev-1 "$(fleet_doc "$capture" "$capture")"
hyp join "$CENTRAL_URL" smoke-token >/dev/null
start_daemon
wait_for 60 "claude backfill done" action_is @hypaware/claude done
wait_for 60 "codex backfill done" action_is @hypaware/codex done
total=$(cache_total)
assert_eq "$total" "$(( $(expected_rows claude) + $(expected_rows codex) ))" "cache rows after backfill-on-join"
wait_for 60 "every cached row on central once" central_has "$total"
assert_eq "$(status_json "[s for s in d['sinks'] if s['instance']=='central'][0]['pending_rows']")" 0 "pending rows"

# A session written now, then lines appended to it, reach central by
# capture sweeps and exports.
new_session live-1 6
wait_for 60 "the new session on central" central_has "$((total + 6))"
new_session live-1 3 6
wait_for 60 "the appended lines on central" central_has "$((total + 9))"
total=$((total + 3))

# Central stores the next chunk but never answers; the daemon dies meanwhile.
admin POST /_admin/ingest/fail '{"kind": "store_then_hold", "ms": 60000}'
batches=$(central_batches)
new_session live-2 4
wait_for 60 "central to store the held chunk" central_batches_above "$batches"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
admin POST /_admin/ingest/release
new_session live-3 2
start_daemon
wait_for 60 "every row on central exactly once after the crash" central_has "$((total + 12))"
assert_eq "$(cache_total)" "$((total + 12))" "cache rows"
duplicates=$(curl -fsS "$CENTRAL_URL/_admin/ingest" | json_get - "d['duplicate_batches']")
[ "$duplicates" -ge 1 ] || fail "the held chunk was not replayed with its batch id (duplicate_batches=$duplicates)"
stop_daemon
