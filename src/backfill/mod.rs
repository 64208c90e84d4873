//! `hyp backfill`: read Claude Code and Codex history and expand it into
//! `ai_gateway_messages` rows for the cache.
//!
//! Map: `claude` and `codex` find and project history into [`rows::Item`]s;
//! `rows` expands items into cache rows; `pipeline` runs one provider on
//! parse threads plus the single cache writer; this file runs one provider
//! end to end (gates, skip ledger, counters) and defines the report the CLI
//! prints. The CLI (`cli::backfill`) owns argv, provider selection and
//! output.

use std::path::PathBuf;
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
pub mod interrupt;
pub mod json_skim;
pub mod lines;
pub mod pipeline;
pub mod progress;
pub mod rows;
pub mod usage_policy;
pub mod walk;
pub mod window;

use pipeline::{Parser, PipelineJob};
use progress::Progress;
use usage_policy::UsagePolicy;
use walk::HistoryFile;
use window::Window;

/// The one dataset both providers write.
pub const DATASET: &str = "ai_gateway_messages";

/// Default retention window when neither flag nor config sets one.
pub const DEFAULT_RETENTION_DAYS: f64 = 90.0;

/// What a provider found in one file.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub items: Vec<rows::Item>,
    /// Lines that were not JSON (garbage, truncated, invalid UTF-8).
    pub malformed_lines: u64,
    /// Sessions left out by the usage-policy or entrypoint gate.
    pub gated_sessions: usize,
    /// Every line was read (not interrupted, no read error).
    pub complete: bool,
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
/// order).
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
    /// For the stderr summary only.
    #[serde(skip)]
    pub malformed_lines: u64,
    #[serde(skip)]
    pub files_with_malformed_lines: u64,
    #[serde(skip)]
    pub files_unchanged: usize,
    /// For the stderr summary only: where a damaged cache was moved.
    #[serde(skip)]
    pub cache_set_aside: Option<std::path::PathBuf>,
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
            malformed_lines: 0,
            files_with_malformed_lines: 0,
            files_unchanged: 0,
            cache_set_aside: None,
        }
    }
}

/// Options shared by every provider of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub window: Window,
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
    let mut report = ProviderReport::empty(provider, ProviderStatus::Ok);
    let policy_path = paths.state_root().join("usage-policy/local-only.json");
    let policy = match UsagePolicy::load(&policy_path) {
        Ok(policy) => policy,
        Err(err) => {
            report.status = ProviderStatus::Failed;
            report.error = Some(err.to_string());
            return report;
        }
    };
    let home = user_home();
    let (files, parser) = match provider.name {
        "claude" => {
            let root = claude::projects_root(home.as_deref());
            let files = root.as_deref().map(claude::transcripts).unwrap_or_default();
            let context = claude::ClaudeContext {
                window: options.window,
                records: claude::session_records(
                    &paths
                        .state_root()
                        .join("plugins/@hypaware/claude/session-context.jsonl"),
                ),
                agent_meta: root.as_deref().map(claude::agent_meta).unwrap_or_default(),
                git: git::GitLookup::from_env(),
                policy,
                desktop_configured: config.enabled_plugin("@hypaware/claude-desktop").is_some(),
            };
            (files, Parser::Claude(Box::new(context)))
        }
        "codex" => {
            let root = codex::sessions_root(home.as_deref());
            let files = root.as_deref().map(codex::rollouts).unwrap_or_default();
            let context = codex::CodexContext {
                window: options.window,
                policy,
            };
            (files, Parser::Codex(Box::new(context)))
        }
        other => {
            report.status = ProviderStatus::Failed;
            report.error = Some(format!("provider {other} has no importer in this build"));
            return report;
        }
    };
    let (files, unchanged) = if options.dry_run {
        (files, 0)
    } else {
        skip_unchanged(paths, files, &options.window)
    };
    report.files_unchanged = unchanged;
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
    report.items_seen = outcome.items_seen;
    report.sessions_seen = outcome.sessions_seen;
    report.rows_written = outcome.rows_written;
    report.rows_skipped = outcome.rows_skipped;
    report.malformed_lines = outcome.malformed_lines;
    report.files_with_malformed_lines = outcome.files_with_malformed_lines;
    report.cache_set_aside = outcome.cache_set_aside;
    if let Some(error) = outcome.error {
        report.status = ProviderStatus::Failed;
        report.error = Some(error);
    } else if stop.load(std::sync::atomic::Ordering::SeqCst) {
        report.status = ProviderStatus::Interrupted;
    }
    report
}

/// Drop files the `imported_files` ledger says were fully imported, unchanged,
/// under a window that covers this one. Returns (files to read, skipped).
fn skip_unchanged(
    paths: &Paths,
    files: Vec<HistoryFile>,
    window: &Window,
) -> (Vec<HistoryFile>, usize) {
    let ledger = crate::cache::writer::read_imported_files(&paths.cache_db());
    if ledger.is_empty() {
        return (files, 0);
    }
    let before = files.len();
    let kept: Vec<HistoryFile> = files
        .into_iter()
        .filter(|file| {
            ledger
                .get(&file.path.display().to_string())
                .is_none_or(|record| {
                    !record.covers(file.size, file.mtime_ns, window.since_ms, window.until_ms)
                })
        })
        .collect();
    let skipped = before - kept.len();
    (kept, skipped)
}
