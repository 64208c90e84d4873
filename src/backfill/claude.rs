//! The Claude Code provider: transcripts under `$CLAUDE_CONFIG_DIR/projects`
//! (default `~/.claude/projects`), subagent files included, each file read
//! line by line, stable-sorted by timestamp, grouped by `sessionId`,
//! windowed per line, joined with the hook's session-context record, gated
//! (usage policy, entrypoint owner), projected into one [`Item`] per session
//! and expanded into rows.
//!
//! A transcript that grew is read on from where the last import stopped
//! ([`super::resume`]), starting from the [`ClaudeState`] that import left:
//! per session, what the rows of later lines depend on beyond those lines.
//! Entries are stable-sorted by timestamp, so that is exact only while the
//! appended entries sort after every entry already read; otherwise the
//! file is read whole ([`Fallback::EarlierLine`]).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::claude_line::{ClaudeLine, UsageCounts};
use super::git::GitLookup;
use super::lines::{ReadPoint, for_each_line_as};
use super::resume::{Fallback, StoredResume};
use super::rows::{Exchange, ExpansionState, FrameWriter, Item, Message, expand, non_empty_str};
use super::usage_policy::UsagePolicy;
use super::walk::{HistoryFile, walk_files};
use super::window::{Window, WindowFootprint, WindowLines, iso_from_ms};
use super::{FellBack, ParsedFile};
use crate::cache::schema::MessageRow;

/// Only the tail of the session-context file is read.
const SESSION_CONTEXT_TAIL: u64 = 512 * 1024;

/// An agent sidecar is a few hundred bytes; a larger one is not one.
const AGENT_META_MAX: u64 = 1024 * 1024;

/// `$CLAUDE_CONFIG_DIR/projects`, else `$HOME/.claude/projects`.
pub fn projects_root(home: Option<&Path>) -> Option<PathBuf> {
    match std::env::var_os("CLAUDE_CONFIG_DIR").filter(|value| !value.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("projects")),
        None => home.map(|home| home.join(".claude/projects")),
    }
}

/// Transcripts under `root`, in the reference's order, and the `agent-<id>.meta.json`
/// sidecars beside them, found in one walk (names only: a sidecar is read
/// when a transcript is, see [`SideFiles`]).
pub fn transcripts(root: &Path) -> (Vec<HistoryFile>, Vec<PathBuf>) {
    let (sidecars, transcripts): (Vec<HistoryFile>, Vec<HistoryFile>) = walk_files(root, &|name| {
        name.ends_with(".jsonl") || agent_id_of_sidecar(name).is_some()
    })
    .into_iter()
    .partition(|file| {
        file.path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(agent_id_of_sidecar)
            .is_some()
    });
    let sidecars = sidecars.into_iter().map(|file| file.path).collect();
    (transcripts, sidecars)
}

/// `agent-<id>.meta.json` -> `<id>`.
fn agent_id_of_sidecar(name: &str) -> Option<&str> {
    name.strip_prefix("agent-")?
        .strip_suffix(".meta.json")
        .filter(|id| !id.is_empty())
}

/// Agent sidecars: agent id -> spawning tool_use id.
fn agent_meta(sidecars: &[PathBuf]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for path in sidecars {
        let Some(agent_id) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(agent_id_of_sidecar)
        else {
            continue;
        };
        let mut bytes = Vec::new();
        let read = std::fs::File::open(path)
            .and_then(|file| file.take(AGENT_META_MAX).read_to_end(&mut bytes));
        if read.is_err() {
            continue;
        }
        let Ok(document) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if let Some(tool_use_id) = document.get("toolUseId").and_then(non_empty_str) {
            out.insert(agent_id.to_string(), tool_use_id.to_string());
        }
    }
    out
}

/// One line of the hook's `session-context.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_id: String,
    pub transcript_path: Option<String>,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub git_remote: Option<String>,
    pub head_sha: Option<String>,
    pub repo_root: Option<String>,
}

