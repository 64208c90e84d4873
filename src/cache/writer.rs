//! The one writer of the cache. It batches inserts into large transactions
//! (one prepared statement, conflict-ignore on `part_id`) and records
//! `imported_files` entries (with the point and state a later read
//! continues from) in the same transaction as a file's last rows, so a file
//! is never marked imported, nor its point moved, before all its rows are
//! durable. [`Ledger`] reads those entries back without writing anything.
//!
//! A second connection on its own thread (the checkpointer) copies each
//! committed batch from the write-ahead log into the database while the
//! writer goes on with the next one, so the disk writes and fsyncs overlap
//! the import instead of all landing in one long checkpoint at the end.
//! Durability is unchanged: every checkpoint runs at `synchronous=NORMAL`
//! (WAL fsynced before the copy, database fsynced after it).
//!
//! Concurrency with another process (the daemon's backfill child and a
//! person's manual run) is SQLite's: WAL, `BEGIN IMMEDIATE` and a long busy
//! timeout; transactions are committed every few thousand rows so neither
//! holds the write lock for long.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use rusqlite::{Connection, OpenFlags, params};

use super::CacheError;
use super::schema::{
    LEDGER_QUERY, MessageRow, add_missing_columns, create_statements, insert_statement,
};

/// How long a writer waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(120);

/// A transaction is committed once it holds this many rows. Every commit
/// rewrites the `part_id` index pages it touched (random keys touch most of
/// them), so fewer, larger transactions write less; 50k rows keep another
/// writer's wait for the lock well under a second.
const ROWS_PER_TRANSACTION: usize = 50_000;

/// The page size of a new cache: rows are long (about 1.3 KiB on average),
/// and 64 KiB pages mean fewer page splits, WAL frames and checksums per row.
/// An existing cache keeps the page size it was created with.
const PAGE_SIZE: i64 = 65_536;

/// What `imported_files` keeps to continue one file: the cache's record of
/// it; backfill fills it (`backfill::resume`) and decides what `state` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResume {
    /// Just past the last consumed line.
    pub offset: u64,
    /// Fingerprint of the bytes before `offset` (`backfill::lines::fingerprint`).
    pub fingerprint: String,
    /// Backfill's resume envelope as JSON.
    pub state: String,
}

/// One history file a run imported completely, and the window it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    pub path: String,
    pub provider: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// Lower bound of the window in epoch ms; `None` = open.
    pub since_ms: Option<i64>,
    /// Upper bound of the window in epoch ms; `None` = open.
    pub until_ms: Option<i64>,
    /// Where a later read continues; `None` = read it whole.
    pub resume: Option<StoredResume>,
}

impl ImportedFile {
    /// Whether this record makes re-reading the same file under the window
    /// `[since_ms, until_ms]` pointless: same size and mtime, and the
    /// recorded window contains the new one.
    pub fn covers(
        &self,
        size: u64,
        mtime_ns: i64,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> bool {
        let lower_ok = match (self.since_ms, since_ms) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(old), Some(new)) => old <= new,
        };
        let upper_ok = match (self.until_ms, until_ms) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(old), Some(new)) => old >= new,
        };
        self.size == size && self.mtime_ns == mtime_ns && lower_ok && upper_ok
    }
}

/// The cache opened for writing. Create it on the thread that will use it.
pub struct CacheWriter {
    conn: Connection,
    rows_in_transaction: usize,
    /// New rows in the open transaction, and new rows committed so far:
    /// only the second is ever reported as written.
    new_in_transaction: u64,
    committed_rows: u64,
    checkpointer: Option<Checkpointer>,
    set_aside: Option<PathBuf>,
}

