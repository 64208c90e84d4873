//! Logging: the `log` facade with `env_logger` as the one backend.
//!
//! Call sites use [`event!`](crate::event): `event!(Warn, "config.rollback",
//! json!({...}))` is a `log` record whose target is the caller's module path
//! (`hyp::control::engine`, so `HYP_LOG=warn,hyp::control=debug` works),
//! whose message is the event name, and whose key-values are `event` and
//! `fields` (a JSON object, captured through `log`'s serde support).
//!
//! The daemon installs the backend with [`init_daemon`]: each record becomes
//! one JSON line `{ts, level, event, pid, run_id, ...fields}` (the envelope
//! wins over a field of the same name) in `S/logs/daemon.log`, which rotates
//! at 10 MiB and keeps 3 files (`daemon.log`, `.1`, `.2`). env_logger has one
//! target, so that target is a [`DaemonLogWriter`] pipe that appends the JSON
//! line and, when stderr is a terminal, tees the same line to it rendered
//! readable ([`readable_line`], which `hyp daemon logs` prints too).
//! Other processes install it with [`init_terminal`] only when `HYP_LOG` is
//! set, and then write readable lines to stderr. A failure to log is never an
//! error for the caller.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log::kv::{self, Key, VisitSource};
use serde_json::{Map, Value};

use crate::statefile;

/// Rotate the log file once it grows past this many bytes.
const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Files kept in all, the live one included.
const KEEP_FILES: usize = 3;
/// The daemon's filter when `HYP_LOG` is unset.
const DAEMON_DEFAULT_FILTER: &str = "info";
/// The event name of a record that carries none (another crate's log line).
const FOREIGN_EVENT: &str = "log";
/// Keys every line has; a field never replaces them and readable lines
/// leave the last two out.
const ENVELOPE: [&str; 5] = ["ts", "level", "event", "pid", "run_id"];

/// Record one structured event: `event!(Level, "event.name", fields)`, where
/// `Level` is a `log::Level` variant (`Error`, `Warn`, `Info`, `Debug`) and
/// `fields` a `serde_json::Value` object (omitted: no fields). Expands to a
/// `log` macro, so the target is the calling module and nothing is built
/// when the level is filtered out.
#[macro_export]
macro_rules! event {
    ($level:ident, $event:expr $(,)?) => {
        $crate::event!($level, $event, ::serde_json::Value::Null)
    };
    ($level:ident, $event:expr, $fields:expr $(,)?) => {
        ::log::log!(::log::Level::$level, event = $event, fields:serde = $fields; "{}", $event)
    };
}

/// `HYP_LOG` holds something env_logger's filter syntax rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub spec: String,
    pub reason: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HYP_LOG: invalid filter '{}': {}",
            self.spec, self.reason
        )
    }
}

impl std::error::Error for FilterError {}

/// The `HYP_LOG` filter, checked: `Ok(None)` when unset or empty. env_logger
/// itself only warns about a bad spec and drops it, so it is parsed here
/// with `env_filter` (the crate env_logger filters with) to refuse it at
/// startup instead.
pub fn filter_from_env() -> Result<Option<String>, FilterError> {
    match std::env::var("HYP_LOG") {
        Ok(spec) if !spec.trim().is_empty() => check_filter(&spec).map(Some),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => Err(FilterError {
            spec: raw.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        }),
    }
}

fn check_filter(spec: &str) -> Result<String, FilterError> {
    match env_filter::Builder::new().try_parse(spec) {
        Ok(_) => Ok(spec.to_string()),
        Err(err) => {
            let reason = err.to_string();
            let reason = reason
                .strip_prefix("error parsing logger filter: ")
                .unwrap_or(&reason)
                .to_string();
            Err(FilterError {
                spec: spec.to_string(),
                reason,
            })
        }
    }
}

