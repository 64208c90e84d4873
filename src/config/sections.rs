//! Per-plugin section validators: what `@hypaware/claude` and
//! `@hypaware/codex` accept inside their entry's `config` (config.md §6.3).
//!
//! `backfill`, `capture` and `attach` (both plugins) and `telemetry` (claude
//! only) are strict: unknown keys inside them are errors. `capture` is hyp's
//! own (contract section 13); the reference's validators let it pass. Unknown sibling keys of
//! `config` (`proxy`, ...) pass. Errors have kind `config_section_invalid`
//! and pointers anchored at the entry (`/plugins/3/config/backfill/on_join`),
//! unlike the reference, whose pointers are relative to the slice.

use serde_json::{Map, Value};

use crate::config::catalog::{CLAUDE_PLUGIN, CODEX_PLUGIN};
use crate::config::policy::CAPTURE_INTERVAL_SECONDS;
use crate::config::schema::{integral, pointer_token};
use crate::config::{ConfigError, ErrorKind};

/// The section errors of one plugin entry (`name`, its `config`, its index
/// in `plugins[]`). A plugin without a validator has none. `config` is
/// `None` when the entry has no `config` key.
pub fn entry_errors(name: &str, config: Option<&Value>, index: usize) -> Vec<ConfigError> {
    let short_name = match name {
        CLAUDE_PLUGIN => "claude",
        CODEX_PLUGIN => "codex",
        _ => return Vec::new(),
    };
    let base = format!("/plugins/{index}/config");
    let mut errors = Vec::new();
    let config = match config {
        None | Some(Value::Null) => return errors,
        Some(Value::Object(config)) => config,
        Some(_) => {
            push(
                &mut errors,
                base,
                format!("{short_name} config must be an object"),
            );
            return errors;
        }
    };
    check_backfill(config, &base, &mut errors);
    check_capture(config, &base, &mut errors);
    check_attach(config, &base, &mut errors);
    if name == CLAUDE_PLUGIN {
        check_telemetry(config, &base, &mut errors);
    }
    errors
}

/// `backfill`: `{ on_join?: bool, window_days?: positive integer }`.
fn check_backfill(config: &Map<String, Value>, base: &str, errors: &mut Vec<ConfigError>) {
    let pointer = format!("{base}/backfill");
    let Some(block) = strict_block(config, "backfill", &pointer, errors) else {
        return;
    };
    for (key, value) in block {
        let at = format!("{pointer}/{}", pointer_token(key));
        match key.as_str() {
            "on_join" if !value.is_boolean() => {
                push(errors, at, "backfill.on_join must be a boolean".into());
            }
            "window_days" if !integral(value).is_some_and(|days| days > 0.0) => {
                push(
                    errors,
                    at,
                    "backfill.window_days must be a positive integer".into(),
                );
            }
            "on_join" | "window_days" => {}
            _ => push(errors, at, format!("unknown backfill key '{key}'")),
        }
    }
}

/// `capture`: `{ enabled?: bool, interval_seconds?: integer 30..=86400 }`.
fn check_capture(config: &Map<String, Value>, base: &str, errors: &mut Vec<ConfigError>) {
    let pointer = format!("{base}/capture");
    let Some(block) = strict_block(config, "capture", &pointer, errors) else {
        return;
    };
    let (min_seconds, max_seconds) = (
        *CAPTURE_INTERVAL_SECONDS.start(),
        *CAPTURE_INTERVAL_SECONDS.end(),
    );
    for (key, value) in block {
        let at = format!("{pointer}/{}", pointer_token(key));
        match key.as_str() {
            "enabled" if !value.is_boolean() => {
                push(errors, at, "capture.enabled must be a boolean".into());
            }
            "interval_seconds"
                if !integral(value).is_some_and(|seconds| {
                    (min_seconds as f64..=max_seconds as f64).contains(&seconds)
                }) =>
            {
                push(
                    errors,
                    at,
                    format!(
                        "capture.interval_seconds must be an integer between {min_seconds} and {max_seconds}"
                    ),
                );
            }
            "enabled" | "interval_seconds" => {}
            _ => push(errors, at, format!("unknown capture key '{key}'")),
        }
    }
}

/// `attach`: `{ on_join?: bool }`.
fn check_attach(config: &Map<String, Value>, base: &str, errors: &mut Vec<ConfigError>) {
    let pointer = format!("{base}/attach");
    let Some(block) = strict_block(config, "attach", &pointer, errors) else {
        return;
    };
    for (key, value) in block {
        let at = format!("{pointer}/{}", pointer_token(key));
        match key.as_str() {
            "on_join" if !value.is_boolean() => {
                push(errors, at, "attach.on_join must be a boolean".into());
            }
            "on_join" => {}
            _ => push(errors, at, format!("unknown attach key '{key}'")),
        }
    }
}

