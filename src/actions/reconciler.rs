//! The generic reconcile pass: compare what the handlers want with what the
//! marker store records, and act only on the difference (level-triggered, so
//! any number of passes, missed or coalesced, converge to the same state).
//!
//! Per handler, in registration order: `desired()` (a failure skips that
//! handler only), then the forward gap in `desired()` order (`refused` is
//! skipped for good, `done` is skipped while current, `failed` waits for its
//! `next_attempt` unless the pass retries failed units now, anything else is
//! performed), then, for reversible handlers, the reverse gap in marker
//! order. Each unit is one locked read-modify-write to decide and mark it
//! `running`, the perform with no lock held, and one locked write of the
//! outcome; a pass that changes nothing writes nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::actions::backoff::Backoff;
use crate::actions::child::Cancel;
use crate::actions::handler::{
    ActionError, DesiredAction, DesiredContext, Handler, Outcome, OutcomeStatus, PerformContext,
};
use crate::actions::store::{Marker, MarkerStore, StoreError};
use crate::config::EffectiveConfig;
use crate::time::{iso_ms, parse_iso};

/// The reconciler's clock; tests inject a fixed one.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Whether a pass retries `failed` units before their `next_attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedUnits {
    /// Boot passes and confirm edges: retry every failed unit at once.
    RetryNow,
    /// Retry timer and reload passes: only units whose time has come.
    WhenDue,
}

/// What happened to one unit in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOutcome {
    Done,
    Skipped,
    /// A failed unit whose `next_attempt` has not come yet.
    Deferred,
    Failed,
    Refused,
    Reversed,
}

impl UnitOutcome {
    pub fn name(self) -> &'static str {
        match self {
            UnitOutcome::Done => "done",
            UnitOutcome::Skipped => "skipped",
            UnitOutcome::Deferred => "deferred",
            UnitOutcome::Failed => "failed",
            UnitOutcome::Refused => "refused",
            UnitOutcome::Reversed => "reversed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnitResult {
    pub kind: String,
    pub request_key: String,
    pub outcome: UnitOutcome,
    pub rows: Option<u64>,
    pub reason: Option<String>,
    pub attempts: Option<u64>,
    pub next_attempt: Option<Timestamp>,
}

/// The results of one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    pub results: Vec<UnitResult>,
    /// The earliest `next_attempt` of a failed unit the config still wants.
    pub next_retry: Option<Timestamp>,
    /// The pass stopped early because the daemon is shutting down.
    pub cancelled: bool,
}

impl PassReport {
    fn push(&mut self, result: UnitResult) {
        if let Some(next) = result.next_attempt {
            self.next_retry = Some(self.next_retry.map_or(next, |earliest| earliest.min(next)));
        }
        self.results.push(result);
    }
}

/// Handlers, the store they record into, a clock and the retry schedule.
pub struct Reconciler {
    handlers: Vec<Box<dyn Handler>>,
    store: MarkerStore,
    clock: Clock,
    backoff: Backoff,
}

/// What the locked decision step chose for one desired unit.
enum Step {
    Skip,
    Defer(Timestamp),
    Perform { previous: Option<Marker> },
}

/// What the locked step of the reverse gap chose for one marker.
enum ReverseStep {
    Gone,
    Dropped,
    Reverse(Marker),
}

impl Reconciler {
    pub fn new(
        handlers: Vec<Box<dyn Handler>>,
        store: MarkerStore,
        clock: Clock,
        backoff: Backoff,
    ) -> Reconciler {
        Reconciler {
            handlers,
            store,
            clock,
            backoff,
        }
    }

    pub fn store(&self) -> &MarkerStore {
        &self.store
    }

