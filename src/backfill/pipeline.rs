//! One provider's import as threads: the calling thread hands files out in
//! walk order, parse workers turn each file into rows (projection and row
//! expansion included), and one writer thread owns the cache.
//!
//! The writer commits files strictly in walk order (a small reorder buffer),
//! so which copy of a `part_id` wins never depends on thread timing. A file
//! is handed out only while fewer than [`IN_FLIGHT_FILES`] are uncommitted,
//! which bounds memory whatever the corpus size. A stop request (SIGINT,
//! SIGTERM) makes workers drop the file they are reading, and the writer
//! commits every file completed before the gap; a partly read file is never
//! marked imported, so a later run reads it again from where its last
//! complete import stopped (or whole).
//!
//! A file that grew is continued from its stored point ([`super::resume`]);
//! when that cannot be vouched for, the worker reads it whole instead. A
//! completed read's new point and state go to the writer, which records them
//! with the file's last rows.
//!
//! Written rows go back to the parse worker that made them, to be freed:
//! the frees stay in that thread's own allocator heap and off the writer,
//! the pipeline's one serial stage. For the same reason the parse workers
//! run at a slightly lower priority than the writer: when the cores are all
//! busy, the serial stage is the one that must not wait for a time slice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, SendTimeoutError, bounded};

use super::claude::{self, ClaudeContext};
use super::codex::{self, CodexContext};
use super::progress::{PhaseCpu, Progress};
use super::resume::{Fallback, StoredResume};
use super::walk::HistoryFile;
use super::window::Window;
use super::{FellBack, ParsedFile};
use crate::cache::CacheError;
use crate::cache::schema::MessageRow;
use crate::cache::writer::{CacheWriter, ImportedFile};
use crate::time::thread_cpu_ns;

/// How much lower (in nice steps) the parse workers run than the writer.
const PARSE_NICE: libc::c_int = 5;

/// Files handed out but not yet committed.
const IN_FLIGHT_FILES: usize = 8;

const POLL: Duration = Duration::from_millis(50);

/// How to turn one file into rows.
#[derive(Debug)]
pub enum Parser {
    Claude(Box<ClaudeContext>),
    Codex(Box<CodexContext>),
}

/// One file to read, and the stored point to continue it from, if any.
#[derive(Debug, Clone)]
pub struct FileTask {
    pub file: HistoryFile,
    pub resume: Option<StoredResume>,
}

impl Parser {
    /// Continue the file from its stored point when it has one and that
    /// holds, else read it whole. Bytes read by a continued read that gave
    /// way still count.
    fn parse(&self, task: &FileTask, stop: &AtomicBool) -> ParsedFile {
        let mut fell_back_bytes = 0;
        if let Some(stored) = &task.resume {
            match self.read(&task.file, Some(stored), stop) {
                Ok(parsed) => return parsed,
                Err(fell_back) => {
                    fell_back_bytes = fell_back.bytes_read;
                    crate::event!(
                        Debug,
                        "backfill.resume_fallback",
                        serde_json::json!({
                            "path": task.file.path.display().to_string(),
                            "reason": format!("{:?}", fell_back.reason),
                        }),
                    );
                }
            }
        }
        // A read from the start has no point to lose, so it never gives
        // way; if it ever did, the file counts as not read completely.
        let mut parsed = self
            .read(&task.file, None, stop)
            .unwrap_or_else(|fell_back| ParsedFile {
                bytes_read: fell_back.bytes_read,
                ..ParsedFile::default()
            });
        parsed.bytes_read += fell_back_bytes;
        parsed
    }

    /// One read, from `stored` (decoded for this provider) or whole.
    fn read(
        &self,
        file: &HistoryFile,
        stored: Option<&StoredResume>,
        stop: &AtomicBool,
    ) -> Result<ParsedFile, FellBack> {
        let no_state = FellBack {
            reason: Fallback::NoState,
            bytes_read: 0,
        };
        match self {
            Parser::Claude(ctx) => {
                let from = match stored {
                    Some(stored) => Some(stored.decode("claude").ok_or(no_state)?),
                    None => None,
                };
                claude::parse_file(ctx, file, from, stop)
            }
            Parser::Codex(ctx) => {
                let from = match stored {
                    Some(stored) => Some(stored.decode("codex").ok_or(no_state)?),
                    None => None,
                };
                codex::parse_file(ctx, file, from, stop)
            }
        }
    }
}

