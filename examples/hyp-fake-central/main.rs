//! `hyp-fake-central`: a scriptable stand-in for the HypAware central server,
//! for the integration tests, the smoke flows, `make demo` and `make bench`.
//! It speaks the real protocol on 127.0.0.1 only (std::net, one thread per
//! connection, `Connection: close` on every answer), records every request,
//! and stores what it ingests, deduplicated by batch id, so a test can check
//! that every row reached central exactly once.
//!
//! # Running
//!
//! ```text
//! hyp-fake-central [--port N] [--url-file F] [--token T]... [--data-dir D]
//!                  [--check-after-answering] [--exit-on-stdin-eof]
//!                  [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! - `--port N`: port on 127.0.0.1 (default 0 = an ephemeral port).
//! - `--url-file F`: also write the base URL (`http://127.0.0.1:PORT`, no
//!   newline) to F once listening.
//! - `--token T`: a bootstrap token the server accepts (repeatable; default
//!   `test-token`).
//! - `--data-dir D`: where ingested rows, the batch ledger and the issued
//!   JWTs are kept (created if absent; layout below). A server restarted on
//!   the same `--port` and `--data-dir` (tests kill and restart it to play
//!   "central down") still deduplicates and still honours the JWTs it
//!   issued; scripts, knobs, the served config and the request log start
//!   empty. Without it, a fresh directory under the system temp dir, removed
//!   again on a clean exit (SIGTERM, SIGINT, shutdown, stdin EOF).
//! - `--check-after-answering`: for `make bench`, answer an ingest request
//!   as soon as its body is stored, then parse its lines (a violation is
//!   still listed, but the request was already answered 202) and log it, so
//!   the server's checks, which a real central runs on its own machine, do
//!   not hold the client between chunks on a 2-core box.
//! - `--exit-on-stdin-eof`: exit 0 when stdin reaches EOF (for a parent that
//!   wants the server to die with it; off by default so `</dev/null` works).
//! - `--tls-cert PEM --tls-key PEM`: speak HTTPS (admin API included) with
//!   this certificate chain and key; the URL then starts `https://`.
//!
//! The first stdout line is `listening on http://127.0.0.1:PORT` (`https`
//! with TLS). SIGTERM and SIGINT exit 0; so does `POST /_admin/shutdown`.
//!
//! From a shell (smoke flows, `make demo`):
//!
//! ```text
//! hyp-fake-central --url-file "$T/url" --data-dir "$T/central" >"$T/fake.log" 2>&1 & fake=$!
//! until [ -s "$T/url" ]; do sleep 0.05; done; url=$(cat "$T/url")
//! curl -fsS -X POST "$url/_admin/config" \
//!      -d "{\"etag\":\"rev-1\",\"document\":{\"version\":2, ...}}"
//! curl -fsS "$url/_admin/requests"
//! curl -fsS "$url/_admin/ingest"                      # counters, violations
//! curl -fsS "$url/_admin/ingest/rows?signal=proxy"    # stored NDJSON
//! kill "$fake"; wait "$fake"    # exits 0
//! ```
//!
//! # Data directory
//!
//! - `D/ingest/<signal>.ndjson`: the stored request bodies, appended
//!   verbatim in acceptance order (one file per signal, created empty).
//! - `D/ingest/ledger.jsonl`: one line per stored batch,
//!   `{"batch_id", "gateway_id", "signal", "rows", "bytes"}`.
//! - `D/jwts.jsonl`: the JWTs issued (`{"jwt", "gateway_id"}`) and each
//!   `expire-tokens` (`{"expire_all": true}`), replayed at start.
//!
//! At start the ledger is loaded; signal-file bytes no ledger line covers
//! (a kill between the body and its ledger line: never acknowledged) are cut
//! off, and so is a torn last line.
//!
//! # Protocol
//!
//! Every protocol route also matches below a path prefix (`/tenant-a/v1/config`
//! is `/v1/config`), as a sink URL may carry one; the request log keeps the
//! full path. `Expect: 100-continue` (curl sends it for bodies over 1 MiB) is
//! answered `100 Continue` before a body is read, on every route.
//!
//! - `POST /v1/identity/bootstrap {"bootstrap_token": T}`: 200
//!   `{"jwt", "expires_at"}` for a known token (JWT = `<{"alg":"none"}>.<{"sub":"gw-1",...}>.sig`,
//!   `sub` being the gateway id set by `/_admin/identity`, expiring in 30
//!   days unless set), else 401 `{"error":"invalid_bootstrap_token"}`.
//! - `POST /v1/identity/refresh` with `Authorization: Bearer <jwt>` of any
//!   JWT it issued (even an expired one): a new JWT for the same gateway id;
//!   else 401.
//! - `GET /v1/config`: the next scripted failure if one is queued; else 401
//!   without a live JWT; else 404 `{"error":"config_not_registered"}` when no
//!   revision is served; else 304 (with `ETag`) when `If-None-Match` equals
//!   the served etag; else 200 with `ETag` and the document.
//! - `POST /v1/ingest/<signal>`, signal `proxy|logs|traces|metrics` (else 404
//!   `{"error":"unknown_signal"}`). Before the body is read: a
//!   `Content-Length` over 64 MiB is answered 413
//!   `{"error":"payload_too_large"}` at once (counted as `refused`; the body
//!   is then read away, never buffered), and a `Transfer-Encoding` body (no
//!   `Content-Length`) 400 `{"error":"chunked_body"}` (listed in
//!   `violations`). Otherwise the body is read whole, then, in order:
//!   1. while silence is on (below), held unanswered like every protocol
//!      request; else, if the ingest script queue (`/_admin/ingest/fail`) has
//!      an entry, it is popped and acted on;
//!   2. auth: the bearer must be a JWT this server issued and did not expire
//!      (the `GET /v1/config` rule), else 401 `{"error":"unauthorized"}`; its
//!      `sub` is the request's gateway id;
//!   3. protocol checks, each a 400 `{"error": KIND}` listed in `violations`:
//!      `bad_content_type` (not exactly `application/x-ndjson`),
//!      `bad_batch_id` (`X-Hyp-Batch-Id` not 32 lowercase hex),
//!      `content_encoding` (any `Content-Encoding`), `empty_body`,
//!      `invalid_utf8`, `missing_final_newline`, `bad_line` (a line that is
//!      not one JSON object);
//!   4. refusal markers (`/_admin/ingest/refuse`): a body containing one is
//!      answered with its status and `{"error":"bad_row"}` (413:
//!      `{"error":"payload_too_large"}`), counted as `refused`, not stored;
//!   5. a batch id already stored for this gateway id: 202, counted as
//!      `duplicate_batches`, not stored again;
//!   6. stored: the body appended to `D/ingest/<signal>.ndjson` and a ledger
//!      line written (both before answering), then 202 with an empty body.
//!
//!   Every answer but a hold or a `down` waits the slowness knob first (plus
//!   a scripted `delay`); the request log shows status 0 until it goes out.
//!
//! # Admin API (JSON bodies; every answer is JSON but the stored rows)
//!
//! - `GET /_admin/health` -> `{"ok": true}`.
//! - `POST /_admin/config {"etag": "rev-1", "document": {...}}`: serve this
//!   revision (switching is another POST). `"body": "<raw text>"` instead of
//!   `document` serves raw bytes. `"then_silence": true` turns silence on
//!   (below) right after this revision's first 200, so the host can never
//!   confirm it. `DELETE /_admin/config`: serve nothing (404).
//! - `POST /_admin/fail {"kind": K, "count": N, ...}`: answer the next N
//!   (default 1) config requests with a failure. Kinds:
//!   - `status`: `"status": 500|404|429|503|401|...`, optional
//!     `"retry_after": "7"` (sent verbatim as `Retry-After`);
//!   - `garbage`: 200 with an ETag and a body that is not JSON;
//!   - `oversized`: 200 with an ETag and `"bytes"` (default 1 MiB + 1) of
//!     JSON-ish body; `"chunked": true` sends it chunked (no Content-Length);
//!   - `no_etag`: 200 with the served document but no ETag;
//!   - `stall`: hold the connection `"ms"` milliseconds without answering,
//!     then close it.
//! - `DELETE /_admin/fail` clears the failure queue.
//! - `POST /_admin/silence {"on": true|false}`: while on, every protocol
//!   request is held unanswered until silence ends, then closed.
//! - `POST /_admin/identity {"reject_bootstrap": 403|null, "reject_refresh":
//!   401|null, "tokens": [...], "expires_in": secs, "gateway_id": "gw-2"}`:
//!   script the identity endpoints (only the keys given change);
//!   `gateway_id` (default `gw-1`) is the `sub` of the JWTs later bootstraps
//!   issue.
//! - `POST /_admin/expire-tokens`: every JWT issued so far is refused by
//!   `GET /v1/config` and ingest (401) but can still be refreshed.
//! - `GET /_admin/requests`: every protocol request so far, in order:
//!   `[{"method", "path", "headers": {lowercase name: value}, "status", "body"}]`
//!   (`status` 0 = held without an answer, or not answered yet). An ingest
//!   request has `"body": null` and `"body_bytes"`, `"body_lines"`,
//!   `"body_sha256"` (lowercase hex) instead (lines and digest null for a
//!   body it never read). `DELETE /_admin/requests` clears.
//! - `POST /_admin/ingest/fail {"kind": K, "count": N, ...}`: act on the next
//!   N (default 1) ingest requests, before anything else. Kinds:
//!   - `status`: answer `"status"` with `{"error":"scripted_failure"}` and
//!     the optional `"retry_after"` verbatim as `Retry-After`; not stored (a
//!     scripted 401 leaves the JWT valid);
//!   - `down`: close the connection without answering; not stored;
//!   - `hold`: hold the connection unanswered for `"ms"` (default 60000) or
//!     until `/_admin/ingest/release`, then close it; not stored;
//!   - `store_then_hold`: process the request normally (auth, checks,
//!     ledger, store), then hold it like `hold`: central stored the batch,
//!     the client never heard;
//!   - `delay`: process normally, answer after `"ms"` (required; added to
//!     the slowness below).
//! - `DELETE /_admin/ingest/fail` clears the ingest script queue.
//! - `POST /_admin/ingest/release`: end every hold in progress now.
//! - `POST /_admin/ingest/slow {"ms": N}`: delay every ingest answer by N ms
//!   (after storing) until set back to 0.
//! - `POST /_admin/ingest/refuse {"marker": "POISON", "status": 413}`: refuse
//!   bodies containing the marker (status 400, 413 or 422; default 400;
//!   several markers may be set, a repeated marker takes the new status).
//!   `DELETE /_admin/ingest/refuse` clears them.
//! - `GET /_admin/ingest` -> `{"data_dir", "requests", "stored_batches",
//!   "duplicate_batches", "stored_rows", "refused", "in_flight",
//!   "max_in_flight", "max_in_flight_by_gateway": {gateway id: n},
//!   "violations": [{"kind", "batch_id", "detail"}]}`. `requests` (every
//!   POST to an ingest route), `duplicate_batches`, `refused`, the in-flight
//!   maxima and `violations` count since start (or the last reset); `stored_batches` and `stored_rows` describe the
//!   store, an earlier run's batches included. A request is in flight from
//!   its head being read to the end of its answer or hold; it counts for a
//!   gateway when its bearer is a JWT this server issued (expired or not).
//! - `GET /_admin/ingest/rows?signal=proxy` -> the stored NDJSON of that
//!   signal, verbatim (`application/x-ndjson`, streamed from the file).
//! - `DELETE /_admin/ingest`: empty the stored files and the ledger and reset
//!   the counters (requests in flight stay counted); scripts, markers and
//!   the slowness stay.
//! - `POST /_admin/shutdown`: answer, then exit 0.

