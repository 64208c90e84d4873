#!/usr/bin/env bash
# on_join:false gives n/a and no child; window_days bounds the import.
source "$(dirname "$0")/../lib.sh"

make_history small
start_central
serve rev-1 "$(fleet_doc '{"backfill": {"on_join": false}}' '{"backfill": {"window_days": 7}}')"
hyp join "$CENTRAL_URL" smoke-token >/dev/null
start_daemon

wait_for 60 "codex backfill done" action_is @hypaware/codex done
assert_eq "$(action_state @hypaware/claude)" "n/a" "claude state with on_join false"
grep -q '"provider":"claude"' <(grep backfill_spawn "$HYP_HOME/hypaware/logs/daemon.log") \
  && fail "a claude child was spawned despite on_join false"
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages WHERE client_name='claude'")" 0 "claude rows"
codex_rows=$(cache_count "SELECT count(*) FROM ai_gateway_messages WHERE client_name='codex'")
[ "$codex_rows" -gt 0 ] || fail "codex imported nothing"
[ "$codex_rows" -lt "$(expected_rows codex)" ] || fail "window_days did not bound the import ($codex_rows rows)"
old=$(cache_count "SELECT count(*) FROM ai_gateway_messages WHERE message_created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-8 days')")
assert_eq "$old" 0 "rows older than the 7-day window"
stop_daemon
