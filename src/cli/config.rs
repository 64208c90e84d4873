//! `hyp config validate|show|path`: check, print and locate the config
//! layers. Thin: parse, ask `config` for the data, render it. All three are
//! read-only.
//!
//! JSON shapes (one document on stdout):
//! - `validate --json`: `{valid, local, central, effective, inert_plugins}`;
//!   `local`/`central` are `{source, path, status: ok|invalid|missing,
//!   plugins, sinks, errors: [{kind, pointer, message}]}` (`central` is null
//!   on a host that has not joined); `effective` is null when not joined,
//!   else `{plugins, sinks, local_not_applied: [{section, key, reason,
//!   detail?}], central_query_ignored}`.
//! - `show --json`: `{layer, source, path, document, local_not_applied,
//!   central_query_ignored}` (`source`/`path` null for the effective view).
//! - `path --json`: `{local: {path, source: default|HYP_CONFIG, exists},
//!   central: null | {path, source: seed|slot_a|slot_b, exists}}`.
//!
//! Printed documents have secrets (`*token*`, `*secret*`, ...) redacted.

use crate::config::validate::{PluginNameWarning, plugin_name_warnings};
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use crate::cli::{CliError, Code, output};
use crate::config::layers::{LayerReport, LayerSource, Layers, LoadErrorKind, central_layer_path};
use crate::config::merge::DroppedEntry;
use crate::config::policy::CAPTURE_INTERVAL_SECONDS;
use crate::config::redact::redact_secrets;
use crate::config::report::{CheckStatus, LayerCheck, ValidationReport};
use crate::config::{ConfigError, EffectiveConfig, catalog, load_effective};
use crate::paths::{PathSource, Paths};

