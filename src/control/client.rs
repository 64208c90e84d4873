//! The HTTP client for the central protocol (reference config.md §4):
//! `POST /v1/identity/bootstrap`, `POST /v1/identity/refresh` and
//! `GET /v1/config`, blocking (ureq, TLS by rustls).
//!
//! Every request has one hard deadline covering connect, headers and the whole
//! body (30 s, scaled). A config body is capped at 1 MiB: a larger
//! `Content-Length` is refused unread, and a streamed body is counted as it
//! arrives and abandoned as soon as it crosses the cap. Statuses are data
//! ([`ConfigResponse`]); only transport failures are errors.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use ureq::Agent;
use ureq::http::{HeaderMap, Response};
use ureq::tls::TlsConfig;

/// The largest config body accepted from the server.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The deadline of one request, unscaled.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// The shortest deadline a time scale can shrink it to: below this a busy
/// loopback test machine would see spurious timeouts.
pub const MIN_REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// A fresh credential from bootstrap or refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub jwt: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// How `GET /v1/config` was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigResponse {
    /// 304: the running config is current.
    NotModified,
    /// 200 with an `ETag` and a JSON body within the cap.
    Document { etag: String, document: Value },
    /// 200 whose body is larger than the cap (`bytes` = what was seen).
    TooLarge { bytes: u64 },
    /// 200 without an `ETag` header.
    MissingEtag,
    /// 200 whose body is not JSON.
    InvalidJson,
    /// 401.
    Unauthorized,
    /// 404: no config registered for this machine.
    NotRegistered,
    /// 429 or 503, with a positive `Retry-After` in seconds when given.
    Throttled {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Any other status.
    OtherStatus { status: u16 },
}

impl ConfigResponse {
    /// The HTTP status behind the response, for logs.
    pub fn http_status(&self) -> u16 {
        match self {
            ConfigResponse::NotModified => 304,
            ConfigResponse::Document { .. }
            | ConfigResponse::TooLarge { .. }
            | ConfigResponse::MissingEtag
            | ConfigResponse::InvalidJson => 200,
            ConfigResponse::Unauthorized => 401,
            ConfigResponse::NotRegistered => 404,
            ConfigResponse::Throttled { status, .. } | ConfigResponse::OtherStatus { status } => {
                *status
            }
        }
    }
}

