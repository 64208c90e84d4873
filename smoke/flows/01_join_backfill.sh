#!/usr/bin/env bash
# join -> apply -> re-exec -> probation -> confirm -> backfill-on-join done for
# claude and codex with the manifest's row counts -> status shows it; then a
# daemon restart does not run the done actions again.
source "$(dirname "$0")/../lib.sh"

joined_and_backfilled

assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages WHERE client_name='claude'")" \
  "$(expected_rows claude)" "claude rows"
assert_eq "$(cache_count "SELECT count(*) FROM ai_gateway_messages WHERE client_name='codex'")" \
  "$(expected_rows codex)" "codex rows"
assert_eq "$(cache_count "SELECT count(*) - count(DISTINCT part_id) FROM ai_gateway_messages")" 0 "duplicate part_ids"
assert_eq "$(status_json "d['remote_config']['running_etag']")" rev-1 "running etag"
assert_eq "$(status_json "d['remote_config']['probation']")" None "probation cleared"
assert_eq "$(status_json "d['overall']")" healthy "overall"
grep -q '"event":"config.probation_cleared"' "$HYP_HOME/hypaware/logs/daemon.log" || fail "no probation_cleared event"
hyp status | grep -q "backfill @hypaware/claude  \[done\]" || fail "status text lacks the done row"

# A restart must not run a done action again.
spawns_before=$(event_count client_action.backfill_spawn)
passes_before=$(event_count daemon.reconcile_pass)
stop_daemon
start_daemon
wait_for 20 "the boot pass to finish" event_count_above daemon.reconcile_pass "$passes_before"
spawns_after=$(event_count client_action.backfill_spawn)
assert_eq "$spawns_after" "$spawns_before" "backfill spawns after a restart"
stop_daemon
