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