/// Why an exchange with the server did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Connect, TLS, timeout or a broken body: `failed to reach ...`.
    Transport { url: String, message: String },
    /// Bootstrap or refresh answered with a non-2xx status.
    Rejected {
        what: &'static str,
        status: u16,
        detail: String,
    },
    /// Bootstrap or refresh answered 2xx with an unusable body.
    BadGrant { what: &'static str, message: String },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Transport { url, message } => {
                write!(f, "failed to reach central server {url}: {message}")
            }
            ClientError::Rejected {
                what,
                status,
                detail,
            } => write!(f, "identity {what} failed: {status} {detail}"),
            ClientError::BadGrant { what, message } => {
                write!(f, "identity {what} failed: {message}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

/// Whether `err` is rustls refusing the server's certificate, the one
/// transport failure a person can fix on this host.
fn untrusted_certificate(err: &ureq::Error) -> bool {
    let tls = match err {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(tls, Some(rustls::Error::InvalidCertificate(_)))
}

/// A client for one central server.
#[derive(Debug, Clone)]
pub struct CentralClient {
    agent: Agent,
    base_url: String,
}

impl CentralClient {
    /// A client for `base_url` whose every request ends within `deadline`.
    /// An `https` base trusts the system's CAs ([`super::trust`]), read
    /// once here.
    pub fn new(base_url: &str, deadline: Duration) -> CentralClient {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(deadline))
            .user_agent(concat!("hyp/", env!("CARGO_PKG_VERSION")));
        if base_url
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        {
            let (roots, _source) = super::trust::root_certs();
            config = config.tls_config(TlsConfig::builder().root_certs(roots).build());
        }
        let config = config.build();
        CentralClient {
            agent: Agent::new_with_config(config),
            base_url: base_url.to_string(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `<base>/v1/<path>`, whatever trailing slash the base carries. A path
    /// prefix survives; a query string or fragment on the base does not.
    fn endpoint(&self, path: &str) -> String {
        let base = self.base_url.split(['?', '#']).next().unwrap_or_default();
        format!("{}/v1/{path}", base.trim_end_matches('/'))
    }

    fn transport(&self, err: impl Into<ureq::Error>) -> ClientError {
        let err = err.into();
        let mut message = err.to_string();
        if untrusted_certificate(&err) {
            message.push_str(
                " (this host does not trust the CA that signed the server's certificate: \
                 add it to the system trust store, or point SSL_CERT_FILE at it)",
            );
        }
        ClientError::Transport {
            url: self.base_url.clone(),
            message,
        }
    }

    /// `POST /v1/identity/bootstrap {"bootstrap_token": token}`.
    pub fn bootstrap(&self, token: &str) -> Result<TokenGrant, ClientError> {
        let body = json!({ "bootstrap_token": token }).to_string();
        let response = self
            .agent
            .post(self.endpoint("identity/bootstrap"))
            .content_type("application/json")
            .send(body.as_bytes())
            .map_err(|err| self.transport(err))?;
        self.read_grant("bootstrap", response)
    }

    /// `POST /v1/identity/refresh` with the current JWT.
    pub fn refresh(&self, jwt: &str) -> Result<TokenGrant, ClientError> {
        let response = self
            .agent
            .post(self.endpoint("identity/refresh"))
            .header("Authorization", format!("Bearer {jwt}"))
            .send_empty()
            .map_err(|err| self.transport(err))?;
        self.read_grant("refresh", response)
    }

    fn read_grant(
        &self,
        what: &'static str,
        response: Response<ureq::Body>,
    ) -> Result<TokenGrant, ClientError> {
        let status = response.status().as_u16();
        let (_, body) = response.into_parts();
        let mut bytes = Vec::new();
        body.into_reader()
            .take(MAX_BODY_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|err| self.transport(err))?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Rejected {
                what,
                status,
                detail: error_detail(status, &bytes),
            });
        }
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        let bad = |message: &str| ClientError::BadGrant {
            what,
            message: message.to_string(),
        };
        let body = parsed.ok_or_else(|| bad("the response is not JSON"))?;
        let jwt = body
            .get("jwt")
            .and_then(Value::as_str)
            .filter(|jwt| !jwt.is_empty())
            .ok_or_else(|| bad("the response has no jwt"))?;
        let expires_at = body
            .get("expires_at")
            .and_then(integral_i64)
            .ok_or_else(|| bad("the response has no integer expires_at"))?;
        Ok(TokenGrant {
            jwt: jwt.to_string(),
            expires_at,
        })
    }

    /// `GET /v1/config` with the JWT and, when one runs, the running etag.
    pub fn get_config(
        &self,
        jwt: &str,
        running_etag: Option<&str>,
    ) -> Result<ConfigResponse, ClientError> {
        let mut request = self
            .agent
            .get(self.endpoint("config"))
            .header("Authorization", format!("Bearer {jwt}"));
        if let Some(etag) = running_etag {
            request = request.header("If-None-Match", etag);
        }
        let response = request.call().map_err(|err| self.transport(err))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        match status {
            304 => Ok(ConfigResponse::NotModified),
            200 => self.read_document(&parts.headers, body),
            401 => Ok(ConfigResponse::Unauthorized),
            404 => Ok(ConfigResponse::NotRegistered),
            429 | 503 => Ok(ConfigResponse::Throttled {
                status,
                retry_after: retry_after_secs(&parts.headers, Timestamp::now()),
            }),
            status => Ok(ConfigResponse::OtherStatus { status }),
        }
    }

    fn read_document(
        &self,
        headers: &HeaderMap,
        body: ureq::Body,
    ) -> Result<ConfigResponse, ClientError> {
        if let Some(length) = body.content_length()
            && length > MAX_BODY_BYTES
        {
            // Dropped unread: the connection is closed, not drained.
            return Ok(ConfigResponse::TooLarge { bytes: length });
        }
        let mut bytes = Vec::new();
        body.into_with_config()
            .limit(u64::MAX)
            .reader()
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| self.transport(err))?;
        if bytes.len() as u64 > MAX_BODY_BYTES {
            return Ok(ConfigResponse::TooLarge {
                bytes: bytes.len() as u64,
            });
        }
        let Some(etag) = headers
            .get("etag")
            .and_then(|value| value.to_str().ok())
            .filter(|etag| !etag.is_empty())
        else {
            return Ok(ConfigResponse::MissingEtag);
        };
        match serde_json::from_slice(&bytes) {
            Ok(document) => Ok(ConfigResponse::Document {
                etag: etag.to_string(),
                document,
            }),
            Err(_) => Ok(ConfigResponse::InvalidJson),
        }
    }
}

/// How `POST /v1/ingest/<signal>` was answered (reference forward-sink.md
/// §2.6, contract §12 "Answers").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResponse {
    /// Any 2xx: the chunk is central's.
    Accepted { status: u16 },
    /// 401: refresh the credential once and resend.
    Unauthorized,
    /// 429 or 503: wait (a positive `Retry-After` in seconds, else the
    /// ladder) and resend.
    Throttled {
        status: u16,
        retry_after: Option<u64>,
    },
    /// 400, 413 or 422: central refuses this content.
    Refused { status: u16, detail: String },
    /// Any other status: the export fails and is tried again later.
    Failed { status: u16, detail: String },
}

impl CentralClient {
    /// `POST <base>/v1/ingest/<signal>`: one NDJSON chunk with its batch id.
    pub fn post_ingest(
        &self,
        signal: &str,
        jwt: &str,
        batch_id: &str,
        body: &[u8],
    ) -> Result<IngestResponse, ClientError> {
        let response = self
            .agent
            .post(self.endpoint(&format!("ingest/{signal}")))
            .header("Authorization", format!("Bearer {jwt}"))
            .header("X-Hyp-Batch-Id", batch_id)
            .content_type("application/x-ndjson")
            .send(body)
            .map_err(|err| self.transport(err))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let retry_after = retry_after_secs(&parts.headers, Timestamp::now());
        let detail = || {
            let mut bytes = Vec::new();
            let _ = body.into_reader().take(64 * 1024).read_to_end(&mut bytes);
            error_detail(status, &bytes)
        };
        Ok(match status {
            200..=299 => IngestResponse::Accepted { status },
            401 => IngestResponse::Unauthorized,
            429 | 503 => IngestResponse::Throttled {
                status,
                retry_after,
            },
            400 | 413 | 422 => IngestResponse::Refused {
                status,
                detail: detail(),
            },
            _ => IngestResponse::Failed {
                status,
                detail: detail(),
            },
        })
    }
}

/// What a refusal says: the `error` field of a JSON body, else up to 200
/// characters of the body, else the status's reason phrase.
fn error_detail(status: u16, bytes: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    if let Some(error) = parsed
        .as_ref()
        .and_then(|body| body.get("error"))
        .and_then(Value::as_str)
    {
        return error.to_string();
    }
    let text: String = String::from_utf8_lossy(bytes)
        .trim()
        .chars()
        .take(200)
        .collect();
    if !text.is_empty() {
        return text;
    }
    ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("unknown status")
        .to_string()
}

/// The longest `Retry-After` honoured (one day); the reference does not cap
/// it, but a huge value would overflow the timer.
pub const MAX_RETRY_AFTER_SECS: u64 = 24 * 60 * 60;

/// A positive `Retry-After`: delta-seconds or an HTTP-date in the future,
/// at most a day. Zero, a past date and garbage are `None` (the caller uses
/// the ladder).
pub fn retry_after_secs(headers: &HeaderMap, now: Timestamp) -> Option<u64> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    parse_retry_after(value, now)
}

