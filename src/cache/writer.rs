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
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use super::CacheError;
use super::behind::Behind;
use super::fresh::FreshBuild;
use super::schema::{
    LEDGER_QUERY, MessageRow, add_missing_columns, create_statements, fresh_table_statements,
    insert_statement,
};
use crate::time::thread_cpu_ns;

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
pub(super) const PAGE_SIZE: i64 = 65_536;

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
    checkpointer: Option<Behind<u64>>,
    set_aside: Option<PathBuf>,
    /// A first import into a temporary file ([`super::fresh`]): its rows
    /// count as written only once [`CacheWriter::finish`] moved it into
    /// place.
    fresh: Option<FreshBuild>,
    /// Rows committed to the temporary file of a fresh build.
    unpublished_rows: u64,
    /// A fresh build whose statement failed: with no journal nothing can be
    /// rolled back, so the file is thrown away instead of published.
    poisoned: bool,
    /// CPU the checkpointer thread used, once it has stopped.
    checkpoint_cpu_ns: u64,
    /// The `part_id`s a fresh build holds (its table has no unique index
    /// until the end, or until there are too many to remember).
    part_ids: PartIds,
    /// The table has a unique index on `part_id`: conflict-ignore suffices.
    unique_indexed: bool,
    /// [`PART_IDS_IN_MEMORY`] (smaller in tests).
    part_ids_limit: usize,
}

/// A fresh build remembers at most this many `part_id`s (a map of at most
/// 2^21 buckets of 8 bytes, 18 MiB, and 27 while it last doubles); past it,
/// it builds the unique index there and then and lets `INSERT OR IGNORE` do
/// the rest, so memory stays bounded whatever the history's size.
const PART_IDS_IN_MEMORY: usize = 1 << 20;

/// The `part_id`s already in a fresh build, so that a repeated one is
/// ignored exactly as `INSERT OR IGNORE` on `UNIQUE(part_id)` would: a
/// 32-bit hash of each maps to the rowid of the row that holds it, and a
/// hash seen before is settled by reading that row's `part_id` back (a
/// different id with the same hash is kept apart in `collided`). About 8
/// bytes per row instead of a B-tree insert of a random key per row, and
/// the unique index is then built once, sorted, at the end. A million ids
/// share a 32-bit hash in about a hundred pairs: a hundred extra reads.
#[derive(Debug, Default)]
struct PartIds {
    first: HashMap<u32, u32>,
    collided: HashMap<u32, Vec<u32>>,
}

impl PartIds {
    fn hash(part_id: &str) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        part_id.hash(&mut hasher);
        // The low half of SipHash's 64 bits: as well mixed as the whole.
        hasher.finish() as u32
    }

    /// The rowids whose rows may hold a `part_id` of this hash.
    fn candidates(&self, hash: u32) -> impl Iterator<Item = i64> + '_ {
        self.first
            .get(&hash)
            .into_iter()
            .chain(self.collided.get(&hash).into_iter().flatten())
            .map(|rowid| i64::from(*rowid))
    }

    fn len(&self) -> usize {
        self.first.len()
    }

    /// Remember the row; false (nothing remembered) for a rowid past 32
    /// bits, which a build switches to its unique index long before.
    #[must_use]
    fn remember(&mut self, hash: u32, rowid: i64) -> bool {
        let Ok(rowid) = u32::try_from(rowid) else {
            return false;
        };
        match self.first.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(rowid);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.entry(hash).or_default().push(rowid);
            }
        }
        true
    }
}

