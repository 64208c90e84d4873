//! The forward sink against the fake central, end to end (contract §12,
//! reference forward-sink.md §9): the wire form and chunk bounds of real
//! rows, and the exactly-once promises under crashes, server errors,
//! overlapping exports, a deleted cache and a new enrolment. Real binary,
//! real signals, real HTTP; "exactly once" is always checked the same way:
//! the stored part ids are the cache's, each once.

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_central::FakeCentral;
use crate::history;
use crate::support::{Run, TestEnv, wait_until};

const INGEST: &str = "/v1/ingest/proxy";
const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

/// A host with the tests' history roots, joined to `central`.
fn joined_host(central: &FakeCentral) -> TestEnv {
    let mut env = TestEnv::new();
    history::use_history(&mut env);
    env.hyp(["join", &central.url, "test-token"])
        .assert_success();
    env
}

fn backfill(env: &TestEnv) {
    env.hyp(["backfill", "claude", "--json"]).assert_success();
}

fn sync(env: &TestEnv) -> Run {
    env.hyp(["sync", "--yes", "--json"])
}

/// The one sink entry of a `hyp sync --json` run.
fn report(run: &Run) -> Value {
    let document = run.stdout_json();
    let sinks = document["sinks"].as_array().cloned().unwrap_or_default();
    match sinks.as_slice() {
        [sink] => sink.clone(),
        _ => run.explain("expected exactly one sink in the report"),
    }
}

