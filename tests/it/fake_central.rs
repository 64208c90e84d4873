//! A test-side handle on `hyp-fake-central`: spawn it on an ephemeral port,
//! script it through its admin API, read what it recorded. Killed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub struct FakeCentral {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
}

impl FakeCentral {
    /// Start a server that accepts the bootstrap token `test-token`.
    pub fn start() -> FakeCentral {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hyp-fake-central"))
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
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        FakeCentral {
            child,
            url,
            agent: ureq::Agent::new_with_config(config),
        }
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
}

impl Drop for FakeCentral {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
