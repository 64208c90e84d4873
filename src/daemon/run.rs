//! `hyp daemon run`: boot in the contract's order, sleep on one `select!`
//! over signals, poll-thread events and the probation watchdog, then drain
//! and either exit or re-execute itself (staged restart, same pid).
//!
//! The main thread owns the lock, the pid and status files, the watchdog and
//! the order of shutdown. The poll thread (`control::poll`) and the worker
//! (`actions::worker`) are started and stopped from here and talk back only
//! through channels. The drain runs on its own short-lived thread so the main
//! thread stays free to honour a second SIGTERM/SIGINT, which ends the
//! process at once (a running child dies with it: its parent-death signal).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use serde_json::json;

use crate::actions::worker::{self, WorkerContext, WorkerHandle};
use crate::config;
use crate::control::engine;
use crate::control::poll::{PollContext, PollHandle};
use crate::daemon::exporter::{ExporterHandle, ExporterSetup};
use crate::daemon::lock::{DaemonLock, LockError};
use crate::daemon::pid_file::{self, PidFile};
use crate::daemon::signals::{self, DaemonSignal};
use crate::daemon::status_file::{DaemonState, StatusWriter};
use crate::daemon::watchdog::Watchdog;
use crate::logging;
use crate::messages::{PassReason, PassRequest, PollEvent};
use crate::paths::{Paths, TimeScale};

/// Grace for an in-flight poll when the poll thread is stopped.
const POLL_STOP_GRACE_SECS: u64 = 1;
/// The worker's deadline: its 10 s child grace plus the SIGKILL and the marker.
const WORKER_SHUTDOWN_SECS: u64 = 12;
/// The whole drain; past it the process exits (or execs) regardless. Under
/// the contract's 15 s bound.
const DRAIN_BUDGET_SECS: u64 = 14;

/// How a daemon run ended, for the CLI to turn into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// SIGTERM or SIGINT and an orderly shutdown.
    Stopped,
    /// A second SIGTERM/SIGINT arrived while draining.
    Forced(DaemonSignal),
    /// The drain overran its budget; the process exits anyway.
    Overran,
    /// A staged restart was due but `exec` failed: the service manager (or a
    /// foreground invoker) relaunches on exit 75.
    ExecFailed,
}

/// Why the daemon did not boot.
#[derive(Debug)]
pub enum DaemonError {
    AlreadyRunning {
        pid: Option<u32>,
    },
    Lock {
        path: std::path::PathBuf,
        source: io::Error,
    },
    Signals(io::Error),
    Worker(io::Error),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::AlreadyRunning { pid: Some(pid) } => {
                write!(f, "already running (pid {pid})")
            }
            DaemonError::AlreadyRunning { pid: None } => write!(
                f,
                "already running (pid unknown: the pid file is missing or malformed)"
            ),
            DaemonError::Lock { path, source } => write!(
                f,
                "cannot take the daemon lock {}: {source}",
                path.display()
            ),
            DaemonError::Signals(err) => write!(f, "cannot install signal handlers: {err}"),
            DaemonError::Worker(err) => write!(f, "cannot start the worker thread: {err}"),
        }
    }
}

impl std::error::Error for DaemonError {}

/// Run the daemon in this process until it is stopped or restarts itself.
/// `time_scale` was parsed before this is called (a bad value never boots).
/// Boot order is the contract's: lock, pid file, `starting`, (stray temp
/// files removed,) boot evaluation, config, marker recovery, worker, poll
/// thread, boot pass, `healthy`.
pub fn run(paths: &Paths, time_scale: TimeScale) -> Result<RunOutcome, DaemonError> {
    one_allocator_arena();
    // Handlers first (they touch nothing on disk): from the moment the lock
    // is held, `hyp join` may SIGHUP us, and SIGHUP's default action kills.
    let signals = signals::forward().map_err(DaemonError::Signals)?;
    let lock = take_lock(paths)?;
    let status = announce(paths, time_scale)?;
    remove_stray_temps(paths);
    let mut daemon = boot(paths, time_scale, lock, status, signals)?;
    crate::term::stderr_text(&format!("daemon: running (pid={})\n", std::process::id()));
    let ending = daemon.wait();
    Ok(daemon.finish(ending))
}

