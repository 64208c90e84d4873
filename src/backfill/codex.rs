//! The Codex provider: rollouts under `$CODEX_HOME/sessions` (default
//! `~/.codex/sessions`), modern JSONL envelopes streamed line by line and
//! legacy single-document `.json` files. One rollout is one thread, so one
//! [`Item`]; token usage comes from `token_count` events (per turn, net of
//! cached input) and lands on one carrier message per turn.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde_json::{Map, Value, json};

use super::ParsedFile;
use super::codex_line::{CodexLine, EventPayload, Payload};
use super::identity::redact_credentials;
use super::lines::{ReadEnd, for_each_line_as};
use super::rows::{Exchange, Item, Message, json_string, non_empty_str};
use super::usage_policy::UsagePolicy;
use super::walk::{HistoryFile, walk_files};
use super::window::{Window, iso_from_ms, parse_date_ms};

/// `$CODEX_HOME/sessions`, else `$HOME/.codex/sessions`.
pub fn sessions_root(home: Option<&Path>) -> Option<PathBuf> {
    match std::env::var_os("CODEX_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("sessions")),
        None => home.map(|home| home.join(".codex/sessions")),
    }
}

/// Rollout files under `root`, sorted.
pub fn rollouts(root: &Path) -> Vec<HistoryFile> {
    walk_files(root, &|name| {
        name.starts_with("rollout-") && (name.ends_with(".jsonl") || name.ends_with(".json"))
    })
}

/// Everything a worker needs to turn one rollout into an item.
#[derive(Debug)]
pub struct CodexContext {
    pub window: Window,
    pub policy: UsagePolicy,
}

/// A rollout being read: header, turn contexts and messages so far.
#[derive(Default)]
struct Rollout {
    meta: Option<Map<String, Value>>,
    model: Option<String>,
    turn_cwd: Option<String>,
    sandbox_policy: Option<String>,
    sandbox: Option<String>,
    messages: Vec<Message>,
    turn_start: usize,
    any_native_id: bool,
}

impl Rollout {
    fn envelope(&mut self, window: &Window, line: CodexLine) {
        let timestamp = line.timestamp.as_deref().and_then(parse_date_ms);
        match (line.kind.as_str(), line.payload) {
            ("session_meta", Payload::Object(payload)) if self.meta.is_none() => {
                self.meta = Some(payload)
            }
            ("turn_context", Payload::Object(payload)) => self.turn_context(&payload),
            ("response_item", Payload::Object(payload)) if window.contains(timestamp) => {
                self.response_item(payload, timestamp)
            }
            ("event_msg", Payload::Event(event)) if window.contains(timestamp) => self.event(event),
            _ => {}
        }
    }

    fn turn_context(&mut self, payload: &Map<String, Value>) {
        if self.model.is_none() {
            self.model = payload
                .get("model")
                .and_then(non_empty_str)
                .map(str::to_string);
        }
        if self.turn_cwd.is_none() {
            self.turn_cwd = payload
                .get("cwd")
                .and_then(Value::as_str)
                .and_then(usable_cwd);
        }
        if self.sandbox_policy.is_none() {
            self.sandbox_policy = payload
                .get("sandbox_policy")
                .and_then(|policy| policy.get("type"))
                .and_then(non_empty_str)
                .map(str::to_string);
        }
        if self.sandbox.is_none() {
            self.sandbox = payload
                .get("sandbox")
                .and_then(non_empty_str)
                .map(str::to_string);
        }
    }

    fn response_item(&mut self, payload: Map<String, Value>, timestamp: Option<i64>) {
        if let Some(message) = message_from_payload(payload, timestamp) {
            self.any_native_id |= message.message_id.is_some();
            self.messages.push(message);
        }
    }

    fn event(&mut self, event: EventPayload) {
        if !event.token_count {
            return;
        }
        let Some(info) = event.info else {
            return;
        };
        let usage = info.last_token_usage.as_ref().and_then(normalize_usage);
        if let Some(usage) = usage {
            let carrier = self.messages[self.turn_start..]
                .iter_mut()
                .rev()
                .find(|message| {
                    message.role == "assistant" && has_text_or_tool_use(&message.content)
                });
            if let Some(carrier) = carrier {
                carrier.attributes.insert("usage".into(), usage);
            }
        }
        self.turn_start = self.messages.len();
    }
}

