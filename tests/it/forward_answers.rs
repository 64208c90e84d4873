//! The forward sink against the fake central, through `hyp sync` and the
//! daemon (contract §12 "Answers", "Privacy", "When"; reference
//! forward-sink.md §2.6 and §9 scenarios 6-11 and 17-24): how each answer
//! of central is taken, what stays on the machine, and when rows leave.
//! Every test ends by checking the rows central stored against the cache.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fake_central::FakeCentral;
use crate::history;
use crate::support::{Run, TestDaemon, TestEnv, wait_until};

pub const INGEST: &str = "/v1/ingest/proxy";
const REFRESH: &str = "/v1/identity/refresh";

/// A host joined to its own fake central, with Claude history in the cache.
pub struct Host {
    pub env: TestEnv,
    pub central: FakeCentral,
}

impl Host {
    /// A host whose history roots are the tests', joined to a fresh fake
    /// central; nothing imported yet.
    pub fn joined() -> Host {
        let mut env = TestEnv::new();
        history::use_history(&mut env);
        let central = FakeCentral::start();
        env.hyp(["join", &central.url, "test-token"])
            .assert_success();
        Host { env, central }
    }

    /// Joined, with `sessions` sessions of `lines` rows each imported.
    pub fn with_rows(sessions: usize, lines: usize) -> Host {
        let host = Host::joined();
        let rows = history::write_history(&host.env, sessions, lines, 80);
        host.backfill();
        assert_eq!(host.cache_part_ids().len() as u64, rows, "rows imported");
        host
    }

    /// `hyp backfill claude --json`, by hand (not a daemon child).
    pub fn backfill(&self) {
        self.env
            .hyp(["backfill", "claude", "--json"])
            .assert_success();
    }

    /// `hyp sync --yes --json` plus `extra`.
    pub fn sync(&self, extra: &[&str]) -> Run {
        let mut args = vec!["sync", "--yes", "--json"];
        args.extend_from_slice(extra);
        self.env.hyp(args)
    }

    /// `hyp sync --yes --json` that must succeed: its one sink entry.
    pub fn sync_ok(&self) -> Value {
        sink_report(&self.sync(&[]).assert_success())
    }

    pub fn status(&self) -> Value {
        self.env
            .hyp(["status", "--json"])
            .assert_success()
            .stdout_json()
    }

    /// The `central` row of `hyp status --json` `sinks`.
    pub fn central_row(&self) -> Value {
        central_row(&self.status())
    }

    /// The ingest requests central received, in order.
    pub fn ingests(&self) -> Vec<Value> {
        self.central.requests_to(INGEST)
    }

    /// The cache's `part_id`s, sorted.
    pub fn cache_part_ids(&self) -> Vec<String> {
        let run = self
            .env
            .hyp([
                "query",
                "sql",
                "SELECT part_id FROM ai_gateway_messages ORDER BY part_id",
                "--json",
            ])
            .assert_success();
        part_ids(&run.stdout_json())
    }

    /// The `part_id`s central stored, sorted, repeats kept.
    pub fn stored_part_ids(&self) -> Vec<String> {
        let mut ids = part_ids(&Value::Array(self.central.stored_rows("proxy")));
        ids.sort();
        ids
    }

    /// Central stored every cached row exactly once.
    pub fn assert_all_stored_once(&self) {
        assert_eq!(
            self.stored_part_ids(),
            self.cache_part_ids(),
            "central stores every cached row exactly once"
        );
    }

    pub fn identity_path(&self) -> PathBuf {
        self.env
            .state_root()
            .join("plugins/@hypaware/central/identity.json")
    }

    /// The JWT in `identity.json` now.
    pub fn jwt(&self) -> String {
        let text = std::fs::read_to_string(self.identity_path()).expect("read identity.json");
        let identity: Value = serde_json::from_str(&text).expect("identity.json is JSON");
        identity["jwt"].as_str().expect("a jwt").to_string()
    }

    /// `S/usage-policy/<name>`.
    pub fn policy_path(&self, name: &str) -> PathBuf {
        self.env.state_root().join("usage-policy").join(name)
    }