/// The daemon's few threads allocate little and rarely at once: one shared
/// malloc arena instead of one per thread keeps the idle footprint small
/// (each arena's first pages stay resident).
fn one_allocator_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts an allocator setting; called before the
    // daemon starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn take_lock(paths: &Paths) -> Result<DaemonLock, DaemonError> {
    match DaemonLock::acquire(paths) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held) => Err(DaemonError::AlreadyRunning {
            pid: pid_file::read(paths).pid(),
        }),
        Err(LockError::Io { path, source }) => Err(DaemonError::Lock { path, source }),
    }
}

/// Write the pid file and `starting`, open the log, log `daemon.starting`.
fn announce(paths: &Paths, time_scale: TimeScale) -> Result<StatusWriter, DaemonError> {
    let started = SystemTime::now();
    let run_id = new_run_id(started);
    let started_at = crate::time::iso_system(started);
    let pid_file = PidFile {
        pid: std::process::id(),
        run_id: run_id.clone(),
        started_at: started_at.clone(),
        mode: "foreground".into(),
    };
    // The lock, not the pid file, says a daemon runs: a pid file that
    // cannot be written (a directory in its place) is reported, not fatal.
    let pid_file_written = pid_file::write(paths, &pid_file);
    let mut status = StatusWriter::new(paths, &run_id, &started_at, time_scale.factor());
    if let Err(err) = &pid_file_written {
        status.warn(format!("pid_file_write_failed: {err}"));
    }
    status.write(DaemonState::Starting);
    // `cli::main` refused a bad `HYP_LOG` before any command ran.
    let filter = logging::filter_from_env().ok().flatten();
    if let Err(err) = logging::init_daemon(&paths.daemon_log(), &run_id, filter.as_deref()) {
        crate::term::warning(&format!(
            "cannot open the daemon log {}: {err} (running without it)",
            paths.daemon_log().display()
        ));
        logging::init_terminal(filter.as_deref());
    }
    if let Err(err) = pid_file_written {
        crate::event!(
            Error,
            "daemon.pid_file_write_failed",
            json!({"message": err.to_string()}),
        );
    }
    crate::event!(
        Info,
        "daemon.starting",
        json!({
            "config_path": paths.local_config().path.display().to_string(),
            "mode": "foreground",
            "time_scale": time_scale.factor(),
        }),
    );
    Ok(status)
}

/// Remove the stray temp files a killed writer left in every directory the
/// atomic writer writes into. Right after the lock and the pid file, before
/// any thread of this image writes.
fn remove_stray_temps(paths: &Paths) {
    let mut dirs = vec![
        paths.state_root(),
        paths.control_dir(),
        paths.run_dir(),
        paths.identity_dir(),
        paths.usage_policy_dir(),
        paths.cache_dir(),
    ];
    // Every sink instance directory, configured or not, sits beside this one.
    if let Some(instances) = paths.sink_instance_dir("central").parent()
        && let Ok(entries) = std::fs::read_dir(instances)
    {
        dirs.extend(
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                .map(|entry| entry.path()),
        );
    }
    let removed: usize = dirs
        .iter()
        .map(|dir| crate::statefile::remove_stray_temps(dir))
        .sum();
    if removed > 0 {
        crate::event!(
            Info,
            "daemon.stray_temps_removed",
            json!({"count": removed})
        );
    }
}

