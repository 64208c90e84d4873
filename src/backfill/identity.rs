//! Row identity: the fallback message id (a hash of scope, role and the
//! canonical JSON of the content), the provenance hash of a source path, and
//! credential redaction for git remotes. The hash preimage must match the
//! reference byte for byte, so canonical JSON follows `JSON.stringify` with
//! keys sorted by UTF-16 code unit.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The first 16 hex chars of sha256(`text`).
pub fn sha256_hex16(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The fallback `message_id` of a message without a native id.
pub fn fallback_message_id(
    thread_scope: &str,
    agent_id: Option<&str>,
    role: &str,
    content: &[Value],
) -> String {
    let mut preimage = String::with_capacity(256);
    preimage.push_str(thread_scope);
    if let Some(agent) = agent_id {
        preimage.push(':');
        preimage.push_str(agent);
    }
    preimage.push(':');
    preimage.push_str(role);
    preimage.push(':');
    preimage.push('[');
    for (index, block) in content.iter().enumerate() {
        if index > 0 {
            preimage.push(',');
        }
        match block {
            Value::Object(map) => {
                write_object(&mut preimage, map, &["cache_control", "caller"]);
            }
            other => write_canonical(&mut preimage, other),
        }
    }
    preimage.push(']');
    sha256_hex16(&preimage)
}

/// `value` as canonical JSON: sorted keys, no whitespace, JS number form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, &[]),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Number(number) => out.push_str(&js_number(number)),
        Value::String(text) => push_json_string(out, text),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Null => out.push_str("null"),
    }
}

fn write_object(out: &mut String, map: &serde_json::Map<String, Value>, skip: &[&str]) {
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|key| !skip.contains(&key.as_str()))
        .collect();
    keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (index, key) in keys.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(out, key);
        out.push(':');
        write_canonical(out, &map[key.as_str()]);
    }
    out.push('}');
}

fn push_json_string(out: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// JS prints integral floats without a fraction (`1.0` is `1`).
fn js_number(number: &serde_json::Number) -> String {
    if number.is_f64()
        && let Some(float) = number.as_f64()
        && float.fract() == 0.0
        && float.abs() < 1e21
    {
        return format!("{}", float as i128);
    }
    number.to_string()
}

/// `attributes.gateway.source_path_hash`.
pub fn source_path_hash(path: &str) -> String {
    sha256_hex16(path)
}

/// Remove `user:token@` from a URL with a scheme (`https://x:T@host/..`
/// becomes `https://host/..`); scp-style remotes are left alone.
pub fn redact_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let scheme = &url[..scheme_end];
    let valid_scheme = scheme
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '.' | '-'));
    if !valid_scheme {
        return url.to_string();
    }
    let rest = &url[scheme_end + 3..];
    let authority_len = rest.find(['@', '/']).unwrap_or(rest.len());
    if authority_len == 0 || !rest[authority_len..].starts_with('@') {
        return url.to_string();
    }
    format!("{}{}", &url[..scheme_end + 3], &rest[authority_len + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blocks(value: Value) -> Vec<Value> {
        value.as_array().unwrap().clone()
    }

    #[test]
    fn fallback_ids_reproduce_the_reference_vectors() {
        let scope = "0199a213-81c0-7800-8aa1-bbab2a035a53";
        assert_eq!(
            fallback_message_id(
                scope,
                None,
                "user",
                &blocks(json!([{"text":"list the files","type":"text"}]))
            ),
            "15a46db1466cf7b7"
        );
        assert_eq!(
            fallback_message_id(
                scope,
                None,
                "assistant",
                &blocks(
                    json!([{"id":"call_1","input":{"command":["bash","-lc","ls"]},"name":"shell","type":"tool_use"}])
                )
            ),
            "3b276bbe46cbbbe8"
        );
        assert_eq!(
            fallback_message_id(
                "t1",
                None,
                "tool",
                &blocks(json!([{"content":"Done","tool_use_id":"c9","type":"tool_result"}]))
            ),
            "ea9851f85afa0be1"
        );
        assert_eq!(
            fallback_message_id(
                "s1",
                None,
                "user",
                &blocks(json!([{"type":"text","text":"no uuid no ts"}]))
            ),
            "c49e721925a84792"
        );
    }

    #[test]
    fn volatile_fields_do_not_change_the_id() {
        let plain = blocks(json!([{"type":"text","text":"hi"}]));
        let volatile = blocks(
            json!([{"type":"text","text":"hi","cache_control":{"type":"ephemeral"},"caller":{"type":"x"}}]),
        );
        assert_eq!(
            fallback_message_id("s", None, "user", &plain),
            fallback_message_id("s", None, "user", &volatile)
        );
        assert_ne!(
            fallback_message_id("s", None, "user", &plain),
            fallback_message_id("s", Some("a1"), "user", &plain)
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_prints_js_numbers() {
        assert_eq!(
            canonical_json(&json!({"b": 1.0, "a": [true, null, "é"], "B": 2.5})),
            r#"{"B":2.5,"a":[true,null,"é"],"b":1}"#
        );
    }

    #[test]
    fn credentials_are_redacted_from_remotes() {
        assert_eq!(
            redact_credentials("https://x-access-token:ghp_SECRET@github.com/acme/repo.git"),
            "https://github.com/acme/repo.git"
        );
        assert_eq!(
            redact_credentials("git@github.com:a/b.git"),
            "git@github.com:a/b.git"
        );
        assert_eq!(
            redact_credentials("https://github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
        assert_eq!(redact_credentials("ssh://git@host/a@b"), "ssh://host/a@b");
    }

    #[test]
    fn source_path_hash_matches_the_worked_example() {
        assert_eq!(
            source_path_hash("/home/u/.claude/projects/p/s.jsonl").len(),
            16
        );
    }
}
