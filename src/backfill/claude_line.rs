//! One Claude transcript line decoded straight into the fields the
//! projection reads, instead of a whole `serde_json::Value` tree: a line's
//! top-level and `message` objects become plain fields, `timestamp` its
//! milliseconds and `usage` the four counts the `usage` attribute carries;
//! only the sub-documents that are carried through as JSON (`content`,
//! `toolUseResult`, `compactMetadata`, the counts) are built as `Value`s.
//!
//! The decoding keeps the exact semantics of reading the line as a `Value`
//! first: every skipped value is still parsed through `deserialize_any`
//! (strings UTF-8 checked, numbers range-checked, nesting limited), so a
//! line is malformed exactly when `Value` would reject it; a repeated key
//! keeps its last value; a text field is kept only when the value is a
//! non-empty string, a flag only when it is a boolean.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::json_skim::{Flag, Key, Skip, Text, scalars_become, skip_map, skip_seq};
use super::window::{ms_from_number, parse_date_ms};

/// The fields of one transcript line (all `None` when the line is not an
/// object).
#[derive(Debug, Default)]
pub struct ClaudeLine {
    pub session_id: Option<String>,
    pub line_type: Option<String>,
    pub message: MessageFields,
    pub message_id: Option<String>,
    pub uuid: Option<String>,
    pub attachment_type: Option<String>,
    pub attachment_hook_event: Option<String>,
    pub compact_metadata: Option<Value>,
    pub compact_metadata_snake: Option<Value>,
    pub cwd: Option<String>,
    /// `timestamp` in milliseconds (see [`timestamp_ms`]).
    pub ts_ms: Option<i64>,
    pub parent_uuid: Option<String>,
    pub parent_uuid_snake: Option<String>,
    pub logical_parent_uuid: Option<String>,
    pub logical_parent_uuid_snake: Option<String>,
    pub source_tool_assistant_uuid: Option<String>,
    pub source_tool_assistant_uuid_snake: Option<String>,
    pub request_id: Option<String>,
    pub request_id_snake: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_id_snake: Option<String>,
    pub subtype: Option<String>,
    pub entrypoint: Option<String>,
    pub version: Option<String>,
    pub claude_version: Option<String>,
    pub user_type: Option<String>,
    pub user_type_snake: Option<String>,
    pub permission_mode: Option<String>,
    pub permission_mode_snake: Option<String>,
    pub is_sidechain: Option<bool>,
    pub agent_id: Option<String>,
    pub agent_id_snake: Option<String>,
    pub hook_event: Option<String>,
    pub is_compact_summary: Option<bool>,
    pub tool_use_result: Option<Value>,
}

/// The fields of the line's `message` object (all `None` when it is absent
/// or not an object).
#[derive(Debug, Default)]
pub struct MessageFields {
    pub role: Option<String>,
    pub id: Option<String>,
    pub model: Option<String>,
    pub content: Option<Value>,
    /// `usage`, its four counts.
    pub usage: UsageCounts,
}

