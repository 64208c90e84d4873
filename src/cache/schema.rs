//! The cache's tables: `ai_gateway_messages` (the 56 columns of the
//! reference's row schema, same names, same order) and `imported_files`
//! (which history files a run already imported, under which window, and
//! where a later read of each continues).
//!
//! Storage rules: JSON columns hold compact JSON text, timestamps ISO-8601
//! UTC text with milliseconds (they sort lexically), booleans 0/1, and
//! `part_id` is unique so re-imports are no-ops.

use std::borrow::Cow;
use std::sync::Arc;

use rusqlite::types::ToSql;

/// The 56 columns in declaration order.
pub const COLUMNS: [&str; 56] = [
    "gateway_id",
    "schema_version",
    "session_id",
    "conversation_id",
    "user_id",
    "provider",
    "model",
    "system_text",
    "tools",
    "conversation_started_at",
    "conversation_source",
    "client_name",
    "cwd",
    "git_branch",
    "git_remote",
    "head_sha",
    "repo_root",
    "client_version",
    "entrypoint",
    "user_type",
    "permission_mode",
    "is_sidechain",
    "agent_id",
    "parent_thread_id",
    "message_id",
    "previous_message_id",
    "provider_uuid",
    "parent_uuid",
    "logical_parent_uuid",
    "source_tool_assistant_uuid",
    "request_id",
    "prompt_id",
    "message_index",
    "message_created_at",
    "role",
    "part_id",
    "part_index",
    "part_type",
    "provider_type",
    "provider_subtype",
    "content_text",
    "tool_name",
    "tool_call_id",
    "tool_args",
    "caller_type",
    "tool_result_for",
    "thinking_signature",
    "attachment_type",
    "hook_event",
    "is_error",
    "is_compact_summary",
    "compact_metadata",
    "status",
    "attributes",
    "raw_frame",
    "date",
];

/// Columns that must never be NULL.
const REQUIRED: [&str; 14] = [
    "gateway_id",
    "schema_version",
    "session_id",
    "provider",
    "conversation_started_at",
    "message_id",
    "message_index",
    "message_created_at",
    "role",
    "part_id",
    "part_index",
    "part_type",
    "date",
    "previous_message_id",
];

const INTEGER_COLUMNS: [&str; 6] = [
    "schema_version",
    "message_index",
    "part_index",
    "is_sidechain",
    "is_error",
    "is_compact_summary",
];

/// One `ai_gateway_messages` row. JSON columns are already compact JSON
/// text, timestamps already ISO-8601 UTC with milliseconds. Columns shared
/// by every row of a conversation are `Arc<str>`, so a row costs no copy of
/// them; columns that take one of a few fixed values are `Cow<'static, str>`,
/// so a row costs no allocation for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageRow {
    pub gateway_id: Cow<'static, str>,
    pub schema_version: i64,
    pub session_id: Arc<str>,
    pub conversation_id: Option<Arc<str>>,
    pub user_id: Option<String>,
    pub provider: Cow<'static, str>,
    pub model: Option<Arc<str>>,
    pub system_text: Option<String>,
    pub tools: Option<String>,
    pub conversation_started_at: Arc<str>,
    pub conversation_source: Option<Arc<str>>,
    pub client_name: Option<Arc<str>>,
    pub cwd: Option<Arc<str>>,
    pub git_branch: Option<Arc<str>>,
    pub git_remote: Option<Arc<str>>,
    pub head_sha: Option<Arc<str>>,
    pub repo_root: Option<Arc<str>>,
    pub client_version: Option<Arc<str>>,
    pub entrypoint: Option<Arc<str>>,
    pub user_type: Option<Arc<str>>,
    pub permission_mode: Option<Arc<str>>,
    pub is_sidechain: Option<bool>,
    pub agent_id: Option<String>,
    pub parent_thread_id: Option<Arc<str>>,
    pub message_id: String,
    pub previous_message_id: String,
    pub provider_uuid: Option<String>,
    pub parent_uuid: Option<String>,
    pub logical_parent_uuid: Option<String>,
    pub source_tool_assistant_uuid: Option<String>,
    pub request_id: Option<String>,
    pub prompt_id: Option<String>,
    pub message_index: i64,
    pub message_created_at: String,
    pub role: String,
    pub part_id: String,
    pub part_index: i64,
    pub part_type: Cow<'static, str>,
    pub provider_type: Option<String>,
    pub provider_subtype: Option<String>,
    pub content_text: Option<String>,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_args: Option<String>,
    pub caller_type: Option<String>,
    pub tool_result_for: Option<String>,
    pub thinking_signature: Option<String>,
    pub attachment_type: Option<String>,
    pub hook_event: Option<String>,
    pub is_error: Option<bool>,
    pub is_compact_summary: Option<bool>,
    pub compact_metadata: Option<String>,
    pub status: Option<String>,
    pub attributes: Option<String>,
    pub raw_frame: Option<String>,
    pub date: String,
}