/// One provider's files and where their rows go.
pub struct PipelineJob<'a> {
    pub provider: &'a str,
    pub files: &'a [FileTask],
    pub parser: Parser,
    /// `None` for a dry run: count, write nothing.
    pub cache_db: Option<PathBuf>,
    pub window: Window,
    pub stop: &'a AtomicBool,
    pub progress: &'a Progress,
}

/// The counters a provider reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineOutcome {
    pub items_seen: u64,
    pub sessions_seen: u64,
    pub rows_written: u64,
    pub rows_skipped: u64,
    pub malformed_lines: u64,
    pub files_with_malformed_lines: u64,
    /// Files read (whole or continued), and the bytes read from them.
    pub files_read: u64,
    pub bytes_read: u64,
    pub error: Option<String>,
    /// Where a damaged cache was moved before this run started a new one.
    pub cache_set_aside: Option<PathBuf>,
    /// The run built a new cache in a temporary file ([`crate::cache::fresh`]).
    pub fresh_cache: bool,
}

/// One file's rows, grouped by item.
struct FileRows {
    file_index: usize,
    /// The parse worker that made (and will free) the rows.
    worker: usize,
    items: Vec<Vec<MessageRow>>,
    malformed_lines: u64,
    gated_sessions: usize,
    complete: bool,
    bytes_read: u64,
    resume: Option<StoredResume>,
}

/// Keep glibc from returning memory to the kernel after every large free:
/// SQLite's buffers (and, when the import runs on the system allocator, the
/// per-file buffers and row batches: see [`crate::allocator`]) would
/// otherwise be mmapped and unmapped thousands of times per run.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before the
    // pipeline threads start allocating.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    }
}

/// Raise the calling thread's niceness by `steps` (on Linux a thread has
/// its own). Best effort: raising niceness needs no privilege, and a thread
/// that keeps its priority only makes the run a little slower.
fn lower_own_priority(steps: libc::c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let current = libc::getpriority(libc::PRIO_PROCESS, thread);
        if *libc::__errno_location() == 0 {
            libc::setpriority(libc::PRIO_PROCESS, thread, (current + steps).min(19));
        }
    }
}

/// Run the job to completion or until `stop` is set.
pub fn run(job: PipelineJob<'_>) -> PipelineOutcome {
    let started = std::time::Instant::now();
    let phases = PhaseCpu::default();
    let outcome = run_threads(&job, &phases);
    let path = match (&job.cache_db, outcome.fresh_cache) {
        (None, _) => "dry-run",
        (Some(_), true) => "fresh",
        (Some(_), false) => "wal",
    };
    phases.report(
        job.provider,
        path,
        worker_count(),
        started.elapsed().as_secs_f64(),
    );
    outcome
}

/// Parse workers: one per core, at most 4.
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(2)
        .clamp(1, 4)
}