    /// Run one pass. `Err` only when the store cannot be read or written;
    /// every handler failure is recorded as data.
    pub fn pass(
        &self,
        config: &EffectiveConfig,
        failed_units: FailedUnits,
        cancel: &Cancel,
    ) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        for handler in &self.handlers {
            if cancel.is_cancelled() {
                report.cancelled = true;
                break;
            }
            self.pass_handler(handler.as_ref(), config, failed_units, cancel, &mut report)?;
            if report.cancelled {
                break;
            }
        }
        Ok(report)
    }

    fn pass_handler(
        &self,
        handler: &dyn Handler,
        config: &EffectiveConfig,
        failed_units: FailedUnits,
        cancel: &Cancel,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let kind = handler.kind().to_string();
        let desired_context = DesiredContext {
            config,
            now: (self.clock)(),
        };
        let desired = match catch_hook(|| handler.desired(&desired_context)) {
            Ok(desired) => desired,
            Err(err) => {
                crate::event!(
                    Error,
                    "client_action.desired_failed",
                    json!({"kind": kind, "error_kind": "handler_desired_threw", "detail": err.message}),
                );
                return Ok(());
            }
        };
        for action in &desired {
            if cancel.is_cancelled() {
                report.cancelled = true;
                return Ok(());
            }
            self.forward(
                handler,
                action,
                &desired_context,
                failed_units,
                cancel,
                report,
            )?;
        }
        if handler.reversible() {
            let wanted: Vec<&str> = desired
                .iter()
                .map(|action| action.request_key.as_str())
                .collect();
            for request_key in self.store.read()?.keys(&kind) {
                if wanted.contains(&request_key.as_str()) {
                    continue;
                }
                if cancel.is_cancelled() {
                    report.cancelled = true;
                    return Ok(());
                }
                self.reverse(handler, &request_key, cancel, report)?;
            }
        }
        Ok(())
    }

    fn forward(
        &self,
        handler: &dyn Handler,
        action: &DesiredAction,
        desired_context: &DesiredContext,
        failed_units: FailedUnits,
        cancel: &Cancel,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let kind = handler.kind();
        let key = action.request_key.as_str();
        let now = (self.clock)();
        let started_at = iso_ms(now);
        let step = self.store.modify(|doc| {
            let existing = doc.marker(kind, key).cloned();
            let step = decide(
                handler,
                existing,
                action,
                desired_context,
                failed_units,
                now,
            );
            if let Step::Perform { previous } = &step {
                doc.set_marker(
                    kind,
                    key,
                    running_marker(key, previous.as_ref(), &started_at),
                );
            }
            step
        })?;
        let previous = match step {
            Step::Skip => {
                report.push(unit(kind, key, UnitOutcome::Skipped));
                return Ok(());
            }
            Step::Defer(next_attempt) => {
                report.push(UnitResult {
                    next_attempt: Some(next_attempt),
                    ..unit(kind, key, UnitOutcome::Deferred)
                });
                return Ok(());
            }
            Step::Perform { previous } => previous,
        };
        let record_pid = |pid: u32| self.record_pid(kind, key, &started_at, pid);
        let perform_context = PerformContext {
            now,
            cancel,
            started: &record_pid,
        };
        let outcome = match catch_hook(|| handler.perform(action, &perform_context)) {
            Ok(outcome) => outcome,
            Err(err) => Outcome::failed(err.message),
        };
        if cancel.is_cancelled() {
            report.cancelled = true;
        }
        let at = (self.clock)();
        let result = self.store.modify(|doc| {
            let (marker, result) = self.settle(kind, key, previous.as_ref(), &outcome, at);
            doc.set_marker(kind, key, marker);
            result
        })?;
        log_outcome(&result);
        report.push(result);
        Ok(())
    }

    /// The marker and result for a finished perform.
    fn settle(
        &self,
        kind: &str,
        key: &str,
        previous: Option<&Marker>,
        outcome: &Outcome,
        at: Timestamp,
    ) -> (Marker, UnitResult) {
        match outcome.status {
            OutcomeStatus::Done => (
                done_marker(key, at, outcome),
                UnitResult {
                    rows: outcome.rows,
                    ..unit(kind, key, UnitOutcome::Done)
                },
            ),
            OutcomeStatus::Refused => (
                refused_marker(key, at, outcome, previous),
                UnitResult {
                    reason: Some(outcome.reason_or_unknown()),
                    ..unit(kind, key, UnitOutcome::Refused)
                },
            ),
            OutcomeStatus::Failed => {
                let attempts = previous_attempts(previous) + 1;
                let next_attempt = self.backoff.next_attempt(kind, key, attempts, at);
                let marker = failed_marker(
                    key,
                    &outcome.reason_or_unknown(),
                    at,
                    attempts,
                    Some(next_attempt),
                    previous,
                    &outcome.detail,
                );
                let result = UnitResult {
                    reason: Some(outcome.reason_or_unknown()),
                    attempts: Some(attempts),
                    next_attempt: Some(next_attempt),
                    ..unit(kind, key, UnitOutcome::Failed)
                };
                (marker, result)
            }
        }
    }

    fn record_pid(&self, kind: &str, key: &str, started_at: &str, pid: u32) {
        let recorded = self.store.modify(|doc| {
            let Some(marker) = doc.marker(kind, key) else {
                return;
            };
            let ours = marker.get("status").and_then(Value::as_str) == Some("running")
                && marker.get("started_at").and_then(Value::as_str) == Some(started_at);
            if ours {
                let mut marker = marker.clone();
                marker.insert("pid".into(), Value::from(pid));
                doc.set_marker(kind, key, marker);
            }
        });
        if let Err(err) = recorded {
            crate::event!(
                Error,
                "client_action.pid_unrecorded",
                json!({"kind": kind, "request_key": key, "pid": pid, "detail": err.to_string()}),
            );
        }
    }

    fn reverse(
        &self,
        handler: &dyn Handler,
        key: &str,
        cancel: &Cancel,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let kind = handler.kind();
        let step = self
            .store
            .modify(|doc| match doc.marker(kind, key).cloned() {
                None => ReverseStep::Gone,
                Some(marker) if droppable_without_reverse(&marker) => {
                    doc.remove_marker(kind, key);
                    ReverseStep::Dropped
                }
                Some(marker) => ReverseStep::Reverse(marker),
            })?;
        let ReverseStep::Reverse(marker) = step else {
            return Ok(());
        };
        let ignore_pid = |_pid: u32| {};
        let context = PerformContext {
            now: (self.clock)(),
            cancel,
            started: &ignore_pid,
        };
        let outcome = match catch_hook(|| handler.reverse(key, &marker, &context)) {
            Ok(outcome) => outcome,
            Err(err) => Outcome::failed(err.message),
        };
        if outcome.status == OutcomeStatus::Done {
            self.store.modify(|doc| doc.remove_marker(kind, key))?;
            crate::event!(
                Info,
                "client_action.reversed",
                json!({"kind": kind, "request_key": key}),
            );
            report.push(unit(kind, key, UnitOutcome::Reversed));
        } else {
            let reason = outcome.reason_or_unknown();
            crate::event!(
                Error,
                "client_action.reverse_failed",
                json!({"kind": kind, "request_key": key, "error_kind": "action_reverse_failed", "reason": reason}),
            );
            report.push(UnitResult {
                reason: Some(reason),
                ..unit(kind, key, UnitOutcome::Failed)
            });
        }
        Ok(())
    }
}

