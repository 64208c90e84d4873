//! The backfill handler against fake `hyp` programs (shell scripts that
//! record their argv and environment): reconciler.md section 9.B.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::actions::backoff::Backoff;
use crate::actions::child::Cancel;
use crate::actions::reconciler::{Clock, FailedUnits, Reconciler};
use crate::actions::store::MarkerStore;
use crate::paths::TimeScale;

const T0: &str = "2026-06-25T00:00:00.000Z";

fn config(plugins: Value) -> EffectiveConfig {
    EffectiveConfig::from_document(json!({"version": 2, "plugins": plugins}), true)
}

fn claude(config_block: Value) -> Value {
    json!([{"name": "@hypaware/claude", "config": config_block}])
}

fn keys_and_params(config: &EffectiveConfig) -> Vec<(String, Value)> {
    desired_actions(config)
        .into_iter()
        .map(|action| (action.request_key, Value::Object(action.params)))
        .collect()
}

/// A temporary home and a fake `hyp` that records each call as
/// `calls/<n>.args` and `calls/<n>.env`, then runs `body`.
struct Fixture {
    dir: tempfile::TempDir,
    paths: Paths,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path().join("resolved-home"));
        std::fs::create_dir_all(dir.path().join("calls")).unwrap();
        Fixture { dir, paths }
    }

    fn fake_hyp(&self, body: &str) -> PathBuf {
        let calls = self.dir.path().join("calls");
        let path = self.dir.path().join("fake-hyp");
        let script = format!(
            "#!/bin/sh\ncalls='{}'\nn=$(ls \"$calls\" | grep -c args)\nn=$((n+1))\n\
             printf '%s\\n' \"$@\" > \"$calls/$n.args\"\nenv > \"$calls/$n.env\"\n{body}\n",
            calls.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn handler(&self, exe: PathBuf) -> BackfillHandler {
        let base_env = vec![
            (
                OsString::from("PATH"),
                std::env::var_os("PATH").unwrap_or_default(),
            ),
            (
                OsString::from("HYP_HOME"),
                OsString::from("/some/other/process/home"),
            ),
            (OsString::from("KEEP_ME"), OsString::from("yes")),
        ];
        BackfillHandler::new(self.paths.clone(), exe, base_env, Duration::from_secs(10))
    }

    fn calls(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("calls"))
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".args")
            })
            .count()
    }

    fn args(&self, call: usize) -> Vec<String> {
        read_lines(&self.dir.path().join(format!("calls/{call}.args")))
    }

    fn env(&self, call: usize) -> Vec<String> {
        read_lines(&self.dir.path().join(format!("calls/{call}.env")))
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn perform(handler: &BackfillHandler, params: Value) -> Outcome {
    let action = DesiredAction {
        request_key: "@hypaware/claude".into(),
        params: params.as_object().unwrap().clone(),
    };
    let started = |_pid: u32| {};
    let context = PerformContext {
        now: T0.parse().unwrap(),
        cancel: &Cancel::never(),
        started: &started,
    };
    handler.perform(&action, &context).unwrap()
}

fn claude_params() -> Value {
    json!({"provider": "claude", "plugin": "@hypaware/claude"})
}

const PAYLOAD_1234: &str = r#"echo '{"run_id":"bf-1","dry_run":false,"providers":[{"provider":"claude","plugin":"@hypaware/claude","status":"ok","rows_written":1234}]}'"#;

// 20
#[test]
fn the_handler_is_backfill_and_not_reversible() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp("exit 0"));
    assert_eq!(handler.kind(), "backfill");
    assert!(!handler.reversible());
}

// 21
#[test]
fn backfill_is_on_by_default() {
    let config = config(claude(json!({"proxy": "@hypaware/ai-gateway"})));
    assert_eq!(
        keys_and_params(&config),
        [(
            "@hypaware/claude".to_string(),
            json!({"provider": "claude", "plugin": "@hypaware/claude"})
        )]
    );
}

// 22, 23
#[test]
fn opt_out_and_malformed_on_join_give_nothing() {
    for on_join in [json!(false), json!("false"), json!(1), json!(null)] {
        let config = config(claude(json!({"backfill": {"on_join": on_join}})));
        assert!(keys_and_params(&config).is_empty(), "on_join {on_join}");
    }
}

// 24
#[test]
fn window_days_is_carried() {
    let config = config(claude(json!({"backfill": {"window_days": 30}})));
    assert_eq!(keys_and_params(&config)[0].1["window_days"], 30);
}

// 25
#[test]
fn a_disabled_or_absent_plugin_gives_nothing() {
    let disabled = config(json!([{"name": "@hypaware/claude", "enabled": false}]));
    assert!(keys_and_params(&disabled).is_empty());
    let absent = config(json!([{"name": "@hypaware/central"}, {"name": "@acme/other"}]));
    assert!(keys_and_params(&absent).is_empty());
}

