//! The daemon process: single instance, boot order, threads, signals,
//! staged restart and bounded shutdown.

use crate::paths::Paths;

pub mod messages;

/// The pid of the daemon holding the single-instance lock, if one runs.
// FIXME(daemon owner): interim body.
pub fn running_pid(paths: &Paths) -> Option<u32> {
    let _ = paths;
    None
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

/// SIGHUP a running daemon, else restart an installed unit, else nothing.
// FIXME(daemon owner): interim body.
pub fn reach_running_daemon(paths: &Paths) -> Reached {
    let _ = paths;
    Reached::NotRunning
}
