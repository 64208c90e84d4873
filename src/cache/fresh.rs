//! A first import into a cache that does not exist yet (contract §7): the
//! database is built in a temporary file beside `cache.db`
//! (`cache.db.importing.<pid>`) with no journal and no fsync, its secondary
//! indexes are built at the end, and it is switched to WAL, fsynced and
//! renamed into place only when complete. A crash or a kill leaves no cache
//! or the whole one, never a part; the next run removes the leftover.
//!
//! This is the path that matters most (backfill-on-join on a fresh host):
//! with no WAL every page is written once instead of twice, and nothing
//! checkpoints behind the writer.
//!
//! Who builds: one process at a time, under an exclusive lock on
//! `cache/import.lock` held for the whole build. A second `hyp backfill`
//! that also found no cache waits for that lock; once it has it, it finds
//! the first one's cache in place and writes into it like any later run
//! (conflict-ignore on `part_id`, so it loses no row and duplicates none).
//! Holding the lock also proves every `cache.db.importing.*` file is a dead
//! builder's, so they are removed then.
//!
//! Sequence (contract §12): rows are still inserted one transaction after
//! another into a rowid table, so their rowids are dense and follow commit
//! order exactly as on the WAL path; the forward sink cannot tell the two
//! apart.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::CacheError;
use super::behind::Behind;

/// The lock a first import holds from before its temporary file exists
/// until its cache is in place.
const LOCK_NAME: &str = "import.lock";

/// The page cache (KiB) of a fresh build, and so of its index sorts at the
/// end. Rows are only appended (no index exists until the end), so the
/// cache holds little but the table's rightmost pages: a larger one only
/// adds to the peak (32 MiB cost about 20 MB of it for no speed).
const BUILD_CACHE_KIB: u32 = 8192;

/// The name of a first import's temporary file: `cache.db.importing.<pid>`.
const TEMP_INFIX: &str = ".importing.";

/// A first import in progress: its lock, its temporary file and where it
/// goes. Dropped unpublished (an error, a panic), it removes the file.
#[derive(Debug)]
pub struct FreshBuild {
    _lock: File,
    temp: PathBuf,
    target: PathBuf,
    published: bool,
    /// Writes the temporary file's committed pages to disk behind the
    /// writer (`fdatasync` after each commit), so the fsync that must precede
    /// the rename finds little left to write instead of the whole database
    /// at once. Durability does not depend on it: the final fsync is still
    /// made.
    flusher: Option<Behind<()>>,
}

/// The flusher of `path`; `None` when the file or the thread cannot be had.
fn flusher(path: &Path) -> Option<Behind<()>> {
    let file = File::open(path).ok()?;
    Behind::spawn("cache-flush", move |woken| {
        for () in woken {
            let _ = file.sync_data();
        }
    })
}

impl FreshBuild {
    /// Start a first import of `target` when there is no cache there yet:
    /// `Ok(None)` when there is one (perhaps made by another process while
    /// this one waited for the lock); the caller then opens it as usual.
    pub fn begin(target: &Path) -> Result<Option<(FreshBuild, Connection)>, CacheError> {
        if cache_present(target) {
            return Ok(None);
        }
        let dir = target.parent().unwrap_or_else(|| Path::new("."));
        let create_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Create { path, source }
        };
        crate::statefile::create_private_dir(dir).map_err(create_err(dir))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = crate::statefile::lock_exclusive(&lock_path).map_err(create_err(&lock_path))?;
        if cache_present(target) {
            return Ok(None);
        }
        remove_leftovers(target);
        let temp = temp_path(target, std::process::id());
        super::writer::create_private_file(&temp).map_err(create_err(&temp))?;
        let build = FreshBuild {
            _lock: lock,
            temp,
            target: target.to_path_buf(),
            published: false,
            flusher: None,
        };
        let conn = build.open().map_err(|source| CacheError::Open {
            path: build.temp.clone(),
            source,
        })?;
        let mut build = build;
        build.flusher = flusher(&build.temp);
        Ok(Some((build, conn)))
    }

    /// The temporary database, tuned for one writer nobody else reads: no
    /// journal (a crash throws the file away anyway), no fsync until the
    /// end, the lock kept for the connection's life.
    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.temp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "page_size", super::writer::PAGE_SIZE)?;
        conn.execute_batch(
            &format!("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE; PRAGMA temp_store=FILE; PRAGMA cache_size=-{BUILD_CACHE_KIB};"),
        )?;
        Ok(conn)
    }

    /// A transaction was committed: start writing it to disk.
    pub fn committed(&self) {
        if let Some(flusher) = &self.flusher {
            flusher.wake();
        }
    }

    /// The temporary file (for tests and diagnostics).
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Finish the database on `conn` (indexes, WAL), close it, make it
    /// durable and move it into place with a new generation. Consumes the
    /// connection: the file is complete only once it is closed.
    pub fn publish(mut self, conn: Connection) -> Result<(), CacheError> {
        // Dropping the flusher lets its last round run and joins it.
        self.flusher = None;
        // An index build sorts in memory up to the page cache's size, on
        // top of the cache itself, then spills to a temporary file: the
        // build's small cache keeps the peak near the import's.
        // The unique index fails on a duplicate `part_id`, and the build is
        // then thrown away: a published cache never holds one.
        conn.execute_batch(&format!(
            "{}{}",
            super::schema::FRESH_UNIQUE_INDEX,
            super::schema::SECONDARY_INDEXES
        ))?;
        // WAL is recorded in the file's header, so every later opener uses
        // it; leave exclusive locking first so closing removes the -wal.
        conn.execute_batch("PRAGMA locking_mode=NORMAL;")?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
        conn.close()
            .map_err(|(_, source)| CacheError::Sql { source })?;
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Create { path, source }
        };
        File::open(&self.temp)
            .and_then(|file| file.sync_all())
            .map_err(io_err(&self.temp))?;
        super::write_new_generation(&self.target).map_err(io_err(&self.target))?;
        std::fs::rename(&self.temp, &self.target).map_err(io_err(&self.target))?;
        self.published = true;
        if let Some(dir) = self.target.parent() {
            crate::statefile::sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(())
    }
}