impl<'de> Deserialize<'de> for ClaudeLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LineVisitor)
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = ClaudeLine;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClaudeLine, A::Error> {
        let mut line = ClaudeLine::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let text = |map: &mut A| map.next_value::<Text>().map(|text| text.0);
            match key.as_str() {
                "sessionId" => line.session_id = text(&mut map)?,
                "type" => line.line_type = text(&mut map)?,
                "message" => line.message = map.next_value::<MessageObject>()?.0,
                "messageId" => line.message_id = text(&mut map)?,
                "uuid" => line.uuid = text(&mut map)?,
                "attachment" => {
                    let attachment = map.next_value::<Attachment>()?;
                    line.attachment_type = attachment.kind;
                    line.attachment_hook_event = attachment.hook_event;
                }
                "compactMetadata" => line.compact_metadata = Some(map.next_value()?),
                "compact_metadata" => line.compact_metadata_snake = Some(map.next_value()?),
                "cwd" => line.cwd = text(&mut map)?,
                "timestamp" => line.ts_ms = map.next_value::<Stamp>()?.0,
                "parentUuid" => line.parent_uuid = text(&mut map)?,
                "parent_uuid" => line.parent_uuid_snake = text(&mut map)?,
                "logicalParentUuid" => line.logical_parent_uuid = text(&mut map)?,
                "logical_parent_uuid" => line.logical_parent_uuid_snake = text(&mut map)?,
                "sourceToolAssistantUUID" => line.source_tool_assistant_uuid = text(&mut map)?,
                "source_tool_assistant_uuid" => {
                    line.source_tool_assistant_uuid_snake = text(&mut map)?
                }
                "requestId" => line.request_id = text(&mut map)?,
                "request_id" => line.request_id_snake = text(&mut map)?,
                "promptId" => line.prompt_id = text(&mut map)?,
                "prompt_id" => line.prompt_id_snake = text(&mut map)?,
                "subtype" => line.subtype = text(&mut map)?,
                "entrypoint" => line.entrypoint = text(&mut map)?,
                "version" => line.version = text(&mut map)?,
                "claude_version" => line.claude_version = text(&mut map)?,
                "userType" => line.user_type = text(&mut map)?,
                "user_type" => line.user_type_snake = text(&mut map)?,
                "permissionMode" => line.permission_mode = text(&mut map)?,
                "permission_mode" => line.permission_mode_snake = text(&mut map)?,
                "isSidechain" => line.is_sidechain = map.next_value::<Flag>()?.0,
                "agentId" => line.agent_id = text(&mut map)?,
                "agent_id" => line.agent_id_snake = text(&mut map)?,
                "hookEvent" => line.hook_event = text(&mut map)?,
                "isCompactSummary" => line.is_compact_summary = map.next_value::<Flag>()?.0,
                "toolUseResult" => line.tool_use_result = Some(map.next_value()?),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(line)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ClaudeLine, A::Error> {
        skip_seq(seq).map(|()| ClaudeLine::default())
    }

    scalars_become!(ClaudeLine::default());
}

/// `message`: its fields when it is an object, else nothing.
struct MessageObject(MessageFields);

impl<'de> Deserialize<'de> for MessageObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = MessageObject;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MessageObject, A::Error> {
        let mut fields = MessageFields::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "role" => fields.role = map.next_value::<Text>()?.0,
                "id" => fields.id = map.next_value::<Text>()?.0,
                "model" => fields.model = map.next_value::<Text>()?.0,
                "content" => fields.content = Some(map.next_value()?),
                "usage" => fields.usage = map.next_value()?,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(MessageObject(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MessageObject, A::Error> {
        skip_seq(seq).map(|()| MessageObject(MessageFields::default()))
    }

    scalars_become!(MessageObject(MessageFields::default()));
}

/// `attachment`: its `type` and `hookEvent` when it is an object.
#[derive(Default)]
struct Attachment {
    kind: Option<String>,
    hook_event: Option<String>,
}

impl<'de> Deserialize<'de> for Attachment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AttachmentVisitor)
    }
}

struct AttachmentVisitor;

impl<'de> Visitor<'de> for AttachmentVisitor {
    type Value = Attachment;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attachment, A::Error> {
        let mut attachment = Attachment::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "type" => attachment.kind = map.next_value::<Text>()?.0,
                "hookEvent" => attachment.hook_event = map.next_value::<Text>()?.0,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(attachment)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Attachment, A::Error> {
        skip_seq(seq).map(|()| Attachment::default())
    }

    scalars_become!(Attachment::default());
}

/// `timestamp` read straight into milliseconds, exactly as
/// [`super::window::timestamp_ms`] reads the `Value` (a date string or a
/// number of milliseconds), without the `Value`: a string is borrowed from
/// the line instead of copied.
struct Stamp(Option<i64>);

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StampVisitor)
    }
}

struct StampVisitor;

