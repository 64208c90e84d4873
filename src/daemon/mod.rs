//! The daemon process: single instance, boot order, threads, signals,
//! staged restart and bounded shutdown (`run`), and how other commands find
//! and reach a running daemon (this file): by the lock, never by the pid
//! file alone.

use std::time::{Duration, Instant};

use crate::paths::Paths;

pub mod exporter;
pub mod lock;
pub mod logs;
pub mod pid_file;
pub mod run;
pub mod service;
pub mod signals;
pub mod status_file;
pub mod watchdog;

/// The pid of the daemon holding the single-instance lock, if one runs: the
/// kernel's lock table names it; where that cannot be read, the pid file
/// does (`None` then when it is missing or malformed).
pub fn running_pid(paths: &Paths) -> Option<u32> {
    if !lock::is_held(paths) {
        return None;
    }
    lock::holder_pid(paths).or_else(|| pid_file::read(paths).pid())
}

/// How a command that changed config reached the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// A running daemon was sent SIGHUP.
    Signalled { pid: u32 },
    /// No daemon ran, but the systemd user unit is installed and was restarted.
    ServiceRestarted,
    /// Nothing runs: the caller prints how to start the daemon.
    NotRunning,
}

/// SIGHUP a running daemon, else restart the installed unit (the user's,
/// else the system's), else nothing.
/// The unit is restarted only when it serves this `HYP_HOME`.
pub fn reach_running_daemon(paths: &Paths) -> Reached {
    if let Some(pid) = running_pid(paths)
        && send_signal(pid, libc::SIGHUP)
    {
        return Reached::Signalled { pid };
    }
    if let Some(scope) = service::installed_scope()
        && service::serves(paths)
        && service::systemctl_in(scope, &["restart", service::UNIT_NAME]).is_ok()
    {
        return Reached::ServiceRestarted;
    }
    Reached::NotRunning
}

/// What `stop_running_daemon` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nobody holds the lock.
    NotRunning,
    /// SIGTERM was sent and the lock was released in time.
    Stopped { pid: u32 },
    /// SIGTERM was sent but the lock was still held at the deadline.
    TimedOut { pid: u32 },
    /// The lock is held but the pid file does not say by whom.
    PidUnknown { detail: String },
}

/// SIGTERM the lock holder (as the kernel's lock table names it; the pid
/// file only where that table cannot be read) and wait, up to `timeout`,
/// for it to release the lock. Signals nobody unless the lock is held.
pub fn stop_running_daemon(paths: &Paths, timeout: Duration) -> StopOutcome {
    if !lock::is_held(paths) {
        return StopOutcome::NotRunning;
    }
    let pid = match (lock::holder_pid(paths), pid_file::read(paths)) {
        // The kernel says who holds the lock: signal that process only,
        // whatever a stale pid file names.
        (Some(holder), _) => holder,
        (None, pid_file::PidFileRead::Ok(pid_file)) => pid_file.pid,
        (None, pid_file::PidFileRead::Missing) => {
            return StopOutcome::PidUnknown {
                detail: format!("{} is missing", paths.pid_file().display()),
            };
        }
        (None, pid_file::PidFileRead::Malformed { detail }) => {
            return StopOutcome::PidUnknown { detail };
        }
    };
    send_signal(pid, libc::SIGTERM);
    if wait_for_release(paths, timeout) {
        StopOutcome::Stopped { pid }
    } else {
        StopOutcome::TimedOut { pid }
    }
}

/// Poll the lock until it is free or `timeout` passes. This runs in a CLI
/// process waiting on another process, which offers nothing to block on.
fn wait_for_release(paths: &Paths, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if !lock::is_held(paths) {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// SIGHUP the daemon `pid` (from [`running_pid`]): it reloads and runs a
/// reconcile pass. False when the signal could not be sent.
pub fn request_pass(pid: u32) -> bool {
    send_signal(pid, libc::SIGHUP)
}

/// What `restart_in_place` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    NotRunning,
    /// The same process came back with a new run id.
    Restarted {
        pid: u32,
    },
    /// The signal was sent but no new run started before the timeout.
    TimedOut {
        pid: u32,
    },
}

/// Restart the running daemon without a service manager: SIGUSR1 asks it
/// for a staged restart (drain, then exec of itself, same pid); wait up to
/// `timeout` for the new run to hold the lock.
pub fn restart_in_place(paths: &Paths, timeout: Duration) -> RestartOutcome {
    let Some(pid) = running_pid(paths) else {
        return RestartOutcome::NotRunning;
    };
    let before = pid_file::read(paths).run_id();
    if !send_signal(pid, libc::SIGUSR1) {
        return RestartOutcome::NotRunning;
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        let now_running = pid_file::read(paths).run_id();
        if now_running.is_some() && now_running != before && lock::is_held(paths) {
            return RestartOutcome::Restarted { pid };
        }
        let now = Instant::now();
        if now >= deadline {
            return RestartOutcome::TimedOut { pid };
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// `kill(pid, signal)`; false when the process is gone or not ours.
fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with a positive pid signals that one process only.
    unsafe { libc::kill(pid, signal) == 0 }
}
