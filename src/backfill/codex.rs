//! The Codex provider: rollouts under `$CODEX_HOME/sessions` (default
//! `~/.codex/sessions`), modern JSONL envelopes streamed line by line and
//! legacy single-document `.json` files. One rollout is one thread, so one
//! [`Item`]; token usage comes from `token_count` events (per turn, net of
//! cached input) and lands on one carrier message per turn.
//!
//! A modern rollout that grew is read on from where the last import
//! stopped ([`super::resume`]), starting from the [`CodexState`] it left:
//! the header, the first turn-context values and the expansion state. Lines
//! are taken in file order, so that is exact as long as the window keeps
//! the same earlier lines and the thread id stays the one the earlier
//! fallback ids were made under. A turn's usage goes to the last carrier
//! since the turn began; a carrier read earlier already has its row, so a
//! continued turn looks only at the new messages, as a whole read's new
//! rows do. Legacy `.json` files are always read whole.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::codex_line::{CodexLine, EventPayload, Payload};
use super::identity::redact_credentials;
use super::lines::{LineStats, ReadEnd, ReadPoint, for_each_line_as};
use super::resume::{Fallback, StoredResume};
use super::rows::{Exchange, ExpansionState, Item, Message, expand, json_string, non_empty_str};
use super::usage_policy::UsagePolicy;
use super::walk::{HistoryFile, walk_files_by_path};
use super::window::{Window, WindowFootprint, WindowLines, iso_from_ms, parse_date_ms};
use super::{FellBack, ParsedFile};

/// `$CODEX_HOME/sessions`, else `$HOME/.codex/sessions`.
pub fn sessions_root(home: Option<&Path>) -> Option<PathBuf> {
    match std::env::var_os("CODEX_HOME").filter(|value| !value.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("sessions")),
        None => home.map(|home| home.join(".codex/sessions")),
    }
}

/// Rollout files under `root`, sorted by whole path as the reference does.
pub fn rollouts(root: &Path) -> Vec<HistoryFile> {
    walk_files_by_path(root, &|name| {
        name.starts_with("rollout-") && (name.ends_with(".jsonl") || name.ends_with(".json"))
    })
}

/// Everything a worker needs to turn one rollout into an item.
#[derive(Debug)]
pub struct CodexContext {
    pub window: Window,
    pub policy: UsagePolicy,
}

/// The keys of `session_meta.payload` that [`build_item`] reads; the rest
/// (instructions can run to many KiB) is not kept, in memory or in the
/// stored state.
const META_KEYS: [&str; 11] = [
    "id",
    "session_id",
    "timestamp",
    "cwd",
    "git",
    "originator",
    "cli_version",
    "thread_source",
    "parent_thread_id",
    "model_provider",
    "source",
];

/// A rollout's header: everything but its messages that the rows depend
/// on, from the first `session_meta` and the first turn-context values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Header {
    /// Some line was a JSON object (without one, no session).
    any_object: bool,
    meta: Option<Map<String, Value>>,
    model: Option<String>,
    turn_cwd: Option<String>,
    sandbox_policy: Option<String>,
    sandbox: Option<String>,
    any_native_id: bool,
}

/// What the rows of lines appended to a rollout later depend on, as the
/// last read of it left them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodexState {
    footprint: WindowFootprint,
    header: Header,
    expansion: ExpansionState,
}

/// A rollout being read: header, turn contexts and messages so far.
#[derive(Default)]
struct Rollout {
    header: Header,
    footprint: WindowFootprint,
    window_lines: WindowLines,
    messages: Vec<Message>,
    turn_start: usize,
}

impl Rollout {
    fn envelope(&mut self, window: &Window, line: CodexLine) {
        let timestamp = line.timestamp.as_deref().and_then(parse_date_ms);
        if matches!(line.kind.as_str(), "response_item" | "event_msg") {
            self.footprint.note(window, timestamp);
            self.window_lines.note(window, timestamp);
        }
        match (line.kind.as_str(), line.payload) {
            ("session_meta", Payload::Object(payload)) if self.header.meta.is_none() => {
                self.set_meta(payload)
            }
            ("turn_context", Payload::Object(payload)) => self.turn_context(&payload),
            ("response_item", Payload::Object(payload)) if window.contains(timestamp) => {
                self.response_item(payload, timestamp)
            }
            ("event_msg", Payload::Event(event)) if window.contains(timestamp) => self.event(event),
            _ => {}
        }
    }

