//! One Claude transcript line decoded straight into the fields the
//! projection reads, instead of a whole `serde_json::Value` tree: a line's
//! top-level and `message` objects become plain fields, and only the
//! sub-documents that are carried through as JSON (`content`, `usage`,
//! `toolUseResult`, `compactMetadata`, `timestamp`) are built as `Value`s.
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

/// The scalar `visit_*` methods of a visitor that maps every scalar to one
/// value.
macro_rules! scalars_become {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }

        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

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
    pub timestamp: Option<Value>,
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
    pub usage: Option<Value>,
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
                "timestamp" => line.timestamp = Some(map.next_value()?),
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
                "usage" => fields.usage = Some(map.next_value()?),
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

/// Any value: kept only when it is a non-empty string.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E>(self, value: &str) -> Result<Text, E> {
        Ok(Text((!value.is_empty()).then(|| value.to_string())))
    }

    fn visit_string<E>(self, value: String) -> Result<Text, E> {
        Ok(Text((!value.is_empty()).then_some(value)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
        skip_map(map).map(|()| Text(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
        skip_seq(seq).map(|()| Text(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_unit<E>(self) -> Result<Text, E> {
        Ok(Text(None))
    }

    fn visit_none<E>(self) -> Result<Text, E> {
        Ok(Text(None))
    }
}

/// Any value: kept only when it is a boolean.
struct Flag(Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FlagVisitor)
    }
}

struct FlagVisitor;

impl<'de> Visitor<'de> for FlagVisitor {
    type Value = Flag;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Flag, E> {
        Ok(Flag(Some(value)))
    }

    fn visit_str<E>(self, _: &str) -> Result<Flag, E> {
        Ok(Flag(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Flag, A::Error> {
        skip_map(map).map(|()| Flag(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Flag, A::Error> {
        skip_seq(seq).map(|()| Flag(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Flag, E> {
        Ok(Flag(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Flag, E> {
        Ok(Flag(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Flag, E> {
        Ok(Flag(None))
    }

    fn visit_unit<E>(self) -> Result<Flag, E> {
        Ok(Flag(None))
    }

    fn visit_none<E>(self) -> Result<Flag, E> {
        Ok(Flag(None))
    }
}

/// A value parsed (and so validated exactly as `Value` would be) but not
/// kept.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Skip, A::Error> {
        skip_map(map).map(|()| Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Skip, A::Error> {
        skip_seq(seq).map(|()| Skip)
    }

    scalars_become!(Skip);
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Skip, Skip>()?.is_some() {}
    Ok(())
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

/// An object key, borrowed from the line when it has no escapes.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(text) => text,
            Key::Owned(text) => text,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Key<'de>, E> {
        Ok(Key::Owned(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Key<'de>, E> {
        Ok(Key::Owned(value))
    }
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
}
