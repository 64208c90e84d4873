#!/usr/bin/env bash
# kill -9 of the daemon while a backfill runs, then a restart: the action ends
# done, the cache holds exactly the manifest count with no duplicate part_id,
# and no `hyp backfill` process is left. Then `hyp leave` keeps markers and cache.
source "$(dirname "$0")/../lib.sh"

# Big enough that the import is still running when we look.
"$GEN_HISTORY" --sessions 400 --lines 200 --providers claude --out "$SMOKE_ROOT/corpus" >/dev/null
mkdir -p "$HOME/.claude"
ln -s "$SMOKE_ROOT/corpus/claude/projects" "$HOME/.claude/projects"
start_central
serve rev-1 "$(fleet_doc '{}' '{"backfill": {"on_join": false}}')"
hyp join "$CENTRAL_URL" smoke-token >/dev/null
start_daemon

wait_for 60 "the claude backfill to run" action_is @hypaware/claude running
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
wait_for 10 "the orphaned child to die" no_backfill_children

start_daemon
wait_for 120 "claude backfill done after the crash" action_is @hypaware/claude done
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages")" "$(expected_rows claude)" "rows after kill -9"
assert_eq "$(cache_count "SELECT count(*) - count(DISTINCT part_id) FROM ai_gateway_messages")" 0 "duplicate part_ids"
stop_daemon
no_backfill_children || fail "a hyp backfill process is left"

hyp leave >/dev/null
test -f "$HYP_HOME/hypaware/config-control/client-actions.json" || fail "leave removed the markers"
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages")" "$(expected_rows claude)" "rows after leave"
test -e "$HYP_HOME/hypaware/config-control/seed.json" && fail "leave kept the seed"
assert_eq "$(status_json "d['config']['joined']")" False "joined after leave"
