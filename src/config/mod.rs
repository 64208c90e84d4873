//! Configuration: the v2 schema, the plugin catalog, validation, the two
//! layers (central, local) and their merge into the effective config.
//!
//! The public surface below is what the rest of the crate uses; it never
//! fails: a broken layer counts as absent and becomes a diagnostic.

use serde_json::Value;

use crate::paths::Paths;

pub mod catalog;
pub mod policy;

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
}

impl EffectiveConfig {
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
}

/// Resolve both layers and merge them. Never fails.
// FIXME(config owner): interim body that reads the local layer only.
pub fn load_effective(paths: &Paths) -> EffectiveConfig {
    let document = crate::statefile::read_value(&paths.local_config().path)
        .ok()
        .unwrap_or_else(|| serde_json::json!({"version": 2}));
    let plugins = document
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
        .unwrap_or_default();
    EffectiveConfig {
        document,
        plugins,
        has_central_layer: false,
    }
}

/// One validation error: `[kind] pointer: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `config_invalid_shape`, `duplicate_plugin`, `config_section_invalid`, ...
    pub kind: String,
    /// JSON pointer into the document; `""` is the root.
    pub pointer: String,
    pub message: String,
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

/// Validate a central document on its own, as the apply engine does: shape,
/// cross-plugin checks, and the section validators of every enabled known
/// plugin. Empty means valid.
// FIXME(config owner): interim body that checks the version only.
pub fn validate_central_document(document: &Value) -> Vec<ConfigError> {
    if document.get("version") == Some(&Value::from(2)) {
        Vec::new()
    } else {
        vec![ConfigError {
            kind: "config_invalid_shape".into(),
            pointer: "/version".into(),
            message: "version must be exactly 2".into(),
        }]
    }
}

/// The slot the `active` symlink names, when it resolves to exactly
/// `config.a.json` or `config.b.json` inside the control dir.
// FIXME(config owner): interim body.
pub fn read_active_pointer(paths: &Paths) -> Option<crate::paths::Slot> {
    let target = std::fs::read_link(paths.active_pointer()).ok()?;
    [crate::paths::Slot::A, crate::paths::Slot::B]
        .into_iter()
        .find(|slot| target == std::path::Path::new(&slot.file_name()))
}
