//! The local SQLite cache (`S/cache/cache.db`, WAL): the schema, the one
//! writer, the `imported_files` ledger and read-only queries.
//!
//! **Invariant:** only [`writer::CacheWriter`] opens the database for
//! writing, and only the backfill writer thread creates one. Everything else
//! (the skip ledger read, `hyp query sql`, status) opens it read-only.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

mod behind;
pub mod fresh;
pub mod health;
pub mod query;
pub mod repair;
pub mod schema;
pub mod writer;

/// `path` with `suffix` appended to its file name: SQLite's companions
/// (`-wal`, `-shm`) and this module's own files beside a database.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `generation` beside the database: an id written whenever a new
/// database file is created. A `done` backfill marker records it, so the
/// daemon re-imports when the cache it filled is gone (set aside as
/// damaged, or deleted by hand) instead of trusting a stale marker.
pub fn generation_path(db: &Path) -> PathBuf {
    db.with_file_name("generation")
}

/// The current generation; `None` when the file is missing or empty.
pub fn read_generation(db: &Path) -> Option<String> {
    let text = std::fs::read_to_string(generation_path(db)).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Replace the generation with a new, unpredictable id.
pub(crate) fn write_new_generation(db: &Path) -> std::io::Result<()> {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let now = jiff::Timestamp::now().as_nanosecond();
    let id = format!("{now:x}-{:x}-{random:016x}", std::process::id());
    crate::statefile::write_bytes(&generation_path(db), format!("{id}\n").as_bytes())
        .map_err(std::io::Error::other)
}

/// Why the cache could not be opened, written or queried.
#[derive(Debug)]
pub enum CacheError {
    /// No cache file yet.
    Missing {
        path: PathBuf,
    },
    /// The cache directory or database file could not be created.
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    Sql {
        source: rusqlite::Error,
    },
    /// `hyp query sql` was handed a statement that writes.
    WriteRefused,
    /// The cache was damaged and could not be moved aside.
    SetAside {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is another program's database (found at open; moved aside).
    Foreign {
        path: PathBuf,
        detail: String,
    },
}

impl CacheError {
    /// Whether SQLite found the database file itself unsound (see
    /// [`repair`]).
    pub fn is_damage(&self) -> bool {
        match self {
            CacheError::Open { source, .. } | CacheError::Sql { source } => {
                repair::is_damage(source)
            }
            _ => false,
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Missing { path } => write!(
                f,
                "no cache at {}: run 'hyp backfill' first to import history",
                path.display()
            ),
            CacheError::Create { path, source } => {
                write!(f, "cannot create the cache at {}: {source}", path.display())
            }
            CacheError::Open { path, source } => {
                write!(f, "cannot open cache {}: {source}", path.display())
            }
            CacheError::Sql { source }
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                write!(
                    f,
                    "the disk holding the cache is full, so the last rows were not written: free some space, then run 'hyp backfill' again (nothing is lost; it imports what is missing)"
                )
            }
            CacheError::Sql { source } => write!(f, "{source}"),
            CacheError::SetAside { path, source } => write!(
                f,
                "the cache {} is damaged and cannot be moved aside ({source}): move it away by hand, then run 'hyp backfill' to rebuild it from history",
                path.display()
            ),
            CacheError::Foreign { path, detail } => {
                write!(f, "{} is not a hyp cache: {detail}", path.display())
            }
            CacheError::WriteRefused => write!(
                f,
                "refusing a statement that writes: the cache is read-only here (query it with SELECT; hyp backfill is what writes it)"
            ),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<rusqlite::Error> for CacheError {
    fn from(source: rusqlite::Error) -> CacheError {
        CacheError::Sql { source }
    }
}