fn has_text_or_tool_use(content: &Value) -> bool {
    content.as_array().is_some_and(|blocks| {
        blocks.iter().any(|block| {
            matches!(
                block.get("type").and_then(Value::as_str),
                Some("text" | "tool_use")
            )
        })
    })
}

/// A cwd is usable when it is non-blank and absolute.
fn usable_cwd(cwd: &str) -> Option<String> {
    (!cwd.trim().is_empty() && cwd.starts_with('/')).then(|| cwd.to_string())
}

/// A number, or a numeric string, as f64.
fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite()),
        _ => None,
    }
}

fn json_number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// `last_token_usage` -> `{input_tokens (net of cache), cache_read_tokens,
/// output_tokens, reasoning_tokens, total_tokens}`.
pub fn normalize_usage(usage: &Value) -> Option<Value> {
    let usage = usage.as_object()?;
    let input = number(usage.get("input_tokens"));
    let cached = number(usage.get("cached_input_tokens"));
    let mut out = Map::new();
    if let Some(input) = input {
        let net = match cached {
            Some(cached) => (input - cached).max(0.0),
            None => input,
        };
        out.insert("input_tokens".into(), json_number(net));
    }
    if let Some(cached) = cached {
        out.insert("cache_read_tokens".into(), json_number(cached));
    }
    for (from, to) in [
        ("output_tokens", "output_tokens"),
        ("reasoning_output_tokens", "reasoning_tokens"),
        ("total_tokens", "total_tokens"),
    ] {
        if let Some(value) = number(usage.get(from)) {
            out.insert(to.into(), json_number(value));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Object(object) => ["text", "input_text", "output_text"]
            .iter()
            .find_map(|key| object.get(*key).and_then(non_empty_str))
            .map(str::to_string),
        _ => None,
    }
}

fn reasoning_text(value: Option<&Value>) -> Option<String> {
    let parts: Vec<String> = value?
        .as_array()?
        .iter()
        .filter_map(|part| match part {
            Value::String(text) if !text.is_empty() => Some(text.clone()),
            Value::Object(object) => ["text", "summary_text"]
                .iter()
                .find_map(|key| object.get(*key).and_then(non_empty_str))
                .map(str::to_string),
            _ => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// A `response_item` payload as a message, or `None` for kinds that map to
/// nothing.
fn message_from_payload(
    mut payload: Map<String, Value>,
    timestamp: Option<i64>,
) -> Option<Message> {
    let kind = payload.get("type").and_then(non_empty_str)?.to_string();
    let string = |payload: &Map<String, Value>, key: &str| {
        payload.get(key).and_then(non_empty_str).map(str::to_string)
    };
    let (role, content) = match kind.as_str() {
        "message" => {
            let role = string(&payload, "role").unwrap_or_else(|| "user".into());
            let blocks: Vec<Value> = match payload.get("content") {
                Some(Value::String(text)) => vec![json!({"type": "text", "text": text})],
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(text_of)
                    .map(|text| json!({"type": "text", "text": text}))
                    .collect(),
                _ => Vec::new(),
            };
            if blocks.is_empty() {
                return None;
            }
            (role, Value::Array(blocks))
        }
        "function_call" | "custom_tool_call" => {
            let name = string(&payload, "name")?;
            let id = string(&payload, "call_id").or_else(|| string(&payload, "id"))?;
            let raw = payload
                .remove("arguments")
                .or_else(|| payload.remove("input"));
            let input = match raw {
                Some(Value::String(text)) => {
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
                }
                Some(other) => other,
                None => Value::Null,
            };
            (
                "assistant".to_string(),
                json!([{"type": "tool_use", "id": id, "name": name, "input": input}]),
            )
        }
        "function_call_output" | "custom_tool_call_output" => {
            let id = string(&payload, "call_id").or_else(|| string(&payload, "id"))?;
            let mut block = Map::new();
            block.insert("type".into(), json!("tool_result"));
            block.insert("tool_use_id".into(), json!(id));
            if let Some(text) = output_text(payload.get("output")) {
                block.insert("content".into(), json!(text));
            }
            ("tool".to_string(), Value::Array(vec![Value::Object(block)]))
        }
        "reasoning" => {
            let text = reasoning_text(payload.get("summary"))
                .or_else(|| reasoning_text(payload.get("content")))?;
            (
                "assistant".to_string(),
                json!([{"type": "thinking", "thinking": text}]),
            )
        }
        _ => return None,
    };
    Some(Message {
        role,
        content,
        message_id: string(&payload, "id"),
        provider_type: Some(kind),
        message_created_at: timestamp.map(iso_from_ms),
        ..Message::default()
    })
}

fn output_text(output: Option<&Value>) -> Option<String> {
    match output? {
        Value::Null => None,
        Value::String(text) if text.is_empty() => None,
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => ["output", "content", "text"]
            .iter()
            .find_map(|key| object.get(*key).and_then(Value::as_str))
            .map(str::to_string)
            .or_else(|| Some(json_string(object))),
        other => Some(json_string(other)),
    }
}

/// The first UUID in the file's base name, else the whole base name.
fn thread_id_from_name(path: &Path) -> String {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let base = name
        .strip_suffix(".jsonl")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(name);
    let bytes = base.as_bytes();
    let is_uuid = |window: &[u8]| {
        window.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
    };
    (0..bytes.len().saturating_sub(35))
        .find(|start| is_uuid(&bytes[*start..*start + 36]))
        .map(|start| base[start..start + 36].to_string())
        .unwrap_or_else(|| base.to_string())
}

/// Parse one rollout into (at most) one item.
pub fn parse_file(ctx: &CodexContext, file: &HistoryFile, stop: &AtomicBool) -> ParsedFile {
    let mut rollout = Rollout::default();
    let mut any_object = false;
    let stats = if file.path.extension().is_some_and(|ext| ext == "json") {
        read_legacy(&file.path, &ctx.window, &mut rollout, &mut any_object)
    } else {
        for_each_line_as(&file.path, stop, |line: CodexLine, bytes| {
            let line = if line.needs_value {
                serde_json::from_slice(bytes).map_or_else(|_| line, CodexLine::from_value)
            } else {
                line
            };
            if line.is_object {
                any_object = true;
                rollout.envelope(&ctx.window, line);
            }
        })
    };
    let mut parsed = ParsedFile {
        items: Vec::new(),
        malformed_lines: stats.malformed,
        gated_sessions: 0,
        complete: stats.end == ReadEnd::Complete,
    };
    if stats.end == ReadEnd::Interrupted || !any_object || rollout.messages.is_empty() {
        return parsed;
    }
    let item = build_item(rollout, file);
    if item
        .exchange
        .cwd
        .as_deref()
        .is_some_and(|cwd| ctx.policy.ignores(cwd))
    {
        parsed.gated_sessions += 1;
        return parsed;
    }
    parsed.items.push(item);
    parsed
}

/// A legacy rollout: one JSON document `{session, items}`; otherwise the
/// same file read as JSON lines.
fn read_legacy(
    path: &Path,
    window: &Window,
    rollout: &mut Rollout,
    any_object: &mut bool,
) -> super::lines::LineStats {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(_) => {
            return super::lines::LineStats {
                end: ReadEnd::Failed,
                malformed: 0,
            };
        }
    };
    if let Ok(Value::Object(mut document)) = serde_json::from_slice::<Value>(&bytes)
        && let Some(Value::Array(items)) = document.remove("items")
    {
        *any_object = true;
        let session = match document.remove("session") {
            Some(Value::Object(session)) => session,
            _ => Map::new(),
        };
        rollout.meta = Some(session);
        for item in items {
            if let Value::Object(payload) = item {
                rollout.response_item(payload, None);
            }
        }
        return super::lines::LineStats {
            end: ReadEnd::Complete,
            malformed: 0,
        };
    }
    let mut malformed = 0;
    for line in bytes.split(|byte| *byte == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(value) if value.is_object() => {
                *any_object = true;
                rollout.envelope(window, CodexLine::from_value(value));
            }
            Ok(_) => {}
            Err(_) => malformed += 1,
        }
    }
    super::lines::LineStats {
        end: ReadEnd::Complete,
        malformed,
    }
}

fn build_item(rollout: Rollout, file: &HistoryFile) -> Item {
    let meta = rollout.meta.unwrap_or_default();
    let string = |key: &str| meta.get(key).and_then(non_empty_str).map(str::to_string);
    let thread_id = string("id").unwrap_or_else(|| thread_id_from_name(&file.path));
    let session_id = string("session_id").unwrap_or_else(|| thread_id.clone());
    let started_at = string("timestamp")
        .and_then(|text| parse_date_ms(&text))
        .map(iso_from_ms);
    let cwd = meta
        .get("cwd")
        .and_then(Value::as_str)
        .and_then(usable_cwd)
        .or(rollout.turn_cwd);
    let git = meta.get("git").and_then(Value::as_object);
    let git_string = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| git.and_then(|git| git.get(*key)).and_then(non_empty_str))
            .map(str::to_string)
    };
    let git_remote =
        git_string(&["repository_url", "origin_url"]).map(|url| redact_credentials(&url));
    let git_commit = git_string(&["commit_hash", "commit"]);
    let git_branch = git_string(&["branch"]);
    let git_dirty = git.and_then(|git| {
        git.get("dirty")
            .and_then(Value::as_bool)
            .or_else(|| git.get("is_dirty").and_then(Value::as_bool))
    });
    let sandbox = rollout.sandbox_policy.or(rollout.sandbox);
    let originator = string("originator");
    let cli_version = string("cli_version");
    let thread_source = string("thread_source");
    let parent_thread = string("parent_thread_id");
    let model_provider = string("model_provider");
    let source = string("source");

    let mut codex = Map::new();
    codex.insert(
        "identity_source".into(),
        json!(if rollout.any_native_id {
            "native"
        } else {
            "gateway_fallback"
        }),
    );
    codex.insert("session_id".into(), json!(session_id));
    if thread_id != session_id {
        codex.insert("thread_id".into(), json!(thread_id));
    }
    for (key, value) in [
        ("workspace", &cwd),
        ("git_origin_url", &git_remote),
        ("git_commit", &git_commit),
        ("sandbox", &sandbox),
        ("originator", &originator),
        ("thread_source", &thread_source),
        ("model_provider", &model_provider),
        ("source", &source),
    ] {
        if let Some(value) = value {
            codex.insert(key.into(), json!(value));
        }
    }
    if let Some(dirty) = git_dirty {
        codex.insert("has_changes".into(), json!(dirty));
    }
    let mut attributes = Map::new();
    attributes.insert("codex".into(), Value::Object(codex));

    Item {
        exchange: Exchange {
            provider: "openai",
            session_id,
            conversation_id: Some(thread_id.clone()),
            model: rollout.model,
            conversation_started_at: started_at,
            conversation_source: "codex".into(),
            client_name: "codex".into(),
            cwd,
            git_branch,
            git_remote,
            head_sha: git_commit,
            repo_root: None,
            client_version: cli_version,
            entrypoint: originator,
            is_sidechain: thread_source.as_ref().map(|source| source == "subagent"),
            user_type: thread_source,
            permission_mode: sandbox,
            parent_thread_id: parent_thread,
            attributes,
        },
        messages: rollout.messages,
        source_path: file.path.display().to_string(),
        native_id: thread_id,
        fallback_started_at: iso_from_ms(file.mtime_ns.div_euclid(1_000_000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_usage_is_net_of_cached_input() {
        let usage = json!({"input_tokens":13761,"cached_input_tokens":9600,"output_tokens":484,"reasoning_output_tokens":189,"total_tokens":14245});
        assert_eq!(
            normalize_usage(&usage).unwrap().to_string(),
            r#"{"input_tokens":4161,"cache_read_tokens":9600,"output_tokens":484,"reasoning_tokens":189,"total_tokens":14245}"#
        );
        let strings = json!({"input_tokens":"10","output_tokens":"2"});
        assert_eq!(
            normalize_usage(&strings).unwrap().to_string(),
            r#"{"input_tokens":10,"output_tokens":2}"#
        );
    }

    #[test]
    fn thread_ids_come_from_the_file_name() {
        assert_eq!(
            thread_id_from_name(Path::new(
                "/x/rollout-legacy-0199a213-81c0-7800-8aa1-bbab2a035a99.json"
            )),
            "0199a213-81c0-7800-8aa1-bbab2a035a99"
        );
        assert_eq!(
            thread_id_from_name(Path::new("/x/rollout-1.jsonl")),
            "rollout-1"
        );
    }
}