    fn set_meta(&mut self, mut payload: Map<String, Value>) {
        payload.retain(|key, _| META_KEYS.contains(&key.as_str()));
        self.header.meta = Some(payload);
    }

    fn turn_context(&mut self, payload: &Map<String, Value>) {
        if self.header.model.is_none() {
            self.header.model = payload
                .get("model")
                .and_then(non_empty_str)
                .map(str::to_string);
        }
        if self.header.turn_cwd.is_none() {
            self.header.turn_cwd = payload
                .get("cwd")
                .and_then(Value::as_str)
                .and_then(usable_cwd);
        }
        if self.header.sandbox_policy.is_none() {
            self.header.sandbox_policy = payload
                .get("sandbox_policy")
                .and_then(|policy| policy.get("type"))
                .and_then(non_empty_str)
                .map(str::to_string);
        }
        if self.header.sandbox.is_none() {
            self.header.sandbox = payload
                .get("sandbox")
                .and_then(non_empty_str)
                .map(str::to_string);
        }
    }

    fn response_item(&mut self, payload: Map<String, Value>, timestamp: Option<i64>) {
        if let Some(message) = message_from_payload(payload, timestamp) {
            self.header.any_native_id |= message.message_id.is_some();
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

/// A legacy rollout is one JSON document, read whole every time.
fn is_legacy(file: &HistoryFile) -> bool {
    file.path.extension().is_some_and(|ext| ext == "json")
}

/// Read one rollout into rows: whole (`from` is `None`), or a modern
/// rollout on from the point and state the last import stored. A continued
/// read that cannot vouch for its rows says why instead ([`FellBack`]).
pub fn parse_file(
    ctx: &CodexContext,
    file: &HistoryFile,
    from: Option<(ReadPoint, CodexState)>,
    stop: &AtomicBool,
) -> Result<ParsedFile, FellBack> {
    if is_legacy(file) {
        let mut rollout = Rollout::default();
        let stats = read_legacy(file, &ctx.window, &mut rollout);
        let parsed = ParsedFile::from_stats(&stats)?;
        return finish(
            ctx,
            file,
            rollout,
            ExpansionState::default(),
            &stats,
            parsed,
        );
    }
    let (point, state) = from.unzip();
    let state = state.unwrap_or_default();
    if !state.footprint.same_lines_under(&ctx.window) {
        return Err(FellBack::new(Fallback::WindowMoved, 0));
    }
    let mut rollout = Rollout {
        header: state.header,
        footprint: state.footprint,
        ..Rollout::default()
    };
    let stats = for_each_line_as(
        &file.path,
        file.size,
        point.as_ref(),
        stop,
        |line: CodexLine, bytes| {
            let line = if line.needs_value {
                serde_json::from_slice(bytes).map_or_else(|_| line, CodexLine::from_value)
            } else {
                line
            };
            if line.is_object {
                rollout.header.any_object = true;
                rollout.envelope(&ctx.window, line);
            }
        },
    );
    let parsed = ParsedFile::from_stats(&stats)?;
    if parsed.interrupted {
        return Ok(parsed);
    }
    finish(ctx, file, rollout, state.expansion, &stats, parsed)
}

/// Build, gate and expand the rollout's item (one, when it has any message
/// so far) and keep the state for the next read.
fn finish(
    ctx: &CodexContext,
    file: &HistoryFile,
    rollout: Rollout,
    mut expansion: ExpansionState,
    stats: &LineStats,
    mut parsed: ParsedFile,
) -> Result<ParsedFile, FellBack> {
    let Rollout {
        header,
        footprint,
        window_lines,
        messages,
        ..
    } = rollout;
    parsed.window_lines = window_lines;
    if header.any_object && expansion.messages() + messages.len() > 0 {
        let item = build_item(&header, messages, file);
        if !expansion.continues(&item) {
            return Err(FellBack::new(Fallback::ThreadChanged, stats.bytes_read));
        }
        if item
            .exchange
            .cwd
            .as_deref()
            .is_some_and(|cwd| ctx.policy.ignores(cwd))
        {
            parsed.gated_sessions += 1;
            return Ok(parsed);
        }
        parsed.items.push(expand(&item, &mut expansion));
    }
    if let Some(point) = &stats.point {
        let state = CodexState {
            footprint,
            header,
            expansion,
        };
        parsed.resume = Some(StoredResume::new("codex", point, &state));
    }
    Ok(parsed)
}

/// A legacy rollout: one JSON document `{session, items}`; otherwise the
/// same file read as JSON lines. Never continued, so it leaves no point.
fn read_legacy(file: &HistoryFile, window: &Window, rollout: &mut Rollout) -> LineStats {
    let failed = LineStats {
        end: ReadEnd::Failed,
        malformed: 0,
        bytes_read: 0,
        point: None,
    };
    let Ok(bytes) = std::fs::read(&file.path) else {
        return failed;
    };
    let mut stats = LineStats {
        end: ReadEnd::Complete,
        bytes_read: bytes.len() as u64,
        ..failed
    };
    if let Ok(Value::Object(mut document)) = serde_json::from_slice::<Value>(&bytes)
        && let Some(Value::Array(items)) = document.remove("items")
    {
        rollout.header.any_object = true;
        let session = match document.remove("session") {
            Some(Value::Object(session)) => session,
            _ => Map::new(),
        };
        rollout.set_meta(session);
        for item in items {
            if let Value::Object(payload) = item {
                rollout.response_item(payload, None);
            }
        }
        return stats;
    }
    for line in bytes.split(|byte| *byte == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(value) if value.is_object() => {
                rollout.header.any_object = true;
                rollout.envelope(window, CodexLine::from_value(value));
            }
            Ok(_) => {}
            Err(_) => stats.malformed += 1,
        }
    }
    stats
}

fn build_item(header: &Header, messages: Vec<Message>, file: &HistoryFile) -> Item {
    let meta = header.meta.clone().unwrap_or_default();
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
        .or_else(|| header.turn_cwd.clone());
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
    let sandbox = header
        .sandbox_policy
        .clone()
        .or_else(|| header.sandbox.clone());
    let originator = string("originator");
    let cli_version = string("cli_version");
    let thread_source = string("thread_source");
    let parent_thread = string("parent_thread_id");
    let model_provider = string("model_provider");
    let source = string("source");

    let mut codex = Map::new();
    codex.insert(
        "identity_source".into(),
        json!(if header.any_native_id {
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
            model: header.model.clone(),
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
        messages,
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
    fn the_kept_meta_keys_build_the_same_item() {
        let meta = json!({"id":"t","session_id":"s","timestamp":"2025-10-01T12:00:00.000Z","cwd":"/r","originator":"o","cli_version":"1","instructions":"long text","base_instructions":{"text":"more"},"source":"cli","model_provider":"openai","thread_source":"subagent","parent_thread_id":"p","git":{"commit_hash":"c","branch":"b","repository_url":"https://u:p@h/r.git","dirty":true}});
        let Value::Object(meta) = meta else {
            panic!("an object")
        };
        let file = HistoryFile {
            path: PathBuf::from("/x/rollout-1.jsonl"),
            size: 0,
            mtime_ns: 0,
        };
        let full = Header {
            meta: Some(meta.clone()),
            ..Header::default()
        };
        let mut rollout = Rollout::default();
        rollout.set_meta(meta);
        let kept = rollout.header.meta.as_ref().unwrap();
        assert!(!kept.contains_key("instructions") && !kept.contains_key("base_instructions"));
        assert_eq!(
            build_item(&full, Vec::new(), &file),
            build_item(&rollout.header, Vec::new(), &file)
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