/// claude `telemetry`: `{ listen_host?: non-empty string,
/// listen_port?: integer 0..=65535, spool_max_bytes?: integer >= 1 }`.
fn check_telemetry(config: &Map<String, Value>, base: &str, errors: &mut Vec<ConfigError>) {
    let pointer = format!("{base}/telemetry");
    let Some(block) = strict_block(config, "telemetry", &pointer, errors) else {
        return;
    };
    for (key, value) in block {
        let at = format!("{pointer}/{}", pointer_token(key));
        match key.as_str() {
            "listen_host" if value.as_str().is_none_or(str::is_empty) => {
                push(
                    errors,
                    at,
                    "telemetry.listen_host must be a non-empty string".into(),
                );
            }
            "listen_port"
                if !integral(value).is_some_and(|port| (0.0..=65535.0).contains(&port)) =>
            {
                push(
                    errors,
                    at,
                    "telemetry.listen_port must be an integer between 0 and 65535".into(),
                );
            }
            "spool_max_bytes" if !integral(value).is_some_and(|bytes| bytes >= 1.0) => {
                push(
                    errors,
                    at,
                    "telemetry.spool_max_bytes must be a positive integer".into(),
                );
            }
            "listen_host" | "listen_port" | "spool_max_bytes" => {}
            _ => push(errors, at, format!("unknown telemetry key '{key}'")),
        }
    }
}

/// The block `config[key]` when it is an object; absent passes, anything
/// else (null included) is `<key> must be an object`.
fn strict_block<'a>(
    config: &'a Map<String, Value>,
    key: &str,
    pointer: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<&'a Map<String, Value>> {
    match config.get(key)? {
        Value::Object(block) => Some(block),
        _ => {
            push(
                errors,
                pointer.to_string(),
                format!("{key} must be an object"),
            );
            None
        }
    }
}

