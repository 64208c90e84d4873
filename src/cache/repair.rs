//! A damaged cache, or another program's database in its place, is set
//! aside, never patched and never deleted.
//!
//! The cache is derived data: every row comes from a history file that is
//! still on disk (or was, when it was imported). So when SQLite says the
//! file is not a database or is corrupt, the writer moves it (with its
//! `-wal` and `-shm`) to `cache.db.damaged-<UTC stamp>` and starts a new
//! one, which the same run fills again from history; the old file stays
//! beside it for `sqlite3 .recover`. This is journald's answer to a corrupt
//! journal, and it keeps a machine from failing every backfill forever.
//!
//! Two writers may find the damage at once, so the move happens under an
//! exclusive lock on `cache/repair.lock`, after a fresh connection confirms
//! the damage: the second writer then finds the first one's new, sound
//! cache and leaves it alone.

use std::io;
use std::path::{Path, PathBuf};

use super::with_suffix;
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Whether `err` says the database file itself is unsound.
pub fn is_damage(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// Move the cache at `db` aside if it is still damaged. Returns where it
/// went, or `None` when the file is sound or gone (another writer got
/// there first).
pub fn set_aside_if_damaged(db: &Path) -> io::Result<Option<PathBuf>> {
    let _lock = crate::statefile::lock_exclusive(&db.with_file_name("repair.lock"))?;
    if !db.exists() || !is_damaged(db) {
        return Ok(None);
    }
    move_aside(db, "damaged").map(Some)
}

/// Move the file at `db` aside if it is still another program's database
/// (its `ai_gateway_messages` has other columns): `cache.db.foreign-<stamp>`.
pub fn set_aside_if_foreign(db: &Path) -> io::Result<Option<PathBuf>> {
    let _lock = crate::statefile::lock_exclusive(&db.with_file_name("repair.lock"))?;
    if !matches!(
        super::health::probe(db),
        super::health::CacheHealth::Foreign { .. }
    ) {
        return Ok(None);
    }
    move_aside(db, "foreign").map(Some)
}

/// Rename `db` and its `-wal`/`-shm` to `<db>.<label>-<stamp>`.
fn move_aside(db: &Path, label: &str) -> io::Result<PathBuf> {
    let aside = aside_path(db, label);
    for suffix in ["-wal", "-shm"] {
        let companion = with_suffix(db, suffix);
        if companion.exists() {
            std::fs::rename(&companion, with_suffix(&aside, suffix))?;
        }
    }
    std::fs::rename(db, &aside)?;
    Ok(aside)
}

/// A fresh read-only look: the header, the schema, and a quick check of
/// every page's structure (cheap next to re-importing, and only ever run
/// after SQLite has already reported damage).
fn is_damaged(db: &Path) -> bool {
    let verdict = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|conn| conn.query_row("PRAGMA quick_check(1)", [], |row| row.get::<_, String>(0)));
    match verdict {
        Ok(answer) => answer != "ok",
        Err(err) => is_damage(&err),
    }
}

/// `cache.db.damaged-20261130T014500Z` (or `.foreign-`), with `-2`, `-3`...
/// when a file of that name already exists.
fn aside_path(db: &Path, label: &str) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let first = with_suffix(db, &format!(".{label}-{stamp}"));
    let mut candidate = first.clone();
    let mut counter = 2;
    while candidate.exists() {
        candidate = with_suffix(&first, &format!("-{counter}"));
        counter += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_moves_aside_with_its_wal_and_a_sound_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cache.db");
        std::fs::write(&db, vec![0x5a; 8192]).unwrap();
        std::fs::write(with_suffix(&db, "-wal"), b"stale").unwrap();
        let aside = set_aside_if_damaged(&db).unwrap().expect("moved");
        assert!(!db.exists() && !with_suffix(&db, "-wal").exists());
        assert_eq!(std::fs::read(&aside).unwrap(), vec![0x5a; 8192]);
        assert_eq!(
            std::fs::read(with_suffix(&aside, "-wal")).unwrap(),
            b"stale"
        );
        assert!(aside.display().to_string().contains("cache.db.damaged-"));

        // A second damaged file in the same second gets its own name.
        std::fs::write(&db, b"garbage").unwrap();
        let again = set_aside_if_damaged(&db).unwrap().expect("moved");
        assert_ne!(again, aside);

        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        assert_eq!(set_aside_if_damaged(&db).unwrap(), None);
        assert!(db.exists());
        assert_eq!(
            set_aside_if_damaged(&dir.path().join("absent.db")).unwrap(),
            None
        );
    }
}
