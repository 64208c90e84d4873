//! `hyp backfill`: read Claude Code and Codex history and expand it into
//! `ai_gateway_messages` rows for the cache.
//!
//! Map: `claude` and `codex` find and project history into [`rows::Item`]s
//! and expand them into cache rows (`rows`); `lines` reads a file from its
//! start or from where the last import stopped, and `resume` is what lets
//! it continue; `pipeline` runs one provider on parse threads plus the
//! single cache writer; this file runs one provider end to end (gates, the
//! `imported_files` ledger, counters) and defines the report the CLI
//! prints. The CLI (`cli::backfill`) owns argv, provider selection and
//! output.
//!
//! A run over unchanged history reads the ledger and the files' metadata,
//! nothing else: no history content, no side file, and the cache is not
//! opened for writing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Serialize;

use crate::config::EffectiveConfig;
use crate::config::catalog::Provider;
use crate::paths::Paths;

pub mod claude;
pub mod claude_line;
pub mod codex;
pub mod codex_line;
pub mod git;
pub mod identity;
pub mod json_skim;
pub mod lines;
pub mod pipeline;
pub mod progress;
pub mod resume;
pub mod rows;
pub mod usage_policy;
pub mod walk;
pub mod window;

use crate::cache::schema::MessageRow;
use crate::cache::writer::Ledger;
use lines::{LineStats, ReadEnd};
use pipeline::{FileTask, Parser, PipelineJob};
use progress::Progress;
use resume::{Fallback, StoredResume};
use usage_policy::UsagePolicy;
use walk::HistoryFile;
use window::{Window, WindowLines, WindowSource};

/// The one dataset both providers write.
pub const DATASET: &str = "ai_gateway_messages";

/// Default retention window when neither flag nor config sets one.
pub const DEFAULT_RETENTION_DAYS: f64 = 90.0;

/// What a provider made of one file.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// The rows of each item (one session or thread).
    pub items: Vec<Vec<MessageRow>>,
    /// Lines that were not JSON (garbage, invalid UTF-8, overlong).
    pub malformed_lines: u64,
    /// Sessions left out by the usage-policy or entrypoint gate.
    pub gated_sessions: usize,
    /// Every line was read (not interrupted, no read error).
    pub complete: bool,
    /// The run was interrupted while the file was read: no items.
    pub interrupted: bool,
    /// Bytes of the file read.
    pub bytes_read: u64,
    /// Lines the import window kept and left out (for the report).
    pub window_lines: WindowLines,
    /// Where a later read continues and from what state: set when the file
    /// was read to the end the walk saw and no session was gated.
    pub resume: Option<StoredResume>,
}

impl ParsedFile {
    /// A file's result as far as reading its lines decides it. A continued
    /// read that found the file is not the one it continues gives way.
    fn from_stats(stats: &LineStats) -> Result<ParsedFile, FellBack> {
        let reason = match stats.end {
            ReadEnd::PrefixChanged => Some(Fallback::PrefixChanged),
            ReadEnd::OpenLineExtended => Some(Fallback::OpenLineExtended),
            ReadEnd::Complete | ReadEnd::Interrupted | ReadEnd::Failed => None,
        };
        if let Some(reason) = reason {
            return Err(FellBack::new(reason, stats.bytes_read));
        }
        Ok(ParsedFile {
            malformed_lines: stats.malformed,
            complete: stats.end == ReadEnd::Complete,
            interrupted: stats.end == ReadEnd::Interrupted,
            bytes_read: stats.bytes_read,
            ..ParsedFile::default()
        })
    }
}

/// A continued read that gave way to a whole read, and what it had read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FellBack {
    pub reason: Fallback,
    pub bytes_read: u64,
}

impl FellBack {
    fn new(reason: Fallback, bytes_read: u64) -> FellBack {
        FellBack { reason, bytes_read }
    }
}

/// How one provider's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderStatus {
    Ok,
    Failed,
    Interrupted,
}

