//! Row expansion: one projected conversation (an [`Item`]) becomes
//! `ai_gateway_messages` rows, one per content block, exactly as the
//! reference's gateway expands them: native or fallback identity, the
//! per-thread `previous_message_id` chain, the seen-set collapse of repeated
//! ids, part mapping, `content_text` with base64 payloads stripped, tool-name
//! lookup within the item, status, and the attributes merge.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use serde::{Deserialize, Serialize};

use super::identity::{fallback_message_id, source_path_hash};
use super::resume::{IdSet, id_hash};
use crate::cache::schema::MessageRow;

pub const GATEWAY_ID: &str = "hypaware-local";
pub const SCHEMA_VERSION: i64 = 7;

/// Exchange-level fields shared by every message of one conversation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exchange {
    pub provider: &'static str,
    pub session_id: String,
    pub conversation_id: Option<String>,
    pub model: Option<String>,
    /// ISO-8601 ms; `None` falls back to [`Item::fallback_started_at`].
    pub conversation_started_at: Option<String>,
    pub conversation_source: String,
    pub client_name: String,
    pub cwd: Option<String>,
    pub git_branch: Option<String>,
    pub git_remote: Option<String>,
    pub head_sha: Option<String>,
    pub repo_root: Option<String>,
    pub client_version: Option<String>,
    pub entrypoint: Option<String>,
    pub user_type: Option<String>,
    pub permission_mode: Option<String>,
    pub is_sidechain: Option<bool>,
    pub parent_thread_id: Option<String>,
    /// Projection-level attributes (Codex: `{codex: {...}}`).
    pub attributes: Map<String, Value>,
}

/// One projected message (one transcript line / rollout item).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub role: String,
    /// The content as the source wrote it (string, array of blocks, ...).
    pub content: Value,
    pub message_id: Option<String>,
    pub provider_uuid: Option<String>,
    pub parent_uuid: Option<String>,
    pub logical_parent_uuid: Option<String>,
    pub source_tool_assistant_uuid: Option<String>,
    pub request_id: Option<String>,
    pub prompt_id: Option<String>,
    pub provider_type: Option<String>,
    pub provider_subtype: Option<String>,
    pub model: Option<String>,
    pub entrypoint: Option<String>,
    pub user_type: Option<String>,
    pub permission_mode: Option<String>,
    pub is_sidechain: Option<bool>,
    pub agent_id: Option<String>,
    pub attachment_type: Option<String>,
    pub hook_event: Option<String>,
    pub is_compact_summary: Option<bool>,
    pub compact_metadata: Option<Value>,
    /// ISO-8601 ms.
    pub message_created_at: Option<String>,
    /// The `raw_frame` column, already compact JSON text (see
    /// [`FrameWriter`]).
    pub raw_frame: Option<String>,
    pub attributes: Map<String, Value>,
}

/// A JSON object of string fields written straight into its compact text,
/// byte for byte what building a `Map` and serialising it gives (keys in
/// insertion order, the same string escaping, no spaces), without the map:
/// its keys, values and index are allocated and freed once per message.
/// Keys must be distinct.
#[derive(Debug, Default)]
pub struct FrameWriter {
    out: Vec<u8>,
}

/// Room for a usual frame (six ids and a timestamp, about 250 bytes), taken
/// with the first field: growing from nothing reallocates five times.
const FRAME_CAPACITY: usize = 320;

impl FrameWriter {
    /// Add `key: value` when there is a value.
    pub fn field(&mut self, key: &str, value: Option<&str>) {
        let Some(value) = value else {
            return;
        };
        if self.out.is_empty() {
            self.out.reserve(FRAME_CAPACITY);
            self.out.push(b'{');
        } else {
            self.out.push(b',');
        }
        let _ = serde_json::to_writer(&mut self.out, key);
        self.out.push(b':');
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    /// The object's text; `None` when it has no field.
    pub fn finish(mut self) -> Option<String> {
        if self.out.is_empty() {
            return None;
        }
        self.out.push(b'}');
        String::from_utf8(self.out).ok()
    }
}

/// One conversation found in one file: what a provider yields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Item {
    pub exchange: Exchange,
    pub messages: Vec<Message>,
    /// Absolute path of the file it came from (provenance).
    pub source_path: String,
    /// Claude session id or Codex thread id.
    pub native_id: String,
    /// Used when nothing in the conversation carries a time: the file's
    /// mtime (deterministic, unlike the clock).
    pub fallback_started_at: String,
}

/// Where the expansion of one conversation stands after its messages so
/// far: everything the rows of messages appended later depend on besides
/// those messages (their `message_index`, `previous_message_id`, the
/// seen-id collapse and tool-name lookup). A whole read starts from the
/// default; a continued read from what the last import stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpansionState {
    /// The thread scope the fallback ids were made in, once any message was
    /// expanded.
    scope: Option<String>,
    /// `message_index` of the next message.
    next_index: usize,
    /// Per agent: the chain's last id and every id it has seen.
    chains: Vec<ChainState>,
    /// `tool_call_id -> tool name` of the tool calls emitted so far.
    tool_names: Vec<(String, String)>,
}

