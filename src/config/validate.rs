//! Validation beyond the shape: the cross-plugin checks (config.md §6.2)
//! against the static catalog, and the full validation that the apply engine
//! and `hyp config validate` run (shape, cross-plugin, and the section
//! validators of every enabled plugin entry).
//!
//! Deliberate differences from the reference (contract §3 and §11):
//! - `plugin_unknown` is never raised: an unknown plugin is inert.
//! - A sink whose writer, destination, request plugin or encoder pin is not
//!   in the first-party catalog is inert too: its pair checks are skipped
//!   (we cannot know what an unknown plugin provides), so a fleet config
//!   written for full HypAware hosts, whose sinks may use third-party
//!   plugins, still applies. Its `schedule` is still checked, and a sink
//!   that names a known plugin in the wrong role still fails.
//! - An unknown plugin name within a small edit distance of a known one
//!   (`@hypaware/claud`) is still inert and the config still valid, but
//!   [`plugin_name_warnings`] says which plugin was probably meant.

use serde_json::{Map, Value};

use crate::config::catalog::{
    self, CAP_BLOB_STORE, CAP_ENCODER, CAP_HTTP_ENDPOINT, CAP_TABLE_FORMAT, KnownPlugin,
};
use crate::config::cron::is_cron_expression;
use crate::config::schema::{pointer_token, shape_errors};
use crate::config::{ConfigError, ErrorKind, sections};

/// Shape, then (when the shape is sound) cross-plugin checks and the section
/// validators of every enabled entry. Empty means valid.
pub fn full_errors(document: &Value) -> Vec<ConfigError> {
    let shape = shape_errors(document);
    if !shape.is_empty() {
        return shape;
    }
    let mut errors = cross_plugin_errors(document);
    errors.extend(section_errors(document));
    errors
}

/// The cross-plugin checks, in the reference's order: duplicates, sinks,
/// retention datasets, capability ambiguity. Tolerates any input, but is
/// meant for a document whose shape is valid.
pub fn cross_plugin_errors(document: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let plugins = plugin_entries(document);
    check_duplicates(&plugins, &mut errors);
    if let Some(sinks) = document.get("sinks").and_then(Value::as_object) {
        for (name, sink) in sinks {
            if let Some(sink) = sink.as_object() {
                check_sink(name, sink, &mut errors);
            }
        }
    }
    check_retention_datasets(document, &mut errors);
    check_capability_ambiguity(document, &plugins, &mut errors);
    errors
}

/// The section validators of every enabled entry (only claude and codex have
/// one). Disabled entries are not validated: they do nothing.
pub fn section_errors(document: &Value) -> Vec<ConfigError> {
    plugin_entries(document)
        .into_iter()
        .filter(|entry| entry.enabled)
        .flat_map(|entry| sections::entry_errors(entry.name, entry.config, entry.index))
        .collect()
}

/// An unknown plugin name that looks like a typo of a known one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginNameWarning {
    /// `plugin_name_unknown`.
    pub kind: &'static str,
    pub pointer: String,
    pub name: String,
    pub did_you_mean: &'static str,
}

impl std::fmt::Display for PluginNameWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: plugin '{}' is not one hyp knows, so it stays inert (did you mean '{}'?)",
            self.pointer, self.name, self.did_you_mean
        )
    }
}

/// A warning per `plugins[]` name that is not in the catalog but is close
/// to a name that is. Warnings only: an unknown plugin is inert by design
/// (third-party plugins exist), so the config stays valid.
pub fn plugin_name_warnings(document: &Value) -> Vec<PluginNameWarning> {
    plugin_entries(document)
        .into_iter()
        .filter(|entry| catalog::known_plugin(entry.name).is_none())
        .filter_map(|entry| {
            let known = catalog::KNOWN_PLUGINS.iter().map(|plugin| plugin.name);
            let did_you_mean = crate::suggest::closest(entry.name, known)?;
            Some(PluginNameWarning {
                kind: "plugin_name_unknown",
                pointer: format!("/plugins/{}/name", entry.index),
                name: entry.name.to_string(),
                did_you_mean,
            })
        })
        .collect()
}

