//! Configuration: the v2 schema, the plugin catalog, validation, the two
//! layers (central, local) and their merge into the effective config.
//!
//! The public surface below is what the rest of the crate uses; it never
//! fails: a broken layer counts as absent and becomes a diagnostic.
//!
//! - `schema`: the shape check; `validate`: cross-plugin checks and the full
//!   validation; `sections`: the claude/codex section validators;
//!   `catalog`: known and implemented plugins; `cron`: the schedule grammar;
//!   `policy`: the one backfill policy reader.
//! - `layers`: resolving and loading the central and local layers;
//!   `merge`: central (authoritative) plus local (additive) with drops.
//! - `report`: what `hyp config validate` checks, as data; `redact`: secrets
//!   hidden from printed documents.

use serde_json::Value;

use crate::paths::Paths;

pub mod catalog;
pub mod cron;
pub mod layers;
pub mod merge;
pub mod policy;
pub mod redact;
pub mod report;
pub mod schema;
pub mod sections;
pub mod validate;

use layers::Layers;
use merge::DroppedEntry;

/// One `plugins[]` entry of a parsed config.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEntry {
    pub name: String,
    /// `enabled` defaults to true; only an explicit `false` disables.
    pub enabled: bool,
    /// The entry's `config` object, or `Value::Null` when absent.
    pub config: Value,
}

/// The merged view every process works from (boot, reload, status, backfill).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EffectiveConfig {
    /// The merged document (`{"version": 2}` when both layers are absent).
    pub document: Value,
    pub plugins: Vec<PluginEntry>,
    /// Whether a central layer (active slot or seed) loaded.
    pub has_central_layer: bool,
    /// Both layers as found on disk, with their load outcomes (for status
    /// `config_layers` and `hyp config`).
    pub layers: Layers,
    /// Local entries the merge left out (`collides_with_central`,
    /// `invalid_merge`). Empty without a central layer.
    pub drops: Vec<DroppedEntry>,
    /// The central layer carried a `query` block, which is local-only.
    pub central_query_ignored: bool,
}

impl EffectiveConfig {
    /// Merge already resolved layers (what [`load_effective`] does after
    /// reading the disk; `hyp config validate --path` passes its own local).
    pub fn from_layers(layers: Layers) -> EffectiveConfig {
        let central = layers.central_document();
        let merged = merge::merge_layers(central, layers.local_document());
        let plugins = plugin_entries(&merged.document);
        EffectiveConfig {
            has_central_layer: central.is_some(),
            document: merged.document,
            plugins,
            drops: merged.drops,
            central_query_ignored: merged.central_query_ignored,
            layers,
        }
    }

    /// A config made straight from a document, for tests of code that reads
    /// the effective config (the reconciler, the status rows).
    #[cfg(test)]
    pub fn from_document(document: Value, has_central_layer: bool) -> EffectiveConfig {
        EffectiveConfig {
            plugins: plugin_entries(&document),
            document,
            has_central_layer,
            ..Default::default()
        }
    }

    /// The first entry named `name`, enabled or not.
    pub fn plugin(&self, name: &str) -> Option<&PluginEntry> {
        self.plugins.iter().find(|entry| entry.name == name)
    }

    /// The entry named `name` when it is present and enabled.
    pub fn enabled_plugin(&self, name: &str) -> Option<&PluginEntry> {
        self.plugin(name).filter(|entry| entry.enabled)
    }

    /// `query.cache.retention.default_days` when it is a finite number >= 0.
    pub fn retention_default_days(&self) -> Option<f64> {
        self.document
            .pointer("/query/cache/retention/default_days")
            .and_then(Value::as_f64)
            .filter(|days| days.is_finite() && *days >= 0.0)
    }

    /// Whether either layer loaded (the reference's "effective is not null").
    pub fn has_any_layer(&self) -> bool {
        self.has_central_layer || self.layers.local_document().is_some()
    }

