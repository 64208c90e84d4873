//! Status rows: reconciler.md section 9.D (the backfill rows; this binary
//! has no attach handler) plus the `running` row.

use serde_json::json;

use super::*;

fn config(joined: bool, plugins: Value) -> EffectiveConfig {
    EffectiveConfig::from_document(json!({"version": 2, "plugins": plugins}), joined)
}

fn markers(value: Value) -> MarkerDoc {
    MarkerDoc::from_value(value)
}

fn states(rows: &[ActionRow]) -> Vec<(String, String, &'static str)> {
    rows.iter()
        .map(|row| (row.kind.clone(), row.request_key.clone(), row.state.name()))
        .collect()
}

fn row(kind: &str, key: &str, state: &'static str) -> (String, String, &'static str) {
    (kind.to_string(), key.to_string(), state)
}

fn as_json(rows: &[ActionRow]) -> Value {
    serde_json::to_value(rows).unwrap()
}

// 45
#[test]
fn mixed_states_on_a_joined_host() {
    let config = config(
        true,
        json!([
            {"name": "@hypaware/central"},
            {"name": "@hypaware/ai-gateway"},
            {"name": "@hypaware/claude", "config": {"backfill": {"on_join": true, "window_days": 30}}},
            {"name": "@hypaware/codex", "config": {"backfill": {"on_join": false}}}
        ]),
    );
    let doc = markers(json!({"backfill": {
        "@acme/done-plugin": {"status": "done", "request_key": "@acme/done-plugin", "rows": 1234, "at": "2026-06-25T00:00:00.000Z"},
        "@acme/failed-plugin": {"status": "failed", "request_key": "@acme/failed-plugin", "reason": "transcript dir missing",
                                "last_attempt": "2026-06-25T01:00:00.000Z", "attempts": 2}
    }}));
    let rows = derive(&doc, &config).unwrap();
    assert_eq!(
        states(&rows),
        [
            row("backfill", "@acme/done-plugin", "done"),
            row("backfill", "@acme/failed-plugin", "failed"),
            row("backfill", "@hypaware/claude", "pending"),
            row("backfill", "@hypaware/codex", "n/a"),
        ]
    );
    assert_eq!(rows[0].rows, Some(1234));
    assert_eq!(rows[1].attempts, Some(2));
}

// 46, 47
#[test]
fn declared_targets_follow_the_desired_gate() {
    let malformed = config(
        true,
        json!([{"name": "@hypaware/claude", "config": {"backfill": {"on_join": "false"}}}]),
    );
    assert_eq!(
        states(&derive(&MarkerDoc::default(), &malformed).unwrap()),
        [row("backfill", "@hypaware/claude", "n/a")]
    );
    let default_on = config(
        true,
        json!([{"name": "@hypaware/ai-gateway"}, {"name": "@hypaware/claude"}, {"name": "@acme/other"}]),
    );
    assert_eq!(
        states(&derive(&MarkerDoc::default(), &default_on).unwrap()),
        [row("backfill", "@hypaware/claude", "pending")]
    );
}

// 48, 51
#[test]
fn nothing_applies_on_an_ordinary_host() {
    let local_claude = config(
        false,
        json!([{"name": "@hypaware/ai-gateway"}, {"name": "@hypaware/claude"}]),
    );
    assert_eq!(derive(&MarkerDoc::default(), &local_claude), None);
    let gateway_only = config(false, json!([{"name": "@hypaware/ai-gateway"}]));
    assert_eq!(derive(&MarkerDoc::default(), &gateway_only), None);
}

#[test]
fn an_explicit_block_on_a_non_joined_host_is_n_a() {
    let explicit = config(
        false,
        json!([{"name": "@hypaware/codex", "config": {"backfill": {"on_join": true}}}]),
    );
    assert_eq!(
        states(&derive(&MarkerDoc::default(), &explicit).unwrap()),
        [row("backfill", "@hypaware/codex", "n/a")]
    );
}

// 49, 50, 52
#[test]
fn rows_are_stable_json() {
    let doc = markers(json!({
        "backfill": {
            "@hypaware/claude": {"status": "done", "request_key": "@hypaware/claude", "rows": 42, "at": "2026-06-25T00:00:00.000Z"},
            "@hypaware/codex": {"status": "failed", "request_key": "@hypaware/codex", "reason": "nope",
                                "last_attempt": "2026-06-25T02:00:00.000Z", "attempts": 1},
            "acme": {"status": "refused", "request_key": "acme", "reason": "ownership conflict", "at": "2026-06-25T03:00:00.000Z"}
        }
    }));
    let rows = derive(&doc, &config(false, json!([]))).unwrap();
    assert_eq!(
        as_json(&rows),
        json!([
            {"kind": "backfill", "request_key": "@hypaware/claude", "state": "done", "rows": 42, "at": "2026-06-25T00:00:00.000Z"},
            {"kind": "backfill", "request_key": "@hypaware/codex", "state": "failed", "reason": "nope", "last_attempt": "2026-06-25T02:00:00.000Z", "attempts": 1},
            {"kind": "backfill", "request_key": "acme", "state": "refused", "reason": "ownership conflict", "at": "2026-06-25T03:00:00.000Z"}
        ])
    );
}

