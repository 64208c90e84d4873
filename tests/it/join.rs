//! `hyp join` and `hyp leave` through the real binary: files written and
//! removed, argument rules and their messages.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::TestEnv;

fn control_dir(env: &TestEnv) -> PathBuf {
    env.state_root().join("config-control")
}

fn seed(env: &TestEnv) -> Value {
    let text = fs::read_to_string(control_dir(env).join("seed.json")).expect("seed.json");
    serde_json::from_str(&text).expect("seed.json is JSON")
}

fn seed_token(env: &TestEnv) -> Value {
    seed(env)["sinks"]["central"]["config"]["identity"]["bootstrap_token"].clone()
}

/// Run `hyp <args>` with `input` piped to stdin.
fn hyp_with_stdin(env: &TestEnv, args: &[&str], input: &str) -> std::process::Output {
    let mut child = env
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hyp");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for hyp")
}

/// An applied slot `b` with its etag and the `active` pointer.
fn applied_slot(env: &TestEnv) {
    let dir = control_dir(env);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("config.b.json"),
        r#"{"version":2,"sinks":{"central":{"plugin":"@hypaware/central","config":{"url":"http://127.0.0.1:9","identity":{}}}}}"#,
    )
    .unwrap();
    fs::write(dir.join("config.b.etag"), "rev-1\n").unwrap();
    fs::write(dir.join("state.json"), "{}\n").unwrap();
    std::os::unix::fs::symlink("config.b.json", dir.join("active")).unwrap();
}

#[test]
fn join_writes_exactly_the_seed_and_nothing_else() {
    let env = TestEnv::new();
    let run = env
        .hyp([
            "join",
            "https://central.example",
            "policy-token-1",
            "--no-daemon",
        ])
        .assert_success();
    let seed_path = control_dir(&env).join("seed.json");
    // Confirmations are for people: stderr (issue 14.6).
    assert!(
        run.stderr()
            .contains(&format!("✓ Wrote seed config {}", seed_path.display()))
    );
    assert!(run.stderr().contains("--no-daemon"));
    assert_eq!(
        seed(&env),
        json!({"version": 2, "plugins": [{"name": "@hypaware/central"}],
            "sinks": {"central": {"plugin": "@hypaware/central",
                "config": {"url": "https://central.example", "identity": {"bootstrap_token": "policy-token-1"}}}}})
    );
    let text = fs::read_to_string(&seed_path).unwrap();
    assert!(
        text.starts_with("{\n  \"version\": 2,\n  \"plugins\""),
        "pretty, in order"
    );
    assert!(text.ends_with("}\n"));
    let mode = fs::metadata(&seed_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!env.hyp_home().join("hypaware-config.json").exists());
    assert!(
        !env.state_root().join("plugins").exists(),
        "no identity yet"
    );
}

#[test]
fn join_without_a_daemon_says_how_to_start_one() {
    let env = TestEnv::new();
    env.hyp(["join", "http://127.0.0.1:9", "tok"])
        .assert_success()
        .assert_stderr_contains("no daemon is running")
        .assert_stderr_contains("hyp daemon run")
        .assert_stderr_contains("hyp daemon install");
    assert!(
        !env.state_root().join("run").exists(),
        "join starts nothing"
    );
}

#[test]
fn plain_http_to_another_machine_is_joined_with_a_warning() {
    let env = TestEnv::new();
    let remote = env
        .hyp(["join", "http://central.example", "tok"])
        .assert_success()
        .assert_stderr_contains("warning: http://central.example is plain http");
    assert!(remote.stderr().contains("use https"));
    let local = TestEnv::new();
    let run = local
        .hyp(["join", "http://127.0.0.1:9", "tok"])
        .assert_success();
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
}

#[test]
fn join_leaves_the_local_layer_alone() {
    let env = TestEnv::new();
    let local = r#"{"version":2,"plugins":[{"name":"@hypaware/claude"}]}"#;
    let path = env.write("home/.hyp/hypaware-config.json", local);
    env.hyp(["join", "http://127.0.0.1:9", "tok", "--no-daemon"])
        .assert_success();
    assert_eq!(fs::read_to_string(&path).unwrap(), local);
    assert!(!fs::symlink_metadata(&path).unwrap().is_symlink());
}

#[test]
fn join_supersedes_a_stale_applied_slot() {
    let env = TestEnv::new();
    applied_slot(&env);
    fs::write(control_dir(&env).join("client-actions.json"), "{}\n").unwrap();
    env.hyp(["join", "http://127.0.0.1:9", "fresh-token", "--no-daemon"])
        .assert_success()
        .assert_stderr_contains("superseded a stale applied config");
    let dir = control_dir(&env);
    for gone in [
        "active",
        "config.b.json",
        "config.b.etag",
        "config.a.etag",
        "state.json",
    ] {
        assert!(
            fs::symlink_metadata(dir.join(gone)).is_err(),
            "{gone} must be gone"
        );
    }
    assert_eq!(seed_token(&env), "fresh-token");
    assert!(dir.join("client-actions.json").exists(), "markers are kept");
}