    /// Plugin names the central layer lists (provenance `central`).
    pub fn central_plugin_names(&self) -> Vec<&str> {
        self.layers
            .central_document()
            .and_then(|document| document.get("plugins"))
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| entry.get("name")?.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sink instance names the central layer defines (provenance `central`).
    pub fn central_sink_names(&self) -> Vec<&str> {
        self.layers
            .central_document()
            .and_then(|document| document.get("sinks"))
            .and_then(Value::as_object)
            .map(|sinks| sinks.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Names of enabled effective plugins this binary does not implement.
    pub fn inert_plugin_names(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .filter(|entry| entry.enabled && catalog::is_inert(&entry.name))
            .map(|entry| entry.name.as_str())
            .collect()
    }

    /// The daemon's boot/reload log lines for this merge: one
    /// `config.layer_unreadable` error per layer that does not load (the
    /// daemon runs as if it were absent; a missing local file is normal, a
    /// central layer is missing only behind a dangling pointer), one
    /// `config.local_entry_dropped` warning per drop, and
    /// `config.central_query_ignored`. Status never calls this.
    pub fn log_merge_outcome(&self) {
        let both = [&self.layers.central, &self.layers.local];
        for layer in both.into_iter().flatten() {
            let normal = layer.source == layers::LayerSource::Local && layer.is_missing();
            if let Some(error) = layer.error().filter(|_| !normal) {
                crate::event!(
                    Error,
                    "config.layer_unreadable",
                    serde_json::json!({
                        "component": "config",
                        "layer": layer.source.as_str(),
                        "path": layer.path.display().to_string(),
                        "error_kind": error.kind.as_str(),
                        "message": error.message,
                    }),
                );
            }
        }
        for dropped in &self.drops {
            let mut fields = serde_json::json!({
                "component": "config",
                "error_kind": dropped.reason.as_str(),
                "section": dropped.section.as_str(),
                "key": dropped.key,
                "hyp_reason": dropped.reason.as_str(),
            });
            if let (Some(detail), Some(map)) = (&dropped.detail, fields.as_object_mut()) {
                map.insert("detail".into(), Value::from(detail.as_str()));
            }
            crate::event!(Warn, "config.local_entry_dropped", fields);
        }
        if self.central_query_ignored {
            crate::event!(
                Warn,
                "config.central_query_ignored",
                serde_json::json!({"component": "config", "hyp_reason": "query_is_local_only"}),
            );
        }
    }
}

/// Resolve both layers and merge them. Never fails.
pub fn load_effective(paths: &Paths) -> EffectiveConfig {
    EffectiveConfig::from_layers(Layers::resolve(paths))
}

/// The `plugins[]` entries with a string name, read leniently.
fn plugin_entries(document: &Value) -> Vec<PluginEntry> {
    document
        .get("plugins")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| {
                    Some(PluginEntry {
                        name: entry.get("name")?.as_str()?.to_string(),
                        enabled: entry.get("enabled") != Some(&Value::Bool(false)),
                        config: entry.get("config").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One validation error: `[kind] pointer: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// `config_invalid_shape`, `duplicate_plugin`, `config_section_invalid`, ...
    pub kind: String,
    /// JSON pointer into the document; `""` is the root.
    pub pointer: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(
        kind: ErrorKind,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            kind: kind.as_str().to_string(),
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "<root>"
        } else {
            &self.pointer
        };
        write!(f, "[{}] {pointer}: {}", self.kind, self.message)
    }
}

/// Every kind a [`ConfigError`] can carry. `plugin_unknown` and
/// `sink_plugin_unknown` do not exist here: unknown plugins are inert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Missing,
    Unreadable,
    InvalidJson,
    InvalidShape,
    DuplicatePlugin,
    RequestSinkInvalidKeys,
    SinkPairIncompatible,
    SinkWriterInvalid,
    SinkDestinationInvalid,
    SinkEncoderInvalid,
    SinkScheduleInvalid,
    DatasetUnknown,
    CapabilityAmbiguous,
    SectionInvalid,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Missing => "config_missing",
            ErrorKind::Unreadable => "config_unreadable",
            ErrorKind::InvalidJson => "config_invalid_json",
            ErrorKind::InvalidShape => "config_invalid_shape",
            ErrorKind::DuplicatePlugin => "duplicate_plugin",
            ErrorKind::RequestSinkInvalidKeys => "request_sink_invalid_keys",
            ErrorKind::SinkPairIncompatible => "sink_pair_incompatible",
            ErrorKind::SinkWriterInvalid => "sink_writer_invalid",
            ErrorKind::SinkDestinationInvalid => "sink_destination_invalid",
            ErrorKind::SinkEncoderInvalid => "sink_encoder_invalid",
            ErrorKind::SinkScheduleInvalid => "sink_schedule_invalid",
            ErrorKind::DatasetUnknown => "dataset_unknown",
            ErrorKind::CapabilityAmbiguous => "capability_ambiguous",
            ErrorKind::SectionInvalid => "config_section_invalid",
        }
    }
}

/// Validate a central document on its own, as the apply engine does: shape,
/// cross-plugin checks, and the section validators of every enabled known
/// plugin (including plugins the document introduces). Empty means valid.
pub fn validate_central_document(document: &Value) -> Vec<ConfigError> {
    validate::full_errors(document)
}

/// The slot the `active` symlink names, when it resolves to exactly
/// `config.a.json` or `config.b.json` inside the control dir (config.md §1.3).
pub fn read_active_pointer(paths: &Paths) -> Option<crate::paths::Slot> {
    layers::read_active_pointer(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Slot;
    use serde_json::json;
    use std::os::unix::fs::symlink;

    fn fixture() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path().join("hyp"));
        std::fs::create_dir_all(paths.control_dir()).unwrap();
        (dir, paths)
    }

    fn write(path: &std::path::Path, value: Value) {
        std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    }

    #[test]
    fn nothing_on_disk_gives_an_empty_version_2_document() {
        let (_dir, paths) = fixture();
        let effective = load_effective(&paths);
        assert_eq!(effective.document, json!({"version": 2}));
        assert!(!effective.has_central_layer);
        assert!(!effective.has_any_layer());
        assert!(effective.plugins.is_empty());
        assert!(effective.layers.central.is_none());
        assert!(effective.layers.local.as_ref().unwrap().is_missing());
    }

    #[test]
    fn a_never_joined_host_runs_on_the_local_layer_verbatim() {
        let (_dir, paths) = fixture();
        let local = json!({"version": 2, "plugins": [
            {"name": "@hypaware/claude", "config": {"backfill": {"window_days": 7}}},
            {"name": "@hypaware/codex", "enabled": false}
        ], "query": {"cache": {"retention": {"default_days": 14}}}});
        write(&paths.local_config().path, local.clone());
        let effective = load_effective(&paths);
        assert_eq!(effective.document, local);
        assert!(!effective.has_central_layer);
        assert!(effective.enabled_plugin("@hypaware/claude").is_some());
        assert!(effective.enabled_plugin("@hypaware/codex").is_none());
        assert!(effective.plugin("@hypaware/codex").is_some());
        assert_eq!(effective.retention_default_days(), Some(14.0));
        assert!(effective.drops.is_empty());
    }

    #[test]
    fn a_joined_host_merges_the_active_slot_with_the_local_layer() {
        let (_dir, paths) = fixture();
        write(
            &paths.slot(Slot::A),
            json!({"version": 2,
                "plugins": [{"name": "@hypaware/central"}, {"name": "@hypaware/claude", "config": {"backfill": {"on_join": false}}}],
                "sinks": {"central": {"plugin": "@hypaware/central", "config": {"url": "https://c", "identity": {}}}},
                "query": {"cache": {"dir": "/operator"}}}),
        );
        symlink("config.a.json", paths.active_pointer()).unwrap();
        write(
            &paths.local_config().path,
            json!({"version": 2, "plugins": [{"name": "@hypaware/claude"}, {"name": "@hypaware/codex"}, {"name": "@acme/x"}]}),
        );
        let effective = load_effective(&paths);
        assert!(effective.has_central_layer);
        let names: Vec<&str> = effective
            .plugins
            .iter()
            .map(|entry| entry.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "@hypaware/central",
                "@hypaware/claude",
                "@hypaware/codex",
                "@acme/x"
            ]
        );
        assert_eq!(
            effective.plugin("@hypaware/claude").unwrap().config,
            json!({"backfill": {"on_join": false}})
        );
        assert_eq!(effective.drops.len(), 1);
        assert!(effective.central_query_ignored);
        assert!(effective.document.get("query").is_none());
        assert_eq!(
            effective.central_plugin_names(),
            ["@hypaware/central", "@hypaware/claude"]
        );
        assert_eq!(effective.central_sink_names(), ["central"]);
        assert_eq!(effective.inert_plugin_names(), ["@acme/x"]);
    }

    #[test]
    fn a_broken_local_layer_leaves_the_central_layer_running() {
        let (_dir, paths) = fixture();
        write(
            &paths.seed(),
            json!({"version": 2, "plugins": [{"name": "@hypaware/central"}]}),
        );
        std::fs::write(&paths.local_config().path, "{oops").unwrap();
        let effective = load_effective(&paths);
        assert!(effective.has_central_layer);
        assert_eq!(effective.plugins.len(), 1);
        assert_eq!(
            effective
                .layers
                .local
                .as_ref()
                .unwrap()
                .error()
                .unwrap()
                .kind,
            layers::LoadErrorKind::InvalidJson
        );
    }

    #[test]
    fn a_broken_central_layer_leaves_the_local_layer_running() {
        let (_dir, paths) = fixture();
        std::fs::write(paths.slot(Slot::B), "[]").unwrap();
        symlink("config.b.json", paths.active_pointer()).unwrap();
        write(
            &paths.local_config().path,
            json!({"version": 2, "plugins": [{"name": "@hypaware/codex"}]}),
        );
        let effective = load_effective(&paths);
        assert!(!effective.has_central_layer);
        assert!(effective.layers.central.is_some());
        assert_eq!(effective.plugins[0].name, "@hypaware/codex");
    }

    #[test]
    fn the_apply_gate_runs_every_validator() {
        assert!(validate_central_document(&json!({"version": 2})).is_empty());
        assert!(
            validate_central_document(&json!({"version": 2.0, "plugins": [{"name": "@acme/new"}]}))
                .is_empty()
        );
        let kinds = |document: Value| -> Vec<String> {
            validate_central_document(&document)
                .into_iter()
                .map(|error| error.kind)
                .collect()
        };
        assert_eq!(kinds(json!({"version": 1})), ["config_invalid_shape"]);
        assert_eq!(
            kinds(json!({"version": 2, "plugins": [
                {"name": "@hypaware/claude", "config": {"backfill": {"window_days": 0}}},
                {"name": "@hypaware/claude"}
            ]})),
            ["duplicate_plugin", "config_section_invalid"]
        );
        let error = &validate_central_document(&json!({"version": 2, "plugins": [
            {"name": "@hypaware/codex", "config": {"attach": {"on_join": 1}}}]}))[0];
        assert_eq!(
            error.to_string(),
            "[config_section_invalid] /plugins/0/config/attach/on_join: attach.on_join must be a boolean"
        );
        let root = &validate_central_document(&json!(null))[0];
        assert_eq!(
            root.to_string(),
            "[config_invalid_shape] <root>: config must be a JSON object"
        );
    }
}