/// The records in the last 512 KiB of `path` (missing file: none).
pub fn session_records(path: &Path) -> Vec<SessionRecord> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let start = size.saturating_sub(SESSION_CONTEXT_TAIL);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let mut lines = bytes.split(|byte| *byte == b'\n');
    if start > 0 {
        lines.next();
    }
    lines
        .filter_map(|line| serde_json::from_slice::<Value>(line.trim_ascii()).ok())
        .filter_map(|value| {
            let text = |key: &str| value.get(key).and_then(non_empty_str).map(str::to_string);
            Some(SessionRecord {
                session_id: text("session_id")?,
                transcript_path: text("transcript_path"),
                cwd: text("cwd"),
                git_branch: text("git_branch"),
                git_remote: text("git_remote"),
                head_sha: text("head_sha"),
                repo_root: text("repo_root"),
            })
        })
        .collect()
}

/// Everything a worker needs to turn one transcript into rows.
#[derive(Debug)]
pub struct ClaudeContext {
    pub window: Window,
    pub side_files: SideFiles,
    pub git: GitLookup,
    pub policy: UsagePolicy,
    /// Whether `@hypaware/claude-desktop` is configured (owner of Desktop
    /// entrypoints).
    pub desktop_configured: bool,
}

/// The hook's session-context file and the agent sidecars, read on first
/// use: a run that reads no transcript (a sweep over unchanged history)
/// never opens them, and a run that does reads them once.
#[derive(Debug)]
pub struct SideFiles {
    session_context: PathBuf,
    sidecars: Vec<PathBuf>,
    records: OnceLock<Vec<SessionRecord>>,
    agent_meta: OnceLock<HashMap<String, String>>,
}

impl SideFiles {
    pub fn new(session_context: PathBuf, sidecars: Vec<PathBuf>) -> SideFiles {
        SideFiles {
            session_context,
            sidecars,
            records: OnceLock::new(),
            agent_meta: OnceLock::new(),
        }
    }

    fn records(&self) -> &[SessionRecord] {
        self.records
            .get_or_init(|| session_records(&self.session_context))
    }

    fn agent_meta(&self) -> &HashMap<String, String> {
        self.agent_meta.get_or_init(|| agent_meta(&self.sidecars))
    }
}

/// What the rows of lines appended to a transcript later depend on, as the
/// last read of it left them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaudeState {
    /// Sort key of the last entry in sorted order (`i64::MAX` for one
    /// without a timestamp); `None` before any entry.
    last_key: Option<i64>,
    footprint: WindowFootprint,
    /// In the order the sessions first appear after sorting.
    sessions: Vec<SessionState>,
}

/// One session of a transcript so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct SessionState {
    session_id: String,
    /// First `entrypoint` of any entry (the owner gate).
    entrypoint: Option<String>,
    /// `cwd` of the first entry the window kept.
    first_cwd: Option<String>,
    /// `version` of the first message that has one.
    client_version: Option<String>,
    /// Earliest message timestamp (`conversation_started_at`).
    started_ms: Option<i64>,
    expansion: ExpansionState,
}

/// Entries, boxed: an entry is about 600 bytes, and a file's entries are
/// sorted, grouped by session and filtered before they become messages, so
/// each of those steps moves a pointer instead (ARCHITECTURE.md,
/// "Performance record").
#[allow(
    clippy::vec_box,
    reason = "600-byte entries moved by sorts and regrouping"
)]
type Entries = Vec<Box<Entry>>;

/// One accepted transcript line.
#[derive(Debug, Default)]
struct Entry {
    session_id: String,
    role: Option<String>,
    content: Value,
    cwd: Option<String>,
    ts_ms: Option<i64>,
    api_message_id: Option<String>,
    uuid: Option<String>,
    parent_uuid: Option<String>,
    logical_parent_uuid: Option<String>,
    source_tool_assistant_uuid: Option<String>,
    request_id: Option<String>,
    prompt_id: Option<String>,
    provider_type: Option<String>,
    provider_subtype: Option<String>,
    model: Option<String>,
    entrypoint: Option<String>,
    client_version: Option<String>,
    user_type: Option<String>,
    permission_mode: Option<String>,
    is_sidechain: Option<bool>,
    agent_id: Option<String>,
    attachment_type: Option<String>,
    hook_event: Option<String>,
    is_compact_summary: Option<bool>,
    compact_metadata: Option<Value>,
    usage: UsageCounts,
    tool_use_result: Option<Value>,
}

