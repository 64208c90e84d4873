//! The write floor `make bench` prints beside each backfill: the time the
//! cache writer alone needs for one provider's rows, with no parsing at all.
//! It loads the provider's rows from an existing cache into memory, then
//! writes them into a fresh cache through the production [`CacheWriter`]
//! (same pragmas, page size, transaction size, checkpointer and final
//! checkpoint), in the same file-sized groups, and times only that.
//!
//! With a fourth argument `fresh`, the target is written the way a first
//! import builds a cache that does not exist yet ([`CacheWriter::open_for_import`]:
//! a temporary file with no journal, secondary indexes at the end, switched
//! to WAL and moved into place); `wal` (the default) is the path of every
//! later import.
//!
//! Usage: `write_floor <source cache.db> <provider> <scratch dir> [wal|fresh]`;
//! prints `rows seconds`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hyp::cache::schema::{COLUMNS, MessageRow};
use hyp::cache::writer::CacheWriter;
use rusqlite::{Connection, Row};

/// Rows per `insert` call, about one history file's worth.
const GROUP: usize = 200;

fn row_from_sql(row: &Row<'_>) -> rusqlite::Result<MessageRow> {
    let text = |index: usize| row.get::<_, Option<String>>(index);
    let shared = |index: usize| text(index).map(|value| value.map(Arc::<str>::from));
    let flag = |index: usize| row.get::<_, Option<bool>>(index);
    let required = |index: usize| text(index).map(Option::unwrap_or_default);
    let required_shared = |index: usize| required(index).map(Arc::<str>::from);
    Ok(MessageRow {
        gateway_id: required(0)?.into(),
        schema_version: row.get(1)?,
        session_id: required_shared(2)?,
        conversation_id: shared(3)?,
        user_id: text(4)?,
        provider: required(5)?.into(),
        model: shared(6)?,
        system_text: text(7)?,
        tools: text(8)?,
        conversation_started_at: required_shared(9)?,
        conversation_source: shared(10)?,
        client_name: shared(11)?,
        cwd: shared(12)?,
        git_branch: shared(13)?,
        git_remote: shared(14)?,
        head_sha: shared(15)?,
        repo_root: shared(16)?,
        client_version: shared(17)?,
        entrypoint: shared(18)?,
        user_type: shared(19)?,
        permission_mode: shared(20)?,
        is_sidechain: flag(21)?,
        agent_id: text(22)?,
        parent_thread_id: shared(23)?,
        message_id: required(24)?,
        previous_message_id: required(25)?,
        provider_uuid: text(26)?,
        parent_uuid: text(27)?,
        logical_parent_uuid: text(28)?,
        source_tool_assistant_uuid: text(29)?,
        request_id: text(30)?,
        prompt_id: text(31)?,
        message_index: row.get(32)?,
        message_created_at: required(33)?,
        role: required(34)?,
        part_id: required(35)?,
        part_index: row.get(36)?,
        part_type: required(37)?.into(),
        provider_type: text(38)?,
        provider_subtype: text(39)?,
        content_text: text(40)?,
        tool_name: text(41)?,
        tool_call_id: text(42)?,
        tool_args: text(43)?,
        caller_type: text(44)?,
        tool_result_for: text(45)?,
        thinking_signature: text(46)?,
        attachment_type: text(47)?,
        hook_event: text(48)?,
        is_error: flag(49)?,
        is_compact_summary: flag(50)?,
        compact_metadata: text(51)?,
        status: text(52)?,
        attributes: text(53)?,
        raw_frame: text(54)?,
        date: required(55)?,
    })
}

fn load(source: &Path, provider_column: &str) -> rusqlite::Result<Vec<MessageRow>> {
    let conn = Connection::open(source)?;
    let sql = format!(
        "SELECT {} FROM ai_gateway_messages WHERE client_name = ?1 ORDER BY rowid",
        COLUMNS.join(", ")
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map([provider_column], row_from_sql)?;
    rows.collect()
}

fn run(source: &Path, provider: &str, scratch: &Path, fresh: bool) -> Result<(usize, f64), String> {
    let rows = load(source, provider).map_err(|err| format!("reading {source:?}: {err}"))?;
    let dir = scratch.join("write-floor");
    let _ = std::fs::remove_dir_all(&dir);
    let target = dir.join("cache.db");
    let started = Instant::now();
    let opened = if fresh {
        CacheWriter::open_for_import(&target)
    } else {
        CacheWriter::open(&target)
    };
    let mut writer = opened.map_err(|err| err.to_string())?;
    for group in rows.chunks(GROUP) {
        writer.insert(group).map_err(|err| err.to_string())?;
        writer.commit_if_large().map_err(|err| err.to_string())?;
    }
    writer.finish().map_err(|err| err.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((rows.len(), seconds))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (source, provider, scratch, mode) = match args.as_slice() {
        [source, provider, scratch] => (source, provider, scratch, "wal"),
        [source, provider, scratch, mode] if mode == "wal" || mode == "fresh" => {
            (source, provider, scratch, mode.as_str())
        }
        _ => {
            eprintln!("usage: write_floor <source cache.db> <provider> <scratch dir> [wal|fresh]");
            return std::process::ExitCode::from(2);
        }
    };
    match run(
        Path::new(source),
        provider,
        Path::new(scratch),
        mode == "fresh",
    ) {
        Ok((rows, seconds)) => {
            println!("{rows} {seconds:.3}");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("write_floor: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
