//! `S/run/status.json`: the daemon's own account of itself, for `hyp status`
//! and `hyp daemon status`. Written at every state change (starting, healthy,
//! reload, restarting, stopping, stopped) and never read back by the daemon.
//!
//! Keys are snake_case like every other file this binary writes (the
//! reference writes camelCase; readers here accept either where it matters).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::paths::Paths;
use crate::statefile::{self, StateRead};

/// The life of one daemon process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    Starting,
    Healthy,
    /// Draining before a staged restart (exec of itself, same pid).
    Restarting,
    Stopping,
    Stopped,
}

impl DaemonState {
    pub fn name(self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Healthy => "healthy",
            DaemonState::Restarting => "restarting",
            DaemonState::Stopping => "stopping",
            DaemonState::Stopped => "stopped",
        }
    }
}

/// The wire form of `status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonStatus {
    pub schema_version: u32,
    pub state: DaemonState,
    pub pid: u32,
    pub run_id: String,
    pub mode: &'static str,
    pub started_at: String,
    pub updated_at: String,
    pub healthy_at: Option<String>,
    pub stopped_at: Option<String>,
    /// Now minus `healthy_at` when written; 0 before the daemon was healthy.
    pub uptime_ms: u64,
    /// The local config layer this daemon merges.
    pub config_path: String,
    /// Whether a central layer (active slot or seed) is present.
    pub central_layer: bool,
    /// Whether the poll thread runs (it does exactly when a central layer is present).
    pub poll_thread: bool,
    /// The probation deadline the watchdog is armed for, if any.
    pub probation_until: Option<String>,
    pub time_scale: f64,
    pub last_reload_at: Option<String>,
    /// Why the daemon is restarting (`config_applied`, `probation_expired`, ...).
    pub restart_reason: Option<String>,
    pub warnings: Vec<String>,
    /// The polls of central config so far (null before the first).
    pub poll: Option<crate::messages::PollRecord>,
}

/// Owns the current `DaemonStatus` and persists it on every change.
#[derive(Debug)]
pub struct StatusWriter {
    paths: Paths,
    status: DaemonStatus,
    healthy_since: Option<SystemTime>,
}

impl StatusWriter {
    pub fn new(paths: &Paths, run_id: &str, started_at: &str, time_scale: f64) -> StatusWriter {
        let status = DaemonStatus {
            schema_version: 1,
            state: DaemonState::Starting,
            pid: std::process::id(),
            run_id: run_id.to_string(),
            mode: "foreground",
            started_at: started_at.to_string(),
            updated_at: started_at.to_string(),
            healthy_at: None,
            stopped_at: None,
            uptime_ms: 0,
            config_path: paths.local_config().path.display().to_string(),
            central_layer: false,
            poll_thread: false,
            probation_until: None,
            time_scale,
            last_reload_at: None,
            restart_reason: None,
            warnings: Vec::new(),
            poll: None,
        };
        StatusWriter {
            paths: paths.clone(),
            status,
            healthy_since: None,
        }
    }

    /// Change what the next write records (central layer, poll thread, ...).
    pub fn update(&mut self, change: impl FnOnce(&mut DaemonStatus)) {
        change(&mut self.status);
    }

    pub fn warn(&mut self, warning: String) {
        self.status.warnings.push(warning);
    }

    /// Move to `state` and write the file. A failed write is logged, never
    /// fatal: the daemon's work does not depend on its own status file.
    pub fn write(&mut self, state: DaemonState) {
        let now = SystemTime::now();
        let now_iso = crate::time::iso_system(now);
        if state == DaemonState::Healthy && self.healthy_since.is_none() {
            self.healthy_since = Some(now);
            self.status.healthy_at = Some(now_iso.clone());
        }
        if state == DaemonState::Stopped {
            self.status.stopped_at = Some(now_iso.clone());
        }
        self.status.state = state;
        self.status.updated_at = now_iso;
        self.status.uptime_ms = self
            .healthy_since
            .and_then(|since| now.duration_since(since).ok())
            .map_or(0, |uptime| {
                u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX)
            });
        if let Err(err) = statefile::write(&self.paths.status_file(), &self.status) {
            crate::event!(
                Error,
                "daemon.status_write_failed",
                json!({"state": state.name(), "message": err.to_string()}),
            );
        }
    }
}

/// `status.json` as an untyped value (so `hyp daemon status --json` passes it
/// through byte-faithfully, unknown keys included).
pub fn read(paths: &Paths) -> StateRead<Value> {
    statefile::read_value(&paths.status_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_each_state_with_its_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        let mut writer = StatusWriter::new(&paths, "daemon-1-2", "2026-01-01T00:00:00.000Z", 1.0);
        writer.write(DaemonState::Starting);
        let value = read(&paths).ok().unwrap();
        assert_eq!(value["state"], "starting");
        assert_eq!(value["healthy_at"], Value::Null);
        assert_eq!(value["uptime_ms"], 0);

        writer.write(DaemonState::Healthy);
        writer.update(|status| status.central_layer = true);
        writer.write(DaemonState::Stopped);
        let value = read(&paths).ok().unwrap();
        assert_eq!(value["state"], "stopped");
        assert_eq!(value["run_id"], "daemon-1-2");
        assert_eq!(value["pid"], std::process::id());
        assert_eq!(value["central_layer"], true);
        assert!(value["healthy_at"].is_string());
        assert!(value["stopped_at"].is_string());
    }
}
