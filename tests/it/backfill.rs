//! `hyp backfill`: the real binary on generated and hand-written histories,
//! checked through the cache with `hyp query sql`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::corpus::{SLOW_CLAUDE, expected_rows, generated_corpus};
use crate::support::{TestEnv, wait_until};

/// `hyp query sql --json` rows.
pub(crate) fn query(env: &TestEnv, sql: &str) -> Vec<Value> {
    let run = env.hyp(["query", "sql", sql, "--json"]).assert_success();
    match run.stdout_json() {
        Value::Array(rows) => rows,
        _ => run.explain("query output is not an array"),
    }
}

pub(crate) fn count(env: &TestEnv, sql: &str) -> i64 {
    query(env, sql)[0]["n"].as_i64().expect("a count")
}
/// A run after one cut short at `written` of `expected` claude rows writes
/// exactly the rest, and the cache ends with every row once.
pub(crate) fn assert_rerun_completes(env: &TestEnv, written: u64, expected: u64) {
    let rerun = env.hyp(["backfill", "claude", "--json"]).assert_success();
    assert_eq!(
        provider(&rerun.stdout_json(), "claude")["rows_written"].as_u64(),
        Some(expected - written)
    );
    assert_exact_rows(env, expected);
}

/// The cache holds exactly `expected` rows, each `part_id` once.
pub(crate) fn assert_exact_rows(env: &TestEnv, expected: u64) {
    let counts = &query(
        env,
        "SELECT count(*) AS n, count(DISTINCT part_id) AS d FROM ai_gateway_messages",
    )[0];
    assert_eq!(
        (counts["n"].as_u64(), counts["d"].as_u64()),
        (Some(expected), Some(expected)),
        "rows and distinct part_ids in the cache"
    );
}

pub(crate) fn provider<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["providers"]
        .as_array()
        .and_then(|providers| providers.iter().find(|entry| entry["provider"] == name))
        .unwrap_or_else(|| panic!("provider {name} in {document}"))
}

#[test]
fn the_small_corpus_imports_exactly_the_manifest_rows_and_reruns_write_nothing() {
    let mut env = TestEnv::new();
    let (_, manifest) = generated_corpus(&mut env, &["--preset", "small"]);
    let first = env
        .hyp(["backfill", "claude", "codex", "--json"])
        .assert_success();
    let document = first.stdout_json();
    for name in ["claude", "codex"] {
        let report = provider(&document, name);
        assert_eq!(report["status"], "ok");
        assert_eq!(
            report["rows_written"].as_u64(),
            Some(expected_rows(&manifest, name)),
            "{name}"
        );
        assert_eq!(report["items_seen"].as_u64(), Some(20));
        assert_eq!(report["sessions_seen"].as_u64(), Some(20));
        assert_eq!(report["datasets"], json!(["ai_gateway_messages"]));
    }
    let keys: Vec<&str> = document
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["run_id", "dry_run", "providers"]);
    assert!(document["run_id"].as_str().unwrap().starts_with("bf-"));

    let total = expected_rows(&manifest, "claude") + expected_rows(&manifest, "codex");
    assert_exact_rows(&env, total);

    // Unchanged files under a covering window are skipped without parsing.
    let second = env
        .hyp(["backfill", "claude", "codex", "--json"])
        .assert_success();
    for name in ["claude", "codex"] {
        assert_eq!(provider(&second.stdout_json(), name)["rows_written"], 0);
    }
    // A wider window re-reads every file; the unique part_id keeps it a no-op.
    let third = env
        .hyp([
            "backfill",
            "claude",
            "codex",
            "--retention-days",
            "0",
            "--json",
        ])
        .assert_success();
    for name in ["claude", "codex"] {
        let document = third.stdout_json();
        let report = provider(&document, name);
        assert_eq!(report["rows_written"], 0);
        // rows_skipped counts rows already in the cache (issue 14.5), not
        // items as the reference did.
        assert_eq!(report["rows_skipped"], expected_rows(&manifest, name));
        assert_eq!(report["items_seen"], 20);
    }
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM ai_gateway_messages") as u64,
        total
    );

    let dry = env
        .hyp(["backfill", "claude", "--dry-run", "--json"])
        .assert_success();
    let document = dry.stdout_json();
    let report = provider(&document, "claude");
    assert_eq!(document["dry_run"], true);
    assert_eq!(report["items_seen"], 20);
    assert_eq!(report["sessions_seen"], 20);
    assert_eq!(report["rows_written"], 0);
}