/// A line becomes an entry when it is an object with a `sessionId` and at
/// least one of an API message id, a role, or a `uuid`.
fn entry_from_line(line: ClaudeLine) -> Option<Entry> {
    let session_id = line.session_id?;
    let message = line.message;
    let line_type = line.line_type;
    let role = message.role.or_else(|| {
        line_type
            .as_deref()
            .filter(|kind| *kind == "user" || *kind == "assistant")
            .map(str::to_string)
    });
    let api_message_id = message.id.or(line.message_id);
    let uuid = line.uuid;
    if api_message_id.is_none() && role.is_none() && uuid.is_none() {
        return None;
    }
    Some(Entry {
        session_id,
        role,
        content: message.content.unwrap_or(Value::Null),
        cwd: line.cwd,
        ts_ms: line.ts_ms,
        api_message_id,
        uuid,
        parent_uuid: line.parent_uuid.or(line.parent_uuid_snake),
        logical_parent_uuid: line.logical_parent_uuid.or(line.logical_parent_uuid_snake),
        source_tool_assistant_uuid: line
            .source_tool_assistant_uuid
            .or(line.source_tool_assistant_uuid_snake),
        request_id: line.request_id.or(line.request_id_snake),
        prompt_id: line.prompt_id.or(line.prompt_id_snake),
        provider_type: line_type,
        provider_subtype: line.subtype,
        model: message.model.filter(|model| model != "<synthetic>"),
        entrypoint: line.entrypoint,
        client_version: line.version.or(line.claude_version),
        user_type: line.user_type.or(line.user_type_snake),
        permission_mode: line.permission_mode.or(line.permission_mode_snake),
        is_sidechain: line.is_sidechain,
        agent_id: line.agent_id.or(line.agent_id_snake),
        attachment_type: line.attachment_type,
        hook_event: line.attachment_hook_event.or(line.hook_event),
        is_compact_summary: line.is_compact_summary,
        compact_metadata: line.compact_metadata.or(line.compact_metadata_snake),
        usage: message.usage,
        tool_use_result: line.tool_use_result,
    })
}

/// Who owns a session, from its first non-empty `entrypoint`.
enum Owner {
    Claude,
    Desktop,
    Gated,
}

fn owner(entrypoint: Option<&str>, desktop_configured: bool) -> Owner {
    match entrypoint {
        Some("claude-desktop" | "claude-desktop-3p") if desktop_configured => Owner::Desktop,
        Some("claude-desktop" | "claude-desktop-3p") => Owner::Gated,
        _ => Owner::Claude,
    }
}

/// The sort key: timestamp, and entries without one last.
fn sort_key(entry: &Entry) -> i64 {
    entry.ts_ms.unwrap_or(i64::MAX)
}