#[test]
fn order_is_the_provider_registry_and_the_last_duplicate_entry_wins() {
    let config = config(json!([
        {"name": "@hypaware/codex"},
        {"name": "@hypaware/claude", "config": {"backfill": {"window_days": 3}}},
        {"name": "@hypaware/claude", "enabled": false, "config": {"backfill": {"window_days": 9}}}
    ]));
    let desired = keys_and_params(&config);
    assert_eq!(desired[0].0, "@hypaware/claude");
    assert_eq!(desired[0].1["window_days"], 9);
    assert_eq!(desired[1].0, "@hypaware/codex");
}

// 26
#[test]
fn since_comes_from_the_window_and_rows_from_stdout() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp(PAYLOAD_1234));
    let mut params = claude_params();
    params["window_days"] = json!(30);
    assert_eq!(perform(&handler, params), Outcome::done(Some(1234)));
    assert_eq!(fixture.calls(), 1);
    assert_eq!(
        fixture.args(1),
        [
            "backfill",
            "claude",
            "--since",
            "2026-05-26T00:00:00.000Z",
            "--json"
        ]
    );
}

// 27
#[test]
fn the_child_gets_the_daemon_environment_with_its_home() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp("exit 0"));
    perform(&handler, claude_params());
    let env = fixture.env(1);
    let home = format!("HYP_HOME={}", fixture.paths.home().display());
    assert!(env.contains(&home), "{env:?}");
    assert!(env.contains(&"KEEP_ME=yes".to_string()));
    assert!(
        !env.iter()
            .any(|line| line.contains("/some/other/process/home"))
    );
}

// 28
#[test]
fn without_a_window_there_is_no_since() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp(r#"echo '{"providers":[{"rows_written":5}]}'"#));
    assert_eq!(perform(&handler, claude_params()), Outcome::done(Some(5)));
    assert_eq!(fixture.args(1), ["backfill", "claude", "--json"]);
}

// 29, 30, 88
#[test]
fn rows_are_summed_and_an_unparseable_payload_is_done_without_rows() {
    assert_eq!(
        rows_written(
            br#"{"providers":[{"rows_written":10},{"rows_written":7},{"rows_written":"x"},{}]}"#
        ),
        Some(17)
    );
    assert_eq!(rows_written(b"  {\"providers\":[]}\n"), Some(0));
    assert_eq!(rows_written(b"not json"), None);
    assert_eq!(rows_written(br#"{"providers":{}}"#), None);
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp("echo 'not json'"));
    let outcome = perform(&handler, claude_params());
    assert_eq!(outcome, Outcome::done(None));
}

// 31 plus the stderr tail
#[test]
fn a_non_zero_exit_fails_with_the_last_stderr_line() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp(
        "echo 'scanning' >&2; printf 'hyp backfill: cannot open cache \\033[2J\\342\\200\\256db\\n' >&2; exit 1",
    ));
    let outcome = perform(&handler, claude_params());
    assert_eq!(
        outcome,
        Outcome::failed("hyp backfill exited with code 1: hyp backfill: cannot open cache [2Jdb")
    );
    let log = fixture.paths.action_log("backfill", "claude");
    assert!(log.ends_with("logs/actions/backfill-claude.log"));
    assert!(std::fs::read_to_string(log).unwrap().contains("scanning"));
}

#[test]
fn a_long_stderr_line_is_clamped_to_200_characters() {
    let fixture = Fixture::new();
    let handler = fixture
        .handler(fixture.fake_hyp("head -c 5000 /dev/zero | tr '\\0' 'e' >&2; echo >&2; exit 2"));
    let reason = perform(&handler, claude_params()).reason.unwrap();
    let tail = reason
        .strip_prefix("hyp backfill exited with code 2: ")
        .unwrap();
    assert_eq!(tail.chars().count(), 200);
}

// 32
#[test]
fn a_spawn_error_fails_with_its_message() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.dir.path().join("missing-hyp"));
    let reason = perform(&handler, claude_params()).reason.unwrap();
    assert!(
        reason.starts_with("hyp backfill spawn failed: "),
        "{reason}"
    );
    assert!(reason.contains("No such file"), "{reason}");
}

// 33
#[test]
fn a_missing_provider_fails_without_spawning() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp("exit 0"));
    assert_eq!(
        perform(&handler, json!({})),
        Outcome::failed("backfill action missing provider name")
    );
    assert_eq!(fixture.calls(), 0);
}

// 87
#[test]
fn a_signal_killed_child_fails_naming_the_signal() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp("kill -9 $$"));
    let reason = perform(&handler, claude_params()).reason.unwrap();
    assert!(
        reason.starts_with("hyp backfill killed by signal 9 (SIGKILL)"),
        "{reason}"
    );
}

