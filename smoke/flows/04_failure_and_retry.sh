#!/usr/bin/env bash
# A failing backfill is `failed` with attempts while overall stays healthy;
# after the cause is fixed the retry makes it done. A corrupt marker file is
# recovered. `hyp actions retry` re-runs a done backfill and writes 0 rows.
source "$(dirname "$0")/../lib.sh"

make_history small
# A directory where the cache file belongs: every import fails until it goes.
mkdir -p "$HYP_HOME/hypaware/cache/cache.db"
start_central
serve rev-1 "$(fleet_doc '{}' '{"backfill": {"on_join": false}}')"
hyp join "$CENTRAL_URL" smoke-token >/dev/null
start_daemon

wait_for 60 "claude backfill failed" action_is @hypaware/claude failed
assert_eq "$(status_json "d['overall']")" healthy "overall with a failed action"
status_json "[x['message'] for x in d['diagnostics']]" | grep -qi "hyp backfill exited" && fail "a failed action reached diagnostics"
[ "$(status_json "[r for r in d['client_actions'] if r['request_key']=='@hypaware/claude'][0]['attempts']")" -ge 1 ] \
  || fail "no attempts counted"

rmdir "$HYP_HOME/hypaware/cache/cache.db"
wait_for 60 "claude backfill done after the fix" action_is @hypaware/claude done
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages")" "$(expected_rows claude)" "claude rows"

# A corrupt marker file reads as empty: the next pass re-runs and writes 0 rows.
stop_daemon
printf '{"backfill": {"@hypaware/claude": {"status": "do' >"$HYP_HOME/hypaware/config-control/client-actions.json"
hyp status >/dev/null
start_daemon
wait_for 60 "claude backfill done after recovery" action_is @hypaware/claude done
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages")" "$(expected_rows claude)" "rows after recovery"

# A manual retry of a done action re-runs it and writes nothing new.
hyp actions retry backfill @hypaware/claude >/dev/null
wait_for 60 "claude backfill done after retry" action_is @hypaware/claude done
assert_eq "$(status_json "[r for r in d['client_actions'] if r['request_key']=='@hypaware/claude'][0].get('rows')")" 0 "rows written by the retry"
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages")" "$(expected_rows claude)" "rows after the retry"
stop_daemon