fn parse_retry_after(value: &str, now: Timestamp) -> Option<u64> {
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    let secs = if !digits.is_empty() {
        digits.parse::<u64>().unwrap_or(u64::MAX)
    } else {
        let date = jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(value)
            .ok()?;
        u64::try_from(date.as_second() - now.as_second()).unwrap_or(0)
    };
    (secs > 0).then_some(secs.min(MAX_RETRY_AFTER_SECS))
}

/// An integer, counting integral floats (`5.0`) as integers.
fn integral_i64(value: &Value) -> Option<i64> {
    if let Some(int) = value.as_i64() {
        return Some(int);
    }
    let float = value.as_f64()?;
    (float.is_finite() && float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_honours_only_positive_values() {
        let now: Timestamp = "2026-06-12T00:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(7));
        assert_eq!(parse_retry_after("120abc", now), Some(120));
        assert_eq!(parse_retry_after("0", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("Fri, 12 Jun 2026 00:01:00 GMT", now),
            Some(60)
        );
        assert_eq!(
            parse_retry_after("Thu, 11 Jun 2026 00:00:00 GMT", now),
            None
        );
    }

    #[test]
    fn endpoints_join_under_the_base_path() {
        let client = CentralClient::new("https://h/prefix/", REQUEST_DEADLINE);
        assert_eq!(client.endpoint("config"), "https://h/prefix/v1/config");
        let client = CentralClient::new("http://127.0.0.1:9", REQUEST_DEADLINE);
        assert_eq!(
            client.endpoint("identity/refresh"),
            "http://127.0.0.1:9/v1/identity/refresh"
        );
        let client = CentralClient::new("http://h/tenant-a?x=1#f", REQUEST_DEADLINE);
        assert_eq!(
            client.endpoint("ingest/proxy"),
            "http://h/tenant-a/v1/ingest/proxy"
        );
    }

    #[test]
    fn expires_at_accepts_integral_floats_only() {
        assert_eq!(integral_i64(&json!(5)), Some(5));
        assert_eq!(integral_i64(&json!(5.0)), Some(5));
        assert_eq!(integral_i64(&json!(5.5)), None);
        assert_eq!(integral_i64(&json!("5")), None);
    }
}