/// Outside the daemon: readable lines on stderr, only when `HYP_LOG` set a
/// filter. Without one no logger is installed and every event costs one
/// level check.
pub fn init_terminal(filter: Option<&str>) {
    let Some(filter) = filter else {
        return;
    };
    let _ = env_logger::Builder::new()
        .parse_filters(filter)
        .format(|buf, record| writeln!(buf, "{}", readable_line(&line_of(record, ""))))
        .target(env_logger::Target::Stderr)
        .try_init();
}

/// The daemon: JSON lines appended to `path` (rotated), teed readable to a
/// terminal stderr; filtered by `filter`, else info. Called once at boot;
/// a second call changes nothing.
pub fn init_daemon(path: &Path, run_id: &str, filter: Option<&str>) -> io::Result<()> {
    let writer = DaemonLogWriter {
        log: RotatingLog::open(path)?,
        echo_to_terminal: io::stderr().is_terminal(),
        pending: Vec::new(),
    };
    let run_id = run_id.to_string();
    let _ = env_logger::Builder::new()
        .parse_filters(filter.unwrap_or(DAEMON_DEFAULT_FILTER))
        .format(move |buf, record| {
            serde_json::to_writer(&mut *buf, &Value::Object(line_of(record, &run_id)))?;
            buf.write_all(b"\n")
        })
        .target(env_logger::Target::Pipe(Box::new(writer)))
        .try_init();
    Ok(())
}

/// One record as the object a line holds: the envelope, then the fields
/// (for a record of another crate: its target, message and key-values).
fn line_of(record: &log::Record<'_>, run_id: &str) -> Map<String, Value> {
    let key_values = record.key_values();
    let event = key_values
        .get(Key::from_str("event"))
        .and_then(|value| value.to_borrowed_str().map(str::to_string));
    let mut line = Map::new();
    line.insert("ts".into(), Value::String(crate::time::now_iso()));
    line.insert(
        "level".into(),
        Value::String(record.level().as_str().to_ascii_lowercase()),
    );
    let fields = match event {
        Some(event) => {
            line.insert("event".into(), Value::String(event));
            key_values
                .get(Key::from_str("fields"))
                .map_or(Value::Null, |fields| json_of(&fields))
        }
        None => {
            line.insert("event".into(), Value::String(FOREIGN_EVENT.into()));
            Value::Object(foreign_fields(record))
        }
    };
    line.insert("pid".into(), Value::from(std::process::id()));
    line.insert("run_id".into(), Value::String(run_id.into()));
    match fields {
        Value::Object(map) => {
            for (key, value) in map {
                line.entry(key).or_insert(value);
            }
        }
        Value::Null => {}
        other => {
            line.insert("value".into(), other);
        }
    }
    line
}

fn json_of(value: &kv::Value<'_>) -> Value {
    serde_json::to_value(value).unwrap_or_else(|_| Value::String(value.to_string()))
}

/// A record of another crate (ureq, rustls): its target, its message and
/// any key-values it carries.
fn foreign_fields(record: &log::Record<'_>) -> Map<String, Value> {
    struct Collect(Map<String, Value>);
    impl<'kvs> VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
            self.0.insert(key.as_str().to_string(), json_of(&value));
            Ok(())
        }
    }
    let mut fields = Map::new();
    fields.insert("target".into(), Value::String(record.target().into()));
    fields.insert("message".into(), Value::String(record.args().to_string()));
    let mut collect = Collect(fields);
    let _ = record.key_values().visit(&mut collect);
    collect.0
}

/// A log line for people: `2026-12-04T10:02:03Z warn  config.rollback
/// etag=rev-2 reason="..."`: the time to the second, the level, the event,
/// then every field but `pid` and `run_id`. A string is bare unless it holds
/// a space, a quote, `=` or nothing, then it is a JSON string; other values
/// are compact JSON. Control, bidi and invisible characters are removed, so
/// a value from a file or a server cannot forge terminal output.
pub fn readable_line(line: &Map<String, Value>) -> String {
    let text_of = |key: &str| line.get(key).and_then(Value::as_str).unwrap_or("");
    let mut text = format!(
        "{} {:<5} {}",
        to_the_second(text_of("ts")),
        text_of("level"),
        text_of("event")
    );
    let mut separator = "  ";
    for (key, value) in line {
        if ENVELOPE.contains(&key.as_str()) {
            continue;
        }
        text.push_str(separator);
        separator = " ";
        text.push_str(key);
        text.push('=');
        text.push_str(&readable_value(value));
    }
    text.chars()
        .filter(|ch| !crate::sanitize::is_hidden(*ch))
        .collect()
}