impl<'de> Visitor<'de> for StampVisitor {
    type Value = Stamp;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E>(self, value: &str) -> Result<Stamp, E> {
        Ok(Stamp(parse_date_ms(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Stamp, E> {
        Ok(Stamp(ms_from_number(value as f64)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Stamp, E> {
        Ok(Stamp(ms_from_number(value as f64)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Stamp, E> {
        Ok(Stamp(ms_from_number(value)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Stamp, E> {
        Ok(Stamp(None))
    }

    fn visit_unit<E>(self) -> Result<Stamp, E> {
        Ok(Stamp(None))
    }

    fn visit_none<E>(self) -> Result<Stamp, E> {
        Ok(Stamp(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Stamp, A::Error> {
        skip_map(map).map(|()| Stamp(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Stamp, A::Error> {
        skip_seq(seq).map(|()| Stamp(None))
    }
}

/// The `usage` keys kept, and the names they are stored under.
const USAGE_KEYS: [(&str, &str); 4] = [
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_input_tokens", "cache_read_tokens"),
    ("cache_creation_input_tokens", "cache_write_tokens"),
];

/// `message.usage` read straight into the four counts the `usage` attribute
/// carries ([`UsageCounts::into_value`]). Only the four values are built:
/// the rest of the object (`cache_creation`, `server_tool_use`,
/// `service_tier`, ...) is skipped instead of becoming a map that is read
/// four times and dropped. A repeated key keeps its last value, as a
/// `Value` map does; anything but an object counts nothing.
#[derive(Debug, Default)]
pub struct UsageCounts([Option<Value>; 4]);

impl UsageCounts {
    /// `{input_tokens, output_tokens, cache_read_tokens,
    /// cache_write_tokens}`: present, non-null counts only, raw values, in
    /// that order; `None` when there is none. Built only for the block the
    /// usage is stamped on, not for every line.
    pub fn into_value(self) -> Option<Value> {
        let mut out = serde_json::Map::with_capacity(USAGE_KEYS.len());
        for ((_, to), value) in USAGE_KEYS.iter().zip(self.0) {
            if let Some(value) = value.filter(|value| !value.is_null()) {
                out.insert((*to).into(), value);
            }
        }
        (!out.is_empty()).then_some(Value::Object(out))
    }
}

impl<'de> Deserialize<'de> for UsageCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UsageVisitor)
    }
}

struct UsageVisitor;

impl<'de> Visitor<'de> for UsageVisitor {
    type Value = UsageCounts;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsageCounts, A::Error> {
        let mut counts = UsageCounts::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match USAGE_KEYS
                .iter()
                .position(|(from, _)| *from == key.as_str())
            {
                Some(slot) => counts.0[slot] = Some(map.next_value()?),
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(counts)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<UsageCounts, A::Error> {
        skip_seq(seq).map(|()| UsageCounts::default())
    }

    scalars_become!(UsageCounts::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_malformed_exactly_when_value_rejects_it() {
        let lines: [&[u8]; 12] = [
            br#"{"a":1e400}"#,
            br#"{"sessionId":"s","x":[1,{"y":1e999}]}"#,
            b"{\"x\":\"\xff\"}",
            br#"{"x":"\ud800"}"#,
            br#"{"x":1} trailing"#,
            br#"[1,2,{"a":-0.5e-3}]"#,
            br#""just a string""#,
            br#"{"sessionId":"s","sessionId":"t"}"#,
            br#"{"message":{"role":"user"},"message":7}"#,
            br#"{"a":18446744073709551616,"b":-9223372036854775809}"#,
            br#"{"a":tru}"#,
            br#"{"k\u00e9y":"v\n"}"#,
        ];
        for line in lines {
            assert_eq!(
                serde_json::from_slice::<ClaudeLine>(line).is_ok(),
                serde_json::from_slice::<Value>(line).is_ok(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Value>(&deep).is_err());
        assert!(serde_json::from_str::<ClaudeLine>(&deep).is_err());
    }

    #[test]
    fn repeated_keys_keep_their_last_value_and_odd_types_read_as_absent() {
        let line: ClaudeLine = serde_json::from_str(
            r#"{"sessionId":"s","sessionId":"t","cwd":"/a","cwd":5,"message":{"role":"user","content":"x"},"message":[1],"isSidechain":true,"attachment":{"type":"a","hookEvent":"h"},"uuid":""}"#,
        )
        .unwrap();
        assert_eq!(line.session_id.as_deref(), Some("t"));
        assert_eq!(line.cwd, None);
        assert_eq!(line.message.role, None);
        assert_eq!(line.message.content, None);
        assert_eq!(line.is_sidechain, Some(true));
        assert_eq!(line.attachment_type.as_deref(), Some("a"));
        assert_eq!(line.attachment_hook_event.as_deref(), Some("h"));
        assert_eq!(line.uuid, None);
        let line: ClaudeLine =
            serde_json::from_str(r#"{"compactMetadata":null,"toolUseResult":{"a":[1]}}"#).unwrap();
        assert_eq!(line.compact_metadata, Some(Value::Null));
        assert_eq!(line.tool_use_result, Some(serde_json::json!({"a":[1]})));
    }

    #[test]
    fn usage_and_timestamp_read_as_their_values_would() {
        let line: ClaudeLine = serde_json::from_str(
            r#"{"timestamp":"2026-01-02T03:04:05.678Z","timestamp":1767323045678.9,"message":{"usage":{"output_tokens":2,"input_tokens":1,"input_tokens":null,"cache_creation_input_tokens":{"a":1},"x":[1]}}}"#,
        )
        .unwrap();
        assert_eq!(line.ts_ms, Some(1_767_323_045_678));
        assert_eq!(
            line.message
                .usage
                .into_value()
                .map(|usage| usage.to_string())
                .as_deref(),
            Some(r#"{"output_tokens":2,"cache_write_tokens":{"a":1}}"#)
        );
        for (text, ms) in [
            (r#""2026-01-02T03:04:05.678Z""#, Some(1_767_323_045_678)),
            ("-5", Some(-5)),
            ("1e300", None),
            ("true", None),
            ("[1]", None),
            (r#""not a date""#, None),
        ] {
            let line: ClaudeLine =
                serde_json::from_str(&format!(r#"{{"timestamp":{text}}}"#)).unwrap();
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                line.ts_ms,
                super::super::window::timestamp_ms(&value),
                "{text}"
            );
            assert_eq!(line.ts_ms, ms, "{text}");
        }
    }
}