mod ingest;
mod store;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::ingest::IngestState;
use crate::store::Store;

const DEFAULT_TOKEN: &str = "test-token";
const DEFAULT_EXPIRES_IN: i64 = 30 * 24 * 60 * 60;
const DEFAULT_GATEWAY_ID: &str = "gw-1";
/// The cap on admin and config bodies; ingest has its own, larger one.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// A data directory this process made itself, removed on a clean exit.
static OWNED_DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

struct Args {
    port: u16,
    url_file: Option<PathBuf>,
    tokens: Vec<String>,
    data_dir: Option<PathBuf>,
    exit_on_stdin_eof: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        url_file: None,
        tokens: Vec::new(),
        data_dir: None,
        exit_on_stdin_eof: false,
        tls_cert: None,
        tls_key: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = |name: &str| argv.next().ok_or(format!("{name} expects a value"));
        match arg.as_str() {
            "--port" => {
                args.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port expects a number from 0 to 65535".to_string())?
            }
            "--url-file" => args.url_file = Some(PathBuf::from(value("--url-file")?)),
            "--token" => args.tokens.push(value("--token")?),
            "--data-dir" => args.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--check-after-answering" => ingest::check_after_answering(),
            "--exit-on-stdin-eof" => args.exit_on_stdin_eof = true,
            "--tls-cert" => args.tls_cert = Some(PathBuf::from(value("--tls-cert")?)),
            "--tls-key" => args.tls_key = Some(PathBuf::from(value("--tls-key")?)),
            "-h" | "--help" => {
                return Err("usage: hyp-fake-central [--port N] [--url-file F] [--token T]... [--data-dir D] [--check-after-answering] [--exit-on-stdin-eof] [--tls-cert PEM --tls-key PEM]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.tokens.is_empty() {
        args.tokens.push(DEFAULT_TOKEN.to_string());
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(args)
}

/// One scripted failure for `GET /v1/config`.
#[derive(Debug, Clone)]
enum Scripted {
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    Garbage,
    Oversized {
        bytes: usize,
        chunked: bool,
    },
    NoEtag,
    Stall {
        ms: u64,
    },
}

struct Revision {
    etag: String,
    body: String,
    /// Go silent right after this revision's first 200, so the host cannot
    /// confirm it: probation then expires deterministically.
    then_silence: bool,
}

/// A JWT this server issued.
struct Issued {
    /// The JWT's `sub`: ingest keeps one ledger per gateway id.
    gateway_id: String,
    /// Expired by `/_admin/expire-tokens`: good for a refresh only.
    expired: bool,
}

struct State {
    revision: Option<Revision>,
    script: VecDeque<Scripted>,
    silent: bool,
    reject_bootstrap: Option<u16>,
    reject_refresh: Option<u16>,
    tokens: Vec<String>,
    expires_in: i64,
    /// The `sub` of the JWTs bootstraps issue from now on.
    gateway_id: String,
    issued: HashMap<String, Issued>,
    counter: u64,
    requests: Vec<Value>,
    /// Entries `DELETE /_admin/requests` dropped: an entry's id is its index
    /// plus this, so an answer sent late still finds its entry.
    requests_dropped: usize,
    ingest: IngestState,
}

struct Server {
    state: Mutex<State>,
    changed: Condvar,
    /// The data directory. Lock order: `store`, then `state`; the state lock
    /// is never held while the store writes.
    store: Mutex<Store>,
    data_dir: PathBuf,
}

impl Server {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

struct Request {
    method: String,
    /// The path without its query string.
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What to send back.
enum Answer {
    Json {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Chunked {
        headers: Vec<(String, String)>,
        bytes: usize,
    },
    /// The first `len` bytes of `file`, as NDJSON.
    File { file: File, len: u64 },
    /// Hold the connection this long, then close it without answering.
    Hold(Duration),
    /// Hold until silence ends, then close.
    HoldWhileSilent,
    /// Hold until a release newer than `since`, at most `limit`, then close.
    HoldUntilRelease { since: u64, limit: Duration },
    /// Close at once without answering.
    Close,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer::Json {
            status,
            headers: Vec::new(),
            body,
        }
    }

    fn status(&self) -> u16 {
        match self {
            Answer::Json { status, .. } | Answer::Raw { status, .. } => *status,
            Answer::Chunked { .. } | Answer::File { .. } => 200,
            Answer::Hold(_)
            | Answer::HoldWhileSilent
            | Answer::HoldUntilRelease { .. }
            | Answer::Close => 0,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("hyp-fake-central: {message}");
            return ExitCode::from(2);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls_config(cert, key) {
            Ok(config) => Some(config),
            Err(message) => {
                eprintln!("hyp-fake-central: {message}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let listener = match TcpListener::bind(("127.0.0.1", args.port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "hyp-fake-central: cannot listen on 127.0.0.1:{}: {err}",
                args.port
            );
            return ExitCode::from(1);
        }
    };
    let url = match listener.local_addr() {
        Ok(addr) => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            format!("{scheme}://127.0.0.1:{}", addr.port())
        }
        Err(err) => {
            eprintln!("hyp-fake-central: {err}");
            return ExitCode::from(1);
        }
    };
    let server = match open_server(args.data_dir, args.tokens) {
        Ok(server) => Arc::new(server),
        Err(message) => {
            eprintln!("hyp-fake-central: {message}");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &args.url_file
        && let Err(err) = write_url_file(path, &url)
    {
        eprintln!("hyp-fake-central: cannot write {}: {err}", path.display());
        return ExitCode::from(1);
    }
    // Handlers first: a SIGTERM sent right after the line is read must be caught.
    install_exit_handlers(args.exit_on_stdin_eof);
    println!("listening on {url}");
    let _ = io::stdout().flush();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let server = Arc::clone(&server);
        let tls = tls.clone();
        let _ = std::thread::Builder::new()
            .name("connection".into())
            .spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                match tls {
                    None => serve_connection(&server, stream),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut stream = rustls::StreamOwned::new(session, stream);
                        serve_connection(&server, &mut stream);
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                    }
                }
            });
    }
    ExitCode::SUCCESS
}

/// The server state, with what an earlier run left in the data directory.
fn open_server(data_dir: Option<PathBuf>, tokens: Vec<String>) -> Result<Server, String> {
    let data_dir = match data_dir {
        Some(dir) => dir,
        None => fresh_temp_dir()?,
    };
    let (store, loaded) = Store::open(&data_dir)?;
    let counter = loaded.issued.len() as u64;
    let issued = loaded
        .issued
        .into_iter()
        .map(|jwt| {
            let issued = Issued {
                gateway_id: jwt.gateway_id,
                expired: jwt.expired,
            };
            (jwt.jwt, issued)
        })
        .collect();
    Ok(Server {
        state: Mutex::new(State {
            revision: None,
            script: VecDeque::new(),
            silent: false,
            reject_bootstrap: None,
            reject_refresh: None,
            tokens,
            expires_in: DEFAULT_EXPIRES_IN,
            gateway_id: DEFAULT_GATEWAY_ID.to_string(),
            issued,
            counter,
            requests: Vec::new(),
            requests_dropped: 0,
            ingest: IngestState::with_stored(loaded.stored_batches, loaded.stored_rows),
        }),
        changed: Condvar::new(),
        store: Mutex::new(store),
        data_dir,
    })
}

/// A new directory under the system temp dir, owned by this process.
fn fresh_temp_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for attempt in 0..1000 {
        let dir = base.join(format!("hyp-fake-central.{}.{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let _ = OWNED_DATA_DIR.set(dir.clone());
                return Ok(dir);
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(format!("cannot create {}: {err}", dir.display())),
        }
    }
    Err(format!(
        "cannot make a fresh directory in {}",
        base.display()
    ))
}

/// Exit 0, removing a data directory this process made itself.
fn exit_clean() -> ! {
    if let Some(dir) = OWNED_DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(0)
}

/// A rustls server config from a PEM certificate chain and a PEM key.
fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read certificates from {}: {err}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| format!("cannot read a private key from {}: {err}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| err.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|err| format!("unusable certificate or key: {err}"))?;
    Ok(Arc::new(config))
}

/// Written atomically, so a script polling for the file never reads half a URL.
fn write_url_file(path: &std::path::Path, url: &str) -> io::Result<()> {
    use std::io::Write;
    atomicwrites::AtomicFile::new(path, atomicwrites::OverwriteBehavior::AllowOverwrite)
        .write(|file| file.write_all(url.as_bytes()))
        .map_err(io::Error::from)
}

fn install_exit_handlers(exit_on_stdin_eof: bool) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    exit_clean();
                }
            });
    }
    if exit_on_stdin_eof {
        let _ = std::thread::Builder::new().name("stdin".into()).spawn(|| {
            let _ = io::copy(&mut io::stdin(), &mut io::sink());
            exit_clean();
        });
    }
}