    pub fn write_policy(&self, name: &str, text: &str) {
        let path = self.policy_path(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create usage-policy");
        std::fs::write(path, text).expect("write a policy file");
    }
}

/// The one sink entry of a `hyp sync --json` document.
pub fn sink_report(run: &Run) -> Value {
    let document = run.stdout_json();
    let sinks = document["sinks"].as_array().expect("sinks is an array");
    if sinks.len() != 1 {
        run.explain("expected exactly one sink in the sync report");
    }
    sinks[0].clone()
}

/// The `central` row of a status report.
pub fn central_row(status: &Value) -> Value {
    status["sinks"]
        .as_array()
        .expect("sinks is an array")
        .iter()
        .find(|sink| sink["instance"] == "central")
        .unwrap_or_else(|| panic!("no central sink in {status:#}"))
        .clone()
}

/// The kinds of a status report's diagnostics.
pub fn diagnostic_kinds(status: &Value) -> Vec<String> {
    status["diagnostics"]
        .as_array()
        .expect("diagnostics is an array")
        .iter()
        .map(|diagnostic| diagnostic["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The diagnostics of a status report that are errors (they degrade `overall`).
pub fn error_kinds(status: &Value) -> Vec<String> {
    status["diagnostics"]
        .as_array()
        .expect("diagnostics is an array")
        .iter()
        .filter(|diagnostic| diagnostic["severity"] == "error")
        .map(|diagnostic| diagnostic["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn part_ids(rows: &Value) -> Vec<String> {
    rows.as_array()
        .expect("an array of rows")
        .iter()
        .map(|row| row["part_id"].as_str().expect("a part_id").to_string())
        .collect()
}

/// Milliseconds since the epoch of an ISO-8601 timestamp.
fn epoch_ms(at: &Value) -> i64 {
    let text = at
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {at}"));
    text.parse::<jiff::Timestamp>()
        .unwrap_or_else(|err| panic!("{text}: {err}"))
        .as_millisecond()
}

/// Every ingest request carried the same chunk: one batch id, one body.
fn assert_same_chunk(requests: &[Value]) {
    let first = &requests[0];
    for request in requests {
        assert_eq!(
            request["headers"]["x-hyp-batch-id"], first["headers"]["x-hyp-batch-id"],
            "a resend keeps the batch id"
        );
        assert_eq!(
            request["body_sha256"], first["body_sha256"],
            "a resend is byte-identical"
        );
        assert_eq!(request["body_bytes"], first["body_bytes"]);
    }
}

// ---------------------------------------------------------------------------
// 401: renew the credential once.

#[test]
fn a_401_refreshes_the_identity_once_and_resends_the_same_chunk_with_the_new_jwt() {
    let host = Host::with_rows(2, 3);
    host.central
        .script_ingest(json!({"kind": "status", "status": 401}));

    let report = host.sync_ok();
    assert_eq!(report["status"], "exported");
    assert_eq!(report["rows_sent"], 6);

    let paths: Vec<Value> = host
        .central
        .requests()
        .into_iter()
        .filter(|request| request["path"] == INGEST || request["path"] == REFRESH)
        .collect();
    let order: Vec<&str> = paths
        .iter()
        .map(|request| request["path"].as_str().unwrap())
        .collect();
    assert_eq!(order, [INGEST, REFRESH, INGEST]);
    let (first, second) = (&paths[0], &paths[2]);
    assert_eq!(first["status"], 401);
    assert_eq!(second["status"], 202);
    assert_same_chunk(&[first.clone(), second.clone()]);
    // The first JWT came from the bootstrap of this export; the refresh
    // replaced it in identity.json, and the resend carries the new one.
    let new_jwt = host.jwt();
    assert_ne!(
        first["headers"]["authorization"],
        format!("Bearer {new_jwt}"),
        "identity.json holds a refreshed JWT"
    );
    assert_eq!(
        second["headers"]["authorization"],
        format!("Bearer {new_jwt}"),
        "the resend carries the refreshed JWT"
    );
    host.assert_all_stored_once();
}

#[test]
fn a_second_401_fails_the_export_and_the_next_sync_delivers_everything_once() {
    let host = Host::with_rows(2, 3);
    host.central
        .script_ingest(json!({"kind": "status", "status": 401, "count": 100}));

    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["rows_sent"], 0);
    assert_eq!(report["pending_rows"], 6);
    assert!(
        report["error"].as_str().unwrap().contains("401"),
        "{report}"
    );
    assert_eq!(host.ingests().len(), 2, "one resend after the refresh");
    assert_eq!(host.central.count(REFRESH), 1, "one refresh");
    assert_same_chunk(&host.ingests());
    assert!(host.stored_part_ids().is_empty());

    let row = host.central_row();
    assert_eq!(row["last_error"]["http_status"], 401);
    assert_eq!(row["pending_rows"], 6);
    assert_eq!(row["rows_sent_total"], 0);

    host.central.clear_ingest_script();
    let report = host.sync_ok();
    assert_eq!(report["status"], "exported");
    host.assert_all_stored_once();
    assert_eq!(host.central_row()["last_error"], Value::Null);
}

#[test]
fn a_refused_refresh_fails_the_export_naming_the_identity_refresh() {
    let host = Host::with_rows(1, 4);
    host.central.identity(json!({"reject_refresh": 401}));
    host.central
        .script_ingest(json!({"kind": "status", "status": 401}));

    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("identity refresh failed"), "{error}");
    assert_eq!(host.ingests().len(), 1, "no resend without a new JWT");
    assert_eq!(host.central.count(REFRESH), 1);
    assert_eq!(host.central_row()["last_error"]["kind"], "identity");

    host.central.identity(json!({"reject_refresh": null}));
    host.sync_ok();
    host.assert_all_stored_once();
}

// ---------------------------------------------------------------------------
// 429 and 503: wait in place, resend the same chunk, within 300 s per chunk.

/// Run `hyp sync --yes --json` and time it.
fn timed_sync(host: &Host) -> (Run, Duration) {
    let started = Instant::now();
    let run = host.sync(&[]);
    (run, started.elapsed())
}

#[test]
fn a_429_with_retry_after_waits_that_long_then_resends_the_same_chunk() {
    let mut host = Host::with_rows(1, 5);
    // Retry-After 2 s at scale 2 is a 1 s wait; the ladder's 30 s would be 15 s.
    host.env.set_var("HYP_TIME_SCALE", "2");
    host.central
        .script_ingest(json!({"kind": "status", "status": 429, "retry_after": "2"}));

    let (run, elapsed) = timed_sync(&host);
    let report = sink_report(&run.assert_success());
    assert_eq!(report["status"], "exported");
    assert!(
        elapsed >= Duration::from_secs(1),
        "the resend waited Retry-After (scaled): {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "Retry-After, not the 30 s ladder step, set the wait: {elapsed:?}"
    );
    let ingests = host.ingests();
    let statuses: Vec<&Value> = ingests.iter().map(|request| &request["status"]).collect();
    assert_eq!(statuses, [429, 202]);
    assert_same_chunk(&ingests);
    host.assert_all_stored_once();
}

#[test]
fn a_429_without_retry_after_waits_the_first_ladder_step() {
    let mut host = Host::with_rows(1, 5);
    // The first step, 30 s, at scale 10 is 3 s; the second step would be 6 s.
    host.env.set_var("HYP_TIME_SCALE", "10");
    host.central
        .script_ingest(json!({"kind": "status", "status": 429}));

    let (run, elapsed) = timed_sync(&host);
    sink_report(&run.assert_success());
    assert!(
        elapsed >= Duration::from_secs(3),
        "waited the 30 s step (scaled): {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(6),
        "the first step, not a later one: {elapsed:?}"
    );
    let ingests = host.ingests();
    assert_eq!(ingests.len(), 2);
    assert_same_chunk(&ingests);
    host.assert_all_stored_once();
}

#[test]
fn a_503_is_backpressure_like_a_429() {
    let mut host = Host::with_rows(1, 5);
    // Retry-After 0 is not positive: the 30 s step, at scale 30 a 1 s wait.
    host.env.set_var("HYP_TIME_SCALE", "30");
    host.central
        .script_ingest(json!({"kind": "status", "status": 503, "retry_after": "0"}));

    let (run, elapsed) = timed_sync(&host);
    assert_eq!(sink_report(&run.assert_success())["status"], "exported");
    assert!(
        elapsed >= Duration::from_secs(1),
        "a 503 waits before the resend: {elapsed:?}"
    );
    let ingests = host.ingests();
    let statuses: Vec<&Value> = ingests.iter().map(|request| &request["status"]).collect();
    assert_eq!(statuses, [503, 202]);
    assert_same_chunk(&ingests);
    host.assert_all_stored_once();
}

#[test]
fn retry_after_120_every_time_makes_three_requests_then_fails_and_remembers_the_wait() {
    let mut host = Host::with_rows(1, 5);
    // 120 s at scale 60 is 2 s: two waits (240 s of the 300 s budget), and
    // the third wait would pass the budget, so it is not started.
    host.env.set_var("HYP_TIME_SCALE", "60");
    host.central.script_ingest(
        json!({"kind": "status", "status": 429, "retry_after": "120", "count": 100}),
    );

    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["pending_rows"], 5);
    let ingests = host.ingests();
    assert_eq!(
        ingests.len(),
        3,
        "three requests for the chunk, then failure"
    );
    assert_same_chunk(&ingests);

    let row = host.central_row();
    assert_eq!(row["state"], "backoff", "{row:#}");
    assert_eq!(row["last_error"]["http_status"], 429);
    let ahead = epoch_ms(&row["next_attempt_at"]) - epoch_ms(&row["last_export_at"]);
    assert!(
        (1900..=2100).contains(&ahead),
        "next_attempt_at is the remembered 120 s (scaled: 2 s) ahead, got {ahead} ms"
    );
    assert!(host.stored_part_ids().is_empty());

    host.central.clear_ingest_script();
    host.sync_ok();
    host.assert_all_stored_once();
}

// ---------------------------------------------------------------------------
// 5xx and transport errors fail the export; the next one delivers.

#[test]
fn a_500_fails_the_export_and_the_next_sync_completes() {
    let host = Host::with_rows(2, 4);
    host.central
        .script_ingest(json!({"kind": "status", "status": 500}));

    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "failed");
    assert!(
        report["error"].as_str().unwrap().contains("500"),
        "{report}"
    );
    assert_eq!(host.ingests().len(), 1, "no inline retry on a 500");

    let row = host.central_row();
    assert!(
        row["state"] == "failing" || row["state"] == "backoff",
        "{row:#}"
    );
    assert_eq!(row["last_error"]["http_status"], 500);
    assert_eq!(row["last_error"]["kind"], "server_error");
    assert!(row["last_error"]["at"].is_string());
    assert_eq!(row["pending_rows"], 8);

    let report = host.sync_ok();
    assert_eq!(report["status"], "exported");
    host.assert_all_stored_once();
    let row = host.central_row();
    assert_eq!(row["state"], "idle");
    assert_eq!(row["last_error"], Value::Null);
    assert_eq!(row["pending_rows"], 0);
}

#[test]
fn a_transport_error_names_reaching_central_and_a_later_sync_completes() {
    let mut host = Host::with_rows(2, 4);
    // The connection is closed without an answer.
    host.central.script_ingest(json!({"kind": "down"}));
    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("failed to reach central server"), "{error}");
    assert_eq!(host.central_row()["last_error"]["kind"], "transport");

    // Central is gone altogether.
    host.central.kill();
    let run = host.sync(&[]).assert_exit(1);
    let error = sink_report(&run)["error"].as_str().unwrap().to_string();
    assert!(error.contains("failed to reach central server"), "{error}");

    host.central.restart();
    assert_eq!(host.sync_ok()["status"], "exported");
    host.assert_all_stored_once();
}

#[test]
fn a_base_url_with_a_path_prefix_keeps_it_in_the_ingest_path() {
    let mut env = TestEnv::new();
    history::use_history(&mut env);
    let central = FakeCentral::start();
    let url = format!("{}/tenant-a", central.url);
    env.hyp(["join", &url, "test-token"]).assert_success();
    let host = Host { env, central };
    history::write_history(&host.env, 1, 3, 40);
    host.backfill();

    assert_eq!(host.sync_ok()["status"], "exported");
    let paths: Vec<String> = host
        .central
        .requests()
        .iter()
        .filter(|request| request["method"] == "POST")
        .map(|request| request["path"].as_str().unwrap().to_string())
        .filter(|path| path.contains("/ingest/"))
        .collect();
    assert_eq!(paths, ["/tenant-a/v1/ingest/proxy"]);
    host.assert_all_stored_once();
}

// ---------------------------------------------------------------------------
// 400, 413, 422: refused rows are isolated and quarantined, the rest delivered.

const MARKER: &str = "POISON-ROW-7f3a";

/// One session of `lines` rows in which row `poisoned` holds [`MARKER`].
fn write_poisoned_session(host: &Host, lines: usize, poisoned: usize) {
    let dir = history::claude_root(&host.env).join("projects/-home-u-poison");
    std::fs::create_dir_all(&dir).expect("create the project directory");
    let body: String = (0..lines)
        .map(|index| {
            let text = match index == poisoned {
                true => format!("row {index} carries {MARKER}"),
                false => format!("row {index} is ordinary"),
            };
            history::line("poison", index, "/home/u/poison", &text) + "\n"
        })
        .collect();
    std::fs::write(dir.join("poison.jsonl"), body).expect("write a transcript");
}

/// A host whose cache holds 9 ordinary rows and one with the marker, and
/// a central that refuses any body holding the marker with `status`.
fn poisoned_host(status: u16) -> (Host, String) {
    let host = Host::joined();
    history::write_history(&host.env, 1, 4, 60);
    write_poisoned_session(&host, 6, 3);
    host.backfill();
    let run = host
        .env
        .hyp([
            "query",
            "sql",
            &format!(
                "SELECT part_id FROM ai_gateway_messages WHERE content_text LIKE '%{MARKER}%'"
            ),
            "--json",
        ])
        .assert_success();
    let poisoned = part_ids(&run.stdout_json());
    assert_eq!(poisoned.len(), 1, "exactly one row holds the marker");
    host.central.refuse_marker(MARKER, status);
    (host, poisoned[0].clone())
}

/// The sync reports `partial` with the marker row quarantined and every
/// other row stored once.
fn assert_marker_row_quarantined(host: &Host, poisoned: &str, status: u16) {
    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "partial", "{report}");
    assert_eq!(report["rows_quarantined"], 1);
    assert_eq!(report["rows_sent"], 9);
    assert_eq!(report["pending_rows"], 0);
    let mut others = host.cache_part_ids();
    others.retain(|id| id != poisoned);
    assert_eq!(
        host.stored_part_ids(),
        others,
        "every other row stored once"
    );
    let refused: Vec<Value> = host
        .ingests()
        .into_iter()
        .filter(|request| request["status"] == status)
        .collect();
    assert!(
        refused.iter().any(|request| request["body_lines"] == 1),
        "the refused row was offered alone before it was quarantined"
    );
}