/// A `plugins[]` entry with a usable name, seen leniently.
struct RawEntry<'a> {
    index: usize,
    name: &'a str,
    enabled: bool,
    config: Option<&'a Value>,
}

fn plugin_entries(document: &Value) -> Vec<RawEntry<'_>> {
    let Some(entries) = document.get("plugins").and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let name = entry
                .get("name")?
                .as_str()
                .filter(|name| !name.is_empty())?;
            Some(RawEntry {
                index,
                name,
                enabled: entry.get("enabled") != Some(&Value::Bool(false)),
                config: entry.get("config"),
            })
        })
        .collect()
}

fn check_duplicates(plugins: &[RawEntry<'_>], errors: &mut Vec<ConfigError>) {
    for (position, entry) in plugins.iter().enumerate() {
        if let Some(first) = plugins[..position]
            .iter()
            .find(|earlier| earlier.name == entry.name)
        {
            errors.push(ConfigError::new(
                ErrorKind::DuplicatePlugin,
                format!("/plugins/{}", entry.index),
                format!(
                    "plugin '{}' is listed twice (also at /plugins/{})",
                    entry.name, first.index
                ),
            ));
        }
    }
}

fn check_sink(name: &str, sink: &Map<String, Value>, errors: &mut Vec<ConfigError>) {
    let pointer = format!("/sinks/{}", pointer_token(name));
    let is_blob = sink.contains_key("writer") || sink.contains_key("destination");
    if is_blob && sink.contains_key("plugin") {
        errors.push(ConfigError::new(
            ErrorKind::RequestSinkInvalidKeys,
            pointer,
            format!("sink '{name}' mixes writer/destination with plugin; pick one shape"),
        ));
        return;
    }
    if is_blob {
        check_blob_sink(name, &pointer, sink, errors);
    } else if let Some(plugin) = sink.get("plugin") {
        check_request_sink(name, &pointer, plugin, errors);
    } else {
        errors.push(ConfigError::new(
            ErrorKind::SinkPairIncompatible,
            pointer,
            format!("sink '{name}' has neither writer/destination nor plugin"),
        ));
        return;
    }
    if let Some(schedule) = sink.get("config").and_then(|config| config.get("schedule")) {
        check_schedule(name, &pointer, schedule, errors);
    }
}

fn known(value: Option<&Value>) -> Option<&'static KnownPlugin> {
    catalog::known_plugin(value?.as_str()?)
}

