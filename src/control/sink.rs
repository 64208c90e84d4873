//! The central sink's own config (`sinks.<n>` with `plugin: @hypaware/central`):
//! url, bootstrap token and poll cadence, read from the central layer.
//!
//! Apply-time validation does not look inside this block (reference §2.3): a
//! served config with a bad central sink applies, its poll thread then refuses
//! to start, and probation rolls it back. That backstop is why the poll thread
//! parses the block itself, here, raw in and typed out.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::config::catalog::CENTRAL_PLUGIN;

/// The cadence when `poll_interval_seconds` is absent.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 300;
const MIN_POLL_INTERVAL_SECS: u64 = 5;
const MAX_POLL_INTERVAL_SECS: u64 = 3600;

/// A central sink whose config is usable by the poll thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralSink {
    /// The sink instance name (`central`).
    pub name: String,
    /// The server's base URL, as written (compared verbatim with the identity).
    pub url: String,
    /// `identity.bootstrap_token`, when the seed still carries one.
    pub bootstrap_token: Option<String>,
    /// `poll_interval_seconds`, unscaled.
    pub poll_interval: Duration,
    /// `schedule`, the export cron as written (checked when used: a bad one
    /// stops this instance's exports only). `None` means every minute.
    pub schedule: Option<String>,
}

/// Why a central sink's config cannot drive a poll loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The central layer names no `@hypaware/central` sink.
    NoCentralSink,
    Invalid {
        sink: String,
        message: String,
    },
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::NoCentralSink => write!(
                f,
                "the central config names no {CENTRAL_PLUGIN} sink: run 'hyp join <url> <token>'"
            ),
            SinkError::Invalid { sink, message } => {
                write!(f, "central sink '{sink}' is invalid: {message}")
            }
        }
    }
}

impl std::error::Error for SinkError {}

/// The first central sink of `document`, in document order.
pub fn first_central_sink(document: &Value) -> Result<CentralSink, SinkError> {
    let (name, sink) = central_sink_entries(document)
        .next()
        .ok_or(SinkError::NoCentralSink)?;
    parse_sink(name, sink)
}

/// Every central sink of `document`, in document order, each parsed on its
/// own so one bad instance does not hide the others.
pub fn central_sinks(document: &Value) -> Vec<Result<CentralSink, SinkError>> {
    central_sink_entries(document)
        .map(|(name, sink)| parse_sink(name, sink))
        .collect()
}

/// `sink` with this machine's join token when its config carries none: a
/// served fleet config names the server but not the token, and without it
/// a lost `identity.json` could never be bootstrapped again. The token is
/// looked for where `hyp join` left it for the same URL: the seed, or (once
/// the first apply retired the seed into it) a config slot.
pub fn with_join_token(paths: &crate::paths::Paths, mut sink: CentralSink) -> CentralSink {
    if sink.bootstrap_token.is_some() {
        return sink;
    }
    let layers = [
        paths.seed(),
        paths.slot(crate::paths::Slot::A),
        paths.slot(crate::paths::Slot::B),
    ];
    sink.bootstrap_token = layers
        .iter()
        .filter_map(|path| crate::statefile::read_value(path).ok())
        .flat_map(|document| central_sinks(&document))
        .filter_map(Result::ok)
        .find(|joined| joined.url == sink.url && joined.bootstrap_token.is_some())
        .and_then(|joined| joined.bootstrap_token);
    sink
}

/// `(name, sink)` for every sink whose `plugin` is the central plugin.
fn central_sink_entries(document: &Value) -> impl Iterator<Item = (&String, &Value)> {
    document
        .get("sinks")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, sink)| sink.get("plugin").and_then(Value::as_str) == Some(CENTRAL_PLUGIN))
}

