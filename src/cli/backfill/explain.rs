//! `hyp backfill` in human words: where each provider looked and whether
//! the history was there, the window it applied and what fell outside it,
//! what was skipped as unchanged or ignored, and what was written, with
//! sizes and durations in human units. The import's words go to stderr
//! (stdout keeps the reference's report); the plan's are its stdout.

use std::path::Path;
use std::time::Duration;

use crate::backfill::window::WindowSource;
use crate::backfill::{ProviderPlan, ProviderReport, ProviderStatus, RootReport, WindowReport};
use crate::cli::output;
use crate::units;

/// What the history is called and which variable moves it.
fn history_of(provider: &str) -> (&'static str, &'static str) {
    match provider {
        "codex" => ("Codex", "CODEX_HOME"),
        _ => ("Claude Code", "CLAUDE_CONFIG_DIR"),
    }
}

/// One provider's import, on stderr.
pub fn provider(report: &ProviderReport, retention_days: f64, dry_run: bool) {
    let name = &report.provider;
    for line in missing_roots(name, &report.roots) {
        output::note(&line);
    }
    for root in report.roots.iter().filter(|root| root.exists) {
        output::stderr_plain(&format!(
            "{name}: searched {}: {} ({})",
            tilde(&root.path),
            units::counted(report.files_seen, "file", "files"),
            units::bytes(report.bytes_seen)
        ));
    }
    output::stderr_plain(&format!(
        "{name}: window: {}",
        window(&report.window, retention_days)
    ));
    if report.lines_outside_window > 0 {
        output::stderr_plain(&format!(
            "{name}: {} fell outside the window and {} not imported{}{}",
            units::counted(report.lines_outside_window, "line", "lines"),
            if report.lines_outside_window == 1 {
                "was"
            } else {
                "were"
            },
            entirely(report.files_outside_window),
            widen_hint(report.window.source)
        ));
    }
    if report.files_unchanged > 0 {
        output::stderr_plain(&format!(
            "{name}: {} unchanged since the last import, not read again",
            units::counted(report.files_unchanged, "file", "files")
        ));
    }
    if report.sessions_ignored > 0 {
        output::stderr_plain(&format!(
            "{name}: {} ignored (.hypignore, local-only.json, or a client whose plugin is not enabled){}",
            units::counted(report.sessions_ignored, "session", "sessions"),
            entirely(report.files_ignored)
        ));
    }
    output::stderr_plain(&format!("{name}: {}", outcome(report, dry_run)));
}

/// `, 3 files entirely` when some files gave nothing at all.
fn entirely(files: u64) -> String {
    if files == 0 {
        String::new()
    } else {
        format!(", {} entirely", units::counted(files, "file", "files"))
    }
}

/// A default or configured window silently hides older history: say how
/// to bring it in.
fn widen_hint(source: WindowSource) -> &'static str {
    match source {
        WindowSource::Default | WindowSource::Config => {
            "; --retention-days 0 (everything) or --since <date> imports older lines"
        }
        WindowSource::Since | WindowSource::RetentionDays => "",
    }
}

/// The last line: rows written and skipped, files and bytes read, time.
fn outcome(report: &ProviderReport, dry_run: bool) -> String {
    let read = format!(
        "{} read ({}) in {}",
        units::counted(report.files_read, "file", "files"),
        units::bytes(report.bytes_read),
        units::elapsed(Duration::from_millis(report.duration_ms))
    );
    let rows = match report.status {
        ProviderStatus::Failed => "failed".to_string(),
        ProviderStatus::Interrupted => format!(
            "interrupted after {}",
            units::counted(report.rows_written, "row", "rows")
        ),
        ProviderStatus::Ok if dry_run => format!(
            "dry run: {} found, nothing written",
            units::counted(report.sessions_seen, "session", "sessions")
        ),
        ProviderStatus::Ok if report.rows_written == 0 && report.rows_skipped == 0 => {
            "no new rows".to_string()
        }
        ProviderStatus::Ok => format!(
            "{} written, {} already in the cache",
            units::counted(report.rows_written, "row", "rows"),
            units::count(report.rows_skipped)
        ),
    };
    format!("{rows}; {read}")
}

