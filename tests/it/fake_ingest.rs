//! The fake central's ingest side, spoken to over HTTP: what the exporter
//! tests lean on (store once per batch id and gateway, refuse what a real
//! server refuses, fail in each scripted way) must itself hold.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::fake_central::FakeCentral;
use crate::support::wait_until;

const BATCH_A: &str = "0123456789abcdef0123456789abcdef";
const BATCH_B: &str = "fedcba9876543210fedcba9876543210";
const WAIT: Duration = Duration::from_secs(10);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// An answer as the tests read it.
#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

/// POST `body` to `server.url` + `path` with exactly `headers`.
fn post(
    server: &FakeCentral,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let mut request = agent().post(format!("{}{path}", server.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send(body)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = response.into_body().read_to_string()?;
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// A JWT from `POST <prefix>/v1/identity/bootstrap`.
fn bootstrap(server: &FakeCentral, prefix: &str) -> String {
    let reply = post(
        server,
        &format!("{prefix}/v1/identity/bootstrap"),
        &[("Content-Type", "application/json")],
        br#"{"bootstrap_token":"test-token"}"#,
    )
    .expect("bootstrap");
    assert_eq!(reply.status, 200, "bootstrap: {reply:?}");
    let grant: Value = serde_json::from_str(&reply.body).expect("bootstrap answer is JSON");
    grant["jwt"].as_str().expect("a jwt").to_string()
}

/// A well-formed ingest request to `<prefix>/v1/ingest/proxy`.
fn ingest(
    server: &FakeCentral,
    jwt: &str,
    batch_id: &str,
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    ingest_at(server, "", jwt, batch_id, body)
}

fn ingest_at(
    server: &FakeCentral,
    prefix: &str,
    jwt: &str,
    batch_id: &str,
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let bearer = format!("Bearer {jwt}");
    post(
        server,
        &format!("{prefix}/v1/ingest/proxy"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/x-ndjson"),
            ("X-Hyp-Batch-Id", batch_id),
        ],
        body,
    )
}

/// An ingest request on its own thread, for answers that come late or never.
fn ingest_in_background(
    server: &FakeCentral,
    jwt: &str,
    batch_id: &str,
    body: &'static [u8],
) -> JoinHandle<Result<Reply, String>> {
    let url = server.url.clone();
    let bearer = format!("Bearer {jwt}");
    let batch_id = batch_id.to_string();
    std::thread::spawn(move || {
        let response = agent()
            .post(format!("{url}/v1/ingest/proxy"))
            .header("Authorization", &bearer)
            .header("Content-Type", "application/x-ndjson")
            .header("X-Hyp-Batch-Id", &batch_id)
            .send(body)
            .map_err(|err| err.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .read_to_string()
            .map_err(|err| err.to_string())?;
        Ok(Reply {
            status,
            retry_after: None,
            body,
        })
    })
}

fn finish<T>(handle: JoinHandle<T>) -> T {
    wait_until(WAIT, "the request thread to finish", || {
        handle.is_finished()
    });
    handle.join().expect("the request thread panicked")
}

fn summary_field(server: &FakeCentral, field: &str) -> Value {
    server.ingest_summary()[field].clone()
}

fn part_ids(rows: &[Value]) -> Vec<&str> {
    rows.iter()
        .map(|row| row["part_id"].as_str().expect("part_id"))
        .collect()
}

const TWO_ROWS: &[u8] = b"{\"part_id\":\"p1\",\"n\":1}\n{\"part_id\":\"p2\",\"n\":null}\n";
const ONE_ROW: &[u8] = b"{\"part_id\":\"p3\"}\n";

#[test]
fn a_batch_is_stored_once_and_its_repeat_is_acked() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    let first = ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap();
    assert_eq!((first.status, first.body.as_str()), (202, ""));
    let again = ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap();
    assert_eq!(again.status, 202);
    let other = ingest(&server, &jwt, BATCH_B, ONE_ROW).unwrap();
    assert_eq!(other.status, 202);

    assert_eq!(
        server.stored_text("proxy").as_bytes(),
        [TWO_ROWS, ONE_ROW].concat()
    );
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2", "p3"]);
    assert!(server.stored_rows("logs").is_empty());
    let summary = server.ingest_summary();
    assert_eq!(summary["requests"], 3);
    assert_eq!(summary["stored_batches"], 2);
    assert_eq!(summary["duplicate_batches"], 1);
    assert_eq!(summary["stored_rows"], 3);
    assert_eq!(summary["violations"], json!([]));
    assert_eq!(summary["data_dir"], server.data_dir().display().to_string());

    let ledger = std::fs::read_to_string(server.data_dir().join("ingest/ledger.jsonl")).unwrap();
    let ledger: Vec<Value> = ledger
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        ledger,
        [
            json!({"batch_id": BATCH_A, "gateway_id": "gw-1", "signal": "proxy", "rows": 2, "bytes": TWO_ROWS.len()}),
            json!({"batch_id": BATCH_B, "gateway_id": "gw-1", "signal": "proxy", "rows": 1, "bytes": ONE_ROW.len()}),
        ]
    );

    // The request log keeps a summary of an ingest body, not its text.
    let recorded = server.requests_to("/v1/ingest/proxy");
    assert_eq!(recorded.len(), 3);
    let sha: String = Sha256::digest(TWO_ROWS)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(recorded[0]["body"], Value::Null);
    assert_eq!(recorded[0]["body_bytes"], TWO_ROWS.len());
    assert_eq!(recorded[0]["body_lines"], 2);
    assert_eq!(recorded[0]["body_sha256"], sha);
    assert_eq!(recorded[0]["status"], 202);
    assert_eq!(recorded[0]["headers"]["x-hyp-batch-id"], BATCH_A);

    server.clear_ingest();
    let summary = server.ingest_summary();
    assert_eq!(
        (&summary["stored_batches"], &summary["requests"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(server.stored_text("proxy"), "");
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(summary_field(&server, "stored_batches"), 1);
}

#[test]
fn the_ledger_is_per_gateway() {
    let server = FakeCentral::start();
    let gw1 = bootstrap(&server, "");
    server.set_gateway_id("gw-2");
    let gw2 = bootstrap(&server, "");
    assert_eq!(
        ingest(&server, &gw1, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(
        ingest(&server, &gw2, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(
        ingest(&server, &gw2, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );

    let summary = server.ingest_summary();
    assert_eq!(summary["stored_batches"], 2);
    assert_eq!(summary["duplicate_batches"], 1);
    assert_eq!(
        summary["max_in_flight_by_gateway"],
        json!({"gw-1": 1, "gw-2": 1})
    );
    assert_eq!(
        part_ids(&server.stored_rows("proxy")),
        ["p1", "p2", "p1", "p2"]
    );
}

#[test]
fn ingest_needs_a_live_jwt_it_issued() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    let headers = [
        ("Content-Type", "application/x-ndjson"),
        ("X-Hyp-Batch-Id", BATCH_A),
    ];
    let anonymous = post(&server, "/v1/ingest/proxy", &headers, TWO_ROWS).unwrap();
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (401, r#"{"error":"unauthorized"}"#)
    );
    let forged = ingest(&server, "a.b.sig", BATCH_A, TWO_ROWS).unwrap();
    assert_eq!(forged.status, 401);
    // Auth comes before the wire checks: a bad request without a JWT is a 401.
    let bad = post(&server, "/v1/ingest/proxy", &[], b"").unwrap();
    assert_eq!(bad.status, 401);

    server.expire_tokens();
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        401
    );
    let summary = server.ingest_summary();
    assert_eq!(summary["stored_batches"], 0);
    assert_eq!(summary["violations"], json!([]));

    let fresh = bootstrap(&server, "");
    assert_eq!(
        ingest(&server, &fresh, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(summary_field(&server, "stored_batches"), 1);
}

/// A request that breaks one wire rule: the headers that differ from a good
/// request (`None` removes one), its body, the violation it must produce.
struct Violation {
    kind: &'static str,
    overrides: &'static [(&'static str, Option<&'static str>)],
    body: &'static [u8],
}

const VIOLATIONS: &[Violation] = &[
    Violation {
        kind: "bad_content_type",
        overrides: &[("Content-Type", Some("application/json"))],
        body: TWO_ROWS,
    },
    Violation {
        kind: "bad_content_type",
        overrides: &[("Content-Type", None)],
        body: TWO_ROWS,
    },
    Violation {
        kind: "bad_batch_id",
        overrides: &[("X-Hyp-Batch-Id", Some("0123456789ABCDEF0123456789ABCDEF"))],
        body: TWO_ROWS,
    },
    Violation {
        kind: "bad_batch_id",
        overrides: &[("X-Hyp-Batch-Id", Some("0123456789abcdef"))],
        body: TWO_ROWS,
    },
    Violation {
        kind: "bad_batch_id",
        overrides: &[("X-Hyp-Batch-Id", None)],
        body: TWO_ROWS,
    },
    Violation {
        kind: "content_encoding",
        overrides: &[("Content-Encoding", Some("gzip"))],
        body: TWO_ROWS,
    },
    Violation {
        kind: "empty_body",
        overrides: &[],
        body: b"",
    },
    Violation {
        kind: "invalid_utf8",
        overrides: &[],
        body: b"{\"a\":\"\xff\"}\n",
    },
    Violation {
        kind: "missing_final_newline",
        overrides: &[],
        body: b"{\"a\":1}",
    },
    Violation {
        kind: "bad_line",
        overrides: &[],
        body: b"{\"a\":1}\n[1]\n",
    },
    Violation {
        kind: "bad_line",
        overrides: &[],
        body: b"{\"a\":1}\n\n",
    },
    Violation {
        kind: "bad_line",
        overrides: &[],
        body: b"{\"a\":1} {\"b\":2}\n",
    },
    Violation {
        kind: "bad_line",
        overrides: &[],
        body: b"{\"a\":\n",
    },
];

#[test]
fn protocol_violations_are_refused_and_listed() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    let bearer = format!("Bearer {jwt}");
    for violation in VIOLATIONS {
        let mut headers = vec![
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/x-ndjson"),
            ("X-Hyp-Batch-Id", BATCH_A),
        ];
        for (name, value) in violation.overrides {
            headers.retain(|(known, _)| known != name);
            if let Some(value) = value {
                headers.push((name, value));
            }
        }
        let reply = post(&server, "/v1/ingest/proxy", &headers, violation.body).unwrap();
        assert_eq!(reply.status, 400, "{}: {reply:?}", violation.kind);
        let error: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(error, json!({ "error": violation.kind }));
    }

    let summary = server.ingest_summary();
    assert_eq!(summary["stored_batches"], 0);
    let listed: Vec<&str> = summary["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|violation| violation["kind"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = VIOLATIONS.iter().map(|violation| violation.kind).collect();
    assert_eq!(listed, expected);
    let violations = summary["violations"].as_array().unwrap();
    assert_eq!(violations[0]["batch_id"], BATCH_A);
    assert_eq!(violations[4]["batch_id"], Value::Null);
    assert!(
        violations[10]["detail"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{violations:?}"
    );

    // A chunked body (no Content-Length) is refused before it is read.
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST /v1/ingest/proxy HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nContent-Type: application/x-ndjson\r\nX-Hyp-Batch-Id: {BATCH_A}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.ends_with(r#"{"error":"chunked_body"}"#), "{answer}");

    // The same request done right is stored.
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(summary_field(&server, "stored_batches"), 1);
}

#[test]
fn a_refusal_marker_refuses_the_body() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.refuse_marker("POISON", 413);
    server.refuse_marker("BADROW", 422);
    let poisoned = b"{\"part_id\":\"p1\"}\n{\"part_id\":\"POISON\"}\n";
    let bad = b"{\"part_id\":\"BADROW\"}\n";

    let reply = ingest(&server, &jwt, BATCH_A, poisoned).unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (413, r#"{"error":"payload_too_large"}"#)
    );
    let reply = ingest(&server, &jwt, BATCH_B, bad).unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (422, r#"{"error":"bad_row"}"#)
    );
    server.refuse_marker("BADROW", 400);
    assert_eq!(ingest(&server, &jwt, BATCH_B, bad).unwrap().status, 400);
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );

    let summary = server.ingest_summary();
    assert_eq!(summary["refused"], 3);
    assert_eq!(summary["stored_batches"], 1);
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2"]);

    server.clear_refusals();
    assert_eq!(ingest(&server, &jwt, BATCH_B, bad).unwrap().status, 202);
    assert_eq!(summary_field(&server, "stored_batches"), 2);
}

#[test]
fn a_scripted_status_is_answered_and_nothing_stored() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "status", "status": 429, "retry_after": "2", "count": 2}));
    server.script_ingest(json!({"kind": "status", "status": 401}));
    server.script_ingest(json!({"kind": "status", "status": 503, "retry_after": 7}));

    for _ in 0..2 {
        let reply = ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap();
        assert_eq!(reply.status, 429);
        assert_eq!(reply.retry_after.as_deref(), Some("2"));
        assert_eq!(reply.body, r#"{"error":"scripted_failure"}"#);
    }
    let unauthorized = ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap();
    assert_eq!((unauthorized.status, unauthorized.retry_after), (401, None));
    let unavailable = ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap();
    assert_eq!(unavailable.status, 503);
    assert_eq!(unavailable.retry_after.as_deref(), Some("7"));
    assert_eq!(summary_field(&server, "stored_batches"), 0);

    // The scripted 401 left the JWT valid; the queue is empty now.
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    server.script_ingest(json!({"kind": "status", "status": 500}));
    server.clear_ingest_script();
    assert_eq!(ingest(&server, &jwt, BATCH_B, ONE_ROW).unwrap().status, 202);
    let statuses: Vec<Value> = server
        .requests_to("/v1/ingest/proxy")
        .iter()
        .map(|request| request["status"].clone())
        .collect();
    assert_eq!(statuses, [429, 429, 401, 503, 202, 202]);
    assert_eq!(summary_field(&server, "stored_batches"), 2);
}

#[test]
fn down_closes_the_connection_without_an_answer() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "down"}));
    assert!(ingest(&server, &jwt, BATCH_A, TWO_ROWS).is_err());
    assert_eq!(summary_field(&server, "stored_batches"), 0);
    assert_eq!(server.requests_to("/v1/ingest/proxy")[0]["status"], 0);
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
}

#[test]
fn hold_lasts_until_release_and_stores_nothing() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "hold", "ms": 60_000}));
    let request = ingest_in_background(&server, &jwt, BATCH_A, TWO_ROWS);
    wait_until(WAIT, "the request to be held", || {
        summary_field(&server, "in_flight") == 1
    });
    assert!(!request.is_finished(), "a held request was answered");
    assert_eq!(server.requests_to("/v1/ingest/proxy")[0]["status"], 0);

    let released = Instant::now();
    server.release();
    let outcome = finish(request);
    assert!(outcome.is_err(), "a held request got {outcome:?}");
    assert!(released.elapsed() < WAIT);
    let summary = server.ingest_summary();
    assert_eq!(
        (&summary["in_flight"], &summary["stored_batches"]),
        (&json!(0), &json!(0))
    );
}

