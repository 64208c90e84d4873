//! SIGINT / SIGTERM during an import: the first one sets a stop flag the
//! pipeline polls (so parsed rows are committed and the report printed);
//! a second one exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Which signal stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

/// The stop flag and the signal that set it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Route SIGINT and SIGTERM to the flag. A second signal exits with
    /// 130 / 143 without waiting.
    pub fn install() -> std::io::Result<Interrupt> {
        let interrupt = Interrupt::default();
        for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            signal_hook::flag::register_conditional_shutdown(
                signal,
                code,
                Arc::clone(&interrupt.stop),
            )?;
            signal_hook::flag::register_usize(
                signal,
                Arc::clone(&interrupt.signal),
                signal as usize,
            )?;
            signal_hook::flag::register(signal, Arc::clone(&interrupt.stop))?;
        }
        Ok(interrupt)
    }

    /// The flag workers poll.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<StopSignal> {
        if !self.stop.load(Ordering::SeqCst) {
            return None;
        }
        match self.signal.load(Ordering::SeqCst) {
            signal if signal == SIGTERM as usize => Some(StopSignal::Terminate),
            _ => Some(StopSignal::Interrupt),
        }
    }
}