/// From boot evaluation to `healthy`: the engine, config, markers, threads
/// and the boot pass.
fn boot(
    paths: &Paths,
    time_scale: TimeScale,
    lock: DaemonLock,
    mut status: StatusWriter,
    signals: Receiver<DaemonSignal>,
) -> Result<Daemon, DaemonError> {
    let boot = engine::evaluate_at_boot(paths);
    if boot.action != "none" {
        crate::event!(
            Info,
            "daemon.config_probation_boot_action",
            json!({"action": boot.action}),
        );
    }
    let effective = config::load_effective(paths);
    effective.log_merge_outcome();
    if effective.has_central_layer
        && let Err(err) = crate::control::membership::installation_id(paths)
    {
        // Made at join; a host joined by an older hyp gets one here. Without
        // it the splay and batch ids still work, only less spread.
        crate::event!(
            Warn,
            "daemon.installation_id_failed",
            json!({"message": err.to_string()}),
        );
    }
    worker::recover_at_boot(paths);
    let (pass_sender, pass_inbox) = crossbeam_channel::unbounded();
    let (export_sender, export_inbox) = crossbeam_channel::unbounded();
    let worker_context = WorkerContext {
        paths: paths.clone(),
        time_scale,
        exports: Some(export_sender),
    };
    let worker = match WorkerHandle::spawn(worker_context, pass_inbox) {
        Ok(worker) => worker,
        Err(err) => {
            crate::event!(
                Error,
                "daemon.boot_failed",
                json!({"message": err.to_string()})
            );
            status.warn(format!(
                "boot_failed: cannot start the worker thread: {err}"
            ));
            status.write(DaemonState::Stopped);
            let _ = pid_file::remove(paths);
            return Err(DaemonError::Worker(err));
        }
    };
    let exporter = match ExporterSetup::for_daemon(paths, time_scale)
        .and_then(|setup| ExporterHandle::spawn(setup, export_inbox))
    {
        Ok(exporter) => Some(exporter),
        Err(err) => {
            crate::event!(
                Error,
                "daemon.exporter_start_failed",
                json!({"message": err.to_string()}),
            );
            status.warn(format!(
                "cannot start the exporter thread: {err} (rows are not forwarded; 'hyp sync' still works)"
            ));
            None
        }
    };
    let (event_sender, events) = crossbeam_channel::unbounded();
    let mut daemon = Daemon {
        paths: paths.clone(),
        time_scale,
        lock,
        status,
        signals,
        events,
        event_sender,
        pass_sender,
        worker,
        exporter,
        poll: None,
        watchdog: Watchdog::default(),
    };
    if let Some(probation) = &boot.probation {
        daemon.watchdog.arm(&probation.etag, probation.deadline);
    }
    daemon.set_central_layer(effective.has_central_layer);
    if effective.has_central_layer && boot.probation.is_none() {
        daemon.request_pass(PassReason::Boot);
    }
    daemon.write_status(DaemonState::Healthy);
    crate::event!(
        Info,
        "daemon.healthy",
        json!({
            "state": "healthy",
            "central_layer": effective.has_central_layer,
            "poll_thread": daemon.poll.is_some(),
            "boot_action": boot.action,
            "probation_until": daemon.watchdog.deadline().map(crate::time::iso_system),
        }),
    );
    Ok(daemon)
}

/// `daemon-<pid>-<ms since epoch>`, the reference's form.
fn new_run_id(started: SystemTime) -> String {
    let millis = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    format!("daemon-{}-{millis}", std::process::id())
}

/// Why the wait loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Shutdown { signal: DaemonSignal },
    Restart { reason: String },
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DrainEnd {
    Done,
    Forced(DaemonSignal),
    Overran,
}

/// Everything the main thread owns while the daemon runs.
struct Daemon {
    paths: Paths,
    time_scale: TimeScale,
    lock: DaemonLock,
    status: StatusWriter,
    signals: Receiver<DaemonSignal>,
    events: Receiver<PollEvent>,
    /// Kept so a poll thread started by a reload can be handed a clone.
    event_sender: Sender<PollEvent>,
    /// The worker's inbox; the poll thread holds a clone for the confirm edge.
    pass_sender: Sender<PassRequest>,
    worker: WorkerHandle,
    /// `None` only when its thread could not start (or in tests).
    exporter: Option<ExporterHandle>,
    poll: Option<PollHandle>,
    watchdog: Watchdog,
}

