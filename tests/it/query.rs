//! `hyp query sql`: read-only SQL over the cache.

use serde_json::json;

use crate::support::TestEnv;

fn with_rows() -> TestEnv {
    let env = TestEnv::new();
    let line = json!({"sessionId": "s", "uuid": "u1", "type": "user",
                      "message": {"role": "user", "content": "tab\there"}, "timestamp": "2026-05-01T00:00:00.000Z"});
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &(line.to_string() + "\n"),
    );
    env.hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success();
    env
}

#[test]
fn text_output_is_a_header_and_tab_separated_rows() {
    let env = with_rows();
    let run = env
        .hyp([
            "query",
            "sql",
            "SELECT part_id, role, content_text, agent_id FROM ai_gateway_messages",
        ])
        .assert_success();
    assert_eq!(
        run.stdout(),
        "part_id\trole\tcontent_text\tagent_id\nu1#0\tuser\ttab\\there\t\n"
    );
}

#[test]
fn json_output_is_an_array_of_row_objects() {
    let env = with_rows();
    let run = env
        .hyp([
            "query",
            "sql",
            "SELECT part_id, message_index, agent_id FROM ai_gateway_messages",
            "--json",
        ])
        .assert_success();
    assert_eq!(
        run.stdout_json(),
        json!([{"part_id": "u1#0", "message_index": 0, "agent_id": null}])
    );
}

#[test]
fn writes_are_refused_and_change_nothing() {
    let env = with_rows();
    for sql in [
        "DELETE FROM ai_gateway_messages",
        "UPDATE ai_gateway_messages SET role = 'x'",
        "DROP TABLE imported_files",
    ] {
        env.hyp(["query", "sql", sql])
            .assert_exit(1)
            .assert_stderr_contains("hyp query sql: refusing a statement that writes");
    }
    let run = env
        .hyp([
            "query",
            "sql",
            "SELECT count(*) AS n FROM ai_gateway_messages",
            "--json",
        ])
        .assert_success();
    assert_eq!(run.stdout_json(), json!([{"n": 1}]));
}

#[test]
fn a_missing_cache_says_to_run_backfill() {
    let env = TestEnv::new();
    env.hyp(["query", "sql", "SELECT 1"])
        .assert_exit(1)
        .assert_stderr_contains("run 'hyp backfill' first");
    env.hyp(["query", "sql", "SELEC nonsense"]).assert_exit(1);
    env.hyp(["query"])
        .assert_success()
        .assert_stdout_contains("sql");
}

#[test]
fn bad_sql_is_a_clear_failure() {
    let env = with_rows();
    env.hyp(["query", "sql", "SELECT nope FROM ai_gateway_messages"])
        .assert_exit(1)
        .assert_stderr_contains("hyp query sql: no such column: nope");
}

/// Whether `pid` catches `signal` (its handler is installed), from
/// `/proc/<pid>/status`.
fn catches(pid: u32, signal: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// A statement that would run for hours, signalled once it runs.
fn interrupted_query(signal: i32) -> std::process::Output {
    use std::time::Duration;
    let env = with_rows();
    let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                   SELECT count(*) FROM n";
    let mut child = env
        .command(["query", "sql", endless])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn hyp query sql");
    let pid = child.id();
    crate::support::wait_until(Duration::from_secs(30), "the query's handlers", || {
        catches(pid, libc::SIGINT) && catches(pid, libc::SIGTERM)
    });
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    unsafe {
        libc::kill(pid as i32, signal);
    }
    crate::support::wait_until(Duration::from_secs(30), "the query to stop", || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    child.wait_with_output().expect("wait for hyp query sql")
}

#[test]
fn a_long_query_interrupted_exits_130_or_143_cleanly() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let output = interrupted_query(signal);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
        assert_eq!(stderr, "hyp query sql: interrupted\n");
        // The header was streamed before the statement's first row; no row.
        assert_eq!(String::from_utf8_lossy(&output.stdout), "count(*)\n");
    }
}
