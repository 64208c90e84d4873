//! Progress on stderr while a provider imports, only when stderr is a
//! terminal: files done, rows written and read throughput, redrawn in place
//! a few times a second. Never on stdout, so `--json` output stays one
//! document.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

/// Counters the pipeline bumps and the progress line reads.
#[derive(Debug, Default)]
pub struct Progress {
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    rows_written: AtomicU64,
}

impl Progress {
    pub fn file_parsed(&self, bytes: u64) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn rows_written(&self, rows: u64) {
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    fn line(&self, provider: &str, files_total: usize, started: Instant) -> String {
        let seconds = started.elapsed().as_secs_f64().max(0.001);
        let megabytes = self.bytes_done.load(Ordering::Relaxed) as f64 / 1_048_576.0;
        format!(
            "{provider}: {}/{files_total} files  {} rows  {:.1} MB/s",
            self.files_done.load(Ordering::Relaxed),
            self.rows_written.load(Ordering::Relaxed),
            megabytes / seconds
        )
    }
}

/// Whether progress should be drawn at all.
pub fn wanted() -> bool {
    std::io::stderr().is_terminal()
}

/// Redraw the progress line until `done` fires or disconnects, then clear it.
pub fn draw_until(progress: &Progress, provider: &str, files_total: usize, done: &Receiver<()>) {
    let started = Instant::now();
    loop {
        let line = progress.line(provider, files_total, started);
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{line}");
        match done.recv_timeout(Duration::from_millis(200)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
}
