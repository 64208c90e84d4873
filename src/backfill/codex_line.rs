//! One Codex rollout line (`{timestamp, type, payload}`) decoded into what
//! the import reads, instead of a whole `serde_json::Value` tree. The
//! payload of an `event_msg` (about a third of a rollout's lines, most of
//! them `token_count` events full of numbers) is reduced while it is read
//! to the one thing the import uses, `info.last_token_usage`; every other
//! payload is kept as a JSON object.
//!
//! The decoding keeps the semantics of reading the line as a `Value` first:
//! a line is malformed exactly when `Value` rejects it (see
//! [`super::json_skim`]), and a repeated key keeps its last value. The one
//! case a single pass cannot follow, a `type` repeated after an `event_msg`
//! payload with another value, is flagged so the caller reads the line
//! again as a `Value` ([`CodexLine::from_value`]).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json_skim::{Key, Skip, Text, scalars_become, skip_map, skip_seq};

const EVENT_MSG: &str = "event_msg";

/// The envelope of one rollout line.
#[derive(Debug, Default, PartialEq)]
pub struct CodexLine {
    /// The line is a JSON object (anything else is ignored).
    pub is_object: bool,
    /// `type` when it is a non-empty string, else empty.
    pub kind: String,
    /// `timestamp` when it is a non-empty string.
    pub timestamp: Option<String>,
    pub payload: Payload,
    /// The payload was reduced as an event and a later `type` key made the
    /// line something else: read it again with [`CodexLine::from_value`].
    pub needs_value: bool,
}

/// A line's `payload`.
#[derive(Debug, Default, PartialEq)]
pub enum Payload {
    /// Absent, or not an object: the line carries nothing.
    #[default]
    Absent,
    /// The payload object of every kind but `event_msg`.
    Object(Map<String, Value>),
    /// An `event_msg` payload, reduced.
    Event(EventPayload),
}

/// What the import reads of an `event_msg` payload.
#[derive(Debug, Default, PartialEq)]
pub struct EventPayload {
    /// `type` is `token_count`.
    pub token_count: bool,
    /// `info`, when it is an object.
    pub info: Option<TokenInfo>,
}

/// What the import reads of a `token_count` event's `info`.
#[derive(Debug, Default, PartialEq)]
pub struct TokenInfo {
    pub last_token_usage: Option<Value>,
}

impl CodexLine {
    /// The same decoding from an already parsed value (legacy rollouts, and
    /// the lines flagged [`CodexLine::needs_value`]).
    pub fn from_value(value: Value) -> CodexLine {
        let Value::Object(mut envelope) = value else {
            return CodexLine::default();
        };
        let text = |value: Option<&Value>| {
            value
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_string)
        };
        let kind = text(envelope.get("type")).unwrap_or_default();
        let timestamp = text(envelope.get("timestamp"));
        let payload = match envelope.remove("payload") {
            Some(Value::Object(payload)) if kind == EVENT_MSG => {
                Payload::Event(EventPayload::from_map(&payload))
            }
            Some(Value::Object(payload)) => Payload::Object(payload),
            _ => Payload::Absent,
        };
        CodexLine {
            is_object: true,
            kind,
            timestamp,
            payload,
            needs_value: false,
        }
    }
}

impl EventPayload {
    fn from_map(payload: &Map<String, Value>) -> EventPayload {
        EventPayload {
            token_count: payload.get("type").and_then(Value::as_str) == Some("token_count"),
            info: payload
                .get("info")
                .and_then(Value::as_object)
                .map(|info| TokenInfo {
                    last_token_usage: info.get("last_token_usage").cloned(),
                }),
        }
    }
}

impl<'de> Deserialize<'de> for CodexLine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LineVisitor)
    }
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = CodexLine;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CodexLine, A::Error> {
        let mut kind: Option<String> = None;
        let mut timestamp = None;
        let mut payload = Payload::Absent;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "type" => kind = map.next_value::<Text>()?.0,
                "timestamp" => timestamp = map.next_value::<Text>()?.0,
                "payload" if kind.as_deref() == Some(EVENT_MSG) => {
                    payload = map.next_value::<EventObject>()?.0;
                }
                "payload" => {
                    payload = match map.next_value::<Value>()? {
                        Value::Object(object) => Payload::Object(object),
                        _ => Payload::Absent,
                    };
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let kind = kind.unwrap_or_default();
        let mut needs_value = false;
        payload = match payload {
            Payload::Object(object) if kind == EVENT_MSG => {
                Payload::Event(EventPayload::from_map(&object))
            }
            Payload::Event(event) if kind != EVENT_MSG => {
                needs_value = true;
                Payload::Event(event)
            }
            other => other,
        };
        Ok(CodexLine {
            is_object: true,
            kind,
            timestamp,
            payload,
            needs_value,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CodexLine, A::Error> {
        skip_seq(seq).map(|()| CodexLine::default())
    }

    scalars_become!(CodexLine::default());
}

/// An `event_msg` payload: reduced when it is an object, else absent.
struct EventObject(Payload);

impl<'de> Deserialize<'de> for EventObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = EventObject;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventObject, A::Error> {
        let mut event = EventPayload::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "type" => event.token_count = map.next_value::<TokenCountTag>()?.0,
                "info" => event.info = map.next_value::<InfoObject>()?.0,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(EventObject(Payload::Event(event)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EventObject, A::Error> {
        skip_seq(seq).map(|()| EventObject(Payload::Absent))
    }

    scalars_become!(EventObject(Payload::Absent));
}

/// An event's `type`: whether it is the string `token_count`.
struct TokenCountTag(bool);

impl<'de> Deserialize<'de> for TokenCountTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TokenCountTagVisitor)
    }
}

struct TokenCountTagVisitor;

impl<'de> Visitor<'de> for TokenCountTagVisitor {
    type Value = TokenCountTag;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_str<E>(self, value: &str) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(value == "token_count"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TokenCountTag, A::Error> {
        skip_map(map).map(|()| TokenCountTag(false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TokenCountTag, A::Error> {
        skip_seq(seq).map(|()| TokenCountTag(false))
    }

    fn visit_bool<E>(self, _: bool) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(false))
    }

    fn visit_i64<E>(self, _: i64) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(false))
    }

    fn visit_u64<E>(self, _: u64) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(false))
    }

    fn visit_f64<E>(self, _: f64) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(false))
    }

    fn visit_unit<E>(self) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(false))
    }

    fn visit_none<E>(self) -> Result<TokenCountTag, E> {
        Ok(TokenCountTag(false))
    }
}