impl Daemon {
    /// Sleep until something happens; return when the daemon must stop or
    /// restart. Reloads and watchdog expiries are handled in place.
    fn wait(&mut self) -> Ending {
        loop {
            let watchdog_timer = self.watchdog.timer();
            crossbeam_channel::select! {
                recv(self.signals) -> signal => match signal {
                    Ok(signal) if signal.stops() => return Ending::Shutdown { signal },
                    Ok(DaemonSignal::Reload) => self.reload(),
                    Ok(_) => {
                        crate::event!(Info,
                            "daemon.restart_requested",
                            json!({"hyp_reason": "signal"}),
                        );
                        return Ending::Restart { reason: "signal".into() };
                    }
                    // The forwarding thread is gone: no signal can reach us
                    // any more, so stop rather than run unkillable by TERM.
                    Err(_) => return Ending::Shutdown { signal: DaemonSignal::Terminate },
                },
                recv(self.events) -> event => {
                    if let Ok(event) = event
                        && let Some(ending) = self.on_poll_event(event)
                    {
                        return ending;
                    }
                },
                recv(watchdog_timer) -> _ => self.watchdog_fired(),
            }
        }
    }

    fn on_poll_event(&mut self, event: PollEvent) -> Option<Ending> {
        if !matches!(event, PollEvent::Polled(_)) {
            crate::event!(
                Debug,
                "daemon.poll_event",
                json!({"event": format!("{event:?}")})
            );
        }
        match event {
            PollEvent::Applied { etag, deadline } => {
                // The poll thread already logged `daemon.restart_requested`.
                self.watchdog.arm(&etag, deadline);
                Some(Ending::Restart {
                    reason: "config_applied".into(),
                })
            }
            PollEvent::ProbationCleared { etag } => {
                self.watchdog.disarm();
                crate::event!(
                    Info,
                    "daemon.probation_watchdog_disarmed",
                    json!({"etag": etag})
                );
                self.write_status(DaemonState::Healthy);
                None
            }
            PollEvent::RolledBack { reason } => {
                self.watchdog.disarm();
                Some(Ending::Restart { reason })
            }
            PollEvent::Polled(record) => {
                self.status.update(|status| status.poll = Some(*record));
                self.write_status(DaemonState::Healthy);
                None
            }
        }
    }

    fn watchdog_fired(&mut self) {
        let etag = self.watchdog.etag().map(str::to_string);
        self.watchdog.disarm();
        match &self.poll {
            Some(poll) => {
                crate::event!(
                    Warn,
                    "daemon.probation_watchdog_fired",
                    json!({"etag": etag})
                );
                poll.watchdog_expired();
            }
            None => crate::event!(
                Warn,
                "daemon.probation_watchdog_fired",
                json!({"etag": etag, "detail": "no poll thread runs (no central layer); nothing to roll back"}),
            ),
        }
        self.write_status(DaemonState::Healthy);
    }

    /// SIGHUP: re-merge both layers, start or stop the poll thread to match,
    /// re-read probation for the watchdog, and ask for a pass when confirmed.
    fn reload(&mut self) {
        crate::event!(Info, "daemon.reload_requested", json!({}));
        let effective = config::load_effective(&self.paths);
        effective.log_merge_outcome();
        // The poll thread reads the sink and identity once, at spawn: a
        // re-join may have changed both, so a reload always starts it afresh.
        if let Some(poll) = self.poll.take() {
            poll.stop(self.time_scale.secs(POLL_STOP_GRACE_SECS));
            crate::event!(Info, "daemon.poll_stopped", json!({"reason": "reload"}));
        }
        self.set_central_layer(effective.has_central_layer);
        let probation = engine::active_probation(&self.paths);
        match &probation {
            Some(probation) => self.watchdog.arm(&probation.etag, probation.deadline),
            None => self.watchdog.disarm(),
        }
        let confirmed = effective.has_central_layer && probation.is_none();
        if confirmed {
            self.request_pass(PassReason::Reload);
        }
        let now = crate::time::iso_system(SystemTime::now());
        self.status
            .update(|status| status.last_reload_at = Some(now));
        self.write_status(DaemonState::Healthy);
        crate::event!(
            Info,
            "daemon.reloaded",
            json!({
                "central_layer": effective.has_central_layer,
                "poll_thread": self.poll.is_some(),
                "plugins": effective.plugins.len(),
                "pass_requested": confirmed,
            }),
        );
    }

