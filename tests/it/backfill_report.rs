//! `hyp backfill` says what it did (issue 14, point 5): where it looked and
//! whether the history was there, the window it applied and what fell
//! outside it, what it skipped as unchanged or ignored; relative
//! `--since`/`--until`; `hyp backfill plan`; "no providers matched" and
//! unknown providers as errors with a suggestion.

use serde_json::{Value, json};

use crate::backfill::{claude_line, provider};
use crate::support::TestEnv;

/// An ISO timestamp `days` before now.
fn days_ago(days: i64) -> String {
    let ts = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn report(run: &crate::support::Run, name: &str) -> Value {
    provider(&run.stdout_json(), name).clone()
}

#[test]
fn missing_history_says_where_it_looked() {
    let mut env = TestEnv::new();
    let run = env
        .hyp(["backfill", "claude"])
        .assert_success()
        .assert_stderr_contains(
            "note: no Claude Code history at ~/.claude/projects; set CLAUDE_CONFIG_DIR if it lives elsewhere",
        );
    assert!(
        run.stdout().contains("  claude  [ok]\n"),
        "stdout keeps the report"
    );
    let run = env
        .hyp(["backfill", "claude", "codex", "--json"])
        .assert_success();
    assert_eq!(
        report(&run, "claude")["roots"],
        json!([{"path": env.home().join(".claude/projects"), "exists": false, "from_env": null}])
    );
    assert_eq!(
        report(&run, "codex")["roots"],
        json!([{"path": env.home().join(".codex/sessions"), "exists": false, "from_env": null}])
    );
    assert_eq!(run.stderr(), "", "--json: the document says it all");
    let elsewhere = env.root().join("elsewhere");
    env.set_var("CLAUDE_CONFIG_DIR", elsewhere.display().to_string());
    env.hyp(["backfill", "claude"])
        .assert_success()
        .assert_stderr_contains(&format!(
            "note: no Claude Code history at {} (from CLAUDE_CONFIG_DIR)",
            elsewhere.join("projects").display()
        ));
    env.set_var("CODEX_HOME", elsewhere.display().to_string());
    env.hyp(["backfill", "codex"])
        .assert_success()
        .assert_stderr_contains("note: no Codex history at");
}

#[test]
fn the_window_and_what_fell_outside_it_are_reported() {
    let env = TestEnv::new();
    // One file with an old and a recent line, one file with old lines only.
    env.write(
        "home/.claude/projects/p/mixed.jsonl",
        &format!(
            "{}\n{}\n",
            claude_line("m", "u-old", "2020-01-01T00:00:00.000Z", "old"),
            claude_line("m", "u-new", &days_ago(1), "new")
        ),
    );
    env.write(
        "home/.claude/projects/p/old.jsonl",
        &format!(
            "{}\n{}\n",
            claude_line("o", "u-o1", "2020-01-02T00:00:00.000Z", "old"),
            claude_line("o", "u-o2", "2020-01-03T00:00:00.000Z", "old")
        ),
    );
    let run = env.hyp(["backfill", "claude", "--json"]).assert_success();
    let claude = report(&run, "claude");
    assert_eq!(claude["rows_written"], 1);
    assert_eq!(claude["lines_outside_window"], 3);
    assert_eq!(claude["files_outside_window"], 1);
    assert_eq!(claude["window"]["source"], "default");
    assert_eq!(claude["window"]["until"], Value::Null);
    let since = claude["window"]["since"].as_str().expect("a lower bound");
    assert_eq!(&since[..10], &days_ago(90)[..10], "90 days back");
    assert_eq!(
        claude["roots"],
        json!([{"path": env.home().join(".claude/projects"), "exists": true, "from_env": null}])
    );
    assert!(claude["bytes_seen"].as_u64().unwrap() > 0);
    assert!(claude["duration_ms"].is_u64());

    // Unchanged files are skipped and said so.
    let rerun = env
        .hyp(["backfill", "claude"])
        .assert_success()
        .assert_stderr_contains("claude: window: lines since ")
        .assert_stderr_contains("(the last 90 days, the default)")
        .assert_stderr_contains("claude: 2 files unchanged since the last import, not read again")
        .assert_stderr_contains("claude: no new rows; 0 files read (0 B) in ");
    assert!(
        rerun
            .stderr()
            .contains("claude: searched ~/.claude/projects: 2 files ("),
        "{}",
        rerun.stderr()
    );

    // A fresh cache, read in text mode: the lines left out are explained.
    std::fs::remove_dir_all(env.state_root().join("cache")).unwrap();
    env.hyp(["backfill", "claude"])
        .assert_success()
        .assert_stderr_contains(
            "claude: 3 lines fell outside the window and were not imported, 1 file entirely; \
             --retention-days 0 (everything) or --since <date> imports older lines",
        )
        .assert_stderr_contains("claude: 1 row written, 0 already in the cache; 2 files read (");

    // A wider window reads the files again: the row already in the cache is
    // skipped (rows_skipped counts rows), the old lines come in.
    let wide = env
        .hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success();
    let claude = report(&wide, "claude");
    assert_eq!(claude["rows_written"], 3);
    assert_eq!(claude["rows_skipped"], 1);
    assert_eq!(claude["lines_outside_window"], 0);
    assert_eq!(
        claude["window"],
        json!({"since": null, "until": null, "source": "retention_days"})
    );
}

#[test]
fn ignored_sessions_are_counted() {
    let env = TestEnv::new();
    let repo = env.root().join("work/secret");
    std::fs::create_dir_all(&repo).unwrap();
    env.write("work/secret/.hypignore", "ignore\n");
    let line = json!({"sessionId": "s", "uuid": "u1", "type": "user", "cwd": repo.display().to_string(),
                      "message": {"role": "user", "content": "secret"}, "timestamp": days_ago(1)});
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &(line.to_string() + "\n"),
    );
    let run = env.hyp(["backfill", "claude", "--json"]).assert_success();
    let claude = report(&run, "claude");
    assert_eq!(claude["sessions_ignored"], 1);
    assert_eq!(claude["files_ignored"], 1);
    assert_eq!(claude["rows_written"], 0);
    env.hyp(["backfill", "claude"])
        .assert_success()
        .assert_stderr_contains(
            "claude: 1 session ignored (.hypignore, local-only.json, or a client whose plugin is not enabled), 1 file entirely",
        );
}

