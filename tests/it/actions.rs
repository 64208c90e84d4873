//! `hyp actions`: listing the rows, `retry` clearing one marker under the
//! store's lock (several processes at once lose nothing), and the errors.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::TestEnv;

fn store_path(env: &TestEnv) -> PathBuf {
    env.state_root().join("config-control/client-actions.json")
}

fn write_store(env: &TestEnv, doc: &Value) {
    let path = store_path(env);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(doc).unwrap() + "\n").unwrap();
}

fn read_store(env: &TestEnv) -> Value {
    serde_json::from_str(&std::fs::read_to_string(store_path(env)).unwrap()).unwrap()
}

fn sample_markers() -> Value {
    json!({
        "backfill": {
            "@hypaware/claude": {"status": "done", "request_key": "@hypaware/claude", "rows": 42,
                                 "at": "2026-06-25T00:00:00.000Z", "unknown_field": [1]},
            "@hypaware/codex": {"status": "failed", "request_key": "@hypaware/codex", "reason": "hyp backfill exited with code 1: boom",
                                "last_attempt": "2026-06-25T02:00:00.000Z", "attempts": 2,
                                "next_attempt": "2026-06-25T02:04:00.000Z"}
        },
        "future": {"x": {"status": "done"}}
    })
}

#[test]
fn nothing_applies_on_a_fresh_host() {
    let env = TestEnv::new();
    let run = env.hyp(["actions", "--json"]).assert_success();
    assert_eq!(run.stdout_json(), json!([]));
    env.hyp(["actions"])
        .assert_success()
        .assert_stderr_contains("no client actions");
    assert!(!env.state_root().exists(), "listing creates nothing");
}

#[test]
fn list_shows_markers_as_rows() {
    let env = TestEnv::new();
    // A done import holds while its cache is there and sound.
    env.hyp(["backfill", "claude", "--json"]).assert_success();
    write_store(&env, &sample_markers());
    let rows = env
        .hyp(["actions", "list", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(
        rows,
        json!([
            {"kind": "backfill", "request_key": "@hypaware/claude", "state": "done", "rows": 42, "at": "2026-06-25T00:00:00.000Z"},
            {"kind": "backfill", "request_key": "@hypaware/codex", "state": "failed",
             "reason": "hyp backfill exited with code 1: boom", "last_attempt": "2026-06-25T02:00:00.000Z",
             "attempts": 2, "next_attempt": "2026-06-25T02:04:00.000Z"},
            {"kind": "future", "request_key": "x", "state": "done"}
        ])
    );
    let text = env.hyp(["actions"]).assert_success().stdout();
    assert!(
        text.contains(
            "backfill @hypaware/claude  [done]  (42 rows, at 2026-06-25T00:00:00.000Z)\n"
        ),
        "{text}"
    );
    assert!(text.contains("backfill @hypaware/codex  [failed]  (hyp backfill exited with code 1: boom, last attempt 2026-06-25T02:00:00.000Z, 2 attempts, next attempt 2026-06-25T02:04:00.000Z)\n"), "{text}");
}

#[test]
fn an_explicit_backfill_block_on_a_local_host_is_n_a() {
    let env = TestEnv::new();
    env.write(
        "home/.hyp/hypaware-config.json",
        r#"{"version": 2, "plugins": [{"name": "@hypaware/claude", "config": {"backfill": {"window_days": 3}}}]}"#,
    );
    let rows = env
        .hyp(["actions", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(
        rows,
        json!([{"kind": "backfill", "request_key": "@hypaware/claude", "state": "n/a"}])
    );
}

#[test]
fn retry_clears_one_marker_and_keeps_everything_else() {
    let env = TestEnv::new();
    write_store(&env, &sample_markers());
    // The confirmation is for people: stderr (issue 14.6); stdout is empty.
    let run = env
        .hyp(["actions", "retry", "backfill", "@hypaware/codex"])
        .assert_success()
        .assert_stderr_contains("cleared backfill @hypaware/codex (was failed)\n")
        .assert_stderr_contains("no daemon is running: start it with 'hyp daemon start'");
    assert_eq!(run.stdout(), "");
    let mut expected = sample_markers();
    expected["backfill"]
        .as_object_mut()
        .unwrap()
        .remove("@hypaware/codex");
    assert_eq!(read_store(&env), expected);
    let text = std::fs::read_to_string(store_path(&env)).unwrap();
    assert!(text.contains("\"unknown_field\""));
}

#[test]
fn retry_json_reports_what_it_did() {
    let env = TestEnv::new();
    write_store(&env, &sample_markers());
    let report = env
        .hyp(["actions", "retry", "future", "x", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(
        report,
        json!({"kind": "future", "request_key": "x", "cleared": "done",
               "daemon": {"running": false, "pid": null, "signalled": false}})
    );
    assert!(
        read_store(&env).get("future").is_none(),
        "emptied bucket dropped"
    );
}

#[test]
fn retry_of_an_unknown_marker_is_an_error() {
    let env = TestEnv::new();
    env.hyp(["actions", "retry", "backfill", "@hypaware/claude"])
        .assert_exit(1)
        .assert_stderr_contains("hyp actions retry: no marker for backfill '@hypaware/claude'");
    assert!(!env.state_root().exists(), "nothing created");
    write_store(&env, &sample_markers());
    let before = std::fs::read(store_path(&env)).unwrap();
    env.hyp(["actions", "retry", "backfill", "@acme/nope"])
        .assert_exit(1)
        .assert_stderr_contains("no marker for backfill '@acme/nope'");
    assert_eq!(
        std::fs::read(store_path(&env)).unwrap(),
        before,
        "untouched"
    );
}

#[test]
fn a_stale_running_marker_can_be_cleared_when_no_daemon_runs() {
    let env = TestEnv::new();
    write_store(
        &env,
        &json!({"backfill": {"@hypaware/claude": {"status": "running", "request_key": "@hypaware/claude", "pid": 999999, "started_at": "2026-06-25T00:00:00.000Z", "attempts": 0}}}),
    );
    let rows = env
        .hyp(["actions", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(
        rows,
        json!([{"kind": "backfill", "request_key": "@hypaware/claude", "state": "running",
                "attempts": 0, "pid": 999999, "since": "2026-06-25T00:00:00.000Z"}])
    );
    env.hyp(["actions", "retry", "backfill", "@hypaware/claude"])
        .assert_success();
    assert_eq!(read_store(&env), json!({}));
}

#[test]
fn concurrent_retries_from_many_processes_lose_no_update() {
    let env = TestEnv::new();
    let keys: Vec<String> = (0..12)
        .map(|index| format!("@acme/plugin-{index}"))
        .collect();
    let mut bucket = serde_json::Map::new();
    for key in &keys {
        bucket.insert(
            key.clone(),
            json!({"status": "failed", "request_key": key, "attempts": 1}),
        );
    }
    write_store(
        &env,
        &json!({"backfill": bucket, "keep": {"me": {"status": "done"}}}),
    );
    let children: Vec<_> = keys
        .iter()
        .map(|key| {
            env.command(["actions", "retry", "backfill", key.as_str()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    // Every process read-modify-wrote the same file; without the lock some
    // removals would be lost.
    assert_eq!(
        read_store(&env),
        json!({"keep": {"me": {"status": "done"}}})
    );
}
