//! The ingest side of the fake: `POST <prefix>/v1/ingest/<signal>` and the
//! `/_admin/ingest…` API that scripts and observes it. Tests use it to check
//! that every row reaches central exactly once, so it checks the wire as a
//! real server would (listing what it refuses), dedupes by batch id per
//! gateway as the real ledger does, and can fail in each way a client must
//! survive. The order of the checks is the file header's.
//!
//! It must not be the bottleneck of `make bench` (about 600 MB on a 2-core
//! machine): a body is read into one buffer sized by its `Content-Length`,
//! validated without an allocation per line, and appended in one write; the
//! state mutex is never held while validating or writing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::time::Duration;

use serde::de::IgnoredAny;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::store::{Appended, Batch};
use crate::{
    Answer, Request, Server, hold, protocol_path, record, send_continue, set_recorded_status,
    write_answer,
};

/// The largest body stored; the real server's default cap is 64 MB.
const MAX_INGEST_BODY: u64 = 64 * 1024 * 1024;
/// How long a `hold` or `store_then_hold` lasts without a release.
const DEFAULT_HOLD_MS: u64 = 60_000;

/// The four signals central ingests (reference forward-sink.md §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Proxy = 0,
    Logs = 1,
    Traces = 2,
    Metrics = 3,
}