/// One provider's entry in the `--json` document (key order is the wire
/// order). The first nine keys are the reference's; `rows_skipped` counts
/// rows (not items) that were already in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderReport {
    pub provider: String,
    pub plugin: String,
    pub datasets: Vec<String>,
    pub status: ProviderStatus,
    pub items_seen: u64,
    pub sessions_seen: u64,
    pub rows_written: u64,
    pub rows_skipped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// History files the walk found.
    pub files_seen: u64,
    /// Files opened and read, whole or from where the last import stopped.
    pub files_read: u64,
    /// Files skipped as unchanged since a covering import (metadata only).
    pub files_unchanged: u64,
    /// Bytes of history content read.
    pub bytes_read: u64,
    /// Where the provider looked for history, and whether it was there.
    pub roots: Vec<RootReport>,
    /// The import window applied to every line.
    pub window: WindowReport,
    /// Total size of the files the walk found.
    pub bytes_seen: u64,
    /// Lines read whose timestamp fell outside the window (not imported).
    pub lines_outside_window: u64,
    /// Files read every line of which fell outside the window.
    pub files_outside_window: u64,
    /// Sessions left out by `.hypignore`, `local-only.json` or the
    /// entrypoint gate.
    pub sessions_ignored: u64,
    /// Files read all of whose sessions were left out that way.
    pub files_ignored: u64,
    /// How long the provider took.
    pub duration_ms: u64,
    /// For the stderr summary only.
    #[serde(skip)]
    pub malformed_lines: u64,
    #[serde(skip)]
    pub files_with_malformed_lines: u64,
    /// For the stderr summary only: where a damaged cache was moved.
    #[serde(skip)]
    pub cache_set_aside: Option<std::path::PathBuf>,
}

/// A directory a provider searched for history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootReport {
    pub path: PathBuf,
    pub exists: bool,
    /// The environment variable that chose it (`CLAUDE_CONFIG_DIR`,
    /// `CODEX_HOME`), or `null` for the default under `$HOME`.
    pub from_env: Option<&'static str>,
}

/// The window as the report gives it: ISO bounds (`null` = open) and
/// where the lower bound came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowReport {
    pub since: Option<String>,
    pub until: Option<String>,
    pub source: WindowSource,
}

impl WindowReport {
    pub fn new(window: &Window, source: WindowSource) -> WindowReport {
        WindowReport {
            since: window.since_ms.map(window::iso_from_ms),
            until: window.until_ms.map(window::iso_from_ms),
            source,
        }
    }
}

impl ProviderReport {
    /// A report with zero counters.
    pub fn empty(provider: Provider, status: ProviderStatus) -> ProviderReport {
        ProviderReport {
            provider: provider.name.to_string(),
            plugin: provider.plugin.to_string(),
            datasets: vec![DATASET.to_string()],
            status,
            items_seen: 0,
            sessions_seen: 0,
            rows_written: 0,
            rows_skipped: 0,
            error: None,
            files_seen: 0,
            files_read: 0,
            files_unchanged: 0,
            bytes_read: 0,
            roots: Vec::new(),
            window: WindowReport::new(&Window::default(), WindowSource::Default),
            bytes_seen: 0,
            lines_outside_window: 0,
            files_outside_window: 0,
            sessions_ignored: 0,
            files_ignored: 0,
            duration_ms: 0,
            malformed_lines: 0,
            files_with_malformed_lines: 0,
            cache_set_aside: None,
        }
    }
}

/// Options shared by every provider of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub window: Window,
    pub window_source: WindowSource,
    pub dry_run: bool,
    pub show_progress: bool,
}

/// The window from the flags: `--since` wins, else `now - retention days`
/// when retention is positive, else open.
pub fn resolve_window(
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    retention_days: f64,
    now_ms: i64,
) -> Window {
    let since_ms = since_ms.or_else(|| {
        (retention_days > 0.0).then(|| now_ms - (retention_days * window::DAY_MS as f64) as i64)
    });
    Window { since_ms, until_ms }
}