#[test]
fn a_hold_ends_by_itself_after_its_ms() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "hold", "ms": 200}));
    let started = Instant::now();
    assert!(ingest(&server, &jwt, BATCH_A, TWO_ROWS).is_err());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(summary_field(&server, "stored_batches"), 0);
}

#[test]
fn store_then_hold_stores_and_never_answers() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "store_then_hold"}));
    let request = ingest_in_background(&server, &jwt, BATCH_A, TWO_ROWS);
    wait_until(WAIT, "the batch to be stored", || {
        summary_field(&server, "stored_batches") == 1
    });
    assert!(!request.is_finished(), "the stored batch was answered");
    assert_eq!(summary_field(&server, "in_flight"), 1);
    assert_eq!(server.requests_to("/v1/ingest/proxy")[0]["status"], 0);

    server.release();
    assert!(finish(request).is_err());
    // The client never heard, so it resends: acked, not stored again.
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    let summary = server.ingest_summary();
    assert_eq!(summary["stored_batches"], 1);
    assert_eq!(summary["duplicate_batches"], 1);
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2"]);
}

#[test]
fn delay_and_slowness_answer_late_after_storing() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "delay", "ms": 300}));
    let started = Instant::now();
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    server.slow_ingest(300);
    let started = Instant::now();
    let request = ingest_in_background(&server, &jwt, BATCH_B, ONE_ROW);
    wait_until(WAIT, "the slow batch to be stored and logged", || {
        summary_field(&server, "stored_batches") == 2
            && server.requests_to("/v1/ingest/proxy").len() == 2
    });
    assert_eq!(
        server.requests_to("/v1/ingest/proxy")[1]["status"],
        0,
        "answered before the slowness passed"
    );
    let reply = finish(request).unwrap();
    assert_eq!(reply.status, 202);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let statuses: Vec<Value> = server
        .requests_to("/v1/ingest/proxy")
        .iter()
        .map(|request| request["status"].clone())
        .collect();
    assert_eq!(statuses, [202, 202]);

    server.slow_ingest(0);
    let started = Instant::now();
    assert_eq!(ingest(&server, &jwt, BATCH_B, ONE_ROW).unwrap().status, 202);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[test]
