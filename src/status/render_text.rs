//! The text form of the status report, in the reference's section order.
//! Every value that came from a file is sanitised here, and only here.

use std::fmt::Write;

use serde_json::Value;

use crate::sanitize::{error_text, label};
use crate::status::report::{Diagnostic, Overall, Provenance, Severity, StatusReport};
use crate::units;

/// Render `report` for people.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    header(&mut out, report);
    plugins_and_sinks(&mut out, report);
    cache(&mut out, report);
    layers(&mut out, report);
    remote_config(&mut out, report);
    client_actions(&mut out, report);
    capture(&mut out, report);
    diagnostics(&mut out, &report.diagnostics);
    out
}

fn header(out: &mut String, report: &StatusReport) {
    let overall = match report.overall {
        Overall::Healthy => "healthy",
        Overall::Degraded => "degraded",
    };
    let config_state = match (report.config.exists, report.config.valid) {
        (false, _) => "missing",
        (true, true) if !report.config.local_loaded => "absent; the central layer applies",
        (true, true) => "ok",
        (true, false) => "invalid",
    };
    let _ = writeln!(out, "hyp");
    let _ = writeln!(out, "  overall:  {overall}");
    let _ = writeln!(
        out,
        "  config:   {} ({config_state})",
        label(&report.config.path)
    );
    if let Some(layers) = &report.config_layers {
        let _ = writeln!(
            out,
            "  joined:   {} ({})",
            label(&layers.central_path),
            label(&layers.central_source)
        );
    }
    let daemon = &report.daemon;
    let mut bits = vec![
        if daemon.installed {
            "installed"
        } else {
            "not installed"
        }
        .to_string(),
        if daemon.running {
            "running"
        } else {
            "not running"
        }
        .to_string(),
        format!("state={}", label(&daemon.state)),
    ];
    if let Some(last_state) = &daemon.last_state {
        bits.push(format!("last_state={}", label(last_state)));
    }
    if let Some(pid) = daemon.pid {
        bits.push(format!("pid={pid}"));
    }
    if let Some(mode) = &daemon.mode {
        bits.push(format!("mode={}", label(mode)));
    }
    if let Some(error) = &daemon.error {
        bits.push(format!("error={}", error_text(error)));
    }
    let _ = writeln!(out, "  daemon:   {}", bits.join(", "));
}

fn tag(provenance: Option<Provenance>) -> &'static str {
    match provenance {
        None => "",
        Some(Provenance::Central) => "  [central · locked]",
        Some(Provenance::Local) => "  [local]",
    }
}

fn plugins_and_sinks(out: &mut String, report: &StatusReport) {
    let _ = writeln!(out, "  active plugins:");
    if report.active_plugins.is_empty() {
        let _ = writeln!(out, "    (none - no config or no plugins selected)");
    }
    for plugin in &report.active_plugins {
        let inert = if plugin.state == "inert" {
            "  (inert: not available on this host)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    - {}{inert}{}",
            label(&plugin.name),
            tag(plugin.provenance)
        );
    }
    let _ = writeln!(out, "  sinks:");
    if report.sinks.is_empty() {
        let _ = writeln!(out, "    (none - keeping captured data local only)");
    }
    for sink in &report.sinks {
        let _ = writeln!(
            out,
            "    - {}  ({}, {}){}",
            label(&sink.instance),
            label(&sink.plugin),
            sink.kind,
            tag(sink.provenance)
        );
        if let Some(forward) = &sink.forward {
            let _ = writeln!(out, "      {}", forward_line(&sink.instance, forward));
        }
    }
}

