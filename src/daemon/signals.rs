//! Signals as messages: a signal-hook iterator thread turns SIGTERM, SIGINT,
//! SIGHUP and SIGUSR1 into `DaemonSignal`s on a channel the main thread
//! selects on. Nothing runs inside a signal handler but signal-hook's own
//! self-pipe write, and the thread sleeps in `read` between signals.

use std::io;

use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonSignal {
    /// SIGTERM: orderly shutdown (a second one during shutdown: exit now).
    Terminate,
    /// SIGINT: as SIGTERM.
    Interrupt,
    /// SIGHUP: re-merge config and reach the threads.
    Reload,
    /// SIGUSR1: a staged restart (drain, then exec of itself, same pid), the
    /// same path a config apply takes; used by tests and by operators who
    /// replaced the binary.
    Restart,
}

impl DaemonSignal {
    pub fn name(self) -> &'static str {
        match self {
            DaemonSignal::Terminate => "SIGTERM",
            DaemonSignal::Interrupt => "SIGINT",
            DaemonSignal::Reload => "SIGHUP",
            DaemonSignal::Restart => "SIGUSR1",
        }
    }

    pub fn stops(self) -> bool {
        matches!(self, DaemonSignal::Terminate | DaemonSignal::Interrupt)
    }
}

/// Install the handlers and start the forwarding thread. From here on these
/// signals no longer take their default action.
pub fn forward() -> io::Result<Receiver<DaemonSignal>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    let (sender, receiver) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for number in signals.forever() {
                let signal = match number {
                    SIGTERM => DaemonSignal::Terminate,
                    SIGINT => DaemonSignal::Interrupt,
                    SIGHUP => DaemonSignal::Reload,
                    SIGUSR1 => DaemonSignal::Restart,
                    _ => continue,
                };
                if sender.send(signal).is_err() {
                    break;
                }
            }
        })?;
    Ok(receiver)
}