/// An event's `info`: its `last_token_usage` when it is an object.
struct InfoObject(Option<TokenInfo>);

impl<'de> Deserialize<'de> for InfoObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InfoVisitor)
    }
}

struct InfoVisitor;

impl<'de> Visitor<'de> for InfoVisitor {
    type Value = InfoObject;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InfoObject, A::Error> {
        let mut info = TokenInfo::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str() == "last_token_usage" {
                info.last_token_usage = Some(map.next_value()?);
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(InfoObject(Some(info)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<InfoObject, A::Error> {
        skip_seq(seq).map(|()| InfoObject(None))
    }

    scalars_become!(InfoObject(None));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed decoding and the `Value` route agree.
    fn both(line: &str) -> (CodexLine, CodexLine) {
        let typed: CodexLine = serde_json::from_str(line).unwrap();
        let value = CodexLine::from_value(serde_json::from_str(line).unwrap());
        (typed, value)
    }

    #[test]
    fn a_line_is_malformed_exactly_when_value_rejects_it() {
        let lines: [&[u8]; 8] = [
            br#"{"type":"event_msg","payload":{"type":"token_count","info":{"x":1e400}}}"#,
            br#"{"type":"event_msg","payload":{"type":"agent_message","message":"\ud800"}}"#,
            b"{\"type\":\"event_msg\",\"payload\":{\"message\":\"\xff\"}}",
            br#"{"type":"response_item","payload":{"type":"message"}} trailing"#,
            br#"{"type":"event_msg","payload":{"type":"token_count","info":{"last_token_usage":{"input_tokens":18446744073709551616}}}}"#,
            br#"[1,{"type":"event_msg"}]"#,
            br#"{"type":"event_msg","payload":{"info":tru}}"#,
            br#"{"ty\u0070e":"event_msg","payload":{"type":"token_count"}}"#,
        ];
        for line in lines {
            assert_eq!(
                serde_json::from_slice::<CodexLine>(line).is_ok(),
                serde_json::from_slice::<Value>(line).is_ok(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn events_are_reduced_to_their_token_usage() {
        let (typed, value) = both(
            r#"{"timestamp":"2026-11-01T00:00:00.000Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":9},"last_token_usage":{"input_tokens":5}},"rate_limits":{"primary":{"used_percent":1.5}}}}"#,
        );
        assert_eq!(typed, value);
        assert_eq!(typed.kind, "event_msg");
        assert_eq!(typed.timestamp.as_deref(), Some("2026-11-01T00:00:00.000Z"));
        assert_eq!(
            typed.payload,
            Payload::Event(EventPayload {
                token_count: true,
                info: Some(TokenInfo {
                    last_token_usage: Some(serde_json::json!({"input_tokens":5}))
                }),
            })
        );
    }

    #[test]
    fn odd_shapes_and_repeated_keys_read_as_value_would() {
        for line in [
            r#"{"type":"event_msg","payload":{"type":"agent_message","message":"hi"}}"#,
            r#"{"type":"event_msg","payload":{"type":"token_count","info":null}}"#,
            r#"{"type":"event_msg","payload":{"type":"token_count","info":{"a":1},"info":[1]}}"#,
            r#"{"type":"event_msg","payload":{"type":"token_count","type":"other"}}"#,
            r#"{"type":"event_msg","payload":[1,2]}"#,
            r#"{"payload":{"type":"token_count","info":{}},"type":"event_msg"}"#,
            r#"{"type":"response_item","payload":{"type":"message","role":"user"}}"#,
            r#"{"type":"response_item","payload":"text","payload":{"type":"reasoning"}}"#,
            r#"{"type":5,"timestamp":"","payload":{}}"#,
            r#""a string""#,
        ] {
            let (typed, value) = both(line);
            assert_eq!(typed, value, "{line}");
        }
    }

    #[test]
    fn a_type_repeated_after_an_event_payload_asks_for_a_second_look() {
        let line =
            r#"{"type":"event_msg","payload":{"type":"token_count"},"type":"response_item"}"#;
        let typed: CodexLine = serde_json::from_str(line).unwrap();
        assert!(typed.needs_value);
        let value = CodexLine::from_value(serde_json::from_str(line).unwrap());
        assert_eq!(value.kind, "response_item");
        assert_eq!(
            value.payload,
            Payload::Object(serde_json::from_str(r#"{"type":"token_count"}"#).unwrap())
        );
    }
}