impl MessageRow {
    /// The row's values in [`COLUMNS`] order, ready to bind.
    pub fn values(&self) -> [&dyn ToSql; 56] {
        [
            &self.gateway_id,
            &self.schema_version,
            &self.session_id,
            &self.conversation_id,
            &self.user_id,
            &self.provider,
            &self.model,
            &self.system_text,
            &self.tools,
            &self.conversation_started_at,
            &self.conversation_source,
            &self.client_name,
            &self.cwd,
            &self.git_branch,
            &self.git_remote,
            &self.head_sha,
            &self.repo_root,
            &self.client_version,
            &self.entrypoint,
            &self.user_type,
            &self.permission_mode,
            &self.is_sidechain,
            &self.agent_id,
            &self.parent_thread_id,
            &self.message_id,
            &self.previous_message_id,
            &self.provider_uuid,
            &self.parent_uuid,
            &self.logical_parent_uuid,
            &self.source_tool_assistant_uuid,
            &self.request_id,
            &self.prompt_id,
            &self.message_index,
            &self.message_created_at,
            &self.role,
            &self.part_id,
            &self.part_index,
            &self.part_type,
            &self.provider_type,
            &self.provider_subtype,
            &self.content_text,
            &self.tool_name,
            &self.tool_call_id,
            &self.tool_args,
            &self.caller_type,
            &self.tool_result_for,
            &self.thinking_signature,
            &self.attachment_type,
            &self.hook_event,
            &self.is_error,
            &self.is_compact_summary,
            &self.compact_metadata,
            &self.status,
            &self.attributes,
            &self.raw_frame,
            &self.date,
        ]
    }
}

/// The secondary indexes of `ai_gateway_messages`. A first import into a
/// new cache builds them after its rows ([`super::fresh`]); every other
/// writer creates them with the table.
pub const SECONDARY_INDEXES: &str = "CREATE INDEX IF NOT EXISTS ai_gateway_messages_session_id ON ai_gateway_messages(session_id);\n\
     CREATE INDEX IF NOT EXISTS ai_gateway_messages_date ON ai_gateway_messages(date);\n";

/// The unique index on `part_id` of a cache built by a first import
/// ([`super::fresh`]), created after its rows (which the writer kept
/// unique itself); every other cache has `UNIQUE(part_id)` in its table.
/// Either way `INSERT OR IGNORE` ignores a known `part_id`.
pub const FRESH_UNIQUE_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS ai_gateway_messages_part_id ON ai_gateway_messages(part_id);\n";

/// `CREATE TABLE IF NOT EXISTS` for both tables plus their indexes.
pub fn create_statements() -> String {
    format!("{}{SECONDARY_INDEXES}", table_statements(true))
}

/// Both tables for a first import's temporary file: no index on
/// `ai_gateway_messages` at all (see [`FRESH_UNIQUE_INDEX`]).
pub fn fresh_table_statements() -> String {
    table_statements(false)
}