#[test]
fn a_413_row_is_quarantined_shown_in_status_and_delivered_by_retry_quarantined() {
    let (host, poisoned) = poisoned_host(413);
    assert_marker_row_quarantined(&host, &poisoned, 413);

    let status = host.status();
    let row = central_row(&status);
    assert_eq!(row["rows_quarantined"], 1);
    assert_eq!(row["pending_rows"], 0, "quarantined rows are not pending");
    assert_eq!(row["rows_sent_total"], 9);
    assert_eq!(row["last_error"]["http_status"], 413);
    assert_eq!(row["last_error"]["kind"], "refused");
    assert_eq!(status["overall"], "degraded");
    let diagnostic = status["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|diagnostic| diagnostic["kind"] == "central_rows_quarantined")
        .unwrap_or_else(|| panic!("no central_rows_quarantined in {status:#}"));
    assert_eq!(diagnostic["severity"], "error");
    let message = diagnostic["message"].as_str().unwrap();
    assert!(
        message.contains("413"),
        "the diagnostic says why: {message}"
    );

    // A plain sync leaves the quarantine, and the refusal shown, alone.
    let again = host.sync(&[]).assert_success();
    assert_eq!(sink_report(&again)["status"], "nothing_to_send");
    let row = host.central_row();
    assert_eq!(row["rows_quarantined"], 1);
    assert_eq!(row["last_error"]["http_status"], 413);

    host.central.clear_refusals();
    let run = host.sync(&["--retry-quarantined"]).assert_success();
    let report = sink_report(&run);
    assert_eq!(report["status"], "exported");
    assert_eq!(report["rows_sent"], 1);
    host.assert_all_stored_once();

    let status = host.status();
    let row = central_row(&status);
    assert_eq!(row["rows_quarantined"], 0);
    assert_eq!(row["rows_sent_total"], 10);
    assert_eq!(row["last_error"], Value::Null);
    // No daemon runs here, which alone keeps a joined host degraded.
    assert_eq!(
        error_kinds(&status),
        ["daemon_not_running"],
        "{:?}",
        diagnostic_kinds(&status)
    );
}

#[test]
fn a_400_or_422_row_is_quarantined_like_a_413() {
    for status in [400, 422] {
        let (host, poisoned) = poisoned_host(status);
        assert_marker_row_quarantined(&host, &poisoned, status);
        let row = host.central_row();
        assert_eq!(row["rows_quarantined"], 1, "{status}");
        assert_eq!(row["last_error"]["http_status"], status);
    }
}

// ---------------------------------------------------------------------------
// Privacy: what stays on the machine, decided at every export.

/// The `part_id`s of cached rows whose `cwd` starts with `prefix`, sorted.
fn cache_part_ids_under(host: &Host, prefix: &str) -> Vec<String> {
    let run = host
        .env
        .hyp([
            "query",
            "sql",
            &format!(
                "SELECT part_id FROM ai_gateway_messages WHERE cwd LIKE '{prefix}%' ORDER BY part_id"
            ),
            "--json",
        ])
        .assert_success();
    part_ids(&run.stdout_json())
}

/// A host with 3 rows run in `/home/u/repo`, 2 in `<root>/p/secret/app`
/// and 2 in `<root>/p/listed`, imported with no marking in place.
fn host_with_private_dirs() -> (Host, PathBuf, PathBuf) {
    let host = Host::joined();
    let secret = host.env.root().join("p/secret");
    let listed = host.env.root().join("p/listed");
    std::fs::create_dir_all(secret.join("app")).unwrap();
    std::fs::create_dir_all(&listed).unwrap();
    history::write_history(&host.env, 1, 3, 60);
    let secret_cwd = secret.join("app").display().to_string();
    history::write_session(&host.env, "-p-secret", "secret", &secret_cwd, 2, 60);
    let listed_cwd = listed.display().to_string();
    history::write_session(&host.env, "-p-listed", "listed", &listed_cwd, 2, 60);
    host.backfill();
    assert_eq!(host.cache_part_ids().len(), 7);
    (host, secret, listed)
}

#[test]
fn rows_of_local_only_directories_are_withheld_and_never_sent_later() {
    let (host, secret, listed) = host_with_private_dirs();
    // Marked after the import: the export decides, row by row.
    std::fs::write(secret.join(".hypignore"), "local-only\n").unwrap();
    host.write_policy(
        "local-only.json",
        &json!({"version": 1, "dirs": [listed.display().to_string()]}).to_string(),
    );

    let report = host.sync_ok();
    assert_eq!(report["status"], "exported");
    assert_eq!(report["rows_sent"], 3);
    assert_eq!(report["rows_withheld"], 4);
    assert_eq!(report["pending_rows"], 0);
    assert_eq!(
        host.stored_part_ids(),
        cache_part_ids_under(&host, "/home/u/repo"),
        "only the rows of the unmarked directory reach central"
    );
    assert_eq!(
        host.cache_part_ids().len(),
        7,
        "withheld rows stay queryable"
    );
    let row = host.central_row();
    assert_eq!(row["pending_rows"], 0, "withheld rows are not pending");
    assert_eq!(row["rows_sent_total"], 3);

    let requests = host.ingests().len();
    let again = host.sync_ok();
    assert_eq!(again["status"], "nothing_to_send");
    assert_eq!(
        host.ingests().len(),
        requests,
        "a second export sends nothing"
    );

    // Unmarking does not send what was withheld meanwhile.
    std::fs::remove_file(secret.join(".hypignore")).unwrap();
    host.write_policy("local-only.json", r#"{"version": 1, "dirs": []}"#);
    let after = host.sync_ok();
    assert_eq!(after["status"], "nothing_to_send");
    assert_eq!(host.ingests().len(), requests);
    assert_eq!(host.stored_part_ids().len(), 3);
}

#[test]
fn a_client_opted_out_in_client_sync_json_is_withheld() {
    let host = Host::with_rows(2, 3);
    let run = host
        .env
        .hyp([
            "query",
            "sql",
            "SELECT DISTINCT client_name FROM ai_gateway_messages",
            "--json",
        ])
        .assert_success();
    assert_eq!(run.stdout_json(), json!([{"client_name": "claude"}]));
    host.write_policy(
        "client-sync.json",
        r#"{"version":1,"entries":[{"source":"claude","class":"local-only"}]}"#,
    );

    let report = host.sync_ok();
    assert_eq!(report["status"], "nothing_to_send");
    assert_eq!(report["rows_withheld"], 6);
    assert_eq!(report["rows_sent"], 0);
    assert!(host.ingests().is_empty(), "nothing is sent");
    assert!(host.stored_part_ids().is_empty());
    assert_eq!(host.central_row()["pending_rows"], 0);
}

/// A malformed policy file fails the export closed; fixed (`LISTED` in
/// `fixed` stands for the listed directory), the rows it lets through are
/// stored once.
fn assert_malformed_policy_fails_closed(name: &str, fixed: &str) {
    let (host, _secret, listed) = host_with_private_dirs();
    host.write_policy(name, "{\"version\": 1, \"dirs\": [");

    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "failed", "{name}");
    assert!(
        report["error"].as_str().unwrap().contains(name),
        "the error names the file: {report}"
    );
    assert!(host.ingests().is_empty(), "{name}: no ingest request");
    let status = host.status();
    assert!(
        error_kinds(&status).contains(&"usage_policy_unreadable".to_string()),
        "{name}: {:?}",
        diagnostic_kinds(&status)
    );
    assert_eq!(status["overall"], "degraded");
    let row = central_row(&status);
    assert_eq!(row["pending_rows"], 7, "{name}: the watermark did not move");
    assert_eq!(row["last_error"]["kind"], "policy");

    let listed = listed.display().to_string();
    host.write_policy(name, &fixed.replace("LISTED", &listed));
    assert_eq!(host.sync_ok()["status"], "exported");
    let mut eligible = host.cache_part_ids();
    if fixed.contains("LISTED") {
        let withheld = cache_part_ids_under(&host, &listed);
        assert_eq!(withheld.len(), 2);
        eligible.retain(|id| !withheld.contains(id));
    }
    assert_eq!(
        host.stored_part_ids(),
        eligible,
        "{name}: the eligible rows are stored once"
    );
    let status = host.status();
    assert!(
        !diagnostic_kinds(&status).contains(&"usage_policy_unreadable".to_string()),
        "{status:#}"
    );
}

#[test]
fn a_malformed_local_only_json_fails_the_export_closed_until_fixed() {
    assert_malformed_policy_fails_closed(
        "local-only.json",
        r#"{"version": 1, "dirs": ["LISTED"]}"#,
    );
}

#[test]
fn a_malformed_client_sync_json_fails_the_export_closed_until_fixed() {
    assert_malformed_policy_fails_closed("client-sync.json", r#"{"version":1,"entries":[]}"#);
}

// ---------------------------------------------------------------------------
// When: the daemon's schedule and the first-sync hold.

/// Daemon timers at 1/60: the export tick is 1 s, a config poll (5 s) 83 ms,
/// probation (120 s) 2 s.
const DAEMON_SCALE: &str = "60";
/// Config polls in one export tick (60 s / 5 s).
const POLLS_PER_TICK: usize = 12;
const DAEMON_WAIT: Duration = Duration::from_secs(30);

impl Host {
    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.env.state_root().join("logs/daemon.log")).unwrap_or_default()
    }

    /// The daemon log's lines for `event`, parsed.
    fn log_events(&self, event: &str) -> Vec<Value> {
        self.daemon_log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["event"] == event)
            .collect()
    }

    /// Wait while the daemon runs `ticks` export ticks, measured by the
    /// config polls it makes meanwhile (12 to a tick).
    fn wait_export_ticks(&self, ticks: usize) {
        let polls = self.central.count("/v1/config") + ticks * POLLS_PER_TICK;
        wait_until(DAEMON_WAIT, &format!("{ticks} export ticks"), || {
            self.central.count("/v1/config") >= polls
        });
    }

    /// A fleet document whose central sink exports on `schedule`, with
    /// backfill-on-join for Claude.
    fn document(&self, schedule: &str) -> Value {
        json!({
            "version": 2,
            "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/claude"}],
            "sinks": {"central": {"plugin": "@hypaware/central", "config": {
                "url": self.central.url, "identity": {}, "poll_interval_seconds": 5,
                "schedule": schedule}}}
        })
    }

    fn wait_confirmed(&self, etag: &str) {
        wait_until(DAEMON_WAIT, &format!("{etag} confirmed"), || {
            let remote = self.status()["remote_config"].clone();
            remote["running_etag"] == etag && remote["probation"].is_null()
        });
    }
}