/// `$HOME` (for `~/.claude` and `~/.codex`).
fn user_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// Run one provider end to end. Failures are data in the report.
pub fn run_provider(
    paths: &Paths,
    config: &EffectiveConfig,
    provider: Provider,
    options: &RunOptions,
    stop: &AtomicBool,
) -> ProviderReport {
    let started = std::time::Instant::now();
    let mut report = import_provider(paths, config, provider, options, stop);
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

fn import_provider(
    paths: &Paths,
    config: &EffectiveConfig,
    provider: Provider,
    options: &RunOptions,
    stop: &AtomicBool,
) -> ProviderReport {
    let mut report = ProviderReport::empty(provider, ProviderStatus::Ok);
    report.window = WindowReport::new(&options.window, options.window_source);
    let policy_path = paths.state_root().join("usage-policy/local-only.json");
    let policy = match UsagePolicy::load(&policy_path) {
        Ok(policy) => policy,
        Err(err) => {
            report.status = ProviderStatus::Failed;
            report.error = Some(err.to_string());
            return report;
        }
    };
    let history = find_history(provider, user_home().as_deref());
    report.roots = history.roots;
    let files = history.files;
    let parser = match provider.name {
        "claude" => Parser::Claude(Box::new(claude::ClaudeContext {
            window: options.window,
            side_files: claude::SideFiles::new(
                paths
                    .state_root()
                    .join("plugins/@hypaware/claude/session-context.jsonl"),
                history.sidecars,
            ),
            git: git::GitLookup::from_env(),
            policy,
            desktop_configured: config.enabled_plugin("@hypaware/claude-desktop").is_some(),
        })),
        "codex" => Parser::Codex(Box::new(codex::CodexContext {
            window: options.window,
            policy,
        })),
        other => {
            report.status = ProviderStatus::Failed;
            report.error = Some(format!("provider {other} has no importer in this build"));
            return report;
        }
    };
    report.bytes_seen = files.iter().map(|file| file.size).sum();
    report.files_seen = files.len() as u64;
    let plan = if options.dry_run {
        ReadPlan::everything(files)
    } else {
        plan_reads(&paths.cache_db(), files, &options.window)
    };
    report.files_unchanged = plan.unchanged;
    if plan.tasks.is_empty() && plan.cache_ready {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            report.status = ProviderStatus::Interrupted;
        }
        return report;
    }
    let files = plan.tasks;
    let progress = Progress::default();
    let job = PipelineJob {
        provider: provider.name,
        files: &files,
        parser,
        cache_db: (!options.dry_run).then(|| paths.cache_db()),
        window: options.window,
        stop,
        progress: &progress,
    };
    let outcome = if options.show_progress && !files.is_empty() {
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::scope(|scope| {
            let drawer = scope
                .spawn(|| progress::draw_until(&progress, provider.name, files.len(), &done_rx));
            let outcome = pipeline::run(job);
            drop(done_tx);
            let _ = drawer.join();
            outcome
        })
    } else {
        pipeline::run(job)
    };
    report.files_read = outcome.files_read;
    report.bytes_read = outcome.bytes_read;
    report.items_seen = outcome.items_seen;
    report.sessions_seen = outcome.sessions_seen;
    report.rows_written = outcome.rows_written;
    report.rows_skipped = outcome.rows_skipped;
    report.malformed_lines = outcome.malformed_lines;
    report.files_with_malformed_lines = outcome.files_with_malformed_lines;
    report.cache_set_aside = outcome.cache_set_aside;
    let tally = progress.tally();
    report.lines_outside_window = tally.lines_outside_window;
    report.files_outside_window = tally.files_outside_window;
    report.sessions_ignored = tally.sessions_ignored;
    report.files_ignored = tally.files_ignored;
    if let Some(error) = outcome.error {
        report.status = ProviderStatus::Failed;
        report.error = Some(error);
    } else if stop.load(std::sync::atomic::Ordering::SeqCst) {
        report.status = ProviderStatus::Interrupted;
    }
    report
}

/// What a provider's walk found.
struct History {
    roots: Vec<RootReport>,
    files: Vec<HistoryFile>,
    /// Claude's agent sidecars (none for Codex).
    sidecars: Vec<PathBuf>,
}

