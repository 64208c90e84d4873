//! The v2 shape check (config.md §2.1-§2.5): the top level is strict, plugin
//! and sink entries and `query` are lenient (unknown keys pass). Every error
//! is collected, not just the first, with kind `config_invalid_shape`.
//!
//! The check reads a raw `serde_json::Value` and never fails on any input;
//! the raw document is kept as is (nothing here rewrites it).

use serde_json::{Map, Value};

use crate::config::{ConfigError, ErrorKind};

/// The only keys allowed at the top level.
pub const TOP_LEVEL_KEYS: &[&str] = &["version", "plugins", "sinks", "query", "disambiguate"];

/// Pin fields a served config may set on a plugin entry (recorded, not enforced).
const PIN_KEYS: &[&str] = &["version", "artifact_hash", "source"];

/// Numeric knobs of `query.cache.maintenance`, each a number >= 0.
const MAINTENANCE_NUMBERS: &[&str] = &[
    "interval_minutes",
    "target_file_bytes",
    "min_snapshots_to_keep",
    "max_snapshot_age_hours",
    "compact_file_count",
    "compact_avg_file_bytes",
    "compact_batch_bytes",
    "max_tick_ms",
];

/// All shape errors of `document`; empty means the shape is valid.
pub fn shape_errors(document: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let Some(root) = document.as_object() else {
        push(&mut errors, "", "config must be a JSON object");
        return errors;
    };
    if root.get("version").and_then(integral) != Some(2.0) {
        push(&mut errors, "/version", "version must be exactly 2");
    }
    if let Some(plugins) = root.get("plugins") {
        check_plugins(plugins, &mut errors);
    }
    if let Some(sinks) = root.get("sinks") {
        check_sinks(sinks, &mut errors);
    }
    if let Some(query) = root.get("query") {
        match query.as_object() {
            Some(query) => check_query(query, &mut errors),
            None => push(&mut errors, "/query", "query must be an object"),
        }
    }
    if let Some(disambiguate) = root.get("disambiguate") {
        check_disambiguate(disambiguate, &mut errors);
    }
    for key in root.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            push(
                &mut errors,
                &format!("/{}", pointer_token(key)),
                &format!("unrecognized top-level key '{key}'"),
            );
        }
    }
    errors
}

fn check_plugins(plugins: &Value, errors: &mut Vec<ConfigError>) {
    let Some(entries) = plugins.as_array() else {
        push(errors, "/plugins", "plugins must be an array");
        return;
    };
    for (index, entry) in entries.iter().enumerate() {
        let pointer = format!("/plugins/{index}");
        let Some(entry) = entry.as_object() else {
            push(errors, &pointer, "plugin entry must be an object");
            continue;
        };
        if !entry.get("name").is_some_and(is_non_empty_string) {
            push(
                errors,
                &format!("{pointer}/name"),
                "name (plugin name) is required",
            );
            continue;
        }
        if entry
            .get("enabled")
            .is_some_and(|enabled| !enabled.is_boolean())
        {
            push(
                errors,
                &format!("{pointer}/enabled"),
                "enabled must be a boolean when present",
            );
        }
        if entry
            .get("config")
            .is_some_and(|config| !config.is_object())
        {
            push(
                errors,
                &format!("{pointer}/config"),
                "config must be an object when present",
            );
        }
        for key in PIN_KEYS {
            if entry.get(*key).is_some_and(|pin| !is_non_empty_string(pin)) {
                push(
                    errors,
                    &format!("{pointer}/{key}"),
                    &format!("{key} must be a non-empty string when present"),
                );
            }
        }
    }
}

fn check_sinks(sinks: &Value, errors: &mut Vec<ConfigError>) {
    let Some(sinks) = sinks.as_object() else {
        push(
            errors,
            "/sinks",
            "sinks must be an object keyed by instance name",
        );
        return;
    };
    for (name, entry) in sinks {
        if name.is_empty() {
            push(
                errors,
                "/sinks",
                "sink instance names must be non-empty strings",
            );
            continue;
        }
        check_sink(&format!("/sinks/{}", pointer_token(name)), entry, errors);
    }
}