/// Check, show and locate the configuration (the local layer, and the
/// central layer on a joined host).
#[derive(Debug, Args)]
#[command(arg_required_else_help = true)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the local config; when joined, also the central layer and the merge
    Validate(ValidateArgs),
    /// Print a config document: the effective merge (default), the local or the central layer
    Show(ShowArgs),
    /// Print where the config layers live
    Path(PathArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit 0 when valid, 1 when invalid or unreadable. Local entries the merge leaves out are listed as warnings; they do not make the config invalid."
)]
pub struct ValidateArgs {
    /// Validate FILE as the local layer (default: HYP_CONFIG, else $HYP_HOME/hypaware-config.json)
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("layer").args(["effective", "local", "central"])),
    after_help = "Secrets (tokens, passwords) are printed as \"<redacted>\"."
)]
pub struct ShowArgs {
    /// The merge of both layers that the daemon runs on (the default)
    #[arg(long)]
    pub effective: bool,
    /// The local layer as written
    #[arg(long)]
    pub local: bool,
    /// The central layer (active slot, or the join seed)
    #[arg(long)]
    pub central: bool,
    /// Print one JSON document with the layer's source and path
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PathArgs {
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ConfigArgs) -> Result<Code, CliError> {
    let paths = Paths::from_env()?;
    match &args.command {
        ConfigCommand::Validate(validate) => run_validate(&paths, validate),
        ConfigCommand::Show(show) => run_show(&paths, show),
        ConfigCommand::Path(path) => run_path(&paths, path),
    }
}

// ---- validate ----------------------------------------------------------

fn run_validate(paths: &Paths, args: &ValidateArgs) -> Result<Code, CliError> {
    let flag_path = args.path.as_deref().map(absolute);
    let report = ValidationReport::collect(paths, flag_path);
    let code = if report.is_valid() {
        Code::Ok
    } else {
        Code::Failure
    };
    if args.json {
        output::stdout_json(&validate_json(&report))?;
    } else {
        render_validate_text(&report)?;
    }
    Ok(code)
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn render_validate_text(report: &ValidationReport) -> Result<(), CliError> {
    let mut lines = Vec::new();
    let local = &report.local;
    match local.status {
        CheckStatus::Ok => lines.push(format!(
            "config ok: {} ({})",
            local.layer.path.display(),
            counts(local)
        )),
        CheckStatus::Missing => lines.push(format!(
            "local config: none at {} (optional on a joined host)",
            local.layer.path.display()
        )),
        CheckStatus::Invalid => {
            report_layer_errors(local, local_hint(report));
        }
    }
    if let Some(central) = &report.central {
        match central.status {
            CheckStatus::Invalid => report_layer_errors(central, LayerHint::Central),
            _ => lines.push(format!(
                "central ok: {} ({}; {})",
                central.layer.path.display(),
                central.layer.source.describe(),
                counts(central)
            )),
        }
    }
    if let Some(effective) = &report.effective {
        lines.push(format!(
            "effective: plugins={}, sinks={}",
            effective.plugins.len(),
            effective
                .document
                .get("sinks")
                .and_then(Value::as_object)
                .map_or(0, |sinks| sinks.len())
        ));
        warn_merge_outcome(effective);
    }
    for warning in report_layers(report).flat_map(layer_warnings) {
        output::warning(&warning.to_string());
    }
    let inert = inert_plugins(report);
    if report.is_valid() && !inert.is_empty() {
        output::note(&format!(
            "inert on this host (accepted, not run by hyp): {}",
            inert.join(", ")
        ));
    }
    if lines.is_empty() {
        return Ok(());
    }
    lines.push(String::new());
    output::stdout_text(&lines.join("\n"))
}

/// Which advice fits a layer's errors.
#[derive(Clone, Copy)]
enum LayerHint {
    /// A local file named by `--path`.
    FlagPath,
    /// The local layer on a host with no central layer.
    Unjoined,
    /// The local layer of a joined host.
    Joined,
    /// The central layer: owned by the fleet server.
    Central,
}

fn local_hint(report: &ValidationReport) -> LayerHint {
    if report.local_from_flag {
        LayerHint::FlagPath
    } else if report.central.is_some() {
        LayerHint::Joined
    } else {
        LayerHint::Unjoined
    }
}

/// `hyp config validate: <message>` for a load failure, or the error count
/// and one `[kind] pointer: message` line per error, then hints.
fn report_layer_errors(check: &LayerCheck, hint: LayerHint) {
    let layer = &check.layer;
    let what = match layer.source {
        LayerSource::Local => layer.path.display().to_string(),
        source => format!(
            "central layer {} ({})",
            layer.path.display(),
            source.describe()
        ),
    };
    let load_failure = layer
        .error()
        .filter(|error| error.kind != LoadErrorKind::InvalidShape);
    match load_failure {
        Some(error) => output::error("config validate", &error.message),
        None => {
            output::error(
                "config validate",
                &format!("{} error(s) in {what}", check.errors.len()),
            );
            for error in &check.errors {
                output::stderr_plain(&format!("  {error}"));
            }
        }
    }
    for line in hints(&check.errors, hint) {
        output::stderr_plain(&format!("  hint: {line}"));
    }
}

fn hints(errors: &[ConfigError], hint: LayerHint) -> Vec<String> {
    if let LayerHint::Central = hint {
        let missing = errors.iter().any(|error| error.kind == "config_missing");
        return vec![if missing {
            "the active pointer names a slot that is gone; run 'hyp join <url> <token>' again to reset the central layer".to_string()
        } else {
            "the central layer comes from the fleet's server: ask its operator to fix it, or run 'hyp leave'".to_string()
        }];
    }
    let mut lines: Vec<String> = Vec::new();
    for line in errors
        .iter()
        .filter_map(|error| kind_hint(&error.kind, hint))
    {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

fn kind_hint(kind: &str, hint: LayerHint) -> Option<String> {
    let text = match kind {
        "config_missing" => match hint {
            LayerHint::FlagPath => "check the file given to --path",
            _ => {
                "create the file, point HYP_CONFIG at one, or join a fleet with 'hyp join <url> <token>'"
            }
        },
        "config_unreadable" => "check the file's permissions (hyp needs to read it)",
        "config_invalid_json" => "fix the JSON syntax at the line and column shown",
        "config_invalid_shape" => {
            "the top level takes only version (2), plugins, sinks, query and disambiguate"
        }
        "duplicate_plugin" => "list each plugin once in plugins[]",
        "capability_ambiguous" => {
            "enable only one of the providers, or name one under disambiguate"
        }
        "request_sink_invalid_keys"
        | "sink_pair_incompatible"
        | "sink_writer_invalid"
        | "sink_destination_invalid"
        | "sink_encoder_invalid" => {
            "a blob sink pairs an encoder or table-format writer with a blob-store destination; a request sink names one plugin such as @hypaware/central"
        }
        "sink_schedule_invalid" => "use a 5-field cron expression such as '0 * * * *'",
        "dataset_unknown" => {
            return Some(format!(
                "retention datasets known here: {}",
                catalog::known_datasets().join(", ")
            ));
        }
        "config_section_invalid" => {
            let (min_seconds, max_seconds) = (
                CAPTURE_INTERVAL_SECONDS.start(),
                CAPTURE_INTERVAL_SECONDS.end(),
            );
            return Some(format!(
                "backfill takes on_join (true|false) and window_days (a positive integer); capture takes enabled (true|false) and interval_seconds (an integer from {min_seconds} to {max_seconds}); attach takes on_join; claude telemetry takes listen_host, listen_port and spool_max_bytes"
            ));
        }
        _ => return None,
    };
    Some(text.to_string())
}

fn counts(check: &LayerCheck) -> String {
    format!(
        "plugins={}, sinks={}",
        check.plugin_count().unwrap_or(0),
        check.sink_count().unwrap_or(0)
    )
}

/// The local layer, then the central one when there is one.
fn report_layers(report: &ValidationReport) -> impl Iterator<Item = &LayerCheck> {
    std::iter::once(&report.local).chain(report.central.as_ref())
}

/// Plugin names in a layer that look like typos of known ones.
fn layer_warnings(check: &LayerCheck) -> Vec<PluginNameWarning> {
    match &check.layer.outcome {
        Ok(document) => plugin_name_warnings(document),
        Err(_) => Vec::new(),
    }
}

/// Warnings for what the merge left out (stderr, for people).
fn warn_merge_outcome(effective: &EffectiveConfig) {
    for dropped in &effective.drops {
        output::warning(&format!("local entry not applied: {}", dropped.describe()));
    }
    if effective.central_query_ignored {
        output::note("the central layer's query block is ignored (query is local-only)");
    }
}

/// Enabled plugins of the config that would run, that hyp does not implement.
fn inert_plugins(report: &ValidationReport) -> Vec<String> {
    let effective = report.effective.clone().unwrap_or_else(|| {
        EffectiveConfig::from_layers(Layers {
            central: None,
            local: Some(report.local.layer.clone()),
        })
    });
    effective
        .inert_plugin_names()
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[derive(Serialize)]
struct ValidateJson {
    valid: bool,
    local: LayerJson,
    central: Option<LayerJson>,
    effective: Option<EffectiveJson>,
    inert_plugins: Vec<String>,
}

#[derive(Serialize)]
struct LayerJson {
    source: LayerSource,
    path: String,
    status: &'static str,
    plugins: Option<usize>,
    sinks: Option<usize>,
    errors: Vec<ConfigError>,
    /// Unknown plugin names close to a known one (the config stays valid).
    warnings: Vec<PluginNameWarning>,
}

#[derive(Serialize)]
struct EffectiveJson {
    plugins: usize,
    sinks: usize,
    local_not_applied: Vec<DroppedEntry>,
    central_query_ignored: bool,
}

fn validate_json(report: &ValidationReport) -> ValidateJson {
    let layer = |check: &LayerCheck| LayerJson {
        source: check.layer.source,
        path: check.layer.path.display().to_string(),
        status: check.status.as_str(),
        plugins: check.plugin_count(),
        sinks: check.sink_count(),
        errors: check.errors.clone(),
        warnings: layer_warnings(check),
    };
    ValidateJson {
        valid: report.is_valid(),
        local: layer(&report.local),
        central: report.central.as_ref().map(layer),
        effective: report.effective.as_ref().map(|effective| EffectiveJson {
            plugins: effective.plugins.len(),
            sinks: effective
                .document
                .get("sinks")
                .and_then(Value::as_object)
                .map_or(0, |sinks| sinks.len()),
            local_not_applied: effective.drops.clone(),
            central_query_ignored: effective.central_query_ignored,
        }),
        inert_plugins: inert_plugins(report),
    }
}

// ---- show --------------------------------------------------------------

#[derive(Serialize)]
struct ShowJson<'a> {
    layer: &'static str,
    source: Option<LayerSource>,
    path: Option<String>,
    document: Value,
    local_not_applied: &'a [DroppedEntry],
    central_query_ignored: bool,
}

fn run_show(paths: &Paths, args: &ShowArgs) -> Result<Code, CliError> {
    let effective = load_effective(paths);
    let shown = if args.local {
        layer_to_show("local", effective.layers.local.as_ref(), paths)?
    } else if args.central {
        layer_to_show("central", effective.layers.central.as_ref(), paths)?
    } else {
        warn_ignored_layers(&effective.layers);
        warn_merge_outcome(&effective);
        ShowJson {
            layer: "effective",
            source: None,
            path: None,
            document: redact_secrets(&effective.document),
            local_not_applied: &effective.drops,
            central_query_ignored: effective.central_query_ignored,
        }
    };
    if args.json {
        output::stdout_json(&shown)?;
    } else {
        output::stdout_json(&shown.document)?;
    }
    Ok(Code::Ok)
}

fn layer_to_show<'a>(
    name: &'static str,
    report: Option<&LayerReport>,
    paths: &Paths,
) -> Result<ShowJson<'a>, CliError> {
    let Some(report) = report else {
        return Err(CliError::failed(
            "this host has no central layer (not joined): run 'hyp join <url> <token>' to join a fleet",
        ));
    };
    let document = match &report.outcome {
        Ok(document) => document,
        Err(error)
            if error.kind == LoadErrorKind::Missing && report.source == LayerSource::Local =>
        {
            return Err(CliError::failed(format!(
                "no local config at {}: create it, or set HYP_CONFIG to the file you use",
                report.path.display()
            )));
        }
        Err(error) => {
            let hint = match report.source {
                LayerSource::Local => format!(
                    "run 'hyp config validate --path {}' for details",
                    report.path.display()
                ),
                _ => format!(
                    "the central layer cannot be used; see 'hyp config validate' (control dir {})",
                    paths.control_dir().display()
                ),
            };
            return Err(CliError::failed(format!("{error}: {hint}")));
        }
    };
    Ok(ShowJson {
        layer: name,
        source: Some(report.source),
        path: Some(report.path.display().to_string()),
        document: redact_secrets(document),
        local_not_applied: &[],
        central_query_ignored: false,
    })
}

/// A layer that exists but failed to load is ignored by the merge: say so.
fn warn_ignored_layers(layers: &Layers) {
    for report in layers.central.iter().chain(layers.local.iter()) {
        let Some(error) = report.error() else {
            continue;
        };
        let which = match report.source {
            LayerSource::Local if report.is_missing() => continue,
            LayerSource::Local => "local layer".to_string(),
            source => format!("central layer ({})", source.describe()),
        };
        output::warning(&format!("{which} ignored: {error}"));
    }
}

// ---- path --------------------------------------------------------------

#[derive(Serialize)]
struct PathJson {
    local: PathEntry,
    central: Option<PathEntry>,
}

#[derive(Serialize)]
struct PathEntry {
    path: String,
    source: &'static str,
    exists: bool,
}

fn run_path(paths: &Paths, args: &PathArgs) -> Result<Code, CliError> {
    let local = paths.local_config();
    let local_source = match local.source {
        PathSource::Env => "HYP_CONFIG",
        PathSource::Default => "default",
    };
    let central = central_layer_path(paths);
    if args.json {
        let document = PathJson {
            local: PathEntry {
                path: local.path.display().to_string(),
                source: local_source,
                exists: local.path.exists(),
            },
            central: central.as_ref().map(|(source, path)| PathEntry {
                path: path.display().to_string(),
                source: source.as_str(),
                exists: path.exists(),
            }),
        };
        output::stdout_json(&document)?;
        return Ok(Code::Ok);
    }
    let state = |path: &Path| if path.exists() { "exists" } else { "missing" };
    let mut text = format!(
        "local:   {}  ({local_source}, {})\n",
        local.path.display(),
        state(&local.path)
    );
    match &central {
        Some((source, path)) => text.push_str(&format!(
            "central: {}  ({}, {})\n",
            path.display(),
            source.describe(),
            state(path)
        )),
        None => text.push_str("central: none (not joined)\n"),
    }
    output::stdout_text(&text)?;
    Ok(Code::Ok)
}