/// A note per root that is not there (or no root at all: no home).
fn missing_roots(provider: &str, roots: &[RootReport]) -> Vec<String> {
    let (what, variable) = history_of(provider);
    if roots.is_empty() {
        return vec![format!(
            "no {what} history: HOME is not set; set {variable} to where it lives"
        )];
    }
    roots
        .iter()
        .filter(|root| !root.exists)
        .map(|root| match root.from_env {
            Some(variable) => format!(
                "no {what} history at {} (from {variable})",
                tilde(&root.path)
            ),
            None => format!(
                "no {what} history at {}; set {variable} if it lives elsewhere",
                tilde(&root.path)
            ),
        })
        .collect()
}

/// The plan of one provider, as lines under its heading.
pub fn plan(provider: &str, plan: &ProviderPlan, retention_days: f64) -> String {
    let mut text = String::new();
    for line in missing_roots(provider, &plan.roots) {
        text.push_str(&format!("    {line}\n"));
    }
    for root in plan.roots.iter().filter(|root| root.exists) {
        text.push_str(&format!("    root: {}\n", tilde(&root.path)));
    }
    text.push_str(&format!(
        "    files: {} ({}); {} unchanged since the last import, {} to read ({})\n",
        units::count(plan.files),
        units::bytes(plan.bytes),
        units::count(plan.files_unchanged),
        units::count(plan.files_to_read),
        units::bytes(plan.bytes_to_read)
    ));
    text.push_str(&format!(
        "    window: {}\n",
        window(&plan.window, retention_days)
    ));
    text
}

/// `lines since 2026-09-05 14:03 UTC (the last 90 days, the default)`.
fn window(window: &WindowReport, retention_days: f64) -> String {
    let days = super::format_days(retention_days);
    let since = match (&window.since, window.source) {
        (None, _) => "every line".to_string(),
        (Some(since), WindowSource::Since) => format!("lines since {} (--since)", moment(since)),
        (Some(since), WindowSource::RetentionDays) => {
            format!("lines since {} (--retention-days {days})", moment(since))
        }
        (Some(since), WindowSource::Config) => format!(
            "lines since {} (the last {days} days, from query.cache.retention.default_days)",
            moment(since)
        ),
        (Some(since), WindowSource::Default) => format!(
            "lines since {} (the last {days} days, the default)",
            moment(since)
        ),
    };
    match &window.until {
        Some(until) => format!("{since}, until {}", moment(until)),
        None => since,
    }
}

/// `2026-09-05T14:03:07.123Z` as `2026-09-05 14:03 UTC`.
fn moment(iso: &str) -> String {
    match (iso.get(..10), iso.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => iso.to_string(),
    }
}

/// A path under `$HOME` as `~/...`.
fn tilde(path: &Path) -> String {
    let home = std::env::var_os("HOME").filter(|home| !home.is_empty());
    match home.and_then(|home| path.strip_prefix(home).ok().map(Path::to_path_buf)) {
        Some(rest) if rest.as_os_str().is_empty() => "~".to_string(),
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::window::Window;

    #[test]
    fn windows_say_where_their_bound_came_from() {
        let since = Window {
            since_ms: Some(0),
            until_ms: None,
        };
        let report = |source| WindowReport::new(&since, source);
        assert_eq!(
            window(&report(WindowSource::Default), 90.0),
            "lines since 1970-01-01 00:00 UTC (the last 90 days, the default)"
        );
        assert_eq!(
            window(&report(WindowSource::RetentionDays), 1.5),
            "lines since 1970-01-01 00:00 UTC (--retention-days 1.5)"
        );
        assert_eq!(
            window(
                &WindowReport::new(&Window::default(), WindowSource::RetentionDays),
                0.0
            ),
            "every line"
        );
        let bounded = Window {
            since_ms: Some(0),
            until_ms: Some(60_000),
        };
        assert_eq!(
            window(&WindowReport::new(&bounded, WindowSource::Since), 0.0),
            "lines since 1970-01-01 00:00 UTC (--since), until 1970-01-01 00:01 UTC"
        );
    }
}