fn every_protocol_route_takes_a_path_prefix() {
    let server = FakeCentral::start();
    let prefix = "/tenant-a";
    let jwt = bootstrap(&server, prefix);
    let bearer = format!("Bearer {jwt}");
    let refreshed = post(
        &server,
        &format!("{prefix}/v1/identity/refresh"),
        &[("Authorization", &bearer)],
        b"",
    )
    .unwrap();
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    server.serve("rev-1", &json!({"version": 2}));
    let config = agent()
        .get(format!("{}{prefix}/v1/config", server.url))
        .header("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(config.status().as_u16(), 200);
    assert_eq!(
        ingest_at(&server, prefix, &jwt, BATCH_A, TWO_ROWS)
            .unwrap()
            .status,
        202
    );
    let unknown = post(
        &server,
        &format!("{prefix}/v1/ingest/claude_telemetry"),
        &[("Authorization", &bearer)],
        TWO_ROWS,
    )
    .unwrap();
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, r#"{"error":"unknown_signal"}"#)
    );

    let paths: Vec<Value> = server
        .requests()
        .iter()
        .map(|request| request["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/tenant-a/v1/identity/bootstrap",
            "/tenant-a/v1/identity/refresh",
            "/tenant-a/v1/config",
            "/tenant-a/v1/ingest/proxy",
            "/tenant-a/v1/ingest/claude_telemetry",
        ]
    );
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2"]);
}

