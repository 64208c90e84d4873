//! Structured events: the daemon's JSON-lines log, callable from any module.
//!
//! Every line is `{ts, level, event, pid, run_id, ...fields}` with the
//! reference's event names (`config.applied`, `client_action.backfill_spawn`).
//! The daemon installs the sink once at boot; in other processes nothing is
//! installed and events go to stderr only when `HYP_LOG` asks for them. The
//! file rotates at 10 MiB and keeps 3 files (`daemon.log`, `.1`, `.2`).
//! A failure to log is never an error for the caller.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::statefile;

/// Rotate the log file once it grows past this many bytes.
const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Files kept in all, the live one included.
const KEEP_FILES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// `HYP_LOG`: `error|warn|info|debug|trace` (trace = debug); unset = info.
    fn threshold_from_env() -> Level {
        match std::env::var("HYP_LOG")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "debug" | "trace" => Level::Debug,
            _ => Level::Info,
        }
    }
}

struct Sink {
    path: PathBuf,
    file: File,
    size: u64,
    run_id: String,
    threshold: Level,
    stderr_is_terminal: bool,
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Open `path` for appending and send every later event there. Called once,
/// by the daemon at boot; later calls are ignored.
pub fn install(path: &Path, run_id: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        statefile::create_private_dir(dir)?;
    }
    let file = open_append(path)?;
    let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let sink = Sink {
        path: path.to_path_buf(),
        file,
        size,
        run_id: run_id.to_string(),
        threshold: Level::threshold_from_env(),
        stderr_is_terminal: io::stderr().is_terminal(),
    };
    let _ = SINK.set(Mutex::new(sink));
    Ok(())
}

pub fn error(event: &str, fields: Value) {
    emit(Level::Error, event, fields);
}

pub fn warn(event: &str, fields: Value) {
    emit(Level::Warn, event, fields);
}

pub fn info(event: &str, fields: Value) {
    emit(Level::Info, event, fields);
}

pub fn debug(event: &str, fields: Value) {
    emit(Level::Debug, event, fields);
}

/// Record one event. `fields` should be a JSON object; anything else is kept
/// under the key `value`.
pub fn emit(level: Level, event: &str, fields: Value) {
    match SINK.get() {
        Some(sink) => {
            let mut sink = match sink.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if level > sink.threshold {
                return;
            }
            if sink.stderr_is_terminal {
                eprintln!("{}", human_line(level, event, &fields));
            }
            let line = render_line(level, event, &sink.run_id, fields);
            sink.append(&line);
        }
        None => {
            if std::env::var_os("HYP_LOG").is_some() && level <= Level::threshold_from_env() {
                eprintln!("{}", human_line(level, event, &fields));
            }
        }
    }
}

impl Sink {
    fn append(&mut self, line: &Value) {
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        if self.size + bytes.len() as u64 > ROTATE_BYTES && self.size > 0 {
            self.rotate();
        }
        if self.file.write_all(&bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    /// `daemon.log` -> `.1` -> `.2`; the oldest falls off.
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

fn render_line(level: Level, event: &str, run_id: &str, fields: Value) -> Value {
    let mut line = Map::new();
    line.insert("ts".into(), Value::String(crate::time::now_iso()));
    line.insert("level".into(), Value::String(level.name().into()));
    line.insert("event".into(), Value::String(event.into()));
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
    Value::Object(line)
}

fn human_line(level: Level, event: &str, fields: &Value) -> String {
    let mut text = format!("{} {:<5} {event}", crate::time::now_iso(), level.name());
    if let Value::Object(map) = fields {
        for (key, value) in map {
            match value {
                Value::String(string) => text.push_str(&format!(" {key}={string}")),
                other => text.push_str(&format!(" {key}={other}")),
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_carries_the_envelope_and_the_fields() {
        let line = render_line(
            Level::Warn,
            "config.rollback",
            "run-1",
            json!({"reason": "x", "pid": 0}),
        );
        assert_eq!(line["level"], "warn");
        assert_eq!(line["event"], "config.rollback");
        assert_eq!(line["run_id"], "run-1");
        assert_eq!(line["reason"], "x");
        // The envelope wins over a field of the same name.
        assert_eq!(line["pid"], json!(std::process::id()));
    }

    #[test]
    fn rotation_keeps_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut sink = Sink {
            path: path.clone(),
            file: open_append(&path).unwrap(),
            size: 0,
            run_id: "r".into(),
            threshold: Level::Debug,
            stderr_is_terminal: false,
        };
        for generation in 0..5 {
            sink.append(&json!({"generation": generation}));
            sink.rotate();
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
}
