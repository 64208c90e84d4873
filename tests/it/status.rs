//! `hyp status`: read-only, exit 0 whatever the health, every key present,
//! hostile files cleaned in text and raw in JSON.

use std::fs;

use serde_json::json;

use crate::support::{TestEnv, list_tree};

const TOP_LEVEL_KEYS: [&str; 12] = [
    "schema_version",
    "overall",
    "config",
    "active_plugins",
    "daemon",
    "sinks",
    "cache",
    "config_layers",
    "remote_config",
    "client_actions",
    "capture",
    "diagnostics",
];

fn write_json(env: &TestEnv, relative: &str, value: &serde_json::Value) {
    let path = env.hyp_home().join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn write_raw(env: &TestEnv, relative: &str, bytes: &[u8]) {
    let path = env.hyp_home().join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_fresh_home_is_reported_and_nothing_is_created() {
    let env = TestEnv::new();
    let before = list_tree(env.root());
    let run = env.hyp(["status", "--json"]).assert_success();
    let report = run.stdout_json();
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, TOP_LEVEL_KEYS);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["overall"], "degraded");
    assert_eq!(report["client_actions"], serde_json::Value::Null);
    assert_eq!(report["capture"], serde_json::Value::Null);
    assert_eq!(report["diagnostics"][0]["kind"], "config_missing");
    env.hyp(["status"])
        .assert_success()
        .assert_stdout_contains("overall:  degraded")
        .assert_stdout_contains("(missing)");
    assert_eq!(list_tree(env.root()), before, "status must create nothing");
}

#[test]
fn a_valid_local_config_is_healthy_and_inert_plugins_are_named() {
    let env = TestEnv::new();
    write_json(
        &env,
        "hypaware-config.json",
        &json!({"version": 2, "plugins": [{"name": "@hypaware/claude"}, {"name": "@acme/widget"}]}),
    );
    let report = env.hyp(["status", "--json"]).assert_success().stdout_json();
    assert_eq!(report["overall"], "healthy");
    assert_eq!(report["config"]["valid"], true);
    assert_eq!(
        report["active_plugins"][0],
        json!({"name": "@hypaware/claude", "state": "active"})
    );
    assert_eq!(report["active_plugins"][1]["state"], "inert");
    assert_eq!(report["config_layers"], serde_json::Value::Null);
    let text = env.hyp(["status"]).assert_success().stdout();
    assert!(
        text.contains("@acme/widget  (inert: not available on this host)"),
        "{text}"
    );
    assert!(
        !text.contains("central"),
        "a never-joined host mentions no central: {text}"
    );
}

#[test]
fn corrupt_state_files_become_fields_and_diagnostics() {
    let env = TestEnv::new();
    write_raw(&env, "hypaware-config.json", b"{\"version\": 2, \"plug");
    write_raw(&env, "hypaware/run/hypaware.pid", b"not json");
    write_raw(&env, "hypaware/run/status.json", b"\x00\xff garbage");
    write_raw(&env, "hypaware/config-control/state.json", b"[1, 2");
    write_raw(
        &env,
        "hypaware/config-control/client-actions.json",
        b"{\"backfill\": {",
    );
    let run = env.hyp(["status", "--json"]).assert_success();
    let report = run.stdout_json();
    let kinds: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|diagnostic| diagnostic["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"config_unreadable"), "{kinds:?}");
    assert!(kinds.contains(&"daemon_status_unreadable"), "{kinds:?}");
    assert!(
        kinds.contains(&"remote_config_state_unreadable"),
        "{kinds:?}"
    );
    assert_eq!(report["overall"], "degraded");
    assert!(
        report["daemon"]["error"]
            .as_str()
            .unwrap()
            .contains("hypaware.pid")
    );
    env.hyp(["status"]).assert_success();
    assert!(!run.stderr().contains("panicked"));
}

#[test]
fn a_dead_daemon_reads_dead_and_keeps_the_raw_state() {
    let env = TestEnv::new();
    write_json(
        &env,
        "hypaware/run/status.json",
        &json!({"state": "healthy", "pid": 999_999_999u64, "run_id": "r1"}),
    );
    write_json(
        &env,
        "hypaware/run/hypaware.pid",
        &json!({"pid": 999_999_999u64, "run_id": "r1", "started_at": "2026-01-01T00:00:00.000Z", "mode": "foreground"}),
    );
    let report = env.hyp(["status", "--json"]).assert_success().stdout_json();
    assert_eq!(report["daemon"]["running"], false);
    assert_eq!(report["daemon"]["state"], "dead");
    assert_eq!(report["daemon"]["last_state"], "healthy");
    env.hyp(["status"])
        .assert_success()
        .assert_stdout_contains("state=dead, last_state=healthy");
}

#[test]
fn hostile_values_are_cleaned_in_text_and_raw_in_json() {
    let env = TestEnv::new();
    let hostile = "ok\u{1b}[31mRED\u{202e}evil\u{200b}\nline";
    write_json(&env, "hypaware/run/status.json", &json!({"state": hostile}));
    let long_reason = "x".repeat(1000);
    write_json(
        &env,
        "hypaware/config-control/state.json",
        &json!({
            "last_rollback": {"etag": hostile, "reason": "probation_expired", "at": "2026-01-01T00:00:00.000Z"},
            "bad_etag": {"etag": "rev-x", "reason": long_reason, "recorded_at": "2026-01-01T00:00:00.000Z"}
        }),
    );
    let json = env.hyp(["status", "--json"]).assert_success().stdout_json();
    assert_eq!(json["daemon"]["last_state"], hostile, "JSON is byte-exact");
    assert_eq!(json["remote_config"]["last_rollback"]["etag"], hostile);
    let text = env.hyp(["status"]).assert_success().stdout();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\u{200b}'));
    assert!(text.contains("last_state=ok[31mREDevilline"), "{text}");
    assert!(
        text.lines().all(|line| line.chars().count() < 200),
        "values are clamped: {text}"
    );
    // A rollback is a warning: it never degrades overall by itself.
    let kinds: Vec<&str> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|diagnostic| diagnostic["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"remote_config_rolled_back"));
}

#[test]
fn probation_shows_the_time_left() {
    let env = TestEnv::new();
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
    write_json(
        &env,
        "hypaware/config-control/state.json",
        &json!({"probation": {"etag": "rev-2", "applied_at": "2026-01-01T00:00:00.000Z",
                "until": hyp::time::iso_ms(until), "slot": "a", "previous_slot": "b"}}),
    );
    let json = env.hyp(["status", "--json"]).assert_success().stdout_json();
    let probation = &json["remote_config"]["probation"];
    assert_eq!(probation["etag"], "rev-2");
    let left = probation["remaining_seconds"].as_i64().unwrap();
    assert!((1..=600).contains(&left), "{left}");
    assert!(probation.get("slot").is_none(), "slots are internal");
    env.hyp(["status"])
        .assert_success()
        .assert_stdout_contains("probation:     rev-2 until");
}
