//! The ingest wire form of one cache row (contract §12, reference
//! forward-sink.md §2.3): one compact JSON object, the 56 columns of
//! `ai_gateway_messages` in declared order, every key present (`null` when
//! empty), booleans as `true`/`false`, JSON columns nested (never strings),
//! timestamps and `date` as the ISO text the cache stores, integers beyond
//! ±(2^53 − 1) as decimal strings. No internal column (the sequence) is sent.
//!
//! Built straight into a byte buffer from the values SQLite hands back, so
//! an export never holds a row as a `serde_json::Value`.

use rusqlite::types::ValueRef;

use crate::cache::schema::COLUMNS;

/// How a column travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// TEXT (timestamps and `date` included): a JSON string.
    Text,
    /// INTEGER: a JSON number.
    Integer,
    /// 0/1 in the cache: `true`/`false`.
    Boolean,
    /// Compact JSON text in the cache: the value itself, nested.
    Json,
}

const BOOLEAN_COLUMNS: [&str; 3] = ["is_sidechain", "is_error", "is_compact_summary"];
const INTEGER_COLUMNS: [&str; 3] = ["schema_version", "message_index", "part_index"];
const JSON_COLUMNS: [&str; 7] = [
    "tools",
    "previous_message_id",
    "tool_args",
    "compact_metadata",
    "status",
    "attributes",
    "raw_frame",
];

/// The largest integer a JSON number carries exactly everywhere.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The kind of column `name`.
pub fn column_kind(name: &str) -> ColumnKind {
    if BOOLEAN_COLUMNS.contains(&name) {
        ColumnKind::Boolean
    } else if INTEGER_COLUMNS.contains(&name) {
        ColumnKind::Integer
    } else if JSON_COLUMNS.contains(&name) {
        ColumnKind::Json
    } else {
        ColumnKind::Text
    }
}

/// The kinds of [`COLUMNS`], in order.
pub fn column_kinds() -> [ColumnKind; 56] {
    COLUMNS.map(column_kind)
}

/// Append one row as an NDJSON line (with its `\n`) to `out`. `values` are
/// the 56 columns in [`COLUMNS`] order, as SQLite returned them.
///
/// JSON columns are copied as stored: only the cache writer fills them, and
/// it stores compact JSON made by serde_json. A value SQLite typed
/// differently from its column (a hand-edited cache) still makes valid
/// JSON: the text is sent as a string, a number as a number.
pub fn append_line(out: &mut Vec<u8>, kinds: &[ColumnKind; 56], values: &[ValueRef<'_>]) {
    debug_assert_eq!(values.len(), COLUMNS.len());
    out.push(b'{');
    for (index, ((name, kind), value)) in COLUMNS.iter().zip(kinds).zip(values).enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        append_value(out, *kind, *value);
    }
    out.extend_from_slice(b"}\n");
}

fn append_value(out: &mut Vec<u8>, kind: ColumnKind, value: ValueRef<'_>) {
    match (kind, value) {
        (_, ValueRef::Null) => out.extend_from_slice(b"null"),
        (ColumnKind::Boolean, ValueRef::Integer(flag)) => {
            out.extend_from_slice(if flag != 0 { b"true" } else { b"false" })
        }
        (ColumnKind::Json, ValueRef::Text(text)) if !text.is_empty() => out.extend_from_slice(text),
        (_, ValueRef::Integer(number)) => append_integer(out, number),
        (_, ValueRef::Real(number)) if number.is_finite() => {
            // serde_json prints the shortest text that reads back the same.
            let _ = serde_json::to_writer(&mut *out, &number);
        }
        (_, ValueRef::Real(_)) => out.extend_from_slice(b"null"),
        (_, ValueRef::Text(bytes) | ValueRef::Blob(bytes)) => match std::str::from_utf8(bytes) {
            Ok(text) => append_string(out, text),
            Err(_) => append_string(out, &String::from_utf8_lossy(bytes)),
        },
    }
}

fn append_integer(out: &mut Vec<u8>, number: i64) {
    if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&number) {
        out.extend_from_slice(number.to_string().as_bytes());
    } else {
        out.push(b'"');
        out.extend_from_slice(number.to_string().as_bytes());
        out.push(b'"');
    }
}

