//! The apply engine: stage, commit, confirm, rollback, boot evaluation
//! (reference config.md §5).
//!
//! **Invariant:** this module is the only writer of the slots, their etag
//! sidecars, the `active` pointer and `state.json`. Every write is ordered so a
//! crash at any point leaves the old config or the new one active, never
//! neither: slots and sidecars first, then the probation marker, then the
//! atomic pointer flip (symlink + rename), then the seed's retirement.
//!
//! A `state.json` that cannot be read or parsed counts as empty (logged), so a
//! damaged file never stops the daemon; the next write replaces it.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config;
use crate::control::sink;
use crate::paths::{Paths, Slot, TimeScale};
use crate::statefile::{self, StateRead};
use crate::time::{iso_ms, parse_iso};

/// The largest document a slot may hold, pretty-printed (1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The probation window's floor (seconds, unscaled).
const MIN_PROBATION_SECS: f64 = 120.0;

/// An active probation read from `state.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probation {
    pub etag: String,
    pub deadline: SystemTime,
}

/// What boot evaluation did (`none`, `cleared_orphan`, `rolled_back`,
/// `rollback_no_target`, `recovered_bad_active`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvaluation {
    pub action: String,
    /// The probation still running after evaluation, for the watchdog.
    pub probation: Option<Probation>,
    /// For `recovered_bad_active`: `seed` or `repull`.
    pub recovery: Option<String>,
}

// ---------------------------------------------------------------------------
// state.json (wire types)

