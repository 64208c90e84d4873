//! SIGINT / SIGTERM for the CLI commands outside the daemon (`hyp backfill`,
//! `hyp sync`, `hyp query sql`). The first one sets a stop flag the work
//! polls (so parsed rows are committed and the report printed; a running
//! SQLite statement polls it from its progress handler); a second one exits
//! at once with that signal's code (130 / 143).
//!
//! SIGINT comes through `ctrlc`. SIGTERM cannot: ctrlc's `termination`
//! feature routes SIGINT, SIGTERM and SIGHUP to one handler that is not told
//! which signal arrived, and the contract's exit codes differ (130 / 143).
//! So SIGTERM is taken by a signal-hook iterator thread, as the daemon's
//! signals are. Both threads run ordinary code, never a signal handler.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use signal_hook::consts::SIGTERM;
use signal_hook::iterator::Signals;

use crate::cli::Code;

/// Which signal stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    /// The exit code of a run this signal stopped.
    pub fn code(self) -> Code {
        match self {
            StopSignal::Interrupt => Code::Interrupted,
            StopSignal::Terminate => Code::Terminated,
        }
    }

    fn tag(self) -> u8 {
        match self {
            StopSignal::Interrupt => 1,
            StopSignal::Terminate => 2,
        }
    }
}

/// The handlers could not be installed.
#[derive(Debug)]
pub struct InstallError(String);

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot install signal handlers: {}", self.0)
    }
}

impl std::error::Error for InstallError {}

/// The stop flag and the signal that set it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    /// 0 until a signal arrives, then [`StopSignal::tag`] of the first.
    first: Arc<AtomicU8>,
}

impl Interrupt {
    /// Route SIGINT and SIGTERM to the stop flag. Called once per process.
    pub fn install() -> Result<Interrupt, InstallError> {
        let interrupt = Interrupt::default();
        let on_sigint = interrupt.clone();
        ctrlc::set_handler(move || on_sigint.stop_by(StopSignal::Interrupt))
            .map_err(|err| InstallError(err.to_string()))?;
        let mut signals = Signals::new([SIGTERM]).map_err(|err| InstallError(err.to_string()))?;
        let on_sigterm = interrupt.clone();
        std::thread::Builder::new()
            .name("sigterm".into())
            .spawn(move || {
                for _ in signals.forever() {
                    on_sigterm.stop_by(StopSignal::Terminate);
                }
            })
            .map_err(|err| InstallError(err.to_string()))?;
        Ok(interrupt)
    }

    /// The first signal stops the work; a second exits at once.
    fn stop_by(&self, signal: StopSignal) {
        let first =
            self.first
                .compare_exchange(0, signal.tag(), Ordering::SeqCst, Ordering::SeqCst);
        if first.is_err() {
            std::process::exit(i32::from(signal.code().value()));
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The flag workers poll.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// The flag, for a callback that must own what it reads (SQLite's
    /// progress handler).
    pub fn shared_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<StopSignal> {
        if !self.stop.load(Ordering::SeqCst) {
            return None;
        }
        match self.first.load(Ordering::SeqCst) {
            2 => Some(StopSignal::Terminate),
            _ => Some(StopSignal::Interrupt),
        }
    }
}