/// A cron schedule that matches no minute of the next hours (UTC).
fn schedule_not_now() -> String {
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    format!(
        "{} {} * * *",
        (now.minute() + 30) % 60,
        (now.hour() + 12) % 24
    )
}

#[test]
fn a_daemon_exports_only_when_the_schedule_matches_while_hyp_sync_exports_at_once() {
    let mut host = Host::joined();
    host.env.set_var("HYP_TIME_SCALE", DAEMON_SCALE);
    history::write_history(&host.env, 2, 3, 60);
    host.central
        .serve("rev-1", &host.document(&schedule_not_now()));
    let daemon = TestDaemon::start(&host.env, DAEMON_WAIT);
    host.wait_confirmed("rev-1");

    // Backfill-on-join commits the rows and asks for an export, which the
    // schedule does not allow; neither do the ticks after it.
    wait_until(DAEMON_WAIT, "backfill-on-join to finish", || {
        host.status()["client_actions"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|row| row["state"] == "done"))
    });
    assert_eq!(host.cache_part_ids().len(), 6);
    host.wait_export_ticks(3);
    assert!(
        host.ingests().is_empty(),
        "no export outside the schedule:\n{}",
        host.daemon_log()
    );
    assert_eq!(host.central_row()["pending_rows"], 6);

    // hyp sync ignores the schedule.
    assert_eq!(host.sync_ok()["status"], "exported");
    host.assert_all_stored_once();

    // The same daemon exports on its tick once the schedule matches.
    history::write_session(&host.env, "-home-u-later", "later", "/home/u/later", 2, 60);
    host.backfill();
    host.central.serve("rev-2", &host.document("* * * * *"));
    host.wait_confirmed("rev-2");
    wait_until(DAEMON_WAIT, "the daemon to export the new rows", || {
        host.stored_part_ids().len() == 8
    });
    host.assert_all_stored_once();
    daemon.stop();
}

