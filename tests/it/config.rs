//! `hyp config validate|show|path` driven through the real binary: exit
//! codes, messages, JSON shapes, and the layer resolution they report.

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use serde_json::json;

use crate::support::TestEnv;

const SEED: &str = r#"{"version": 2,
  "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/ai-gateway", "config": {"listen": "central"}}],
  "sinks": {"central": {"plugin": "@hypaware/central",
            "config": {"url": "https://central.example", "identity": {"bootstrap_token": "policy-token-1"}}}},
  "query": {"cache": {"dir": "/operator/path"}}}"#;

fn local_path(env: &TestEnv) -> PathBuf {
    env.hyp_home().join("hypaware-config.json")
}

fn write_local(env: &TestEnv, text: &str) -> PathBuf {
    env.write(local_path(env), text)
}

fn control_dir(env: &TestEnv) -> PathBuf {
    env.state_root().join("config-control")
}

fn write_seed(env: &TestEnv) -> PathBuf {
    env.write(control_dir(env).join("seed.json"), SEED)
}

#[test]
fn bare_config_prints_help() {
    let env = TestEnv::new();
    env.hyp(["config"])
        .assert_success()
        .assert_stdout_contains("validate")
        .assert_stdout_contains("show")
        .assert_stdout_contains("path");
}

#[test]
fn validate_a_valid_local_file() {
    let env = TestEnv::new();
    let path = write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/claude", "config": {"backfill": {"window_days": 30.0}}}]}"#,
    );
    let run = env.hyp(["config", "validate"]).assert_success();
    assert_eq!(
        run.stdout(),
        format!("config ok: {} (plugins=1, sinks=0)\n", path.display())
    );
}

#[test]
fn validate_reports_every_error_with_kind_pointer_and_a_hint() {
    let env = TestEnv::new();
    let path = write_local(
        &env,
        r#"{"version": 2,
            "plugins": [{"name": "@hypaware/claude"}, {"name": "@hypaware/claude"}],
            "sinks": {"s": {"writer": "@hypaware/central", "destination": "@hypaware/local-fs",
                            "config": {"schedule": "@hourly"}}}}"#,
    );
    let run = env
        .hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains(&format!(
            "hyp config validate: 3 error(s) in {}",
            path.display()
        ))
        .assert_stderr_contains("  [duplicate_plugin] /plugins/1: plugin '@hypaware/claude' is listed twice (also at /plugins/0)")
        .assert_stderr_contains("  [sink_writer_invalid] /sinks/s/writer: ")
        .assert_stderr_contains("  [sink_schedule_invalid] /sinks/s/config/schedule: ")
        .assert_stderr_contains("  hint: list each plugin once in plugins[]")
        .assert_stderr_contains("  hint: use a 5-field cron expression");
    assert!(run.stdout().is_empty(), "nothing on stdout when invalid");
}

#[test]
fn validate_checks_the_plugin_sections() {
    let env = TestEnv::new();
    write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/codex", "config": {"backfill": {"on_join": "false", "window": 3}}}]}"#,
    );
    env.hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains("[config_section_invalid] /plugins/0/config/backfill/on_join: backfill.on_join must be a boolean")
        .assert_stderr_contains("[config_section_invalid] /plugins/0/config/backfill/window: unknown backfill key 'window'")
        .assert_stderr_contains("hint: backfill takes on_join");
}

#[test]
fn validate_checks_the_capture_section() {
    let env = TestEnv::new();
    write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/claude", "config": {"backfill": {"on_join": true}, "capture": {"enabled": false, "interval_seconds": 300.0}}}]}"#,
    );
    env.hyp(["config", "validate"]).assert_success();
    write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/claude"}, {"name": "@hypaware/codex", "config": {"capture": {"enabled": "yes", "interval_seconds": 10, "every": 1}}}]}"#,
    );
    env.hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains("[config_section_invalid] /plugins/1/config/capture/enabled: capture.enabled must be a boolean")
        .assert_stderr_contains("[config_section_invalid] /plugins/1/config/capture/interval_seconds: capture.interval_seconds must be an integer between 30 and 86400")
        .assert_stderr_contains("[config_section_invalid] /plugins/1/config/capture/every: unknown capture key 'every'")
        .assert_stderr_contains("capture takes enabled (true|false) and interval_seconds (an integer from 30 to 86400)");
    let run = env.hyp(["config", "validate", "--json"]).assert_exit(1);
    let errors = &run.stdout_json()["local"]["errors"];
    assert_eq!(errors.as_array().map(Vec::len), Some(3), "{errors}");
    assert_eq!(
        errors[1],
        json!({"kind": "config_section_invalid", "pointer": "/plugins/1/config/capture/interval_seconds",
               "message": "capture.interval_seconds must be an integer between 30 and 86400"})
    );
}