fn run_threads(job: &PipelineJob<'_>, phases: &PhaseCpu) -> PipelineOutcome {
    tune_allocator();
    let workers = worker_count();
    let (task_tx, task_rx) = bounded::<usize>(workers);
    let (rows_tx, rows_rx) = bounded::<FileRows>(workers * 2);
    let (permit_tx, permit_rx) = bounded::<()>(IN_FLIGHT_FILES);
    let (spent_tx, spent_rx): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| bounded::<FileRows>(IN_FLIGHT_FILES))
        .unzip();
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("backfill-writer".into())
            .spawn_scoped(scope, move || {
                write_in_order(job, rows_rx, permit_rx, spent_tx, phases)
            });
        let writer = match writer {
            Ok(handle) => handle,
            Err(err) => {
                return PipelineOutcome {
                    error: Some(format!("cannot start the writer thread: {err}")),
                    ..PipelineOutcome::default()
                };
            }
        };
        for worker_index in 0..workers {
            let task_rx = task_rx.clone();
            let rows_tx = rows_tx.clone();
            let spent_rx = spent_rx[worker_index].clone();
            let spawned = std::thread::Builder::new()
                .name(format!("backfill-parse-{worker_index}"))
                .spawn_scoped(scope, move || {
                    parse_files(job, worker_index, task_rx, rows_tx, spent_rx);
                    phases
                        .parse_ns
                        .fetch_add(thread_cpu_ns(), Ordering::Relaxed);
                });
            if spawned.is_err() && worker_index == 0 {
                break;
            }
        }
        drop(rows_tx);
        drop(task_rx);
        drop(spent_rx);
        dispatch(job, &task_tx, &permit_tx);
        drop(task_tx);
        drop(permit_tx);
        writer.join().unwrap_or_else(|_| PipelineOutcome {
            error: Some("the cache writer thread panicked".into()),
            ..PipelineOutcome::default()
        })
    })
}

/// Hand out file indexes in order, at most [`IN_FLIGHT_FILES`] uncommitted.
fn dispatch(
    job: &PipelineJob<'_>,
    tasks: &crossbeam_channel::Sender<usize>,
    permits: &crossbeam_channel::Sender<()>,
) {
    for file_index in 0..job.files.len() {
        loop {
            if job.stop.load(Ordering::Relaxed) {
                return;
            }
            match permits.send_timeout((), POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(())) => continue,
                Err(SendTimeoutError::Disconnected(())) => return,
            }
        }
        if tasks.send(file_index).is_err() {
            return;
        }
    }
}

fn parse_files(
    job: &PipelineJob<'_>,
    worker: usize,
    tasks: crossbeam_channel::Receiver<usize>,
    out: crossbeam_channel::Sender<FileRows>,
    spent: crossbeam_channel::Receiver<FileRows>,
) {
    lower_own_priority(PARSE_NICE);
    for file_index in tasks {
        spent.try_iter().for_each(drop);
        let parsed = job.parser.parse(&job.files[file_index], job.stop);
        job.progress.file_parsed(&parsed);
        let rows = FileRows {
            file_index,
            worker,
            items: parsed.items,
            malformed_lines: parsed.malformed_lines,
            gated_sessions: parsed.gated_sessions,
            complete: parsed.complete && !job.stop.load(Ordering::Relaxed),
            bytes_read: parsed.bytes_read,
            resume: parsed.resume,
        };
        if out.send(rows).is_err() {
            return;
        }
    }
}