fn decide(
    handler: &dyn Handler,
    existing: Option<Marker>,
    action: &DesiredAction,
    context: &DesiredContext,
    failed_units: FailedUnits,
    now: Timestamp,
) -> Step {
    let status = existing
        .as_ref()
        .and_then(|marker| marker.get("status"))
        .and_then(Value::as_str);
    match (status, existing.as_ref()) {
        (Some("refused"), _) => Step::Skip,
        (Some("done"), Some(marker)) if marker_is_current(handler, marker, action, context) => {
            Step::Skip
        }
        (Some("failed"), Some(marker)) if failed_units == FailedUnits::WhenDue => {
            match marker
                .get("next_attempt")
                .and_then(Value::as_str)
                .and_then(parse_iso)
            {
                Some(next_attempt) if next_attempt > now => Step::Defer(next_attempt),
                _ => Step::Perform { previous: existing },
            }
        }
        _ => Step::Perform { previous: existing },
    }
}

/// A throwing (or panicking) `is_current` counts as current.
fn marker_is_current(
    handler: &dyn Handler,
    marker: &Marker,
    action: &DesiredAction,
    context: &DesiredContext,
) -> bool {
    catch_hook(|| handler.is_current(marker, action, context)).unwrap_or(true)
}

/// Run a hook, turning a panic into an error with its message.
fn catch_hook<T>(hook: impl FnOnce() -> Result<T, ActionError>) -> Result<T, ActionError> {
    match catch_unwind(AssertUnwindSafe(hook)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(ActionError::new(format!("handler panicked: {message}")))
        }
    }
}

/// The reverse gap silently drops a failed or refused marker that never
/// had an effect to undo.
fn droppable_without_reverse(marker: &Marker) -> bool {
    let status = marker.get("status").and_then(Value::as_str);
    let has_assets = marker
        .get("installed_assets")
        .and_then(Value::as_array)
        .is_some_and(|assets| !assets.is_empty());
    matches!(status, Some("failed") | Some("refused")) && !has_assets && !was_done(Some(marker))
}

fn was_done(previous: Option<&Marker>) -> bool {
    previous.is_some_and(|marker| {
        marker.get("status").and_then(Value::as_str) == Some("done")
            || marker.get("prior_done") == Some(&Value::Bool(true))
    })
}

/// `attempts` of the previous marker when it is a number, else 0.
pub(crate) fn previous_attempts(previous: Option<&Marker>) -> u64 {
    let Some(value) = previous.and_then(|marker| marker.get("attempts")) else {
        return 0;
    };
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as u64)
        })
        .unwrap_or(0)
}