fn check_sink(pointer: &str, entry: &Value, errors: &mut Vec<ConfigError>) {
    let Some(sink) = entry.as_object() else {
        push(errors, pointer, "sink entry must be an object");
        return;
    };
    let has_writer = sink.contains_key("writer");
    let has_destination = sink.contains_key("destination");
    let has_plugin = sink.contains_key("plugin");
    if has_plugin && (has_writer || has_destination) {
        push(
            errors,
            pointer,
            "sink instance cannot combine writer/destination with plugin",
        );
    }
    let config_is_bad = sink.get("config").is_some_and(|config| !config.is_object());
    if has_writer || has_destination {
        if !sink.get("writer").is_some_and(is_non_empty_string) {
            push(
                errors,
                &format!("{pointer}/writer"),
                "writer (plugin name) is required for blob sinks",
            );
        }
        if !sink.get("destination").is_some_and(is_non_empty_string) {
            push(
                errors,
                &format!("{pointer}/destination"),
                "destination (plugin name) is required for blob sinks",
            );
        }
    } else if has_plugin {
        if !sink.get("plugin").is_some_and(is_non_empty_string) {
            push(
                errors,
                &format!("{pointer}/plugin"),
                "plugin (plugin name) is required for request sinks",
            );
            return;
        }
    } else {
        push(
            errors,
            pointer,
            "sink must specify either writer+destination (blob) or plugin (request)",
        );
        return;
    }
    if config_is_bad {
        push(
            errors,
            &format!("{pointer}/config"),
            "config must be an object when present",
        );
    }
}

fn check_query(query: &Map<String, Value>, errors: &mut Vec<ConfigError>) {
    if let Some(cache) = query.get("cache") {
        match cache.as_object() {
            Some(cache) => check_query_cache(cache, errors),
            None => push(errors, "/query/cache", "query.cache must be an object"),
        }
    }
    let mut remote_names: Vec<&str> = Vec::new();
    if let Some(remotes) = query.get("remotes") {
        match remotes.as_object() {
            Some(remotes) => {
                for (name, target) in remotes {
                    if check_remote(name, target, errors) {
                        remote_names.push(name);
                    }
                }
            }
            None => push(
                errors,
                "/query/remotes",
                "query.remotes must be an object keyed by target name",
            ),
        }
    }
    if let Some(default_remote) = query.get("default_remote") {
        match default_remote.as_str().filter(|name| !name.is_empty()) {
            None => push(
                errors,
                "/query/default_remote",
                "query.default_remote must be a non-empty string",
            ),
            Some(name) if !remote_names.contains(&name) => push(
                errors,
                "/query/default_remote",
                &format!("query.default_remote '{name}' is not a defined remote target"),
            ),
            Some(_) => {}
        }
    }
}

/// One `query.remotes` target; true when it is well formed.
fn check_remote(name: &str, target: &Value, errors: &mut Vec<ConfigError>) -> bool {
    if name.is_empty() {
        push(
            errors,
            "/query/remotes",
            "remote target names must be non-empty strings",
        );
        return false;
    }
    let pointer = format!("/query/remotes/{}", pointer_token(name));
    let Some(target) = target.as_object() else {
        push(
            errors,
            &pointer,
            "remote target must be an object with a url",
        );
        return false;
    };
    match target.get("url").and_then(Value::as_str) {
        Some(url) if !url.is_empty() => {
            if url.starts_with("http://") || url.starts_with("https://") {
                true
            } else {
                push(
                    errors,
                    &format!("{pointer}/url"),
                    "remote target url must be an http(s) URL",
                );
                false
            }
        }
        _ => {
            push(
                errors,
                &format!("{pointer}/url"),
                "remote target url is required and must be a non-empty string",
            );
            false
        }
    }
}