    /// Start the poll thread when a central layer is present, stop it when
    /// not; a no-op when it already matches.
    fn set_central_layer(&mut self, present: bool) {
        match (self.poll.take(), present) {
            (None, true) => {
                let context = PollContext {
                    paths: self.paths.clone(),
                    time_scale: self.time_scale,
                    passes: self.pass_sender.clone(),
                    events: self.event_sender.clone(),
                };
                match PollHandle::spawn(context) {
                    Ok(poll) => {
                        self.poll = Some(poll);
                        crate::event!(Info, "daemon.poll_started", json!({}));
                    }
                    Err(err) => {
                        crate::event!(
                            Error,
                            "daemon.poll_start_failed",
                            json!({"message": err.to_string()}),
                        );
                        self.status
                            .warn(format!("cannot start the poll thread: {err}"));
                    }
                }
            }
            (Some(poll), false) => {
                poll.stop(self.time_scale.secs(POLL_STOP_GRACE_SECS));
                crate::event!(
                    Info,
                    "daemon.poll_stopped",
                    json!({"reason": "central_layer_gone"}),
                );
            }
            (poll, _) => self.poll = poll,
        }
        self.status.update(|status| status.central_layer = present);
    }

    fn request_pass(&self, reason: PassReason) {
        crate::event!(
            Debug,
            "daemon.pass_requested",
            json!({"hyp_reason": format!("{reason:?}")}),
        );
        let _ = self.pass_sender.send(PassRequest { reason });
    }

    fn write_status(&mut self, state: DaemonState) {
        let polling = self.poll.is_some();
        let until = self.watchdog.deadline().map(crate::time::iso_system);
        self.status.update(|status| {
            status.poll_thread = polling;
            status.probation_until = until;
        });
        self.status.write(state);
    }

    /// Drain (stop passes, stop the poll thread, shut the worker down), then
    /// stop for good or re-execute. Consumes the daemon: nothing runs after.
    fn finish(self, ending: Ending) -> RunOutcome {
        let Daemon {
            paths,
            time_scale,
            lock,
            mut status,
            signals,
            pass_sender,
            worker,
            exporter,
            poll,
            ..
        } = self;
        let (state, reason) = match &ending {
            Ending::Shutdown { .. } => (DaemonState::Stopping, "signal"),
            Ending::Restart { .. } => (DaemonState::Restarting, "restart"),
        };
        if let Ending::Restart { reason } = &ending {
            let reason = reason.clone();
            status.update(|status| status.restart_reason = Some(reason));
        }
        status.update(|status| status.poll_thread = false);
        status.write(state);
        crate::event!(
            Info,
            "daemon.stopping",
            json!({
                "reason": reason,
                "signal": match &ending {
                    Ending::Shutdown { signal } => Some(signal.name()),
                    Ending::Restart { .. } => None,
                },
            }),
        );
        // Stop accepting passes: after the poll thread ends, the worker's
        // inbox has no sender left.
        drop(pass_sender);
        let drained = drain_threads(poll, worker, exporter, time_scale);
        let (ending, drain_end) = wait_for_drain(&drained, signals.clone(), time_scale, ending);
        let ending = last_look_before_exec(ending, &signals);
        match (ending, drain_end) {
            (_, DrainEnd::Forced(signal)) => {
                crate::event!(Warn, "daemon.forced_exit", json!({"signal": signal.name()}));
                status.warn(format!(
                    "forced exit: a second {} arrived during shutdown",
                    signal.name()
                ));
                stop_for_good(&paths, status, lock);
                RunOutcome::Forced(signal)
            }
            (Ending::Restart { reason }, drain_end) => {
                if drain_end == DrainEnd::Overran {
                    crate::event!(
                        Warn,
                        "daemon.shutdown_overran",
                        json!({"budget_secs": DRAIN_BUDGET_SECS}),
                    );
                }
                crate::event!(Info, "daemon.exec", json!({"hyp_reason": reason}));
                crate::term::stderr_text(&format!("daemon: restarting ({reason})\n"));
                let err = exec_self();
                crate::event!(
                    Error,
                    "daemon.exec_failed",
                    json!({"message": err.to_string()})
                );
                status.warn(format!("staged restart failed: cannot exec: {err}"));
                stop_for_good(&paths, status, lock);
                RunOutcome::ExecFailed
            }
            (Ending::Shutdown { .. }, DrainEnd::Overran) => {
                crate::event!(
                    Warn,
                    "daemon.shutdown_overran",
                    json!({"budget_secs": DRAIN_BUDGET_SECS}),
                );
                status.warn(format!(
                    "shutdown overran its {DRAIN_BUDGET_SECS} s budget; exited anyway"
                ));
                stop_for_good(&paths, status, lock);
                RunOutcome::Overran
            }
            (Ending::Shutdown { .. }, DrainEnd::Done) => {
                stop_for_good(&paths, status, lock);
                RunOutcome::Stopped
            }
        }
    }
}