#[test]
fn the_token_comes_from_a_file_or_stdin() {
    let env = TestEnv::new();
    let file = env.write("token.txt", "  file-token\n");
    env.hyp([
        "join",
        "http://127.0.0.1:9",
        "--token-file",
        file.to_str().unwrap(),
        "--no-daemon",
    ])
    .assert_success();
    assert_eq!(seed_token(&env), "file-token");

    let output = hyp_with_stdin(
        &env,
        &["join", "http://127.0.0.1:9", "--no-daemon"],
        "stdin-token\n",
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(seed_token(&env), "stdin-token");

    let output = hyp_with_stdin(
        &env,
        &["join", "http://127.0.0.1:9", "-", "--no-daemon"],
        "dash-token\n",
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(seed_token(&env), "dash-token");

    // A positional token is taken verbatim.
    env.hyp(["join", "http://127.0.0.1:9", " spaced ", "--no-daemon"])
        .assert_success();
    assert_eq!(seed_token(&env), " spaced ");
}

#[test]
fn bad_arguments_are_usage_errors_with_the_reference_messages() {
    let env = TestEnv::new();
    let cases: &[(&[&str], &str)] = &[
        (&["join"], "hyp join: missing <url> (see hyp join --help)"),
        (
            &["join", "ftp://x", "tok"],
            "hyp join: url must be http(s); got ftp:",
        ),
        (&["join", "nope", "tok"], "hyp join: not a valid URL: nope"),
        (
            &["join", "http://", "tok"],
            "hyp join: not a valid URL: http://",
        ),
        (
            &["join", "http://127.0.0.1:9", "tok", "--token-file", "/x"],
            "hyp join: pass the token either as an argument or via --token-file, not both",
        ),
        (
            &["join", "http://127.0.0.1:9", ""],
            "hyp join: token is empty",
        ),
        (
            &["join", "http://127.0.0.1:9", "tok", "--bogus"],
            "hyp join: unknown flag --bogus",
        ),
    ];
    for (args, message) in cases {
        let run = env
            .hyp(*args)
            .assert_exit(2)
            .assert_stderr_contains(message);
        assert!(run.stdout().is_empty(), "{args:?}");
    }
    // Null stdin holds no token: empty after trim.
    env.hyp(["join", "http://127.0.0.1:9"])
        .assert_exit(2)
        .assert_stderr_contains("token is empty");
    let whitespace = env.write("blank.txt", " \n");
    env.hyp([
        "join",
        "http://127.0.0.1:9",
        "--token-file",
        whitespace.to_str().unwrap(),
    ])
    .assert_exit(2)
    .assert_stderr_contains("token is empty");
    env.hyp([
        "join",
        "http://127.0.0.1:9",
        "--token-file",
        "/no/such/file",
    ])
    .assert_exit(1)
    .assert_stderr_contains("hyp join: --token-file:");
    assert!(!control_dir(&env).join("seed.json").exists());
}

#[test]
fn leave_when_not_joined_is_a_no_op() {
    let env = TestEnv::new();
    env.hyp(["leave"])
        .assert_success()
        .assert_stderr_contains("not connected to a central server - nothing to do");
}

#[test]
fn leave_after_join_removes_the_central_layer_and_identity() {
    let env = TestEnv::new();
    env.hyp(["join", "http://127.0.0.1:9", "tok", "--no-daemon"])
        .assert_success();
    env.write(
        "home/.hyp/hypaware/plugins/@hypaware/central/identity.json",
        r#"{"jwt":"a.b.c","expires_at":1,"gateway_id":"gw-1"}"#,
    );
    env.write("home/.hyp/hypaware/cache/cache.db", "db");
    env.write(
        "home/.hyp/hypaware/config-control/client-actions.json",
        "{}\n",
    );
    let run = env
        .hyp(["leave"])
        .assert_success()
        .assert_stderr_contains("leaving http://127.0.0.1:9")
        .assert_stderr_contains("✓ removed the central config layer")
        .assert_stderr_contains("✓ removed the forward identity")
        .assert_stderr_contains("✓ left http://127.0.0.1:9");
    assert!(run.stderr().contains("no daemon is running"));
    assert!(!control_dir(&env).join("seed.json").exists());
    assert!(
        !env.state_root()
            .join("plugins/@hypaware/central/identity.json")
            .exists()
    );
    assert!(env.state_root().join("cache/cache.db").exists());
    assert!(control_dir(&env).join("client-actions.json").exists());
    env.hyp(["leave"])
        .assert_success()
        .assert_stderr_contains("nothing to do");
}

#[test]
fn leave_removes_an_applied_slot_and_keeps_the_local_layer() {
    let env = TestEnv::new();
    applied_slot(&env);
    let local = r#"{"version":2,"plugins":[{"name":"@hypaware/claude"}]}"#;
    let path = env.write("home/.hyp/hypaware-config.json", local);
    env.hyp(["leave"])
        .assert_success()
        .assert_stderr_contains("leaving http://127.0.0.1:9");
    let dir = control_dir(&env);
    for gone in ["active", "config.b.json", "config.b.etag", "state.json"] {
        assert!(
            fs::symlink_metadata(dir.join(gone)).is_err(),
            "{gone} must be gone"
        );
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), local);
}

#[test]
fn leave_notes_a_central_sink_in_the_local_layer() {
    let env = TestEnv::new();
    env.write(
        "home/.hyp/hypaware-config.json",
        r#"{"version":2,"sinks":{"c":{"plugin":"@hypaware/central","config":{"url":"http://x","identity":{}}}}}"#,
    );
    env.hyp(["leave"])
        .assert_success()
        .assert_stderr_contains("nothing to do")
        .assert_stderr_contains("defines a central sink");
}