fn check_query_cache(cache: &Map<String, Value>, errors: &mut Vec<ConfigError>) {
    if cache
        .get("dir")
        .is_some_and(|dir| !is_non_empty_string(dir))
    {
        push(
            errors,
            "/query/cache/dir",
            "query.cache.dir must be a non-empty string",
        );
    }
    if let Some(retention) = cache.get("retention") {
        check_retention(retention, errors);
    }
    if let Some(maintenance) = cache.get("maintenance") {
        let Some(maintenance) = maintenance.as_object() else {
            push(
                errors,
                "/query/cache/maintenance",
                "query.cache.maintenance must be an object",
            );
            return;
        };
        if maintenance
            .get("enabled")
            .is_some_and(|enabled| !enabled.is_boolean())
        {
            push(
                errors,
                "/query/cache/maintenance/enabled",
                "must be a boolean",
            );
        }
        for key in MAINTENANCE_NUMBERS {
            if maintenance
                .get(*key)
                .is_some_and(|value| non_negative_number(value).is_none())
            {
                push(
                    errors,
                    &format!("/query/cache/maintenance/{key}"),
                    "must be a non-negative number",
                );
            }
        }
    }
}

fn check_retention(retention: &Value, errors: &mut Vec<ConfigError>) {
    let Some(retention) = retention.as_object() else {
        push(
            errors,
            "/query/cache/retention",
            "query.cache.retention must be an object",
        );
        return;
    };
    if retention
        .get("default_days")
        .and_then(non_negative_number)
        .is_none()
    {
        push(
            errors,
            "/query/cache/retention/default_days",
            "query.cache.retention.default_days must be a non-negative number",
        );
    }
    let Some(datasets) = retention.get("datasets") else {
        return;
    };
    let Some(datasets) = datasets.as_object() else {
        push(
            errors,
            "/query/cache/retention/datasets",
            "query.cache.retention.datasets must be an object of dataset name -> days",
        );
        return;
    };
    for (dataset, days) in datasets {
        if non_negative_number(days).is_none() {
            push(
                errors,
                &format!("/query/cache/retention/datasets/{}", pointer_token(dataset)),
                "dataset retention must be a non-negative number of days",
            );
        }
    }
}

fn check_disambiguate(disambiguate: &Value, errors: &mut Vec<ConfigError>) {
    let Some(pins) = disambiguate.as_object() else {
        push(
            errors,
            "/disambiguate",
            "disambiguate must be a map of capability name -> plugin name",
        );
        return;
    };
    for (capability, plugin) in pins {
        if !is_non_empty_string(plugin) {
            push(
                errors,
                &format!("/disambiguate/{}", pointer_token(capability)),
                "disambiguate values must be non-empty plugin name strings",
            );
        }
    }
}

fn push(errors: &mut Vec<ConfigError>, pointer: &str, message: &str) {
    errors.push(ConfigError::new(ErrorKind::InvalidShape, pointer, message));
}

pub(crate) fn is_non_empty_string(value: &Value) -> bool {
    value.as_str().is_some_and(|text| !text.is_empty())
}

/// A number with no fractional part (`5` and `5.0` alike), as the JS
/// reference sees integers.
pub(crate) fn integral(value: &Value) -> Option<f64> {
    let number = value.as_f64()?;
    (number.is_finite() && number.fract() == 0.0).then_some(number)
}

/// A finite number >= 0.
pub(crate) fn non_negative_number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .filter(|number| number.is_finite() && *number >= 0.0)
}