#[test]
fn zero_counts_are_kept_and_empty_strings_dropped() {
    let doc = markers(json!({"backfill": {
        "a": {"status": "done", "rows": 0, "at": ""},
        "b": {"status": "failed", "attempts": 0, "reason": ""}
    }}));
    assert_eq!(
        as_json(&derive(&doc, &config(false, json!([]))).unwrap()),
        json!([
            {"kind": "backfill", "request_key": "a", "state": "done", "rows": 0},
            {"kind": "backfill", "request_key": "b", "state": "failed", "attempts": 0}
        ])
    );
}

// 53, 54
#[test]
fn text_rows() {
    let doc = markers(json!({
        "attach": {"claude": {"status": "refused", "reason": ""}},
        "backfill": {
            "@acme/done-plugin": {"status": "done", "rows": 7, "at": "2026-06-25T00:00:00.000Z"},
            "@acme/failed-plugin": {"status": "failed", "reason": "transcript dir missing",
                                    "last_attempt": "2026-06-25T01:00:00.000Z", "attempts": 2},
            "@acme/one": {"status": "failed", "attempts": 1, "next_attempt": "2026-06-25T01:01:00.000Z"},
            "@acme/refused-plugin": {"status": "refused", "reason": "ownership conflict"},
            "@acme/running": {"status": "running", "pid": 77, "started_at": "2026-06-25T04:00:00.000Z", "attempts": 0}
        }
    }));
    let config = config(
        true,
        json!([
            {"name": "@hypaware/claude"},
            {"name": "@hypaware/codex", "config": {"backfill": {"on_join": false}}}
        ]),
    );
    let lines: Vec<String> = derive(&doc, &config)
        .unwrap()
        .iter()
        .map(render_text)
        .collect();
    assert_eq!(
        lines,
        [
            "attach claude  [refused]  run 'hyp actions retry attach claude' after fixing the cause",
            "backfill @acme/done-plugin  [done]  (7 rows, at 2026-06-25T00:00:00.000Z)",
            "backfill @acme/failed-plugin  [failed]  (transcript dir missing, last attempt 2026-06-25T01:00:00.000Z, 2 attempts)",
            "backfill @acme/one  [failed]  (1 attempt, next attempt 2026-06-25T01:01:00.000Z)",
            "backfill @acme/refused-plugin  [refused]  (ownership conflict)  run 'hyp actions retry backfill @acme/refused-plugin' after fixing the cause",
            "backfill @acme/running  [running]  (pid 77, since 2026-06-25T04:00:00.000Z)",
            "backfill @hypaware/claude  [pending]",
            "backfill @hypaware/codex  [n/a]",
        ]
    );
}

#[test]
fn text_rows_are_sanitised() {
    let doc = markers(
        json!({"backfill": {"@x/\u{202E}evil": {"status": "failed", "reason": "bad\u{1b}[2J\nline"}}}),
    );
    let line = render_text(&derive(&doc, &config(false, json!([]))).unwrap()[0]);
    assert_eq!(line, "backfill @x/evil  [failed]  (bad[2Jline)");
}

// 58
#[test]
fn a_declared_target_and_its_marker_collapse_into_one_row() {
    let doc = markers(
        json!({"backfill": {"@hypaware/claude": {"status": "done", "at": "2026-06-25T00:00:00.000Z"}}}),
    );
    let rows = derive(&doc, &config(true, json!([{"name": "@hypaware/claude"}]))).unwrap();
    assert_eq!(states(&rows), [row("backfill", "@hypaware/claude", "done")]);
    assert_eq!(rows[0].at.as_deref(), Some("2026-06-25T00:00:00.000Z"));
}

#[test]
fn a_marker_outlives_its_plugin_and_the_join() {
    let doc = markers(
        json!({"backfill": {"@hypaware/codex": {"status": "failed", "reason": "boom", "attempts": 3}}}),
    );
    let rows = derive(
        &doc,
        &config(false, json!([{"name": "@hypaware/ai-gateway"}])),
    )
    .unwrap();
    assert_eq!(
        states(&rows),
        [row("backfill", "@hypaware/codex", "failed")]
    );
}

#[test]
fn collect_reads_the_store_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::with_home(dir.path().join("home"));
    assert_eq!(collect(&paths, &config(false, json!([]))), None);
    assert!(!paths.home().exists());
}
