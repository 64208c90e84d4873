//! The forward sink: every cache row reaches each central server exactly
//! once, in the reference's wire format (contract §12, reference
//! forward-sink.md).
//!
//! Map: `wire` (a row as an NDJSON line), `chunk` (bounded bodies and batch
//! ids), `cache_view` (the cache in sequence order), `privacy` (what stays
//! on the machine), `store` (`forward.db`: targets, watermarks, intents, the
//! sent-row ledger, quarantine, export state), `export` (one export of one
//! instance). This file holds what the CLI, the daemon and status share:
//! the instances to export, the export lock, the first-sync hold, the
//! report of one export, and the status view.
//!
//! **Invariant:** an instance is exported by one process at a time, the
//! holder of its export lock; `hyp sync` waits for it.

use std::fmt;
use std::fs;
use std::io::{self, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::config::EffectiveConfig;
use crate::control::sink::{self, CentralSink, SinkError};
use crate::paths::Paths;
use crate::statefile;

pub mod cache_view;
pub mod chunk;
pub mod export;
pub mod privacy;
pub mod reader;
pub mod store;
pub mod uplink;
pub mod wire;

pub use export::ExportOptions;
use store::{ExportError, ForwardStore};

/// The ingest signal of `ai_gateway_messages`.
pub const SIGNAL: &str = "proxy";

/// Rows pending behind failures longer than this degrade `overall`.
const STUCK_AFTER: Duration = Duration::from_secs(3600);

/// The central sink instances of the effective config, each parsed on its
/// own (with the join token when the config carries none). Empty on
/// a host that is not joined: `hyp leave` stops exports.
pub fn instances(paths: &Paths, config: &EffectiveConfig) -> Vec<Result<CentralSink, SinkError>> {
    if !config.has_central_layer {
        return Vec::new();
    }
    sink::central_sinks(&config.document)
        .into_iter()
        .map(|parsed| parsed.map(|central| sink::with_join_token(paths, central)))
        .collect()
}

/// Why an export did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub http_status: Option<u16>,
    pub message: String,
    /// A wait central asked for and the export did not start (unscaled).
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(kind: FailureKind, http_status: Option<u16>, message: String) -> Failure {
        Failure {
            kind,
            http_status,
            message,
            retry_after: None,
        }
    }

    fn state(err: store::StoreError) -> Failure {
        Failure::new(FailureKind::State, None, err.to_string())
    }

    fn interrupted() -> Failure {
        Failure::new(
            FailureKind::Interrupted,
            None,
            "interrupted; the chunk in flight is sent again first next time".into(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connect, TLS, timeout or a broken answer.
    Transport,
    /// A status that is neither success, throttling, 401 nor a refusal.
    ServerError,
    /// 429/503 past the inline waiting budget.
    Throttled,
    /// 401 again after a refresh.
    Unauthorized,
    /// No identity could be had (bootstrap or refresh failed).
    Identity,
    /// A usage-policy file is malformed: nothing is sent (fail closed).
    Policy,
    /// `forward.db` or the installation id could not be read or written.
    State,
    /// The cache could not be read.
    Cache,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl FailureKind {
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Transport => "transport",
            FailureKind::ServerError => "server_error",
            FailureKind::Throttled => "throttled",
            FailureKind::Unauthorized => "unauthorized",
            FailureKind::Identity => "identity",
            FailureKind::Policy => "policy",
            FailureKind::State => "state",
            FailureKind::Cache => "cache",
            FailureKind::Interrupted => "interrupted",
        }
    }
}

/// How one instance's export ended (`hyp sync --json` `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Exported,
    NothingToSend,
    Partial,
    Failed,
    Held,
}

impl SyncStatus {
    pub fn name(self) -> &'static str {
        match self {
            SyncStatus::Exported => "exported",
            SyncStatus::NothingToSend => "nothing_to_send",
            SyncStatus::Partial => "partial",
            SyncStatus::Failed => "failed",
            SyncStatus::Held => "held",
        }
    }

    /// Whether `hyp sync` may exit 0 on it.
    pub fn is_complete(self) -> bool {
        matches!(self, SyncStatus::Exported | SyncStatus::NothingToSend)
    }
}

/// One instance's entry in `hyp sync --json` (key order is the wire order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceReport {
    pub instance: String,
    pub status: SyncStatus,
    pub rows_sent: u64,
    pub bytes_sent: u64,
    pub chunks: u64,
    pub rows_withheld: u64,
    pub rows_quarantined: u64,
    pub pending_rows: u64,
    pub error: Option<String>,
    /// Stopped by SIGINT/SIGTERM (for the exit code only).
    #[serde(skip)]
    pub interrupted: bool,
    /// How long the export took, for the text line (`None`: nothing ran).
    #[serde(skip)]
    pub elapsed: Option<std::time::Duration>,
}