/// Read one transcript into rows: whole (`from` is `None`), or on from the
/// point and state the last import stored. A continued read that cannot
/// vouch for its rows says why instead ([`FellBack`]).
pub fn parse_file(
    ctx: &ClaudeContext,
    file: &HistoryFile,
    from: Option<(ReadPoint, ClaudeState)>,
    stop: &AtomicBool,
) -> Result<ParsedFile, FellBack> {
    let (point, state) = from.unzip();
    let mut state = state.unwrap_or_default();
    if !state.footprint.same_lines_under(&ctx.window) {
        return Err(FellBack::new(Fallback::WindowMoved, 0));
    }
    let mut entries = Vec::new();
    let stats = for_each_line_as(&file.path, file.size, point.as_ref(), stop, |line, _| {
        if let Some(entry) = entry_from_line(line) {
            entries.push(Box::new(entry));
        }
    });
    let mut parsed = ParsedFile::from_stats(&stats)?;
    if parsed.interrupted {
        return Ok(parsed);
    }
    if let Some(last_key) = state.last_key
        && entries.iter().any(|entry| sort_key(entry) < last_key)
    {
        return Err(FellBack::new(Fallback::EarlierLine, stats.bytes_read));
    }
    entries.sort_by_key(|entry| sort_key(entry));
    if let Some(last) = entries.last() {
        state.last_key = Some(sort_key(last));
    }
    for entry in &entries {
        state.footprint.note(&ctx.window, entry.ts_ms);
    }
    parsed.window_lines = WindowLines::count(&ctx.window, entries.iter().map(|entry| entry.ts_ms));
    let source_path = file.path.display().to_string();
    let sessions = std::mem::take(&mut state.sessions);
    for (mut session, session_entries) in with_new_entries(sessions, entries) {
        match project_session(ctx, &mut session, session_entries, &source_path, file) {
            SessionOutcome::Rows(rows) => parsed.items.push(rows),
            SessionOutcome::NoMessages => {}
            SessionOutcome::Gated => parsed.gated_sessions += 1,
        }
        state.sessions.push(session);
    }
    if let Some(point) = &stats.point
        && parsed.gated_sessions == 0
    {
        parsed.resume = Some(StoredResume::new("claude", point, &state));
    }
    Ok(parsed)
}

/// Every session of the file, in the order a whole read groups them: the
/// ones already known, then new ones as they first appear in the (sorted)
/// new entries; each with its new entries.
fn with_new_entries(
    mut sessions: Vec<SessionState>,
    entries: Entries,
) -> Vec<(SessionState, Entries)> {
    let mut slots: HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .map(|(slot, session)| (session.session_id.clone(), slot))
        .collect();
    let mut grouped: Vec<Entries> = sessions.iter().map(|_| Vec::new()).collect();
    for entry in entries {
        let slot = match slots.get(&entry.session_id) {
            Some(slot) => *slot,
            None => {
                slots.insert(entry.session_id.clone(), sessions.len());
                sessions.push(SessionState {
                    session_id: entry.session_id.clone(),
                    ..SessionState::default()
                });
                grouped.push(Vec::new());
                sessions.len() - 1
            }
        };
        grouped[slot].push(entry);
    }
    sessions.into_iter().zip(grouped).collect()
}

/// What one session of a file came to.
enum SessionOutcome {
    Rows(Vec<MessageRow>),
    /// No message in the session so far: no item.
    NoMessages,
    /// Left out by the usage policy or the entrypoint owner.
    Gated,
}

/// Window, gate, project and expand one session's new entries, carrying
/// its state forward. A session with messages from earlier reads but none
/// new is still an item (with no rows), as a whole read would count it.
fn project_session(
    ctx: &ClaudeContext,
    session: &mut SessionState,
    entries: Entries,
    source_path: &str,
    file: &HistoryFile,
) -> SessionOutcome {
    if session.entrypoint.is_none() {
        session.entrypoint = entries.iter().find_map(|entry| entry.entrypoint.clone());
    }
    let windowed: Entries = entries
        .into_iter()
        .filter(|entry| ctx.window.contains(entry.ts_ms))
        .collect();
    if session.first_cwd.is_none() {
        session.first_cwd = windowed.iter().find_map(|entry| entry.cwd.clone());
    }
    let record = pick_record(ctx.side_files.records(), &session.session_id, source_path);
    let cwd = record
        .and_then(|record| record.cwd.clone())
        .or_else(|| session.first_cwd.clone());
    if cwd.as_deref().is_some_and(|cwd| ctx.policy.ignores(cwd)) {
        return SessionOutcome::Gated;
    }
    let client = match owner(session.entrypoint.as_deref(), ctx.desktop_configured) {
        Owner::Claude => "claude",
        Owner::Desktop => "claude-desktop",
        Owner::Gated => return SessionOutcome::Gated,
    };
    let messages = project_messages(ctx, session, windowed);
    if session.expansion.messages() + messages.len() == 0 {
        return SessionOutcome::NoMessages;
    }
    let item = session_item(
        ctx,
        session,
        messages,
        record,
        cwd,
        client,
        source_path,
        file,
    );
    SessionOutcome::Rows(expand(&item, &mut session.expansion))
}