fn push(errors: &mut Vec<ConfigError>, pointer: String, message: String) {
    errors.push(ConfigError::new(
        ErrorKind::SectionInvalid,
        pointer,
        message,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(name: &str, config: Value) -> Vec<(String, String)> {
        let found = entry_errors(name, Some(&config), 2);
        assert!(
            found
                .iter()
                .all(|error| error.kind == "config_section_invalid")
        );
        found
            .into_iter()
            .map(|error| (error.pointer, error.message))
            .collect()
    }

    fn one(pointer: &str, message: &str) -> Vec<(String, String)> {
        vec![(pointer.to_string(), message.to_string())]
    }

    #[test]
    fn valid_sections_pass_and_siblings_are_ignored() {
        for name in [CLAUDE_PLUGIN, CODEX_PLUGIN] {
            assert!(check(name, json!({})).is_empty());
            assert!(
                check(
                    name,
                    json!({"backfill": {"on_join": false, "window_days": 30}, "attach": {"on_join": true},
                           "proxy": {"anything": [1]}})
                )
                .is_empty()
            );
            assert!(check(name, json!({"backfill": {"window_days": 7.0}})).is_empty());
            assert!(check(name, json!({"backfill": {}, "attach": {}})).is_empty());
            assert!(entry_errors(name, None, 0).is_empty());
            assert!(entry_errors(name, Some(&Value::Null), 0).is_empty());
        }
        assert!(
            check(
                CLAUDE_PLUGIN,
                json!({"telemetry": {"listen_host": "127.0.0.1", "listen_port": 0, "spool_max_bytes": 1}})
            )
            .is_empty()
        );
        assert!(
            check(
                CLAUDE_PLUGIN,
                json!({"telemetry": {"listen_port": 65535.0}})
            )
            .is_empty()
        );
    }

    #[test]
    fn other_plugins_have_no_validator() {
        assert!(check("@hypaware/otel", json!({"backfill": 1})).is_empty());
        assert!(check("@acme/x", json!("not even an object")).is_empty());
    }

    #[test]
    fn a_non_object_config_is_named_after_the_plugin() {
        assert_eq!(
            check(CLAUDE_PLUGIN, json!([])),
            one("/plugins/2/config", "claude config must be an object")
        );
        assert_eq!(
            check(CODEX_PLUGIN, json!("x")),
            one("/plugins/2/config", "codex config must be an object")
        );
    }

    #[test]
    fn backfill_rules() {
        for name in [CLAUDE_PLUGIN, CODEX_PLUGIN] {
            for bad in [json!(true), json!(null), json!([]), json!("on")] {
                assert_eq!(
                    check(name, json!({"backfill": bad})),
                    one("/plugins/2/config/backfill", "backfill must be an object")
                );
            }
            for bad in [json!("false"), json!(null), json!(0)] {
                assert_eq!(
                    check(name, json!({"backfill": {"on_join": bad}})),
                    one(
                        "/plugins/2/config/backfill/on_join",
                        "backfill.on_join must be a boolean"
                    )
                );
            }
            for bad in [json!(0), json!(-1), json!(1.5), json!("30"), json!(null)] {
                assert_eq!(
                    check(name, json!({"backfill": {"window_days": bad}})),
                    one(
                        "/plugins/2/config/backfill/window_days",
                        "backfill.window_days must be a positive integer"
                    )
                );
            }
            assert_eq!(
                check(name, json!({"backfill": {"window_day": 3}})),
                one(
                    "/plugins/2/config/backfill/window_day",
                    "unknown backfill key 'window_day'"
                )
            );
        }
    }

    #[test]
    fn capture_rules() {
        for name in [CLAUDE_PLUGIN, CODEX_PLUGIN] {
            for good in [
                json!({}),
                json!({"enabled": false}),
                json!({"enabled": true, "interval_seconds": 30}),
                json!({"interval_seconds": 86400}),
                json!({"interval_seconds": 300.0}),
            ] {
                assert!(check(name, json!({"capture": good})).is_empty(), "{good}");
            }
            for bad in [json!(true), json!(null), json!([]), json!("on"), json!(300)] {
                assert_eq!(
                    check(name, json!({"capture": bad})),
                    one("/plugins/2/config/capture", "capture must be an object")
                );
            }
            for bad in [json!("true"), json!(null), json!(1)] {
                assert_eq!(
                    check(name, json!({"capture": {"enabled": bad}})),
                    one(
                        "/plugins/2/config/capture/enabled",
                        "capture.enabled must be a boolean"
                    )
                );
            }
            for bad in [
                json!(29),
                json!(86401),
                json!(0),
                json!(-300),
                json!(300.5),
                json!("300"),
                json!(true),
                json!(null),
            ] {
                assert_eq!(
                    check(name, json!({"capture": {"interval_seconds": bad}})),
                    one(
                        "/plugins/2/config/capture/interval_seconds",
                        "capture.interval_seconds must be an integer between 30 and 86400"
                    )
                );
            }
            assert_eq!(
                check(name, json!({"capture": {"interval": 60}})),
                one(
                    "/plugins/2/config/capture/interval",
                    "unknown capture key 'interval'"
                )
            );
        }
    }

    #[test]
    fn capture_is_a_sibling_of_backfill() {
        assert!(
            check(
                CODEX_PLUGIN,
                json!({"backfill": {"on_join": true}, "capture": {"interval_seconds": 60}})
            )
            .is_empty()
        );
        assert_eq!(
            check(
                CLAUDE_PLUGIN,
                json!({"backfill": {"on_join": 1}, "capture": {"enabled": 1}})
            ),
            vec![
                (
                    "/plugins/2/config/backfill/on_join".to_string(),
                    "backfill.on_join must be a boolean".to_string()
                ),
                (
                    "/plugins/2/config/capture/enabled".to_string(),
                    "capture.enabled must be a boolean".to_string()
                ),
            ]
        );
        assert!(
            check("@acme/other", json!({"capture": {"interval_seconds": 1}})).is_empty(),
            "other plugins' capture blocks are not ours to judge"
        );
    }

    #[test]
    fn attach_rules() {
        for name in [CLAUDE_PLUGIN, CODEX_PLUGIN] {
            assert_eq!(
                check(name, json!({"attach": 1})),
                one("/plugins/2/config/attach", "attach must be an object")
            );
            assert_eq!(
                check(name, json!({"attach": {"on_join": "yes"}})),
                one(
                    "/plugins/2/config/attach/on_join",
                    "attach.on_join must be a boolean"
                )
            );
            assert_eq!(
                check(name, json!({"attach": {"on_joins": true}})),
                one(
                    "/plugins/2/config/attach/on_joins",
                    "unknown attach key 'on_joins'"
                )
            );
        }
    }

    #[test]
    fn telemetry_rules_apply_to_claude_only() {
        assert!(check(CODEX_PLUGIN, json!({"telemetry": 5})).is_empty());
        assert_eq!(
            check(CLAUDE_PLUGIN, json!({"telemetry": 5})),
            one("/plugins/2/config/telemetry", "telemetry must be an object")
        );
        assert_eq!(
            check(CLAUDE_PLUGIN, json!({"telemetry": {"listen_host": ""}})),
            one(
                "/plugins/2/config/telemetry/listen_host",
                "telemetry.listen_host must be a non-empty string"
            )
        );
        for bad in [json!(-1), json!(65536), json!(80.5), json!("80")] {
            assert_eq!(
                check(CLAUDE_PLUGIN, json!({"telemetry": {"listen_port": bad}})),
                one(
                    "/plugins/2/config/telemetry/listen_port",
                    "telemetry.listen_port must be an integer between 0 and 65535"
                )
            );
        }
        for bad in [json!(0), json!(2.5), json!(true)] {
            assert_eq!(
                check(
                    CLAUDE_PLUGIN,
                    json!({"telemetry": {"spool_max_bytes": bad}})
                ),
                one(
                    "/plugins/2/config/telemetry/spool_max_bytes",
                    "telemetry.spool_max_bytes must be a positive integer"
                )
            );
        }
        assert_eq!(
            check(CLAUDE_PLUGIN, json!({"telemetry": {"listen_ports": 1}})),
            one(
                "/plugins/2/config/telemetry/listen_ports",
                "unknown telemetry key 'listen_ports'"
            )
        );
    }

    #[test]
    fn every_error_is_collected() {
        let found = check(
            CLAUDE_PLUGIN,
            json!({"backfill": {"on_join": 1, "window_days": 0, "x": 1}, "capture": {"interval_seconds": 10}, "attach": [], "telemetry": {"listen_port": -1}}),
        );
        assert_eq!(found.len(), 6, "{found:?}");
    }
}
