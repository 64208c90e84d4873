#!/usr/bin/env bash
# An invalid central document is not applied (bad_etag) and the daemon keeps
# running; a valid revision that cannot confirm is rolled back when its
# probation expires, and status says why.
source "$(dirname "$0")/../lib.sh"

start_central
serve rev-1 "$(fleet_doc '{"backfill": {"on_join": false}}' '{"backfill": {"on_join": false}}')"
hyp join "$CENTRAL_URL" smoke-token >/dev/null
start_daemon
wait_for 30 "rev-1 confirmed" confirmed rev-1

# An invalid document: rejected, remembered, never applied.
serve rev-bad '{"version": 3}'
wait_for 30 "rev-bad recorded as bad" bad_etag_is rev-bad
assert_eq "$(status_json "d['remote_config']['running_etag']")" rev-1 "running etag after a bad document"
daemon_running || fail "the daemon died on a bad document"

# A valid revision served once, then silence: probation expires and rolls back to rev-1.
serve_then_silence rev-2 "$(fleet_doc '{"backfill": {"on_join": false}}' '{"backfill": {"on_join": false}, "note": 2}')"
wait_for 30 "rev-2 applied under probation" under_probation rev-2
wait_for 60 "rev-2 rolled back" rolled_back_for probation_expired
assert_eq "$(status_json "d['remote_config']['running_etag']")" rev-1 "running etag after the rollback"
hyp status | grep -q "rolled back" || fail "status text does not say why"
admin POST /_admin/silence '{"on": false}'
daemon_running || fail "the daemon is not running after the rollback"
stop_daemon