/// One stored chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ChainState {
    agent_id: Option<String>,
    last: Option<String>,
    seen: IdSet,
}

impl ExpansionState {
    /// Whether `item`'s messages can continue this state: the same thread
    /// scope (fallback ids hash it), or nothing expanded yet.
    pub fn continues(&self, item: &Item) -> bool {
        self.scope
            .as_deref()
            .is_none_or(|scope| scope == thread_scope(&item.exchange))
    }

    /// Messages expanded so far (the next `message_index`).
    pub fn messages(&self) -> usize {
        self.next_index
    }
}

/// `conversation_id ?? session_id`: what fallback ids and chains belong to.
fn thread_scope(exchange: &Exchange) -> &str {
    exchange
        .conversation_id
        .as_deref()
        .unwrap_or(&exchange.session_id)
}

/// A chain of message ids within one (thread scope, agent) pair.
#[derive(Default)]
struct Chain {
    seen: HashSet<u128>,
    last: Option<String>,
}

/// [`ExpansionState`] unpacked for lookups.
struct Expansion {
    /// Every id that emitted rows (the union of the chains' sets: an id a
    /// chain saw either emitted or was already here).
    seen: HashSet<u128>,
    chains: HashMap<Option<String>, Chain>,
    tool_names: HashMap<String, String>,
}

impl Expansion {
    fn unpack(state: ExpansionState) -> Expansion {
        let mut seen = HashSet::new();
        let mut chains = HashMap::with_capacity(state.chains.len());
        for chain in state.chains {
            let chain_seen: HashSet<u128> = chain.seen.hashes().iter().copied().collect();
            seen.extend(chain_seen.iter().copied());
            chains.insert(
                chain.agent_id,
                Chain {
                    seen: chain_seen,
                    last: chain.last,
                },
            );
        }
        Expansion {
            seen,
            chains,
            tool_names: state.tool_names.into_iter().collect(),
        }
    }

    fn pack(self, scope: Option<String>, next_index: usize) -> ExpansionState {
        let mut chains: Vec<ChainState> = self
            .chains
            .into_iter()
            .map(|(agent_id, chain)| ChainState {
                agent_id,
                last: chain.last,
                seen: IdSet::from_hashes(chain.seen.into_iter().collect()),
            })
            .collect();
        chains.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let mut tool_names: Vec<(String, String)> = self.tool_names.into_iter().collect();
        tool_names.sort_unstable();
        ExpansionState {
            scope,
            next_index,
            chains,
            tool_names,
        }
    }
}

/// Expand `item` into rows, continuing `state` (the default for a whole
/// conversation) and leaving it where the last message put it.
pub fn expand(item: &Item, state: &mut ExpansionState) -> Vec<MessageRow> {
    let exchange = &item.exchange;
    let ts_start = exchange
        .conversation_started_at
        .clone()
        .unwrap_or_else(|| item.fallback_started_at.clone());
    let thread_scope = thread_scope(exchange).to_string();
    let gateway = gateway_attributes(item);
    let client_attributes = client_attributes(exchange);
    let written = WrittenLayers::new(&client_attributes, &exchange.attributes, &gateway);
    let shared = SharedColumns::new(exchange, &ts_start);
    let stored = std::mem::take(state);
    let first_index = stored.next_index;
    let mut scope = stored.scope.clone();
    let mut expansion = Expansion::unpack(stored);
    let mut rows = Vec::new();

    for (offset, message) in item.messages.iter().enumerate() {
        if message.role.is_empty() {
            continue;
        }
        let content = normalize_content(&message.content);
        if content.is_empty() {
            continue;
        }
        scope.get_or_insert_with(|| thread_scope.clone());
        let agent_id = message.agent_id.clone();
        let chain = expansion.chains.entry(agent_id.clone()).or_default();
        let previous = match &chain.last {
            Some(last) => json_string(&[last]),
            None => "[]".to_string(),
        };
        let (message_id, from_fallback) = match &message.message_id {
            Some(id) => (id.clone(), false),
            None => (
                fallback_message_id(&thread_scope, agent_id.as_deref(), &message.role, &content),
                true,
            ),
        };
        let id = id_hash(&message_id);
        if expansion.seen.contains(&id) {
            if chain.seen.insert(id) {
                chain.last = Some(message_id);
            }
            continue;
        }
        let row_context = RowContext {
            shared: &shared,
            exchange,
            message,
            message_id: &message_id,
            previous_message_id: previous,
            message_index: (first_index + offset) as i64,
            ts_start: &ts_start,
            client_attributes: &client_attributes,
            gateway: if from_fallback {
                &gateway.fallback
            } else {
                &gateway.native
            },
            written: &written,
            from_fallback,
        };
        let last = content.len() - 1;
        for (part_index, block) in content.iter().enumerate() {
            rows.push(row_for_block(
                &row_context,
                block,
                part_index,
                part_index == last,
                &mut expansion.tool_names,
            ));
        }
        expansion.seen.insert(id);
        if chain.seen.insert(id) {
            chain.last = Some(message_id);
        }
    }
    *state = expansion.pack(scope, first_index + item.messages.len());
    rows
}

