//! The pid file `S/run/hypaware.pid`: JSON `{pid, run_id, started_at, mode}`,
//! written by the daemon right after it takes the lock, removed at a clean
//! stop. It names the daemon; it does not prove one runs (the lock does), so a
//! pid file without a lock holder is stale and the next daemon replaces it.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::paths::Paths;
use crate::statefile::{self, StateRead, WriteError};

/// The wire form of the pid file. `mode` is always `foreground`: the daemon
/// has no detached mode (services run it in the foreground).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PidFile {
    pub pid: u32,
    pub run_id: String,
    pub started_at: String,
    pub mode: String,
}

/// What reading the pid file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFileRead {
    Missing,
    /// Present but unusable: not JSON, or no positive integer `pid`.
    Malformed {
        detail: String,
    },
    Ok(PidFile),
}

impl PidFileRead {
    pub fn pid(&self) -> Option<u32> {
        match self {
            PidFileRead::Ok(pid_file) => Some(pid_file.pid),
            _ => None,
        }
    }

    /// The run id, which a staged restart changes while the pid stays.
    pub fn run_id(&self) -> Option<String> {
        match self {
            PidFileRead::Ok(pid_file) => Some(pid_file.run_id.clone()),
            _ => None,
        }
    }
}

/// The lenient reading form: other fields may be absent, and the reference's
/// camelCase names are accepted so a host can move between implementations.
#[derive(Debug, Deserialize)]
struct RawPidFile {
    pid: Value,
    #[serde(default, alias = "runId")]
    run_id: Option<String>,
    #[serde(default, alias = "startedAt")]
    started_at: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

pub fn write(paths: &Paths, pid_file: &PidFile) -> Result<(), WriteError> {
    statefile::write(&paths.pid_file(), pid_file)
}

pub fn read(paths: &Paths) -> PidFileRead {
    read_at(&paths.pid_file())
}

fn read_at(path: &Path) -> PidFileRead {
    let raw = match statefile::read::<RawPidFile>(path) {
        StateRead::Missing => return PidFileRead::Missing,
        StateRead::Ok(raw) => raw,
        other => {
            let detail = other
                .problem(path)
                .unwrap_or_else(|| format!("{} is unusable", path.display()));
            return PidFileRead::Malformed { detail };
        }
    };
    let pid = raw
        .pid
        .as_u64()
        .filter(|pid| *pid > 0)
        .and_then(|pid| u32::try_from(pid).ok());
    match pid {
        Some(pid) => PidFileRead::Ok(PidFile {
            pid,
            run_id: raw.run_id.unwrap_or_default(),
            started_at: raw.started_at.unwrap_or_default(),
            mode: raw.mode.unwrap_or_default(),
        }),
        None => PidFileRead::Malformed {
            detail: format!("{} has no usable pid (found {})", path.display(), raw.pid),
        },
    }
}

/// Remove the pid file; a missing file is fine.
pub fn remove(paths: &Paths) -> io::Result<()> {
    match std::fs::remove_file(paths.pid_file()) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_explains_what_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        assert_eq!(read(&paths), PidFileRead::Missing);
        let pid_file = PidFile {
            pid: 42,
            run_id: "daemon-42-1".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            mode: "foreground".into(),
        };
        write(&paths, &pid_file).unwrap();
        assert_eq!(read(&paths), PidFileRead::Ok(pid_file));

        for (text, needle) in [
            ("not json", "not valid JSON"),
            ("{\"pid\": \"42\"}", "no usable pid"),
            ("{\"pid\": -3}", "no usable pid"),
            ("", "empty"),
        ] {
            std::fs::write(paths.pid_file(), text).unwrap();
            match read(&paths) {
                PidFileRead::Malformed { detail } => {
                    assert!(detail.contains(needle), "{text:?} -> {detail}")
                }
                other => panic!("{text:?} read as {other:?}"),
            }
        }

        std::fs::write(paths.pid_file(), "{\"pid\": 7, \"runId\": \"r\"}").unwrap();
        assert_eq!(read(&paths).pid(), Some(7));
        remove(&paths).unwrap();
        remove(&paths).unwrap();
        assert_eq!(read(&paths), PidFileRead::Missing);
    }
}