impl InstanceReport {
    /// A report of nothing sent (the counters zero).
    pub fn unsent(instance: &str, status: SyncStatus, pending_rows: u64) -> InstanceReport {
        InstanceReport {
            instance: instance.to_string(),
            status,
            rows_sent: 0,
            bytes_sent: 0,
            chunks: 0,
            rows_withheld: 0,
            rows_quarantined: 0,
            pending_rows,
            error: None,
            interrupted: false,
            elapsed: None,
        }
    }

    pub fn failed(instance: &str, failure: &Failure, pending_rows: u64) -> InstanceReport {
        InstanceReport {
            error: Some(failure.message.clone()),
            interrupted: failure.kind == FailureKind::Interrupted,
            ..InstanceReport::unsent(instance, SyncStatus::Failed, pending_rows)
        }
    }

    pub fn held(instance: &str, until: Timestamp, pending_rows: u64) -> InstanceReport {
        InstanceReport {
            error: Some(format!(
                "a first-sync hold keeps every export until {}: run 'hyp sync' on a terminal and answer yes to release it",
                crate::time::iso_ms(until)
            )),
            ..InstanceReport::unsent(instance, SyncStatus::Held, pending_rows)
        }
    }
}

/// Export `sink` now: wait for its export lock (calling `waiting` with the
/// holder's pid first if another process holds it), then run one export.
pub fn export(
    paths: &Paths,
    sink: &CentralSink,
    options: ExportOptions,
    stop: &AtomicBool,
    waiting: &dyn Fn(Option<u32>),
) -> InstanceReport {
    let _lock = match take_export_lock(paths, &sink.name, waiting) {
        Ok(lock) => lock,
        Err(err) => {
            let failure = Failure::new(
                FailureKind::State,
                None,
                format!("cannot take the export lock of '{}': {err}", sink.name),
            );
            return InstanceReport::failed(&sink.name, &failure, 0);
        }
    };
    export::run(paths, sink, options, stop)
}

fn export_lock_path(paths: &Paths, instance: &str) -> PathBuf {
    paths.sink_instance_dir(instance).join("export.lock")
}

/// The instance's export lock, with our pid written in it for waiters.
fn take_export_lock(
    paths: &Paths,
    instance: &str,
    waiting: &dyn Fn(Option<u32>),
) -> io::Result<fs::File> {
    let path = export_lock_path(paths, instance);
    if let Some(parent) = path.parent() {
        statefile::create_private_dir(parent)?;
    }
    let mut file = match statefile::try_lock_exclusive(&path)? {
        Some(file) => file,
        None => {
            let holder = fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            waiting(holder);
            statefile::lock_exclusive(&path)?
        }
    };
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Whether a process holds the instance's export lock now. Creates
/// nothing: no lock file means no export ever ran.
fn export_running(paths: &Paths, instance: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = fs::File::open(export_lock_path(paths, instance)) else {
        return false;
    };
    // SAFETY: flock on a descriptor owned by `file`; released right away.
    unsafe {
        if libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) == 0 {
            libc::flock(file.as_raw_fd(), libc::LOCK_UN);
            return false;
        }
    }
    true
}

/// Whether the instance's last failure (or a `Retry-After`) set a next
/// attempt that has not come yet.
pub fn waiting_for_backoff(paths: &Paths, instance: &str, now: Timestamp) -> bool {
    ForwardStore::open_read_only(&paths.sink_instance_dir(instance))
        .ok()
        .flatten()
        .and_then(|store| store.export_state().ok())
        .and_then(|state| state.next_attempt_at)
        .and_then(|at| crate::time::parse_iso(&at))
        .is_some_and(|next| next > now)
}

/// The deadline of a live first-sync hold (`deadline_ms` in the future).
/// A missing, malformed or past marker is no hold.
pub fn first_sync_hold(paths: &Paths, now: Timestamp) -> Option<Timestamp> {
    let document = statefile::read_value(&paths.first_sync_hold()).ok()?;
    let deadline_ms = document.get("deadline_ms").and_then(Value::as_i64)?;
    let deadline = Timestamp::from_millisecond(deadline_ms).ok()?;
    (deadline > now).then_some(deadline)
}