fn append_string(out: &mut Vec<u8>, text: &str) {
    // serde_json's escaper: quotes, backslash and controls; UTF-8 kept as is.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::schema::{MessageRow, create_statements, insert_statement};

    /// One row per value kind, through a real cache table, to the wire.
    fn wire_line(row: &MessageRow) -> String {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&create_statements()).unwrap();
        conn.execute(&insert_statement(), row.values().as_slice())
            .unwrap();
        let sql = format!("SELECT {} FROM ai_gateway_messages", COLUMNS.join(", "));
        let mut statement = conn.prepare(&sql).unwrap();
        let mut rows = statement.query([]).unwrap();
        let row = rows.next().unwrap().unwrap();
        let values: Vec<ValueRef> = (0..56).map(|i| row.get_ref(i).unwrap()).collect();
        let mut out = Vec::new();
        append_line(&mut out, &column_kinds(), &values);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_row_travels_byte_for_byte_as_pinned() {
        let row = MessageRow {
            gateway_id: "hypaware-local".into(),
            schema_version: 7,
            session_id: "s-1".into(),
            provider: "anthropic".into(),
            conversation_started_at: "2025-10-01T12:00:00.000Z".into(),
            client_name: Some("claude".into()),
            cwd: Some("/home/u/naïve \"repo\"".into()),
            is_sidechain: Some(false),
            message_id: "a1".into(),
            previous_message_id: "[]".into(),
            message_index: 9_007_199_254_740_993,
            message_created_at: "2025-10-01T12:00:01.500Z".into(),
            role: "assistant".into(),
            part_id: "a1#0".into(),
            part_index: 0,
            part_type: "tool_call".into(),
            content_text: Some("line1\nline2\ttab \u{1} ✓ 日本".into()),
            tool_args: Some(r#"{"command":["ls","-la"],"n":1.5}"#.into()),
            is_error: Some(true),
            attributes: Some(
                r#"{"usage":{"input_tokens":3},"gateway":{"source":"backfill"}}"#.into(),
            ),
            date: "2025-10-01".into(),
            ..MessageRow::default()
        };
        let expected = concat!(
            r#"{"gateway_id":"hypaware-local","schema_version":7,"session_id":"s-1","conversation_id":null,"#,
            r#""user_id":null,"provider":"anthropic","model":null,"system_text":null,"tools":null,"#,
            r#""conversation_started_at":"2025-10-01T12:00:00.000Z","conversation_source":null,"#,
            r#""client_name":"claude","cwd":"/home/u/naïve \"repo\"","git_branch":null,"git_remote":null,"#,
            r#""head_sha":null,"repo_root":null,"client_version":null,"entrypoint":null,"user_type":null,"#,
            r#""permission_mode":null,"is_sidechain":false,"agent_id":null,"parent_thread_id":null,"#,
            r#""message_id":"a1","previous_message_id":[],"provider_uuid":null,"parent_uuid":null,"#,
            r#""logical_parent_uuid":null,"source_tool_assistant_uuid":null,"request_id":null,"#,
            r#""prompt_id":null,"message_index":"9007199254740993","#,
            r#""message_created_at":"2025-10-01T12:00:01.500Z","role":"assistant","part_id":"a1#0","#,
            r#""part_index":0,"part_type":"tool_call","provider_type":null,"provider_subtype":null,"#,
            r#""content_text":"line1\nline2\ttab \u0001 ✓ 日本","tool_name":null,"tool_call_id":null,"#,
            r#""tool_args":{"command":["ls","-la"],"n":1.5},"caller_type":null,"tool_result_for":null,"#,
            r#""thinking_signature":null,"attachment_type":null,"hook_event":null,"is_error":true,"#,
            r#""is_compact_summary":null,"compact_metadata":null,"status":null,"#,
            r#""attributes":{"usage":{"input_tokens":3},"gateway":{"source":"backfill"}},"#,
            r#""raw_frame":null,"date":"2025-10-01"}"#,
            "\n"
        );
        assert_eq!(wire_line(&row), expected);
        let parsed: serde_json::Value = serde_json::from_str(expected.trim_end()).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 56);
    }

    #[test]
    fn column_kinds_cover_the_schema() {
        let kinds = column_kinds();
        let count = |kind| kinds.iter().filter(|k| **k == kind).count();
        assert_eq!(count(ColumnKind::Boolean), 3);
        assert_eq!(count(ColumnKind::Integer), 3);
        assert_eq!(count(ColumnKind::Json), 7);
        assert_eq!(count(ColumnKind::Text), 43);
    }

    #[test]
    fn odd_values_still_make_valid_json() {
        let mut out = Vec::new();
        append_value(&mut out, ColumnKind::Json, ValueRef::Text(b""));
        out.push(b' ');
        append_value(&mut out, ColumnKind::Text, ValueRef::Real(f64::NAN));
        out.push(b' ');
        append_value(&mut out, ColumnKind::Text, ValueRef::Real(2.5));
        out.push(b' ');
        append_value(&mut out, ColumnKind::Integer, ValueRef::Integer(-(1 << 60)));
        out.push(b' ');
        append_value(&mut out, ColumnKind::Boolean, ValueRef::Text(b"yes"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#""" null 2.5 "-1152921504606846976" "yes""#
        );
    }
}
