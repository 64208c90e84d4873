//! Redaction for printing config documents: the seed carries the fleet's
//! bootstrap token, and a config may carry other secrets. `hyp config show`
//! prints documents through this so a pasted output never leaks them.

use serde_json::{Map, Value};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// A copy of `value` where every string under a key that names a secret
/// (`token`, `secret`, `password`, `api_key`, case-insensitive substring)
/// is replaced by `"<redacted>"`. Objects and arrays are walked; other
/// values under such keys (numbers, booleans, null) are kept.
pub fn redact_secrets(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, inner)| {
                    let redacted = match inner {
                        Value::String(_) if names_a_secret(key) => Value::from(REDACTED),
                        other => redact_secrets(other),
                    };
                    (key.clone(), redacted)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_secrets).collect()),
        other => other.clone(),
    }
}

fn names_a_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "secret", "password", "api_key", "apikey"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_and_secrets_are_redacted_everywhere() {
        let seed = json!({"version": 2, "sinks": {"central": {"plugin": "@hypaware/central",
            "config": {"url": "https://c", "identity": {"bootstrap_token": "tok-1", "persisted_path": "/p"}}}},
            "plugins": [{"name": "x", "config": {"list": [{"Client_Secret": "s"}], "max_tokens": 5,
                                                  "apiKey": "k", "password": null}}]});
        let redacted = redact_secrets(&seed);
        assert_eq!(
            redacted["sinks"]["central"]["config"]["identity"],
            json!({"bootstrap_token": "<redacted>", "persisted_path": "/p"})
        );
        assert_eq!(
            redacted["plugins"][0]["config"],
            json!({"list": [{"Client_Secret": "<redacted>"}], "max_tokens": 5, "apiKey": "<redacted>", "password": null})
        );
        assert_eq!(redacted["sinks"]["central"]["config"]["url"], "https://c");
        assert!(!redacted.to_string().contains("tok-1"));
    }
}