/// Stop the poll thread (1 s grace), then the worker and the exporter
/// together, on a helper thread; the receiver yields (or disconnects) when
/// all are done.
fn drain_threads(
    poll: Option<PollHandle>,
    worker: WorkerHandle,
    exporter: Option<ExporterHandle>,
    time_scale: TimeScale,
) -> Receiver<()> {
    let (done, drained) = crossbeam_channel::bounded(1);
    let grace = time_scale.secs(POLL_STOP_GRACE_SECS);
    let children_deadline = Instant::now() + time_scale.secs(WORKER_SHUTDOWN_SECS);
    let spawned = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            if let Some(delay) = debug_drain_delay() {
                std::thread::sleep(delay);
            }
            if let Some(poll) = poll {
                poll.stop(grace);
            }
            std::thread::scope(|scope| {
                if let Some(exporter) = exporter {
                    scope.spawn(move || exporter.shutdown(children_deadline));
                }
                worker.shutdown(children_deadline);
            });
            let _ = done.send(());
        });
    if let Err(err) = spawned {
        // The closure (and with it every handle) is dropped: the threads see
        // their inboxes close and end on their own; `drained` disconnects.
        crate::event!(
            Error,
            "daemon.drain_thread_failed",
            json!({"message": err.to_string()}),
        );
    }
    drained
}

/// `HYP_DEBUG_DRAIN_DELAY_MS`: hold the drain this long before stopping the
/// threads, standing in for a slow child so tests can reach the second-signal
/// and over-budget paths. Test-only; unset in any real deployment.
fn debug_drain_delay() -> Option<Duration> {
    debug_duration("HYP_DEBUG_DRAIN_DELAY_MS")
}

/// Test-only hooks that hold a window open (the drain, the exec) so tests
/// can land a signal inside it deterministically.
fn debug_duration(variable: &str) -> Option<Duration> {
    let millis = std::env::var(variable).ok()?;
    millis.trim().parse::<u64>().ok().map(Duration::from_millis)
}

/// Wait for the drain, a stopping signal, or the budget. A first SIGTERM or
/// SIGINT during a restart's drain turns it into a shutdown (the drain goes
/// on, no exec follows); one during a shutdown's drain forces the exit.
fn wait_for_drain(
    drained: &Receiver<()>,
    signals: Receiver<DaemonSignal>,
    time_scale: TimeScale,
    ending: Ending,
) -> (Ending, DrainEnd) {
    let budget = crossbeam_channel::after(time_scale.secs(DRAIN_BUDGET_SECS));
    let mut signals = signals;
    let mut ending = ending;
    loop {
        crossbeam_channel::select! {
            recv(drained) -> _ => return (ending, DrainEnd::Done),
            recv(signals) -> signal => match (signal, &ending) {
                (Ok(signal), Ending::Restart { .. }) if signal.stops() => {
                    crate::event!(Info,
                        "daemon.restart_cancelled",
                        json!({"signal": signal.name(), "detail": "stopping instead"}),
                    );
                    ending = Ending::Shutdown { signal };
                }
                (Ok(signal), Ending::Shutdown { .. }) if signal.stops() => {
                    return (ending, DrainEnd::Forced(signal));
                }
                (Ok(signal), _) => crate::event!(Info,
                    "daemon.signal_ignored",
                    json!({"signal": signal.name(), "detail": "draining"}),
                ),
                (Err(_), _) => signals = crossbeam_channel::never(),
            },
            recv(budget) -> _ => return (ending, DrainEnd::Overran),
        }
    }
}

