//! Row identity: the fallback message id (a hash of scope, role and the
//! canonical JSON of the content), the provenance hash of a source path, and
//! credential redaction for git remotes. The hash preimage must match the
//! reference byte for byte, so canonical JSON follows `JSON.stringify` with
//! keys sorted by UTF-16 code unit.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The first 16 hex chars of sha256(`text`).
pub fn sha256_hex16(text: &str) -> String {
    crate::hex::hex(&Sha256::digest(text.as_bytes())[..8])
}

/// The fallback `message_id` of a message without a native id. The
/// canonical JSON is streamed into the hash, never built as one string.
pub fn fallback_message_id(
    thread_scope: &str,
    agent_id: Option<&str>,
    role: &str,
    content: &[Value],
) -> String {
    let mut sink = HashSink(Sha256::new());
    sink.push(thread_scope);
    if let Some(agent) = agent_id {
        sink.push(":");
        sink.push(agent);
    }
    sink.push(":");
    sink.push(role);
    sink.push(":[");
    for (index, block) in content.iter().enumerate() {
        if index > 0 {
            sink.push(",");
        }
        match block {
            Value::Object(map) => write_object(&mut sink, map, &["cache_control", "caller"]),
            other => write_canonical(&mut sink, other),
        }
    }
    sink.push("]");
    crate::hex::hex(&sink.0.finalize()[..8])
}

/// Where canonical JSON goes: a string or a running hash.
trait CanonicalSink {
    fn push(&mut self, text: &str);
    fn push_json_string(&mut self, text: &str);
}

impl CanonicalSink for String {
    fn push(&mut self, text: &str) {
        self.push_str(text);
    }

    fn push_json_string(&mut self, text: &str) {
        if let Ok(quoted) = serde_json::to_string(text) {
            self.push_str(&quoted);
        }
    }
}

struct HashSink(Sha256);

impl std::io::Write for HashSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CanonicalSink for HashSink {
    fn push(&mut self, text: &str) {
        self.0.update(text.as_bytes());
    }

    fn push_json_string(&mut self, text: &str) {
        let _ = serde_json::to_writer(&mut *self, text);
    }
}

/// `value` as canonical JSON: sorted keys, no whitespace, JS number form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(&mut out, value);
    out
}

fn write_canonical(out: &mut impl CanonicalSink, value: &Value) {
    match value {
        Value::Object(map) => write_object(out, map, &[]),
        Value::Array(items) => {
            out.push("[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(",");
                }
                write_canonical(out, item);
            }
            out.push("]");
        }
        Value::Number(number) => out.push(&js_number(number)),
        Value::String(text) => out.push_json_string(text),
        Value::Bool(flag) => out.push(if *flag { "true" } else { "false" }),
        Value::Null => out.push("null"),
    }
}

fn write_object(out: &mut impl CanonicalSink, map: &serde_json::Map<String, Value>, skip: &[&str]) {
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|key| !skip.contains(&key.as_str()))
        .collect();
    if keys.iter().all(|key| key.is_ascii()) {
        keys.sort_unstable();
    } else {
        keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    }
    out.push("{");
    for (index, key) in keys.iter().enumerate() {
        if index > 0 {
            out.push(",");
        }
        out.push_json_string(key);
        out.push(":");
        write_canonical(out, &map[key.as_str()]);
    }
    out.push("}");
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