impl Drop for FreshBuild {
    fn drop(&mut self) {
        self.flusher = None;
        if !self.published {
            remove_with_companions(&self.temp);
        }
    }
}

/// Whether a cache (or what is left of one: a `-wal` holds committed rows)
/// is at `target`.
fn cache_present(target: &Path) -> bool {
    target.exists() || super::query::wal_path(target).exists()
}

/// `cache.db.importing.<pid>`.
fn temp_path(target: &Path, pid: u32) -> PathBuf {
    super::with_suffix(target, &format!("{TEMP_INFIX}{pid}"))
}

/// A first import's temporary file beside the cache, as status sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBuild {
    pub pid: u32,
    pub bytes: u64,
    /// Its builder still runs; else it is a killed builder's leftover, which
    /// the next `hyp backfill` removes.
    pub running: bool,
}

/// Every first-import temporary file beside `target`, read without writing
/// or locking anything (status).
pub fn pending_builds(target: &Path) -> Vec<PendingBuild> {
    let mut found: Vec<PendingBuild> = temp_files(target)
        .into_iter()
        .map(|(pid, path)| PendingBuild {
            pid,
            bytes: std::fs::metadata(&path).map_or(0, |meta| meta.len()),
            running: process_alive(pid),
        })
        .collect();
    found.sort_by_key(|build| build.pid);
    found
}

/// Whether a process of `pid` exists (signal 0 delivers nothing).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `(pid, path)` of each `cache.db.importing.<pid>` beside `target`.
fn temp_files(target: &Path) -> Vec<(u32, PathBuf)> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Vec::new();
    };
    let mut prefix = name.to_os_string();
    prefix.push(TEMP_INFIX);
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let rest = file_name.to_str()?.strip_prefix(&prefix)?;
            let pid = rest.parse::<u32>().ok()?;
            rest.bytes()
                .all(|byte| byte.is_ascii_digit())
                .then(|| (pid, entry.path()))
        })
        .collect()
}

/// Remove every first-import temporary file beside `target`. Called only
/// under the import lock, which every builder holds until its file is
/// renamed or removed: whatever is left is a dead builder's.
fn remove_leftovers(target: &Path) {
    for (_, path) in temp_files(target) {
        remove_with_companions(&path);
    }
}

/// Remove an SQLite file and the companions SQLite may have made beside it.
fn remove_with_companions(path: &Path) {
    for suffix in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(super::with_suffix(path, suffix));
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_invisible_until_published_and_gone_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cache/cache.db");
        let (build, conn) = FreshBuild::begin(&db).unwrap().expect("no cache yet");
        let temp = build.temp().to_path_buf();
        assert!(temp.exists() && !db.exists());
        drop(conn);
        drop(build);
        assert!(!temp.exists(), "an unpublished build leaves nothing");
        assert!(!db.exists());
        assert!(super::super::read_generation(&db).is_none());
    }

    #[test]
    fn leftovers_of_dead_builders_go_and_other_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cache.db");
        for name in [
            "cache.db.importing.12345",
            "cache.db.importing.12345-wal",
            "cache.db.importing.99",
            "cache.db.importing.x1",
            "cache.db.damaged-20260101T000000Z",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_leftovers(&db);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["cache.db.damaged-20260101T000000Z", "cache.db.importing.x1"]
        );
    }

    #[test]
    fn an_existing_cache_is_not_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cache.db");
        std::fs::write(&db, b"").unwrap();
        assert!(FreshBuild::begin(&db).unwrap().is_none());
        std::fs::remove_file(&db).unwrap();
        std::fs::write(super::super::query::wal_path(&db), b"").unwrap();
        assert!(FreshBuild::begin(&db).unwrap().is_none(), "a -wal alone");
    }
}
