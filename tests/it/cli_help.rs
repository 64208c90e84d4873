//! A CLI that helps (issue 14, point 6): `hyp help`, did-you-mean for
//! commands, flags and plugin names, no colour off a terminal, sizes in
//! human units.

use crate::support::TestEnv;

#[test]
fn help_and_help_about_help_exit_zero() {
    let env = TestEnv::new();
    for (args, needle) in [
        (&["help", "status"][..], "Usage: hyp status"),
        (&["help", "daemon", "logs"], "Usage: hyp daemon logs"),
        (&["help", "--help"], "Usage: hyp help"),
        (&["help", "-h"], "Usage: hyp help"),
        (&["help", "daemon", "--help"], "Usage: hyp help"),
        (&["help"], "Usage: hyp"),
    ] {
        let run = env
            .hyp(args)
            .assert_success()
            .assert_stdout_contains(needle);
        assert_eq!(run.stderr(), "", "{args:?}");
    }
}

#[test]
fn mistyped_commands_and_flags_get_a_suggestion() {
    let env = TestEnv::new();
    let cases: [(&[&str], &str); 6] = [
        (
            &["stauts"],
            "hyp: unknown command 'stauts' (did you mean 'status'?)",
        ),
        (
            &["help", "stauts"],
            "hyp: unknown command 'stauts' (did you mean 'status'?)",
        ),
        (&["help", "nope"], "hyp: unknown command 'nope'\n"),
        (
            &["daemon", "stats"],
            "hyp daemon: unknown subcommand 'stats' (did you mean 'start' or 'status'?)",
        ),
        (
            &["config", "valdate"],
            "hyp config: unknown subcommand 'valdate' (did you mean 'validate'?)",
        ),
        (
            &["status", "--jsn"],
            "hyp status: unknown flag --jsn (did you mean '--json'?)",
        ),
    ];
    for (args, message) in cases {
        let run = env.hyp(args).assert_exit(2).assert_stderr_contains(message);
        assert_eq!(run.stdout(), "", "{args:?}");
    }
}

#[test]
fn a_plugin_name_close_to_a_known_one_is_a_warning_and_stays_inert() {
    let env = TestEnv::new();
    env.write(
        "home/.hyp/hypaware-config.json",
        r#"{"version":2,"plugins":[{"name":"@hypaware/claud"},{"name":"@acme/other"}]}"#,
    );
    let run = env
        .hyp(["config", "validate"])
        .assert_success()
        .assert_stderr_contains(
            "warning: /plugins/0/name: plugin '@hypaware/claud' is not one hyp knows, so it stays inert (did you mean '@hypaware/claude'?)",
        )
        .assert_stderr_contains("inert on this host");
    assert!(
        !run.stderr().contains("@acme/other' is not"),
        "{}",
        run.stderr()
    );
    let run = env.hyp(["config", "validate", "--json"]).assert_success();
    let document = run.stdout_json();
    assert_eq!(document["valid"], true);
    assert_eq!(
        document["local"]["warnings"],
        serde_json::json!([{
            "kind": "plugin_name_unknown",
            "pointer": "/plugins/0/name",
            "name": "@hypaware/claud",
            "did_you_mean": "@hypaware/claude"
        }])
    );
}

/// The test harness sets `NO_COLOR`; without it, pipes alone keep colour
/// off (stdout and stderr are not terminals here).
#[test]
fn no_colour_off_a_terminal() {
    let mut env = TestEnv::new();
    env.remove_var("NO_COLOR");
    env.set_var("TERM", "xterm-256color");
    let run = env.hyp(["stauts"]).assert_exit(2);
    assert!(
        run.stderr().starts_with("hyp: unknown command"),
        "{:?}",
        run.stderr()
    );
    assert!(!run.stderr().contains('\x1b'), "{:?}", run.stderr());
}

/// `hyp backfill nope` on a real terminal (a pty made by util-linux
/// `script`), with `extra` in the environment: what it printed.
fn on_a_terminal(extra: &[(&str, &str)]) -> Option<String> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|path| path.is_file())?;
    let mut env = TestEnv::new();
    env.set_var("SHELL", "/bin/sh");
    env.remove_var("NO_COLOR");
    for (key, value) in extra {
        env.set_var(key, *value);
    }
    let command = format!("{} backfill nope", env!("CARGO_BIN_EXE_hyp"));
    let output = env
        .command_of(script, ["-qec", command.as_str(), "/dev/null"])
        .output()
        .expect("run script");
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn colour_on_a_terminal_unless_no_color_or_a_dumb_term() {
    let Some(coloured) = on_a_terminal(&[("TERM", "xterm")]) else {
        eprintln!("colour: skipped: no util-linux 'script' to make a terminal");
        return;
    };
    assert!(
        coloured.starts_with("\x1b[31mhyp backfill:\x1b[0m unknown provider"),
        "{coloured:?}"
    );
    for extra in [
        &[("TERM", "xterm"), ("NO_COLOR", "1")][..],
        &[("TERM", "dumb")][..],
    ] {
        let plain = on_a_terminal(extra).unwrap_or_default();
        assert!(
            plain.starts_with("hyp backfill: unknown provider") && !plain.contains('\x1b'),
            "{extra:?}: {plain:?}"
        );
    }
}

#[test]
fn status_text_gives_sizes_in_human_units() {
    let env = TestEnv::new();
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &(crate::backfill::claude_line("s", "u1", "2026-05-01T00:00:00.000Z", "hi") + "\n"),
    );
    env.hyp(["backfill", "claude", "--retention-days", "0"])
        .assert_success();
    let run = env.hyp(["status"]).assert_success();
    let line = run
        .stdout()
        .lines()
        .find(|line| line.trim_start().starts_with("cache size:"))
        .map(str::to_string)
        .unwrap_or_else(|| run.explain("a cache size line"));
    assert!(line.ends_with(" KiB") || line.ends_with(" MiB"), "{line}");
    let bytes = run_json_size(&env);
    assert!(bytes > 1024, "the JSON keeps the raw number ({bytes})");
}

fn run_json_size(env: &TestEnv) -> u64 {
    let run = env.hyp(["status", "--json"]).assert_success();
    run.stdout_json()["cache"]["size_bytes"]
        .as_u64()
        .unwrap_or_else(|| run.explain("cache.size_bytes"))
}