struct GatewayAttributes {
    native: Map<String, Value>,
    fallback: Map<String, Value>,
}

fn gateway_attributes(item: &Item) -> GatewayAttributes {
    let mut gateway = Map::new();
    gateway.insert("source".into(), json!("backfill"));
    gateway.insert(
        "source_path_hash".into(),
        json!(source_path_hash(&item.source_path)),
    );
    gateway.insert("native_id".into(), json!(item.native_id));
    let mut native = Map::new();
    native.insert("gateway".into(), Value::Object(gateway.clone()));
    gateway.insert("identity_source".into(), json!("gateway_fallback"));
    let mut fallback = Map::new();
    fallback.insert("gateway".into(), Value::Object(gateway));
    GatewayAttributes { native, fallback }
}

fn client_attributes(exchange: &Exchange) -> Map<String, Value> {
    let mut client = Map::new();
    if !exchange.client_name.is_empty() {
        client.insert("name".into(), json!(exchange.client_name));
    }
    if let Some(version) = &exchange.client_version {
        client.insert("version".into(), json!(version));
    }
    let mut out = Map::new();
    if !client.is_empty() {
        out.insert("client".into(), Value::Object(client));
    }
    out
}

/// Exchange-level columns, made once per item and shared by its rows.
struct SharedColumns {
    session_id: Arc<str>,
    conversation_id: Option<Arc<str>>,
    conversation_started_at: Arc<str>,
    conversation_source: Option<Arc<str>>,
    client_name: Option<Arc<str>>,
    cwd: Option<Arc<str>>,
    git_branch: Option<Arc<str>>,
    git_remote: Option<Arc<str>>,
    head_sha: Option<Arc<str>>,
    repo_root: Option<Arc<str>>,
    client_version: Option<Arc<str>>,
    parent_thread_id: Option<Arc<str>>,
    model: Option<Arc<str>>,
    entrypoint: Option<Arc<str>>,
    user_type: Option<Arc<str>>,
    permission_mode: Option<Arc<str>>,
}

impl SharedColumns {
    fn new(exchange: &Exchange, ts_start: &str) -> SharedColumns {
        let shared = |value: &Option<String>| value.as_deref().map(Arc::from);
        let non_empty = |value: &str| (!value.is_empty()).then(|| Arc::from(value));
        SharedColumns {
            session_id: Arc::from(exchange.session_id.as_str()),
            conversation_id: shared(&exchange.conversation_id),
            conversation_started_at: Arc::from(
                exchange
                    .conversation_started_at
                    .as_deref()
                    .unwrap_or(ts_start),
            ),
            conversation_source: non_empty(&exchange.conversation_source),
            client_name: non_empty(&exchange.client_name),
            cwd: shared(&exchange.cwd),
            git_branch: shared(&exchange.git_branch),
            git_remote: shared(&exchange.git_remote),
            head_sha: shared(&exchange.head_sha),
            repo_root: shared(&exchange.repo_root),
            client_version: shared(&exchange.client_version),
            parent_thread_id: shared(&exchange.parent_thread_id),
            model: shared(&exchange.model),
            entrypoint: shared(&exchange.entrypoint),
            user_type: shared(&exchange.user_type),
            permission_mode: shared(&exchange.permission_mode),
        }
    }
}

struct RowContext<'a> {
    shared: &'a SharedColumns,
    exchange: &'a Exchange,
    message: &'a Message,
    message_id: &'a str,
    previous_message_id: String,
    message_index: i64,
    ts_start: &'a str,
    client_attributes: &'a Map<String, Value>,
    gateway: &'a Map<String, Value>,
    written: &'a WrittenLayers,
    from_fallback: bool,
}

/// The attribute layers every row of an item shares (client, exchange,
/// gateway), each one's entries written once as JSON text (`"k":v,...`,
/// no braces): when no key is in two layers, a row's merge is these texts
/// and its message's entries side by side, so a row writes only its
/// message's layer instead of the same few objects again.
struct WrittenLayers {
    client: Vec<u8>,
    exchange: Vec<u8>,
    native: Vec<u8>,
    fallback: Vec<u8>,
    /// The shared layers' keys when no key is in two of them (`None`:
    /// every row takes the general merge).
    keys: Option<Vec<String>>,
}

