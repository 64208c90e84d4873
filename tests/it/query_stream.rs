//! `hyp query sql` streams (issue 14, point 4): the exact bytes of every
//! format on a small cache, rows that reach stdout while the statement is
//! still running, and a reader that goes away being a quiet success.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::support::{TestEnv, wait_until};

/// Two rows whose text needs every kind of escaping: a tab, a comma, a
/// quote and a newline.
fn with_rows() -> TestEnv {
    let env = TestEnv::new();
    let lines = [
        json!({"sessionId": "s", "uuid": "u1", "type": "user",
               "message": {"role": "user", "content": "tab\there, \"quoted\""},
               "timestamp": "2026-05-01T00:00:00.000Z"}),
        json!({"sessionId": "s", "uuid": "u2", "type": "user",
               "message": {"role": "user", "content": "two\nlines"},
               "timestamp": "2026-05-01T00:00:01.000Z"}),
    ];
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    env.write("home/.claude/projects/p/s.jsonl", &text);
    env.hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success();
    env
}

const SQL: &str = "SELECT part_id, content_text AS text, agent_id, message_index AS n, \
                   0.5 AS r, x'c0ff' AS b FROM ai_gateway_messages ORDER BY part_id";

#[test]
fn every_format_prints_its_exact_bytes() {
    let env = with_rows();
    let cases: [(&[&str], &str); 5] = [
        (
            &[],
            "part_id\ttext\tagent_id\tn\tr\tb\n\
             u1#0\ttab\\there, \"quoted\"\t\t0\t0.5\tc0ff\n\
             u2#0\ttwo\\nlines\t\t1\t0.5\tc0ff\n",
        ),
        (
            &["--format", "tsv"],
            "part_id\ttext\tagent_id\tn\tr\tb\n\
             u1#0\ttab\\there, \"quoted\"\t\t0\t0.5\tc0ff\n\
             u2#0\ttwo\\nlines\t\t1\t0.5\tc0ff\n",
        ),
        (
            &["--format", "csv"],
            "part_id,text,agent_id,n,r,b\r\n\
             u1#0,\"tab\there, \"\"quoted\"\"\",,0,0.5,c0ff\r\n\
             u2#0,\"two\nlines\",,1,0.5,c0ff\r\n",
        ),
        (
            &["--format", "json"],
            "[\n\
             {\"part_id\":\"u1#0\",\"text\":\"tab\\there, \\\"quoted\\\"\",\"agent_id\":null,\"n\":0,\"r\":0.5,\"b\":\"c0ff\"},\n\
             {\"part_id\":\"u2#0\",\"text\":\"two\\nlines\",\"agent_id\":null,\"n\":1,\"r\":0.5,\"b\":\"c0ff\"}\n\
             ]\n",
        ),
        (
            &["--format", "ndjson"],
            "{\"part_id\":\"u1#0\",\"text\":\"tab\\there, \\\"quoted\\\"\",\"agent_id\":null,\"n\":0,\"r\":0.5,\"b\":\"c0ff\"}\n\
             {\"part_id\":\"u2#0\",\"text\":\"two\\nlines\",\"agent_id\":null,\"n\":1,\"r\":0.5,\"b\":\"c0ff\"}\n",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["query", "sql", SQL];
        args.extend_from_slice(flags);
        let run = env.hyp(&args).assert_success();
        if run.stdout() != expected {
            run.explain(&format!("{flags:?}: expected stdout {expected:?}"));
        }
        if !run.stderr().is_empty() {
            run.explain("nothing on stderr");
        }
    }
    let json = env.hyp(["query", "sql", SQL, "--json"]).assert_success();
    let array = env
        .hyp(["query", "sql", SQL, "--format", "json"])
        .assert_success();
    assert_eq!(json.stdout(), array.stdout(), "--json is --format json");
}

#[test]
fn empty_results_keep_their_shape() {
    let env = with_rows();
    let sql = "SELECT part_id FROM ai_gateway_messages WHERE 0";
    for (format, expected) in [
        ("tsv", "part_id\n"),
        ("csv", "part_id\r\n"),
        ("json", "[]\n"),
        ("ndjson", ""),
    ] {
        let run = env
            .hyp(["query", "sql", sql, "--format", format])
            .assert_success();
        assert_eq!(run.stdout(), expected, "{format}");
    }
}

#[test]
fn format_flags_are_checked() {
    let env = with_rows();
    env.hyp(["query", "sql", "SELECT 1", "--format", "xml"])
        .assert_exit(2)
        .assert_stderr_contains("hyp query sql: --format expects tsv|csv|json|ndjson (got xml)");
    env.hyp(["query", "sql", "SELECT 1", "--json", "--format", "csv"])
        .assert_exit(2)
        .assert_stderr_contains("hyp query sql:");
    env.hyp([
        "query",
        "sql",
        "DELETE FROM ai_gateway_messages",
        "--format",
        "ndjson",
    ])
    .assert_exit(1)
    .assert_stderr_contains("hyp query sql: refusing a statement that writes");
}

/// An endless statement: only a query that writes rows as it reads them
/// prints anything, and only a closed pipe taken as a quiet success ends
/// it with exit 0 and nothing on stderr.
#[test]
fn rows_stream_and_a_closed_pipe_is_a_quiet_success() {
    let env = with_rows();
    let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                   SELECT i, 'padding padding padding padding' AS p FROM n";
    for format in ["tsv", "csv", "json", "ndjson"] {
        let mut child = env
            .command(["query", "sql", endless, "--format", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hyp query sql");
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let mut second = String::new();
            let _ = reader.read_line(&mut first);
            let _ = reader.read_line(&mut second);
            let _ = line_tx.send(second);
            // The reader (and the pipe) are dropped here.
        });
        let Ok(second) = line_rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("{format}: no row within 60 s: the result is not streamed");
        };
        assert!(second.contains("padding"), "{format}: a row is {second:?}");
        let mut status = None;
        wait_until(
            Duration::from_secs(60),
            "hyp to end on the closed pipe",
            || {
                status = child.try_wait().expect("poll hyp");
                status.is_some()
            },
        );
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("piped stderr")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        assert_eq!(stderr, "", "{format}: stderr");
        assert_eq!(
            status.and_then(|status| status.code()),
            Some(0),
            "{format}: exit"
        );
    }
}