/// The thread that checkpoints behind the writer: woken after each commit,
/// it runs one passive checkpoint (never waits for a lock; whatever it
/// cannot copy is left for the next one or for [`CacheWriter::finish`]).
struct Checkpointer {
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// `None` when the thread cannot start: the final checkpoint then does
    /// all the work, as it would anyway.
    fn spawn(path: &Path) -> Option<Checkpointer> {
        let (wake, woken) = bounded::<()>(1);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("cache-checkpoint".into())
            .spawn(move || {
                let Ok(conn) = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                ) else {
                    return;
                };
                if conn
                    .execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;")
                    .is_err()
                {
                    return;
                }
                for () in woken {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Ask for a checkpoint; a request already pending covers this one,
    /// and a thread that is gone leaves the work to `finish`.
    fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// Let the last requested checkpoint run, then end the thread.
    fn stop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl CacheWriter {
    /// Open (creating the file, directory and schema when needed). A file
    /// SQLite finds damaged is set aside and a new cache started
    /// ([`super::repair`]); [`CacheWriter::set_aside`] then says where the
    /// old one went.
    pub fn open(path: &Path) -> Result<CacheWriter, CacheError> {
        let set_aside = match CacheWriter::open_once(path) {
            Err(err) if err.is_damage() => super::repair::set_aside_if_damaged(path),
            Err(CacheError::Foreign { .. }) => super::repair::set_aside_if_foreign(path),
            opened => return opened,
        };
        let aside = set_aside.map_err(|source| CacheError::SetAside {
            path: path.to_path_buf(),
            source,
        })?;
        let mut writer = CacheWriter::open_once(path)?;
        writer.set_aside = aside;
        Ok(writer)
    }

    /// Where a damaged cache found by [`CacheWriter::open`] was moved.
    pub fn set_aside(&self) -> Option<&Path> {
        self.set_aside.as_deref()
    }

    fn open_once(path: &Path) -> Result<CacheWriter, CacheError> {
        if let Some(dir) = path.parent() {
            crate::statefile::create_private_dir(dir).map_err(|source| CacheError::Create {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        create_private_file(path).map_err(|source| CacheError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let open_err = |source| CacheError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Only takes effect on a new, empty database.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint=0;",
        )
        .map_err(open_err)?;
        // A cache whose table is new gets a new generation, before the
        // table exists (a crash in between only makes another one): a
        // `done` import then knows its rows are gone, whether the file was
        // created, deleted, or emptied by hand.
        let columns = table_columns(&conn).map_err(open_err)?;
        if let Some(detail) = (!columns.is_empty())
            .then(|| super::health::foreign_columns(&columns))
            .flatten()
        {
            return Err(CacheError::Foreign {
                path: path.to_path_buf(),
                detail,
            });
        }
        if columns.is_empty() || super::read_generation(path).is_none() {
            super::write_new_generation(path).map_err(|source| CacheError::Create {
                path: super::generation_path(path),
                source,
            })?;
        }
        conn.execute_batch(&format!("BEGIN IMMEDIATE;\n{}", create_statements()))
            .and_then(|()| add_missing_columns(&conn))
            .and_then(|()| conn.execute_batch("COMMIT"))
            .map_err(open_err)?;
        Ok(CacheWriter {
            conn,
            rows_in_transaction: 0,
            new_in_transaction: 0,
            committed_rows: 0,
            checkpointer: Checkpointer::spawn(path),
            set_aside: None,
        })
    }

    fn begin_if_needed(&mut self) -> Result<(), CacheError> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            self.rows_in_transaction = 0;
            self.new_in_transaction = 0;
        }
        Ok(())
    }

    /// Insert `rows`, ignoring ones whose `part_id` is already stored.
    /// Returns how many were new.
    pub fn insert(&mut self, rows: &[MessageRow]) -> Result<u64, CacheError> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.begin_if_needed()?;
        let mut statement = self.conn.prepare_cached(&insert_statement())?;
        let mut inserted = 0;
        for row in rows {
            inserted += statement.execute(row.values().as_slice())? as u64;
        }
        self.rows_in_transaction += rows.len();
        self.new_in_transaction += inserted;
        Ok(inserted)
    }

    /// New rows committed so far: what a run reports as written.
    pub fn committed_rows(&self) -> u64 {
        self.committed_rows
    }

    /// Record that `file` is fully imported (in the current transaction).
    pub fn mark_imported(&mut self, file: &ImportedFile) -> Result<(), CacheError> {
        self.begin_if_needed()?;
        let mut statement = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO imported_files (path, provider, size, mtime_ns, since_ms, until_ms, imported_at, resume_offset, resume_fingerprint, resume_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let resume = file.resume.as_ref();
        statement.execute(params![
            file.path,
            file.provider,
            file.size as i64,
            file.mtime_ns,
            file.since_ms,
            file.until_ms,
            crate::time::now_iso(),
            resume.map(|resume| resume.offset as i64),
            resume.map(|resume| resume.fingerprint.as_str()),
            resume.map(|resume| resume.state.as_str()),
        ])?;
        Ok(())
    }

    /// Commit when the open transaction has grown large.
    pub fn commit_if_large(&mut self) -> Result<(), CacheError> {
        if self.rows_in_transaction >= ROWS_PER_TRANSACTION {
            self.commit()?;
        }
        Ok(())
    }

    /// Commit whatever is pending.
    pub fn commit(&mut self) -> Result<(), CacheError> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
            self.committed_rows += self.new_in_transaction;
            if let Some(checkpointer) = &self.checkpointer {
                checkpointer.wake();
            }
        }
        self.rows_in_transaction = 0;
        self.new_in_transaction = 0;
        Ok(())
    }

    /// Commit, then copy the write-ahead log into the database once (the
    /// run disables automatic checkpoints, which would stall the writer with
    /// an fsync every few MiB). A busy reader only postpones the copy.
    pub fn finish(&mut self) -> Result<(), CacheError> {
        self.commit()?;
        if let Some(mut checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Create the database file 0600 before SQLite does (it would use the
/// umask, often 0644): the cache holds a person's conversations, and SQLite
/// gives its `-wal` and `-shm` the database file's mode. An existing file
/// is left as it is. Returns whether this call created it.
fn create_private_file(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::statefile::FILE_MODE)
        .open(path);
    match created {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

/// The columns of `ai_gateway_messages` (none when the table is absent).
fn table_columns(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement =
        conn.prepare("SELECT name FROM pragma_table_info('ai_gateway_messages')")?;
    let columns = statement.query_map([], |row| row.get::<_, String>(0))?;
    columns.collect()
}

/// The `imported_files` ledger, read without opening the cache for writing
/// and without creating anything beside it: with no `-wal` file the
/// database is opened `immutable` (a plain read-only connection would leave
/// an empty `-wal` and a `-shm` behind), else read-only, joining a writer's
/// WAL. The stored states are fetched one file at a time, only for files
/// that grew.
pub struct Ledger {
    conn: Connection,
    files: HashMap<String, ImportedFile>,
}

impl Ledger {
    /// `None` when there is no cache or it cannot be read: every file is
    /// then read, and the writer deals with the cache.
    pub fn read(db: &Path) -> Option<Ledger> {
        if !db.exists() {
            return None;
        }
        let quiet = !super::query::wal_path(db).exists();
        let ledger = if quiet {
            Ledger::read_with(db, true).or_else(|_| Ledger::read_with(db, false))
        } else {
            Ledger::read_with(db, false)
        };
        ledger.ok()
    }

    fn read_with(db: &Path, immutable: bool) -> Result<Ledger, rusqlite::Error> {
        let conn = if immutable {
            super::query::open_snapshot(db)?
        } else {
            super::query::open_shared(db)?
        };
        let files = {
            let mut statement = conn.prepare(LEDGER_QUERY)?;
            let rows = statement.query_map([], |row| {
                Ok(ImportedFile {
                    path: row.get(0)?,
                    provider: row.get(1)?,
                    size: row.get::<_, i64>(2)?.max(0) as u64,
                    mtime_ns: row.get(3)?,
                    since_ms: row.get(4)?,
                    until_ms: row.get(5)?,
                    resume: None,
                })
            })?;
            let mut files = HashMap::new();
            for file in rows {
                let file = file?;
                files.insert(file.path.clone(), file);
            }
            files
        };
        Ok(Ledger { conn, files })
    }

    /// The entry for `path` (its `resume` is not loaded: see
    /// [`Ledger::stored_resume`]).
    pub fn get(&self, path: &str) -> Option<&ImportedFile> {
        self.files.get(path)
    }

    /// Where a read of `path` continues, when its import left a point (an
    /// older cache without the columns has none).
    pub fn stored_resume(&self, path: &str) -> Option<StoredResume> {
        self.conn
            .query_row(
                "SELECT resume_offset, resume_fingerprint, resume_state FROM imported_files WHERE path = ?1",
                [path],
                |row| {
                    Ok((
                        row.get::<_, Option<i64>>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .ok()
            .and_then(|columns| match columns {
                (Some(offset), Some(fingerprint), Some(state)) if offset >= 0 => {
                    Some(StoredResume {
                        offset: offset as u64,
                        fingerprint,
                        state,
                    })
                }
                _ => None,
            })
    }
}

/// Open the cache read-only (`query_only` too), failing when it is absent.
pub fn open_read_only(path: &Path) -> Result<Connection, CacheError> {
    if !path.exists() {
        return Err(CacheError::Missing {
            path: PathBuf::from(path),
        });
    }
    let open_err = |source| CacheError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_err)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(since: Option<i64>, until: Option<i64>) -> ImportedFile {
        ImportedFile {
            path: "/p".into(),
            provider: "claude".into(),
            size: 10,
            mtime_ns: 5,
            since_ms: since,
            until_ms: until,
            resume: None,
        }
    }

    #[test]
    fn a_record_covers_only_narrower_windows_of_the_same_file() {
        assert!(record(None, None).covers(10, 5, Some(1), Some(2)));
        assert!(record(Some(100), None).covers(10, 5, Some(150), None));
        assert!(!record(Some(100), None).covers(10, 5, Some(50), None));
        assert!(!record(Some(100), None).covers(10, 5, None, None));
        assert!(!record(None, Some(100)).covers(10, 5, None, None));
        assert!(record(None, Some(100)).covers(10, 5, None, Some(100)));
        assert!(!record(None, None).covers(11, 5, None, None));
        assert!(!record(None, None).covers(10, 6, None, None));
    }

    #[test]
    fn writer_marks_and_the_ledger_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/cache.db");
        let mut writer = CacheWriter::open(&path).unwrap();
        let row = MessageRow {
            part_id: "a#0".into(),
            ..MessageRow::default()
        };
        assert_eq!(writer.insert(&[row.clone(), row]).unwrap(), 1);
        writer.mark_imported(&record(Some(1), None)).unwrap();
        let resume = StoredResume {
            offset: 7,
            fingerprint: "f".into(),
            state: "{}".into(),
        };
        writer
            .mark_imported(&ImportedFile {
                path: "/q".into(),
                resume: Some(resume.clone()),
                ..record(None, None)
            })
            .unwrap();
        writer.commit().unwrap();
        let ledger = Ledger::read(&path).expect("a ledger");
        assert_eq!(ledger.get("/p"), Some(&record(Some(1), None)));
        assert_eq!(ledger.stored_resume("/p"), None);
        assert_eq!(ledger.stored_resume("/q"), Some(resume));
        drop(ledger);
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "the cache is private");
        assert_eq!(mode(&dir.path().join("cache/cache.db-wal")), 0o600);
        assert_eq!(mode(&dir.path().join("cache")), 0o700);
        assert!(Ledger::read(&dir.path().join("absent.db")).is_none());
    }

    #[test]
    fn a_new_cache_gets_a_new_generation_and_an_existing_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/cache.db");
        CacheWriter::open(&path).unwrap().finish().unwrap();
        let first = super::super::read_generation(&path).expect("a generation");
        CacheWriter::open(&path).unwrap().finish().unwrap();
        assert_eq!(super::super::read_generation(&path), Some(first.clone()));

        std::fs::write(&path, b"not a database, not at all, no").unwrap();
        let mut writer = CacheWriter::open(&path).unwrap();
        assert!(writer.set_aside().is_some());
        writer.finish().unwrap();
        let second = super::super::read_generation(&path).expect("a generation");
        assert_ne!(second, first, "a set-aside cache is a new generation");

        std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
        CacheWriter::open(&path).unwrap().finish().unwrap();
        let third = super::super::read_generation(&path).expect("a generation");
        assert!(third != first && third != second);

        // Emptied by hand: a cache without its table is a new generation.
        std::fs::write(&path, b"").unwrap();
        CacheWriter::open(&path).unwrap().finish().unwrap();
        let fourth = super::super::read_generation(&path).expect("a generation");
        assert!(fourth != third);
    }

    fn row(part_id: &str) -> MessageRow {
        MessageRow {
            part_id: part_id.into(),
            content_text: Some("x".repeat(4000)),
            ..MessageRow::default()
        }
    }

    #[test]
    fn only_committed_rows_count_and_a_full_disk_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/cache.db");
        let mut writer = CacheWriter::open(&path).unwrap();
        writer.insert(&[row("a#0"), row("b#0")]).unwrap();
        writer.commit().unwrap();
        assert_eq!(writer.committed_rows(), 2);
        // A disk that fills up: the database may not grow past its size now.
        let pages: i64 = writer
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        writer
            .conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let full = (0..200)
            .map(|n| {
                writer
                    .insert(&[row(&format!("r{n}#0"))])
                    .and_then(|_| writer.commit())
            })
            .find_map(Result::err)
            .expect("the cache fills up");
        assert!(
            full.to_string()
                .contains("the disk holding the cache is full"),
            "{full}"
        );
        let _ = writer.conn.execute_batch("ROLLBACK");
        let committed: i64 = writer
            .conn
            .query_row("SELECT count(*) FROM ai_gateway_messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(writer.committed_rows(), committed as u64);
    }
}
