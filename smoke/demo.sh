#!/usr/bin/env bash
# `make demo`: a machine joins a local fake central server, confirms its
# config, backfills its Claude Code and Codex history exactly once, forwards
# every row to central exactly once, captures a session written afterwards,
# and reports it. Everything lives in a temporary home that is removed at the end.
source "$(dirname "$0")/lib.sh"

step() { if [ -t 1 ]; then printf '\n\033[1m==> %s\033[0m\n' "$*"; else printf '\n==> %s\n' "$*"; fi; }

step "Generating a sample Claude Code + Codex history in $HOME"
make_history small
echo "claude: $(expected_rows claude) messages expected, codex: $(expected_rows codex)"

step "Starting a fake central server on 127.0.0.1"
start_central
capture='{"capture": {"interval_seconds": 60}}'
serve rev-1 "$(fleet_doc "$capture" "$capture")"
echo "central: $CENTRAL_URL (serving config revision rev-1; capture sweeps every 60 s)"

step "hyp join $CENTRAL_URL <token>"
hyp join "$CENTRAL_URL" smoke-token

step "hyp daemon run (timers sped up x$HYP_TIME_SCALE for the demo)"
start_daemon
echo "daemon pid $DAEMON_PID: polls, applies rev-1 under probation, re-executes, confirms"
wait_for 60 "rev-1 confirmed" confirmed rev-1
echo "config rev-1 confirmed; backfill-on-join is running"
wait_for 120 "claude backfill done" action_is @hypaware/claude done
wait_for 120 "codex backfill done" action_is @hypaware/codex done
total=$(cache_total)
wait_for 60 "every cached row on central" central_has "$total"
echo "central stored $(central_rows) rows ($(central_distinct) distinct part_ids, $(central_batches) chunk(s)); the cache holds $total"

step "A new Claude Code session, written after the import; nobody touches the host"
new_session demo-live 4
wait_for 60 "the new session on central" central_has "$((total + 4))"
echo "central stored $(central_rows) rows ($(central_distinct) distinct part_ids); the cache holds $(cache_total)"

step "hyp status"
hyp status

step "hyp query sql: rows per client and model"
hyp query sql "SELECT client_name, coalesce(model, '-') AS model, count(*) AS rows
               FROM ai_gateway_messages GROUP BY 1, 2 ORDER BY 1, 3 DESC"

step "Stopping the daemon and the fake central; removing $SMOKE_ROOT"
stop_daemon
echo "done: each backfill ran exactly once ($(event_count client_action.backfill_spawn) spawns); every row reached central exactly once"