#[test]
fn since_and_until_take_spans_back_from_now() {
    let env = TestEnv::new();
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &format!(
            "{}\n{}\n{}\n",
            claude_line("s", "u-40", &days_ago(40), "forty days"),
            claude_line("s", "u-10", &days_ago(10), "ten days"),
            claude_line("s", "u-1", &days_ago(1), "one day")
        ),
    );
    let run = env
        .hyp([
            "backfill",
            "claude",
            "--since",
            "30d",
            "--until",
            "48h",
            "--dry-run",
            "--json",
        ])
        .assert_success();
    let claude = report(&run, "claude");
    assert_eq!(claude["window"]["source"], "since");
    assert_eq!(
        &claude["window"]["since"].as_str().unwrap()[..10],
        &days_ago(30)[..10]
    );
    assert_eq!(
        &claude["window"]["until"].as_str().unwrap()[..10],
        &days_ago(2)[..10]
    );
    assert_eq!(claude["lines_outside_window"], 2, "40 days and 1 day");
    env.hyp(["backfill", "claude", "--since", "30d", "--dry-run"])
        .assert_success()
        .assert_stderr_contains("claude: dry run: 1 session found, nothing written; 1 file read (");
    let run = env
        .hyp(["backfill", "claude", "--since", "2w", "--json"])
        .assert_success();
    assert_eq!(report(&run, "claude")["rows_written"], 2);
    for bad in ["-1d", "30x", "d", "1.5d"] {
        env.hyp(["backfill", "claude", "--since", bad])
            .assert_exit(2)
            .assert_stderr_contains(&format!(
                "hyp backfill: --since expects a parseable date (got {bad})"
            ));
    }
}

#[test]
fn plan_shows_roots_files_bytes_and_window_and_writes_nothing() {
    let env = TestEnv::new();
    let text = claude_line("s", "u1", &days_ago(1), "hi") + "\n";
    env.write("home/.claude/projects/p/s.jsonl", &text);
    let run = env
        .hyp(["backfill", "plan", "claude", "codex"])
        .assert_success();
    let stdout = run.stdout();
    assert!(
        stdout.starts_with("backfill plan (retention=90d)\n  claude  (@hypaware/claude)  -> ai_gateway_messages\n    root: ~/.claude/projects\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "    files: 1 ({} B); 0 unchanged since the last import, 1 to read ({} B)\n",
            text.len(),
            text.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("    window: lines since "), "{stdout}");
    assert!(
        stdout.contains(
            "  codex  (@hypaware/codex)  -> ai_gateway_messages\n    no Codex history at ~/.codex/sessions; set CODEX_HOME if it lives elsewhere\n"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("did not return a plan"));
    assert!(
        !env.hyp_home().exists(),
        "plan writes nothing: {}",
        crate::support::list_tree(env.root())
    );
    let run = env
        .hyp([
            "backfill",
            "plan",
            "claude",
            "--retention-days",
            "0",
            "--json",
        ])
        .assert_success();
    let plan = &report(&run, "claude")["plan"];
    assert_eq!(plan["files"], 1);
    assert_eq!(plan["bytes"], text.len());
    assert_eq!(plan["files_to_read"], 1);
    assert_eq!(plan["files_unchanged"], 0);
    assert_eq!(
        plan["window"],
        json!({"since": null, "until": null, "source": "retention_days"})
    );
    // After an import the plan knows the file is unchanged.
    env.hyp(["backfill", "claude"]).assert_success();
    let run = env
        .hyp(["backfill", "plan", "claude", "--json"])
        .assert_success();
    let plan = &report(&run, "claude")["plan"];
    assert_eq!(plan["files_unchanged"], 1);
    assert_eq!(plan["files_to_read"], 0);
}

#[test]
fn unknown_providers_get_a_suggestion() {
    let env = TestEnv::new();
    let run = env
        .hyp(["backfill", "clade"])
        .assert_exit(1)
        .assert_stderr_contains(
            "hyp backfill: unknown provider(s): clade (did you mean 'claude'?)",
        );
    assert_eq!(run.stdout(), "");
    env.hyp(["backfill", "ghost", "codx"])
        .assert_exit(1)
        .assert_stderr_contains(
            "hyp backfill: unknown provider(s): ghost, codx (did you mean 'codex'?)",
        );
    env.hyp(["backfill", "ghost"])
        .assert_exit(1)
        .assert_stderr_contains(
            "hyp backfill: unknown provider(s): ghost (run 'hyp backfill list' to see them)",
        );
    env.hyp(["backfill", "plan", "clade"])
        .assert_exit(1)
        .assert_stderr_contains("(did you mean 'claude'?)");
}
