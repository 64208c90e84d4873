//! The text form of the status report, in the reference's section order.
//! Every value that came from a file is sanitised here, and only here.

use std::fmt::Write;

use serde_json::Value;

use crate::sanitize::{error_text, label};
use crate::status::report::{Diagnostic, Overall, Provenance, Severity, StatusReport};

/// Render `report` for people.
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    header(&mut out, report);
    plugins_and_sinks(&mut out, report);
    cache(&mut out, report);
    layers(&mut out, report);
    remote_config(&mut out, report);
    client_actions(&mut out, report);
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
    }
}

fn cache(out: &mut String, report: &StatusReport) {
    let cache = &report.cache;
    let retention = match cache.retention_source {
        "default" => format!("{} days (default)", cache.retention_days),
        _ => format!("{} days", cache.retention_days),
    };
    let _ = writeln!(out, "  cache:           {}", label(&cache.dir));
    let _ = writeln!(out, "  cache rows:      {}", cache.rows);
    let _ = writeln!(out, "  cache retention: {retention}");
    let _ = writeln!(out, "  cache size:      {} bytes", cache.size_bytes);
    if let Some(error) = &cache.error {
        let _ = writeln!(out, "  cache error:     {}", error_text(error));
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
            .map(|seconds| format!(" ({seconds} s left)"))
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