/// One message per windowed entry with a role, usage on the last block of
/// each API message among them. When a message's blocks straddle an
/// earlier read, the block read then already has its row (with the usage
/// it had then); a whole read would move the usage to the later block
/// too, and its row for the earlier block is dropped on `part_id` alike.
fn project_messages(
    ctx: &ClaudeContext,
    session: &mut SessionState,
    windowed: Entries,
) -> Vec<Message> {
    let mut last_block: HashMap<String, usize> = HashMap::new();
    for (index, entry) in windowed.iter().enumerate() {
        if let Some(id) = &entry.api_message_id {
            last_block.insert(id.clone(), index);
        }
    }
    let mut messages = Vec::new();
    for (index, entry) in windowed.into_iter().enumerate() {
        let stamp_usage = match &entry.api_message_id {
            None => true,
            Some(id) => last_block.get(id) == Some(&index),
        };
        if entry.role.is_none() {
            continue;
        }
        if session.client_version.is_none() {
            session.client_version = entry.client_version.clone();
        }
        if let Some(ts) = entry.ts_ms {
            session.started_ms = Some(session.started_ms.map_or(ts, |started| started.min(ts)));
        }
        messages.push(message_from_entry(ctx, *entry, stamp_usage));
    }
    messages
}

/// The newest record for this transcript path, else for this session id.
fn pick_record<'a>(
    records: &'a [SessionRecord],
    session_id: &str,
    path: &str,
) -> Option<&'a SessionRecord> {
    records
        .iter()
        .rev()
        .find(|record| record.transcript_path.as_deref() == Some(path))
        .or_else(|| {
            records
                .iter()
                .rev()
                .find(|record| record.session_id == session_id)
        })
}

#[allow(clippy::too_many_arguments)]
fn session_item(
    ctx: &ClaudeContext,
    session: &SessionState,
    messages: Vec<Message>,
    record: Option<&SessionRecord>,
    cwd: Option<String>,
    client: &str,
    source_path: &str,
    file: &HistoryFile,
) -> Item {
    let mut exchange = Exchange {
        provider: "anthropic",
        session_id: session.session_id.clone(),
        conversation_started_at: session.started_ms.map(iso_from_ms),
        conversation_source: client.to_string(),
        client_name: client.to_string(),
        client_version: session.client_version.clone(),
        cwd: cwd.clone(),
        git_branch: record.and_then(|record| record.git_branch.clone()),
        git_remote: record.and_then(|record| record.git_remote.clone()),
        head_sha: record.and_then(|record| record.head_sha.clone()),
        repo_root: record.and_then(|record| record.repo_root.clone()),
        ..Exchange::default()
    };
    if let Some(cwd) = &cwd
        && exchange.git_remote.is_none()
    {
        let derived = ctx.git.repo(cwd);
        exchange.git_remote = derived.remote;
        if exchange.repo_root.is_none() {
            exchange.repo_root = derived.root;
        }
    }
    Item {
        exchange,
        messages,
        source_path: source_path.to_string(),
        native_id: session.session_id.clone(),
        fallback_started_at: iso_from_ms(file.mtime_ns.div_euclid(1_000_000)),
    }
}