/// Write `stopped`, remove the pid file, release the lock (in that order, so
/// a reader never sees a free lock next to a live-looking status).
fn stop_for_good(paths: &Paths, mut status: StatusWriter, lock: DaemonLock) {
    status.write(DaemonState::Stopped);
    crate::event!(Info, "daemon.stopped", json!({}));
    if let Err(err) = pid_file::remove(paths) {
        crate::event!(
            Error,
            "daemon.pid_file_remove_failed",
            json!({"message": err.to_string()}),
        );
    }
    drop(lock);
}

/// Replace this process image with a fresh copy of itself: same binary, same
/// arguments (argv[0] included), same environment, same pid. Returns only on
/// failure. Every descriptor this process opened is close-on-exec (std's
/// default), the lock included, so the new image can take the lock again.
fn exec_self() -> io::Error {
    let executable = match std::env::current_exe() {
        Ok(executable) => executable,
        Err(err) => return err,
    };
    let to_c = |text: &std::ffi::OsStr| CString::new(text.as_bytes());
    let Ok(program) = to_c(executable.as_os_str()) else {
        return io::Error::other("the executable path contains a NUL byte");
    };
    let args: Result<Vec<CString>, _> = std::env::args_os().map(|arg| to_c(&arg)).collect();
    let Ok(args) = args else {
        return io::Error::other("an argument contains a NUL byte");
    };
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|arg| arg.as_ptr()).collect();
    argv.push(std::ptr::null());
    // `Command::exec` would reset the signal mask; execv keeps it blocked,
    // so signals sent during the exec stay pending for the new image.
    if let Some(delay) = debug_duration("HYP_DEBUG_EXEC_DELAY_MS") {
        std::thread::sleep(delay);
    }
    // SAFETY: `program` and every `argv` entry are NUL-terminated C strings
    // that outlive the call, and `argv` ends with a null pointer. execv keeps
    // the current environment. It returns only on failure.
    unsafe { libc::execv(program.as_ptr(), argv.as_ptr()) };
    io::Error::last_os_error()
}