/// One line a person reads at a glance: "central: 0 rows pending, last
/// export 12 s ago", or why rows are waiting and when the next try is.
fn forward_line(instance: &str, forward: &crate::sink::SinkOverview) -> String {
    use crate::sink::SinkState;
    let now = jiff::Timestamp::now();
    let ago = |at: &Option<String>| {
        at.as_deref().and_then(crate::time::parse_iso).map(|at| {
            let secs = now.as_second().saturating_sub(at.as_second()).max(0) as u64;
            format!(
                "{} ago",
                units::duration(std::time::Duration::from_secs(secs))
            )
        })
    };
    let clock = |at: &Option<String>| {
        at.as_deref()
            .and_then(crate::time::parse_iso)
            .map(|at| {
                at.to_zoned_datetime(jiff::tz::TimeZone::system())
                    .strftime("%H:%M")
                    .to_string()
            })
            .unwrap_or_else(|| "?".into())
    };
    let mut line = format!(
        "{}: {} pending",
        label(instance),
        units::counted(forward.pending_rows, "row", "rows")
    );
    match forward.state {
        SinkState::NotJoined => line.push_str(", not joined: nothing is sent"),
        SinkState::Held => {
            line.push_str(", held by the first-sync hold ('hyp sync' on a terminal releases it)")
        }
        SinkState::Exporting => line.push_str(", exporting now"),
        SinkState::Failing | SinkState::Backoff => {
            let cause = forward
                .last_error
                .as_ref()
                .map_or_else(String::new, |error| {
                    format!(" ({})", error_text(&error.message))
                });
            line.push_str(&format!(
                ", failing since {}{cause}",
                clock(&forward.failing_since)
            ));
            if forward.state == SinkState::Backoff {
                line.push_str(&format!(", next try {}", clock(&forward.next_attempt_at)));
            }
        }
        SinkState::Idle => match ago(&forward.last_success_at) {
            Some(ago) => line.push_str(&format!(", last export {ago}")),
            None => line.push_str(", no export yet"),
        },
    }
    if forward.rows_quarantined > 0 {
        line.push_str(&format!(
            "; {} quarantined",
            units::counted(forward.rows_quarantined, "row", "rows")
        ));
    }
    line.push_str(&format!(
        "; {} sent in all",
        units::count(forward.rows_sent_total)
    ));
    line
}

fn cache(out: &mut String, report: &StatusReport) {
    let cache = &report.cache;
    let retention = match cache.retention_source {
        "default" => format!("{} days (default)", cache.retention_days),
        _ => format!("{} days", cache.retention_days),
    };
    let _ = writeln!(out, "  cache:           {}", label(&cache.dir));
    let _ = writeln!(out, "  cache rows:      {}", units::count(cache.rows));
    let _ = writeln!(out, "  cache retention: {retention}");
    let _ = writeln!(out, "  cache size:      {}", units::bytes(cache.size_bytes));
    if let Some(error) = &cache.error {
        let _ = writeln!(out, "  cache error:     {}", error_text(error));
    }
    for build in &cache.first_imports {
        let size = units::bytes(build.bytes);
        let line = if build.running {
            format!(
                "running (pid {}, {size} written so far; the rows appear when it is complete)",
                build.pid
            )
        } else {
            format!(
                "left by an interrupted import (pid {}, {size}); the next 'hyp backfill' removes it",
                build.pid
            )
        };
        let _ = writeln!(out, "  first import:    {line}");
    }
}

fn layers(out: &mut String, report: &StatusReport) {
    let Some(layers) = &report.config_layers else {
        return;
    };
    if layers.local_not_applied.is_empty() && !layers.central_query_ignored {
        return;
    }
    let _ = writeln!(out, "  local config (not applied):");
    for dropped in &layers.local_not_applied {
        let text = |key: &str| dropped.get(key).and_then(Value::as_str).unwrap_or_default();
        let detail = match text("detail") {
            "" => String::new(),
            detail => format!(": {}", detail.replace('_', " ")),
        };
        let _ = writeln!(
            out,
            "    - {}.{}  ({}{})",
            label(text("section")),
            label(text("key")),
            text("reason").replace('_', " "),
            label(&detail)
        );
    }
    if layers.central_query_ignored {
        let _ = writeln!(
            out,
            "    - central query block ignored (query is local-only)"
        );
    }
}

