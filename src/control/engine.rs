//! The apply engine: stage, commit, confirm, rollback, boot evaluation.
//! The only writer of the slots, their etags, `active` and `state.json`.

use std::time::SystemTime;

use crate::paths::Paths;

/// An active probation read from `state.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probation {
    pub etag: String,
    pub deadline: SystemTime,
}

/// What boot evaluation did (`none`, `cleared_orphan`, `rolled_back`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEvaluation {
    pub action: String,
    /// The probation still running after evaluation, for the watchdog.
    pub probation: Option<Probation>,
}

/// Evaluate the control dir at daemon boot (reference config.md §5.9).
// FIXME(control owner): interim body.
pub fn evaluate_at_boot(paths: &Paths) -> BootEvaluation {
    BootEvaluation {
        action: "none".into(),
        probation: active_probation(paths),
    }
}

/// The probation in `state.json`, if one is active.
// FIXME(control owner): interim body.
pub fn active_probation(paths: &Paths) -> Option<Probation> {
    let _ = paths;
    None
}
