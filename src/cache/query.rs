//! `hyp query sql`: one read-only statement over the cache. The database is
//! opened read-only with `query_only`, and a statement SQLite says would
//! write is refused before it runs.
//!
//! Rows are handed to a [`RowSink`] one at a time, straight from SQLite's
//! buffers, and nothing is kept: memory stays the same whether the result
//! has one row or a million (a `SELECT *` over the whole cache once held
//! 2 GB).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::CacheError;
use super::writer::open_read_only;

/// One result cell as SQLite returned it, borrowed for the length of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Integer(i64),
    Real(f64),
    /// Text as stored: normally UTF-8, but SQLite does not check.
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl<'a> From<ValueRef<'a>> for Cell<'a> {
    fn from(value: ValueRef<'a>) -> Cell<'a> {
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(value) => Cell::Integer(value),
            ValueRef::Real(value) => Cell::Real(value),
            ValueRef::Text(bytes) => Cell::Text(bytes),
            ValueRef::Blob(bytes) => Cell::Blob(bytes),
        }
    }
}

/// Where a streamed result goes: the column names once, then each row as
/// it is read, then the end. An error (a closed pipe) stops the query.
pub trait RowSink {
    fn columns(&mut self, names: &[&str]) -> io::Result<()>;
    fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()>;
    fn end(&mut self) -> io::Result<()>;
}

/// Why a streamed query stopped.
#[derive(Debug)]
pub enum QueryError {
    /// The cache could not be opened, or SQLite refused or failed the
    /// statement.
    Cache(CacheError),
    /// The sink could not take a row (its `io::Error`, e.g. a broken pipe).
    Write(io::Error),
}

impl From<CacheError> for QueryError {
    fn from(err: CacheError) -> QueryError {
        QueryError::Cache(err)
    }
}

impl From<rusqlite::Error> for QueryError {
    fn from(source: rusqlite::Error) -> QueryError {
        QueryError::Cache(CacheError::Sql { source })
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Cache(err) => write!(f, "{err}"),
            QueryError::Write(err) => write!(f, "cannot write the result: {err}"),
        }
    }
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
    super::with_suffix(db, "-wal")
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

/// Run `sql` against the cache at `path`, handing each row to `sink` as
/// SQLite produces it. Returns the number of rows. Once `stop` is set the
/// statement fails as interrupted: SQLite's progress handler looks at the
/// flag while it runs, so even a single long step stops, and a flag set
/// before the first step is not missed (as `sqlite3_interrupt` would miss
/// it).
pub fn stream_sql(
    path: &Path,
    sql: &str,
    sink: &mut dyn RowSink,
    stop: Arc<AtomicBool>,
) -> Result<u64, QueryError> {
    let mut conn = open_read_only(path)?;
    conn.progress_handler(STOP_CHECK_STEPS, Some(move || stop.load(Ordering::SeqCst)))?;
    let mut statement = conn.prepare(sql)?;
    if !statement.readonly() {
        return Err(CacheError::WriteRefused.into());
    }
    let names: Vec<String> = statement.column_names().map(str::to_string).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    sink.columns(&name_refs).map_err(QueryError::Write)?;
    let width = names.len();
    let mut n_rows = 0;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let cells = (0..width)
            .map(|index| row.get_ref(index).map(Cell::from))
            .collect::<rusqlite::Result<Vec<Cell<'_>>>>()?;
        sink.row(&cells).map_err(QueryError::Write)?;
        n_rows += 1;
    }
    sink.end().map_err(QueryError::Write)?;
    Ok(n_rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::schema::MessageRow;
    use crate::cache::writer::CacheWriter;

    /// Cells as owned debug strings, to compare whole results.
    #[derive(Default)]
    struct Collect {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
        ended: bool,
    }

    impl RowSink for Collect {
        fn columns(&mut self, names: &[&str]) -> io::Result<()> {
            self.columns = names.iter().map(|name| name.to_string()).collect();
            Ok(())
        }
        fn row(&mut self, cells: &[Cell<'_>]) -> io::Result<()> {
            self.rows
                .push(cells.iter().map(|cell| format!("{cell:?}")).collect());
            Ok(())
        }
        fn end(&mut self) -> io::Result<()> {
            self.ended = true;
            Ok(())
        }
    }

    fn run(path: &Path, sql: &str) -> Result<Collect, QueryError> {
        let mut sink = Collect::default();
        stream_sql(path, sql, &mut sink, Arc::new(AtomicBool::new(false)))?;
        Ok(sink)
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
    fn an_interrupted_statement_stops_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        CacheWriter::open(&path).unwrap().finish().unwrap();
        // Stopped before its first step, a statement that would run for
        // hours fails at once.
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                       SELECT count(*) FROM n";
        let mut sink = Collect::default();
        let outcome = stream_sql(&path, endless, &mut sink, Arc::new(AtomicBool::new(true)));
        let Err(QueryError::Cache(CacheError::Sql { source })) = outcome else {
            panic!("not interrupted: {outcome:?}");
        };
        assert_eq!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::OperationInterrupted)
        );
    }

    #[test]
    fn reads_rows_and_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        assert!(matches!(
            run(&path, "SELECT 1"),
            Err(QueryError::Cache(CacheError::Missing { .. }))
        ));
        let mut writer = CacheWriter::open(&path).unwrap();
        let row = MessageRow {
            part_id: "a#0".into(),
            role: "user".into(),
            ..MessageRow::default()
        };
        writer.insert(&[row]).unwrap();
        writer.commit().unwrap();
        let result = run(
            &path,
            "SELECT part_id, role, 1.5 AS x, NULL AS n, x'ff00' AS b FROM ai_gateway_messages",
        )
        .unwrap();
        assert_eq!(result.columns, ["part_id", "role", "x", "n", "b"]);
        assert_eq!(
            result.rows,
            [[
                format!("{:?}", Cell::Text(b"a#0")),
                format!("{:?}", Cell::Text(b"user")),
                format!("{:?}", Cell::Real(1.5)),
                format!("{:?}", Cell::Null),
                format!("{:?}", Cell::Blob(&[0xff, 0x00])),
            ]]
        );
        assert!(result.ended);
        for sql in [
            "DELETE FROM ai_gateway_messages",
            "INSERT INTO imported_files (path) VALUES ('x')",
            "DROP TABLE ai_gateway_messages",
        ] {
            assert!(
                matches!(
                    run(&path, sql),
                    Err(QueryError::Cache(CacheError::WriteRefused))
                ),
                "{sql}"
            );
        }
        let count = run(&path, "SELECT count(*) FROM ai_gateway_messages").unwrap();
        assert_eq!(count.rows, [[format!("{:?}", Cell::Integer(1))]]);
    }

    #[test]
    fn a_sink_error_stops_the_query() {
        struct Refuse(u64);
        impl RowSink for Refuse {
            fn columns(&mut self, _: &[&str]) -> io::Result<()> {
                Ok(())
            }
            fn row(&mut self, _: &[Cell<'_>]) -> io::Result<()> {
                self.0 += 1;
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn end(&mut self) -> io::Result<()> {
                panic!("no end after a failed row")
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        CacheWriter::open(&path).unwrap().finish().unwrap();
        let mut sink = Refuse(0);
        let res = stream_sql(
            &path,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n",
            &mut sink,
            Arc::new(AtomicBool::new(false)),
        );
        assert!(
            matches!(res, Err(QueryError::Write(err)) if err.kind() == io::ErrorKind::BrokenPipe)
        );
        assert_eq!(sink.0, 1, "one row, then stop (the statement is endless)");
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