fn check_blob_sink(
    name: &str,
    pointer: &str,
    sink: &Map<String, Value>,
    errors: &mut Vec<ConfigError>,
) {
    // An unknown writer or destination makes the sink inert: nothing to check.
    let (Some(writer), Some(destination)) =
        (known(sink.get("writer")), known(sink.get("destination")))
    else {
        return;
    };
    let encoder = writer.provides_capability(CAP_ENCODER);
    let table_format = writer.provides_capability(CAP_TABLE_FORMAT);
    let writer_needs_blob = writer.requires_capability(CAP_BLOB_STORE);
    if !encoder && !table_format {
        errors.push(ConfigError::new(
            ErrorKind::SinkWriterInvalid,
            format!("{pointer}/writer"),
            format!(
                "sink '{name}': writer '{}' provides neither {CAP_ENCODER} nor {CAP_TABLE_FORMAT} - blob sinks need an encoder or table-format writer",
                writer.name
            ),
        ));
        return;
    }
    let destination_hint = if destination.provides_capability(CAP_HTTP_ENDPOINT) {
        format!(" (provides {CAP_HTTP_ENDPOINT} instead - only request sinks accept it)")
    } else {
        String::new()
    };
    let destination_is_store = destination.provides_capability(CAP_BLOB_STORE);
    if encoder {
        if !writer_needs_blob {
            errors.push(ConfigError::new(
                ErrorKind::SinkPairIncompatible,
                format!("{pointer}/writer"),
                format!(
                    "sink '{name}': writer '{}' must require {CAP_BLOB_STORE} and provide {CAP_ENCODER} (missing requires {CAP_BLOB_STORE})",
                    writer.name
                ),
            ));
        }
        if !destination_is_store {
            errors.push(ConfigError::new(
                ErrorKind::SinkPairIncompatible,
                format!("{pointer}/destination"),
                format!(
                    "sink '{name}': destination '{}' does not provide {CAP_BLOB_STORE}{destination_hint}",
                    destination.name
                ),
            ));
        }
        return;
    }
    if !writer_needs_blob {
        errors.push(ConfigError::new(
            ErrorKind::SinkWriterInvalid,
            format!("{pointer}/writer"),
            format!(
                "sink '{name}': writer '{}' provides {CAP_TABLE_FORMAT} but does not require {CAP_BLOB_STORE} (table-format writers must declare a blob-store dependency)",
                writer.name
            ),
        ));
    }
    if !destination_is_store {
        errors.push(ConfigError::new(
            ErrorKind::SinkDestinationInvalid,
            format!("{pointer}/destination"),
            format!(
                "sink '{name}': destination '{}' does not provide {CAP_BLOB_STORE}{destination_hint} (table-format writer '{}' needs a blob-store destination)",
                destination.name, writer.name
            ),
        ));
    }
    let encoder_pin = sink
        .get("config")
        .and_then(|config| config.get("encoder"))
        .and_then(Value::as_str)
        .filter(|pin| !pin.is_empty());
    if let Some(pinned) = encoder_pin
        .and_then(catalog::known_plugin)
        .filter(|pinned| !pinned.provides_capability(CAP_ENCODER))
    {
        errors.push(ConfigError::new(
            ErrorKind::SinkEncoderInvalid,
            format!("{pointer}/config/encoder"),
            format!(
                "sink '{name}': encoder plugin '{}' does not provide {CAP_ENCODER}",
                pinned.name
            ),
        ));
    }
}

fn check_request_sink(name: &str, pointer: &str, plugin: &Value, errors: &mut Vec<ConfigError>) {
    // An unknown request plugin makes the sink inert.
    let Some(plugin) = known(Some(plugin)) else {
        return;
    };
    if !plugin.provides_capability(CAP_HTTP_ENDPOINT) {
        errors.push(ConfigError::new(
            ErrorKind::SinkPairIncompatible,
            format!("{pointer}/plugin"),
            format!(
                "sink '{name}': request plugin '{}' must provide {CAP_HTTP_ENDPOINT}",
                plugin.name
            ),
        ));
    }
}

fn check_schedule(name: &str, pointer: &str, schedule: &Value, errors: &mut Vec<ConfigError>) {
    let at = format!("{pointer}/config/schedule");
    match schedule.as_str().filter(|text| !text.is_empty()) {
        None => errors.push(ConfigError::new(
            ErrorKind::SinkScheduleInvalid,
            at,
            format!("sink '{name}': schedule must be a 5-field cron string"),
        )),
        Some(text) if !is_cron_expression(text) => errors.push(ConfigError::new(
            ErrorKind::SinkScheduleInvalid,
            at,
            format!(
                "sink '{name}': schedule '{text}' is not a valid 5-field cron expression. Use standard cron grammar (e.g. '0 * * * *'); DSL aliases like @hourly are rejected."
            ),
        )),
        Some(_) => {}
    }
}

fn check_retention_datasets(document: &Value, errors: &mut Vec<ConfigError>) {
    let Some(datasets) = document
        .pointer("/query/cache/retention/datasets")
        .and_then(Value::as_object)
    else {
        return;
    };
    for dataset in datasets.keys() {
        if !catalog::is_known_dataset(dataset) {
            errors.push(ConfigError::new(
                ErrorKind::DatasetUnknown,
                format!("/query/cache/retention/datasets/{}", pointer_token(dataset)),
                format!("dataset '{dataset}' is not registered; cannot apply retention"),
            ));
        }
    }
}