#[test]
fn a_malformed_schedule_stops_the_daemons_exports_with_a_diagnostic_but_not_hyp_sync() {
    let mut host = Host::with_rows(1, 3);
    host.env.set_var("HYP_TIME_SCALE", DAEMON_SCALE);
    // A served document with a bad schedule is refused at apply
    // (sink_schedule_invalid); a central layer this hyp did not validate,
    // here the seed edited by hand, can still carry one.
    let seed = host.env.state_root().join("config-control/seed.json");
    let mut document: Value =
        serde_json::from_str(&std::fs::read_to_string(&seed).unwrap()).unwrap();
    document["sinks"]["central"]["config"]["schedule"] = json!("bogus");
    std::fs::write(&seed, document.to_string()).unwrap();

    let status = host.status();
    assert!(
        error_kinds(&status).contains(&"central_schedule_invalid".to_string()),
        "{:?}",
        diagnostic_kinds(&status)
    );
    assert_eq!(status["overall"], "degraded");

    let daemon = TestDaemon::start(&host.env, DAEMON_WAIT);
    wait_until(DAEMON_WAIT, "the exporter to find the schedule", || {
        !host
            .log_events("central.forward.schedule_invalid")
            .is_empty()
    });
    assert!(host.ingests().is_empty(), "the daemon does not export it");
    assert_eq!(host.central_row()["pending_rows"], 3);

    assert_eq!(host.sync_ok()["status"], "exported");
    host.assert_all_stored_once();
    daemon.stop();
}