/// One JSON-pointer reference token (RFC 6901: `~` -> `~0`, `/` -> `~1`).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `(pointer, message)` of every error, for compact assertions.
    fn errors(document: Value) -> Vec<(String, String)> {
        let found = shape_errors(&document);
        assert!(
            found
                .iter()
                .all(|error| error.kind == "config_invalid_shape"),
            "every shape error has kind config_invalid_shape: {found:?}"
        );
        found
            .into_iter()
            .map(|error| (error.pointer, error.message))
            .collect()
    }

    fn pointers(document: Value) -> Vec<String> {
        errors(document)
            .into_iter()
            .map(|(pointer, _)| pointer)
            .collect()
    }

    #[test]
    fn a_minimal_document_is_valid() {
        assert!(errors(json!({"version": 2})).is_empty());
        assert!(errors(json!({"version": 2.0})).is_empty());
        assert!(
            errors(json!({
                "version": 2,
                "plugins": [{"name": "@hypaware/central", "enabled": true, "config": {},
                             "version": "1.0.0", "artifact_hash": "sha256:x", "source": "git",
                             "anything_else": [1, 2]}],
                "sinks": {
                    "central": {"plugin": "@hypaware/central", "config": {"url": "https://c"}, "extra": 1},
                    "files": {"writer": "@hypaware/format-parquet", "destination": "@hypaware/local-fs"}
                },
                "query": {"cache": {"dir": "/x", "retention": {"default_days": 0, "datasets": {"logs": 3.5}},
                                    "maintenance": {"enabled": false, "max_tick_ms": 10}, "other": 1},
                          "remotes": {"prod": {"url": "https://q"}}, "default_remote": "prod"},
                "disambiguate": {"hypaware.encoder": "@hypaware/format-parquet"}
            }))
            .is_empty()
        );
    }

    #[test]
    fn the_root_must_be_an_object() {
        for root in [json!([]), json!("x"), json!(null), json!(2)] {
            assert_eq!(
                errors(root),
                [("".to_string(), "config must be a JSON object".to_string())]
            );
        }
    }

    #[test]
    fn version_must_be_exactly_two() {
        for version in [json!(1), json!("2"), json!(2.5), json!(null)] {
            assert_eq!(
                errors(json!({"version": version})),
                [(
                    "/version".to_string(),
                    "version must be exactly 2".to_string()
                )]
            );
        }
        assert_eq!(pointers(json!({})), ["/version"]);
    }

    #[test]
    fn unknown_top_level_keys_are_errors_and_all_errors_are_collected() {
        assert_eq!(
            errors(json!({"version": 3, "mode": "x", "a/b": 1, "plugins": {}})),
            [
                (
                    "/version".to_string(),
                    "version must be exactly 2".to_string()
                ),
                (
                    "/plugins".to_string(),
                    "plugins must be an array".to_string()
                ),
                (
                    "/mode".to_string(),
                    "unrecognized top-level key 'mode'".to_string()
                ),
                (
                    "/a~1b".to_string(),
                    "unrecognized top-level key 'a/b'".to_string()
                ),
            ]
        );
    }

    #[test]
    fn plugin_entries_are_checked_field_by_field() {
        let found = errors(json!({"version": 2, "plugins": [
            "x",
            {},
            {"name": ""},
            {"name": "a", "enabled": "no", "config": [], "version": "", "artifact_hash": 3, "source": null},
            {"name": "b", "config": null}
        ]}));
        assert_eq!(
            found,
            [
                (
                    "/plugins/0".to_string(),
                    "plugin entry must be an object".to_string()
                ),
                (
                    "/plugins/1/name".to_string(),
                    "name (plugin name) is required".to_string()
                ),
                (
                    "/plugins/2/name".to_string(),
                    "name (plugin name) is required".to_string()
                ),
                (
                    "/plugins/3/enabled".to_string(),
                    "enabled must be a boolean when present".to_string()
                ),
                (
                    "/plugins/3/config".to_string(),
                    "config must be an object when present".to_string()
                ),
                (
                    "/plugins/3/version".to_string(),
                    "version must be a non-empty string when present".to_string()
                ),
                (
                    "/plugins/3/artifact_hash".to_string(),
                    "artifact_hash must be a non-empty string when present".to_string()
                ),
                (
                    "/plugins/3/source".to_string(),
                    "source must be a non-empty string when present".to_string()
                ),
                (
                    "/plugins/4/config".to_string(),
                    "config must be an object when present".to_string()
                ),
            ]
        );
    }

    #[test]
    fn sinks_take_one_of_two_shapes() {
        assert_eq!(pointers(json!({"version": 2, "sinks": []})), ["/sinks"]);
        let found = errors(json!({"version": 2, "sinks": {
            "": {"plugin": "p"},
            "notobj": 1,
            "mixed": {"plugin": "p", "writer": "w", "destination": "d"},
            "halfblob": {"writer": "w"},
            "emptyplugin": {"plugin": ""},
            "neither": {"config": {}},
            "badconfig": {"plugin": "p", "config": "x"},
            "a/b": {"writer": "w", "destination": "d", "config": 1}
        }}));
        assert_eq!(
            found,
            [
                (
                    "/sinks".to_string(),
                    "sink instance names must be non-empty strings".to_string()
                ),
                (
                    "/sinks/notobj".to_string(),
                    "sink entry must be an object".to_string()
                ),
                (
                    "/sinks/mixed".to_string(),
                    "sink instance cannot combine writer/destination with plugin".to_string()
                ),
                (
                    "/sinks/halfblob/destination".to_string(),
                    "destination (plugin name) is required for blob sinks".to_string()
                ),
                (
                    "/sinks/emptyplugin/plugin".to_string(),
                    "plugin (plugin name) is required for request sinks".to_string()
                ),
                (
                    "/sinks/neither".to_string(),
                    "sink must specify either writer+destination (blob) or plugin (request)"
                        .to_string()
                ),
                (
                    "/sinks/badconfig/config".to_string(),
                    "config must be an object when present".to_string()
                ),
                (
                    "/sinks/a~1b/config".to_string(),
                    "config must be an object when present".to_string()
                ),
            ]
        );
    }

    #[test]
    fn query_is_checked_where_it_has_rules() {
        assert_eq!(pointers(json!({"version": 2, "query": []})), ["/query"]);
        assert_eq!(
            pointers(json!({"version": 2, "query": {"cache": 1}})),
            ["/query/cache"]
        );
        assert_eq!(
            pointers(json!({"version": 2, "query": {"cache": {
                "dir": "",
                "retention": {"datasets": {"logs": -1, "traces": "7"}},
                "maintenance": {"enabled": 1, "interval_minutes": -5, "max_tick_ms": "x"}
            }}})),
            [
                "/query/cache/dir",
                "/query/cache/retention/default_days",
                "/query/cache/retention/datasets/logs",
                "/query/cache/retention/datasets/traces",
                "/query/cache/maintenance/enabled",
                "/query/cache/maintenance/interval_minutes",
                "/query/cache/maintenance/max_tick_ms",
            ]
        );
        assert_eq!(
            pointers(
                json!({"version": 2, "query": {"cache": {"retention": 5, "maintenance": []}}})
            ),
            ["/query/cache/retention", "/query/cache/maintenance"]
        );
        assert_eq!(
            pointers(
                json!({"version": 2, "query": {"cache": {"retention": {"default_days": 1, "datasets": []}}}})
            ),
            ["/query/cache/retention/datasets"]
        );
        assert_eq!(
            pointers(json!({"version": 2, "query": {
                "remotes": {"a": {"url": "ftp://x"}, "b": 1, "c": {}},
                "default_remote": "a"
            }})),
            [
                "/query/remotes/a/url",
                "/query/remotes/b",
                "/query/remotes/c/url",
                "/query/default_remote"
            ]
        );
        assert_eq!(
            pointers(json!({"version": 2, "query": {"remotes": [], "default_remote": ""}})),
            ["/query/remotes", "/query/default_remote"]
        );
    }

    #[test]
    fn disambiguate_maps_capabilities_to_plugin_names() {
        assert_eq!(
            pointers(json!({"version": 2, "disambiguate": ["x"]})),
            ["/disambiguate"]
        );
        assert_eq!(
            pointers(
                json!({"version": 2, "disambiguate": {"hypaware.encoder": "", "ok": "p", "n": 1}})
            ),
            ["/disambiguate/hypaware.encoder", "/disambiguate/n"]
        );
    }

    #[test]
    fn integral_floats_count_as_integers() {
        assert_eq!(integral(&json!(5)), Some(5.0));
        assert_eq!(integral(&json!(5.0)), Some(5.0));
        assert_eq!(integral(&json!(-3)), Some(-3.0));
        assert_eq!(integral(&json!(5.5)), None);
        assert_eq!(integral(&json!("5")), None);
        assert_eq!(integral(&json!(u64::MAX)), Some(u64::MAX as f64));
    }
}