impl WrittenLayers {
    fn new(
        client: &Map<String, Value>,
        exchange: &Map<String, Value>,
        gateway: &GatewayAttributes,
    ) -> WrittenLayers {
        let written = |map: &Map<String, Value>| {
            let mut out = Vec::new();
            write_entries(&mut out, map, None);
            out
        };
        let disjoint = |maps: [&Map<String, Value>; 3]| {
            let total: usize = maps.iter().map(|map| map.len()).sum();
            let mut keys: Vec<&String> = maps.iter().flat_map(|map| map.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len() == total
        };
        let keys = (disjoint([client, exchange, &gateway.native])
            && disjoint([client, exchange, &gateway.fallback]))
        .then(|| {
            [client, exchange, &gateway.native, &gateway.fallback]
                .iter()
                .flat_map(|map| map.keys().cloned())
                .collect()
        });
        WrittenLayers {
            client: written(client),
            exchange: written(exchange),
            native: written(&gateway.native),
            fallback: written(&gateway.fallback),
            keys,
        }
    }

    /// The merge of client, `message`, exchange and gateway layers, from the
    /// written texts; `None` when a key of `message` is in a shared layer
    /// (the caller merges in general then).
    fn merged(&self, message: &Layer<'_>, from_fallback: bool) -> Option<Option<String>> {
        let keys = self.keys.as_ref()?;
        let clash = message
            .map
            .keys()
            .any(|key| message.skip != Some(key.as_str()) && keys.contains(key));
        if clash {
            return None;
        }
        let gateway = if from_fallback {
            &self.fallback
        } else {
            &self.native
        };
        let mut out: Vec<u8> = Vec::with_capacity(256);
        out.push(b'{');
        append_entries(&mut out, &self.client);
        write_entries(&mut out, message.map, message.skip);
        append_entries(&mut out, &self.exchange);
        append_entries(&mut out, gateway);
        if out.len() == 1 {
            return Some(None);
        }
        out.push(b'}');
        Some(String::from_utf8(out).ok())
    }
}

/// The separator before the next entry written into an object's text (or
/// into a run of entries with no brace yet).
fn push_separator(out: &mut Vec<u8>) {
    if !matches!(out.last(), None | Some(b'{')) {
        out.push(b',');
    }
}

/// `map`'s entries (but `skip`) as `"k":v`, compact, after what `out` has.
fn write_entries(out: &mut Vec<u8>, map: &Map<String, Value>, skip: Option<&str>) {
    for (key, value) in map {
        if skip == Some(key.as_str()) {
            continue;
        }
        push_separator(out);
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// Entries already written (possibly none) after what `out` has.
fn append_entries(out: &mut Vec<u8>, entries: &[u8]) {
    if !entries.is_empty() {
        push_separator(out);
        out.extend_from_slice(entries);
    }
}

fn row_for_block(
    ctx: &RowContext<'_>,
    block: &Value,
    part_index: usize,
    is_last: bool,
    tool_names: &mut HashMap<String, String>,
) -> MessageRow {
    let exchange = ctx.exchange;
    let message = ctx.message;
    let block_type = block
        .get("type")
        .and_then(non_empty_str)
        .map(str::to_string);
    let part_type = part_type(block_type.as_deref());
    let is_call = matches!(block_type.as_deref(), Some("tool_use" | "server_tool_use"));
    let is_result = matches!(
        block_type.as_deref(),
        Some("tool_result" | "web_search_tool_result")
    );
    let tool_call_id = if is_call {
        block.get("id").and_then(non_empty_str).map(str::to_string)
    } else if is_result {
        block
            .get("tool_use_id")
            .and_then(non_empty_str)
            .map(str::to_string)
    } else {
        None
    };
    let tool_name = if is_call {
        block
            .get("name")
            .and_then(non_empty_str)
            .map(str::to_string)
    } else if is_result {
        tool_call_id
            .as_ref()
            .and_then(|id| tool_names.get(id).cloned())
    } else {
        None
    };
    if part_type == "tool_call"
        && let (Some(id), Some(name)) = (&tool_call_id, &tool_name)
    {
        tool_names.insert(id.clone(), name.clone());
    }
    let message_created_at = message
        .message_created_at
        .clone()
        .unwrap_or_else(|| ctx.ts_start.to_string());
    let date = message_created_at.get(..10).unwrap_or_default().to_string();

    let message_layer = Layer {
        map: &message.attributes,
        skip: (!is_last).then_some("usage"),
    };
    let attributes = match ctx.written.merged(&message_layer, ctx.from_fallback) {
        Some(attributes) => attributes,
        None => merged_json(&[
            Layer::whole(ctx.client_attributes),
            message_layer,
            Layer::whole(&exchange.attributes),
            Layer::whole(ctx.gateway),
        ]),
    };

    let shared = ctx.shared;
    MessageRow {
        gateway_id: GATEWAY_ID.into(),
        schema_version: SCHEMA_VERSION,
        session_id: shared.session_id.clone(),
        conversation_id: shared.conversation_id.clone(),
        user_id: None,
        provider: exchange.provider.into(),
        model: message
            .model
            .as_deref()
            .map(Arc::from)
            .or_else(|| shared.model.clone()),
        system_text: None,
        tools: None,
        conversation_started_at: shared.conversation_started_at.clone(),
        conversation_source: shared.conversation_source.clone(),
        client_name: shared.client_name.clone(),
        cwd: shared.cwd.clone(),
        git_branch: shared.git_branch.clone(),
        git_remote: shared.git_remote.clone(),
        head_sha: shared.head_sha.clone(),
        repo_root: shared.repo_root.clone(),
        client_version: shared.client_version.clone(),
        entrypoint: message
            .entrypoint
            .as_deref()
            .map(Arc::from)
            .or_else(|| shared.entrypoint.clone()),
        user_type: message
            .user_type
            .as_deref()
            .map(Arc::from)
            .or_else(|| shared.user_type.clone()),
        permission_mode: message
            .permission_mode
            .as_deref()
            .map(Arc::from)
            .or_else(|| shared.permission_mode.clone()),
        is_sidechain: message.is_sidechain.or(exchange.is_sidechain),
        agent_id: message.agent_id.clone(),
        parent_thread_id: shared.parent_thread_id.clone(),
        message_id: ctx.message_id.to_string(),
        previous_message_id: ctx.previous_message_id.clone(),
        provider_uuid: message.provider_uuid.clone(),
        parent_uuid: message.parent_uuid.clone(),
        logical_parent_uuid: message.logical_parent_uuid.clone(),
        source_tool_assistant_uuid: message.source_tool_assistant_uuid.clone(),
        request_id: message.request_id.clone(),
        prompt_id: message.prompt_id.clone(),
        message_index: ctx.message_index,
        message_created_at,
        role: message.role.clone(),
        part_id: part_id(ctx.message_id, part_index),
        part_index: part_index as i64,
        part_type,
        provider_type: message.provider_type.clone(),
        provider_subtype: message
            .provider_subtype
            .clone()
            .or_else(|| block_type.clone()),
        content_text: content_text(block).map(strip_base64_payloads),
        tool_name,
        tool_call_id: tool_call_id.clone(),
        tool_args: if is_call {
            block.get("input").and_then(json_text)
        } else {
            None
        },
        caller_type: block
            .get("caller")
            .and_then(|caller| caller.get("type"))
            .and_then(non_empty_str)
            .map(str::to_string),
        tool_result_for: if is_result { tool_call_id } else { None },
        thinking_signature: if matches!(
            block_type.as_deref(),
            Some("thinking" | "redacted_thinking")
        ) {
            block
                .get("signature")
                .and_then(non_empty_str)
                .map(str::to_string)
        } else {
            None
        },
        attachment_type: message.attachment_type.clone(),
        hook_event: message.hook_event.clone(),
        is_error: (block.get("is_error") == Some(&Value::Bool(true))).then_some(true),
        is_compact_summary: message.is_compact_summary,
        compact_metadata: message.compact_metadata.as_ref().and_then(json_text),
        status: status(block, block_type.as_deref()),
        attributes,
        raw_frame: message.raw_frame.clone(),
        date,
    }
}

/// A JSON value as compact text; JSON `null` is stored as SQL NULL.
fn json_text(value: &Value) -> Option<String> {
    (!value.is_null()).then(|| json_string(value))
}

/// Compact JSON text, written straight into a byte buffer (the `Display`
/// route goes through a formatter, and an owned map would need a clone to
/// become a `Value`). Serialising these types cannot fail: their keys are
/// strings.
pub fn json_string<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `<message_id>#<part_index>`, in one allocation.
fn part_id(message_id: &str, part_index: usize) -> String {
    use std::fmt::Write;
    let mut id = String::with_capacity(message_id.len() + 4);
    id.push_str(message_id);
    let _ = write!(id, "#{part_index}");
    id
}

/// A non-empty JSON string.
pub fn non_empty_str(value: &Value) -> Option<&str> {
    value.as_str().filter(|text| !text.is_empty())
}

/// A string becomes one text block; an array is kept (borrowed); anything
/// else is empty.
pub fn normalize_content(content: &Value) -> Cow<'_, [Value]> {
    match content {
        Value::String(text) if text.is_empty() => Cow::Owned(Vec::new()),
        Value::String(text) => Cow::Owned(vec![json!({"type": "text", "text": text})]),
        Value::Array(blocks) => Cow::Borrowed(blocks.as_slice()),
        _ => Cow::Owned(Vec::new()),
    }
}

fn part_type(block_type: Option<&str>) -> std::borrow::Cow<'static, str> {
    let known = match block_type {
        Some("text") | None => "text",
        Some("thinking" | "redacted_thinking") => "reasoning",
        Some("tool_use" | "server_tool_use") => "tool_call",
        Some("tool_result" | "web_search_tool_result") => "tool_result",
        Some("image") => "image",
        Some("document" | "file") => "file",
        Some("error") => "error",
        Some(other) => return other.to_string().into(),
    };
    known.into()
}

fn content_text(block: &Value) -> Option<String> {
    let block = block.as_object()?;
    let text_of = |key: &str| block.get(key).and_then(non_empty_str).map(str::to_string);
    match block.get("type").and_then(Value::as_str) {
        Some("text") => text_of("text"),
        Some("thinking") => text_of("thinking"),
        Some("redacted_thinking") => text_of("data"),
        Some("tool_result") => match block.get("content") {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Array(parts)) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter(|part| part.is_object())
                    .filter_map(|part| part.get("text").and_then(non_empty_str))
                    .collect();
                (!texts.is_empty()).then(|| texts.join("\n"))
            }
            _ => None,
        },
        Some("error") => text_of("message").or_else(|| text_of("text")),
        _ => None,
    }
}