/// Before a staged restart execs: stop the signal thread, then honour a
/// stop signal it took during the drain's last moments. Later signals stay
/// pending through the exec.
fn last_look_before_exec(ending: Ending, signals: &Receiver<DaemonSignal>) -> Ending {
    let Ending::Restart { .. } = ending else {
        return ending;
    };
    signals::quiesce();
    match signals.try_iter().find(|signal| signal.stops()) {
        Some(signal) => {
            crate::event!(
                Info,
                "daemon.restart_cancelled",
                json!({"signal": signal.name(), "detail": "stopping instead"}),
            );
            Ending::Shutdown { signal }
        }
        None => ending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status_file;

    /// A daemon wired to test channels instead of real signals and threads.
    fn test_daemon(home: &std::path::Path) -> (Daemon, Sender<DaemonSignal>, Sender<PollEvent>) {
        let paths = Paths::with_home(home);
        let lock = DaemonLock::acquire(&paths).unwrap();
        let (signal_sender, signals) = crossbeam_channel::unbounded();
        let (pass_sender, pass_inbox) = crossbeam_channel::unbounded();
        let context = WorkerContext {
            paths: paths.clone(),
            time_scale: TimeScale::REAL,
            exports: None,
        };
        let worker = WorkerHandle::spawn(context, pass_inbox).unwrap();
        let (event_sender, events) = crossbeam_channel::unbounded();
        let daemon = Daemon {
            status: StatusWriter::new(&paths, "daemon-test", "2026-01-01T00:00:00.000Z", 1.0),
            paths,
            time_scale: TimeScale::REAL,
            lock,
            signals,
            events,
            event_sender: event_sender.clone(),
            pass_sender,
            worker,
            exporter: None,
            poll: None,
            watchdog: Watchdog::default(),
        };
        (daemon, signal_sender, event_sender)
    }

    #[test]
    fn an_apply_arms_the_watchdog_and_asks_for_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut daemon, _signals, events) = test_daemon(dir.path());
        let deadline = SystemTime::now() + Duration::from_secs(3600);
        events
            .send(PollEvent::ProbationCleared {
                etag: "rev-0".into(),
            })
            .unwrap();
        events
            .send(PollEvent::Applied {
                etag: "rev-1".into(),
                deadline,
            })
            .unwrap();
        assert_eq!(
            daemon.wait(),
            Ending::Restart {
                reason: "config_applied".into()
            }
        );
        assert_eq!(daemon.watchdog.deadline(), Some(deadline));
        assert_eq!(daemon.watchdog.etag(), Some("rev-1"));
    }

    #[test]
    fn a_rollback_restarts_with_its_reason_and_disarms() {
        let dir = tempfile::tempdir().unwrap();
        let (mut daemon, _signals, events) = test_daemon(dir.path());
        daemon
            .watchdog
            .arm("rev-1", SystemTime::now() + Duration::from_secs(3600));
        events
            .send(PollEvent::RolledBack {
                reason: "probation_expired".into(),
            })
            .unwrap();
        assert_eq!(
            daemon.wait(),
            Ending::Restart {
                reason: "probation_expired".into()
            }
        );
        assert_eq!(daemon.watchdog.deadline(), None);
    }

    #[test]
    fn a_reload_keeps_running_and_a_stop_signal_ends_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (mut daemon, signals, _events) = test_daemon(dir.path());
        signals.send(DaemonSignal::Reload).unwrap();
        signals.send(DaemonSignal::Interrupt).unwrap();
        assert_eq!(
            daemon.wait(),
            Ending::Shutdown {
                signal: DaemonSignal::Interrupt
            }
        );
        let status = status_file::read(&daemon.paths).ok().unwrap();
        assert!(status["last_reload_at"].is_string());
        assert_eq!(status["state"], "healthy");
    }

    #[test]
    fn an_expired_watchdog_fires_and_disarms() {
        let dir = tempfile::tempdir().unwrap();
        let (mut daemon, signals, _events) = test_daemon(dir.path());
        let status_path = daemon.paths.status_file();
        daemon
            .watchdog
            .arm("rev-1", SystemTime::now() - Duration::from_secs(1));
        let waiting = std::thread::spawn(move || {
            let ending = daemon.wait();
            (daemon, ending)
        });
        // Firing writes status.json (nothing else here does): wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !status_path.exists() {
            assert!(Instant::now() < deadline, "the watchdog never fired");
            std::thread::yield_now();
        }
        signals.send(DaemonSignal::Terminate).unwrap();
        let (daemon, ending) = waiting.join().unwrap();
        assert_eq!(
            ending,
            Ending::Shutdown {
                signal: DaemonSignal::Terminate
            }
        );
        assert_eq!(daemon.watchdog.deadline(), None);
    }

    #[test]
    fn finishing_a_shutdown_writes_stopped_and_frees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (daemon, _signals, _events) = test_daemon(dir.path());
        let paths = daemon.paths.clone();
        pid_file::write(
            &paths,
            &PidFile {
                pid: std::process::id(),
                run_id: "daemon-test".into(),
                started_at: "x".into(),
                mode: "foreground".into(),
            },
        )
        .unwrap();
        let outcome = daemon.finish(Ending::Shutdown {
            signal: DaemonSignal::Terminate,
        });
        assert_eq!(outcome, RunOutcome::Stopped);
        assert_eq!(status_file::read(&paths).ok().unwrap()["state"], "stopped");
        assert_eq!(pid_file::read(&paths), pid_file::PidFileRead::Missing);
        assert!(!crate::daemon::lock::is_held(&paths));
    }
}
