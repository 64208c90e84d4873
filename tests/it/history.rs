//! A small, deterministic Claude Code history written by the tests
//! themselves (no generator outside the project): sessions of alternating
//! user and assistant lines, one text block each, so every line is exactly
//! one cache row.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::support::TestEnv;

/// Where the tests' Claude history lives (`$CLAUDE_CONFIG_DIR/projects/...`).
pub fn claude_root(env: &TestEnv) -> PathBuf {
    env.root().join("claude")
}

/// Point the env at the tests' history roots.
pub fn use_history(env: &mut TestEnv) {
    env.set_var("CLAUDE_CONFIG_DIR", claude_root(env).display().to_string());
    env.set_var("CODEX_HOME", env.root().join("codex").display().to_string());
}

/// One Claude transcript line with one text block (one cache row).
pub fn line(session: &str, index: usize, cwd: &str, text: &str) -> String {
    let role = if index.is_multiple_of(2) {
        "user"
    } else {
        "assistant"
    };
    // Recent timestamps, one second apart, inside any default window.
    let base = jiff::Timestamp::now().as_second() - 86_400;
    let ts = jiff::Timestamp::from_second(base + index as i64)
        .expect("a valid timestamp")
        .strftime("%Y-%m-%dT%H:%M:%S.000Z")
        .to_string();
    json!({
        "sessionId": session,
        "uuid": format!("{session}-{index:06}"),
        "type": role,
        "cwd": cwd,
        "version": "2.0.14",
        "message": {"role": role, "content": [{"type": "text", "text": text}]},
        "timestamp": ts,
    })
    .to_string()
}

/// Write session `session` with `lines` lines of about `text_len` bytes of
/// text each under `project` (a directory name), run in `cwd`. Returns the
/// file. Each line is one row.
pub fn write_session(
    env: &TestEnv,
    project: &str,
    session: &str,
    cwd: &str,
    lines: usize,
    text_len: usize,
) -> PathBuf {
    let dir = claude_root(env).join("projects").join(project);
    std::fs::create_dir_all(&dir).expect("create the project directory");
    let path = dir.join(format!("{session}.jsonl"));
    let mut body = String::new();
    for index in 0..lines {
        body.push_str(&line(
            session,
            index,
            cwd,
            &filler(session, index, text_len),
        ));
        body.push('\n');
    }
    std::fs::write(&path, body).expect("write a transcript");
    path
}

/// Append `lines` more lines to a session file written by [`write_session`].
pub fn append_lines(path: &Path, session: &str, cwd: &str, from: usize, lines: usize) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open a transcript");
    for index in from..from + lines {
        writeln!(
            file,
            "{}",
            line(session, index, cwd, &filler(session, index, 40))
        )
        .expect("append a line");
    }
}

/// Text of about `len` bytes that differs per line.
fn filler(session: &str, index: usize, len: usize) -> String {
    let mut text = format!("{session} line {index}: ");
    while text.len() < len {
        text.push_str("the quick brown fox jumps over the lazy dog ");
    }
    text.truncate(len.max(1));
    text
}

/// `sessions` sessions of `lines` lines each in one project; returns the
/// row count they make.
pub fn write_history(env: &TestEnv, sessions: usize, lines: usize, text_len: usize) -> u64 {
    for session in 0..sessions {
        write_session(
            env,
            "-home-u-repo",
            &format!("s{session:04}"),
            "/home/u/repo",
            lines,
            text_len,
        );
    }
    (sessions * lines) as u64
}

#[test]
fn every_line_of_the_test_history_is_one_row() {
    let mut env = TestEnv::new();
    use_history(&mut env);
    let rows = write_history(&env, 3, 7, 120);
    env.hyp(["backfill", "claude", "--json"]).assert_success();
    let run = env
        .hyp([
            "query",
            "sql",
            "SELECT count(*) AS n, count(DISTINCT part_id) AS d FROM ai_gateway_messages",
            "--json",
        ])
        .assert_success();
    let counts = run.stdout_json();
    assert_eq!(counts[0]["n"], rows);
    assert_eq!(counts[0]["d"], rows);
}