/// One request, one answer: the request is read whole before the answer
/// is written, so the buffered reader can lend its stream to the writer.
/// An ingest body is read by the ingest module, under its own cap.
fn serve_connection(server: &Server, stream: impl Read + Write) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let Ok(Some(mut request)) = read_head(&mut reader) else {
        return;
    };
    if request.method == "POST"
        && let Some(signal) = ingest::route(&request.path)
    {
        let signal = signal.to_string();
        ingest::serve(server, request, &signal, &mut reader);
        return;
    }
    let length: usize = request
        .header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(MAX_REQUEST_BODY)];
    send_continue(&request, reader.get_mut());
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    request.body = body;
    let admin = request.path.starts_with("/_admin/");
    let answer = if admin {
        admin_route(server, &request)
    } else {
        let answer = protocol_route(server, &request);
        record(server, request_entry(&request, answer.status()));
        answer
    };
    let shutdown = admin && request.path == "/_admin/shutdown";
    write_answer(server, reader.get_mut(), answer);
    if shutdown {
        exit_clean();
    }
}

/// Answer `Expect: 100-continue` before reading a body: curl sends it for
/// bodies over 1 MiB and otherwise waits a second before each upload.
fn send_continue(request: &Request, stream: &mut impl Write) {
    let expected = request
        .header("expect")
        .is_some_and(|value| value.eq_ignore_ascii_case("100-continue"));
    if expected {
        let _ = stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|()| stream.flush());
    }
}

