//! `hyp query sql`: one read-only statement over the cache. The database is
//! opened read-only with `query_only`, and a statement SQLite says would
//! write is refused before it runs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::CacheError;
use super::writer::open_read_only;

/// One result cell, typed as SQLite returned it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    /// A blob, as lowercase hex.
    Blob(String),
}

/// Column names plus rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Rows in the cache, read without creating anything.
pub fn row_count(db: &Path) -> Result<u64, String> {
    if !db.exists() {
        return Ok(0);
    }
    let connection = open_snapshot(db)
        .map_err(|err| format!("cannot open the cache {}: {err}", db.display()))?;
    connection
        .query_row("SELECT count(*) FROM ai_gateway_messages", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|rows| rows.max(0) as u64)
        .map_err(|err| format!("cannot count cache rows in {}: {err}", db.display()))
}

/// Open an SQLite database for reading without creating anything beside
/// it (status must write nothing). With no `-wal` file there is no writer
/// mid-transaction, so the file is opened `immutable` (no `-shm` is
/// created); otherwise a plain read-only connection joins the writer's WAL.
pub fn open_snapshot(db: &Path) -> rusqlite::Result<Connection> {
    if wal_path(db).exists() && !is_emptied(db) {
        open_shared(db)
    } else {
        open_uri(db, "immutable=1")
    }
}

/// A database file of 0 bytes: someone emptied it. SQLite would read a
/// leftover `-wal` beside it as stale and delete it even on a read-only
/// connection, so such a file is only ever opened `immutable`.
fn is_emptied(db: &Path) -> bool {
    std::fs::metadata(db).is_ok_and(|meta| meta.is_file() && meta.len() == 0)
}

/// A read-only connection that joins a writer's WAL (never `immutable`).
pub fn open_shared(db: &Path) -> rusqlite::Result<Connection> {
    open_uri(db, "mode=ro")
}

fn open_uri(db: &Path, mode: &str) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(format!("file:{}?{mode}", uri_path(db)), flags)?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

/// `cache.db-wal` beside `cache.db`.
pub fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    db.with_file_name(name)
}

/// `path` for an SQLite `file:` URI: the three characters a URI path
/// cannot carry as they are (`%`, `?`, `#`) percent-encoded, so a
/// `HYP_HOME` that holds them still opens the right file.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for ch in path.display().to_string().chars() {
        match ch {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            other => out.push(other),
        }
    }
    out
}

/// How many SQLite VM steps run between two looks at the stop flag.
const STOP_CHECK_STEPS: std::ffi::c_int = 10_000;

/// Run `sql` against the cache at `path`. Once `stop` is set the statement
/// fails as interrupted: SQLite's progress handler looks at the flag while
/// it runs, so even a single long step stops, and a flag set before the
/// first step is not missed (as `sqlite3_interrupt` would miss it).
pub fn run_sql(path: &Path, sql: &str, stop: Arc<AtomicBool>) -> Result<QueryResult, CacheError> {
    let mut conn = open_read_only(path)?;
    conn.progress_handler(STOP_CHECK_STEPS, Some(move || stop.load(Ordering::SeqCst)))?;
    let mut statement = conn.prepare(sql)?;
    if !statement.readonly() {
        return Err(CacheError::WriteRefused);
    }
    let columns: Vec<String> = statement
        .column_names()
        .map(|name| name.to_string())
        .collect();
    let width = columns.len();
    let mut rows_out = Vec::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(width);
        for index in 0..width {
            cells.push(match row.get_ref(index)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(value) => Cell::Integer(value),
                ValueRef::Real(value) => Cell::Real(value),
                ValueRef::Text(bytes) => Cell::Text(String::from_utf8_lossy(bytes).into_owned()),
                ValueRef::Blob(bytes) => {
                    Cell::Blob(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
                }
            });
        }
        rows_out.push(cells);
    }
    Ok(QueryResult {
        columns,
        rows: rows_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::schema::MessageRow;
    use crate::cache::writer::CacheWriter;

    fn go_on() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[test]
    fn a_snapshot_of_an_emptied_file_leaves_its_leftover_wal_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("forward.db");
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
            )
            .unwrap();
            // Keep the -wal: copy it aside while the writer is open.
            std::fs::copy(wal_path(&db), dir.path().join("saved-wal")).unwrap();
        }
        std::fs::write(&db, b"").unwrap();
        std::fs::copy(dir.path().join("saved-wal"), wal_path(&db)).unwrap();
        let wal_before = std::fs::read(wal_path(&db)).unwrap();
        {
            let conn = open_snapshot(&db).unwrap();
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
                .unwrap();
            assert_eq!(tables, 0, "an emptied file reads as an empty database");
        }
        assert_eq!(
            std::fs::read(wal_path(&db)).unwrap(),
            wal_before,
            "the -wal is untouched"
        );
    }

    #[test]
    fn reads_rows_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        assert!(matches!(
            run_sql(&path, "SELECT 1", go_on()),
            Err(CacheError::Missing { .. })
        ));
        let mut writer = CacheWriter::open(&path).unwrap();
        let row = MessageRow {
            part_id: "a#0".into(),
            role: "user".into(),
            ..MessageRow::default()
        };
        writer.insert(&[row]).unwrap();
        writer.commit().unwrap();
        let result = run_sql(
            &path,
            "SELECT part_id, role, 1.5 AS x, NULL AS n FROM ai_gateway_messages",
            go_on(),
        )
        .unwrap();
        assert_eq!(result.columns, ["part_id", "role", "x", "n"]);
        assert_eq!(
            result.rows,
            [vec![
                Cell::Text("a#0".into()),
                Cell::Text("user".into()),
                Cell::Real(1.5),
                Cell::Null
            ]]
        );
        for sql in [
            "DELETE FROM ai_gateway_messages",
            "INSERT INTO imported_files (path) VALUES ('x')",
            "DROP TABLE ai_gateway_messages",
        ] {
            assert!(
                matches!(run_sql(&path, sql, go_on()), Err(CacheError::WriteRefused)),
                "{sql}"
            );
        }
        let count = run_sql(&path, "SELECT count(*) FROM ai_gateway_messages", go_on()).unwrap();
        assert_eq!(count.rows, [vec![Cell::Integer(1)]]);
    }

    #[test]
    fn an_interrupted_statement_stops_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        CacheWriter::open(&path).unwrap().finish().unwrap();
        // Stopped before its first step, a statement that would run for
        // hours fails at once.
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        let outcome = run_sql(&path, endless, Arc::new(AtomicBool::new(true)));
        let Err(CacheError::Sql { source }) = outcome else {
            panic!("not interrupted: {outcome:?}");
        };
        assert_eq!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::OperationInterrupted)
        );
    }

    #[test]
    fn rows_are_counted_under_a_path_with_uri_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd 100% ?#").join("cache.db");
        assert_eq!(row_count(&path).unwrap(), 0, "no cache yet");
        let mut writer = CacheWriter::open(&path).unwrap();
        let row = MessageRow {
            part_id: "a#0".into(),
            ..MessageRow::default()
        };
        writer.insert(&[row]).unwrap();
        writer.finish().unwrap();
        assert_eq!(row_count(&path).unwrap(), 1);
    }
}
