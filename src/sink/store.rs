//! `forward.db`, the forward sink's memory of one sink instance (SQLite,
//! WAL), beside the identity under
//! `S/plugins/@hypaware/central/sink-instances/<instance>/`:
//!
//! - `targets`: each (central url, gateway id) this instance exported to,
//!   with its totals. A new enrolment is a new target, so it receives the
//!   whole cache once.
//! - `watermarks`: per target, the cache sequence every row at or below
//!   which is settled (acknowledged, withheld or quarantined), for one cache
//!   generation, with a fingerprint of the row at that sequence.
//! - `sent_chunks`: per target, the part hashes of every acknowledged chunk,
//!   appended with each acknowledgement. It lives outside the cache on
//!   purpose: a cache deleted or set aside and filled again gets new
//!   sequences, and this ledger is what keeps its rows from being sent
//!   twice. `sent` is its lookup index, built (sorted, so cheaply) only when
//!   an export must check rows against it: inserting 16-byte random keys
//!   into a B-tree with every chunk would rewrite most of its pages each
//!   time.
//! - `intents`: per target, the one chunk in flight: durable (body in
//!   `intent-<target>.ndjson`, fsynced) before it is sent, so the first
//!   request after a crash is its byte-identical replay.
//! - `quarantine`: rows central refused on their own (400/413/422).
//! - `export_state`: the instance's last export, failures and next attempt,
//!   for the daemon's schedule and `hyp status`.
//!
//! **Invariant:** only the exporting process, holding the instance's
//! export lock, opens this database for writing.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::chunk::{PartHash, body_digest};
use crate::statefile;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS targets (
  id INTEGER PRIMARY KEY,
  url TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  created_at TEXT NOT NULL,
  rows_sent_total INTEGER NOT NULL DEFAULT 0,
  bytes_sent_total INTEGER NOT NULL DEFAULT 0,
  UNIQUE(url, gateway_id)
);
CREATE TABLE IF NOT EXISTS watermarks (
  target_id INTEGER PRIMARY KEY,
  cache_generation TEXT NOT NULL,
  seq INTEGER NOT NULL,
  part_hash BLOB,
  ledger_check INTEGER NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sent_chunks (
  id INTEGER PRIMARY KEY,
  target_id INTEGER NOT NULL,
  part_hashes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sent_chunks_by_target ON sent_chunks(target_id, id);
CREATE TABLE IF NOT EXISTS sent (
  target_id INTEGER NOT NULL,
  part_hash BLOB NOT NULL,
  PRIMARY KEY (target_id, part_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent_indexed (
  target_id INTEGER PRIMARY KEY,
  through_chunk INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
  target_id INTEGER PRIMARY KEY,
  batch_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  cache_generation TEXT NOT NULL,
  from_seq INTEGER NOT NULL,
  to_seq INTEGER NOT NULL,
  to_part_hash BLOB,
  rows INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  body_sha256 TEXT NOT NULL,
  part_hashes BLOB NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
  target_id INTEGER NOT NULL,
  part_hash BLOB NOT NULL,
  part_id TEXT NOT NULL,
  http_status INTEGER,
  error TEXT NOT NULL,
  quarantined_at TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  PRIMARY KEY (target_id, part_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS export_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  target_id INTEGER,
  last_export_at TEXT,
  last_success_at TEXT,
  next_attempt_at TEXT,
  failures INTEGER NOT NULL DEFAULT 0,
  failing_since TEXT,
  last_error TEXT
);
";

/// Why the store could not be opened or written.
#[derive(Debug)]
pub enum StoreError {
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Open { path, source } => write!(
                f,
                "cannot open the forward state {}: {source}",
                path.display()
            ),
            StoreError::Sql { path, source } => {
                write!(f, "forward state {}: {source}", path.display())
            }
            StoreError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

pub type TargetId = i64;

/// Where a target's export stands in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The `cache/generation` of the cache the sequence belongs to.
    pub generation: String,
    /// Every row at or below this sequence is settled.
    pub seq: i64,
    /// The part hash of the row at `seq` (`None` at 0): a cache that does
    /// not hold this row there is not the cache this watermark describes.
    pub part_hash: Option<PartHash>,
    /// Rows above `seq` may already be in the sent ledger (the cache was
    /// replaced after rows were acknowledged): check each one.
    pub ledger_check: bool,
}

impl Watermark {
    /// The start of a cache, for a target that has sent nothing from it.
    pub fn start(generation: &str, ledger_check: bool) -> Watermark {
        Watermark {
            generation: generation.to_string(),
            seq: 0,
            part_hash: None,
            ledger_check,
        }
    }
}

/// What an intent's acknowledgement settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentKind {
    /// The next rows after the watermark: an ack moves it to `to_seq`.
    Rows,
    /// Quarantined rows offered again: an ack takes them out of quarantine.
    Retry,
}

impl IntentKind {
    fn name(self) -> &'static str {
        match self {
            IntentKind::Rows => "rows",
            IntentKind::Retry => "retry",
        }
    }

    fn parse(text: &str) -> IntentKind {
        match text {
            "retry" => IntentKind::Retry,
            _ => IntentKind::Rows,
        }
    }
}

/// A chunk about to be sent, or sent and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub batch_id: String,
    pub kind: IntentKind,
    pub generation: String,
    /// The watermark the chunk starts after (exclusive).
    pub from_seq: i64,
    /// The last sequence it settles (inclusive), and that row's part hash.
    pub to_seq: i64,
    pub to_part_hash: Option<PartHash>,
    pub bytes: u64,
    pub body_sha256: String,
    pub part_hashes: Vec<PartHash>,
}

/// A row central refused on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    pub part_id: String,
    pub http_status: Option<u16>,
    pub error: String,
    pub quarantined_at: String,
    pub attempts: u32,
}

/// The last export failure, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportError {
    pub at: String,
    pub http_status: Option<u16>,
    pub kind: String,
    pub message: String,
}

