//! The handler seam: what the generic reconciler asks of each kind of action.
//!
//! The reconciler knows nothing about Claude or Codex; it knows a `kind`,
//! what the config wants (`desired`), how to do one unit (`perform`) and,
//! optionally, how to undo one (`reverse`) and whether a `done` unit is
//! still current (`is_current`). A handler may also answer `refused`, a
//! terminal outcome that is never retried automatically.

use std::fmt;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::actions::child::Cancel;
use crate::actions::store::Marker;
use crate::config::EffectiveConfig;

/// One unit a handler wants converged. `params` are never persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredAction {
    pub request_key: String,
    pub params: Map<String, Value>,
}

/// How a unit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeStatus {
    Done,
    Failed,
    Refused,
}

/// What `perform` or `reverse` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: OutcomeStatus,
    pub rows: Option<u64>,
    pub reason: Option<String>,
    /// Extra marker fields; the core fields always win over these.
    pub detail: Map<String, Value>,
}

impl Outcome {
    pub fn done(rows: Option<u64>) -> Outcome {
        Outcome {
            status: OutcomeStatus::Done,
            rows,
            reason: None,
            detail: Map::new(),
        }
    }

    pub fn failed(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: OutcomeStatus::Failed,
            rows: None,
            reason: Some(reason.into()),
            detail: Map::new(),
        }
    }

    pub fn refused(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: OutcomeStatus::Refused,
            rows: None,
            reason: Some(reason.into()),
            detail: Map::new(),
        }
    }

    /// The reason, or `unknown` when the handler gave none.
    pub fn reason_or_unknown(&self) -> String {
        match self.reason.as_deref() {
            Some(reason) if !reason.is_empty() => reason.to_string(),
            _ => "unknown".to_string(),
        }
    }
}

/// A hook that could not do its job; for `perform` it becomes a `failed`
/// marker with this message, for `desired` the handler sits the pass out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    pub message: String,
}

impl ActionError {
    pub fn new(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ActionError {}

/// What `desired` may look at: the effective config and the pass's clock.
pub struct DesiredContext<'a> {
    pub config: &'a EffectiveConfig,
    pub now: Timestamp,
}

/// What `perform` and `reverse` may use.
pub struct PerformContext<'a> {
    pub now: Timestamp,
    /// Fires when the daemon shuts down; a child must be interrupted.
    pub cancel: &'a Cancel,
    pub(crate) started: &'a dyn Fn(u32),
}

impl PerformContext<'_> {
    /// Record the pid of the child just spawned in the unit's `running`
    /// marker, so a later boot can find and stop it.
    pub fn child_started(&self, pid: u32) {
        (self.started)(pid);
    }
}

/// One kind of client action.
pub trait Handler: Send {
    /// The marker namespace and status key (`backfill`).
    fn kind(&self) -> &str;

    /// The units the config wants, in order. Pure: no effects.
    fn desired(&self, context: &DesiredContext) -> Result<Vec<DesiredAction>, ActionError>;

    /// Do one unit.
    fn perform(
        &self,
        action: &DesiredAction,
        context: &PerformContext,
    ) -> Result<Outcome, ActionError>;

    /// Whether this handler undoes units the config stops naming.
    fn reversible(&self) -> bool {
        false
    }

    /// Undo one unit (only called when `reversible`).
    fn reverse(
        &self,
        request_key: &str,
        marker: &Marker,
        context: &PerformContext,
    ) -> Result<Outcome, ActionError> {
        let _ = (marker, context);
        Err(ActionError::new(format!(
            "{} handler cannot reverse {request_key}",
            self.kind()
        )))
    }

    /// Whether a `done` marker still holds; `false` re-performs. An error
    /// counts as current, so a broken predicate never loops.
    fn is_current(
        &self,
        marker: &Marker,
        action: &DesiredAction,
        context: &DesiredContext,
    ) -> Result<bool, ActionError> {
        let _ = (marker, action, context);
        Ok(true)
    }
}