/// Walk the provider's root. A root that is missing gives no files; the
/// report says where it looked, so "0 rows" is never a mystery.
fn find_history(provider: Provider, home: Option<&Path>) -> History {
    let (root, from_env) = match provider.name {
        "claude" => (claude::projects_root(home), env_set("CLAUDE_CONFIG_DIR")),
        "codex" => (codex::sessions_root(home), env_set("CODEX_HOME")),
        _ => (None, None),
    };
    let Some(root) = root else {
        return History {
            roots: Vec::new(),
            files: Vec::new(),
            sidecars: Vec::new(),
        };
    };
    let (files, sidecars) = match provider.name {
        "claude" => claude::transcripts(&root),
        _ => (codex::rollouts(&root), Vec::new()),
    };
    History {
        roots: vec![RootReport {
            exists: root.is_dir(),
            path: root,
            from_env,
        }],
        files,
        sidecars,
    }
}

/// `Some(name)` when the variable is set and not empty.
fn env_set(name: &'static str) -> Option<&'static str> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(|_| name)
}

/// What an import would do, found without writing anything: the roots,
/// the files and bytes found, and how many of them the ledger says are
/// unchanged under the window (so would not be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderPlan {
    pub roots: Vec<RootReport>,
    pub window: WindowReport,
    pub files: u64,
    pub bytes: u64,
    pub files_unchanged: u64,
    pub files_to_read: u64,
    pub bytes_to_read: u64,
}

/// Plan one provider's import: walk and consult the ledger read-only.
pub fn plan_provider(
    paths: &Paths,
    provider: Provider,
    window: &Window,
    source: WindowSource,
) -> ProviderPlan {
    let history = find_history(provider, user_home().as_deref());
    let files = history.files.len() as u64;
    let bytes = history.files.iter().map(|file| file.size).sum();
    let plan = plan_reads(&paths.cache_db(), history.files, window);
    ProviderPlan {
        roots: history.roots,
        window: WindowReport::new(window, source),
        files,
        bytes,
        files_unchanged: plan.unchanged,
        files_to_read: plan.tasks.len() as u64,
        // A grown file continued from its point reads less than its size.
        bytes_to_read: plan.tasks.iter().map(|task| task.file.size).sum(),
    }
}

/// Which files a run reads, and how.
struct ReadPlan {
    tasks: Vec<FileTask>,
    /// Files skipped as unchanged.
    unchanged: u64,
    /// The cache and its generation exist: a run with nothing to read need
    /// not open it (a missing cache is still created, as every run did).
    cache_ready: bool,
}

impl ReadPlan {
    /// Read every file whole (a dry run, or no readable ledger).
    fn everything(files: Vec<HistoryFile>) -> ReadPlan {
        ReadPlan {
            tasks: files
                .into_iter()
                .map(|file| FileTask { file, resume: None })
                .collect(),
            unchanged: 0,
            cache_ready: false,
        }
    }
}

/// Plan each file from the `imported_files` ledger: skip one imported
/// unchanged (same size and mtime) under a window that covers this one;
/// continue one that grew from where its last import stopped, when that
/// import left a state; read the rest whole (new, shrunk or rewritten in
/// place, or the window widened).
fn plan_reads(db: &Path, files: Vec<HistoryFile>, window: &Window) -> ReadPlan {
    let Some(ledger) = Ledger::read(db) else {
        return ReadPlan::everything(files);
    };
    let resume_allowed = !resume::disabled_by_env();
    let mut unchanged = 0;
    let mut tasks = Vec::with_capacity(files.len());
    for file in files {
        let path = file.path.display().to_string();
        let record = ledger.get(&path);
        if record.is_some_and(|record| {
            record.covers(file.size, file.mtime_ns, window.since_ms, window.until_ms)
        }) {
            unchanged += 1;
            continue;
        }
        let grew = record.is_some_and(|record| file.size > record.size);
        let resume = (grew && resume_allowed)
            .then(|| ledger.stored_resume(&path))
            .flatten();
        tasks.push(FileTask { file, resume });
    }
    ReadPlan {
        tasks,
        unchanged,
        cache_ready: crate::cache::read_generation(db).is_some(),
    }
}
