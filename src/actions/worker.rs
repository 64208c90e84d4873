//! The worker thread: the daemon's reconciler actor. It receives
//! `PassRequest`s (boot pass, confirm edge, reload, its own retry timer),
//! runs one pass at a time through an [`OpQueue`] (requests that arrive
//! during a pass coalesce into exactly one rerun), and spawns the action
//! children itself, so their parent-death signal is tied to this long-lived
//! thread.
//!
//! A pass reads the effective config afresh (so a SIGHUP reload is seen by
//! the next pass) and never wedges the worker: a store error or a panic is
//! logged and the next request runs normally. After each pass the worker
//! arms one timer for the earliest `next_attempt` of a failed unit; when it
//! fires, a `RetryDue` pass runs. Boot passes and confirm edges retry failed
//! units at once; reload and retry passes respect `next_attempt`.
//!
//! Shutdown: the daemon drops its senders and calls `shutdown(deadline)`:
//! the worker takes no further pass, a running child's group gets SIGTERM,
//! then SIGKILL after 10 s (scaled), its marker becomes `failed`
//! (`interrupted by daemon shutdown`), and `shutdown` returns by the deadline.

use std::ffi::OsString;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, never, select_biased};
use jiff::Timestamp;
use serde_json::json;

use crate::actions::backfill_handler::BackfillHandler;
use crate::actions::backoff::Backoff;
use crate::actions::capture::Capture;
use crate::actions::child::{self, Cancel, CancelSource};
use crate::actions::handler::Handler;
use crate::actions::op_queue::{OpQueue, retries_failed_now};
use crate::actions::reconciler::{
    Clock, FailedUnits, PassReport, Reconciler, UnitOutcome, system_clock,
};
use crate::actions::recovery;
use crate::actions::store::MarkerStore;
use crate::messages::{ExportReason, ExportRequest, PassReason, PassRequest};
use crate::paths::{Paths, TimeScale};
use crate::time::iso_ms;

/// How long an interrupted child gets between SIGTERM and SIGKILL (scaled).
const CHILD_GRACE_SECS: u64 = 10;
/// The longest the worker goes without a pass while units are wanted
/// (scaled): the periodic look that notices a cache gone while idle.
const WATCH_SECS: u64 = 300;

/// What the worker needs from the daemon.
pub struct WorkerContext {
    pub paths: Paths,
    pub time_scale: TimeScale,
    /// Told when a child committed rows, so they reach central at once.
    pub exports: Option<Sender<ExportRequest>>,
}

/// Everything a worker runs with. [`WorkerHandle::spawn`] fills it with the
/// daemon's defaults; tests inject a fake `hyp`, a clock or handlers.
pub struct WorkerSetup {
    pub paths: Paths,
    pub time_scale: TimeScale,
    /// The program run as `<exe> backfill ...` (the daemon's own binary).
    pub exe: PathBuf,
    /// The children's environment before `HYP_HOME` is forced.
    pub env: Vec<(OsString, OsString)>,
    pub clock: Clock,
    /// Extra handlers after the built-in ones (tests).
    pub extra_handlers: Vec<Box<dyn Handler>>,
    /// Told when a child committed rows (the exporter's inbox).
    pub exports: Option<Sender<ExportRequest>>,
}

impl WorkerSetup {
    /// The daemon's setup: its own binary, its own environment, real time.
    pub fn for_daemon(context: WorkerContext) -> io::Result<WorkerSetup> {
        Ok(WorkerSetup {
            paths: context.paths,
            time_scale: context.time_scale,
            exe: std::env::current_exe()?,
            env: std::env::vars_os().collect(),
            clock: system_clock(),
            extra_handlers: Vec::new(),
            exports: context.exports,
        })
    }
}

/// Counters a caller can watch (tests; a future status line).
#[derive(Debug, Default)]
pub struct WorkerStats {
    passes: AtomicU64,
    idle: AtomicBool,
}

impl WorkerStats {
    /// Passes finished (successfully or not) since the worker started.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::SeqCst)
    }

    /// Waiting for a request with nothing queued and no pass running.
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::SeqCst)
    }
}

/// The running worker; `shutdown` interrupts a running child and joins.
pub struct WorkerHandle {
    thread: JoinHandle<()>,
    cancel: CancelSource,
    exited: Receiver<()>,
    stats: Arc<WorkerStats>,
}

impl WorkerHandle {
    pub fn spawn(context: WorkerContext, inbox: Receiver<PassRequest>) -> io::Result<WorkerHandle> {
        WorkerHandle::spawn_with(WorkerSetup::for_daemon(context)?, inbox)
    }

