//! The plugins this binary knows: the first-party catalog (names, versions,
//! the capabilities each provides and requires, the datasets it registers)
//! and which of them this binary actually implements.
//!
//! The catalog exists for validation: `capability_ambiguous`, the sink pair
//! checks and `dataset_unknown` need to know what a first-party plugin
//! provides. It replaces the reference's manifest discovery with a static
//! table. Any name outside [`IMPLEMENTED`] is accepted and **inert**: it is
//! never a validation error (contract §3), it simply does nothing here.

/// A backfill provider and the plugin that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provider {
    /// The CLI name: `hyp backfill claude`.
    pub name: &'static str,
    /// The plugin name, which is also the reconciler's request key.
    pub plugin: &'static str,
}

/// Every backfill provider, in the order they run.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "claude",
        plugin: "@hypaware/claude",
    },
    Provider {
        name: "codex",
        plugin: "@hypaware/codex",
    },
];

pub const CENTRAL_PLUGIN: &str = "@hypaware/central";
pub const CLAUDE_PLUGIN: &str = "@hypaware/claude";
pub const CODEX_PLUGIN: &str = "@hypaware/codex";

/// The plugins this binary implements; every other name is inert here.
pub const IMPLEMENTED: &[&str] = &[CENTRAL_PLUGIN, CLAUDE_PLUGIN, CODEX_PLUGIN];

/// The capability a blob-sink writer provides when it encodes files.
pub const CAP_ENCODER: &str = "hypaware.encoder";
/// The capability a blob-sink destination provides.
pub const CAP_BLOB_STORE: &str = "hypaware.blob-store";
/// The capability a table-format writer provides.
pub const CAP_TABLE_FORMAT: &str = "hypaware.table-format";
/// The capability a request sink's plugin provides.
pub const CAP_HTTP_ENDPOINT: &str = "hypaware.http-endpoint";
/// The capability the AI gateway provides (claude and codex require it there).
pub const CAP_AI_GATEWAY: &str = "hypaware.ai-gateway";

/// One first-party plugin as the reference ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPlugin {
    pub name: &'static str,
    /// The bundled manifest version (recorded, never enforced here).
    pub version: &'static str,
    pub provides: &'static [&'static str],
    pub requires: &'static [&'static str],
    /// Datasets the plugin registers (`query.cache.retention.datasets` keys).
    pub datasets: &'static [&'static str],
}

impl KnownPlugin {
    pub fn provides_capability(&self, capability: &str) -> bool {
        self.provides.contains(&capability)
    }

    pub fn requires_capability(&self, capability: &str) -> bool {
        self.requires.contains(&capability)
    }
}

/// The first-party catalog (reference v1.24.0 manifests, config.md §6.2).
pub const KNOWN_PLUGINS: &[KnownPlugin] = &[
    KnownPlugin {
        name: "@hypaware/ai-gateway",
        version: "2.0.0",
        provides: &[CAP_AI_GATEWAY],
        requires: &[],
        datasets: &["ai_gateway_messages"],
    },
    KnownPlugin {
        name: CLAUDE_PLUGIN,
        version: "2.0.0",
        provides: &[],
        requires: &[CAP_AI_GATEWAY],
        datasets: &[],
    },
    KnownPlugin {
        name: CODEX_PLUGIN,
        version: "2.0.0",
        provides: &[],
        requires: &[CAP_AI_GATEWAY],
        datasets: &[],
    },
    KnownPlugin {
        name: "@hypaware/gascity",
        version: "1.0.0",
        provides: &[],
        requires: &[],
        datasets: &["gascity_messages"],
    },
    KnownPlugin {
        name: "@hypaware/otel",
        version: "1.0.0",
        provides: &[],
        requires: &[],
        datasets: &["logs", "traces", "metrics"],
    },
    KnownPlugin {
        name: "@hypaware/local-fs",
        version: "1.0.0",
        provides: &[CAP_BLOB_STORE],
        requires: &[],
        datasets: &[],
    },
    KnownPlugin {
        name: "@hypaware/s3",
        version: "1.0.0",
        provides: &[CAP_BLOB_STORE],
        requires: &[],
        datasets: &[],
    },
    KnownPlugin {
        name: "@hypaware/format-parquet",
        version: "1.0.0",
        provides: &[CAP_ENCODER],
        requires: &[CAP_BLOB_STORE],
        datasets: &[],
    },
    KnownPlugin {
        name: "@hypaware/format-jsonl",
        version: "1.0.0",
        provides: &[CAP_ENCODER],
        requires: &[CAP_BLOB_STORE],
        datasets: &[],
    },
    KnownPlugin {
        name: "@hypaware/format-iceberg",
        version: "1.0.0",
        provides: &[CAP_TABLE_FORMAT],
        requires: &[CAP_BLOB_STORE, CAP_ENCODER],
        datasets: &[],
    },
    KnownPlugin {
        name: CENTRAL_PLUGIN,
        version: "1.0.0",
        provides: &[CAP_HTTP_ENDPOINT],
        requires: &[],
        datasets: &[],
    },
    KnownPlugin {
        name: "@hypaware/webhook",
        version: "1.0.0",
        provides: &[CAP_HTTP_ENDPOINT],
        requires: &[],
        datasets: &[],
    },
];