#[test]
fn two_held_requests_are_in_flight_together() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    server.script_ingest(json!({"kind": "hold", "count": 2}));
    let first = ingest_in_background(&server, &jwt, BATCH_A, TWO_ROWS);
    let second = ingest_in_background(&server, &jwt, BATCH_B, ONE_ROW);
    wait_until(WAIT, "two requests in flight", || {
        summary_field(&server, "in_flight") == 2
    });
    server.release();
    assert!(finish(first).is_err());
    assert!(finish(second).is_err());
    wait_until(WAIT, "nothing in flight", || {
        summary_field(&server, "in_flight") == 0
    });
    let summary = server.ingest_summary();
    assert_eq!(summary["max_in_flight"], 2);
    assert_eq!(summary["max_in_flight_by_gateway"], json!({"gw-1": 2}));

    // One at a time stays one.
    server.clear_ingest();
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(ingest(&server, &jwt, BATCH_B, ONE_ROW).unwrap().status, 202);
    assert_eq!(summary_field(&server, "max_in_flight"), 1);
}

#[test]
fn a_restart_on_the_same_data_dir_keeps_the_ledger_and_the_jwts() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut server = FakeCentral::start_with_data_dir(data_dir.path());
    let jwt = bootstrap(&server, "");
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );

    server.kill();
    assert!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).is_err(),
        "central is down"
    );
    // A kill between a body and its ledger line leaves bytes no ledger line
    // covers, and a torn ledger line: never acknowledged, so dropped.
    let ingest_dir = data_dir.path().join("ingest");
    let mut proxy = std::fs::OpenOptions::new()
        .append(true)
        .open(ingest_dir.join("proxy.ndjson"))
        .unwrap();
    proxy.write_all(b"{\"part_id\":\"unacked\"}\n").unwrap();
    let mut ledger = std::fs::OpenOptions::new()
        .append(true)
        .open(ingest_dir.join("ledger.jsonl"))
        .unwrap();
    ledger.write_all(b"{\"batch_id\":\"fedc").unwrap();
    server.restart();

    let summary = server.ingest_summary();
    assert_eq!(summary["stored_batches"], 1);
    assert_eq!(summary["stored_rows"], 2);
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2"]);
    // The JWT issued before the restart still works, and the batch stays stored once.
    assert_eq!(
        ingest(&server, &jwt, BATCH_A, TWO_ROWS).unwrap().status,
        202
    );
    assert_eq!(ingest(&server, &jwt, BATCH_B, ONE_ROW).unwrap().status, 202);
    let summary = server.ingest_summary();
    assert_eq!(summary["duplicate_batches"], 1);
    assert_eq!(summary["stored_batches"], 2);
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2", "p3"]);
    let ledger = std::fs::read_to_string(ingest_dir.join("ledger.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 2, "{ledger}");

    // Expired JWTs stay expired across a restart; a refresh still works.
    server.expire_tokens();
    server.restart();
    assert_eq!(ingest(&server, &jwt, BATCH_B, ONE_ROW).unwrap().status, 401);
    let refreshed = post(
        &server,
        "/v1/identity/refresh",
        &[("Authorization", &format!("Bearer {jwt}"))],
        b"",
    )
    .unwrap();
    assert_eq!(refreshed.status, 200);
}

#[test]
fn a_body_over_64_mib_is_413_without_being_read() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    let over = 64 * 1024 * 1024 + 1;
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST /v1/ingest/proxy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {jwt}\r\nContent-Type: application/x-ndjson\r\nX-Hyp-Batch-Id: {BATCH_A}\r\nContent-Length: {over}\r\n\r\n"
    )
    .unwrap();
    // No body is sent: the answer must come without it.
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    drop(stream);

    let summary = server.ingest_summary();
    assert_eq!(
        (&summary["refused"], &summary["stored_batches"]),
        (&json!(1), &json!(0))
    );
    let recorded = &server.requests_to("/v1/ingest/proxy")[0];
    assert_eq!(recorded["status"], 413);
    assert_eq!(recorded["body_bytes"], over);
    assert_eq!(recorded["body_sha256"], Value::Null);

    // Bodies over the admin cap (16 MiB) but under 64 MiB are stored whole.
    let row = format!(
        "{{\"part_id\":\"big\",\"pad\":\"{}\"}}\n",
        "x".repeat(1024 * 1024)
    );
    let body = row.repeat(17);
    assert_eq!(
        ingest(&server, &jwt, BATCH_B, body.as_bytes())
            .unwrap()
            .status,
        202
    );
    let stored = server.stored_text("proxy");
    assert_eq!(stored.len(), body.len());
    assert!(stored == body, "the stored body differs");
    assert_eq!(summary_field(&server, "stored_rows"), 17);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = FakeCentral::start();
    let jwt = bootstrap(&server, "");
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST /v1/ingest/proxy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {jwt}\r\nContent-Type: application/x-ndjson\r\nX-Hyp-Batch-Id: {BATCH_A}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        TWO_ROWS.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(TWO_ROWS).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");
    assert_eq!(part_ids(&server.stored_rows("proxy")), ["p1", "p2"]);
}