/// The request line and headers; the body is left to the caller.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = BTreeMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
    }))
}

fn request_entry(request: &Request, status: u16) -> Value {
    json!({
        "method": request.method,
        "path": request.path,
        "headers": request.headers,
        "status": status,
        "body": String::from_utf8_lossy(&request.body),
    })
}

/// Append `entry` to the request log; returns its id for
/// [`set_recorded_status`].
fn record(server: &Server, entry: Value) -> usize {
    let mut state = server.lock();
    state.requests.push(entry);
    let id = state.requests_dropped + state.requests.len() - 1;
    drop(state);
    server.changed.notify_all();
    id
}

/// The answer to a recorded request went out late: log its status.
fn set_recorded_status(server: &Server, id: usize, status: u16) {
    let mut state = server.lock();
    let dropped = state.requests_dropped;
    if let Some(entry) = id
        .checked_sub(dropped)
        .and_then(|index| state.requests.get_mut(index))
    {
        entry["status"] = json!(status);
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// The protocol route of `path`: what follows any path prefix, from the
/// last `/v1/` on (`/tenant-a/v1/config` is `/v1/config`).
fn protocol_path(path: &str) -> &str {
    path.rfind("/v1/").map_or(path, |at| &path[at..])
}

fn protocol_route(server: &Server, request: &Request) -> Answer {
    if server.lock().silent {
        return Answer::HoldWhileSilent;
    }
    match (request.method.as_str(), protocol_path(&request.path)) {
        ("POST", "/v1/identity/bootstrap") => bootstrap(server, request),
        ("POST", "/v1/identity/refresh") => refresh(server, request),
        ("GET", "/v1/config") => config_answer(&mut server.lock(), request),
        _ => Answer::json(404, json!({"error": "not_found"})),
    }
}

fn bootstrap(server: &Server, request: &Request) -> Answer {
    let grant = {
        let mut state = server.lock();
        if let Some(status) = state.reject_bootstrap {
            return Answer::json(status, json!({"error": "bootstrap_rejected"}));
        }
        let token = request.json()["bootstrap_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !state.tokens.contains(&token) {
            return Answer::json(401, json!({"error": "invalid_bootstrap_token"}));
        }
        let gateway_id = state.gateway_id.clone();
        issue_jwt(&mut state, gateway_id)
    };
    grant_answer(server, grant)
}

fn refresh(server: &Server, request: &Request) -> Answer {
    let grant = {
        let mut state = server.lock();
        if let Some(status) = state.reject_refresh {
            return Answer::json(status, json!({"error": "refresh_rejected"}));
        }
        let known = request
            .bearer()
            .and_then(|jwt| state.issued.get(jwt))
            .map(|issued| issued.gateway_id.clone());
        let Some(gateway_id) = known else {
            return Answer::json(401, json!({"error": "unauthorized"}));
        };
        issue_jwt(&mut state, gateway_id)
    };
    grant_answer(server, grant)
}

/// A JWT just issued, to be logged to the store before it is handed out.
struct Grant {
    jwt: String,
    gateway_id: String,
    expires_at: i64,
}

fn issue_jwt(state: &mut State, gateway_id: String) -> Grant {
    state.counter += 1;
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = json!({"sub": gateway_id, "n": state.counter}).to_string();
    let jwt = format!("{header}.{}.sig", b64url(claims.as_bytes()));
    state.issued.insert(
        jwt.clone(),
        Issued {
            gateway_id: gateway_id.clone(),
            expired: false,
        },
    );
    Grant {
        jwt,
        gateway_id,
        expires_at: now_secs() + state.expires_in,
    }
}

/// Log the grant (outside the state lock), so a restarted server still
/// knows the JWT, then hand it out.
fn grant_answer(server: &Server, grant: Grant) -> Answer {
    if let Err(err) = server.store().log_issued(&grant.jwt, &grant.gateway_id) {
        eprintln!("hyp-fake-central: cannot log an issued JWT: {err}");
        return Answer::json(500, json!({"error": "storage_failed"}));
    }
    Answer::json(
        200,
        json!({"jwt": grant.jwt, "expires_at": grant.expires_at}),
    )
}

fn config_answer(state: &mut State, request: &Request) -> Answer {
    let served_etag = state.revision.as_ref().map(|rev| rev.etag.clone());
    if let Some(scripted) = state.script.pop_front() {
        return scripted_answer(state, scripted, served_etag);
    }
    let live = request
        .bearer()
        .and_then(|jwt| state.issued.get(jwt))
        .is_some_and(|issued| !issued.expired);
    if !live {
        return Answer::json(401, json!({"error": "unauthorized"}));
    }
    let Some(revision) = &state.revision else {
        return Answer::json(404, json!({"error": "config_not_registered"}));
    };
    let etag_header = vec![("ETag".to_string(), revision.etag.clone())];
    if request.header("if-none-match") == Some(revision.etag.as_str()) {
        return Answer::Raw {
            status: 304,
            headers: etag_header,
            body: Vec::new(),
        };
    }
    let body = revision.body.clone().into_bytes();
    if revision.then_silence {
        state.silent = true;
    }
    Answer::Raw {
        status: 200,
        headers: etag_header,
        body,
    }
}

/// A scripted failure status, shared by config and ingest scripts.
fn status_answer(status: u16, retry_after: Option<String>) -> Answer {
    Answer::Json {
        status,
        headers: retry_after
            .map(|value| vec![("Retry-After".to_string(), value)])
            .unwrap_or_default(),
        body: json!({"error": "scripted_failure"}),
    }
}

fn scripted_answer(state: &State, scripted: Scripted, served_etag: Option<String>) -> Answer {
    let etag = served_etag.unwrap_or_else(|| "rev-scripted".to_string());
    let etag_header = vec![("ETag".to_string(), etag)];
    match scripted {
        Scripted::Status {
            status,
            retry_after,
        } => status_answer(status, retry_after),
        Scripted::Garbage => Answer::Raw {
            status: 200,
            headers: etag_header,
            body: b"<html>this is not json".to_vec(),
        },
        Scripted::Oversized { bytes, chunked } if chunked => Answer::Chunked {
            headers: etag_header,
            bytes,
        },
        Scripted::Oversized { bytes, .. } => Answer::Raw {
            status: 200,
            headers: etag_header,
            body: filler(bytes),
        },
        Scripted::NoEtag => Answer::Raw {
            status: 200,
            headers: Vec::new(),
            body: state
                .revision
                .as_ref()
                .map(|rev| rev.body.clone())
                .unwrap_or_else(|| "{\"version\":2}".to_string())
                .into_bytes(),
        },
        Scripted::Stall { ms } => Answer::Hold(Duration::from_millis(ms)),
    }
}

/// `bytes` bytes of a JSON string document (`"xxxx…"`).
fn filler(bytes: usize) -> Vec<u8> {
    let mut body = vec![b'x'; bytes.max(2)];
    body[0] = b'"';
    let last = body.len() - 1;
    body[last] = b'"';
    body
}

fn admin_route(server: &Server, request: &Request) -> Answer {
    if let Some(answer) = ingest::admin_route(server, request) {
        server.changed.notify_all();
        return answer;
    }
    if (request.method.as_str(), request.path.as_str()) == ("POST", "/_admin/expire-tokens") {
        return expire_tokens(server);
    }
    let body = request.json();
    let mut state = server.lock();
    let ok = || Answer::json(200, json!({"ok": true}));
    let answer = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/_admin/health") => ok(),
        ("POST" | "PUT", "/_admin/config") => {
            let Some(etag) = body["etag"].as_str().filter(|etag| !etag.is_empty()) else {
                return Answer::json(400, json!({"error": "etag is required"}));
            };
            let text = match (&body["body"], &body["document"]) {
                (Value::String(raw), _) => raw.clone(),
                (_, Value::Null) => {
                    return Answer::json(400, json!({"error": "document or body is required"}));
                }
                (_, document) => document.to_string(),
            };
            state.revision = Some(Revision {
                etag: etag.to_string(),
                body: text,
                then_silence: body["then_silence"].as_bool().unwrap_or(false),
            });
            ok()
        }
        ("DELETE", "/_admin/config") => {
            state.revision = None;
            ok()
        }
        ("POST", "/_admin/fail") => match parse_scripted(&body) {
            Ok(scripted) => {
                let count = body["count"].as_u64().unwrap_or(1);
                for _ in 0..count {
                    state.script.push_back(scripted.clone());
                }
                ok()
            }
            Err(message) => Answer::json(400, json!({"error": message})),
        },
        ("DELETE", "/_admin/fail") => {
            state.script.clear();
            ok()
        }
        ("POST", "/_admin/silence") => {
            state.silent = body["on"].as_bool().unwrap_or(true);
            ok()
        }
        ("POST", "/_admin/identity") => {
            let object = body.as_object().cloned().unwrap_or_default();
            let status = |value: &Value| value.as_u64().and_then(|s| u16::try_from(s).ok());
            if let Some(value) = object.get("reject_bootstrap") {
                state.reject_bootstrap = status(value);
            }
            if let Some(value) = object.get("reject_refresh") {
                state.reject_refresh = status(value);
            }
            if let Some(tokens) = object.get("tokens").and_then(Value::as_array) {
                state.tokens = tokens
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
            }
            if let Some(expires_in) = object.get("expires_in").and_then(Value::as_i64) {
                state.expires_in = expires_in;
            }
            match object.get("gateway_id") {
                None => {}
                Some(Value::String(gateway_id)) if !gateway_id.is_empty() => {
                    state.gateway_id = gateway_id.clone();
                }
                Some(_) => {
                    return Answer::json(400, json!({"error": "gateway_id expects a string"}));
                }
            }
            ok()
        }
        ("GET", "/_admin/requests") => Answer::json(200, Value::Array(state.requests.clone())),
        ("DELETE", "/_admin/requests") => {
            state.requests_dropped += state.requests.len();
            state.requests.clear();
            ok()
        }
        ("POST", "/_admin/shutdown") => ok(),
        _ => Answer::json(404, json!({"error": "unknown admin endpoint"})),
    };
    drop(state);
    server.changed.notify_all();
    answer
}

/// Expire every JWT issued so far, and log that (outside the state lock)
/// so a restarted server still refuses them.
fn expire_tokens(server: &Server) -> Answer {
    for issued in server.lock().issued.values_mut() {
        issued.expired = true;
    }
    if let Err(err) = server.store().log_expire_all() {
        return Answer::json(500, json!({"error": err.to_string()}));
    }
    Answer::json(200, json!({"ok": true}))
}

/// `"status"` and the optional `"retry_after"` of a scripted failure.
fn parse_status(body: &Value) -> Result<(u16, Option<String>), String> {
    let status = body["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s))
        .ok_or("status expects an HTTP status code")?;
    let retry_after = match &body["retry_after"] {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    Ok((status, retry_after))
}

fn parse_scripted(body: &Value) -> Result<Scripted, String> {
    match body["kind"].as_str().unwrap_or_default() {
        "status" => {
            let (status, retry_after) = parse_status(body)?;
            Ok(Scripted::Status {
                status,
                retry_after,
            })
        }
        "garbage" => Ok(Scripted::Garbage),
        "oversized" => Ok(Scripted::Oversized {
            bytes: body["bytes"]
                .as_u64()
                .map(|b| b as usize)
                .unwrap_or(1024 * 1024 + 1),
            chunked: body["chunked"].as_bool().unwrap_or(false),
        }),
        "no_etag" => Ok(Scripted::NoEtag),
        "stall" => Ok(Scripted::Stall {
            ms: body["ms"].as_u64().unwrap_or(60_000),
        }),
        other => Err(format!("unknown failure kind '{other}'")),
    }
}

fn write_answer(server: &Server, stream: &mut impl Write, answer: Answer) {
    let (status, headers, body) = match answer {
        Answer::Json {
            status,
            headers,
            body,
        } => (status, headers, body.to_string().into_bytes()),
        Answer::Raw {
            status,
            headers,
            body,
        } => (status, headers, body),
        Answer::Chunked { headers, bytes } => {
            let _ = write_chunked(stream, &headers, bytes);
            return;
        }
        Answer::File { file, len } => {
            let _ = write_file(stream, file, len);
            return;
        }
        Answer::Hold(duration) => {
            hold(server, |_| true, duration);
            return;
        }
        Answer::HoldWhileSilent => {
            hold(server, |state| state.silent, Duration::from_secs(3600));
            return;
        }
        Answer::HoldUntilRelease { since, limit } => {
            hold(server, |state| state.ingest.releases() == since, limit);
            return;
        }
        Answer::Close => return,
    };
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if status != 304 {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(&body))
        .and_then(|()| stream.flush());
}

/// Wait (on the state's condvar, not a sleep loop) while `still` holds, at
/// most `limit`; the connection is then dropped unanswered.
fn hold(server: &Server, still: impl Fn(&State) -> bool, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut state = server.lock();
    while still(&state) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        state = match server.changed.wait_timeout(state, deadline - now) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

/// Stream `len` bytes of `file`: stored rows are never loaded into memory.
fn write_file(stream: &mut impl Write, file: File, len: u64) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())?;
    io::copy(&mut file.take(len), stream)?;
    stream.flush()
}

fn write_chunked(
    stream: &mut impl Write,
    headers: &[(String, String)],
    bytes: usize,
) -> io::Result<()> {
    let mut head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            .to_string();
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let body = filler(bytes);
    for chunk in body.chunks(64 * 1024) {
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
        stream.write_all(chunk)?;
        stream.write_all(b"\r\n")?;
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Unpadded base64url.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, byte)| {
            acc | (u32::from(*byte) << (16 - 8 * i))
        });
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