fn remote_config(out: &mut String, report: &StatusReport) {
    let remote = &report.remote_config;
    if remote.running_etag.is_none()
        && remote.probation.is_none()
        && remote.last_rollback.is_none()
        && remote.bad_etag.is_none()
        && remote.last_poll_at.is_none()
    {
        return;
    }
    let text = |value: &Value, key: &str| -> String {
        label(value.get(key).and_then(Value::as_str).unwrap_or("?"))
    };
    let _ = writeln!(out, "  remote config:");
    if let Some(etag) = &remote.running_etag {
        let _ = writeln!(out, "    running etag:  {}", label(etag));
    }
    if let Some(probation) = &remote.probation {
        let left = probation
            .remaining_seconds
            .map(|seconds| {
                let left = std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
                format!(" ({} left)", units::duration(left))
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    probation:     {} until {}{left}",
            label(probation.etag.as_deref().unwrap_or("?")),
            label(probation.until.as_deref().unwrap_or("?"))
        );
    }
    if let Some(rollback) = &remote.last_rollback {
        let _ = writeln!(
            out,
            "    last rollback: {} at {} ({})",
            text(rollback, "etag"),
            text(rollback, "at"),
            text(rollback, "reason")
        );
    }
    if let Some(bad) = &remote.bad_etag {
        let _ = writeln!(
            out,
            "    bad etag:      {} ({})",
            text(bad, "etag"),
            text(bad, "reason")
        );
    }
    if let Some(at) = &remote.last_poll_at {
        let next = remote
            .next_poll_at
            .as_deref()
            .map(|next| format!(", next {}", label(next)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    last poll:     {} at {}{next}",
            label(remote.last_poll_result.as_deref().unwrap_or("?")),
            label(at)
        );
    }
    if let Some(error) = &remote.last_error {
        let status = error
            .http_status
            .map(|status| format!("HTTP {status}, "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    last failure:  {} ({status}{}) at {}",
            error_text(&error.message),
            label(&error.kind),
            label(&error.at)
        );
    }
}

fn client_actions(out: &mut String, report: &StatusReport) {
    let Some(rows) = report
        .client_actions
        .as_ref()
        .filter(|rows| !rows.is_empty())
    else {
        return;
    };
    let _ = writeln!(out, "  client actions:");
    for row in rows {
        let _ = writeln!(out, "    - {}", crate::actions::rows::render_text(row));
    }
}

fn capture(out: &mut String, report: &StatusReport) {
    let Some(rows) = &report.capture else {
        return;
    };
    let _ = writeln!(out, "  capture:");
    let now = jiff::Timestamp::now();
    let span = |at: &Option<String>, sign: i64| {
        let at = at.as_deref().and_then(crate::time::parse_iso)?;
        let secs = ((at.as_second() - now.as_second()) * sign).max(0) as u64;
        Some(units::duration(std::time::Duration::from_secs(secs)))
    };
    let ago = |at: &Option<String>| span(at, -1).map(|span| format!("{span} ago"));
    let until = |at: &Option<String>| span(at, 1).map(|span| format!("in {span}"));
    for (provider, row) in rows {
        let mut line = format!("    - {}: ", label(provider));
        if !row.enabled {
            line.push_str("off (config.capture.enabled is false)");
            let _ = writeln!(out, "{line}");
            continue;
        }
        line.push_str(&format!(
            "every {}",
            units::duration(std::time::Duration::from_secs(row.interval_seconds))
        ));
        if let Some(waiting) = &row.waiting_for {
            line.push_str(&format!(", waiting: {}", error_text(waiting)));
        }
        if let Some(ago) = ago(&row.last_sweep_at) {
            line.push_str(&format!(
                ", last sweep {ago} ({})",
                units::counted(row.last_sweep_rows.unwrap_or(0), "row", "rows")
            ));
        }
        match until(&row.next_sweep_at) {
            Some(next) => line.push_str(&format!(", next {next}")),
            None => line.push_str(", no sweep until the daemon runs"),
        }
        let _ = writeln!(out, "{line}");
        if let Some(error) = &row.last_error {
            let _ = writeln!(out, "      last error: {}", error_text(&error.message));
        }
    }
}

fn diagnostics(out: &mut String, diagnostics: &[Diagnostic]) {
    if diagnostics.is_empty() {
        return;
    }
    let _ = writeln!(out, "  diagnostics:");
    for diagnostic in diagnostics {
        let severity = match diagnostic.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARN ",
        };
        let _ = writeln!(
            out,
            "    [{severity}] {}: {}",
            diagnostic.kind,
            error_text(&diagnostic.message)
        );
        for repair in &diagnostic.repair {
            let _ = writeln!(out, "        repair: {}", label(repair));
        }
    }
}
