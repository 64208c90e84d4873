//! Whether `cache.db` is a sound cache, asked without writing anything: by
//! the backfill handler (a `done` import holds only while its cache is
//! sound), by the worker's periodic look, and by status.
//!
//! A cache can stop being one while nothing runs: deleted by hand, cut to
//! nothing, overwritten with garbage, or replaced by another program's
//! database. Each is told apart so status can say which, and each ends the
//! same way: the next import sets the file aside (never deletes it) and
//! fills a new cache from history.

use std::fmt;
use std::path::Path;

use super::schema::COLUMNS;

/// What the file at the cache's path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheHealth {
    Missing,
    /// A database without the cache's table (a file emptied or cut to
    /// nothing reads this way).
    Empty,
    /// SQLite finds it damaged or not a database at all.
    Damaged {
        detail: String,
    },
    /// A database whose `ai_gateway_messages` has other columns.
    Foreign {
        detail: String,
    },
    Sound,
}

impl CacheHealth {
    pub fn is_sound(&self) -> bool {
        *self == CacheHealth::Sound
    }

    /// A short name for diagnostics (`cache_missing`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CacheHealth::Missing => "cache_missing",
            CacheHealth::Empty => "cache_empty",
            CacheHealth::Damaged { .. } => "cache_damaged",
            CacheHealth::Foreign { .. } => "cache_foreign",
            CacheHealth::Sound => "cache_sound",
        }
    }
}

impl fmt::Display for CacheHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheHealth::Missing => f.write_str("the cache file is missing"),
            CacheHealth::Empty => f.write_str("the cache file holds no cache table (emptied?)"),
            CacheHealth::Damaged { detail } => write!(f, "the cache file is damaged ({detail})"),
            CacheHealth::Foreign { detail } => {
                write!(f, "the cache file is another database ({detail})")
            }
            CacheHealth::Sound => f.write_str("the cache is sound"),
        }
    }
}

/// Look at the cache at `db`: its table's columns and one page, read-only.
pub fn probe(db: &Path) -> CacheHealth {
    if !db.exists() {
        return CacheHealth::Missing;
    }
    let conn = match super::query::open_snapshot(db) {
        Ok(conn) => conn,
        Err(err) => return judge_error(&err),
    };
    let columns: Result<Vec<String>, rusqlite::Error> = conn
        .prepare("SELECT name FROM pragma_table_info('ai_gateway_messages')")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect()
        });
    let columns = match columns {
        Ok(columns) => columns,
        Err(err) => return judge_error(&err),
    };
    if columns.is_empty() {
        return CacheHealth::Empty;
    }
    if let Some(detail) = foreign_columns(&columns) {
        return CacheHealth::Foreign { detail };
    }
    match conn.query_row(
        "SELECT count(*) FROM (SELECT 1 FROM ai_gateway_messages LIMIT 1)",
        [],
        |row| row.get::<_, i64>(0),
    ) {
        Ok(_) => CacheHealth::Sound,
        Err(err) => judge_error(&err),
    }
}

/// Why these columns are not the cache's (`None` when they are). Columns
/// added after the 56 would be a newer hyp's and are accepted.
pub fn foreign_columns(columns: &[String]) -> Option<String> {
    let matches = columns.len() >= COLUMNS.len()
        && columns
            .iter()
            .zip(COLUMNS.iter())
            .all(|(found, wanted)| found == wanted);
    (!matches).then(|| {
        format!(
            "its ai_gateway_messages table has {} columns, not the cache's {}",
            columns.len(),
            COLUMNS.len()
        )
    })
}

fn judge_error(err: &rusqlite::Error) -> CacheHealth {
    if super::repair::is_damage(err) {
        CacheHealth::Damaged {
            detail: err.to_string(),
        }
    } else {
        // Busy, locked, permissions: not a verdict on the file.
        CacheHealth::Sound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::writer::CacheWriter;

    #[test]
    fn each_fault_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cache.db");
        assert_eq!(probe(&db), CacheHealth::Missing);
        CacheWriter::open(&db).unwrap().finish().unwrap();
        assert_eq!(probe(&db), CacheHealth::Sound);
        std::fs::write(&db, b"").unwrap();
        let _ = std::fs::remove_file(dir.path().join("cache.db-wal"));
        assert_eq!(probe(&db), CacheHealth::Empty);
        std::fs::write(&db, vec![0x5a; 8192]).unwrap();
        assert!(matches!(probe(&db), CacheHealth::Damaged { .. }));
        std::fs::remove_file(&db).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE ai_gateway_messages (id INTEGER, body TEXT);")
            .unwrap();
        drop(conn);
        assert!(matches!(probe(&db), CacheHealth::Foreign { .. }));
    }
}