/// Two or more enabled known plugins providing one capability need a valid
/// `disambiguate` pin naming one of them.
fn check_capability_ambiguity(
    document: &Value,
    plugins: &[RawEntry<'_>],
    errors: &mut Vec<ConfigError>,
) {
    let mut enabled: Vec<&str> = Vec::new();
    for entry in plugins.iter().filter(|entry| entry.enabled) {
        if !enabled.contains(&entry.name) {
            enabled.push(entry.name);
        }
    }
    let mut providers_by_capability: Vec<(&str, Vec<&str>)> = Vec::new();
    for plugin in enabled
        .iter()
        .filter_map(|name| catalog::known_plugin(name))
    {
        for capability in plugin.provides {
            match providers_by_capability
                .iter_mut()
                .find(|(known, _)| known == capability)
            {
                Some((_, providers)) => providers.push(plugin.name),
                None => providers_by_capability.push((capability, vec![plugin.name])),
            }
        }
    }
    let pins = document.get("disambiguate");
    for (capability, mut providers) in providers_by_capability {
        if providers.len() < 2 {
            continue;
        }
        let pinned = pins
            .and_then(|pins| pins.get(capability))
            .and_then(Value::as_str);
        if pinned.is_some_and(|pinned| providers.contains(&pinned)) {
            continue;
        }
        providers.sort_unstable();
        errors.push(ConfigError::new(
            ErrorKind::CapabilityAmbiguous,
            format!("/disambiguate/{}", pointer_token(capability)),
            format!(
                "capability '{capability}' is provided by {}; add disambiguate.{capability} = <one of the providers>",
                providers.join(", ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `(kind, pointer)` of every cross-plugin error.
    fn cross(document: Value) -> Vec<(String, String)> {
        cross_plugin_errors(&document)
            .into_iter()
            .map(|error| (error.kind, error.pointer))
            .collect()
    }

    fn pair(kind: &str, pointer: &str) -> (String, String) {
        (kind.to_string(), pointer.to_string())
    }

    #[test]
    fn a_typical_fleet_config_is_valid() {
        let document = json!({
            "version": 2,
            "plugins": [
                {"name": "@hypaware/central"},
                {"name": "@hypaware/ai-gateway"},
                {"name": "@hypaware/claude", "config": {"backfill": {"window_days": 30}}},
                {"name": "@hypaware/codex"},
                {"name": "@hypaware/format-parquet"},
                {"name": "@hypaware/local-fs"}
            ],
            "sinks": {
                "central": {"plugin": "@hypaware/central", "config": {"url": "https://c", "identity": {}, "schedule": "0 * * * *"}},
                "files": {"writer": "@hypaware/format-parquet", "destination": "@hypaware/local-fs"}
            },
            "query": {"cache": {"retention": {"default_days": 30, "datasets": {"ai_gateway_messages": 10}}}}
        });
        assert!(full_errors(&document).is_empty());
    }

    #[test]
    fn unknown_plugins_are_inert_never_errors() {
        assert!(
            cross(json!({"version": 2, "plugins": [{"name": "@acme/thing"}, {"name": "@hypaware/cursor", "enabled": false}]}))
                .is_empty()
        );
    }

    #[test]
    fn near_misses_of_known_plugins_are_warned_about() {
        let document = json!({"version": 2, "plugins": [
            {"name": "@hypaware/claud"},
            {"name": "@hypaware/codex"},
            {"name": "@acme/totally-different"},
            {"name": "@hypaware/centrl", "enabled": false},
        ]});
        let warnings = plugin_name_warnings(&document);
        let found: Vec<(&str, &str, &str)> = warnings
            .iter()
            .map(|warning| {
                (
                    warning.pointer.as_str(),
                    warning.name.as_str(),
                    warning.did_you_mean,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("/plugins/0/name", "@hypaware/claud", "@hypaware/claude"),
                ("/plugins/3/name", "@hypaware/centrl", "@hypaware/central"),
            ]
        );
        assert!(cross(document).is_empty(), "still valid, still inert");
    }

    #[test]
    fn duplicates_are_reported_at_the_later_index_disabled_included() {
        let errors = cross_plugin_errors(&json!({"version": 2, "plugins": [
            {"name": "@hypaware/claude"},
            {"name": "@hypaware/codex"},
            {"name": "@hypaware/claude", "enabled": false},
            {"name": "@hypaware/claude"}
        ]}));
        let found: Vec<(String, String, String)> = errors
            .into_iter()
            .map(|error| (error.kind, error.pointer, error.message))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "duplicate_plugin".to_string(),
                    "/plugins/2".to_string(),
                    "plugin '@hypaware/claude' is listed twice (also at /plugins/0)".to_string()
                ),
                (
                    "duplicate_plugin".to_string(),
                    "/plugins/3".to_string(),
                    "plugin '@hypaware/claude' is listed twice (also at /plugins/0)".to_string()
                ),
            ]
        );
    }

    #[test]
    fn request_sinks_need_an_http_endpoint_plugin() {
        assert!(cross(json!({"version": 2, "sinks": {"c": {"plugin": "@hypaware/central"}, "w": {"plugin": "@hypaware/webhook"}}})).is_empty());
        assert_eq!(
            cross(json!({"version": 2, "sinks": {"c": {"plugin": "@hypaware/claude"}}})),
            [pair("sink_pair_incompatible", "/sinks/c/plugin")]
        );
    }

    #[test]
    fn sinks_naming_unknown_plugins_are_inert() {
        assert!(
            cross(json!({"version": 2, "sinks": {
                "r": {"plugin": "@acme/endpoint"},
                "b": {"writer": "@acme/writer", "destination": "@hypaware/local-fs"},
                "d": {"writer": "@hypaware/format-parquet", "destination": "@acme/store"},
                "i": {"writer": "@hypaware/format-iceberg", "destination": "@hypaware/s3", "config": {"encoder": "@acme/enc"}}
            }}))
            .is_empty()
        );
    }

    #[test]
    fn blob_sink_pairs_follow_the_capabilities() {
        assert_eq!(
            cross(json!({"version": 2, "sinks": {
                "a": {"writer": "@hypaware/central", "destination": "@hypaware/local-fs"},
                "b": {"writer": "@hypaware/format-jsonl", "destination": "@hypaware/central"},
                "c": {"writer": "@hypaware/format-iceberg", "destination": "@hypaware/webhook"},
                "d": {"writer": "@hypaware/format-iceberg", "destination": "@hypaware/s3", "config": {"encoder": "@hypaware/local-fs"}},
                "e": {"writer": "@hypaware/format-iceberg", "destination": "@hypaware/s3", "config": {"encoder": "@hypaware/format-parquet"}},
                "f": {"writer": "@hypaware/format-jsonl", "destination": "@hypaware/codex"}
            }})),
            [
                pair("sink_writer_invalid", "/sinks/a/writer"),
                pair("sink_pair_incompatible", "/sinks/b/destination"),
                pair("sink_destination_invalid", "/sinks/c/destination"),
                pair("sink_encoder_invalid", "/sinks/d/config/encoder"),
                pair("sink_pair_incompatible", "/sinks/f/destination"),
            ]
        );
        let messages: Vec<String> = cross_plugin_errors(&json!({"version": 2, "sinks": {
            "b": {"writer": "@hypaware/format-jsonl", "destination": "@hypaware/central"}
        }}))
        .into_iter()
        .map(|error| error.message)
        .collect();
        assert_eq!(
            messages,
            [
                "sink 'b': destination '@hypaware/central' does not provide hypaware.blob-store (provides hypaware.http-endpoint instead - only request sinks accept it)"
            ]
        );
    }

    #[test]
    fn mixed_or_empty_sinks_are_reported_when_shape_was_skipped() {
        assert_eq!(
            cross(json!({"version": 2, "sinks": {
                "m": {"plugin": "@hypaware/central", "writer": "x"},
                "n": {}
            }})),
            [
                pair("request_sink_invalid_keys", "/sinks/m"),
                pair("sink_pair_incompatible", "/sinks/n"),
            ]
        );
    }

    #[test]
    fn schedules_must_be_strict_cron_even_on_inert_sinks() {
        assert_eq!(
            cross(json!({"version": 2, "sinks": {
                "a": {"plugin": "@hypaware/central", "config": {"schedule": "@hourly"}},
                "b": {"plugin": "@acme/x", "config": {"schedule": 5}},
                "c": {"plugin": "@hypaware/central", "config": {"schedule": "*/15 * * * *"}},
                "d": {"plugin": "@hypaware/central", "config": {"schedule": ""}}
            }})),
            [
                pair("sink_schedule_invalid", "/sinks/a/config/schedule"),
                pair("sink_schedule_invalid", "/sinks/b/config/schedule"),
                pair("sink_schedule_invalid", "/sinks/d/config/schedule"),
            ]
        );
    }

    #[test]
    fn retention_datasets_must_be_known() {
        assert_eq!(
            cross(
                json!({"version": 2, "query": {"cache": {"retention": {"default_days": 1,
                "datasets": {"logs": 1, "ai_gateway_messages": 2, "nope": 3}}}}})
            ),
            [pair(
                "dataset_unknown",
                "/query/cache/retention/datasets/nope"
            )]
        );
    }

    #[test]
    fn two_enabled_providers_of_a_capability_are_ambiguous_unless_pinned() {
        let plugins = json!([
            {"name": "@hypaware/format-parquet"},
            {"name": "@hypaware/format-jsonl"}
        ]);
        let errors = cross_plugin_errors(&json!({"version": 2, "plugins": plugins}));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, "capability_ambiguous");
        assert_eq!(errors[0].pointer, "/disambiguate/hypaware.encoder");
        assert_eq!(
            errors[0].message,
            "capability 'hypaware.encoder' is provided by @hypaware/format-jsonl, @hypaware/format-parquet; add disambiguate.hypaware.encoder = <one of the providers>"
        );
        assert!(
            cross(json!({"version": 2, "plugins": plugins,
                "disambiguate": {"hypaware.encoder": "@hypaware/format-jsonl"}}))
            .is_empty()
        );
        assert_eq!(
            cross(json!({"version": 2, "plugins": plugins,
                "disambiguate": {"hypaware.encoder": "@hypaware/s3"}})),
            [pair(
                "capability_ambiguous",
                "/disambiguate/hypaware.encoder"
            )]
        );
        assert!(
            cross(json!({"version": 2, "plugins": [
                {"name": "@hypaware/format-parquet"},
                {"name": "@hypaware/format-jsonl", "enabled": false}
            ]}))
            .is_empty()
        );
    }

    #[test]
    fn full_validation_runs_sections_of_enabled_entries_only() {
        let document = json!({"version": 2, "plugins": [
            {"name": "@hypaware/claude", "config": {"backfill": {"on_join": "no"}}},
            {"name": "@hypaware/codex", "enabled": false, "config": {"backfill": {"bogus": 1}}}
        ]});
        let errors = full_errors(&document);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind, "config_section_invalid");
        assert_eq!(errors[0].pointer, "/plugins/0/config/backfill/on_join");
        assert!(cross_plugin_errors(&document).is_empty());
    }

    #[test]
    fn full_validation_stops_at_shape_errors() {
        let errors = full_errors(&json!({"version": 1, "plugins": [
            {"name": "@hypaware/claude"}, {"name": "@hypaware/claude"}
        ]}));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, "config_invalid_shape");
        assert!(!full_errors(&json!("nope")).is_empty());
    }
}