fn status(block: &Value, block_type: Option<&str>) -> Option<String> {
    let mut status = Map::new();
    if matches!(block_type, Some("tool_result" | "web_search_tool_result")) {
        let failed = block.get("is_error") == Some(&Value::Bool(true));
        status.insert(
            "tool_status".into(),
            json!(if failed { "error" } else { "success" }),
        );
    }
    if block_type == Some("error") {
        let string_of = |key: &str| block.get(key).and_then(Value::as_str).map(str::to_string);
        if let Some(code) = string_of("error_code").or_else(|| string_of("code")) {
            status.insert("error_code".into(), json!(code));
        }
        if let Some(message) = string_of("message").or_else(|| string_of("text")) {
            status.insert("error_message".into(), json!(message));
        }
    }
    (!status.is_empty()).then(|| json_string(&status))
}

/// Right-biased merge, nested objects merged one level deep.
pub fn merge_json_objects(target: &mut Map<String, Value>, source: &Map<String, Value>) {
    for (key, value) in source {
        match (target.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                for (inner_key, inner_value) in incoming {
                    existing.insert(inner_key.clone(), inner_value.clone());
                }
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// One object in a merge, optionally without one key.
struct Layer<'a> {
    map: &'a Map<String, Value>,
    skip: Option<&'static str>,
}

impl<'a> Layer<'a> {
    fn whole(map: &'a Map<String, Value>) -> Layer<'a> {
        Layer { map, skip: None }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        if self.skip == Some(key) {
            return None;
        }
        self.map.get(key)
    }
}

/// What one top-level key of a merge resolves to.
enum Merged<'a> {
    Whole(&'a Value),
    Objects(Vec<&'a Map<String, Value>>),
}

/// The compact JSON of [`merge_json_objects`] applied left to right over
/// `layers`, written straight from the borrowed layers (no clones). `None`
/// when the result is empty.
fn merged_json(layers: &[Layer<'_>]) -> Option<String> {
    let mut keys: Vec<&str> = Vec::new();
    for layer in layers {
        for key in layer.map.keys() {
            if layer.skip != Some(key.as_str()) && !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(256);
    out.push(b'{');
    for (index, key) in keys.iter().enumerate() {
        let mut state: Option<Merged<'_>> = None;
        for value in layers.iter().filter_map(|layer| layer.get(key)) {
            state = Some(match (state, value) {
                (Some(Merged::Whole(Value::Object(first))), Value::Object(next)) => {
                    Merged::Objects(vec![first, next])
                }
                (Some(Merged::Objects(mut maps)), Value::Object(next)) => {
                    maps.push(next);
                    Merged::Objects(maps)
                }
                _ => Merged::Whole(value),
            });
        }
        if index > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        match state {
            Some(Merged::Whole(value)) => {
                let _ = serde_json::to_writer(&mut out, value);
            }
            Some(Merged::Objects(maps)) => write_merged_object(&mut out, &maps),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    String::from_utf8(out).ok()
}

/// Inner keys in first-appearance order, the last map's value winning.
fn write_merged_object(out: &mut Vec<u8>, maps: &[&Map<String, Value>]) {
    let mut inner: Vec<&str> = Vec::new();
    for map in maps {
        for key in map.keys() {
            if !inner.contains(&key.as_str()) {
                inner.push(key);
            }
        }
    }
    out.push(b'{');
    for (index, key) in inner.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        if let Some(value) = maps.iter().rev().find_map(|map| map.get(*key)) {
            let _ = serde_json::to_writer(&mut *out, value);
        }
    }
    out.push(b'}');
}

/// Replace every `data:<type>;base64,<payload>` with a `<stripped>` marker.
pub fn strip_base64_payloads(text: String) -> String {
    const MARKER: &str = ";base64,";
    if !text.contains(MARKER) {
        return text;
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("data:") {
        let start = search + found;
        let type_start = start + 5;
        let Some(matched) = match_data_uri(bytes, type_start) else {
            search = type_start;
            continue;
        };
        let (type_end, payload_end) = matched;
        let media_type = &text[type_start..type_end];
        out.push_str(&text[copied..start]);
        out.push_str("data:");
        out.push_str(if media_type.is_empty() {
            "application/octet-stream"
        } else {
            media_type
        });
        out.push_str(";base64,<stripped>");
        copied = payload_end;
        search = payload_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// At `type_start` (just after `data:`): the shortest media type of at most
/// 255 non-space, non-comma bytes followed by `;base64,` and at least one
/// payload byte. Returns (media type end, payload end).
fn match_data_uri(bytes: &[u8], type_start: usize) -> Option<(usize, usize)> {
    const MARKER: &[u8] = b";base64,";
    let is_payload =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=' | b'_' | b'-');
    let mut type_end = type_start;
    loop {
        if type_end - type_start > 255 {
            return None;
        }
        if bytes[type_end..].starts_with(MARKER) {
            let payload_start = type_end + MARKER.len();
            let payload_len = bytes[payload_start..]
                .iter()
                .take_while(|byte| is_payload(**byte))
                .count();
            if payload_len > 0 {
                return Some((type_end, payload_start + payload_len));
            }
        }
        let byte = *bytes.get(type_end)?;
        if byte.is_ascii_whitespace() || byte == b',' {
            return None;
        }
        type_end += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_writes_exactly_what_a_serialised_map_gives() {
        let fields = [
            ("uuid", Some("a\"b\\c\u{1}\n\u{e9}\u{1f600}</")),
            ("parent_uuid", None),
            ("type", Some("")),
            ("timestamp", Some("2026-01-01T00:00:00.000Z")),
        ];
        let mut frame = FrameWriter::default();
        let mut map = Map::new();
        for (key, value) in fields {
            frame.field(key, value);
            if let Some(value) = value {
                map.insert(key.into(), Value::String(value.into()));
            }
        }
        assert_eq!(frame.finish(), Some(json_string(&map)));
        assert_eq!(FrameWriter::default().finish(), None);
    }

    #[test]
    fn base64_payloads_are_stripped() {
        assert_eq!(
            strip_base64_payloads("data:image/png;base64,AAAA== ok".into()),
            "data:image/png;base64,<stripped> ok"
        );
        assert_eq!(
            strip_base64_payloads("a data:;base64,QQ== b data:application/pdf;base64,JVBE".into()),
            "a data:application/octet-stream;base64,<stripped> b data:application/pdf;base64,<stripped>"
        );
        assert_eq!(
            strip_base64_payloads("no data: here;base64, x".into()),
            "no data: here;base64, x"
        );
        assert_eq!(strip_base64_payloads("plain".into()), "plain");
        let stripped = strip_base64_payloads("data:image/png;base64,AAAA".into());
        assert_eq!(
            strip_base64_payloads(stripped.clone()),
            stripped,
            "idempotent"
        );
    }

    #[test]
    fn merge_is_right_biased_one_level_deep() {
        let mut target = json!({"client": {"name": "c"}, "usage": {"a": 1}})
            .as_object()
            .unwrap()
            .clone();
        let source = json!({"client": {"version": "v"}, "usage": 5, "gateway": {"x": 1}});
        merge_json_objects(&mut target, source.as_object().unwrap());
        assert_eq!(
            Value::Object(target).to_string(),
            r#"{"client":{"name":"c","version":"v"},"usage":5,"gateway":{"x":1}}"#
        );
    }

    #[test]
    fn merged_json_matches_the_cloning_merge() {
        let layers = [
            json!({"client": {"name": "c"}, "usage": {"a": 1}, "x": 1}),
            json!({"claude": {"t": 1}, "usage": {"b": 2}, "x": {"o": 1}}),
            json!({"codex": {"k": "v"}, "x": {"p": 2}, "client": {"version": "v", "name": "d"}}),
            json!({"gateway": {"source": "backfill"}, "usage": 7}),
        ];
        let maps: Vec<&Map<String, Value>> = layers
            .iter()
            .map(|layer| layer.as_object().unwrap())
            .collect();
        let mut expected = Map::new();
        for map in &maps {
            merge_json_objects(&mut expected, map);
        }
        let borrowed: Vec<Layer<'_>> = maps.iter().map(|map| Layer::whole(map)).collect();
        assert_eq!(
            merged_json(&borrowed).unwrap(),
            Value::Object(expected).to_string()
        );
        let without_usage = [
            Layer::whole(maps[0]),
            Layer {
                map: maps[1],
                skip: Some("usage"),
            },
        ];
        assert_eq!(
            merged_json(&without_usage).unwrap(),
            r#"{"client":{"name":"c"},"usage":{"a":1},"x":{"o":1},"claude":{"t":1}}"#
        );
        assert_eq!(merged_json(&[Layer::whole(&Map::new())]), None);
    }

    #[test]
    fn written_layers_give_the_general_merge_or_step_aside() {
        let object = |value: Value| value.as_object().cloned().unwrap_or_default();
        let client = object(json!({"client": {"name": "c", "version": "1"}}));
        let gateway = GatewayAttributes {
            native: object(json!({"gateway": {"source": "backfill"}})),
            fallback: object(json!({"gateway": {"source": "backfill", "identity_source": "f"}})),
        };
        let messages = [
            json!({}),
            json!({"usage": {"input_tokens": 1}}),
            json!({"claude": {"tool_use_result": [1, "\u{e9}\n"]}, "usage": 5}),
            json!({"usage": 5, "client": {"version": "2"}}),
            json!({"gateway": {"x": 1}}),
        ];
        for exchange in [
            Map::new(),
            object(json!({"codex": {"k": "v"}})),
            object(json!({"client": {"x": 1}})),
        ] {
            let written = WrittenLayers::new(&client, &exchange, &gateway);
            for message in &messages {
                let message = object(message.clone());
                for skip in [None, Some("usage")] {
                    for (from_fallback, gateway_map) in
                        [(false, &gateway.native), (true, &gateway.fallback)]
                    {
                        let layer = Layer {
                            map: &message,
                            skip,
                        };
                        let general = merged_json(&[
                            Layer::whole(&client),
                            Layer {
                                map: &message,
                                skip,
                            },
                            Layer::whole(&exchange),
                            Layer::whole(gateway_map),
                        ]);
                        if let Some(fast) = written.merged(&layer, from_fallback) {
                            assert_eq!(fast, general, "{message:?} {exchange:?} {skip:?}");
                        }
                    }
                }
            }
        }
        let written = WrittenLayers::new(&client, &Map::new(), &gateway);
        let clashing = object(json!({"client": {"version": "2"}}));
        assert!(written.merged(&Layer::whole(&clashing), false).is_none());
        let empty = GatewayAttributes {
            native: Map::new(),
            fallback: Map::new(),
        };
        let none = WrittenLayers::new(&Map::new(), &Map::new(), &empty);
        assert_eq!(none.merged(&Layer::whole(&Map::new()), false), Some(None));
    }

    #[test]
    fn a_continued_expansion_gives_the_rows_of_a_whole_one() {
        let message = |role: &str, content: Value, id: Option<&str>, agent: Option<&str>| Message {
            role: role.into(),
            content,
            message_id: id.map(str::to_string),
            agent_id: agent.map(str::to_string),
            ..Message::default()
        };
        let messages = vec![
            message("user", json!("continue"), None, None),
            message(
                "assistant",
                json!([{"type":"text","text":"ok"},{"type":"tool_use","id":"t1","name":"Bash","input":{}}]),
                Some("m1"),
                None,
            ),
            message("user", json!(""), None, None),
            message("user", json!("continue"), None, None),
            message("assistant", json!("side"), None, Some("a1")),
            message(
                "user",
                json!([{"type":"tool_result","tool_use_id":"t1","content":"x"}]),
                Some("m2"),
                None,
            ),
            message("assistant", json!("ok"), Some("m1"), Some("a1")),
            message("user", json!("continue"), None, Some("a1")),
            message("assistant", json!("done"), Some("m3"), None),
        ];
        let item = |messages: Vec<Message>| Item {
            exchange: Exchange {
                provider: "anthropic",
                session_id: "s".into(),
                client_name: "claude".into(),
                ..Exchange::default()
            },
            messages,
            source_path: "/p".into(),
            native_id: "s".into(),
            fallback_started_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let mut whole_state = ExpansionState::default();
        let whole = expand(&item(messages.clone()), &mut whole_state);
        for split in 0..=messages.len() {
            let mut state = ExpansionState::default();
            let mut rows = expand(&item(messages[..split].to_vec()), &mut state);
            let stored: ExpansionState =
                serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            let mut state = stored;
            assert!(state.continues(&item(Vec::new())));
            rows.extend(expand(&item(messages[split..].to_vec()), &mut state));
            assert_eq!(rows, whole, "split at {split}");
            assert_eq!(state, whole_state, "split at {split}");
        }
        assert_eq!(whole_state.messages(), messages.len());
        let other_thread = Item {
            exchange: Exchange {
                session_id: "other".into(),
                ..item(Vec::new()).exchange
            },
            ..item(Vec::new())
        };
        assert!(!whole_state.continues(&other_thread));
    }

    #[test]
    fn repeated_ids_collapse_and_consume_their_index() {
        let message = |text: &str| Message {
            role: "user".into(),
            content: json!(text),
            ..Message::default()
        };
        let item = Item {
            exchange: Exchange {
                provider: "openai",
                session_id: "s".into(),
                conversation_id: Some("t".into()),
                client_name: "codex".into(),
                conversation_source: "codex".into(),
                ..Exchange::default()
            },
            messages: vec![message("continue"), message("continue"), message("next")],
            source_path: "/p".into(),
            native_id: "t".into(),
            fallback_started_at: "2026-01-01T00:00:00.000Z".into(),
        };
        let rows = expand(&item, &mut ExpansionState::default());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].message_index, 2);
        assert_eq!(
            rows[1].previous_message_id,
            format!("[\"{}\"]", rows[0].message_id)
        );
        assert_eq!(rows[0].date, "2026-01-01");
        assert!(
            rows[0]
                .attributes
                .as_deref()
                .unwrap()
                .contains("gateway_fallback")
        );
    }
}