/// The instance's export bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportState {
    pub target_id: Option<TargetId>,
    pub last_export_at: Option<String>,
    pub last_success_at: Option<String>,
    /// Before this (scaled wall-clock) time the daemon does not export.
    pub next_attempt_at: Option<String>,
    pub failures: u32,
    pub failing_since: Option<String>,
    pub last_error: Option<ExportError>,
}

/// Totals of one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetTotals {
    pub rows_sent: u64,
    pub bytes_sent: u64,
    pub rows_quarantined: u64,
}

pub struct ForwardStore {
    conn: Connection,
    dir: PathBuf,
}

impl ForwardStore {
    /// The database file of the instance directory `dir`.
    pub fn db_path(dir: &Path) -> PathBuf {
        dir.join("forward.db")
    }

    /// Open for writing, creating the directory (0700), the file (0600) and
    /// the schema when needed.
    pub fn open(dir: &Path) -> Result<ForwardStore, StoreError> {
        let path = ForwardStore::db_path(dir);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        statefile::create_private_dir(dir).map_err(io_err)?;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(statefile::FILE_MODE)
            .open(&path)
            .map_err(io_err)?;
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(ForwardStore {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    /// Open an existing store for reading only, creating nothing (status).
    /// `Ok(None)` when there is none yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<ForwardStore>, StoreError> {
        let path = ForwardStore::db_path(dir);
        if !path.exists() {
            return Ok(None);
        }
        let conn =
            crate::cache::query::open_snapshot(&path).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(Some(ForwardStore {
            conn,
            dir: dir.to_path_buf(),
        }))
    }

    /// A second, reading connection on an open store (an export's chunk
    /// reader): plain read-only, never `immutable`, since the exporting
    /// connection writes beside it.
    pub fn open_reader(dir: &Path) -> Result<ForwardStore, StoreError> {
        let path = ForwardStore::db_path(dir);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Ok(ForwardStore {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: ForwardStore::db_path(&self.dir),
            source,
        }
    }

    /// The target for (url, gateway id), made on first use.
    pub fn target(&mut self, url: &str, gateway_id: &str) -> Result<TargetId, StoreError> {
        let found = self
            .conn
            .query_row(
                "SELECT id FROM targets WHERE url = ?1 AND gateway_id = ?2",
                params![url, gateway_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|err| self.sql(err))?;
        if let Some(id) = found {
            return Ok(id);
        }
        self.conn
            .execute(
                "INSERT INTO targets (url, gateway_id, created_at) VALUES (?1, ?2, ?3)",
                params![url, gateway_id, crate::time::now_iso()],
            )
            .map_err(|err| self.sql(err))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// An existing target, without making one (status).
    pub fn find_target(&self, url: &str, gateway_id: &str) -> Result<Option<TargetId>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM targets WHERE url = ?1 AND gateway_id = ?2",
                params![url, gateway_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|err| self.sql(err))
    }

    pub fn watermark(&self, target: TargetId) -> Result<Option<Watermark>, StoreError> {
        self.conn
            .query_row(
                "SELECT cache_generation, seq, part_hash, ledger_check FROM watermarks WHERE target_id = ?1",
                params![target],
                |row| {
                    Ok(Watermark {
                        generation: row.get(0)?,
                        seq: row.get(1)?,
                        part_hash: hash_column(row.get::<_, Option<Vec<u8>>>(2)?),
                        ledger_check: row.get::<_, i64>(3)? != 0,
                    })
                },
            )
            .optional()
            .map_err(|err| self.sql(err))
    }

    pub fn set_watermark(&mut self, target: TargetId, mark: &Watermark) -> Result<(), StoreError> {
        write_watermark(&self.conn, target, mark).map_err(|err| self.sql(err))
    }

    /// Whether the target ever acknowledged a row.
    pub fn has_sent_rows(&self, target: TargetId) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sent_chunks WHERE target_id = ?1)",
                params![target],
                |row| row.get(0),
            )
            .map_err(|err| self.sql(err))
    }

    /// Bring the `sent` lookup index up to date with the ledger: the part
    /// hashes of chunks acknowledged since the last call, sorted, inserted
    /// in one transaction. Called before an export checks rows with
    /// [`ForwardStore::is_sent`].
    pub fn index_sent(&mut self, target: TargetId) -> Result<(), StoreError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            let through: i64 = tx
                .query_row(
                    "SELECT through_chunk FROM sent_indexed WHERE target_id = ?1",
                    params![target],
                    |row| row.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let mut hashes: Vec<PartHash> = Vec::new();
            let mut last = through;
            {
                let mut chunks = tx.prepare(
                    "SELECT id, part_hashes FROM sent_chunks WHERE target_id = ?1 AND id > ?2 ORDER BY id",
                )?;
                let mut rows = chunks.query(params![target, through])?;
                while let Some(row) = rows.next()? {
                    last = row.get(0)?;
                    hashes.extend(split_hashes(row.get_ref(1)?.as_blob()?));
                }
            }
            if last == through {
                return Ok(());
            }
            hashes.sort_unstable();
            {
                let mut insert = tx
                    .prepare("INSERT OR IGNORE INTO sent (target_id, part_hash) VALUES (?1, ?2)")?;
                for hash in &hashes {
                    insert.execute(params![target, &hash[..]])?;
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO sent_indexed (target_id, through_chunk) VALUES (?1, ?2)",
                params![target, last],
            )?;
            tx.commit()
        };
        run(&mut self.conn).map_err(|err| self.sql(err))
    }

    /// Whether central acknowledged this row for the target, as of the last
    /// [`ForwardStore::index_sent`].
    pub fn is_sent(&self, target: TargetId, hash: &PartHash) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM sent WHERE target_id = ?1 AND part_hash = ?2",
            target,
            hash,
        )
    }

    pub fn is_quarantined(&self, target: TargetId, hash: &PartHash) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM quarantine WHERE target_id = ?1 AND part_hash = ?2",
            target,
            hash,
        )
    }

    fn exists(&self, sql: &str, target: TargetId, hash: &PartHash) -> Result<bool, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(|err| self.sql(err))?;
        statement
            .exists(params![target, &hash[..]])
            .map_err(|err| self.sql(err))
    }

    pub fn intent(&self, target: TargetId) -> Result<Option<Intent>, StoreError> {
        self.conn
            .query_row(
                "SELECT batch_id, kind, cache_generation, from_seq, to_seq, to_part_hash, bytes, body_sha256, part_hashes FROM intents WHERE target_id = ?1",
                params![target],
                |row| {
                    Ok(Intent {
                        batch_id: row.get(0)?,
                        kind: IntentKind::parse(&row.get::<_, String>(1)?),
                        generation: row.get(2)?,
                        from_seq: row.get(3)?,
                        to_seq: row.get(4)?,
                        to_part_hash: hash_column(row.get::<_, Option<Vec<u8>>>(5)?),
                        bytes: row.get::<_, i64>(6)?.max(0) as u64,
                        body_sha256: row.get(7)?,
                        part_hashes: split_hashes(&row.get::<_, Vec<u8>>(8)?),
                    })
                },
            )
            .optional()
            .map_err(|err| self.sql(err))
    }

    fn intent_body_path(&self, target: TargetId) -> PathBuf {
        self.dir.join(format!("intent-{target}.ndjson"))
    }

    /// Make `intent` durable before its body is sent: the body is written
    /// and fsynced, then the intent row is committed with a full sync.
    pub fn write_intent(
        &mut self,
        target: TargetId,
        intent: &Intent,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let path = self.intent_body_path(target);
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let fresh = !path.exists();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(statefile::FILE_MODE)
            .open(&path)
            .map_err(io_err)?;
        file.write_all(body).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        if fresh {
            statefile::sync_dir(&self.dir).map_err(io_err)?;
        }
        let hashes: Vec<u8> = intent.part_hashes.concat();
        let insert = |conn: &Connection| -> rusqlite::Result<()> {
            conn.execute_batch("PRAGMA synchronous=FULL;")?;
            let inserted = conn.execute(
                "INSERT OR REPLACE INTO intents (target_id, batch_id, kind, cache_generation, from_seq, to_seq, to_part_hash, rows, bytes, body_sha256, part_hashes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    target,
                    intent.batch_id,
                    intent.kind.name(),
                    intent.generation,
                    intent.from_seq,
                    intent.to_seq,
                    intent.to_part_hash.as_ref().map(|hash| &hash[..]),
                    intent.part_hashes.len() as i64,
                    intent.bytes as i64,
                    intent.body_sha256,
                    hashes,
                    crate::time::now_iso(),
                ],
            );
            conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
            inserted.map(|_| ())
        };
        insert(&self.conn).map_err(|err| self.sql(err))
    }

    /// The body of the pending intent, when the file still holds exactly the
    /// bytes the intent was made for.
    pub fn intent_body(&self, target: TargetId, intent: &Intent) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        fs::File::open(self.intent_body_path(target))
            .ok()?
            .read_to_end(&mut body)
            .ok()?;
        (body.len() as u64 == intent.bytes && body_digest(&body) == intent.body_sha256)
            .then_some(body)
    }

    /// Central acknowledged the intent: in one transaction, its rows join
    /// the sent ledger, the watermark moves (a rows intent of the current
    /// generation) or the rows leave the quarantine (a retry), the totals
    /// grow, and the intent is gone.
    pub fn acknowledge(
        &mut self,
        target: TargetId,
        intent: &Intent,
        advance: Option<&Watermark>,
    ) -> Result<(), StoreError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sent_chunks (target_id, part_hashes) VALUES (?1, ?2)",
                params![target, intent.part_hashes.concat()],
            )?;
            if intent.kind == IntentKind::Retry {
                let mut unquarantine = tx.prepare_cached(
                    "DELETE FROM quarantine WHERE target_id = ?1 AND part_hash = ?2",
                )?;
                for hash in &intent.part_hashes {
                    unquarantine.execute(params![target, &hash[..]])?;
                }
            }
            if let Some(mark) = advance {
                write_watermark(&tx, target, mark)?;
            }
            tx.execute(
                "UPDATE targets SET rows_sent_total = rows_sent_total + ?2, bytes_sent_total = bytes_sent_total + ?3 WHERE id = ?1",
                params![target, intent.part_hashes.len() as i64, intent.bytes as i64],
            )?;
            tx.execute("DELETE FROM intents WHERE target_id = ?1", params![target])?;
            tx.commit()
        };
        run(&mut self.conn).map_err(|err| self.sql(err))
    }

    /// Central refused the intent's body as a whole: nothing of it was
    /// stored, so it is forgotten (its rows are split and offered again).
    pub fn forget_intent(&mut self, target: TargetId) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM intents WHERE target_id = ?1", params![target])
            .map(|_| ())
            .map_err(|err| self.sql(err))
    }

    /// Keep a row central refused on its own, and (for a row after the
    /// watermark) move the watermark past it, in one transaction.
    pub fn quarantine(
        &mut self,
        target: TargetId,
        part_id: &str,
        hash: &PartHash,
        http_status: u16,
        error: &str,
        advance: Option<&Watermark>,
    ) -> Result<(), StoreError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO quarantine (target_id, part_hash, part_id, http_status, error, quarantined_at, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
                 ON CONFLICT (target_id, part_hash) DO UPDATE SET http_status = excluded.http_status, error = excluded.error, quarantined_at = excluded.quarantined_at, attempts = attempts + 1",
                params![target, &hash[..], part_id, http_status, error, crate::time::now_iso()],
            )?;
            if let Some(mark) = advance {
                write_watermark(&tx, target, mark)?;
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|err| self.sql(err))
    }

    /// The target's quarantined rows, oldest first.
    pub fn quarantined(&self, target: TargetId) -> Result<Vec<QuarantinedRow>, StoreError> {
        let read = || -> rusqlite::Result<Vec<QuarantinedRow>> {
            let mut statement = self.conn.prepare(
                "SELECT part_id, http_status, error, quarantined_at, attempts FROM quarantine WHERE target_id = ?1 ORDER BY quarantined_at, part_id",
            )?;
            let rows = statement.query_map(params![target], |row| {
                Ok(QuarantinedRow {
                    part_id: row.get(0)?,
                    http_status: row
                        .get::<_, Option<i64>>(1)?
                        .and_then(|s| u16::try_from(s).ok()),
                    error: row.get(2)?,
                    quarantined_at: row.get(3)?,
                    attempts: row.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
                })
            })?;
            rows.collect()
        };
        read().map_err(|err| self.sql(err))
    }

    pub fn totals(&self, target: TargetId) -> Result<TargetTotals, StoreError> {
        let read = || -> rusqlite::Result<TargetTotals> {
            let (rows_sent, bytes_sent) = self
                .conn
                .query_row(
                    "SELECT rows_sent_total, bytes_sent_total FROM targets WHERE id = ?1",
                    params![target],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()?
                .unwrap_or((0, 0));
            let rows_quarantined: i64 = self.conn.query_row(
                "SELECT count(*) FROM quarantine WHERE target_id = ?1",
                params![target],
                |row| row.get(0),
            )?;
            Ok(TargetTotals {
                rows_sent: rows_sent.max(0) as u64,
                bytes_sent: bytes_sent.max(0) as u64,
                rows_quarantined: rows_quarantined.max(0) as u64,
            })
        };
        read().map_err(|err| self.sql(err))
    }

    pub fn export_state(&self) -> Result<ExportState, StoreError> {
        let read = || -> rusqlite::Result<ExportState> {
            self.conn
                .query_row(
                    "SELECT target_id, last_export_at, last_success_at, next_attempt_at, failures, failing_since, last_error FROM export_state WHERE id = 1",
                    [],
                    |row| {
                        Ok(ExportState {
                            target_id: row.get(0)?,
                            last_export_at: row.get(1)?,
                            last_success_at: row.get(2)?,
                            next_attempt_at: row.get(3)?,
                            failures: row.get::<_, i64>(4)?.clamp(0, 1 << 20) as u32,
                            failing_since: row.get(5)?,
                            last_error: row
                                .get::<_, Option<String>>(6)?
                                .and_then(|text| serde_json::from_str(&text).ok()),
                        })
                    },
                )
                .optional()
                .map(Option::unwrap_or_default)
        };
        read().map_err(|err| self.sql(err))
    }

    pub fn set_export_state(&mut self, state: &ExportState) -> Result<(), StoreError> {
        let last_error = state
            .last_error
            .as_ref()
            .and_then(|error| serde_json::to_string(error).ok());
        self.conn
            .execute(
                "INSERT OR REPLACE INTO export_state (id, target_id, last_export_at, last_success_at, next_attempt_at, failures, failing_since, last_error) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    state.target_id,
                    state.last_export_at,
                    state.last_success_at,
                    state.next_attempt_at,
                    state.failures,
                    state.failing_since,
                    last_error,
                ],
            )
            .map(|_| ())
            .map_err(|err| self.sql(err))
    }
}