/// `hyp sync --yes` in the background, to be killed.
fn spawn_sync(env: &TestEnv) -> Child {
    env.command(["sync", "--yes", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hyp sync")
}

fn sigkill(mut child: Child) {
    child.kill().expect("SIGKILL our own child");
    child.wait().expect("reap it");
}

fn query(env: &TestEnv, sql: &str) -> Vec<Value> {
    match env
        .hyp(["query", "sql", sql, "--json"])
        .assert_success()
        .stdout_json()
    {
        Value::Array(rows) => rows,
        other => panic!("query answered {other}"),
    }
}

fn cache_rows(env: &TestEnv) -> usize {
    query(env, "SELECT count(*) AS n FROM ai_gateway_messages")[0]["n"]
        .as_u64()
        .expect("a count") as usize
}

/// The cache's part ids, sorted.
fn cache_part_ids(env: &TestEnv) -> Vec<String> {
    query(
        env,
        "SELECT part_id FROM ai_gateway_messages ORDER BY part_id",
    )
    .iter()
    .map(|row| row["part_id"].as_str().expect("a part id").to_string())
    .collect()
}

/// The part ids central stored, sorted, repeats kept.
fn stored_part_ids(central: &FakeCentral) -> Vec<String> {
    let mut ids: Vec<String> = central
        .stored_rows("proxy")
        .iter()
        .map(|row| row["part_id"].as_str().expect("a part id").to_string())
        .collect();
    ids.sort();
    ids
}

/// Every cached row is stored exactly once, and nothing else is.
fn assert_stored_exactly_once(env: &TestEnv, central: &FakeCentral) {
    let stored = stored_part_ids(central);
    let distinct: BTreeSet<&String> = stored.iter().collect();
    let twice: BTreeSet<&String> = stored
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| &pair[0])
        .collect();
    assert!(
        twice.is_empty(),
        "{} rows stored more than once, e.g. {:?}",
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    let cached = cache_part_ids(env);
    assert_eq!(
        (stored.len(), distinct.len()),
        (cached.len(), cached.len()),
        "stored rows, distinct stored rows == cache rows"
    );
    assert_eq!(stored, cached, "the stored part ids are the cache's");
}

fn batch_id(request: &Value) -> &str {
    request["headers"]["x-hyp-batch-id"]
        .as_str()
        .expect("an x-hyp-batch-id")
}

fn lines(request: &Value) -> u64 {
    request["body_lines"].as_u64().expect("body_lines")
}

fn summary(central: &FakeCentral, field: &str) -> Value {
    central.ingest_summary()[field].clone()
}

/// The JWT the host holds now.
fn host_jwt(env: &TestEnv) -> String {
    let path = env
        .state_root()
        .join("plugins/@hypaware/central/identity.json");
    let identity: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read identity.json"))
            .expect("identity.json is JSON");
    identity["jwt"].as_str().expect("a jwt").to_string()
}

/// Processes running with this env's `HYP_HOME`: the daemon, its children,
/// any `hyp` the test started (the daemon forces `HYP_HOME` on children).
fn processes_of(env: &TestEnv) -> Vec<String> {
    let needle = format!("HYP_HOME={}", env.hyp_home().display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| {
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            environ
                .split(|byte| *byte == 0)
                .any(|var| var == needle.as_bytes())
                .then(|| {
                    let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    format!(
                        "{}: {}",
                        entry.file_name().to_string_lossy(),
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    )
                })
        })
        .collect()
}

/// `hyp daemon run` as a child of the test; SIGKILLed on drop.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn start(env: &TestEnv) -> Daemon {
        let child = env
            .command(["daemon", "run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the daemon");
        Daemon { child: Some(child) }
    }

    /// SIGKILL: no shutdown, no cleanup.
    fn kill(mut self) {
        if let Some(child) = self.child.take() {
            sigkill(child);
        }
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().expect("a running daemon");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().expect("wait for the daemon");
        assert_eq!(status.code(), Some(0), "the daemon exits 0 on SIGTERM");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fixed-seed xorshift: the same "random" kill points every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn one_sync_sends_every_row_in_the_wire_form_and_a_second_sends_nothing() {
    let central = FakeCentral::start();
    let env = joined_host(&central);
    history::write_history(&env, 3, 7, 120);
    backfill(&env);

    let run = sync(&env).assert_success();
    assert_eq!(report(&run)["status"], "exported");
    let jwt = host_jwt(&env);
    let requests = central.requests_to(INGEST);
    assert!(!requests.is_empty(), "at least one ingest request");
    for request in central.requests() {
        let path = request["path"].as_str().unwrap_or_default();
        assert!(
            !path.contains("/v1/ingest/") || path == INGEST,
            "no other ingest path: {path}"
        );
    }
    for request in &requests {
        let headers = &request["headers"];
        assert_eq!(headers["content-type"], "application/x-ndjson");
        assert_eq!(headers["authorization"], format!("Bearer {jwt}"));
        let id = batch_id(request);
        assert!(
            id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "batch id {id:?} is 32 lowercase hex"
        );
        assert!(
            headers.get("content-encoding").is_none(),
            "no content-encoding: {headers}"
        );
        assert_eq!(request["status"], 202);
    }
    assert_eq!(summary(&central, "violations"), json!([]));
    assert_stored_exactly_once(&env, &central);

    let one = query(&env, "SELECT * FROM ai_gateway_messages LIMIT 1");
    let columns: Vec<&String> = one[0].as_object().expect("a row").keys().collect();
    assert_eq!(columns.len(), 56, "{columns:?}");
    for row in central.stored_rows("proxy") {
        let keys: Vec<&String> = row.as_object().expect("a stored object").keys().collect();
        assert_eq!(keys, columns, "56 keys in the cache's column order");
        assert!(
            keys.iter()
                .all(|key| !key.contains("_hyp_") && !key.contains("rowid")),
            "no internal key: {keys:?}"
        );
        assert!(
            row["attributes"].is_object(),
            "attributes nested, not {}",
            row["attributes"]
        );
    }

    let run = sync(&env).assert_success();
    assert_eq!(report(&run)["status"], "nothing_to_send");
    assert_eq!(
        central.count(INGEST),
        requests.len(),
        "no request the second time"
    );
}

#[test]
fn a_large_export_is_cut_into_bounded_chunks_with_distinct_ids() {
    let central = FakeCentral::start();
    let env = joined_host(&central);
    let rows = history::write_history(&env, 5, 2000, 40);
    backfill(&env);

    sync(&env).assert_success();
    let requests = central.requests_to(INGEST);
    let largest_line = central
        .stored_text("proxy")
        .lines()
        .map(|line| line.len() as u64 + 1)
        .max()
        .expect("stored lines");
    assert!(requests.len() > 1, "{} requests", requests.len());
    for (index, request) in requests.iter().enumerate() {
        let bytes = request["body_bytes"].as_u64().expect("body_bytes");
        assert!(
            bytes <= 4 * MIB + largest_line,
            "request {index}: {bytes} bytes, over 4 MiB plus a line of {largest_line}"
        );
        assert!(
            lines(request) <= 5000,
            "request {index}: {} rows",
            lines(request)
        );
        if index + 1 < requests.len() {
            assert!(
                bytes >= 4 * MIB || lines(request) == 5000,
                "request {index} closed early: {bytes} bytes, {} rows",
                lines(request)
            );
        }
    }
    assert!(
        lines(&requests[0]) < 5000,
        "bytes close the first chunk of ~1 KB rows before 5000 rows"
    );
    let ids: BTreeSet<&str> = requests.iter().map(batch_id).collect();
    assert_eq!(ids.len(), requests.len(), "distinct batch ids");
    assert_eq!(requests.iter().map(lines).sum::<u64>(), rows);
    assert_stored_exactly_once(&env, &central);
}

#[test]
fn a_chunk_stored_but_never_acknowledged_is_resent_byte_for_byte_before_new_rows() {
    let central = FakeCentral::start();
    let env = joined_host(&central);
    history::write_history(&env, 2, 10, 100);
    let session = history::write_session(&env, "-home-u-repo", "s-gap-a", "/home/u/repo", 12, 80);
    backfill(&env);

    central.script_ingest(json!({"kind": "store_then_hold"}));
    let child = spawn_sync(&env);
    wait_until(WAIT, "central to store the chunk it holds", || {
        summary(&central, "stored_batches") == 1
    });
    sigkill(child);
    central.release();
    let held = central.requests_to(INGEST);
    assert_eq!(held.len(), 1, "one request before the kill");
    let held = &held[0];

    history::append_lines(&session, "s-gap-a", "/home/u/repo", 12, 5);
    backfill(&env);
    sync(&env).assert_success();
    let requests = central.requests_to(INGEST);
    assert!(requests.len() >= 3, "the replay, then the new rows");
    let replay = &requests[1];
    assert_eq!(batch_id(replay), batch_id(held), "the same batch id");
    assert_eq!(replay["body_sha256"], held["body_sha256"], "the same bytes");
    assert_eq!(summary(&central, "duplicate_batches"), 1);
    assert_stored_exactly_once(&env, &central);
}

#[test]
fn a_server_error_mid_export_is_partial_and_the_next_sync_finishes_without_resending_acked_chunks()
{
    let central = FakeCentral::start();
    let env = joined_host(&central);
    history::write_history(&env, 4, 500, 2500);
    backfill(&env);

    central.script_ingest(json!({"kind": "delay", "ms": 5}));
    central.script_ingest(json!({"kind": "status", "status": 500}));
    let first = sync(&env).assert_exit(1);
    let sink = report(&first);
    assert_eq!(sink["status"], "partial", "{sink}");
    assert!(sink["rows_sent"].as_u64() > Some(0), "{sink}");
    assert!(sink["pending_rows"].as_u64() > Some(0), "{sink}");
    let failed_run = central.requests_to(INGEST);
    let statuses: Vec<&Value> = failed_run.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [202, 500]);
    let (acked, refused) = (&failed_run[0], &failed_run[1]);

    let second = sync(&env).assert_success();
    assert_eq!(report(&second)["status"], "exported");
    let requests = central.requests_to(INGEST);
    let later = &requests[2..];
    assert_eq!(
        (batch_id(&later[0]), &later[0]["body_sha256"]),
        (batch_id(refused), &refused["body_sha256"]),
        "the failed chunk is sent again first, as it was"
    );
    assert!(
        later.iter().all(|r| batch_id(r) != batch_id(acked)),
        "the acknowledged chunk is not sent again"
    );
    assert_eq!(summary(&central, "duplicate_batches"), 0);
    assert_stored_exactly_once(&env, &central);
}

#[test]
fn twenty_daemon_kills_during_exports_lose_no_row_store_none_twice_and_leave_no_process() {
    const KILLS: usize = 20;
    let central = FakeCentral::start();
    let mut env = joined_host(&central);
    env.set_var("HYP_TIME_SCALE", "100");
    history::write_history(&env, 2, 30, 200);
    let session = history::write_session(&env, "-home-u-repo", "s-kill", "/home/u/repo", 10, 80);
    backfill(&env);
    // Each answer takes a while, so a kill lands inside an export.
    central.slow_ingest(150);
    let mut rng = Rng(0x5eed_f00d);
    let mut written = 10;
    for round in 0..KILLS {
        let seen = central.count(INGEST);
        if round % 4 == 3 {
            // This export's first request gets no answer: the child is
            // inside it when the daemon dies, and must die with it.
            central.script_ingest(json!({"kind": "hold"}));
        }
        let daemon = Daemon::start(&env);
        wait_until(WAIT, "the daemon's export to send", || {
            central.count(INGEST) > seen
        });
        // Where the kill lands (in a request, between chunks, after the
        // export), not a wait for anything.
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        daemon.kill();
        // Its children die with it (a held request would keep an orphan
        // for the 2 s request deadline).
        wait_until(
            Duration::from_secs(1),
            "no process of the killed daemon",
            || processes_of(&env).is_empty(),
        );
        central.clear_ingest_script();
        central.release();
        history::append_lines(&session, "s-kill", "/home/u/repo", written, 7);
        written += 7;
        backfill(&env);
    }
    central.slow_ingest(0);

    let daemon = Daemon::start(&env);
    let rows = cache_rows(&env);
    wait_until(WAIT, "every row stored", || {
        stored_part_ids(&central)
            .iter()
            .collect::<BTreeSet<_>>()
            .len()
            >= rows
    });
    daemon.stop();
    assert_eq!(processes_of(&env), Vec::<String>::new(), "no hyp left");
    assert_stored_exactly_once(&env, &central);
}

#[test]
fn a_sync_during_a_daemon_export_waits_for_it_and_never_overlaps() {
    let central = FakeCentral::start();
    let mut env = joined_host(&central);
    env.set_var("HYP_TIME_SCALE", "40");
    history::write_history(&env, 4, 2000, 40);
    backfill(&env);
    central.slow_ingest(300);

    let daemon = Daemon::start(&env);
    wait_until(WAIT, "the daemon's export to send", || {
        central.count(INGEST) >= 1
    });
    let run = sync(&env)
        .assert_success()
        .assert_stderr_contains("waiting for the export of 'central' already running");
    let status = report(&run)["status"].clone();
    assert!(
        status == "nothing_to_send" || status == "exported",
        "the sync sends what is left: {status}"
    );
    assert_eq!(
        summary(&central, "max_in_flight_by_gateway"),
        json!({"gw-1": 1})
    );
    daemon.stop();
    assert_stored_exactly_once(&env, &central);
}

#[test]
fn a_deleted_and_reimported_cache_sends_only_the_new_rows() {
    let central = FakeCentral::start();
    let env = joined_host(&central);
    history::write_history(&env, 3, 7, 120);
    backfill(&env);
    sync(&env).assert_success();

    let cache = env.state_root().join("cache");
    for name in ["cache.db", "cache.db-wal", "cache.db-shm", "generation"] {
        match std::fs::remove_file(cache.join(name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                panic!("remove {name}: {err}")
            }
            _ => {}
        }
    }
    history::write_session(&env, "-home-u-other", "s-new", "/home/u/other", 9, 100);
    backfill(&env);
    assert_eq!(
        cache_rows(&env),
        3 * 7 + 9,
        "the old history is imported again"
    );

    let before = central.count(INGEST);
    let run = sync(&env).assert_success();
    assert_eq!(report(&run)["rows_sent"], 9);
    let sent: u64 = central.requests_to(INGEST)[before..]
        .iter()
        .map(lines)
        .sum();
    assert_eq!(sent, 9, "only the new session's rows are sent");
    assert_stored_exactly_once(&env, &central);
}

#[test]
fn leaving_and_joining_another_central_sends_it_the_whole_cache_once_and_the_first_nothing() {
    let a = FakeCentral::start();
    let env = joined_host(&a);
    history::write_history(&env, 3, 7, 120);
    backfill(&env);
    sync(&env).assert_success();
    let a_requests = a.count(INGEST);
    let a_jwt = host_jwt(&env);

    env.hyp(["leave"]).assert_success();
    env.hyp(["sync", "--yes"])
        .assert_exit(1)
        .assert_stderr_contains("not joined");
    let b = FakeCentral::start();
    // B has issued a token before, so its JWTs differ from A's (the fakes
    // number their JWTs, and both name the gateway gw-1).
    b_issue_one_token(&b);
    env.hyp(["join", &b.url, "test-token"]).assert_success();
    let run = sync(&env).assert_success();
    assert_eq!(report(&run)["rows_sent"], 21);
    assert_stored_exactly_once(&env, &b);
    assert_eq!(a.count(INGEST), a_requests, "A receives nothing more");
    let b_jwt = host_jwt(&env);
    assert_ne!(a_jwt, b_jwt);
    for request in b.requests_to(INGEST) {
        assert_eq!(
            request["headers"]["authorization"],
            format!("Bearer {b_jwt}")
        );
    }

    let before = b.count(INGEST);
    let run = sync(&env).assert_success();
    assert_eq!(report(&run)["status"], "nothing_to_send");
    assert_eq!(b.count(INGEST), before, "the second sync sends nothing");
    assert_eq!(a.count(INGEST), a_requests);
}

fn b_issue_one_token(central: &FakeCentral) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = agent
        .post(format!("{}/v1/identity/bootstrap", central.url))
        .send(r#"{"bootstrap_token":"test-token"}"#)
        .expect("bootstrap")
        .status();
    assert_eq!(status.as_u16(), 200);
}

#[test]
fn a_sync_killed_while_its_request_goes_unanswered_is_resent_with_the_same_bytes_and_id() {
    let central = FakeCentral::start();
    let env = joined_host(&central);
    history::write_history(&env, 2, 10, 100);
    let session = history::write_session(&env, "-home-u-repo", "s-intent", "/home/u/repo", 8, 80);
    backfill(&env);

    central.script_ingest(json!({"kind": "hold"}));
    let child = spawn_sync(&env);
    wait_until(WAIT, "the request central holds", || {
        central.count(INGEST) == 1
    });
    sigkill(child);
    central.release();
    let held = central.requests_to(INGEST).remove(0);
    assert_eq!(summary(&central, "stored_batches"), 0, "nothing stored yet");

    // New rows: a chunk made afresh would differ from the one in flight.
    history::append_lines(&session, "s-intent", "/home/u/repo", 8, 4);
    backfill(&env);
    sync(&env).assert_success();
    let requests = central.requests_to(INGEST);
    assert!(requests.len() >= 3, "the resend, then the new rows");
    assert_eq!(batch_id(&requests[1]), batch_id(&held), "the same batch id");
    assert_eq!(
        requests[1]["body_sha256"], held["body_sha256"],
        "the same bytes"
    );
    assert_stored_exactly_once(&env, &central);
}
