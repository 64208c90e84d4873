//! The small messages the daemon's threads send each other: the poll thread
//! (`control`), the worker (`actions`) and the exporter and main thread
//! (`daemon`). They live below all three so none imports another to talk
//! to it. Events out are past tense; requests in say what they ask for.

use std::time::SystemTime;

/// Why a reconcile pass is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassReason {
    /// The first pass after boot (central layer present, no probation).
    Boot,
    /// The poll thread cleared an active probation: the confirm edge.
    Confirmed { etag: String },
    /// SIGHUP: config was re-merged (also `hyp actions retry`).
    Reload,
    /// The earliest `next_attempt` of a failed unit came due.
    RetryDue,
}

/// A request to the worker thread for one reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassRequest {
    pub reason: PassReason,
}

/// Why the exporter is asked to check its instances outside its tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportReason {
    /// A backfill child or a capture sweep committed rows.
    RowsCommitted,
}

impl ExportReason {
    pub fn name(self) -> &'static str {
        match self {
            ExportReason::RowsCommitted => "rows_committed",
        }
    }
}

/// A request to the exporter thread for an export check now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub reason: ExportReason,
}

/// What the poll thread tells the main thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollEvent {
    /// A new config was committed under probation: arm the watchdog for
    /// `deadline`, then drain and re-exec.
    Applied { etag: String, deadline: SystemTime },
    /// A confirming poll cleared probation: disarm the watchdog.
    ProbationCleared { etag: String },
    /// The watchdog's rollback is done: drain and re-exec.
    RolledBack { reason: String },
    /// A poll ended: the record of polls so far, for `status.json`.
    Polled(Box<PollRecord>),
}

/// The daemon's account of its polls, in `status.json` (`poll`): the last
/// one, the next, and the last failure with the streak it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PollRecord {
    pub last_poll_at: Option<String>,
    pub last_poll_result: Option<String>,
    pub next_poll_at: Option<String>,
    pub last_error: Option<PollError>,
    /// Polls in a row that central refused or could not be reached.
    pub failing_polls: u32,
    /// When that streak began.
    pub failing_since: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PollError {
    pub at: String,
    pub kind: String,
    pub http_status: Option<u16>,
    pub message: String,
}