fn readable_value(value: &Value) -> String {
    match value {
        Value::String(text) if is_bare(text) => text.clone(),
        other => other.to_string(),
    }
}

fn is_bare(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|ch| ch.is_whitespace() || ch == '"' || ch == '=' || ch.is_control())
}

/// `2026-12-04T10:02:03.123Z` -> `2026-12-04T10:02:03Z`; anything else as is.
fn to_the_second(ts: &str) -> String {
    match (ts.find('.'), ts.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &ts[..dot]),
        _ => ts.to_string(),
    }
}

/// env_logger's pipe target in the daemon: each JSON line goes to the
/// rotating file and, on a terminal, to stderr as a readable line.
struct DaemonLogWriter {
    log: RotatingLog,
    echo_to_terminal: bool,
    /// Bytes of a line not yet ended (env_logger writes whole lines, but a
    /// `Write` may be handed any split).
    pending: Vec<u8>,
}

impl Write for DaemonLogWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.log.append(&line);
            if self.echo_to_terminal {
                echo(&line);
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn echo(line: &[u8]) {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(line) {
        eprintln!("{}", readable_line(&map));
    }
}

/// `daemon.log` with size-based rotation: past [`ROTATE_BYTES`] the file
/// becomes `.1`, `.1` becomes `.2`, and the oldest falls off.
struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Open (create 0600, in a 0700 directory) `path` for appending.
    fn open(path: &Path) -> io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            statefile::create_private_dir(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.size + bytes.len() as u64 > ROTATE_BYTES && self.size > 0 {
            self.rotate();
        }
        if self.file.write_all(bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..KEEP_FILES).rev() {
            let from = if n == 1 {
                self.path.clone()
            } else {
                numbered(n - 1)
            };
            let _ = fs::rename(&from, numbered(n));
        }
        if let Ok(file) = open_append(&self.path) {
            self.file = file;
            self.size = 0;
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(statefile::FILE_MODE)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line_for(level: log::Level, event: &str, fields: &Value) -> Map<String, Value> {
        let fields = kv::Value::from_serde(fields);
        let key_values: [(&str, kv::Value<'_>); 2] =
            [("event", kv::Value::from(event)), ("fields", fields)];
        line_of(
            &log::Record::builder()
                .level(level)
                .target("hyp::control::engine")
                .key_values(&key_values)
                .args(format_args!("{event}"))
                .build(),
            "run-1",
        )
    }

    #[test]
    fn a_line_carries_the_envelope_then_the_fields_in_order() {
        let line = line_for(
            log::Level::Warn,
            "config.rollback",
            &json!({"reason": "x", "pid": 0, "event": "other", "n": 2}),
        );
        let keys: Vec<&str> = line.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["ts", "level", "event", "pid", "run_id", "reason", "n"]
        );
        assert_eq!(line["level"], "warn");
        assert_eq!(line["event"], "config.rollback");
        assert_eq!(line["run_id"], "run-1");
        assert_eq!(line["reason"], "x");
        assert_eq!(line["n"], 2);
        // The envelope wins over a field of the same name.
        assert_eq!(line["pid"], json!(std::process::id()));
        assert!(crate::time::parse_iso(line["ts"].as_str().unwrap()).is_some());
    }

    #[test]
    fn a_record_of_another_crate_keeps_its_target_and_message() {
        let line = line_of(
            &log::Record::builder()
                .level(log::Level::Debug)
                .target("ureq::pool")
                .args(format_args!("reusing {} connections", 2))
                .build(),
            "r",
        );
        assert_eq!(line["event"], "log");
        assert_eq!(line["level"], "debug");
        assert_eq!(line["target"], "ureq::pool");
        assert_eq!(line["message"], "reusing 2 connections");
    }

    /// Records this test binary's `event!`s (targets and events only).
    struct Capture(std::sync::Mutex<Vec<(String, String)>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            let event = line_of(record, "")["event"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let mut seen = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
            seen.push((record.target().to_string(), event));
        }
        fn flush(&self) {}
    }

    mod nested {
        pub fn emit() {
            crate::event!(Debug, "test.nested_event", serde_json::json!({"k": 1}));
        }
    }

    #[test]
    fn the_event_macro_targets_the_calling_module() {
        static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Trace);
        }
        nested::emit();
        let seen = CAPTURE.0.lock().unwrap().clone();
        assert!(
            seen.contains(&(
                "hyp::logging::tests::nested".to_string(),
                "test.nested_event".to_string()
            )),
            "{seen:?}"
        );
    }

    #[test]
    fn a_readable_line_shows_time_level_event_and_fields() {
        let mut line = Map::new();
        line.insert("ts".into(), json!("2026-12-04T10:02:03.123Z"));
        line.insert("level".into(), json!("warn"));
        line.insert("event".into(), json!("config.rollback"));
        line.insert("pid".into(), json!(7));
        line.insert("run_id".into(), json!("r"));
        line.insert("etag".into(), json!("rev-2"));
        line.insert("reason".into(), json!("probation expired"));
        line.insert("slot".into(), json!(null));
        line.insert("n".into(), json!(3));
        line.insert("bad".into(), json!("a\u{1b}[31m\u{202e}b"));
        assert_eq!(
            readable_line(&line),
            "2026-12-04T10:02:03Z warn  config.rollback  etag=rev-2 \
             reason=\"probation expired\" slot=null n=3 bad=\"a\\u001b[31mb\""
        );
        let mut bare = Map::new();
        bare.insert("ts".into(), json!("2026-12-04T10:02:03.000Z"));
        bare.insert("level".into(), json!("info"));
        bare.insert("event".into(), json!("daemon.stopped"));
        assert_eq!(
            readable_line(&bare),
            "2026-12-04T10:02:03Z info  daemon.stopped"
        );
    }

    #[test]
    fn filters_use_env_loggers_syntax_and_a_bad_one_is_refused() {
        for good in ["warn", "warn,hyp::control=debug", "hyp=trace", "off", "x/y"] {
            assert_eq!(check_filter(good), Ok(good.to_string()), "{good}");
        }
        let err = check_filter("hyp=loud").unwrap_err();
        assert_eq!(
            err.to_string(),
            "HYP_LOG: invalid filter 'hyp=loud': invalid logging spec 'loud'"
        );
        assert!(check_filter("a/b/c").is_err());
        assert!(check_filter("a=b=c").is_err());
    }

    #[test]
    fn the_daemon_writer_appends_whole_lines_however_they_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/daemon.log");
        let mut writer = DaemonLogWriter {
            log: RotatingLog::open(&path).unwrap(),
            echo_to_terminal: false,
            pending: Vec::new(),
        };
        writer.write_all(b"{\"a\":1}\n{\"b\"").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        writer.write_all(b":2}\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn rotation_keeps_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut log = RotatingLog::open(&path).unwrap();
        for generation in 0..5 {
            log.append(format!("{{\"generation\":{generation}}}\n").as_bytes());
            log.rotate();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["daemon.log", "daemon.log.1", "daemon.log.2"]);
        let newest = fs::read_to_string(dir.path().join("daemon.log.1")).unwrap();
        assert!(newest.contains("\"generation\":4"));
    }

    #[test]
    fn a_line_past_the_limit_rotates_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        fs::write(&path, vec![b'x'; ROTATE_BYTES as usize - 4]).unwrap();
        let mut log = RotatingLog::open(&path).unwrap();
        log.append(b"{\"n\":1}\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"n\":1}\n");
        assert_eq!(
            fs::metadata(dir.path().join("daemon.log.1")).unwrap().len(),
            ROTATE_BYTES - 4
        );
    }
}