/// Remove the hold marker (an attended release, or a past marker).
pub fn clear_first_sync_hold(paths: &Paths) -> io::Result<()> {
    match fs::remove_file(paths.first_sync_hold()) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Rows committed to the cache and not yet settled for the instance's
/// current target (read-only; for status).
pub fn pending_rows(paths: &Paths, instance: &str) -> u64 {
    let Some(cache) = cache_view::CacheView::open_for_status(&paths.cache_db()) else {
        return 0;
    };
    cache.rows_after(current_watermark(paths, instance).as_ref())
}

/// What an export of `instance` would read: pending rows and about how
/// many bytes they make (read-only; reads every pending row).
pub fn plan(paths: &Paths, instance: &str) -> (u64, u64) {
    let Some(cache) = cache_view::CacheView::open_for_status(&paths.cache_db()) else {
        return (0, 0);
    };
    let mark = current_watermark(paths, instance);
    let after = cache.settled_up_to(mark.as_ref());
    (
        cache.rows_after(mark.as_ref()),
        cache.wire_bytes_after(after),
    )
}

fn current_watermark(paths: &Paths, instance: &str) -> Option<store::Watermark> {
    let store = ForwardStore::open_read_only(&paths.sink_instance_dir(instance))
        .ok()
        .flatten()?;
    let target = current_target(paths, &store)?;
    store.watermark(target).ok().flatten()
}

/// The target the next export will use: the identity's (url, gateway id)
/// when both are known, else the last target exported to.
fn current_target(paths: &Paths, store: &ForwardStore) -> Option<store::TargetId> {
    let identity = statefile::read::<crate::control::identity::Identity>(&paths.identity()).ok();
    if let Some(identity) = &identity
        && let Some(url) = &identity.central_url
        && let Ok(Some(target)) = store.find_target(url, &identity.gateway_id)
    {
        return Some(target);
    }
    store.export_state().ok()?.target_id
}

/// Where an instance's exports stand, for `hyp status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    Idle,
    Exporting,
    /// Waiting for `next_attempt_at` after a failure or a `Retry-After`.
    Backoff,
    /// The last export failed and the next try is due.
    Failing,
    Held,
    NotJoined,
}

/// The §12 fields of a central sink row in `hyp status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkOverview {
    pub state: SinkState,
    pub pending_rows: u64,
    pub last_export_at: Option<String>,
    pub last_success_at: Option<String>,
    pub next_attempt_at: Option<String>,
    pub rows_sent_total: u64,
    pub rows_quarantined: u64,
    pub last_error: Option<ExportError>,
    /// When the current failure streak began (status text and diagnostics).
    #[serde(skip)]
    pub failing_since: Option<String>,
    /// `forward.db` exists but could not be read.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

/// Read-only: the overview of `instance`. `joined` is whether the host has
/// a central layer.
pub fn overview(paths: &Paths, instance: &str, joined: bool, now: Timestamp) -> SinkOverview {
    let mut view = SinkOverview {
        state: SinkState::Idle,
        pending_rows: 0,
        last_export_at: None,
        last_success_at: None,
        next_attempt_at: None,
        rows_sent_total: 0,
        rows_quarantined: 0,
        last_error: None,
        failing_since: None,
        unreadable: None,
    };
    let store = match ForwardStore::open_read_only(&paths.sink_instance_dir(instance)) {
        Ok(store) => store,
        Err(err) => {
            view.unreadable = Some(err.to_string());
            None
        }
    };
    if let Some(store) = &store {
        // Opening reads nothing: a garbled, emptied or cut file fails here.
        let state = store.export_state().unwrap_or_else(|err| {
            view.unreadable = Some(err.to_string());
            Default::default()
        });
        if let Some(target) = current_target(paths, store) {
            let totals = store.totals(target).unwrap_or_default();
            view.rows_sent_total = totals.rows_sent;
            view.rows_quarantined = totals.rows_quarantined;
        }
        view.last_export_at = state.last_export_at;
        view.last_success_at = state.last_success_at;
        view.next_attempt_at = state.next_attempt_at;
        view.last_error = state.last_error;
        if state.failures > 0 {
            view.failing_since = state.failing_since;
        }
    }
    view.pending_rows = pending_rows(paths, instance);
    view.state = if !joined {
        SinkState::NotJoined
    } else if export_running(paths, instance) {
        SinkState::Exporting
    } else if first_sync_hold(paths, now).is_some() {
        SinkState::Held
    } else if view.failing_since.is_none() {
        SinkState::Idle
    } else if view
        .next_attempt_at
        .as_deref()
        .and_then(crate::time::parse_iso)
        .is_some_and(|next| next > now)
    {
        SinkState::Backoff
    } else {
        SinkState::Failing
    };
    view
}

impl SinkOverview {
    /// Rows have waited behind failures for more than an hour.
    pub fn stuck(&self, now: Timestamp) -> bool {
        self.pending_rows > 0
            && self
                .failing_since
                .as_deref()
                .and_then(crate::time::parse_iso)
                .is_some_and(|since| {
                    now.duration_since(since).as_secs() >= STUCK_AFTER.as_secs() as i64
                })
    }
}

impl fmt::Display for SinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SinkState::Idle => "idle",
            SinkState::Exporting => "exporting",
            SinkState::Backoff => "backoff",
            SinkState::Failing => "failing",
            SinkState::Held => "held",
            SinkState::NotJoined => "not_joined",
        };
        f.write_str(name)
    }
}
