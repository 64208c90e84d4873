//! A test-side handle on `hyp-fake-central`: spawn it on an ephemeral port,
//! script it through its admin API, read what it recorded and what it
//! ingested. Killed on drop; it can also be killed and restarted on the same
//! port and data directory to play "central is down".

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::support::fake_central_bin;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn plain_config() -> ureq::config::Config {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
}

/// Run the binary and read its listening line: the child and its URL.
fn launch(args: &[String], data_dir: &Path, port: Option<&str>) -> (Child, String) {
    let mut command = Command::new(fake_central_bin());
    command.args(args).arg("--data-dir").arg(data_dir);
    if let Some(port) = port {
        command.args(["--port", port]);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hyp-fake-central");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

pub struct FakeCentral {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
    /// The arguments it was started with (no `--port`), for a restart.
    args: Vec<String>,
    data_dir: PathBuf,
    /// The data directory this handle made itself, removed on drop.
    _owned_data_dir: Option<tempfile::TempDir>,
}

impl FakeCentral {
    /// Start a server that accepts the bootstrap token `test-token`, with a
    /// private data directory.
    pub fn start() -> FakeCentral {
        FakeCentral::with_owned_data_dir(Vec::new(), plain_config())
    }

    /// Start a server that keeps its ingest store and JWTs in `data_dir`
    /// (the caller owns it): a server later started on the same directory
    /// still deduplicates.
    pub fn start_with_data_dir(data_dir: &Path) -> FakeCentral {
        FakeCentral::spawn(Vec::new(), plain_config(), data_dir.to_path_buf(), None)
    }

    /// The same server over HTTPS, with a certificate signed by the test
    /// CA at [`FakeCentral::test_ca`] (which this handle's admin calls trust).
    pub fn start_tls() -> FakeCentral {
        let tls = fixture("tls");
        let ca = std::fs::read(FakeCentral::test_ca()).expect("read the test CA");
        let roots: Vec<_> = ureq::tls::parse_pem(&ca)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        let tls_config = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls_config)
            .build();
        let cert = tls.join("server.pem").display().to_string();
        let key = tls.join("server.key").display().to_string();
        let args = vec!["--tls-cert".into(), cert, "--tls-key".into(), key];
        FakeCentral::with_owned_data_dir(args, config)
    }

    /// The CA that signed the `start_tls` server's certificate (PEM).
    pub fn test_ca() -> PathBuf {
        fixture("tls").join("ca.pem")
    }

    fn with_owned_data_dir(args: Vec<String>, config: ureq::config::Config) -> FakeCentral {
        let dir = tempfile::tempdir().expect("create the fake's data directory");
        let data_dir = dir.path().to_path_buf();
        FakeCentral::spawn(args, config, data_dir, Some(dir))
    }

    fn spawn(
        args: Vec<String>,
        config: ureq::config::Config,
        data_dir: PathBuf,
        owned: Option<tempfile::TempDir>,
    ) -> FakeCentral {
        let (child, url) = launch(&args, &data_dir, None);
        FakeCentral {
            child,
            url,
            agent: ureq::Agent::new_with_config(config),
            args,
            data_dir,
            _owned_data_dir: owned,
        }
    }

    /// SIGKILL the server ("central is down"); [`FakeCentral::restart`]
    /// brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kill the server if it runs, then start it again on the same port and
    /// data directory: the same URL, the same ledger and JWTs; scripts,
    /// knobs and the served config start empty.
    pub fn restart(&mut self) {
        self.kill();
        let port = self
            .url
            .rsplit(':')
            .next()
            .expect("the URL ends in a port")
            .to_string();
        let (child, url) = launch(&self.args, &self.data_dir, Some(&port));
        assert_eq!(url, self.url, "restarted on another URL");
        self.child = child;
    }

    /// The server's `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/_admin/{path}", self.url);
        let body = body.to_string();
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .content_type("application/json")
                .send(body.as_bytes()),
        }
        .unwrap_or_else(|err| panic!("admin {method} {path}: {err}"));
        assert_eq!(response.status().as_u16(), 200, "admin {method} {path}");
        let text = response
            .into_body()
            .read_to_string()
            .expect("admin response body");
        serde_json::from_str(&text).expect("admin response is JSON")
    }

    /// Serve `document` as `etag` once, then go silent: the host applies it
    /// and can never confirm it.
    pub fn serve_then_silence(&self, etag: &str, document: &Value) {
        self.admin(
            "POST",
            "config",
            json!({"etag": etag, "document": document, "then_silence": true}),
        );
    }

    /// Serve `document` as revision `etag` from now on.
    pub fn serve(&self, etag: &str, document: &Value) {
        self.admin(
            "POST",
            "config",
            json!({"etag": etag, "document": document}),
        );
    }

    /// Serve nothing (404 `config_not_registered`).
    pub fn unserve(&self) {
        self.admin("DELETE", "config", Value::Null);
    }

    /// Queue scripted failures (see the server's `//!` for `spec`).
    pub fn fail(&self, spec: Value) {
        self.admin("POST", "fail", spec);
    }

    /// Drop every queued config-request failure.
    pub fn clear_failures(&self) {
        self.admin("DELETE", "fail", Value::Null);
    }

    pub fn silence(&self, on: bool) {
        self.admin("POST", "silence", json!({ "on": on }));
    }

    pub fn identity(&self, spec: Value) {
        self.admin("POST", "identity", spec);
    }

    pub fn expire_tokens(&self) {
        self.admin("POST", "expire-tokens", json!({}));
    }

    pub fn requests(&self) -> Vec<Value> {
        match self.admin("GET", "requests", Value::Null) {
            Value::Array(requests) => requests,
            other => panic!("requests is not an array: {other}"),
        }
    }

    /// The recorded requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|request| request["path"] == path)
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    pub fn clear_requests(&self) {
        self.admin("DELETE", "requests", Value::Null);
    }

    /// JWTs from later bootstraps carry `sub` = `gateway_id` (default `gw-1`).
    pub fn set_gateway_id(&self, gateway_id: &str) {
        self.identity(json!({ "gateway_id": gateway_id }));
    }

    /// `GET /_admin/ingest`: counters, in-flight maxima, violations.
    pub fn ingest_summary(&self) -> Value {
        self.admin("GET", "ingest", Value::Null)
    }

    /// The stored NDJSON of `signal`, verbatim.
    pub fn stored_text(&self, signal: &str) -> String {
        let url = format!("{}/_admin/ingest/rows?signal={signal}", self.url);
        let response = self
            .agent
            .get(&url)
            .call()
            .unwrap_or_else(|err| panic!("stored rows of {signal}: {err}"));
        assert_eq!(response.status().as_u16(), 200, "stored rows of {signal}");
        response
            .into_body()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .expect("stored rows body")
    }

    /// The stored rows of `signal`, one JSON value per line.
    pub fn stored_rows(&self, signal: &str) -> Vec<Value> {
        self.stored_text(signal)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a stored line is JSON"))
            .collect()
    }

    /// Queue scripted ingest behaviour (see the server's `//!` for `spec`):
    /// `json!({"kind": "status", "status": 429, "retry_after": "2"})`.
    pub fn script_ingest(&self, spec: Value) {
        self.admin("POST", "ingest/fail", spec);
    }

    pub fn clear_ingest_script(&self) {
        self.admin("DELETE", "ingest/fail", Value::Null);
    }

    /// Refuse any ingest body containing `marker` with `status` (400, 413 or 422).
    pub fn refuse_marker(&self, marker: &str, status: u16) {
        self.admin(
            "POST",
            "ingest/refuse",
            json!({"marker": marker, "status": status}),
        );
    }

    pub fn clear_refusals(&self) {
        self.admin("DELETE", "ingest/refuse", Value::Null);
    }

    /// End every ingest hold in progress (`hold`, `store_then_hold`).
    pub fn release(&self) {
        self.admin("POST", "ingest/release", json!({}));
    }

    /// Delay every ingest answer by `ms` (0 ends it).
    pub fn slow_ingest(&self, ms: u64) {
        self.admin("POST", "ingest/slow", json!({ "ms": ms }));
    }

    /// Empty the ingest store and ledger and reset the counters.
    pub fn clear_ingest(&self) {
        self.admin("DELETE", "ingest", Value::Null);
    }
}