#[test]
fn unknown_plugins_and_their_sinks_are_inert_not_errors() {
    let env = TestEnv::new();
    write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@acme/recorder"}, {"name": "@hypaware/otel"}],
            "sinks": {"archive": {"writer": "@acme/writer", "destination": "@acme/store", "config": {"schedule": "0 3 * * *"}}}}"#,
    );
    env.hyp(["config", "validate"])
        .assert_success()
        .assert_stdout_contains("(plugins=2, sinks=1)")
        .assert_stderr_contains(
            "note: inert on this host (accepted, not run by hyp): @acme/recorder, @hypaware/otel",
        );
}

#[test]
fn validate_load_failures_exit_one_with_the_load_message() {
    let env = TestEnv::new();
    let path = local_path(&env);
    env.hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains(&format!(
            "hyp config validate: config not found at {}",
            path.display()
        ))
        .assert_stderr_contains("hint: create the file");

    write_local(&env, "{\"version\": 2,\n");
    env.hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains(&format!("config {} is not valid JSON: ", path.display()))
        .assert_stderr_contains("line 2");

    write_local(&env, r#"{"version": 3, "mode": "gateway"}"#);
    env.hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains("2 error(s)")
        .assert_stderr_contains("[config_invalid_shape] /version: version must be exactly 2")
        .assert_stderr_contains("[config_invalid_shape] /mode: unrecognized top-level key 'mode'");
}

#[test]
fn validate_path_flag_and_hyp_config_choose_the_file() {
    let mut env = TestEnv::new();
    let other = env.write("elsewhere/hyp.json", r#"{"version": 2}"#);
    env.hyp(["config", "validate", "--path", &other.display().to_string()])
        .assert_success()
        .assert_stdout_contains(&format!(
            "config ok: {} (plugins=0, sinks=0)",
            other.display()
        ));

    let relative = env
        .command(["config", "validate", "--path", "hyp.json"])
        .current_dir(env.root().join("elsewhere"))
        .output()
        .unwrap();
    assert_eq!(relative.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&relative.stdout).contains(&other.display().to_string()));

    env.hyp(["config", "validate", "--path", "/nonexistent/hyp.json"])
        .assert_exit(1)
        .assert_stderr_contains("config not found at /nonexistent/hyp.json")
        .assert_stderr_contains("hint: check the file given to --path");
    env.hyp(["config", "validate", "--path"])
        .assert_exit(2)
        .assert_stderr_contains("hyp config validate: --path")
        .assert_stderr_contains("expects a value");

    env.set_var("HYP_CONFIG", other.display().to_string());
    env.hyp(["config", "validate"])
        .assert_success()
        .assert_stdout_contains(&other.display().to_string());
}

#[test]
fn validate_on_a_joined_host_checks_central_and_lists_drops() {
    let env = TestEnv::new();
    let seed = write_seed(&env);
    write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/ai-gateway", "config": {"listen": "local"}},
            {"name": "@hypaware/claude"}], "query": {"cache": {"dir": "/home/u/.hyp"}}}"#,
    );
    let run = env
        .hyp(["config", "validate"])
        .assert_success()
        .assert_stdout_contains(&format!(
            "central ok: {} (join seed; plugins=2, sinks=1)",
            seed.display()
        ))
        .assert_stdout_contains("effective: plugins=3, sinks=1")
        .assert_stderr_contains(
            "warning: local entry not applied: plugins.@hypaware/ai-gateway (collides with central)",
        )
        .assert_stderr_contains("query block is ignored");
    assert!(run.stdout().starts_with("config ok: "));

    let report = env
        .hyp(["config", "validate", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(report["valid"], true);
    assert_eq!(report["central"]["source"], "seed");
    assert_eq!(report["central"]["status"], "ok");
    assert_eq!(
        report["effective"]["local_not_applied"],
        json!([{"section": "plugins", "key": "@hypaware/ai-gateway", "reason": "collides_with_central"}])
    );
    assert_eq!(report["effective"]["central_query_ignored"], true);
    assert_eq!(report["inert_plugins"], json!(["@hypaware/ai-gateway"]));
}

#[test]
fn a_joined_host_needs_no_local_layer() {
    let env = TestEnv::new();
    write_seed(&env);
    env.hyp(["config", "validate"])
        .assert_success()
        .assert_stdout_contains("local config: none at ")
        .assert_stdout_contains("central ok: ");
    let report = env
        .hyp(["config", "validate", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(report["local"]["status"], "missing");
    assert_eq!(report["local"]["errors"], json!([]));
}

#[test]
fn a_dangling_active_pointer_makes_the_central_layer_invalid() {
    let env = TestEnv::new();
    write_seed(&env);
    write_local(&env, r#"{"version": 2}"#);
    symlink("config.b.json", control_dir(&env).join("active")).unwrap();
    env.hyp(["config", "validate"])
        .assert_exit(1)
        .assert_stderr_contains("config not found at ")
        .assert_stderr_contains("config.b.json")
        .assert_stderr_contains("hint: the active pointer names a slot that is gone");
    let report = env
        .hyp(["config", "validate", "--json"])
        .assert_exit(1)
        .stdout_json();
    assert_eq!(report["central"]["source"], "slot_b");
    assert_eq!(report["central"]["errors"][0]["kind"], "config_missing");
    env.hyp(["config", "path"])
        .assert_success()
        .assert_stdout_contains("config.b.json  (active slot b, missing)");
}

#[test]
fn an_active_pointer_outside_the_control_dir_is_ignored() {
    let env = TestEnv::new();
    let seed = write_seed(&env);
    let outside = env.write("outside/config.a.json", r#"{"version": 2}"#);
    symlink(&outside, control_dir(&env).join("active")).unwrap();
    env.hyp(["config", "path"])
        .assert_success()
        .assert_stdout_contains(&format!("central: {}  (join seed, exists)", seed.display()));
}

#[test]
fn a_regular_file_named_active_is_no_pointer() {
    let env = TestEnv::new();
    write_seed(&env);
    env.write(control_dir(&env).join("config.a.json"), r#"{"version": 2}"#);
    env.write(control_dir(&env).join("active"), "config.a.json");
    let paths = env
        .hyp(["config", "path", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(paths["central"]["source"], "seed");
}

#[test]
fn an_applied_slot_is_the_central_layer() {
    let env = TestEnv::new();
    write_seed(&env);
    env.write(
        control_dir(&env).join("config.a.json"),
        r#"{"version": 2, "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/codex"}]}"#,
    );
    symlink("config.a.json", control_dir(&env).join("active")).unwrap();
    let shown = env
        .hyp(["config", "show", "--central", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(shown["source"], "slot_a");
    assert_eq!(shown["document"]["plugins"][1]["name"], "@hypaware/codex");
}

#[test]
fn show_prints_the_effective_document_with_secrets_redacted() {
    let env = TestEnv::new();
    write_seed(&env);
    write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/claude"}], "query": {"cache": {"dir": "/home/u/.hyp"}}}"#,
    );
    let run = env.hyp(["config", "show"]).assert_success();
    assert!(!run.stdout().contains("policy-token-1"), "the token leaked");
    let document: serde_json::Value = run.stdout_json();
    assert_eq!(
        document["sinks"]["central"]["config"]["identity"]["bootstrap_token"],
        "<redacted>"
    );
    let names: Vec<&str> = document["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "@hypaware/central",
            "@hypaware/ai-gateway",
            "@hypaware/claude"
        ]
    );
    assert_eq!(document["query"]["cache"]["dir"], "/home/u/.hyp");
    assert_eq!(
        run.stdout(),
        env.hyp(["config", "show", "--effective"]).stdout()
    );

    let wrapped = env
        .hyp(["config", "show", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(wrapped["layer"], "effective");
    assert_eq!(wrapped["central_query_ignored"], true);
    assert_eq!(wrapped["document"], document);
}

#[test]
fn show_single_layers_and_their_failures() {
    let env = TestEnv::new();
    env.hyp(["config", "show"])
        .assert_success()
        .assert_stdout_contains("\"version\": 2");
    env.hyp(["config", "show", "--local"])
        .assert_exit(1)
        .assert_stderr_contains("hyp config show: no local config at ");
    env.hyp(["config", "show", "--central"])
        .assert_exit(1)
        .assert_stderr_contains("this host has no central layer (not joined)");
    env.hyp(["config", "show", "--local", "--effective"])
        .assert_exit(2)
        .assert_stderr_contains("cannot be used with");

    write_local(&env, "not json");
    env.hyp(["config", "show", "--local"])
        .assert_exit(1)
        .assert_stderr_contains("is not valid JSON");
    env.hyp(["config", "show"])
        .assert_success()
        .assert_stderr_contains("warning: local layer ignored: ");

    let path = write_local(
        &env,
        r#"{"version": 2, "plugins": [{"name": "@hypaware/claude", "keep": "me"}]}"#,
    );
    let shown = env
        .hyp(["config", "show", "--local", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(shown["layer"], "local");
    assert_eq!(shown["path"], path.display().to_string());
    assert_eq!(shown["document"]["plugins"][0]["keep"], "me");
}

#[test]
fn path_names_each_layer_and_its_source() {
    let mut env = TestEnv::new();
    let run = env.hyp(["config", "path"]).assert_success();
    assert_eq!(
        run.stdout(),
        format!(
            "local:   {}  (default, missing)\ncentral: none (not joined)\n",
            local_path(&env).display()
        )
    );
    let moved = env.write("etc/hyp.json", r#"{"version": 2}"#);
    env.set_var("HYP_CONFIG", moved.display().to_string());
    let seed = write_seed(&env);
    let paths = env
        .hyp(["config", "path", "--json"])
        .assert_success()
        .stdout_json();
    assert_eq!(
        paths,
        json!({
            "local": {"path": moved.display().to_string(), "source": "HYP_CONFIG", "exists": true},
            "central": {"path": seed.display().to_string(), "source": "seed", "exists": true}
        })
    );
}