impl Signal {
    pub const ALL: [Signal; 4] = [Signal::Proxy, Signal::Logs, Signal::Traces, Signal::Metrics];

    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL
            .into_iter()
            .find(|signal| signal.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Proxy => "proxy",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

/// One scripted ingest behaviour (`POST /_admin/ingest/fail`).
#[derive(Clone, Debug)]
enum Scripted {
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    Down,
    Hold {
        ms: u64,
    },
    StoreThenHold {
        ms: u64,
    },
    Delay {
        ms: u64,
    },
}

/// A body containing `marker` is refused with `status`.
#[derive(Clone)]
struct Refusal {
    marker: String,
    status: u16,
}

/// What the ingest side counts; `DELETE /_admin/ingest` resets it.
#[derive(Default)]
struct Counters {
    requests: u64,
    stored_batches: u64,
    duplicate_batches: u64,
    stored_rows: u64,
    refused: u64,
    in_flight: u64,
    max_in_flight: u64,
    in_flight_by_gateway: HashMap<String, u64>,
    max_in_flight_by_gateway: BTreeMap<String, u64>,
    violations: Vec<Value>,
}

/// The ingest part of the server state (under the state mutex).
#[derive(Default)]
pub struct IngestState {
    script: VecDeque<Scripted>,
    refusals: Vec<Refusal>,
    slow_ms: u64,
    /// Bumped by `POST /_admin/ingest/release`: a hold ends when it moves.
    releases: u64,
    counters: Counters,
}

impl IngestState {
    /// The state of a server whose store already holds these totals.
    pub fn with_stored(stored_batches: u64, stored_rows: u64) -> IngestState {
        IngestState {
            counters: Counters {
                stored_batches,
                stored_rows,
                ..Counters::default()
            },
            ..IngestState::default()
        }
    }

    pub fn releases(&self) -> u64 {
        self.releases
    }
}

/// The signal name of an ingest route (any path prefix before `/v1/`).
pub fn route(path: &str) -> Option<&str> {
    protocol_path(path).strip_prefix("/v1/ingest/")
}

/// What the recorded request says about its body instead of its text.
struct BodySummary {
    bytes: u64,
    lines: Option<u64>,
    sha256: Option<String>,
}

impl BodySummary {
    fn of(body: &[u8]) -> BodySummary {
        let newlines = count_newlines(body);
        let unterminated = body.last().is_some_and(|byte| *byte != b'\n');
        let digest = Sha256::digest(body);
        BodySummary {
            bytes: body.len() as u64,
            lines: Some(newlines + u64::from(unterminated)),
            sha256: Some(hyp::hex::hex(&digest)),
        }
    }

    /// A body that was never read.
    fn unread(bytes: u64) -> BodySummary {
        BodySummary {
            bytes,
            lines: None,
            sha256: None,
        }
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|byte| **byte == b'\n').count() as u64
}

/// Counts one ingest request in flight from the moment its head is read
/// until its answer or hold is over (the guard drops).
struct InFlight<'a> {
    server: &'a Server,
    gateway_id: Option<String>,
}

impl<'a> InFlight<'a> {
    fn enter(server: &'a Server, gateway_id: Option<String>) -> InFlight<'a> {
        let mut state = server.lock();
        let counters = &mut state.ingest.counters;
        counters.requests += 1;
        counters.in_flight += 1;
        counters.max_in_flight = counters.max_in_flight.max(counters.in_flight);
        if let Some(gateway_id) = &gateway_id {
            let now = counters
                .in_flight_by_gateway
                .entry(gateway_id.clone())
                .or_default();
            *now += 1;
            let max = counters
                .max_in_flight_by_gateway
                .entry(gateway_id.clone())
                .or_default();
            *max = (*max).max(*now);
        }
        InFlight { server, gateway_id }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.server.lock();
        let counters = &mut state.ingest.counters;
        counters.in_flight = counters.in_flight.saturating_sub(1);
        if let Some(gateway_id) = &self.gateway_id
            && let Some(now) = counters.in_flight_by_gateway.get_mut(gateway_id)
        {
            *now = now.saturating_sub(1);
        }
    }
}

/// Serve one ingest request whose head `request` was read from `reader`.
pub fn serve<S: Read + Write>(
    server: &Server,
    mut request: Request,
    signal: &str,
    reader: &mut BufReader<S>,
) {
    let gateway_id = request.bearer().and_then(|jwt| {
        let state = server.lock();
        state
            .issued
            .get(jwt)
            .map(|issued| issued.gateway_id.clone())
    });
    let in_flight = InFlight::enter(server, gateway_id);
    if request.header("transfer-encoding").is_some() {
        let violation = Violation::new(
            "chunked_body",
            "the body has no Content-Length (Transfer-Encoding)",
        );
        let answer = violation.report(server, &request);
        record(
            server,
            entry(&request, &BodySummary::unread(0), answer.status()),
        );
        write_answer(server, reader.get_mut(), answer);
        return;
    }
    let declared: u64 = request
        .header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    if declared > MAX_INGEST_BODY {
        refuse_oversized(server, &request, declared, reader);
        return;
    }
    let mut body = vec![0; declared as usize];
    send_continue(&request, reader.get_mut());
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    request.body = body;
    if checks_after_answering() {
        // Bench mode: answer as soon as the body is stored, then do the
        // line-by-line checks and the request log's digest.
        let reply = decide(server, &request, signal);
        let status = reply.answer.status();
        write_answer(server, reader.get_mut(), reply.answer);
        drop(in_flight);
        if (200..300).contains(&status)
            && let Err(violation) = check_body(&request.body)
        {
            let _ = violation.report(server, &request);
        }
        record(
            server,
            entry(&request, &BodySummary::of(&request.body), status),
        );
        return;
    }
    let summary = BodySummary::of(&request.body);
    let reply = decide(server, &request, signal);
    let status = reply.answer.status();
    if reply.delay.is_zero() {
        record(server, entry(&request, &summary, status));
    } else {
        let id = record(server, entry(&request, &summary, 0));
        hold(server, |_| true, reply.delay);
        set_recorded_status(server, id, status);
    }
    write_answer(server, reader.get_mut(), reply.answer);
}

/// `--check-after-answering`: see [`serve`].
static CHECK_AFTER_ANSWERING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub fn check_after_answering() {
    CHECK_AFTER_ANSWERING.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn checks_after_answering() -> bool {
    CHECK_AFTER_ANSWERING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Answer 413 without buffering the body, then read it away so that
/// closing the connection does not reset it under the client's feet.
fn refuse_oversized<S: Read + Write>(
    server: &Server,
    request: &Request,
    declared: u64,
    reader: &mut BufReader<S>,
) {
    server.lock().ingest.counters.refused += 1;
    let answer = Answer::json(413, json!({"error": "payload_too_large"}));
    record(server, entry(request, &BodySummary::unread(declared), 413));
    write_answer(server, reader.get_mut(), answer);
    let _ = io::copy(&mut reader.take(declared), &mut io::sink());
}

/// The recorded form of an ingest request: no body text, a summary instead.
fn entry(request: &Request, summary: &BodySummary, status: u16) -> Value {
    json!({
        "method": request.method,
        "path": request.path,
        "headers": request.headers,
        "status": status,
        "body": null,
        "body_bytes": summary.bytes,
        "body_lines": summary.lines,
        "body_sha256": summary.sha256,
    })
}

/// An answer, sent after `delay` (a scripted delay plus the slowness knob).
struct Reply {
    answer: Answer,
    delay: Duration,
}

impl Reply {
    fn now(answer: Answer) -> Reply {
        Reply {
            answer,
            delay: Duration::ZERO,
        }
    }
}

/// Steps 1 to 6 of the header: the script first, then `process`.
fn decide(server: &Server, request: &Request, signal: &str) -> Reply {
    let Some(signal) = Signal::parse(signal) else {
        return Reply::now(Answer::json(404, json!({"error": "unknown_signal"})));
    };
    let (scripted, slow, releases) = {
        let mut state = server.lock();
        if state.silent {
            return Reply::now(Answer::HoldWhileSilent);
        }
        let ingest = &mut state.ingest;
        (ingest.script.pop_front(), ingest.slow_ms, ingest.releases)
    };
    let slow = Duration::from_millis(slow);
    let hold_for = |ms| Answer::HoldUntilRelease {
        since: releases,
        limit: Duration::from_millis(ms),
    };
    match scripted {
        None => Reply {
            answer: process(server, request, signal),
            delay: slow,
        },
        Some(Scripted::Status {
            status,
            retry_after,
        }) => Reply {
            answer: crate::status_answer(status, retry_after),
            delay: slow,
        },
        Some(Scripted::Down) => Reply::now(Answer::Close),
        Some(Scripted::Hold { ms }) => Reply::now(hold_for(ms)),
        Some(Scripted::StoreThenHold { ms }) => {
            let _ = process(server, request, signal);
            Reply::now(hold_for(ms))
        }
        Some(Scripted::Delay { ms }) => Reply {
            answer: process(server, request, signal),
            delay: slow + Duration::from_millis(ms),
        },
    }
}

/// Auth, protocol checks, refusal markers, ledger, store (steps 2 to 6).
fn process(server: &Server, request: &Request, signal: Signal) -> Answer {
    let gateway_id = request.bearer().and_then(|jwt| {
        let state = server.lock();
        state
            .issued
            .get(jwt)
            .filter(|issued| !issued.expired)
            .map(|issued| issued.gateway_id.clone())
    });
    let Some(gateway_id) = gateway_id else {
        return Answer::json(401, json!({"error": "unauthorized"}));
    };
    let rows = match check_protocol(request) {
        Ok(rows) => rows,
        Err(violation) => return violation.report(server, request),
    };
    if let Some(refusal) = find_refusal(server, &request.body) {
        server.lock().ingest.counters.refused += 1;
        let error = if refusal.status == 413 {
            "payload_too_large"
        } else {
            "bad_row"
        };
        return Answer::json(refusal.status, json!({"error": error}));
    }
    let batch = Batch {
        gateway_id: &gateway_id,
        batch_id: request.header("x-hyp-batch-id").unwrap_or_default(),
        signal,
        rows,
        body: &request.body,
    };
    store(server, &batch)
}

/// Steps 5 and 6: the ledger, then the files. The counters move under the
/// store lock, so `DELETE /_admin/ingest` never sees one without the other.
fn store(server: &Server, batch: &Batch) -> Answer {
    let mut store = server.store();
    match store.append(batch) {
        Ok(Appended::Stored) => {
            let counters = &mut server.lock().ingest.counters;
            counters.stored_batches += 1;
            counters.stored_rows += batch.rows;
            Answer::Raw {
                status: 202,
                headers: Vec::new(),
                body: Vec::new(),
            }
        }
        Ok(Appended::Duplicate) => {
            server.lock().ingest.counters.duplicate_batches += 1;
            Answer::Raw {
                status: 202,
                headers: Vec::new(),
                body: Vec::new(),
            }
        }
        Err(err) => {
            eprintln!("hyp-fake-central: cannot store a batch: {err}");
            Answer::json(500, json!({"error": "storage_failed"}))
        }
    }
}

/// A request a real server would refuse (step 3).
struct Violation {
    kind: &'static str,
    detail: String,
}

impl Violation {
    fn new(kind: &'static str, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            detail: detail.into(),
        }
    }

    /// List it for `GET /_admin/ingest` and answer 400 with its kind.
    fn report(self, server: &Server, request: &Request) -> Answer {
        let listed = json!({
            "kind": self.kind,
            "batch_id": request.header("x-hyp-batch-id"),
            "detail": self.detail,
        });
        server.lock().ingest.counters.violations.push(listed);
        Answer::json(400, json!({"error": self.kind}))
    }
}

/// The wire checks of CONTRACT.md §12; the number of rows when they pass.
fn check_protocol(request: &Request) -> Result<u64, Violation> {
    match request.header("content-type") {
        Some("application/x-ndjson") => {}
        other => {
            return Err(Violation::new(
                "bad_content_type",
                format!("Content-Type is {other:?}, expected \"application/x-ndjson\""),
            ));
        }
    }
    let batch_id = request.header("x-hyp-batch-id");
    if !batch_id.is_some_and(is_batch_id) {
        return Err(Violation::new(
            "bad_batch_id",
            format!("X-Hyp-Batch-Id is {batch_id:?}, expected 32 lowercase hex characters"),
        ));
    }
    if let Some(encoding) = request.header("content-encoding") {
        return Err(Violation::new(
            "content_encoding",
            format!("Content-Encoding {encoding:?}: the body must not be encoded"),
        ));
    }
    if checks_after_answering() {
        return quick_check_body(&request.body);
    }
    check_body(&request.body)
}

/// What [`check_body`] checks before the lines are parsed: the row count
/// of a non-empty UTF-8 body ending in `\n`.
fn quick_check_body(body: &[u8]) -> Result<u64, Violation> {
    if body.is_empty() {
        return Err(Violation::new("empty_body", "the body is empty"));
    }
    if body.last() != Some(&b'\n') {
        return Err(Violation::new(
            "missing_final_newline",
            "the last line does not end in \\n",
        ));
    }
    Ok(body.iter().filter(|byte| **byte == b'\n').count() as u64)
}

fn is_batch_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// NDJSON: UTF-8, every line a JSON object ending in `\n`. Each line is
/// parsed into `IgnoredAny`, so nothing is built per line.
fn check_body(body: &[u8]) -> Result<u64, Violation> {
    if body.is_empty() {
        return Err(Violation::new("empty_body", "the body is empty"));
    }
    let text = std::str::from_utf8(body).map_err(|err| {
        Violation::new(
            "invalid_utf8",
            format!("the body is not UTF-8 at byte {}", err.valid_up_to()),
        )
    })?;
    let Some(text) = text.strip_suffix('\n') else {
        return Err(Violation::new(
            "missing_final_newline",
            "the last line does not end in \\n",
        ));
    };
    let mut rows = 0;
    for line in text.split('\n') {
        rows += 1;
        if !line.trim_ascii_start().starts_with('{') {
            return Err(Violation::new(
                "bad_line",
                format!("line {rows} is not a JSON object"),
            ));
        }
        if let Err(err) = serde_json::from_str::<IgnoredAny>(line) {
            return Err(Violation::new("bad_line", format!("line {rows}: {err}")));
        }
    }
    Ok(rows)
}

/// The first refusal whose marker the body contains (searched outside the
/// lock; the body is UTF-8 by now).
fn find_refusal(server: &Server, body: &[u8]) -> Option<Refusal> {
    let refusals = server.lock().ingest.refusals.clone();
    if refusals.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    refusals
        .into_iter()
        .find(|refusal| text.contains(refusal.marker.as_str()))
}

/// `/_admin/ingest…`; `None` for any other admin path.
pub fn admin_route(server: &Server, request: &Request) -> Option<Answer> {
    let ok = || Answer::json(200, json!({"ok": true}));
    let answer = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/_admin/ingest") => Answer::json(200, summary(server)),
        ("DELETE", "/_admin/ingest") => match clear(server) {
            Ok(()) => ok(),
            Err(err) => Answer::json(500, json!({"error": err.to_string()})),
        },
        ("GET", "/_admin/ingest/rows") => stored_rows(server, request),
        ("POST", "/_admin/ingest/fail") => match parse_scripted(&request.json()) {
            Ok((scripted, count)) => {
                let script = &mut server.lock().ingest.script;
                script.extend(std::iter::repeat_n(scripted, count));
                ok()
            }
            Err(message) => Answer::json(400, json!({"error": message})),
        },
        ("DELETE", "/_admin/ingest/fail") => {
            server.lock().ingest.script.clear();
            ok()
        }
        ("POST", "/_admin/ingest/release") => {
            server.lock().ingest.releases += 1;
            ok()
        }
        ("POST", "/_admin/ingest/slow") => match request.json()["ms"].as_u64() {
            Some(ms) => {
                server.lock().ingest.slow_ms = ms;
                ok()
            }
            None => Answer::json(400, json!({"error": "ms expects milliseconds"})),
        },
        ("POST", "/_admin/ingest/refuse") => match parse_refusal(&request.json()) {
            Ok(refusal) => {
                let refusals = &mut server.lock().ingest.refusals;
                refusals.retain(|known| known.marker != refusal.marker);
                refusals.push(refusal);
                ok()
            }
            Err(message) => Answer::json(400, json!({"error": message})),
        },
        ("DELETE", "/_admin/ingest/refuse") => {
            server.lock().ingest.refusals.clear();
            ok()
        }
        _ => return None,
    };
    Some(answer)
}

fn summary(server: &Server) -> Value {
    let state = server.lock();
    let counters = &state.ingest.counters;
    json!({
        "data_dir": server.data_dir.display().to_string(),
        "requests": counters.requests,
        "stored_batches": counters.stored_batches,
        "duplicate_batches": counters.duplicate_batches,
        "stored_rows": counters.stored_rows,
        "refused": counters.refused,
        "in_flight": counters.in_flight,
        "max_in_flight": counters.max_in_flight,
        "max_in_flight_by_gateway": counters.max_in_flight_by_gateway,
        "violations": counters.violations,
    })
}

/// Empty the store and reset the counters; requests in flight stay counted.
fn clear(server: &Server) -> io::Result<()> {
    let mut store = server.store();
    store.clear()?;
    let counters = &mut server.lock().ingest.counters;
    let in_flight_by_gateway = std::mem::take(&mut counters.in_flight_by_gateway);
    *counters = Counters {
        in_flight: counters.in_flight,
        max_in_flight: counters.in_flight,
        max_in_flight_by_gateway: in_flight_by_gateway
            .iter()
            .filter(|(_, now)| **now > 0)
            .map(|(gateway_id, now)| (gateway_id.clone(), *now))
            .collect(),
        in_flight_by_gateway,
        ..Counters::default()
    };
    Ok(())
}

/// `GET /_admin/ingest/rows?signal=S`: the signal's file, streamed.
fn stored_rows(server: &Server, request: &Request) -> Answer {
    let name = request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("signal="))
        .unwrap_or_default();
    let Some(signal) = Signal::parse(name) else {
        return Answer::json(404, json!({"error": "unknown_signal"}));
    };
    match server.store().rows(signal) {
        Ok((file, len)) => Answer::File { file, len },
        Err(err) => Answer::json(500, json!({"error": err.to_string()})),
    }
}

fn parse_refusal(body: &Value) -> Result<Refusal, String> {
    let marker = body["marker"]
        .as_str()
        .filter(|marker| !marker.is_empty())
        .ok_or("marker expects a non-empty string")?;
    let status = match body["status"].as_u64() {
        None => 400,
        Some(status @ (400 | 413 | 422)) => status as u16,
        Some(_) => return Err("status expects 400, 413 or 422".into()),
    };
    Ok(Refusal {
        marker: marker.to_string(),
        status,
    })
}

/// A script entry and how many times to queue it.
fn parse_scripted(body: &Value) -> Result<(Scripted, usize), String> {
    let count = body["count"].as_u64().unwrap_or(1) as usize;
    let ms = |default: Option<u64>| {
        body["ms"]
            .as_u64()
            .or(default)
            .ok_or("ms expects milliseconds")
    };
    let scripted = match body["kind"].as_str().unwrap_or_default() {
        "status" => {
            let (status, retry_after) = crate::parse_status(body)?;
            Scripted::Status {
                status,
                retry_after,
            }
        }
        "down" => Scripted::Down,
        "hold" => Scripted::Hold {
            ms: ms(Some(DEFAULT_HOLD_MS))?,
        },
        "store_then_hold" => Scripted::StoreThenHold {
            ms: ms(Some(DEFAULT_HOLD_MS))?,
        },
        "delay" => Scripted::Delay { ms: ms(None)? },
        other => return Err(format!("unknown ingest failure kind '{other}'")),
    };
    Ok((scripted, count))
}