impl Host {
    fn write_first_sync_hold(&self, deadline: jiff::Timestamp) {
        self.write_policy(
            "first-sync-hold.json",
            &json!({"deadline_ms": deadline.as_millisecond()}).to_string(),
        );
    }
}

#[test]
fn a_live_first_sync_hold_holds_the_daemon_and_hyp_sync_yes_until_it_expires() {
    let mut host = Host::with_rows(2, 3);
    host.env.set_var("HYP_TIME_SCALE", DAEMON_SCALE);
    let in_an_hour = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    host.write_first_sync_hold(in_an_hour);

    let daemon = TestDaemon::start(&host.env, DAEMON_WAIT);
    // Each tick runs an export child, which reports `held` and sends nothing.
    wait_until(DAEMON_WAIT, "three export ticks", || {
        host.log_events("central.forward.export").len() >= 3
    });
    let statuses: Vec<Value> = host
        .log_events("central.forward.export")
        .iter()
        .map(|line| line["status"].clone())
        .collect();
    assert!(
        statuses.iter().all(|status| status == "held"),
        "every export is held: {statuses:?}"
    );
    assert!(host.ingests().is_empty(), "a live hold sends nothing");
    let row = host.central_row();
    assert_eq!(row["state"], "held");
    assert_eq!(row["pending_rows"], 6);

    // --yes never releases a hold.
    let run = host.sync(&[]).assert_exit(1);
    let report = sink_report(&run);
    assert_eq!(report["status"], "held");
    assert_eq!(report["pending_rows"], 6);
    assert!(
        report["error"].as_str().unwrap().contains("hold"),
        "{report}"
    );
    assert!(host.ingests().is_empty());

    // An expired hold holds nothing: the next tick exports.
    host.write_first_sync_hold(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1));
    wait_until(DAEMON_WAIT, "the daemon to export", || {
        host.stored_part_ids().len() == 6
    });
    host.assert_all_stored_once();
    assert_eq!(host.central_row()["state"], "idle");
    daemon.stop();
}

#[test]
fn an_expired_first_sync_hold_does_not_hold_hyp_sync() {
    let host = Host::with_rows(1, 3);
    host.write_first_sync_hold(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1));
    assert_eq!(host.central_row()["state"], "idle");
    assert_eq!(host.sync_ok()["status"], "exported");
    host.assert_all_stored_once();
}
