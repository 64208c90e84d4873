//! Gather the status report from disk. Every probe is best-effort: a file
//! that is missing, empty, truncated or hostile becomes a field or a
//! diagnostic, never an error. **Invariant:** nothing here writes, creates a
//! file or directory, polls the server, or runs a reconcile pass.

use std::fs;
use std::path::Path;

use jiff::Timestamp;
use serde_json::Value;

use crate::actions::rows::ActionRow;
use crate::config::{self, EffectiveConfig, catalog};
use crate::control::engine;
use crate::paths::Paths;
use crate::statefile::{self, StateRead};
use crate::status::report::{
    ActivePlugin, CacheSummary, CaptureRow, ConfigLayers, ConfigSummary, DaemonSummary, Diagnostic,
    Overall, ProbationView, Provenance, RemoteConfig, SCHEMA_VERSION, SinkRow, StatusReport,
};

/// The retention the cache uses when config names none.
const DEFAULT_RETENTION_DAYS: f64 = 90.0;

/// Build the whole report.
pub fn collect(paths: &Paths) -> StatusReport {
    let effective = config::load_effective(paths);
    let mut diagnostics = Vec::new();
    let config = config_summary(paths, &effective, &mut diagnostics);
    let daemon = daemon_summary(paths, &effective, &mut diagnostics);
    let remote_config = remote_config(paths, &mut diagnostics);
    usage_policy(paths, &effective, &mut diagnostics);
    let report = StatusReport {
        schema_version: SCHEMA_VERSION,
        overall: Overall::Healthy,
        config,
        active_plugins: active_plugins(&effective),
        daemon,
        sinks: sink_rows(paths, &effective, &mut diagnostics),
        cache: cache_summary(paths, &effective, &mut diagnostics),
        config_layers: config_layers(&effective),
        remote_config,
        client_actions: client_actions(paths, &effective, &mut diagnostics),
        capture: capture(paths, &effective, &mut diagnostics),
        diagnostics,
    };
    StatusReport {
        overall: overall(&report.diagnostics),
        ..report
    }
}

/// `degraded` exactly when a diagnostic says so; nothing else counts.
fn overall(diagnostics: &[Diagnostic]) -> Overall {
    if diagnostics.iter().any(Diagnostic::degrades) {
        Overall::Degraded
    } else {
        Overall::Healthy
    }
}