/// `state.json` as on disk (reference §5.4). Unknown keys are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<ProbationMarker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_etag: Option<BadEtag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollback: Option<LastRollback>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbationMarker {
    pub etag: String,
    pub applied_at: String,
    pub until: String,
    /// The slot the apply flipped to.
    pub slot: WireSlot,
    /// The rollback target, or null.
    pub previous_slot: Option<WireSlot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadEtag {
    pub etag: String,
    pub reason: String,
    pub recorded_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRollback {
    pub etag: String,
    pub reason: String,
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A slot as written in `state.json`: `"a"` or `"b"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireSlot {
    A,
    B,
}

impl From<Slot> for WireSlot {
    fn from(slot: Slot) -> WireSlot {
        match slot {
            Slot::A => WireSlot::A,
            Slot::B => WireSlot::B,
        }
    }
}

impl From<WireSlot> for Slot {
    fn from(slot: WireSlot) -> Slot {
        match slot {
            WireSlot::A => Slot::A,
            WireSlot::B => Slot::B,
        }
    }
}

/// Read `state.json`; missing, empty or damaged counts as `{}` (damage is logged).
pub fn read_state(paths: &Paths) -> ApplyState {
    let path = paths.apply_state();
    let read: StateRead<ApplyState> = statefile::read(&path);
    if let Some(problem) = read.problem(&path) {
        crate::event!(
            Error,
            "config.state_unreadable",
            json!({"component": "config", "path": path.display().to_string(), "message": problem}),
        );
    }
    read.ok().unwrap_or_default()
}

fn write_state(paths: &Paths, state: &ApplyState) -> Result<(), statefile::WriteError> {
    statefile::write(&paths.apply_state(), state)
}

// ---------------------------------------------------------------------------
// Read-only queries

/// The probation in `state.json`, if one is active. An unparseable `until`
/// counts as already expired.
pub fn active_probation(paths: &Paths) -> Option<Probation> {
    read_state(paths).probation.map(|marker| Probation {
        deadline: deadline_of(&marker),
        etag: marker.etag,
    })
}

fn deadline_of(marker: &ProbationMarker) -> SystemTime {
    parse_iso(&marker.until)
        .and_then(|until| SystemTime::try_from(until).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The etag of the active slot (its sidecar, trimmed); `None` in seed mode,
/// without a pointer, or with an empty or missing sidecar.
pub fn running_etag(paths: &Paths) -> Option<String> {
    let slot = config::read_active_pointer(paths)?;
    let text = fs::read_to_string(paths.slot_etag(slot)).ok()?;
    let etag = text.trim();
    (!etag.is_empty()).then(|| etag.to_string())
}

/// A slot left without a way to it: neither the `active` pointer nor a
/// seed names a central layer, yet a slot file exists. Only damage does
/// this (join and leave remove the slots with the pointer), and the host
/// then reads as not joined.
pub fn stranded_slot(paths: &Paths) -> Option<Slot> {
    let exists = |path: &Path| fs::symlink_metadata(path).is_ok();
    if config::read_active_pointer(paths).is_some() || exists(&paths.seed()) {
        return None;
    }
    [Slot::A, Slot::B]
        .into_iter()
        .find(|slot| exists(&paths.slot(*slot)))
}

/// The central layer's document, resolved and shape-checked exactly as boot
/// and status resolve it: the active slot when the pointer resolves, else
/// the seed; a layer that fails to load counts as absent.
pub fn central_layer_document(paths: &Paths) -> Option<Value> {
    let (_, path) = config::layers::central_layer_path(paths)?;
    config::layers::load_layer_file(&path).ok()
}

// ---------------------------------------------------------------------------
// Stage

/// What `stage` did with a served document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutcome {
    /// Committed under probation: the daemon must drain and re-exec.
    Applied {
        etag: String,
        deadline: SystemTime,
    },
    /// The served etag is the running one.
    NoopSameEtag,
    /// The served etag is the remembered bad one.
    SkippedBadEtag,
    Failed(StageError),
}

impl StageOutcome {
    /// The reference's `apply_action` (`failed` for every failure).
    pub fn action(&self) -> &'static str {
        match self {
            StageOutcome::Applied { .. } => "applied",
            StageOutcome::NoopSameEtag => "noop_same_etag",
            StageOutcome::SkippedBadEtag => "skipped_bad_etag",
            StageOutcome::Failed(_) => "failed",
        }
    }
}

/// Why a served document was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// This process already committed (or rolled back) and awaits its restart.
    RestartPending,
    /// Empty etag, or the document failed validation.
    ConfigInvalid {
        message: String,
    },
    DocumentTooLarge {
        bytes: usize,
    },
    /// The commit hit an I/O error; nothing was flipped.
    ApplyIo {
        message: String,
    },
}

impl StageError {
    pub fn kind(&self) -> &'static str {
        match self {
            StageError::RestartPending => "restart_pending",
            StageError::ConfigInvalid { .. } => "config_invalid",
            StageError::DocumentTooLarge { .. } => "document_too_large",
            StageError::ApplyIo { .. } => "apply_io_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            StageError::RestartPending => "a staged restart is already pending".into(),
            StageError::ConfigInvalid { message } | StageError::ApplyIo { message } => {
                message.clone()
            }
            StageError::DocumentTooLarge { bytes } => {
                format!("config document is {bytes} bytes; the limit is {MAX_DOCUMENT_BYTES}")
            }
        }
    }
}

/// How a rollback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// The pointer flipped back to this slot: the daemon must restart.
    RolledBack { to: Slot },
    /// No distinct target (#141): probation cleared, the config keeps running.
    NoTarget,
}

/// The engine as the poll thread holds it: the paths, the time scale for the
/// probation window, and whether this process already awaits a restart.
#[derive(Debug, Clone)]
pub struct ApplyEngine {
    paths: Paths,
    time_scale: TimeScale,
    restart_pending: bool,
}

impl ApplyEngine {
    pub fn new(paths: Paths, time_scale: TimeScale) -> ApplyEngine {
        ApplyEngine {
            paths,
            time_scale,
            restart_pending: false,
        }
    }

    pub fn running_etag(&self) -> Option<String> {
        running_etag(&self.paths)
    }

    pub fn restart_pending(&self) -> bool {
        self.restart_pending
    }

    /// Check and commit a served document (reference §5.2, in order).
    pub fn stage(&mut self, document: &Value, etag: &str) -> StageOutcome {
        self.stage_at(document, etag, Timestamp::now())
    }

    pub fn stage_at(&mut self, document: &Value, etag: &str, now: Timestamp) -> StageOutcome {
        let outcome = self.check_and_commit(document, etag, now);
        if let StageOutcome::Failed(err) = &outcome {
            crate::event!(
                Error,
                "config.apply_failed",
                json!({"component": "config", "error_kind": err.kind(), "config_etag": etag, "message": err.message()}),
            );
        }
        outcome
    }

    fn check_and_commit(&mut self, document: &Value, etag: &str, now: Timestamp) -> StageOutcome {
        if self.restart_pending {
            return StageOutcome::Failed(StageError::RestartPending);
        }
        if etag.is_empty() {
            return StageOutcome::Failed(StageError::ConfigInvalid {
                message: "stage() requires the served etag".into(),
            });
        }
        if self.running_etag().as_deref() == Some(etag) {
            return StageOutcome::NoopSameEtag;
        }
        let mut state = read_state(&self.paths);
        if state.bad_etag.as_ref().is_some_and(|bad| bad.etag == etag) {
            crate::event!(
                Warn,
                "config.apply_skipped",
                json!({"component": "config", "config_etag": etag, "hyp_reason": "bad_etag_backoff"}),
            );
            return StageOutcome::SkippedBadEtag;
        }
        let pretty = pretty_bytes(document);
        if pretty.len() > MAX_DOCUMENT_BYTES {
            return StageOutcome::Failed(StageError::DocumentTooLarge {
                bytes: pretty.len(),
            });
        }
        let errors = config::validate_central_document(document);
        if let Some(first) = errors.first() {
            let pointer = if first.pointer.is_empty() {
                "<root>"
            } else {
                &first.pointer
            };
            state.bad_etag = Some(BadEtag {
                etag: etag.to_string(),
                reason: "validation_failed".into(),
                recorded_at: iso_ms(now),
            });
            if let Err(err) = write_state(&self.paths, &state) {
                log_write_failure(&err);
            }
            return StageOutcome::Failed(StageError::ConfigInvalid {
                message: format!("[{}] {pointer}: {}", first.kind, first.message),
            });
        }
        let window_ms = self.probation_window_ms(document);
        match self.commit(&pretty, etag, now, window_ms) {
            Ok(marker) => {
                self.restart_pending = true;
                crate::event!(
                    Info,
                    "config.applied",
                    json!({"component": "config", "config_etag": etag, "slot": marker.slot, "previous_slot": marker.previous_slot, "until": marker.until}),
                );
                StageOutcome::Applied {
                    etag: etag.to_string(),
                    deadline: deadline_of(&marker),
                }
            }
            Err(err) => StageOutcome::Failed(StageError::ApplyIo {
                message: err.to_string(),
            }),
        }
    }

    /// `max(3 x interval, 120 s)` from the staged document, scaled.
    fn probation_window_ms(&self, document: &Value) -> i64 {
        let secs = (3.0 * sink::probation_interval_secs(document)).max(MIN_PROBATION_SECS);
        let scaled = secs / self.time_scale.factor();
        (scaled * 1000.0).round() as i64
    }

    /// Persist, mark, flip, retire (reference §5.3).
    fn commit(
        &self,
        pretty: &[u8],
        etag: &str,
        now: Timestamp,
        window_ms: i64,
    ) -> io::Result<ProbationMarker> {
        let paths = &self.paths;
        let dir = paths.control_dir();
        statefile::create_private_dir(&dir)?;
        let current = config::read_active_pointer(paths);
        let seed_bytes = match current {
            Some(_) => None,
            None => read_optional(&paths.seed())?,
        };
        let previous = match (current, &seed_bytes) {
            (Some(slot), _) => Some(slot),
            (None, Some(seed)) => {
                write_private(&paths.slot(Slot::A), seed)?;
                remove_if_present(&paths.slot_etag(Slot::A))?;
                Some(Slot::A)
            }
            (None, None) => None,
        };
        let target = match previous {
            Some(Slot::B) => Slot::A,
            _ => Slot::B,
        };
        write_private(&paths.slot(target), pretty)?;
        write_private(&paths.slot_etag(target), format!("{etag}\n").as_bytes())?;
        let until = Timestamp::from_millisecond(now.as_millisecond().saturating_add(window_ms))
            .unwrap_or(Timestamp::MAX);
        let marker = ProbationMarker {
            etag: etag.to_string(),
            applied_at: iso_ms(now),
            until: iso_ms(until),
            slot: target.into(),
            previous_slot: previous.map(WireSlot::from),
        };
        let mut state = read_state(paths);
        state.probation = Some(marker.clone());
        write_state(paths, &state).map_err(|err| err.source)?;
        flip_pointer(paths, target)?;
        if seed_bytes.is_some() {
            remove_if_present(&paths.seed())?;
            statefile::sync_dir(&dir)?;
        }
        Ok(marker)
    }

    /// Clear an active probation after an authenticated poll. Returns the
    /// cleared etag exactly once per active->cleared transition; `None` (and no
    /// write) when there was no probation. Also clears `last_rollback`: a
    /// confirmed apply of a new etag ends the rollback warning.
    pub fn confirm_poll(&mut self) -> Option<String> {
        let mut state = read_state(&self.paths);
        let marker = state.probation.take()?;
        state.last_rollback = None;
        if let Err(err) = write_state(&self.paths, &state) {
            log_write_failure(&err);
            return None;
        }
        crate::event!(
            Info,
            "config.probation_cleared",
            json!({"component": "config", "config_etag": marker.etag}),
        );
        Some(marker.etag)
    }

    /// The watchdog fired: roll back the active probation, if any. `None`
    /// when there was nothing to roll back. A flip marks this process as
    /// awaiting its restart.
    pub fn expire_probation(&mut self) -> Option<RollbackOutcome> {
        self.expire_probation_at(Timestamp::now())
    }

    pub fn expire_probation_at(&mut self, now: Timestamp) -> Option<RollbackOutcome> {
        let state = read_state(&self.paths);
        let marker = state.probation.clone()?;
        crate::event!(
            Error,
            "config.probation_expired",
            json!({"component": "config", "config_etag": marker.etag, "until": marker.until}),
        );
        let outcome = rollback(&self.paths, state, &marker, "probation_expired", now);
        if matches!(outcome, Ok(RollbackOutcome::RolledBack { .. })) {
            self.restart_pending = true;
        }
        match outcome {
            Ok(outcome) => Some(outcome),
            Err(err) => {
                crate::event!(
                    Error,
                    "config.rollback_failed",
                    json!({"component": "config", "config_etag": marker.etag, "message": err.to_string()}),
                );
                None
            }
        }
    }
}

/// Flip back to `previous_slot`, or clear the marker when there is no
/// distinct target (reference §5.8).
fn rollback(
    paths: &Paths,
    mut state: ApplyState,
    marker: &ProbationMarker,
    reason: &str,
    now: Timestamp,
) -> io::Result<RollbackOutcome> {
    let slot = Slot::from(marker.slot);
    let target = marker
        .previous_slot
        .map(Slot::from)
        .filter(|prev| *prev != slot);
    let Some(target) = target else {
        state.probation = None;
        write_state(paths, &state).map_err(|err| err.source)?;
        crate::event!(
            Error,
            "config.rollback_no_target",
            json!({"component": "config", "config_etag": marker.etag, "hyp_reason": "no_distinct_previous_slot"}),
        );
        return Ok(RollbackOutcome::NoTarget);
    };
    flip_pointer(paths, target)?;
    state.probation = None;
    state.bad_etag = Some(BadEtag {
        etag: marker.etag.clone(),
        reason: reason.to_string(),
        recorded_at: iso_ms(now),
    });
    state.last_rollback = Some(LastRollback {
        etag: marker.etag.clone(),
        reason: reason.to_string(),
        at: iso_ms(now),
        detail: None,
    });
    write_state(paths, &state).map_err(|err| err.source)?;
    crate::event!(
        Warn,
        "config.rollback",
        json!({"component": "config", "config_etag": marker.etag, "hyp_reason": reason, "rolled_back_to_slot": target.letter()}),
    );
    Ok(RollbackOutcome::RolledBack { to: target })
}

// ---------------------------------------------------------------------------
// Boot evaluation

/// Evaluate the control dir at daemon boot (reference §5.9), before anything
/// reads the central layer.
pub fn evaluate_at_boot(paths: &Paths) -> BootEvaluation {
    let evaluation = evaluate_at_boot_at(paths, Timestamp::now());
    if evaluation.action != "none" {
        crate::event!(
            Info,
            "daemon.config_probation_boot_action",
            json!({"component": "daemon", "action": evaluation.action, "recovery": evaluation.recovery}),
        );
    }
    evaluation
}

pub fn evaluate_at_boot_at(paths: &Paths, now: Timestamp) -> BootEvaluation {
    let outcome = |action: &str| BootEvaluation {
        action: action.to_string(),
        probation: None,
        recovery: None,
    };
    if let Some(slot) = stranded_slot(paths) {
        crate::event!(
            Error,
            "config.active_pointer_unreadable",
            json!({"component": "config", "path": paths.active_pointer().display().to_string(), "slot": slot.letter(), "detail": "no central layer: the daemon does not poll"}),
        );
    }
    let mut state = read_state(paths);
    let running = running_etag(paths);
    if let (Some(bad), Some(running)) = (&state.bad_etag, &running)
        && bad.etag == *running
    {
        let etag = bad.etag.clone();
        state.bad_etag = None;
        state.probation = None;
        let recovery = if paths.seed().exists() {
            let _ = remove_pointer(paths);
            "seed"
        } else {
            "repull"
        };
        if let Err(err) = write_state(paths, &state) {
            log_write_failure(&err);
        }
        crate::event!(
            Error,
            "config.bad_etag_active_recovered",
            json!({"component": "config", "config_etag": etag, "recovery": recovery}),
        );
        return BootEvaluation {
            recovery: Some(recovery.to_string()),
            ..outcome("recovered_bad_active")
        };
    }
    let Some(marker) = state.probation.clone() else {
        return outcome("none");
    };
    let active = config::read_active_pointer(paths);
    if active != Some(Slot::from(marker.slot)) {
        state.probation = None;
        if let Err(err) = write_state(paths, &state) {
            log_write_failure(&err);
        }
        crate::event!(
            Warn,
            "config.probation_orphaned",
            json!({"component": "config", "config_etag": marker.etag, "slot": marker.slot}),
        );
        return outcome("cleared_orphan");
    }
    let deadline = deadline_of(&marker);
    let expired = SystemTime::try_from(now).is_ok_and(|now| deadline <= now);
    if !expired {
        return BootEvaluation {
            probation: Some(Probation {
                etag: marker.etag,
                deadline,
            }),
            ..outcome("none")
        };
    }
    crate::event!(
        Error,
        "config.probation_expired",
        json!({"component": "config", "config_etag": marker.etag, "until": marker.until}),
    );
    match rollback(paths, state, &marker, "probation_expired", now) {
        Ok(RollbackOutcome::RolledBack { .. }) => outcome("rolled_back"),
        Ok(RollbackOutcome::NoTarget) => outcome("rollback_no_target"),
        Err(err) => {
            crate::event!(
                Error,
                "config.rollback_failed",
                json!({"component": "config", "config_etag": marker.etag, "message": err.to_string()}),
            );
            BootEvaluation {
                probation: Some(Probation {
                    etag: marker.etag,
                    deadline,
                }),
                ..outcome("none")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Central-layer reset (join and leave)

/// What a reset found before it removed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetReport {
    /// An `active` pointer (any kind of entry) existed.
    pub had_active_slot: bool,
}

/// Remove the applied central layer and the engine's state: `active` (as a
/// directory entry, so damaged links go too), `state.json`, both slots and
/// both sidecars. Missing files are fine. The seed is not touched.
pub fn reset_to_seed(paths: &Paths) -> io::Result<ResetReport> {
    let had_active_slot = fs::symlink_metadata(paths.active_pointer()).is_ok();
    remove_pointer(paths)?;
    remove_if_present(&paths.apply_state())?;
    for slot in [Slot::A, Slot::B] {
        remove_if_present(&paths.slot(slot))?;
        remove_if_present(&paths.slot_etag(slot))?;
    }
    if paths.control_dir().is_dir() {
        statefile::sync_dir(&paths.control_dir())?;
    }
    Ok(ResetReport { had_active_slot })
}

// ---------------------------------------------------------------------------
// File helpers

fn pretty_bytes(document: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(document).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    statefile::write_bytes(path, bytes).map_err(|err| err.source)
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// Remove `active` whatever it is (link, dangling link, file, empty dir).
fn remove_pointer(paths: &Paths) -> io::Result<()> {
    let pointer = paths.active_pointer();
    match fs::symlink_metadata(&pointer) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
        Ok(meta) if meta.is_dir() => fs::remove_dir(&pointer),
        Ok(_) => fs::remove_file(&pointer),
    }
}

/// Point `active` at `slot`: a new relative symlink renamed over the old one.
fn flip_pointer(paths: &Paths, slot: Slot) -> io::Result<()> {
    let dir = paths.control_dir();
    let millis = Timestamp::now().as_millisecond();
    let temp = dir.join(format!("active.tmp.{}.{millis}", std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(slot.file_name(), &temp)?;
    // atomicwrites renames and fsyncs the directory; it writes files only,
    // so the symlink itself is made here.
    if let Err(err) = atomicwrites::replace_atomic(&temp, &paths.active_pointer()) {
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    Ok(())
}

fn log_write_failure(err: &statefile::WriteError) {
    crate::event!(
        Error,
        "config.state_write_failed",
        json!({"component": "config", "path": err.path.display().to_string(), "message": err.source.to_string()}),
    );
}

#[cfg(test)]
mod tests;