fn diagnostic_kinds(env: &TestEnv) -> Vec<String> {
    let status = env.hyp(["status", "--json"]).assert_success().stdout_json();
    status["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_damaged_cache_is_set_aside_and_rebuilt_from_history() {
    let mut env = TestEnv::new();
    let (_, manifest) = generated_corpus(&mut env, &["--preset", "small"]);
    let cache_dir = env.state_root().join("cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let garbage = b"this is not an SQLite database\n".repeat(300);
    std::fs::write(cache_dir.join("cache.db"), &garbage).unwrap();
    assert!(diagnostic_kinds(&env).contains(&"cache_unreadable".to_string()));

    env.hyp(["backfill", "claude", "codex", "--json"])
        .assert_success()
        .assert_stderr_contains("the cache was damaged; moved it to");
    let total = expected_rows(&manifest, "claude") + expected_rows(&manifest, "codex");
    assert_eq!(
        count(
            &env,
            "SELECT count(DISTINCT part_id) AS n FROM ai_gateway_messages"
        ) as u64,
        total
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("cache.db.damaged-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage, "kept as it was");
    let kinds = diagnostic_kinds(&env);
    assert!(
        kinds.contains(&"cache_damaged_copies".to_string()),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"cache_unreadable".to_string()),
        "{kinds:?}"
    );

    // A cache cut short (a full disk, a partial copy) takes the same road.
    let db = cache_dir.join("cache.db");
    let whole = std::fs::read(&db).unwrap();
    std::fs::write(&db, &whole[..whole.len() / 3]).unwrap();
    let _ = std::fs::remove_file(cache_dir.join("cache.db-wal"));
    let _ = std::fs::remove_file(cache_dir.join("cache.db-shm"));
    env.hyp(["backfill", "claude", "codex"])
        .assert_success()
        .assert_stderr_contains("the cache was damaged; moved it to");
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM ai_gateway_messages") as u64,
        total
    );
}

const CLAUDE_LINES: &str = r#"{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/home/u/src/repo","sessionId":"5d9c1f0e-1111-4222-8333-944455556666","version":"2.0.14","gitBranch":"main","entrypoint":"cli","type":"user","message":{"role":"user","content":"list the files"},"uuid":"a1","timestamp":"2025-10-01T12:00:00.000Z"}
{"parentUuid":"a1","isSidechain":false,"userType":"external","cwd":"/home/u/src/repo","sessionId":"5d9c1f0e-1111-4222-8333-944455556666","version":"2.0.14","entrypoint":"cli","type":"assistant","requestId":"req_1","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Running ls."}],"stop_reason":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":1200,"cache_read_input_tokens":14000,"output_tokens":50,"service_tier":"standard"}},"uuid":"a2","timestamp":"2025-10-01T12:00:01.000Z"}
{"parentUuid":"a2","sessionId":"5d9c1f0e-1111-4222-8333-944455556666","entrypoint":"cli","type":"assistant","requestId":"req_1","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}],"stop_reason":"tool_use","usage":{"input_tokens":3,"cache_creation_input_tokens":1200,"cache_read_input_tokens":14000,"output_tokens":50}},"uuid":"a3","timestamp":"2025-10-01T12:00:01.500Z"}
{"parentUuid":"a3","sessionId":"5d9c1f0e-1111-4222-8333-944455556666","entrypoint":"cli","type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"a.txt\nb.txt","is_error":false}]},"toolUseResult":{"stdout":"a.txt\nb.txt","stderr":"","interrupted":false,"isImage":false},"uuid":"a4","timestamp":"2025-10-01T12:00:02.000Z"}
{"type":"file-history-snapshot","messageId":"x","snapshot":{},"isSnapshotUpdate":false}
{"parentUuid":"a4","sessionId":"5d9c1f0e-1111-4222-8333-944455556666","type":"system","subtype":"local_command","content":"x","level":"info","uuid":"a5","timestamp":"2025-10-01T12:00:03.000Z"}
"#;

/// A stored row as the reference writes it: nulls dropped, JSON columns
/// parsed, source_path_hash (machine-specific) blanked.
fn normalised(row: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (key, value) in row.as_object().expect("row object") {
        if value.is_null() {
            continue;
        }
        let json_column = matches!(
            key.as_str(),
            "previous_message_id"
                | "tool_args"
                | "status"
                | "attributes"
                | "raw_frame"
                | "compact_metadata"
        );
        let mut value = if json_column {
            serde_json::from_str(value.as_str().expect("JSON text")).expect("valid JSON")
        } else if matches!(
            key.as_str(),
            "is_sidechain" | "is_error" | "is_compact_summary"
        ) {
            Value::Bool(value.as_i64() == Some(1))
        } else {
            value.clone()
        };
        if key == "attributes"
            && let Some(hash) = value.pointer_mut("/gateway/source_path_hash")
        {
            assert_eq!(hash.as_str().map(str::len), Some(16));
            *hash = json!("<hash>");
        }
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

#[test]
fn the_claude_worked_example_reproduces_exactly() {
    let env = TestEnv::new();
    env.write(
        "home/.claude/projects/-home-u-src-repo/5d9c1f0e-1111-4222-8333-944455556666.jsonl",
        CLAUDE_LINES,
    );
    let run = env
        .hyp([
            "backfill",
            "claude",
            "--since",
            "2000-01-01T00:00:00.000Z",
            "--json",
        ])
        .assert_success();
    assert_eq!(provider(&run.stdout_json(), "claude")["rows_written"], 4);
    assert!(run.stderr().is_empty(), "no stderr: {}", run.stderr());
    let rows: Vec<Value> = query(
        &env,
        "SELECT * FROM ai_gateway_messages ORDER BY message_index, part_index",
    )
    .iter()
    .map(normalised)
    .collect();
    assert_eq!(rows.len(), 4);
    let gateway = json!({"source":"backfill","source_path_hash":"<hash>","native_id":"5d9c1f0e-1111-4222-8333-944455556666"});
    let first = json!({"gateway_id":"hypaware-local","schema_version":7,"session_id":"5d9c1f0e-1111-4222-8333-944455556666","provider":"anthropic","conversation_started_at":"2025-10-01T12:00:00.000Z","conversation_source":"claude","client_name":"claude","cwd":"/home/u/src/repo","client_version":"2.0.14","entrypoint":"cli","user_type":"external","is_sidechain":false,"message_id":"a1","previous_message_id":[],"provider_uuid":"a1","message_index":0,"message_created_at":"2025-10-01T12:00:00.000Z","role":"user","part_id":"a1#0","part_index":0,"part_type":"text","provider_type":"user","provider_subtype":"text","content_text":"list the files","attributes":{"client":{"name":"claude","version":"2.0.14"},"gateway":gateway},"raw_frame":{"uuid":"a1","type":"user","timestamp":"2025-10-01T12:00:00.000Z"},"date":"2025-10-01"});
    assert_eq!(rows[0], first);
    let third = json!({"gateway_id":"hypaware-local","schema_version":7,"session_id":"5d9c1f0e-1111-4222-8333-944455556666","provider":"anthropic","model":"claude-sonnet-4-5-20250929","conversation_started_at":"2025-10-01T12:00:00.000Z","conversation_source":"claude","client_name":"claude","cwd":"/home/u/src/repo","client_version":"2.0.14","entrypoint":"cli","user_type":"external","is_sidechain":false,"message_id":"a3","previous_message_id":["a2"],"provider_uuid":"a3","parent_uuid":"a2","request_id":"req_1","message_index":2,"message_created_at":"2025-10-01T12:00:01.500Z","role":"assistant","part_id":"a3#0","part_index":0,"part_type":"tool_call","provider_type":"assistant","provider_subtype":"tool_use","tool_name":"Bash","tool_call_id":"toolu_1","tool_args":{"command":"ls"},"attributes":{"client":{"name":"claude","version":"2.0.14"},"usage":{"input_tokens":3,"output_tokens":50,"cache_read_tokens":14000,"cache_write_tokens":1200},"gateway":gateway},"raw_frame":{"uuid":"a3","parent_uuid":"a2","type":"assistant","message_id":"msg_1","timestamp":"2025-10-01T12:00:01.500Z"},"date":"2025-10-01"});
    // The worked example omits user_type/is_sidechain on lines that lack
    // them; this line has no userType, so the row has none either.
    let mut third = third;
    third.as_object_mut().unwrap().remove("user_type");
    third.as_object_mut().unwrap().remove("is_sidechain");
    assert_eq!(rows[2], third);
    assert_eq!(rows[1]["part_id"], "a2#0");
    assert_eq!(rows[1]["content_text"], "Running ls.");
    assert!(
        rows[1]["attributes"].get("usage").is_none(),
        "usage only on the last block"
    );
    assert_eq!(rows[3]["part_type"], "tool_result");
    assert_eq!(rows[3]["content_text"], "a.txt\nb.txt");
    assert_eq!(rows[3]["tool_name"], "Bash");
    assert_eq!(rows[3]["tool_call_id"], "toolu_1");
    assert_eq!(rows[3]["tool_result_for"], "toolu_1");
    assert_eq!(rows[3]["status"], json!({"tool_status":"success"}));
    assert_eq!(
        rows[3]["attributes"]["claude"]["tool_use_result"],
        json!({"stdout":"a.txt\nb.txt","stderr":"","interrupted":false,"isImage":false})
    );
    // Key order of attributes is the reference's: client, message keys, gateway.
    let raw = query(
        &env,
        "SELECT attributes FROM ai_gateway_messages WHERE part_id = 'a3#0'",
    );
    let text = raw[0]["attributes"].as_str().unwrap();
    assert!(text.starts_with(r#"{"client":{"name":"claude","version":"2.0.14"},"usage":{"input_tokens":3,"output_tokens":50,"cache_read_tokens":14000,"cache_write_tokens":1200},"gateway":{"source":"backfill","source_path_hash":""#), "{text}");
}

const CODEX_LINES: &str = r#"{"timestamp":"2025-10-01T12:00:00.000Z","type":"session_meta","payload":{"id":"0199a213-81c0-7800-8aa1-bbab2a035a53","timestamp":"2025-10-01T12:00:00.000Z","cwd":"/home/u/src/repo","originator":"codex_cli_rs","cli_version":"0.46.0","instructions":null,"source":"cli","model_provider":"openai","git":{"commit_hash":"abc123","branch":"main","repository_url":"git@github.com:acme/repo.git"}}}
{"timestamp":"2025-10-01T12:00:00.100Z","type":"turn_context","payload":{"cwd":"/home/u/src/repo","approval_policy":"on-request","sandbox_policy":{"type":"workspace-write"},"model":"gpt-5-codex","effort":"medium","summary":"auto"}}
{"timestamp":"2025-10-01T12:00:01.000Z","type":"response_item","payload":{"type":"message","role":"user","content":[{"type":"input_text","text":"list the files"}]}}
{"timestamp":"2025-10-01T12:00:01.001Z","type":"event_msg","payload":{"type":"user_message","message":"list the files","images":[]}}
{"timestamp":"2025-10-01T12:00:02.000Z","type":"response_item","payload":{"type":"reasoning","summary":[{"type":"summary_text","text":"**Listing**"}],"content":null,"encrypted_content":"gAAAA"}}
{"timestamp":"2025-10-01T12:00:03.000Z","type":"response_item","payload":{"type":"function_call","name":"shell","arguments":"{\"command\":[\"bash\",\"-lc\",\"ls\"]}","call_id":"call_1"}}
{"timestamp":"2025-10-01T12:00:03.500Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":5000,"cached_input_tokens":4000,"output_tokens":100,"reasoning_output_tokens":40,"total_tokens":5100},"last_token_usage":{"input_tokens":5000,"cached_input_tokens":4000,"output_tokens":100,"reasoning_output_tokens":40,"total_tokens":5100},"model_context_window":272000}}}
{"timestamp":"2025-10-01T12:00:04.000Z","type":"response_item","payload":{"type":"function_call_output","call_id":"call_1","output":"a.txt\nb.txt"}}
{"timestamp":"2025-10-01T12:00:05.000Z","type":"response_item","payload":{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Two files."}]}}
"#;

#[test]
fn the_codex_worked_example_reproduces_exactly() {
    let env = TestEnv::new();
    env.write(
        "home/.codex/sessions/2025/10/01/rollout-2025-10-01T12-00-00-0199a213-81c0-7800-8aa1-bbab2a035a53.jsonl",
        CODEX_LINES,
    );
    let run = env
        .hyp(["backfill", "codex", "--retention-days", "0", "--json"])
        .assert_success();
    assert_eq!(provider(&run.stdout_json(), "codex")["rows_written"], 5);
    let rows: Vec<Value> = query(
        &env,
        "SELECT * FROM ai_gateway_messages ORDER BY message_index",
    )
    .iter()
    .map(normalised)
    .collect();
    let kinds: Vec<&str> = rows
        .iter()
        .map(|row| row["part_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["text", "reasoning", "tool_call", "tool_result", "text"]
    );
    let tool_call: Value = serde_json::from_str(r##"{"gateway_id":"hypaware-local","schema_version":7,"session_id":"0199a213-81c0-7800-8aa1-bbab2a035a53","conversation_id":"0199a213-81c0-7800-8aa1-bbab2a035a53","provider":"openai","model":"gpt-5-codex","conversation_started_at":"2025-10-01T12:00:00.000Z","conversation_source":"codex","client_name":"codex","cwd":"/home/u/src/repo","git_branch":"main","git_remote":"git@github.com:acme/repo.git","head_sha":"abc123","client_version":"0.46.0","entrypoint":"codex_cli_rs","permission_mode":"workspace-write","message_id":"3b276bbe46cbbbe8","previous_message_id":["b8d27c000290fda6"],"message_index":2,"message_created_at":"2025-10-01T12:00:03.000Z","role":"assistant","part_id":"3b276bbe46cbbbe8#0","part_index":0,"part_type":"tool_call","provider_type":"function_call","provider_subtype":"tool_use","tool_name":"shell","tool_call_id":"call_1","tool_args":{"command":["bash","-lc","ls"]},"attributes":{"client":{"name":"codex","version":"0.46.0"},"usage":{"input_tokens":1000,"cache_read_tokens":4000,"output_tokens":100,"reasoning_tokens":40,"total_tokens":5100},"codex":{"identity_source":"gateway_fallback","session_id":"0199a213-81c0-7800-8aa1-bbab2a035a53","workspace":"/home/u/src/repo","git_origin_url":"git@github.com:acme/repo.git","git_commit":"abc123","sandbox":"workspace-write","originator":"codex_cli_rs","model_provider":"openai","source":"cli"},"gateway":{"source":"backfill","source_path_hash":"<hash>","native_id":"0199a213-81c0-7800-8aa1-bbab2a035a53","identity_source":"gateway_fallback"}},"date":"2025-10-01"}"##).unwrap();
    assert_eq!(rows[2], tool_call);
    assert_eq!(rows[0]["message_id"], "15a46db1466cf7b7");
    assert_eq!(rows[1]["message_id"], "b8d27c000290fda6");
    assert_eq!(rows[1]["provider_subtype"], "thinking");
    assert_eq!(rows[1]["content_text"], "**Listing**");
    assert_eq!(rows[3]["role"], "tool");
    assert_eq!(rows[3]["tool_name"], "shell");
    assert_eq!(rows[3]["status"], json!({"tool_status":"success"}));
    assert_eq!(rows[4]["content_text"], "Two files.");
    assert!(rows[4]["attributes"].get("usage").is_none());
}

pub(crate) fn claude_line(session: &str, uuid: &str, timestamp: &str, text: &str) -> String {
    json!({"sessionId": session, "uuid": uuid, "type": "user", "cwd": "/nowhere/repo",
           "message": {"role": "user", "content": text}, "timestamp": timestamp})
    .to_string()
}

/// Issue 14.7: the reference walks a Claude project depth-first in readdir
/// order and recurses where it meets a directory; sorted, `<session>/`
/// comes before `<session>.jsonl`, so a subagent file's copy of a line wins
/// the `part_id` (a walk sorted by whole path read the main file first).
#[test]
fn a_subagent_file_is_walked_before_its_session_transcript_and_keeps_a_shared_part_id() {
    let env = TestEnv::new();
    let main = [
        claude_line("s1", "u-main", "2026-05-01T00:00:00.000Z", "main only"),
        claude_line("s1", "u-dup", "2026-05-01T00:00:01.000Z", "main copy"),
    ];
    env.write(
        "home/.claude/projects/p/s1.jsonl",
        &(main.join("\n") + "\n"),
    );
    let subagent = json!({"sessionId": "s1", "uuid": "u-dup", "type": "user", "cwd": "/nowhere/repo",
                          "isSidechain": true, "agentId": "a1",
                          "message": {"role": "user", "content": "subagent copy"},
                          "timestamp": "2026-05-01T00:00:01.000Z"});
    env.write(
        "home/.claude/projects/p/s1/subagents/agent-a1.jsonl",
        &format!("{subagent}\n"),
    );
    let run = env
        .hyp(["backfill", "claude", "--since", "2026-01-01", "--json"])
        .assert_success();
    let document = run.stdout_json();
    let report = provider(&document, "claude");
    assert_eq!(report["items_seen"], 2);
    assert_eq!(report["rows_written"], 2);
    let rows = query(
        &env,
        "SELECT part_id, content_text, agent_id FROM ai_gateway_messages ORDER BY part_id",
    );
    assert_eq!(
        rows,
        [
            json!({"part_id": "u-dup#0", "content_text": "subagent copy", "agent_id": "a1"}),
            json!({"part_id": "u-main#0", "content_text": "main only", "agent_id": null}),
        ]
    );
}

#[test]
fn the_window_is_per_line_and_inclusive() {
    let env = TestEnv::new();
    let lines = [
        claude_line("w", "u-old", "2026-05-01T00:00:00.000Z", "old"),
        claude_line("w", "u-edge", "2026-05-05T00:00:00.000Z", "edge"),
        claude_line("w", "u-mid", "2026-05-10T00:00:00.000Z", "mid"),
        claude_line("w", "u-late", "2026-05-20T00:00:00.001Z", "late"),
    ];
    env.write(
        "home/.claude/projects/p/w.jsonl",
        &(lines.join("\n") + "\n"),
    );
    env.hyp([
        "backfill",
        "claude",
        "--since",
        "2026-05-05",
        "--until",
        "2026-05-20T00:00:00Z",
        "--json",
    ])
    .assert_success();
    let ids: Vec<Value> = query(
        &env,
        "SELECT message_id, message_index FROM ai_gateway_messages ORDER BY message_index",
    )
    .into_iter()
    .map(|row| row["message_id"].clone())
    .collect();
    assert_eq!(ids, [json!("u-edge"), json!("u-mid")]);
    // A wider window later imports the rest; the two already stored stay put.
    let run = env
        .hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success();
    assert_eq!(provider(&run.stdout_json(), "claude")["rows_written"], 2);
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM ai_gateway_messages"),
        4
    );
}

#[test]
fn malformed_lines_are_skipped_and_counted_and_the_rest_lands() {
    let env = TestEnv::new();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(claude_line("m", "u1", "2026-05-01T00:00:00.000Z", "one").as_bytes());
    bytes.extend_from_slice(
        b"\n\n   \nnot json at all\n{\"sessionId\":\"m\",\"uuid\":\"bad\xff\xfe\"}\n",
    );
    bytes.extend_from_slice(br#"{"sessionId":"m","uuid":5,"type":"user","message":{"role":"user","content":"wrong-typed uuid"}}"#);
    bytes.push(b'\n');
    bytes.extend_from_slice(claude_line("m", "u2", "2026-05-01T00:00:01.000Z", "two").as_bytes());
    bytes.extend_from_slice(b"\n{\"sessionId\":\"m\",\"uuid\":\"trunc");
    let path = env.root().join("home/.claude/projects/p/m.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    // The unterminated last line may still be being written: it waits,
    // uncounted (see backfill_resume for how it lands once complete).
    let run = env
        .hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success()
        .assert_stderr_contains("claude: skipped 2 malformed lines in 1 file");
    assert_eq!(provider(&run.stdout_json(), "claude")["rows_written"], 3);
    let texts: Vec<Value> = query(
        &env,
        "SELECT content_text FROM ai_gateway_messages ORDER BY message_index",
    )
    .into_iter()
    .map(|row| row["content_text"].clone())
    .collect();
    assert_eq!(
        texts,
        [json!("one"), json!("two"), json!("wrong-typed uuid")]
    );
}

#[test]
fn usage_errors_exit_2_with_the_reference_messages() {
    let env = TestEnv::new();
    for (args, message) in [
        (vec!["--nope"], "hyp backfill: unknown flag --nope"),
        (vec!["-j"], "hyp backfill: unknown flag -j"),
        (vec!["--since"], "hyp backfill: --since expects a value"),
        (
            vec!["--retention-days", "abc"],
            "hyp backfill: --retention-days expects a number (got abc)",
        ),
        (
            vec!["--retention-days", "-3"],
            "hyp backfill: --retention-days expects a number >= 0 (got -3)",
        ),
        (
            vec!["--since", "notadate"],
            "hyp backfill: --since expects a parseable date (got notadate)",
        ),
        (
            vec!["--since", "2026-01-02", "--until", "2026-01-01"],
            "hyp backfill: --since must be before or equal to --until (got 2026-01-02 > 2026-01-01)",
        ),
        (
            vec!["--json=yes"],
            "hyp backfill: --json expects true|false (got yes)",
        ),
    ] {
        let mut argv = vec!["backfill"];
        argv.extend(args);
        let run = env
            .hyp(&argv)
            .assert_exit(2)
            .assert_stderr_contains(message)
            .assert_stderr_contains("usage: hyp backfill [provider...]");
        assert!(run.stdout().is_empty());
    }
    for args in [
        vec!["backfill", "--help"],
        vec!["backfill", "claude", "--help"],
        vec!["backfill", "list", "-h"],
    ] {
        env.hyp(&args)
            .assert_success()
            .assert_stdout_contains("Usage: hyp backfill [provider...]");
    }
    let run = env
        .hyp(["backfill", "claude", "ghost", "other"])
        .assert_exit(1)
        .assert_stderr_contains("hyp backfill: unknown provider(s): ghost, other");
    assert!(run.stdout().is_empty());
    assert!(
        !env.state_root().join("cache/cache.db").exists(),
        "nothing ran"
    );
}

#[test]
fn providers_come_from_the_config_unless_named() {
    let env = TestEnv::new();
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &(claude_line("s", "u1", "2026-05-01T00:00:00.000Z", "hi") + "\n"),
    );
    // No config: nothing is enabled, and no provider matched is an error
    // now (issue 14.5; the reference printed `{"providers": []}`, exit 0).
    for args in [
        &["backfill"][..],
        &["backfill", "--json"],
        &["backfill", "plan"],
    ] {
        let run = env
            .hyp(args)
            .assert_exit(1)
            .assert_stderr_contains("hyp backfill: no providers matched your active config");
        assert_eq!(run.stdout(), "", "{args:?}");
    }
    env.write(
        "home/.hyp/hypaware-config.json",
        r#"{"version":2,"plugins":[{"name":"@hypaware/claude"},{"name":"@hypaware/codex","enabled":false}],"query":{"cache":{"retention":{"default_days":0}}}}"#,
    );
    let run = env.hyp(["backfill", "--json"]).assert_success();
    let document = run.stdout_json();
    let names: Vec<&Value> = document["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["provider"])
        .collect();
    assert_eq!(names, [&json!("claude")]);
    // default_days 0 = no lower bound, so the 2026-05 line imports.
    assert_eq!(provider(&document, "claude")["rows_written"], 1);
    // Named explicitly, a disabled provider still runs (missing dir: ok, zeros).
    let run = env.hyp(["backfill", "codex", "--json"]).assert_success();
    let document = run.stdout_json();
    let codex = provider(&document, "codex");
    assert_eq!(codex["status"], "ok");
    assert_eq!(codex["items_seen"], 0);
    let human = env.hyp(["backfill", "codex"]).assert_success();
    assert!(human.stdout().starts_with("backfill run_id="));
    assert!(
        human.stdout().contains(
            "  codex  [ok]\n    items_seen=0  sessions=0  rows_written=0  rows_skipped=0\n"
        )
    );
}

#[test]
fn a_corrupt_local_only_list_fails_the_provider_and_others_still_run() {
    let env = TestEnv::new();
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &(claude_line("s", "u1", "2026-05-01T00:00:00.000Z", "hi") + "\n"),
    );
    let list = env.write("home/.hyp/hypaware/usage-policy/local-only.json", "{broken");
    let run = env
        .hyp(["backfill", "claude", "codex", "--json"])
        .assert_exit(1);
    let document = run.stdout_json();
    let claude = provider(&document, "claude");
    assert_eq!(claude["status"], "failed");
    assert_eq!(
        claude["error"],
        format!(
            "local-only list at '{}' is unreadable or malformed",
            list.display()
        )
    );
    assert_eq!(provider(&document, "codex")["status"], "failed");
    let human = env.hyp(["backfill", "claude"]).assert_exit(1);
    assert!(human.stdout().contains("  claude  [failed]\n"));
    assert!(human.stdout().contains("    error: local-only list at"));
}

#[test]
fn ignored_directories_are_not_imported() {
    let env = TestEnv::new();
    let repo = env.root().join("work/secret");
    std::fs::create_dir_all(&repo).unwrap();
    env.write("work/secret/.hypignore", "# keep out\nignore\n");
    let line = json!({"sessionId": "s", "uuid": "u1", "type": "user", "cwd": repo.display().to_string(),
                      "message": {"role": "user", "content": "secret"}, "timestamp": "2026-05-01T00:00:00.000Z"});
    env.write(
        "home/.claude/projects/p/s.jsonl",
        &(line.to_string() + "\n"),
    );
    let run = env
        .hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success();
    let document = run.stdout_json();
    let claude = provider(&document, "claude");
    assert_eq!(claude["items_seen"], 0);
    assert_eq!(claude["rows_written"], 0);
    // Lifting the ignore imports it on the next run (the file was not marked).
    std::fs::remove_file(env.root().join("work/secret/.hypignore")).unwrap();
    let run = env
        .hyp(["backfill", "claude", "--retention-days", "0", "--json"])
        .assert_success();
    assert_eq!(provider(&run.stdout_json(), "claude")["rows_written"], 1);
}

#[test]
fn sessions_without_timestamps_use_the_file_mtime() {
    let env = TestEnv::new();
    let line = json!({"sessionId": "s1", "type": "user", "message": {"role": "user", "content": "no uuid no ts"}});
    let path = env.write(
        "home/.claude/projects/p/s1.jsonl",
        &(line.to_string() + "\n"),
    );
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .unwrap();
    env.hyp(["backfill", "claude", "--json"]).assert_success();
    let rows = query(
        &env,
        "SELECT message_id, message_created_at, conversation_started_at, date FROM ai_gateway_messages",
    );
    assert_eq!(
        rows,
        [
            json!({"message_id": "c49e721925a84792", "message_created_at": "2023-11-14T22:13:20.000Z",
                "conversation_started_at": "2023-11-14T22:13:20.000Z", "date": "2023-11-14"})
        ]
    );
}

pub(crate) fn json_document(run_stdout: &[u8]) -> Value {
    serde_json::from_slice(run_stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not one JSON document ({err}): {}",
            String::from_utf8_lossy(run_stdout)
        )
    })
}

/// Start a long import, signal it once the cache exists, return the output.
pub(crate) fn interrupted_run(env: &TestEnv, signal: i32) -> std::process::Output {
    let child = env
        .command(["backfill", "claude", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hyp backfill");
    // A first import builds in `cache.db.importing.<pid>` until it is done.
    let dir = env.state_root().join("cache");
    wait_until(
        Duration::from_secs(60),
        "the cache or its build to exist",
        || {
            std::fs::read_dir(&dir).is_ok_and(|entries| {
                entries.flatten().any(|entry| {
                    let name = entry.file_name();
                    name == "cache.db" || name.to_string_lossy().starts_with("cache.db.importing.")
                })
            })
        },
    );
    let pid = child.id() as i32;
    // SAFETY: kill(2) on the pid of a child this test owns and has not reaped.
    unsafe {
        libc::kill(pid, signal);
    }
    child.wait_with_output().expect("wait for hyp backfill")
}

#[test]
fn an_interrupted_run_commits_what_it_parsed_and_a_rerun_completes_exactly() {
    let mut env = TestEnv::new();
    let (_, manifest) = generated_corpus(&mut env, &SLOW_CLAUDE);
    let output = interrupted_run(&env, libc::SIGINT);
    assert_eq!(
        output.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document = json_document(&output.stdout);
    let claude = provider(&document, "claude");
    assert_eq!(claude["status"], "interrupted");
    let written = claude["rows_written"].as_u64().unwrap();
    assert_eq!(
        count(&env, "SELECT count(*) AS n FROM ai_gateway_messages") as u64,
        written
    );
    let expected = expected_rows(&manifest, "claude");
    assert!(
        written < expected,
        "the run was cut short ({written} of {expected})"
    );

    assert_rerun_completes(&env, written, expected);
}

#[test]
fn sigterm_exits_143_with_the_document() {
    let mut env = TestEnv::new();
    generated_corpus(&mut env, &SLOW_CLAUDE);
    let output = interrupted_run(&env, libc::SIGTERM);
    assert_eq!(output.status.code(), Some(143));
    assert_eq!(
        provider(&json_document(&output.stdout), "claude")["status"],
        "interrupted"
    );
}