impl Drop for FakeCentral {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The server's own behaviour, as smoke scripts and `make demo` use it.

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn spawn(args: &[&str], stdin: Stdio) -> Child {
        Command::new(fake_central_bin())
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hyp-fake-central")
    }

    fn first_line(child: &mut Child) -> String {
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        line
    }

    #[test]
    fn writes_its_url_and_exits_zero_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("url");
        let mut child = spawn(
            &["--url-file", url_file.to_str().unwrap(), "--token", "t1"],
            Stdio::null(),
        );
        let line = first_line(&mut child);
        let url = std::fs::read_to_string(&url_file).unwrap();
        assert_eq!(line, format!("listening on {url}\n"));
        assert!(url.starts_with("http://127.0.0.1:"));
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: signalling our own child by pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }

    #[test]
    fn exits_zero_on_stdin_eof_when_asked() {
        let mut child = spawn(&["--exit-on-stdin-eof"], Stdio::piped());
        first_line(&mut child);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"ignored\n").unwrap();
        drop(stdin);
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }

    #[test]
    fn bad_arguments_exit_two() {
        let output = Command::new(fake_central_bin())
            .arg("--bogus")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument --bogus"));
    }

    #[test]
    fn records_requests_and_answers_304_to_the_served_etag() {
        let server = FakeCentral::start();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let bootstrap = agent
            .post(format!("{}/v1/identity/bootstrap", server.url))
            .send(r#"{"bootstrap_token":"test-token"}"#)
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        let grant: Value = serde_json::from_str(&bootstrap).unwrap();
        let jwt = grant["jwt"].as_str().unwrap().to_string();
        let get = |etag: Option<&str>| {
            let mut request = agent
                .get(format!("{}/v1/config", server.url))
                .header("Authorization", format!("Bearer {jwt}"));
            if let Some(etag) = etag {
                request = request.header("If-None-Match", etag);
            }
            request.call().unwrap().status().as_u16()
        };
        assert_eq!(get(None), 404);
        server.serve("rev-1", &json!({"version": 2}));
        assert_eq!(get(None), 200);
        assert_eq!(get(Some("rev-1")), 304);
        server.fail(json!({"kind": "status", "status": 503, "retry_after": 7, "count": 2}));
        assert_eq!(get(Some("rev-1")), 503);
        assert_eq!(get(Some("rev-1")), 503);
        assert_eq!(get(Some("rev-1")), 304);
        let bad = agent
            .post(format!("{}/v1/identity/bootstrap", server.url))
            .send(r#"{"bootstrap_token":"wrong"}"#)
            .unwrap();
        assert_eq!(bad.status().as_u16(), 401);
        let requests = server.requests_to("/v1/config");
        let statuses: Vec<&Value> = requests.iter().map(|r| &r["status"]).collect();
        assert_eq!(statuses, [404, 200, 304, 503, 503, 304]);
        assert_eq!(requests[2]["headers"]["if-none-match"], "rev-1");
        assert_eq!(
            requests[0]["headers"]["authorization"],
            format!("Bearer {jwt}")
        );
    }
}