/// The provider called `name` (`claude`, `codex`).
pub fn provider(name: &str) -> Option<Provider> {
    PROVIDERS
        .iter()
        .copied()
        .find(|provider| provider.name == name)
}

/// The provider owned by plugin `plugin` (`@hypaware/claude`).
pub fn provider_for_plugin(plugin: &str) -> Option<Provider> {
    PROVIDERS
        .iter()
        .copied()
        .find(|provider| provider.plugin == plugin)
}

/// The catalog entry for `name`, when it is a first-party plugin.
pub fn known_plugin(name: &str) -> Option<&'static KnownPlugin> {
    KNOWN_PLUGINS.iter().find(|plugin| plugin.name == name)
}

/// Whether this binary implements `name`.
pub fn is_implemented(name: &str) -> bool {
    IMPLEMENTED.contains(&name)
}

/// Whether `name` is inert here: accepted in config, but nothing on this
/// host acts on it. Everything except central, claude and codex.
pub fn is_inert(name: &str) -> bool {
    !is_implemented(name)
}

/// Whether any first-party plugin registers the dataset `name`.
pub fn is_known_dataset(name: &str) -> bool {
    KNOWN_PLUGINS
        .iter()
        .any(|plugin| plugin.datasets.contains(&name))
}

/// Every known dataset, in catalog order (for hints).
pub fn known_datasets() -> Vec<&'static str> {
    KNOWN_PLUGINS
        .iter()
        .flat_map(|plugin| plugin.datasets.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_central_claude_and_codex_are_live() {
        assert!(!is_inert(CENTRAL_PLUGIN));
        assert!(!is_inert("@hypaware/claude"));
        assert!(!is_inert("@hypaware/codex"));
        assert!(is_inert("@hypaware/ai-gateway"));
        assert!(is_inert("@hypaware/otel"));
        assert!(is_inert("@acme/never-heard-of-it"));
        assert!(is_inert(""));
    }

    #[test]
    fn providers_belong_to_implemented_known_plugins() {
        for provider in PROVIDERS {
            assert!(is_implemented(provider.plugin));
            assert!(known_plugin(provider.plugin).is_some());
            assert_eq!(provider_for_plugin(provider.plugin), Some(*provider));
            assert_eq!(self::provider(provider.name), Some(*provider));
        }
        assert_eq!(self::provider("cursor"), None);
    }

    #[test]
    fn catalog_names_are_unique_and_capabilities_match_the_reference() {
        for (index, plugin) in KNOWN_PLUGINS.iter().enumerate() {
            assert!(
                KNOWN_PLUGINS[index + 1..]
                    .iter()
                    .all(|other| other.name != plugin.name),
                "{} listed twice",
                plugin.name
            );
        }
        let providers_of = |capability: &str| -> Vec<&str> {
            KNOWN_PLUGINS
                .iter()
                .filter(|plugin| plugin.provides_capability(capability))
                .map(|plugin| plugin.name)
                .collect()
        };
        assert_eq!(
            providers_of(CAP_HTTP_ENDPOINT),
            ["@hypaware/central", "@hypaware/webhook"]
        );
        assert_eq!(
            providers_of(CAP_BLOB_STORE),
            ["@hypaware/local-fs", "@hypaware/s3"]
        );
        assert_eq!(
            providers_of(CAP_ENCODER),
            ["@hypaware/format-parquet", "@hypaware/format-jsonl"]
        );
        assert_eq!(providers_of(CAP_TABLE_FORMAT), ["@hypaware/format-iceberg"]);
        assert!(is_known_dataset("ai_gateway_messages"));
        assert!(!is_known_dataset("nope"));
    }
}