    pub fn spawn_with(
        setup: WorkerSetup,
        inbox: Receiver<PassRequest>,
    ) -> io::Result<WorkerHandle> {
        let (cancel_source, cancel) = CancelSource::new();
        let (exit_guard, exited) = bounded::<()>(0);
        let stats = Arc::new(WorkerStats::default());
        let grace = setup.time_scale.secs(CHILD_GRACE_SECS);
        let capture = Capture::new(
            &setup.paths,
            setup.exe.clone(),
            child::environment(&setup.paths, setup.env.clone()),
            setup.time_scale,
            grace,
        );
        let mut handlers: Vec<Box<dyn Handler>> = vec![Box::new(BackfillHandler::new(
            setup.paths.clone(),
            setup.exe,
            setup.env,
            grace,
        ))];
        handlers.extend(setup.extra_handlers);
        let reconciler = Reconciler::new(
            handlers,
            MarkerStore::new(&setup.paths),
            setup.clock.clone(),
            Backoff::for_this_host(setup.time_scale),
        );
        let actor = WorkerActor {
            paths: setup.paths,
            reconciler,
            clock: setup.clock,
            cancel,
            queue: OpQueue::default(),
            retry_at: None,
            watch: setup.time_scale.secs(WATCH_SECS),
            capture,
            exports: setup.exports,
            stats: Arc::clone(&stats),
            _exit_guard: exit_guard,
        };
        let thread = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || actor.run(inbox))?;
        Ok(WorkerHandle {
            thread,
            cancel: cancel_source,
            exited,
            stats,
        })
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Stop taking passes, interrupt a running child (SIGTERM to its group,
    /// SIGKILL after the grace), record its marker, and join by `deadline`.
    /// The daemon drops every `Sender<PassRequest>` before calling this.
    pub fn shutdown(self, deadline: Instant) {
        self.cancel.cancel(deadline);
        match self.exited.recv_deadline(deadline) {
            Err(RecvTimeoutError::Timeout) => crate::event!(
                Error,
                "client_action.worker_stuck",
                json!({"detail": "the worker did not stop by the shutdown deadline"}),
            ),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
            }
        }
    }
}

/// At daemon boot: turn `running` markers left by a dead process into
/// `failed` (`interrupted`), killing any child group that is still alive.
pub fn recover_at_boot(paths: &Paths) {
    if let Err(err) = recovery::recover_interrupted(&MarkerStore::new(paths), Timestamp::now()) {
        crate::event!(
            Error,
            "client_action.recovery_failed",
            json!({"message": err.to_string()}),
        );
    }
}

enum Event {
    Request(PassReason),
    RetryDue,
    CaptureDue,
    Stop,
}

struct WorkerActor {
    paths: Paths,
    reconciler: Reconciler,
    clock: Clock,
    cancel: Cancel,
    queue: OpQueue,
    retry_at: Option<Instant>,
    /// See [`WATCH_SECS`].
    watch: Duration,
    capture: Capture,
    exports: Option<Sender<ExportRequest>>,
    stats: Arc<WorkerStats>,
    /// Dropped when the thread ends, however it ends.
    _exit_guard: Sender<()>,
}

impl WorkerActor {
    fn run(mut self, inbox: Receiver<PassRequest>) {
        self.capture
            .refresh(&crate::config::load_effective(&self.paths));
        loop {
            match self.next_event(&inbox) {
                Event::Stop => break,
                Event::Request(reason) => self.queue.request(reason),
                Event::RetryDue => {
                    self.retry_at = None;
                    self.queue.request(PassReason::RetryDue);
                }
                Event::CaptureDue => self.sweep_due(),
            }
            self.run_queued(&inbox);
        }
        crate::event!(Debug, "client_action.worker_stopped", json!({}));
    }

    fn next_event(&self, inbox: &Receiver<PassRequest>) -> Event {
        let retry_timer = self
            .retry_at
            .map(crossbeam_channel::at)
            .unwrap_or_else(never);
        let capture_timer = self
            .capture
            .next_wake()
            .map(crossbeam_channel::at)
            .unwrap_or_else(never);
        self.stats
            .idle
            .store(self.queue.is_idle(), Ordering::SeqCst);
        let event = select_biased! {
            recv(self.cancel.receiver()) -> _ => Event::Stop,
            recv(inbox) -> message => match message {
                Ok(request) => Event::Request(request.reason),
                Err(_) => Event::Stop,
            },
            recv(retry_timer) -> _ => Event::RetryDue,
            recv(capture_timer) -> _ => Event::CaptureDue,
        };
        self.stats.idle.store(false, Ordering::SeqCst);
        event
    }