fn write_watermark(conn: &Connection, target: TargetId, mark: &Watermark) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO watermarks (target_id, cache_generation, seq, part_hash, ledger_check, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            target,
            mark.generation,
            mark.seq,
            mark.part_hash.as_ref().map(|hash| &hash[..]),
            i64::from(mark.ledger_check),
            crate::time::now_iso(),
        ],
    )
    .map(|_| ())
}

fn hash_column(bytes: Option<Vec<u8>>) -> Option<PartHash> {
    bytes.and_then(|bytes| bytes.try_into().ok())
}

fn split_hashes(bytes: &[u8]) -> Vec<PartHash> {
    bytes
        .chunks_exact(16)
        .filter_map(|chunk| chunk.try_into().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::chunk::part_hash;

    fn intent(kind: IntentKind, ids: &[&str], body: &[u8]) -> Intent {
        Intent {
            batch_id: "b".repeat(32),
            kind,
            generation: "g1".into(),
            from_seq: 0,
            to_seq: ids.len() as i64,
            to_part_hash: ids.last().map(|id| part_hash(id)),
            bytes: body.len() as u64,
            body_sha256: body_digest(body),
            part_hashes: ids.iter().map(|id| part_hash(id)).collect(),
        }
    }

    #[test]
    fn an_intent_survives_until_acknowledged_and_the_ack_settles_everything_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ForwardStore::open(dir.path()).unwrap();
        let target = store.target("http://a", "gw-1").unwrap();
        assert_eq!(store.target("http://a", "gw-1").unwrap(), target);
        assert_ne!(store.target("http://b", "gw-1").unwrap(), target);
        let body = b"{\"part_id\":\"a#0\"}\n{\"part_id\":\"b#0\"}\n";
        let pending = intent(IntentKind::Rows, &["a#0", "b#0"], body);
        store.write_intent(target, &pending, body).unwrap();
        drop(store);

        let mut store = ForwardStore::open(dir.path()).unwrap();
        let found = store.intent(target).unwrap().unwrap();
        assert_eq!(found, pending);
        assert_eq!(store.intent_body(target, &found).unwrap(), body);
        let mark = Watermark {
            generation: "g1".into(),
            seq: 2,
            part_hash: Some(part_hash("b#0")),
            ledger_check: false,
        };
        store.acknowledge(target, &found, Some(&mark)).unwrap();
        assert!(store.intent(target).unwrap().is_none());
        assert!(
            !store.is_sent(target, &part_hash("a#0")).unwrap(),
            "not indexed yet"
        );
        store.index_sent(target).unwrap();
        assert_eq!(store.watermark(target).unwrap(), Some(mark));
        assert!(store.is_sent(target, &part_hash("a#0")).unwrap());
        assert!(!store.is_sent(target, &part_hash("c#0")).unwrap());
        let totals = store.totals(target).unwrap();
        assert_eq!(
            (totals.rows_sent, totals.bytes_sent),
            (2, body.len() as u64)
        );
    }

    #[test]
    fn a_tampered_intent_body_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ForwardStore::open(dir.path()).unwrap();
        let target = store.target("http://a", "gw-1").unwrap();
        let body = b"{\"x\":1}\n";
        let pending = intent(IntentKind::Rows, &["x#0"], body);
        store.write_intent(target, &pending, body).unwrap();
        fs::write(
            dir.path().join(format!("intent-{target}.ndjson")),
            b"{\"x\":2}\n",
        )
        .unwrap();
        assert!(store.intent_body(target, &pending).is_none());
    }

    #[test]
    fn quarantine_counts_attempts_and_a_retry_ack_releases_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ForwardStore::open(dir.path()).unwrap();
        let target = store.target("http://a", "gw-1").unwrap();
        let hash = part_hash("bad#0");
        store
            .quarantine(target, "bad#0", &hash, 413, "payload_too_large", None)
            .unwrap();
        store
            .quarantine(target, "bad#0", &hash, 400, "bad_row", None)
            .unwrap();
        let rows = store.quarantined(target).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].attempts, rows[0].http_status), (2, Some(400)));
        assert!(store.is_quarantined(target, &hash).unwrap());
        let retry = intent(IntentKind::Retry, &["bad#0"], b"{}\n");
        store.acknowledge(target, &retry, None).unwrap();
        store.index_sent(target).unwrap();
        assert!(!store.is_quarantined(target, &hash).unwrap());
        assert!(store.is_sent(target, &hash).unwrap());
        assert_eq!(store.totals(target).unwrap().rows_quarantined, 0);
    }

    #[test]
    fn export_state_round_trips_and_status_opens_without_creating() {
        let dir = tempfile::tempdir().unwrap();
        let instance = dir.path().join("central");
        assert!(ForwardStore::open_read_only(&instance).unwrap().is_none());
        assert!(!instance.exists());
        let mut store = ForwardStore::open(&instance).unwrap();
        let state = ExportState {
            target_id: Some(1),
            last_export_at: Some("2026-12-04T10:00:00.000Z".into()),
            failures: 2,
            last_error: Some(ExportError {
                at: "2026-12-04T10:00:00.000Z".into(),
                http_status: Some(503),
                kind: "throttled".into(),
                message: "503 Service Unavailable".into(),
            }),
            ..ExportState::default()
        };
        store.set_export_state(&state).unwrap();
        drop(store);
        let store = ForwardStore::open_read_only(&instance).unwrap().unwrap();
        assert_eq!(store.export_state().unwrap(), state);
    }
}
