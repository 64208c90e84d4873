//! The plugins this binary knows. Any other name is accepted and inert.

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