fn unit(kind: &str, key: &str, outcome: UnitOutcome) -> UnitResult {
    UnitResult {
        kind: kind.to_string(),
        request_key: key.to_string(),
        outcome,
        rows: None,
        reason: None,
        attempts: None,
        next_attempt: None,
    }
}

fn log_outcome(result: &UnitResult) {
    let fields = json!({
        "kind": result.kind,
        "request_key": result.request_key,
        "rows": result.rows,
        "reason": result.reason,
        "attempts": result.attempts,
        "next_attempt": result.next_attempt.map(iso_ms),
    });
    match result.outcome {
        UnitOutcome::Done => crate::event!(Info, "client_action.done", fields),
        UnitOutcome::Refused => crate::event!(
            Error,
            "client_action.refused",
            with_error_kind(fields, "action_refused"),
        ),
        _ => crate::event!(
            Error,
            "client_action.failed",
            with_error_kind(fields, "action_perform_failed"),
        ),
    }
}

fn with_error_kind(mut fields: Value, error_kind: &str) -> Value {
    if let Value::Object(map) = &mut fields {
        map.insert("error_kind".into(), Value::from(error_kind));
        map.retain(|_, value| !value.is_null());
    }
    fields
}

fn core(status: &str, key: &str) -> Marker {
    let mut marker = Map::new();
    marker.insert("status".into(), Value::from(status));
    marker.insert("request_key".into(), Value::from(key));
    marker
}

/// Detail fields never override the core fields.
fn add_detail(marker: &mut Marker, detail: &Map<String, Value>) {
    for (name, value) in detail {
        marker.entry(name.clone()).or_insert_with(|| value.clone());
    }
}

fn carry_assets(marker: &mut Marker, previous: Option<&Marker>) {
    if let Some(assets) = previous.and_then(|old| old.get("installed_assets")) {
        marker.insert("installed_assets".into(), assets.clone());
    }
}

fn mark_prior_done(marker: &mut Marker, previous: Option<&Marker>) {
    if was_done(previous) {
        marker.insert("prior_done".into(), Value::Bool(true));
    }
}

/// `{status: running, request_key, pid: null, started_at, attempts}`.
fn running_marker(key: &str, previous: Option<&Marker>, started_at: &str) -> Marker {
    let mut marker = core("running", key);
    marker.insert("pid".into(), Value::Null);
    marker.insert("started_at".into(), Value::from(started_at));
    marker.insert("attempts".into(), Value::from(previous_attempts(previous)));
    carry_assets(&mut marker, previous);
    mark_prior_done(&mut marker, previous);
    marker
}

fn done_marker(key: &str, at: Timestamp, outcome: &Outcome) -> Marker {
    let mut marker = core("done", key);
    marker.insert("at".into(), Value::from(iso_ms(at)));
    if let Some(rows) = outcome.rows {
        marker.insert("rows".into(), Value::from(rows));
    }
    add_detail(&mut marker, &outcome.detail);
    marker
}

fn refused_marker(
    key: &str,
    at: Timestamp,
    outcome: &Outcome,
    previous: Option<&Marker>,
) -> Marker {
    let mut marker = core("refused", key);
    marker.insert("reason".into(), Value::from(outcome.reason_or_unknown()));
    marker.insert("at".into(), Value::from(iso_ms(at)));
    add_detail(&mut marker, &outcome.detail);
    carry_assets(&mut marker, previous);
    mark_prior_done(&mut marker, previous);
    marker
}

/// `{status: failed, request_key, reason, last_attempt, attempts,
/// next_attempt?, installed_assets?, ...detail, prior_done?}`.
pub(crate) fn failed_marker(
    key: &str,
    reason: &str,
    at: Timestamp,
    attempts: u64,
    next_attempt: Option<Timestamp>,
    previous: Option<&Marker>,
    detail: &Map<String, Value>,
) -> Marker {
    let mut marker = core("failed", key);
    marker.insert("reason".into(), Value::from(reason));
    marker.insert("last_attempt".into(), Value::from(iso_ms(at)));
    marker.insert("attempts".into(), Value::from(attempts));
    if let Some(next_attempt) = next_attempt {
        marker.insert("next_attempt".into(), Value::from(iso_ms(next_attempt)));
    }
    carry_assets(&mut marker, previous);
    add_detail(&mut marker, detail);
    mark_prior_done(&mut marker, previous);
    marker
}

#[cfg(test)]
mod tests;
