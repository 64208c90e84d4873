#!/usr/bin/env bash
# The cache is derived from history. A damaged cache is set aside and a new
# one refilled; a deleted one is refilled. Each time the daemon re-runs
# backfill-on-join for both providers on its own (their done markers name the
# old cache generation), and every row comes back exactly once.
source "$(dirname "$0")/../lib.sh"

joined_and_backfilled

total=$(( $(expected_rows claude) + $(expected_rows codex) ))
all_rows() { [ "$(cache_count "SELECT count(*) FROM ai_gateway_messages")" = "$total" ]; }
both_done() { action_is @hypaware/claude done && action_is @hypaware/codex done; }
no_duplicates() {
  assert_eq "$(cache_count "SELECT count(*) - count(DISTINCT part_id) FROM ai_gateway_messages")" 0 "duplicate part_ids"
}
all_rows || fail "rows after join"

# 1. Garbage over the cache while the daemon idles. A manual import sets it
#    aside, starts a new cache, and asks the daemon for a pass.
cache=$HYP_HOME/hypaware/cache
spawns=$(event_count client_action.backfill_spawn)
head -c 20000 /dev/urandom >"$cache/cache.db"
rm -f "$cache/cache.db-wal" "$cache/cache.db-shm"
status_json "[x['kind'] for x in d['diagnostics']]" | grep -q cache_unreadable || fail "status does not say the cache is unreadable"
hyp backfill claude >/dev/null 2>"$SMOKE_ROOT/manual.err" || fail "manual backfill failed: $(cat "$SMOKE_ROOT/manual.err")"
grep -q "the cache was damaged; moved it to" "$SMOKE_ROOT/manual.err" || fail "no set-aside warning"
grep -q "asked the daemon (pid $DAEMON_PID) for a pass" "$SMOKE_ROOT/manual.err" || fail "the daemon was not asked for a pass"
wait_for 60 "the daemon to re-run both backfills" event_count_above client_action.backfill_spawn $((spawns + 1))
wait_for 60 "both backfills done again" both_done
wait_for 60 "every row back" all_rows
no_duplicates
ls "$cache"/cache.db.damaged-* >/dev/null 2>&1 || fail "the damaged cache was not kept"
status_json "[x['kind'] for x in d['diagnostics']]" | grep -q cache_damaged_copies || fail "status does not mention the damaged copy"

# 2. The cache deleted by hand while the daemon is down: its boot pass refills it.
stop_daemon
rm -rf "$cache"
action_is @hypaware/claude pending || fail "status does not say the deleted cache is imported again"
hyp status | grep -q "the cache file is missing" || fail "status text does not say why"
spawns=$(event_count client_action.backfill_spawn)
start_daemon
wait_for 60 "the boot pass to re-run both backfills" event_count_above client_action.backfill_spawn $((spawns + 1))
wait_for 60 "both backfills done again" both_done
wait_for 60 "every row back" all_rows
no_duplicates

# 3. Nothing changed: a restart runs nothing.
spawns=$(event_count client_action.backfill_spawn)
passes=$(event_count daemon.reconcile_pass)
stop_daemon
start_daemon
wait_for 20 "the boot pass to finish" event_count_above daemon.reconcile_pass "$passes"
assert_eq "$(event_count client_action.backfill_spawn)" "$spawns" "backfill spawns after a plain restart"
stop_daemon