// 34
#[test]
fn through_the_reconciler_fail_then_done_then_skip() {
    let fixture = Fixture::new();
    let exe = fixture.fake_hyp(
        "if [ \"$n\" = 1 ]; then exit 1; fi\necho '{\"providers\":[{\"rows_written\":42}]}'",
    );
    let now: Arc<Mutex<Timestamp>> = Arc::new(Mutex::new(T0.parse().unwrap()));
    let clock_now = Arc::clone(&now);
    let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
    let reconciler = Reconciler::new(
        vec![Box::new(fixture.handler(exe))],
        MarkerStore::new(&fixture.paths),
        clock,
        Backoff::new("host", TimeScale::REAL),
    );
    let config = config(claude(json!({"backfill": {"window_days": 7}})));
    let pass = || {
        reconciler
            .pass(&config, FailedUnits::RetryNow, &Cancel::never())
            .unwrap()
    };
    let store = MarkerStore::new(&fixture.paths);
    // The cache the (fake) backfill fills: a done import holds while it does.
    crate::cache::writer::CacheWriter::open(&fixture.paths.cache_db())
        .unwrap()
        .finish()
        .unwrap();

    let first = pass();
    assert_eq!(first.results[0].outcome.name(), "failed");
    let marker = store.read().unwrap().as_value()["backfill"]["@hypaware/claude"].clone();
    assert_eq!(marker["attempts"], 1);
    assert_eq!(marker["reason"], "hyp backfill exited with code 1");
    assert!(
        fixture
            .args(1)
            .contains(&"2026-06-18T00:00:00.000Z".to_string()),
        "{:?}",
        fixture.args(1)
    );
    let home = format!("HYP_HOME={}", fixture.paths.home().display());
    assert!(fixture.env(1).contains(&home));

    let second = pass();
    assert_eq!(second.results[0].outcome.name(), "done");
    assert_eq!(second.results[0].rows, Some(42));
    let third = pass();
    assert_eq!(third.results[0].outcome.name(), "skipped");
    assert_eq!(fixture.calls(), 2);
    let generation = crate::cache::read_generation(&fixture.paths.cache_db()).unwrap();
    assert_eq!(
        store.read().unwrap().as_value()["backfill"]["@hypaware/claude"],
        json!({"status": "done", "request_key": "@hypaware/claude", "at": T0, "rows": 42,
               "cache_generation": generation})
    );
}

#[test]
fn a_done_marker_names_the_cache_generation_and_holds_only_while_it_does() {
    let fixture = Fixture::new();
    let handler = fixture.handler(fixture.fake_hyp(PAYLOAD_1234));
    let db = fixture.paths.cache_db();
    let generation = crate::cache::generation_path(&db);
    let action = DesiredAction {
        request_key: "@hypaware/claude".into(),
        params: claude_params().as_object().unwrap().clone(),
    };
    let config = config(claude(json!({})));
    let context = DesiredContext {
        config: &config,
        now: T0.parse().unwrap(),
    };
    let current = |marker: Value| {
        let marker = marker.as_object().unwrap().clone();
        handler.is_current(&marker, &action, &context).unwrap()
    };

    // No cache yet: the done outcome names no generation.
    assert_eq!(
        perform(&handler, claude_params()),
        Outcome::done(Some(1234))
    );

    crate::cache::writer::CacheWriter::open(&db)
        .unwrap()
        .finish()
        .unwrap();
    std::fs::write(&generation, "g1\n").unwrap();
    let done = perform(&handler, claude_params());
    assert_eq!(done.detail.get(CACHE_GENERATION), Some(&json!("g1")));

    assert!(current(json!({"status": "done", "cache_generation": "g1"})));
    assert!(
        current(json!({"status": "done"})),
        "a marker from before generations"
    );
    std::fs::write(&generation, "g2\n").unwrap();
    assert!(
        !current(json!({"status": "done", "cache_generation": "g1"})),
        "a new cache"
    );
    std::fs::remove_file(&generation).unwrap();
    assert!(
        current(json!({"status": "done", "cache_generation": "g1"})),
        "unreadable: keep"
    );
    std::fs::write(&generation, "g1\n").unwrap();
    std::fs::write(&db, b"").unwrap();
    assert!(
        !current(json!({"status": "done", "cache_generation": "g1"})),
        "an emptied cache"
    );
    std::fs::remove_file(&db).unwrap();
    assert!(
        !current(json!({"status": "done", "cache_generation": "g1"})),
        "no cache at all, though its generation file stayed"
    );
    assert!(
        !current(json!({"status": "done"})),
        "no cache: not even a marker from before generations holds"
    );
}