/// The writer thread: open the cache (unless dry run), then commit files
/// in walk order.
fn write_in_order(
    job: &PipelineJob<'_>,
    rows: crossbeam_channel::Receiver<FileRows>,
    permits: crossbeam_channel::Receiver<()>,
    spent: Vec<crossbeam_channel::Sender<FileRows>>,
    phases: &PhaseCpu,
) -> PipelineOutcome {
    let mut outcome = PipelineOutcome::default();
    let mut cache = match &job.cache_db {
        None => None,
        Some(path) => match CacheWriter::open_for_import(path) {
            Ok(writer) => {
                outcome.cache_set_aside = writer.set_aside().map(Path::to_path_buf);
                outcome.fresh_cache = writer.is_fresh();
                Some(writer)
            }
            Err(err) => {
                outcome.error = Some(err.to_string());
                return outcome;
            }
        },
    };
    let mut pending: BTreeMap<usize, FileRows> = BTreeMap::new();
    let mut next_index = 0;
    let mut disconnected = false;
    loop {
        while let Some(file) = pending.remove(&next_index) {
            if let Err(err) = commit_file(job, cache.as_mut(), &file, &mut outcome) {
                outcome.error = Some(err.to_string());
                let outcome = finish(cache, outcome, phases);
                return match &job.cache_db {
                    Some(path) if err.is_damage() => set_aside_after_damage(path, outcome),
                    _ => outcome,
                };
            }
            // A full channel (workers busy or gone) frees here instead.
            if let Some(worker) = spent.get(file.worker) {
                let _ = worker.try_send(file);
            }
            next_index += 1;
            let _ = permits.try_recv();
        }
        if disconnected || job.stop.load(Ordering::Relaxed) {
            break;
        }
        match rows.recv_timeout(POLL) {
            Ok(file) => {
                pending.insert(file.file_index, file);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
    }
    finish(cache, outcome, phases)
}

/// Commit what is left and report only rows that are committed: a
/// transaction that failed (a full disk) wrote nothing.
fn finish(
    cache: Option<CacheWriter>,
    mut outcome: PipelineOutcome,
    phases: &PhaseCpu,
) -> PipelineOutcome {
    let writing = thread_cpu_ns();
    phases.write_ns.store(writing, Ordering::Relaxed);
    let Some(mut cache) = cache else {
        return outcome;
    };
    let finish_started = std::time::Instant::now();
    let finished = cache.finish();
    phases.finish_wall_ns.store(
        finish_started.elapsed().as_nanos() as u64,
        Ordering::Relaxed,
    );
    phases
        .finish_ns
        .store(thread_cpu_ns().saturating_sub(writing), Ordering::Relaxed);
    phases
        .checkpoint_ns
        .store(cache.checkpoint_cpu_ns(), Ordering::Relaxed);
    outcome.rows_written = cache.committed_rows();
    if let Err(err) = finished
        && outcome.error.is_none()
    {
        outcome.error = Some(err.to_string());
    }
    outcome
}

/// The cache went bad under the writer (now closed): move it aside so the
/// next run rebuilds it, and say so in the provider's error.
fn set_aside_after_damage(path: &Path, mut outcome: PipelineOutcome) -> PipelineOutcome {
    let what_next = match crate::cache::repair::set_aside_if_damaged(path) {
        Ok(Some(aside)) => {
            let text = format!(
                "the damaged cache was moved to {}; run 'hyp backfill' to rebuild it from history",
                aside.display()
            );
            outcome.cache_set_aside = Some(aside);
            text
        }
        Ok(None) => "the cache is sound again; run again to finish".to_string(),
        Err(err) => format!(
            "it cannot be moved aside ({err}): move it away by hand, then run 'hyp backfill' again"
        ),
    };
    if let Some(error) = &mut outcome.error {
        error.push_str(&format!(" ({what_next})"));
    }
    outcome
}

fn commit_file(
    job: &PipelineJob<'_>,
    cache: Option<&mut CacheWriter>,
    file: &FileRows,
    outcome: &mut PipelineOutcome,
) -> Result<(), CacheError> {
    outcome.malformed_lines += file.malformed_lines;
    if file.malformed_lines > 0 {
        outcome.files_with_malformed_lines += 1;
    }
    outcome.files_read += 1;
    outcome.bytes_read += file.bytes_read;
    let Some(cache) = cache else {
        outcome.items_seen += file.items.len() as u64;
        outcome.sessions_seen += file.items.len() as u64;
        return Ok(());
    };
    for item_rows in &file.items {
        let inserted = cache.insert(item_rows)?;
        outcome.items_seen += 1;
        if inserted > 0 {
            outcome.sessions_seen += 1;
            outcome.rows_written += inserted;
            job.progress.rows_written(inserted);
        }
        outcome.rows_skipped += (item_rows.len() as u64).saturating_sub(inserted);
    }
    if file.complete && file.gated_sessions == 0 {
        let source = &job.files[file.file_index].file;
        cache.mark_imported(&ImportedFile {
            path: source.path.display().to_string(),
            provider: job.provider.to_string(),
            size: source.size,
            mtime_ns: source.mtime_ns,
            since_ms: job.window.since_ms,
            until_ms: job.window.until_ms,
            resume: file.resume.clone(),
        })?;
    }
    cache.commit_if_large()
}
