//! Progress on stderr while a provider imports, only when stderr is a
//! terminal: files done, rows written and read throughput, redrawn in place
//! a few times a second. Never on stdout, so `--json` output stays one
//! document.
//!
//! The same counters also tally what the parse workers saw that the
//! report explains but the writer never learns: lines the window left out
//! and sessions the usage policy or the entrypoint gate ignored.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::ParsedFile;

/// Counters the pipeline bumps and the progress line and the report read.
#[derive(Debug, Default)]
pub struct Progress {
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    rows_written: AtomicU64,
    lines_outside_window: AtomicU64,
    files_outside_window: AtomicU64,
    sessions_ignored: AtomicU64,
    files_ignored: AtomicU64,
}

/// What the parse workers saw, as the report gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseTally {
    /// Lines with a timestamp outside the window (not imported).
    pub lines_outside_window: u64,
    /// Files every line of which fell outside the window.
    pub files_outside_window: u64,
    /// Sessions left out by `.hypignore`, `local-only.json` or the
    /// entrypoint gate.
    pub sessions_ignored: u64,
    /// Files all of whose sessions were left out that way.
    pub files_ignored: u64,
}

impl Progress {
    pub fn file_parsed(&self, parsed: &ParsedFile) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_done
            .fetch_add(parsed.bytes_read, Ordering::Relaxed);
        let lines = parsed.window_lines;
        self.lines_outside_window
            .fetch_add(lines.outside, Ordering::Relaxed);
        if lines.all_outside() {
            self.files_outside_window.fetch_add(1, Ordering::Relaxed);
        }
        let gated = parsed.gated_sessions as u64;
        self.sessions_ignored.fetch_add(gated, Ordering::Relaxed);
        if gated > 0 && parsed.items.is_empty() {
            self.files_ignored.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The tally so far (read once the pipeline has finished).
    pub fn tally(&self) -> ParseTally {
        ParseTally {
            lines_outside_window: self.lines_outside_window.load(Ordering::Relaxed),
            files_outside_window: self.files_outside_window.load(Ordering::Relaxed),
            sessions_ignored: self.sessions_ignored.load(Ordering::Relaxed),
            files_ignored: self.files_ignored.load(Ordering::Relaxed),
        }
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
    std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|term| term != "dumb")
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

/// Where one provider's CPU went, per stage, for `make bench`: printed on
/// stderr as one `hyp-phases {json}` line when `HYP_BENCH_PHASES=1`, and
/// nowhere else (the `--json` document keeps its fields).
#[derive(Debug, Default)]
pub struct PhaseCpu {
    /// All parse workers together.
    pub parse_ns: AtomicU64,
    /// The writer thread up to its last commit.
    pub write_ns: AtomicU64,
    /// The writer's end: index build and move into place (fresh cache) or
    /// the final checkpoint (WAL).
    pub finish_ns: AtomicU64,
    /// The checkpointer thread (WAL path only).
    pub checkpoint_ns: AtomicU64,
    /// Wall time of the writer's end (the index sort may run on helper
    /// threads whose CPU `finish_ns` does not see).
    pub finish_wall_ns: AtomicU64,
}

impl PhaseCpu {
    /// The `hyp-phases` line when `HYP_BENCH_PHASES=1` asks for it.
    pub fn report(&self, provider: &str, path: &str, workers: usize, wall_s: f64) {
        if std::env::var_os("HYP_BENCH_PHASES").is_none_or(|value| value != "1") {
            return;
        }
        let seconds = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64 / 1e9;
        let line = serde_json::json!({
            "provider": provider,
            "path": path,
            "workers": workers,
            "wall_s": wall_s,
            "parse_cpu_s": seconds(&self.parse_ns),
            "write_cpu_s": seconds(&self.write_ns),
            "finish_cpu_s": seconds(&self.finish_ns),
            "checkpoint_cpu_s": seconds(&self.checkpoint_ns),
            "finish_wall_s": seconds(&self.finish_wall_ns),
        });
        let _ = writeln!(std::io::stderr().lock(), "hyp-phases {line}");
    }
}