fn message_from_entry(ctx: &ClaudeContext, entry: Entry, stamp_usage: bool) -> Message {
    let mut attributes = Map::new();
    if let Some(agent) = &entry.agent_id
        && let Some(tool_use_id) = ctx.side_files.agent_meta().get(agent)
    {
        attributes.insert(
            "claude".into(),
            json!({"spawned_by_tool_use_id": tool_use_id}),
        );
    }
    if stamp_usage && let Some(usage) = entry.usage.into_value() {
        attributes.insert("usage".into(), usage);
    }
    if let Some(result) = entry.tool_use_result {
        match attributes.get_mut("claude") {
            Some(Value::Object(claude)) => {
                claude.insert("tool_use_result".into(), result);
            }
            _ => {
                attributes.insert("claude".into(), json!({"tool_use_result": result}));
            }
        }
    }
    let mut raw_frame = FrameWriter::default();
    raw_frame.field("uuid", entry.uuid.as_deref());
    raw_frame.field("parent_uuid", entry.parent_uuid.as_deref());
    raw_frame.field("logical_parent_uuid", entry.logical_parent_uuid.as_deref());
    raw_frame.field("type", entry.provider_type.as_deref());
    raw_frame.field("subtype", entry.provider_subtype.as_deref());
    raw_frame.field("message_id", entry.api_message_id.as_deref());
    let created_at = entry.ts_ms.map(iso_from_ms);
    raw_frame.field("timestamp", created_at.as_deref());
    Message {
        role: entry.role.unwrap_or_default(),
        content: entry.content,
        message_id: entry.uuid.clone(),
        provider_uuid: entry.uuid,
        parent_uuid: entry.parent_uuid,
        logical_parent_uuid: entry.logical_parent_uuid,
        source_tool_assistant_uuid: entry.source_tool_assistant_uuid,
        request_id: entry.request_id,
        prompt_id: entry.prompt_id,
        provider_type: entry.provider_type,
        provider_subtype: entry.provider_subtype,
        model: entry.model,
        entrypoint: entry.entrypoint,
        user_type: entry.user_type,
        permission_mode: entry.permission_mode,
        is_sidechain: entry.is_sidechain,
        agent_id: entry.agent_id,
        attachment_type: entry.attachment_type,
        hook_event: entry.hook_event,
        is_compact_summary: entry.is_compact_summary,
        compact_metadata: entry.compact_metadata,
        message_created_at: created_at,
        raw_frame: raw_frame.finish(),
        attributes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `usage` as the line decoder normalises it.
    fn normalize_usage(usage: &Value) -> Option<Value> {
        let line: ClaudeLine = serde_json::from_value(json!({"message": {"usage": usage}})).ok()?;
        line.message.usage.into_value()
    }

    #[test]
    fn claude_usage_reproduces_the_reference_example() {
        let usage = json!({"input_tokens":3,"cache_creation_input_tokens":1200,"cache_read_input_tokens":14000,"output_tokens":50,"service_tier":"standard","cache_creation":{"x":1}});
        assert_eq!(
            normalize_usage(&usage).unwrap().to_string(),
            r#"{"input_tokens":3,"output_tokens":50,"cache_read_tokens":14000,"cache_write_tokens":1200}"#
        );
        assert_eq!(normalize_usage(&json!({"service_tier":"standard"})), None);
        assert_eq!(
            normalize_usage(&json!({"input_tokens":null,"output_tokens":5})).unwrap(),
            json!({"output_tokens":5})
        );
    }

    /// The decoder under test, fed from a `Value` literal.
    fn entry_from_line(value: Value) -> Option<Entry> {
        super::entry_from_line(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn lines_without_a_session_or_identity_are_dropped() {
        assert!(entry_from_line(json!({"type":"summary","summary":"x","leafUuid":"l"})).is_none());
        assert!(
            entry_from_line(
                json!({"type":"queue-operation","operation":"enqueue","sessionId":"s"})
            )
            .is_none()
        );
        assert!(
            entry_from_line(json!({"sessionId":"s","type":"system","uuid":"u"}))
                .is_some_and(|entry| entry.role.is_none())
        );
        let entry = entry_from_line(json!({"sessionId":"s","type":"assistant","message":{"model":"<synthetic>","content":"x"}})).unwrap();
        assert_eq!(entry.role.as_deref(), Some("assistant"));
        assert_eq!(entry.model, None);
    }
}
