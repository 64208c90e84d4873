//! The wire shape of `hyp status --json` (schema_version 1). Every top-level
//! key is always present; optional sections are `null`, never omitted.
//! Values are raw here; only the text renderer sanitises them.

use serde::Serialize;
use serde_json::Value;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub schema_version: u32,
    pub overall: Overall,
    pub config: ConfigSummary,
    pub active_plugins: Vec<ActivePlugin>,
    pub daemon: DaemonSummary,
    pub sinks: Vec<SinkRow>,
    pub cache: CacheSummary,
    pub config_layers: Option<ConfigLayers>,
    pub remote_config: RemoteConfig,
    /// `null` when nothing applies (a non-joined host with no markers).
    pub client_actions: Option<Vec<crate::actions::rows::ActionRow>>,
    /// Continuous capture per provider (contract §13); `null` when the host
    /// is not joined or no provider is enabled.
    pub capture: Option<std::collections::BTreeMap<String, CaptureRow>>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    Healthy,
    Degraded,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    /// The local layer's path (`HYP_CONFIG` or the default).
    pub path: String,
    /// Whether either layer loaded.
    pub exists: bool,
    /// Whether the effective config has no validation errors.
    pub valid: bool,
    /// Whether the machine is joined (a central layer loaded).
    pub joined: bool,
    /// Whether the local layer file loaded.
    pub local_loaded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActivePlugin {
    pub name: String,
    /// `active` (this binary implements it) or `inert` (accepted, not
    /// available on this host).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Central,
    Local,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonSummary {
    /// The systemd user unit file exists.
    pub installed: bool,
    /// A process holds the single-instance lock.
    pub running: bool,
    /// `status.json`'s state while the daemon lives; without a process
    /// `not_running`, or `dead` when the file says anything but `stopped`.
    pub state: String,
    /// The raw state from `status.json` when `state` was derived.
    pub last_state: Option<String>,
    pub pid: Option<u64>,
    pub mode: Option<String>,
    pub run_id: Option<String>,
    pub started_at: Option<String>,
    pub updated_at: Option<String>,
    /// Why the pid file or status file could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkRow {
    pub instance: String,
    pub plugin: String,
    /// `request` (a `plugin:` sink) or `blob` (writer + destination).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// For a central sink: where its exports stand (contract §12).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub forward: Option<crate::sink::SinkOverview>,
}

/// One provider's capture sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureRow {
    pub enabled: bool,
    pub interval_seconds: u64,
    pub last_sweep_at: Option<String>,
    pub last_sweep_rows: Option<u64>,
    /// `null` while no daemon runs (nothing will sweep).
    pub next_sweep_at: Option<String>,
    pub last_error: Option<crate::actions::capture::SweepError>,
    /// Why sweeps have not started (the first import is not done yet).
    pub waiting_for: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheSummary {
    pub dir: String,
    pub size_bytes: u64,
    /// Rows in `ai_gateway_messages` (0 without a cache).
    pub rows: u64,
    /// A number of days (an integer when integral).
    pub retention_days: Value,
    /// `config` or `default`.
    pub retention_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// First imports being built beside the cache (`cache.db.importing.<pid>`):
    /// running, or a killed builder's leftover the next backfill removes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_imports: Vec<FirstImport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstImport {
    pub pid: u32,
    pub bytes: u64,
    pub running: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigLayers {
    pub central: bool,
    /// `slot_a`, `slot_b` or `seed`.
    pub central_source: String,
    pub central_path: String,
    pub central_plugins: Vec<String>,
    pub central_sinks: Vec<String>,
    pub central_query_ignored: bool,
    pub local_not_applied: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteConfig {
    /// The etag of the active slot (`null` in seed mode or when not joined).
    pub running_etag: Option<String>,
    pub probation: Option<ProbationView>,
    pub last_rollback: Option<Value>,
    pub bad_etag: Option<Value>,
    /// The daemon's last poll of central config (from `status.json`).
    pub last_poll_at: Option<String>,
    /// `ok`, `not_registered`, or the error kind of a failed poll.
    pub last_poll_result: Option<String>,
    /// `null` while no daemon runs.
    pub next_poll_at: Option<String>,
    /// The last failed poll: `{at, kind, http_status, message}`.
    pub last_error: Option<crate::messages::PollError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbationView {
    pub etag: Option<String>,
    pub applied_at: Option<String>,
    pub until: Option<String>,
    /// Seconds until the deadline (0 once it has passed).
    pub remaining_seconds: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub kind: String,
    pub message: String,
    pub repair: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

impl Diagnostic {
    pub fn warning(kind: &str, message: String, repair: &[&str]) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            kind: kind.to_string(),
            message,
            repair: repair.iter().map(|line| line.to_string()).collect(),
            pointer: None,
        }
    }

    pub fn error(kind: &str, message: String, repair: &[&str]) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            ..Diagnostic::warning(kind, message, repair)
        }
    }

    /// Whether this diagnostic makes `overall` degraded: any error, and the
    /// "no usable config" kinds. Nothing about client actions ever does.
    pub fn degrades(&self) -> bool {
        self.severity == Severity::Error
            || matches!(self.kind.as_str(), "config_missing" | "config_unreadable")
    }
}