/// Both tables, with `UNIQUE(part_id)` in the message table when
/// `unique_part_id`, and the ledger's covering index.
fn table_statements(unique_part_id: bool) -> String {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|name| {
            let kind = if INTEGER_COLUMNS.contains(name) {
                "INTEGER"
            } else {
                "TEXT"
            };
            let null = if REQUIRED.contains(name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("  {name} {kind}{null}")
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS ai_gateway_messages (\n{}{}\n);\n\
         CREATE TABLE IF NOT EXISTS imported_files (\n  path TEXT PRIMARY KEY,\n  provider TEXT NOT NULL,\n  size INTEGER NOT NULL,\n  mtime_ns INTEGER NOT NULL,\n  since_ms INTEGER,\n  until_ms INTEGER,\n  imported_at TEXT NOT NULL{}\n);\n\
         CREATE INDEX IF NOT EXISTS imported_files_ledger ON imported_files(path, provider, size, mtime_ns, since_ms, until_ms);\n",
        columns.join(",\n"),
        if unique_part_id {
            ",\n  UNIQUE(part_id)"
        } else {
            ""
        },
        RESUME_COLUMNS
            .iter()
            .map(|(name, kind)| format!(",\n  {name} {kind}"))
            .collect::<String>()
    )
}

/// The `imported_files` columns a continued read needs (NULL: read whole).
/// Older caches lack them; [`add_missing_columns`] adds them. The states
/// make the table's rows long (a few KiB each), so the ledger scan every
/// run makes reads the covering index `imported_files_ledger` instead,
/// which holds only the columns the skip decision needs.
const RESUME_COLUMNS: [(&str, &str); 3] = [
    ("resume_offset", "INTEGER"),
    ("resume_fingerprint", "TEXT"),
    ("resume_state", "TEXT"),
];

/// The ledger scan: exactly the columns of `imported_files_ledger`.
pub const LEDGER_QUERY: &str =
    "SELECT path, provider, size, mtime_ns, since_ms, until_ms FROM imported_files";

/// Bring an `imported_files` made by an older build up to date. Run inside
/// the writer's schema transaction, after [`create_statements`].
pub fn add_missing_columns(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    for (name, kind) in RESUME_COLUMNS {
        let present = conn
            .prepare("SELECT 1 FROM pragma_table_info('imported_files') WHERE name = ?1")?
            .exists([name])?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE imported_files ADD COLUMN {name} {kind};"
            ))?;
        }
    }
    Ok(())
}

/// The conflict-ignoring insert every run uses.
pub fn insert_statement() -> String {
    let placeholders: Vec<String> = (1..=COLUMNS.len()).map(|n| format!("?{n}")).collect();
    format!(
        "INSERT OR IGNORE INTO ai_gateway_messages ({}) VALUES ({})",
        COLUMNS.join(", "),
        placeholders.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_has_the_56_reference_columns() {
        assert_eq!(COLUMNS.len(), 56);
        let unique: std::collections::BTreeSet<_> = COLUMNS.iter().collect();
        assert_eq!(unique.len(), 56);
        for name in REQUIRED.iter().chain(INTEGER_COLUMNS.iter()) {
            assert!(COLUMNS.contains(name), "{name} is a column");
        }
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&create_statements()).unwrap();
        let row = MessageRow {
            part_id: "m#0".into(),
            ..MessageRow::default()
        };
        let mut insert = conn.prepare(&insert_statement()).unwrap();
        assert_eq!(insert.execute(row.values().as_slice()).unwrap(), 1);
        assert_eq!(insert.execute(row.values().as_slice()).unwrap(), 0);
    }

    #[test]
    fn an_older_imported_files_table_gains_the_resume_columns() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE imported_files (path TEXT PRIMARY KEY, provider TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, since_ms INTEGER, until_ms INTEGER, imported_at TEXT NOT NULL);
             INSERT INTO imported_files VALUES ('/p', 'claude', 1, 2, NULL, NULL, 'x');",
        )
        .unwrap();
        conn.execute_batch(&create_statements()).unwrap();
        add_missing_columns(&conn).unwrap();
        add_missing_columns(&conn).unwrap();
        let offset: Option<i64> = conn
            .query_row("SELECT resume_offset FROM imported_files", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(offset, None, "an old row reads whole");
        let fresh = rusqlite::Connection::open_in_memory().unwrap();
        fresh.execute_batch(&create_statements()).unwrap();
        add_missing_columns(&fresh).unwrap();
        fresh
            .execute_batch(
                "SELECT resume_offset, resume_fingerprint, resume_state FROM imported_files",
            )
            .unwrap();
    }
}