fn config_summary(
    paths: &Paths,
    effective: &EffectiveConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> ConfigSummary {
    let local_path = paths.local_config().path.display().to_string();
    let local = effective.layers.local.as_ref();
    let local_error = local.and_then(|layer| layer.error()).filter(|_| {
        // A missing local file is normal on a joined host.
        !local.is_some_and(|layer| layer.is_missing())
    });
    if let Some(central) = &effective.layers.central
        && let Some(error) = central.error()
    {
        diagnostics.push(Diagnostic::error(
            "config_central_unreadable",
            format!(
                "central config layer {} cannot be loaded ({error}) - the daemon runs without it and does not poll",
                central.path.display()
            ),
            &["hyp join <url> <token>   (re-join to reset the central layer)"],
        ));
    }
    match (effective.has_central_layer, local_error) {
        (true, Some(error)) => diagnostics.push(Diagnostic::warning(
            "config_local_unreadable",
            format!(
                "local config layer is unreadable ({error}) - running on the central layer only"
            ),
            &[&format!("hyp config validate --path {local_path}")],
        )),
        (false, Some(error)) => diagnostics.push(Diagnostic::error(
            "config_unreadable",
            error.to_string(),
            &[&format!("hyp config validate --path {local_path}")],
        )),
        _ => {}
    }
    if !effective.has_any_layer() && local_error.is_none() {
        diagnostics.push(Diagnostic::warning(
            "config_missing",
            format!("no config found - neither a central layer nor {local_path}"),
            &["hyp join <url> <token>", &format!("write {local_path}")],
        ));
    }
    let errors = if effective.has_any_layer() {
        config::validate::full_errors(&effective.document)
    } else {
        Vec::new()
    };
    for error in &errors {
        diagnostics.push(Diagnostic {
            pointer: Some(error.pointer.clone()),
            ..Diagnostic::error(
                "config_invalid",
                error.to_string(),
                &[&format!("hyp config validate --path {local_path}")],
            )
        });
    }
    ConfigSummary {
        path: local_path,
        exists: effective.has_any_layer(),
        valid: effective.has_any_layer() && errors.is_empty(),
        joined: effective.has_central_layer,
        local_loaded: effective.layers.local_document().is_some(),
    }
}

fn provenance(joined: bool, is_central: bool) -> Option<Provenance> {
    match (joined, is_central) {
        (false, _) => None,
        (true, true) => Some(Provenance::Central),
        (true, false) => Some(Provenance::Local),
    }
}

fn active_plugins(effective: &EffectiveConfig) -> Vec<ActivePlugin> {
    let central = effective.central_plugin_names();
    effective
        .plugins
        .iter()
        .filter(|entry| entry.enabled)
        .map(|entry| ActivePlugin {
            name: entry.name.clone(),
            state: if catalog::is_inert(&entry.name) {
                "inert"
            } else {
                "active"
            },
            provenance: provenance(
                effective.has_central_layer,
                central.contains(&entry.name.as_str()),
            ),
        })
        .collect()
}

fn sink_rows(
    paths: &Paths,
    effective: &EffectiveConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<SinkRow> {
    let central = effective.central_sink_names();
    let Some(sinks) = effective.document.get("sinks").and_then(Value::as_object) else {
        return Vec::new();
    };
    let now = Timestamp::now();
    sinks
        .iter()
        .map(|(instance, sink)| {
            let text = |key: &str| sink.get(key).and_then(Value::as_str).map(str::to_string);
            let (plugin, kind) = match text("plugin") {
                Some(plugin) => (plugin, "request"),
                None => (text("writer").unwrap_or_default(), "blob"),
            };
            let forward = (plugin == catalog::CENTRAL_PLUGIN).then(|| {
                let overview =
                    crate::sink::overview(paths, instance, effective.has_central_layer, now);
                let forward_db =
                    crate::sink::store::ForwardStore::db_path(&paths.sink_instance_dir(instance));
                forward_diagnostics(instance, sink, &overview, &forward_db, now, diagnostics);
                overview
            });
            SinkRow {
                instance: instance.clone(),
                plugin,
                kind,
                provenance: provenance(
                    effective.has_central_layer,
                    central.contains(&instance.as_str()),
                ),
                forward,
            }
        })
        .collect()
}

/// On a joined host, a missing or unreadable `identity.json`: nothing can
/// be polled or sent until the daemon enrols again (it does, from the join
/// token, when there is one).
fn identity(paths: &Paths, effective: &EffectiveConfig, diagnostics: &mut Vec<Diagnostic>) {
    if !effective.has_central_layer {
        return;
    }
    let path = paths.identity();
    let (kind, problem) = match statefile::read::<crate::control::identity::Identity>(&path) {
        StateRead::Ok(_) => return,
        StateRead::Missing => (
            "identity_missing",
            format!(
                "this machine has no central credential yet ({} is missing)",
                path.display()
            ),
        ),
        other => (
            "identity_unreadable",
            other
                .problem(&path)
                .unwrap_or_else(|| format!("{} is not an identity", path.display())),
        ),
    };
    let has_token = engine::central_layer_document(paths)
        .and_then(|document| crate::control::sink::first_central_sink(&document).ok())
        .map(|sink| crate::control::sink::with_join_token(paths, sink))
        .is_some_and(|sink| sink.bootstrap_token.is_some());
    let diagnostic = if has_token {
        Diagnostic::error(
            kind,
            format!("{problem}: the daemon enrols again with the join token at its next poll"),
            &["hyp daemon start   (if no daemon runs)"],
        )
    } else {
        Diagnostic::error(
            kind,
            format!("{problem}, and no join token is left to enrol with"),
            &["hyp join <url> <token>"],
        )
    };
    diagnostics.push(diagnostic);
}

/// A damaged `installation.json`: the daemon replaces it with a new id at
/// its next start (a missing one is made by `hyp join` or the daemon).
fn installation(paths: &Paths, diagnostics: &mut Vec<Diagnostic>) {
    let Some(problem) = crate::control::membership::installation_problem(paths) else {
        return;
    };
    diagnostics.push(Diagnostic::warning(
        "installation_unreadable",
        format!(
            "{problem} - the daemon replaces it with a new installation id at its next start, which moves this host's poll and export times and batch ids"
        ),
        &[
            "hyp daemon restart",
            &format!(
                "remove {} first if it is not a file",
                paths.installation().display()
            ),
        ],
    ));
}

/// A usage-policy file that cannot be read stops every export (fail closed)
/// and, for the local-only list, every import; a damaged first-sync hold
/// reads as no hold.
fn usage_policy(paths: &Paths, effective: &EffectiveConfig, diagnostics: &mut Vec<Diagnostic>) {
    first_sync_hold(paths, diagnostics);
    if !effective.has_central_layer {
        let list = paths.local_only_list();
        if let Err(err) = crate::backfill::usage_policy::UsagePolicy::load(&list) {
            diagnostics.push(Diagnostic::error(
                "usage_policy_unreadable",
                format!("{err}, so 'hyp backfill' imports nothing until it is fixed: correct or remove it"),
                &[&format!("fix or remove {}, then 'hyp backfill'", list.display())],
            ));
        }
        return;
    }
    if let Err(err) = crate::sink::privacy::Privacy::load(paths) {
        diagnostics.push(Diagnostic::error(
            "usage_policy_unreadable",
            err.to_string(),
            &[&format!(
                "fix or remove {}, then 'hyp sync'",
                err.path.display()
            )],
        ));
    }
}

/// A first-sync hold file that exists but cannot be read holds nothing:
/// exports go on as if it were absent (as every reader takes it).
fn first_sync_hold(paths: &Paths, diagnostics: &mut Vec<Diagnostic>) {
    let path = paths.first_sync_hold();
    let problem = match statefile::read_value(&path) {
        StateRead::Ok(hold) if hold.get("deadline_ms").is_some_and(Value::is_i64) => None,
        StateRead::Ok(_) => Some(format!("{} has no integer deadline_ms", path.display())),
        other => other.problem(&path),
    };
    if let Some(problem) = problem {
        diagnostics.push(Diagnostic::warning(
            "first_sync_hold_unreadable",
            format!("{problem} - read as no hold: exports are not held"),
            &[&format!("remove {}", path.display())],
        ));
    }
}

/// What a person must know about a central sink's exports: refused rows,
/// rows stuck behind failures, a schedule or policy that stops them, state
/// that cannot be read.
fn forward_diagnostics(
    instance: &str,
    sink: &Value,
    overview: &crate::sink::SinkOverview,
    forward_db: &Path,
    now: Timestamp,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let name = crate::sanitize::label(instance);
    if overview.rows_quarantined > 0 {
        diagnostics.push(Diagnostic::error(
            "central_rows_quarantined",
            format!(
                "central refused {} of this machine's rows on their own ({}); they are kept in quarantine and not sent",
                crate::units::counted(overview.rows_quarantined, "row", "rows"),
                overview
                    .last_error
                    .as_ref()
                    .map_or_else(|| "see the daemon log".to_string(), |error| crate::sanitize::error_text(&error.message)),
            ),
            &[
                "hyp daemon logs   (central.forward.quarantined names each row)",
                &format!("hyp sync {name} --retry-quarantined   (once central accepts them)"),
            ],
        ));
    }
    if overview.stuck(now) {
        diagnostics.push(Diagnostic::error(
            "central_export_failing",
            format!(
                "{} have waited more than an hour for central: exports of '{name}' fail since {} ({})",
                crate::units::counted(overview.pending_rows, "row", "rows"),
                overview.failing_since.as_deref().map(crate::sanitize::label).unwrap_or_default(),
                overview
                    .last_error
                    .as_ref()
                    .map_or_else(String::new, |error| crate::sanitize::error_text(&error.message)),
            ),
            &[
                "check that this machine reaches the central server (network, proxy, certificates)",
                &format!("hyp sync {name}   (tries now and shows the error)"),
            ],
        ));
    }
    if let Some(schedule) = sink.pointer("/config/schedule").and_then(Value::as_str)
        && !crate::config::cron::is_cron_expression(schedule)
    {
        diagnostics.push(Diagnostic::error(
            "central_schedule_invalid",
            format!(
                "sink '{name}' has schedule '{}', which is not a 5-field cron expression: the daemon does not export it",
                crate::sanitize::label(schedule)
            ),
            &["fix sinks.<name>.config.schedule in the central config (e.g. \"*/5 * * * *\")"],
        ));
    }
    if let Some(error) = &overview.unreadable {
        // An emptied file gets its tables back at the next export; anything
        // else (a garbled or cut database, a directory) fails every export.
        let emptied =
            fs::symlink_metadata(forward_db).is_ok_and(|meta| meta.is_file() && meta.len() == 0);
        diagnostics.push(if emptied {
            Diagnostic::warning(
                "forward_state_unreadable",
                format!("{error} - export progress is unknown"),
                &[&format!("hyp sync {name}   (an export rebuilds what it can)")],
            )
        } else {
            Diagnostic::error(
                "forward_state_unreadable",
                format!("{error} - export progress is unknown and every export of '{name}' fails until it is moved away"),
                &[&format!(
                    "mv {0} {0}.damaged, then 'hyp sync {name}'   (the export starts again from the first cached row)",
                    forward_db.display()
                )],
            )
        });
    }
}

fn daemon_summary(
    paths: &Paths,
    effective: &EffectiveConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> DaemonSummary {
    let mut errors = Vec::new();
    let pid_file = match statefile::read_value(&paths.pid_file()) {
        StateRead::Ok(value) if value.get("pid").and_then(Value::as_u64).is_some() => Some(value),
        StateRead::Missing => None,
        StateRead::Ok(_) => {
            errors.push(format!(
                "malformed pid file at {}",
                paths.pid_file().display()
            ));
            None
        }
        other => {
            errors.extend(other.problem(&paths.pid_file()));
            None
        }
    };
    let status_file = match statefile::read_value(&paths.status_file()) {
        StateRead::Ok(value) if value.is_object() => Some(value),
        StateRead::Missing => None,
        StateRead::Ok(_) => {
            errors.push(format!(
                "{} is not a JSON object",
                paths.status_file().display()
            ));
            None
        }
        other => {
            errors.extend(other.problem(&paths.status_file()));
            None
        }
    };
    let running_pid = crate::daemon::running_pid(paths);
    let running = running_pid.is_some();
    let field = |value: &Option<Value>, key: &str| -> Option<String> {
        value.as_ref()?.get(key)?.as_str().map(str::to_string)
    };
    let raw_state = field(&status_file, "state");
    // One name for a daemon with no process, here and in `hyp daemon
    // status`: `not_running`; `dead` when it never said it stopped.
    let (state, last_state) = match (&raw_state, running) {
        (None, true) => ("unknown".to_string(), None),
        (Some(raw), true) => (raw.clone(), None),
        (None, false) => ("not_running".to_string(), None),
        (Some(raw), false) if raw == "stopped" => ("not_running".to_string(), Some(raw.clone())),
        (Some(raw), false) => ("dead".to_string(), Some(raw.clone())),
    };
    let installed = crate::daemon::service::is_installed() && crate::daemon::service::serves(paths);
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    if let Some(error) = &error {
        diagnostics.push(Diagnostic::warning(
            "daemon_status_unreadable",
            error.clone(),
            &["hyp daemon restart"],
        ));
    }
    if !running && (effective.has_central_layer || installed) {
        let message = "the daemon is not running: central config is not polled, history is not captured and nothing reaches central".to_string();
        let repair = ["hyp daemon start", "hyp daemon run"];
        // A joined host without its daemon has stopped working for the fleet.
        diagnostics.push(if effective.has_central_layer {
            Diagnostic::error("daemon_not_running", message, &repair)
        } else {
            Diagnostic::warning("daemon_not_running", message, &repair)
        });
    }
    identity(paths, effective, diagnostics);
    installation(paths, diagnostics);
    DaemonSummary {
        installed,
        running,
        state,
        last_state,
        pid: running_pid
            .map(u64::from)
            .or_else(|| pid_file.as_ref()?.get("pid")?.as_u64()),
        mode: field(&pid_file, "mode"),
        run_id: field(&pid_file, "run_id").or_else(|| field(&status_file, "run_id")),
        started_at: field(&pid_file, "started_at").or_else(|| field(&status_file, "started_at")),
        updated_at: field(&status_file, "updated_at"),
        error,
    }
}

fn cache_summary(
    paths: &Paths,
    effective: &EffectiveConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> CacheSummary {
    let (retention_days, retention_source) = match effective.retention_default_days() {
        Some(days) => (days, "config"),
        None => (DEFAULT_RETENTION_DAYS, "default"),
    };
    let (rows, error) = match crate::cache::query::row_count(&paths.cache_db()) {
        Ok(rows) => (rows, None),
        Err(error) => {
            diagnostics.push(Diagnostic::warning(
                "cache_unreadable",
                format!(
                    "{error} (the next backfill moves a damaged cache aside and rebuilds it from history)"
                ),
                &["hyp backfill"],
            ));
            (0, Some(error))
        }
    };
    if let Some(note) = set_aside_copies(&paths.cache_dir()) {
        diagnostics.push(note);
    }
    diagnostics.extend(cache_generation(&paths.cache_db()));
    stale_imports(paths, effective, diagnostics);
    let retention_days = if retention_days.fract() == 0.0 && retention_days <= u64::MAX as f64 {
        Value::from(retention_days as u64)
    } else {
        Value::from(retention_days)
    };
    CacheSummary {
        dir: paths.cache_dir().display().to_string(),
        size_bytes: tree_size(&paths.cache_dir()),
        rows,
        retention_days,
        retention_source,
        error,
        first_imports: crate::cache::fresh::pending_builds(&paths.cache_db())
            .into_iter()
            .map(|build| super::report::FirstImport {
                pid: build.pid,
                bytes: build.bytes,
                running: build.running,
            })
            .collect(),
    }
}

/// On a joined host, a cache that is missing, emptied, damaged or another
/// program's database while the markers say its import is done: the host
/// no longer holds what it reports, so `overall` degrades until the daemon
/// has imported again (it looks every few minutes).
fn stale_imports(paths: &Paths, effective: &EffectiveConfig, diagnostics: &mut Vec<Diagnostic>) {
    if !effective.has_central_layer {
        return;
    }
    let health = crate::cache::health::probe(&paths.cache_db());
    if health.is_sound() {
        return;
    }
    let markers = crate::actions::store::MarkerStore::new(paths).read_lenient();
    let imported = markers
        .keys(crate::actions::backfill_handler::KIND)
        .iter()
        .any(|key| {
            markers
                .marker(crate::actions::backfill_handler::KIND, key)
                .and_then(|marker| marker.get("status"))
                .and_then(Value::as_str)
                == Some("done")
        });
    if imported {
        diagnostics.push(Diagnostic::error(
            health.kind(),
            format!(
                "{health} at {}, though backfill says its import is done: the daemon imports the history again by itself",
                paths.cache_db().display()
            ),
            &[
                "wait for the daemon's next look (a few minutes), or run 'hyp backfill' now",
                "hyp daemon start   (if no daemon runs)",
            ],
        ));
    }
}

/// `cache/generation` present but holding no id. A file the next import
/// replaces (and then imports the history again) is a warning; anything
/// else in its place makes every import fail, an error.
fn cache_generation(db: &Path) -> Option<Diagnostic> {
    let path = crate::cache::generation_path(db);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() {
        return Some(Diagnostic::error(
            "cache_generation_unreadable",
            format!(
                "{} is not a file: every import fails until it is removed",
                path.display()
            ),
            &[&format!("remove {}, then 'hyp backfill'", path.display())],
        ));
    }
    let problem = match fs::read_to_string(&path) {
        Err(err) => format!("cannot read {}: {err}", path.display()),
        Ok(text) if text.trim().is_empty() => format!("{} is empty", path.display()),
        Ok(text) if text.trim().chars().any(char::is_control) => {
            format!("{} holds no generation id", path.display())
        }
        Ok(_) => return None,
    };
    Some(Diagnostic::warning(
        "cache_generation_unreadable",
        format!("{problem} - the next import writes a new one and imports the history again"),
        &["hyp backfill   (or wait for the daemon's next look)"],
    ))
}

/// A warning naming the damaged caches a backfill moved aside
/// ([`crate::cache::repair`]), which stay until a person removes them.
fn set_aside_copies(cache_dir: &Path) -> Option<Diagnostic> {
    let mut bytes = 0;
    let mut copies = 0;
    for entry in fs::read_dir(cache_dir).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("cache.db.damaged-") && !name.starts_with("cache.db.foreign-") {
            continue;
        }
        bytes += entry.metadata().map(|meta| meta.len()).unwrap_or(0);
        if !name.ends_with("-wal") && !name.ends_with("-shm") {
            copies += 1;
        }
    }
    (copies > 0).then(|| {
        Diagnostic::warning(
            "cache_damaged_copies",
            format!(
                "{copies} damaged or foreign cache file{} ({bytes} bytes) set aside in {}: a new cache holds only what was imported since; they are kept only for recovery",
                if copies == 1 { "" } else { "s" },
                cache_dir.display()
            ),
            &[
                "hyp backfill   (re-imports every configured provider's history)",
                &format!(
                    "rm {0}/cache.db.damaged-* {0}/cache.db.foreign-*   (once no longer needed)",
                    cache_dir.display()
                ),
            ],
        )
    })
}

/// Bytes under `dir`, not following symlinks; 0 when it does not exist.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => tree_size(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map(|meta| meta.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn config_layers(effective: &EffectiveConfig) -> Option<ConfigLayers> {
    if !effective.has_central_layer {
        return None;
    }
    let central = effective.layers.central.as_ref()?;
    Some(ConfigLayers {
        central: true,
        central_source: central.source.as_str().to_string(),
        central_path: central.path.display().to_string(),
        central_plugins: effective
            .central_plugin_names()
            .into_iter()
            .map(str::to_string)
            .collect(),
        central_sinks: effective
            .central_sink_names()
            .into_iter()
            .map(str::to_string)
            .collect(),
        central_query_ignored: effective.central_query_ignored,
        local_not_applied: effective
            .drops
            .iter()
            .filter_map(|drop| serde_json::to_value(drop).ok())
            .collect(),
    })
}

fn remote_config(paths: &Paths, diagnostics: &mut Vec<Diagnostic>) -> RemoteConfig {
    control_files(paths, diagnostics);
    let running_etag = config::read_active_pointer(paths)
        .and_then(|slot| fs::read_to_string(paths.slot_etag(slot)).ok())
        .map(|etag| etag.trim().to_string())
        .filter(|etag| !etag.is_empty());
    let state = match statefile::read_value(&paths.apply_state()) {
        StateRead::Ok(Value::Object(state)) => state,
        StateRead::Missing => Default::default(),
        StateRead::Unreadable(err) => {
            // Not a file the engine can replace: every apply fails.
            diagnostics.push(Diagnostic::error(
                "remote_config_state_unreadable",
                format!(
                    "cannot read {}: {err} - read as empty, and no new central config can be applied until it is removed",
                    paths.apply_state().display()
                ),
                &[&format!("remove {}", paths.apply_state().display())],
            ));
            Default::default()
        }
        other => {
            let problem = other.problem(&paths.apply_state()).unwrap_or_else(|| {
                format!("{} is not a JSON object", paths.apply_state().display())
            });
            diagnostics.push(Diagnostic::warning(
                "remote_config_state_unreadable",
                format!("{problem} - read as empty"),
                &["the daemon rewrites it on the next apply; 'hyp leave' then 'hyp join' resets it"],
            ));
            Default::default()
        }
    };
    let object = |key: &str| state.get(key).filter(|value| value.is_object()).cloned();
    let probation = object("probation").map(|probation| {
        let text = |key: &str| {
            probation
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let remaining_seconds = text("until")
            .and_then(|until| crate::time::parse_iso(&until))
            .map(|until| (until.as_second() - Timestamp::now().as_second()).max(0));
        ProbationView {
            etag: text("etag"),
            applied_at: text("applied_at"),
            until: text("until"),
            remaining_seconds,
        }
    });
    let last_rollback = object("last_rollback");
    if let Some(rollback) = &last_rollback {
        let text = |key: &str| rollback.get(key).and_then(Value::as_str).unwrap_or("?");
        diagnostics.push(Diagnostic::warning(
            "remote_config_rolled_back",
            format!(
                "remote config {} rolled back at {} ({})",
                crate::sanitize::label(text("etag")),
                crate::sanitize::label(text("at")),
                crate::sanitize::label(text("reason")),
            ),
            &["fix the central config revision; the daemon re-applies when the served etag changes"],
        ));
    }
    let polls = poll_record(paths);
    let running = crate::daemon::running_pid(paths).is_some();
    if running {
        unreachable_central(&polls, diagnostics);
    }
    RemoteConfig {
        running_etag,
        probation,
        last_rollback,
        bad_etag: object("bad_etag"),
        last_poll_at: polls.last_poll_at,
        last_poll_result: polls.last_poll_result,
        next_poll_at: polls.next_poll_at.filter(|_| running),
        last_error: polls.last_error,
    }
}

/// The apply engine's files besides `state.json`: an `active` pointer that
/// names no slot while slots exist (the host then reads as not joined), a
/// previous slot a rollback could not load, an etag sidecar that holds no
/// etag. The active slot and the seed are the central layer, reported by
/// `config_central_unreadable`.
fn control_files(paths: &Paths, diagnostics: &mut Vec<Diagnostic>) {
    let Some(active) = config::read_active_pointer(paths) else {
        let pointer = paths.active_pointer();
        if let Some(slot) = engine::stranded_slot(paths) {
            let what = match fs::symlink_metadata(&pointer) {
                Err(_) => "is missing",
                Ok(meta) if meta.file_type().is_symlink() => {
                    "points at neither config.a.json nor config.b.json"
                }
                Ok(_) => "is not a symlink to config.a.json or config.b.json",
            };
            diagnostics.push(Diagnostic::error(
                "remote_config_pointer_unreadable",
                format!(
                    "{} {what}, though {} exists: this host reads as not joined, so the daemon neither polls central nor forwards anything",
                    pointer.display(),
                    paths.slot(slot).display()
                ),
                &["hyp join <url> <token>   (re-join to reset the central layer)"],
            ));
        }
        return;
    };
    let previous = paths.slot(active.other());
    if fs::symlink_metadata(&previous).is_ok()
        && let Err(error) = config::layers::load_layer_file(&previous)
    {
        // The next apply writes this slot: a file it replaces; anything
        // else in its place fails every apply.
        diagnostics.push(if error.kind == config::layers::LoadErrorKind::Unreadable {
            Diagnostic::error(
                "remote_config_slot_unreadable",
                format!("{error} - the next central config is written there, so none can be applied until it is removed"),
                &[&format!("remove {}", previous.display())],
            )
        } else {
            Diagnostic::warning(
                "remote_config_slot_unreadable",
                format!(
                    "{error} - it holds the previous central config, which a rollback would return to; the next applied config replaces it"
                ),
                &["hyp join <url> <token>   (re-join to reset both slots now)"],
            )
        });
    }
    let etag = paths.slot_etag(active);
    if fs::symlink_metadata(&etag).is_ok_and(|meta| !meta.is_file()) {
        diagnostics.push(Diagnostic::error(
            "remote_config_etag_unreadable",
            format!(
                "{} is not a file - the running etag is unknown, and no central config can be applied into this slot until it is removed",
                etag.display()
            ),
            &[&format!("remove {}", etag.display())],
        ));
        return;
    }
    let problem = match fs::read_to_string(&etag) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => Some(format!("cannot read {}: {err}", etag.display())),
        Ok(text) if text.trim().is_empty() => Some(format!("{} is empty", etag.display())),
        Ok(text) if text.trim().chars().any(char::is_control) => {
            Some(format!("{} holds no etag", etag.display()))
        }
        Ok(_) => None,
    };
    if let Some(problem) = problem {
        diagnostics.push(Diagnostic::warning(
            "remote_config_etag_unreadable",
            format!(
                "{problem} - the running etag is unknown, so the daemon applies central's config again at its next poll"
            ),
            &["hyp daemon start   (if no daemon runs: its next apply rewrites the file)"],
        ));
    }
}

/// The capture sweeps of each enabled provider on a joined host: its
/// policy from config, its last and next sweep from the worker's record.
/// A damaged record reads as empty and says so in a warning.
fn capture(
    paths: &Paths,
    effective: &EffectiveConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<std::collections::BTreeMap<String, CaptureRow>> {
    let path = crate::actions::capture::capture_file(paths);
    let read: StateRead<crate::actions::capture::CaptureFile> = statefile::read(&path);
    if let Some(problem) = read.problem(&path) {
        diagnostics.push(Diagnostic::warning(
            "capture_record_unreadable",
            format!("{problem} - read as empty; the daemon rewrites it after its next sweep"),
            &[&format!("remove {} if it is not a file", path.display())],
        ));
    }
    if !effective.has_central_layer {
        return None;
    }
    let record = read.ok().unwrap_or_default();
    let running = crate::daemon::running_pid(paths).is_some();
    let rows: std::collections::BTreeMap<String, CaptureRow> =
        crate::actions::backfill_handler::targets(effective)
            .into_iter()
            .filter_map(|target| {
                let entry = effective.enabled_plugin(target.provider.plugin)?;
                let policy = crate::config::policy::CapturePolicy::read(&entry.config);
                let sweeps = record
                    .providers
                    .get(target.provider.name)
                    .cloned()
                    .unwrap_or_default();
                let row = CaptureRow {
                    enabled: policy.enabled,
                    interval_seconds: policy.interval.as_secs(),
                    last_sweep_at: sweeps.last_sweep_at,
                    last_sweep_rows: sweeps.last_sweep_rows,
                    next_sweep_at: sweeps.next_sweep_at.filter(|_| running && policy.enabled),
                    last_error: sweeps.last_error,
                    waiting_for: sweeps.waiting_for.filter(|_| policy.enabled),
                };
                Some((target.provider.name.to_string(), row))
            })
            .collect();
    (!rows.is_empty()).then_some(rows)
}

/// The daemon's record of its polls, from `status.json` (empty when there
/// is none).
fn poll_record(paths: &Paths) -> crate::messages::PollRecord {
    crate::daemon::status_file::read(paths)
        .ok()
        .and_then(|status| status.get("poll").cloned())
        .and_then(|poll| serde_json::from_value(poll).ok())
        .unwrap_or_default()
}

/// Polls in a row to a central that refused the credential or could not be
/// reached, or such a streak this old, mean the host has dropped out of
/// the fleet: `overall` degrades (contract §8).
const UNREACHABLE_POLLS: u32 = 3;
const UNREACHABLE_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn unreachable_central(polls: &crate::messages::PollRecord, diagnostics: &mut Vec<Diagnostic>) {
    let since = polls
        .failing_since
        .as_deref()
        .and_then(crate::time::parse_iso);
    let long = since.is_some_and(|since| {
        Timestamp::now().duration_since(since).as_secs() >= UNREACHABLE_FOR.as_secs() as i64
    });
    if polls.failing_polls < UNREACHABLE_POLLS && !long {
        return;
    }
    let Some(error) = &polls.last_error else {
        return;
    };
    let refused = error.http_status == Some(401) || error.kind == "config_poll_auth_failed";
    let (what, repair) = if refused {
        (
            "central refused this machine's credential",
            "hyp join <url> <token>   (enrol again with a valid token)",
        )
    } else {
        (
            "central could not be reached",
            "check the network, proxy and certificates between this machine and the central server",
        )
    };
    diagnostics.push(Diagnostic::error(
        "central_unreachable",
        format!(
            "{what} on the last {} polls, since {} ({})",
            polls.failing_polls,
            crate::sanitize::label(polls.failing_since.as_deref().unwrap_or("?")),
            crate::sanitize::error_text(&error.message),
        ),
        &[
            repair,
            "hyp daemon logs   (central.config.poll_failed has each failure)",
        ],
    ));
}

/// The reconciler's rows, through the same gate as its `desired()`, or
/// `None` when nothing applies.
/// A corrupt marker file reads as empty (as the reconciler reads it) and
/// says so in a warning; the rows themselves never become diagnostics.
fn client_actions(
    paths: &Paths,
    effective: &EffectiveConfig,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Vec<ActionRow>> {
    let markers = paths.client_actions();
    let problem = match statefile::read_value(&markers) {
        StateRead::Ok(value) if !value.is_object() => {
            Some(format!("{} is not a JSON object", markers.display()))
        }
        StateRead::Unreadable(err) => {
            // The reconciler refuses to run on a store it cannot read.
            diagnostics.push(Diagnostic::error(
                "client_actions_unreadable",
                format!(
                    "cannot read {}: {err} - every reconcile pass fails, so no import runs and capture sweeps wait until it is removed",
                    markers.display()
                ),
                &[&format!("remove {}, then 'hyp daemon restart'", markers.display())],
            ));
            None
        }
        other => other.problem(&markers),
    };
    if let Some(problem) = problem {
        diagnostics.push(Diagnostic::warning(
            "client_actions_unreadable",
            format!("{problem} - read as empty; the daemon rewrites it on its next pass"),
            &["hyp daemon restart"],
        ));
    }
    crate::actions::rows::collect(paths, effective)
}