/// The thread that checkpoints behind the writer: woken after each commit,
/// it runs one passive checkpoint (never waits for a lock; whatever it
/// cannot copy is left for the next one or for [`CacheWriter::finish`]).
/// It returns the CPU it used (nanoseconds). `None` when it cannot start.
fn checkpointer(path: &Path) -> Option<Behind<u64>> {
    let path = path.to_path_buf();
    Behind::spawn("cache-checkpoint", move |woken| {
        let Ok(conn) = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) else {
            return thread_cpu_ns();
        };
        if conn
            .execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;")
            .is_err()
        {
            return thread_cpu_ns();
        }
        for () in woken {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        thread_cpu_ns()
    })
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

    /// Open the cache for an import: when there is none yet, build a new
    /// one in a temporary file that [`CacheWriter::finish`] moves into
    /// place ([`super::fresh`]); else [`CacheWriter::open`].
    pub fn open_for_import(path: &Path) -> Result<CacheWriter, CacheError> {
        let Some((build, conn)) = FreshBuild::begin(path)? else {
            return CacheWriter::open(path);
        };
        let open_err = |source| CacheError::Open {
            path: build.temp().to_path_buf(),
            source,
        };
        conn.execute_batch(&format!("BEGIN;\n{}COMMIT;", fresh_table_statements()))
            .map_err(open_err)?;
        Ok(CacheWriter::started(conn, None, Some(build)))
    }

    /// A writer on `conn` with nothing written yet. A fresh build keeps
    /// `part_id` unique in memory until its index is built at the end; an
    /// existing cache has the index already.
    fn started(
        conn: Connection,
        checkpointer: Option<Behind<u64>>,
        fresh: Option<FreshBuild>,
    ) -> CacheWriter {
        CacheWriter {
            conn,
            rows_in_transaction: 0,
            new_in_transaction: 0,
            committed_rows: 0,
            checkpointer,
            set_aside: None,
            unique_indexed: fresh.is_none(),
            fresh,
            unpublished_rows: 0,
            poisoned: false,
            checkpoint_cpu_ns: 0,
            part_ids: PartIds::default(),
            part_ids_limit: PART_IDS_IN_MEMORY,
        }
    }

    /// CPU the checkpointer thread used (known once [`CacheWriter::finish`]
    /// stopped it).
    pub fn checkpoint_cpu_ns(&self) -> u64 {
        self.checkpoint_cpu_ns
    }

    /// Whether this writer builds a new cache in a temporary file.
    pub fn is_fresh(&self) -> bool {
        self.fresh.is_some()
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
        Ok(CacheWriter::started(conn, checkpointer(path), None))
    }

    /// Note a failed statement: a fresh build cannot roll it back.
    fn failed<T>(&mut self, result: Result<T, CacheError>) -> Result<T, CacheError> {
        if result.is_err() && self.fresh.is_some() {
            self.poisoned = true;
        }
        result
    }

    fn begin_if_needed(&mut self) -> Result<(), CacheError> {
        if self.conn.is_autocommit() {
            let begun = self.conn.execute_batch("BEGIN IMMEDIATE");
            self.failed(begun.map_err(CacheError::from))?;
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
        let inserted = if self.unique_indexed {
            self.insert_rows(rows)
        } else {
            self.insert_new_rows(rows)
        };
        let inserted = self.failed(inserted)?;
        self.rows_in_transaction += rows.len();
        self.new_in_transaction += inserted;
        Ok(inserted)
    }

    /// A fresh build's insert: skip a `part_id` it already holds.
    fn insert_new_rows(&mut self, rows: &[MessageRow]) -> Result<u64, CacheError> {
        let mut statement = self.conn.prepare_cached(&insert_statement())?;
        let mut read_back = self
            .conn
            .prepare_cached("SELECT part_id FROM ai_gateway_messages WHERE rowid = ?1")?;
        let mut inserted = 0;
        let mut unremembered = None;
        for (index, row) in rows.iter().enumerate() {
            let hash = PartIds::hash(&row.part_id);
            let mut known = false;
            for rowid in self.part_ids.candidates(hash) {
                let stored: String = read_back.query_row([rowid], |found| found.get(0))?;
                if stored == row.part_id {
                    known = true;
                    break;
                }
            }
            if known {
                continue;
            }
            statement.execute(row.values().as_slice())?;
            inserted += 1;
            if !self.part_ids.remember(hash, self.conn.last_insert_rowid()) {
                unremembered = Some(index + 1);
                break;
            }
        }
        drop((statement, read_back));
        if self.part_ids.len() >= self.part_ids_limit || unremembered.is_some() {
            self.conn.execute_batch(super::schema::FRESH_UNIQUE_INDEX)?;
            self.part_ids = PartIds::default();
            self.unique_indexed = true;
        }
        // Rows after one that could not be remembered go through the
        // unique index just built.
        if let Some(rest) = unremembered {
            inserted += self.insert_rows(&rows[rest..])?;
        }
        Ok(inserted)
    }

    fn insert_rows(&self, rows: &[MessageRow]) -> Result<u64, CacheError> {
        let mut statement = self.conn.prepare_cached(&insert_statement())?;
        let mut inserted = 0;
        for row in rows {
            inserted += statement.execute(row.values().as_slice())? as u64;
        }
        Ok(inserted)
    }

    /// New rows committed so far: what a run reports as written.
    pub fn committed_rows(&self) -> u64 {
        self.committed_rows
    }

    /// Record that `file` is fully imported (in the current transaction).
    pub fn mark_imported(&mut self, file: &ImportedFile) -> Result<(), CacheError> {
        self.begin_if_needed()?;
        let marked = self.mark(file);
        self.failed(marked)
    }

    fn mark(&self, file: &ImportedFile) -> Result<(), CacheError> {
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
            let committed = self.conn.execute_batch("COMMIT");
            self.failed(committed.map_err(CacheError::from))?;
            if let Some(build) = &self.fresh {
                self.unpublished_rows += self.new_in_transaction;
                build.committed();
            } else {
                self.committed_rows += self.new_in_transaction;
            }
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
    ///
    /// A fresh build instead gets its secondary indexes, is switched to WAL
    /// and moved into place; only then do its rows count as committed. One
    /// that failed is thrown away (its rows were never reported).
    pub fn finish(&mut self) -> Result<(), CacheError> {
        if let Some(build) = self.fresh.take() {
            return self.publish(build);
        }
        self.commit()?;
        if let Some(mut checkpointer) = self.checkpointer.take() {
            self.checkpoint_cpu_ns += checkpointer.stop().unwrap_or(0);
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

impl CacheWriter {
    fn publish(&mut self, build: FreshBuild) -> Result<(), CacheError> {
        if self.poisoned {
            return Ok(());
        }
        if let Err(err) = self.commit() {
            drop(build);
            return Err(err);
        }
        let conn = std::mem::replace(&mut self.conn, Connection::open_in_memory()?);
        build.publish(conn)?;
        self.committed_rows += std::mem::take(&mut self.unpublished_rows);
        Ok(())
    }
}

/// Create the database file 0600 before SQLite does (it would use the
/// umask, often 0644): the cache holds a person's conversations, and SQLite
/// gives its `-wal` and `-shm` the database file's mode. An existing file
/// is left as it is. Returns whether this call created it.
pub(super) fn create_private_file(path: &Path) -> std::io::Result<bool> {
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
    fn a_fresh_build_ignores_repeated_part_ids_and_counts_rows_once_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/cache.db");
        let mut writer = CacheWriter::open_for_import(&path).unwrap();
        assert!(writer.is_fresh());
        writer.part_ids_limit = 3;
        let ids = |ids: &[&str]| ids.iter().map(|id| row(id)).collect::<Vec<_>>();
        assert_eq!(writer.insert(&ids(&["a#0", "b#0", "a#0"])).unwrap(), 2);
        writer.commit().unwrap();
        assert_eq!(
            writer.committed_rows(),
            0,
            "nothing counts before it is in place"
        );
        assert!(!path.exists());
        // Past the limit the unique index is built at once...
        assert_eq!(
            writer.insert(&ids(&["c#0", "b#0", "d#0", "c#0"])).unwrap(),
            2
        );
        assert!(writer.unique_indexed && writer.part_ids.len() == 0);
        // ... and conflict-ignore takes over.
        assert_eq!(writer.insert(&ids(&["a#0", "e#0"])).unwrap(), 1);
        writer.finish().unwrap();
        assert_eq!(writer.committed_rows(), 5);
        assert!(super::super::read_generation(&path).is_some());
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let (rows, distinct): (i64, i64) = conn
            .query_row(
                "SELECT count(*), count(DISTINCT part_id) FROM ai_gateway_messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, distinct), (5, 5));
        let rowids: Vec<i64> = conn
            .prepare("SELECT rowid FROM ai_gateway_messages ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rowids, [1, 2, 3, 4, 5], "dense, in commit order");
        drop(conn);
        let mut later = CacheWriter::open_for_import(&path).unwrap();
        assert!(!later.is_fresh(), "a cache in place is written through WAL");
        assert_eq!(later.insert(&ids(&["e#0", "f#0"])).unwrap(), 1);
        later.finish().unwrap();
    }

    #[test]
    fn a_hash_shared_by_two_part_ids_keeps_both_rowids() {
        let mut ids = PartIds::default();
        assert!(ids.remember(7, 1) && ids.remember(7, 2) && ids.remember(9, 3));
        assert_eq!(ids.candidates(7).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(ids.candidates(9).collect::<Vec<_>>(), [3]);
        assert_eq!(ids.candidates(8).count(), 0);
        assert!(!ids.remember(8, 1 << 32), "a rowid past 32 bits is refused");
        assert_eq!(ids.candidates(8).count(), 0);
    }

    #[test]
    fn a_fresh_build_that_fails_is_thrown_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/cache.db");
        let mut writer = CacheWriter::open_for_import(&path).unwrap();
        writer.insert(&[row("a#0")]).unwrap();
        writer.commit().unwrap();
        let temp = writer.fresh.as_ref().unwrap().temp().to_path_buf();
        writer
            .conn
            .execute_batch("DROP TABLE ai_gateway_messages")
            .unwrap();
        assert!(writer.insert(&[row("b#0")]).is_err());
        writer.finish().unwrap();
        assert_eq!(writer.committed_rows(), 0);
        assert!(
            !path.exists() && !temp.exists(),
            "nothing published, nothing left"
        );
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