    fn run_queued(&mut self, inbox: &Receiver<PassRequest>) {
        while let Some(reason) = self.queue.should_start() {
            self.run_pass(&reason);
            self.queue.completed();
            self.stats.passes.fetch_add(1, Ordering::SeqCst);
            if self.cancel.is_cancelled() {
                return;
            }
            while let Ok(request) = inbox.try_recv() {
                self.queue.request(request.reason);
            }
        }
    }

    fn run_pass(&mut self, reason: &PassReason) {
        let reason_name = reason_name(reason);
        let failed_units = if retries_failed_now(reason) {
            FailedUnits::RetryNow
        } else {
            FailedUnits::WhenDue
        };
        let config = crate::config::load_effective(&self.paths);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.reconciler.pass(&config, failed_units, &self.cancel)
        }));
        self.capture.refresh(&config);
        match outcome {
            Ok(Ok(report)) => {
                let fields = json!({"hyp_reason": reason_name, "results": report.results.len(), "cancelled": report.cancelled});
                // The periodic look that changes nothing stays out of the log.
                let idle = report
                    .results
                    .iter()
                    .all(|result| result.outcome == UnitOutcome::Skipped);
                if idle && *reason == PassReason::RetryDue {
                    crate::event!(Debug, "daemon.reconcile_pass", fields);
                } else {
                    crate::event!(Info, "daemon.reconcile_pass", fields);
                }
                self.arm_retry(&report);
                if committed_rows(&report) {
                    self.rows_committed();
                }
            }
            Ok(Err(err)) => crate::event!(
                Error,
                "daemon.reconcile_failed",
                json!({"hyp_reason": reason_name, "message": err.to_string()}),
            ),
            Err(_panic) => crate::event!(
                Error,
                "daemon.reconcile_pass_failed",
                json!({"hyp_reason": reason_name, "message": "the reconcile pass panicked"}),
            ),
        }
    }

    /// One timer for the earliest `next_attempt` (already scaled when it
    /// was written, so the wait is plain wall-clock time), and at most
    /// [`WATCH_SECS`] away while the config wants any unit: a cache deleted,
    /// emptied or replaced while the daemon idles makes a `done` import
    /// stale, and the next pass imports again.
    fn arm_retry(&mut self, report: &PassReport) {
        let retry = report.next_retry.map(|next| {
            let wait_ms = next
                .as_millisecond()
                .saturating_sub((self.clock)().as_millisecond())
                .max(0);
            crate::event!(
                Debug,
                "client_action.retry_scheduled",
                json!({"next_attempt": iso_ms(next)}),
            );
            Instant::now() + Duration::from_millis(wait_ms as u64)
        });
        let watch = (!report.results.is_empty()).then(|| Instant::now() + self.watch);
        self.retry_at = match (retry, watch) {
            (Some(retry), Some(watch)) => Some(retry.min(watch)),
            (retry, watch) => retry.or(watch),
        };
    }
}

impl WorkerActor {
    /// Run the capture sweeps that are due; a panic is logged and the
    /// worker goes on.
    fn sweep_due(&mut self) {
        let swept = catch_unwind(AssertUnwindSafe(|| self.capture.run_due(&self.cancel)));
        match swept {
            Ok(true) => self.rows_committed(),
            Ok(false) => {}
            Err(_panic) => crate::event!(
                Error,
                "capture.sweep_panicked",
                json!({"message": "a capture sweep panicked"}),
            ),
        }
    }

    /// Ask the exporter to send what a child just committed.
    fn rows_committed(&self) {
        if let Some(exports) = &self.exports {
            let _ = exports.send(ExportRequest {
                reason: ExportReason::RowsCommitted,
            });
        }
    }
}

/// Whether a pass's children may have committed rows: one wrote rows, or
/// one failed after possibly committing some.
fn committed_rows(report: &PassReport) -> bool {
    report
        .results
        .iter()
        .any(|result| result.rows.unwrap_or(0) > 0 || result.outcome == UnitOutcome::Failed)
}

fn reason_name(reason: &PassReason) -> &'static str {
    match reason {
        PassReason::Boot => "boot",
        PassReason::Confirmed { .. } => "confirm-edge",
        PassReason::Reload => "reload",
        PassReason::RetryDue => "retry-due",
    }
}

#[cfg(test)]
mod tests;