fn parse_sink(name: &str, sink: &Value) -> Result<CentralSink, SinkError> {
    let invalid = |message: &str| SinkError::Invalid {
        sink: name.to_string(),
        message: message.to_string(),
    };
    let config = sink
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("config must be an object"))?;
    let url = config
        .get("url")
        .and_then(Value::as_str)
        .filter(|url| is_http_url(url))
        .ok_or_else(|| invalid("url must be an http(s) URL"))?;
    let identity = config
        .get("identity")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("identity must be an object"))?;
    let bootstrap_token = match identity.get("bootstrap_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if token.is_empty() => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(invalid("identity.bootstrap_token must be a string")),
    };
    let poll_interval_secs = match config.get("poll_interval_seconds") {
        None => DEFAULT_POLL_INTERVAL_SECS,
        Some(value) => integral(value)
            .filter(|secs| (MIN_POLL_INTERVAL_SECS..=MAX_POLL_INTERVAL_SECS).contains(secs))
            .ok_or_else(|| invalid("poll_interval_seconds must be an integer from 5 to 3600"))?,
    };
    let schedule = match config.get("schedule") {
        None | Some(Value::Null) => None,
        Some(Value::String(schedule)) => Some(schedule.clone()),
        Some(_) => return Err(invalid("schedule must be a 5-field cron string")),
    };
    Ok(CentralSink {
        name: name.to_string(),
        url: url.to_string(),
        bootstrap_token,
        poll_interval: Duration::from_secs(poll_interval_secs),
        schedule,
    })
}

/// The probation window's interval (reference §5.5): the minimum over every
/// central sink, where a value that is not a finite number > 0 counts as 300,
/// and 300 when there is no central sink.
pub fn probation_interval_secs(document: &Value) -> f64 {
    central_sink_entries(document)
        .map(|(_, sink)| {
            sink.pointer("/config/poll_interval_seconds")
                .and_then(Value::as_f64)
                .filter(|secs| secs.is_finite() && *secs > 0.0)
                .unwrap_or(DEFAULT_POLL_INTERVAL_SECS as f64)
        })
        .reduce(f64::min)
        .unwrap_or(DEFAULT_POLL_INTERVAL_SECS as f64)
}

/// A non-negative integer, counting integral floats (`5.0`) as integers.
fn integral(value: &Value) -> Option<u64> {
    if let Some(int) = value.as_u64() {
        return Some(int);
    }
    let float = value.as_f64()?;
    (float.is_finite() && float >= 0.0 && float.fract() == 0.0 && float <= u64::MAX as f64)
        .then_some(float as u64)
}

/// `http://` or `https://` followed by at least a host.
pub fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            !host.is_empty() && !host.contains(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(config: Value) -> Value {
        json!({"version": 2, "sinks": {"central": {"plugin": CENTRAL_PLUGIN, "config": config}}})
    }

    #[test]
    fn parses_the_seed_shape_with_the_default_cadence() {
        let sink = first_central_sink(&doc(
            json!({"url": "http://127.0.0.1:9", "identity": {"bootstrap_token": "tok"}}),
        ))
        .unwrap();
        assert_eq!(sink.url, "http://127.0.0.1:9");
        assert_eq!(sink.bootstrap_token.as_deref(), Some("tok"));
        assert_eq!(sink.poll_interval, Duration::from_secs(300));
    }

    #[test]
    fn the_cadence_must_be_an_integer_in_range() {
        let with = |interval: Value| {
            first_central_sink(&doc(
                json!({"url": "https://c", "identity": {}, "poll_interval_seconds": interval}),
            ))
        };
        assert_eq!(
            with(json!(5.0)).unwrap().poll_interval,
            Duration::from_secs(5)
        );
        assert_eq!(
            with(json!(3600)).unwrap().poll_interval,
            Duration::from_secs(3600)
        );
        for bad in [json!(4), json!(3601), json!(5.5), json!("60"), json!(-5)] {
            assert!(with(bad.clone()).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn url_and_identity_are_required() {
        assert!(first_central_sink(&doc(json!({"identity": {}}))).is_err());
        assert!(first_central_sink(&doc(json!({"url": "ftp://x", "identity": {}}))).is_err());
        assert!(first_central_sink(&doc(json!({"url": "https://c"}))).is_err());
        assert_eq!(
            first_central_sink(&json!({"version": 2})),
            Err(SinkError::NoCentralSink)
        );
    }

    #[test]
    fn the_probation_interval_is_the_minimum_over_central_sinks() {
        assert_eq!(probation_interval_secs(&json!({"version": 2})), 300.0);
        let two = json!({"sinks": {
            "one": {"plugin": CENTRAL_PLUGIN, "config": {"poll_interval_seconds": 60}},
            "two": {"plugin": CENTRAL_PLUGIN, "config": {"poll_interval_seconds": 600}},
            "other": {"plugin": "@x/y", "config": {"poll_interval_seconds": 1}}
        }});
        assert_eq!(probation_interval_secs(&two), 60.0);
        let bad = json!({"sinks": {"c": {"plugin": CENTRAL_PLUGIN, "config": {"poll_interval_seconds": "x"}}}});
        assert_eq!(probation_interval_secs(&bad), 300.0);
    }
}
