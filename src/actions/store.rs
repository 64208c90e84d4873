//! The marker store: `S/config-control/client-actions.json`, the record of
//! what the reconciler did, keyed by handler kind and then request key.
//!
//! Markers are held as JSON objects, never closed structs, so fields this
//! version does not know (and whole kinds it does not own) survive a rewrite
//! untouched, in their original order. The file is rewritten only when an
//! edit changed something, always through `statefile::write`, and every
//! read-modify-write holds an exclusive `flock` on
//! `S/config-control/client-actions.lock`, so the daemon and `hyp actions
//! retry` never lose each other's update. The lock is held for one edit
//! only, never while a child runs.
//!
//! A missing, empty or corrupt file reads as an empty store (a corrupt one is
//! logged): losing a completion record costs a re-run, a wedged reconciler
//! costs everything. Any other read error (EACCES, a directory) is an error.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::paths::Paths;
use crate::statefile::{self, StateRead};

/// One marker: a JSON object (`status`, `request_key`, ...).
pub type Marker = Map<String, Value>;

/// Why the store could not be read, locked or written.
#[derive(Debug)]
pub enum StoreError {
    Read { path: PathBuf, source: io::Error },
    Lock { path: PathBuf, source: io::Error },
    Write(statefile::WriteError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Read { path, source } => write!(
                f,
                "cannot read marker store {}: {source} (fix its permissions or move it away)",
                path.display()
            ),
            StoreError::Lock { path, source } => {
                write!(f, "cannot lock marker store {}: {source}", path.display())
            }
            StoreError::Write(err) => write!(f, "cannot write marker store: {err}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The whole document, with a note of whether an edit changed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarkerDoc {
    root: Map<String, Value>,
    changed: bool,
}

impl MarkerDoc {
    /// A document from parsed JSON; anything but an object is empty.
    pub fn from_value(value: Value) -> MarkerDoc {
        match value {
            Value::Object(root) => MarkerDoc {
                root,
                changed: false,
            },
            _ => MarkerDoc::default(),
        }
    }

    pub fn as_value(&self) -> Value {
        Value::Object(self.root.clone())
    }

    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// The marker of `kind`/`request_key`, when it is an object.
    pub fn marker(&self, kind: &str, request_key: &str) -> Option<&Marker> {
        self.bucket(kind)?.get(request_key)?.as_object()
    }

    /// Every kind whose bucket is an object, in file order.
    pub fn kinds(&self) -> Vec<String> {
        self.root
            .iter()
            .filter(|(_, bucket)| bucket.is_object())
            .map(|(kind, _)| kind.clone())
            .collect()
    }

    /// The request keys of `kind` whose markers are objects, in file order.
    pub fn keys(&self, kind: &str) -> Vec<String> {
        self.bucket(kind)
            .map(|bucket| {
                bucket
                    .iter()
                    .filter(|(_, marker)| marker.is_object())
                    .map(|(key, _)| key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replace (in place, keeping its position) or add a marker.
    pub fn set_marker(&mut self, kind: &str, request_key: &str, marker: Marker) {
        let bucket = self
            .root
            .entry(kind.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !bucket.is_object() {
            *bucket = Value::Object(Map::new());
        }
        if let Value::Object(bucket) = bucket {
            bucket.insert(request_key.to_string(), Value::Object(marker));
        }
        self.changed = true;
    }

    /// Remove a marker; an emptied bucket goes too. False when absent.
    pub fn remove_marker(&mut self, kind: &str, request_key: &str) -> bool {
        let Some(Value::Object(bucket)) = self.root.get_mut(kind) else {
            return false;
        };
        if bucket.shift_remove(request_key).is_none() {
            return false;
        }
        if bucket.is_empty() {
            self.root.shift_remove(kind);
        }
        self.changed = true;
        true
    }

    fn bucket(&self, kind: &str) -> Option<&Map<String, Value>> {
        self.root.get(kind)?.as_object()
    }
}

/// The marker file and its lock.
#[derive(Debug, Clone)]
pub struct MarkerStore {
    path: PathBuf,
    lock_path: PathBuf,
}

impl MarkerStore {
    pub fn new(paths: &Paths) -> MarkerStore {
        MarkerStore {
            path: paths.client_actions(),
            lock_path: paths.client_actions_lock(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read without the lock (renames make every read whole). Corrupt reads
    /// as empty and is logged; an I/O error other than "missing" is an error.
    pub fn read(&self) -> Result<MarkerDoc, StoreError> {
        match statefile::read_value(&self.path) {
            StateRead::Ok(value) => {
                if !value.is_object() {
                    crate::event!(
                        Error,
                        "client_action.store_corrupt",
                        json!({"path": self.path.display().to_string(), "detail": "top-level value is not an object"}),
                    );
                }
                Ok(MarkerDoc::from_value(value))
            }
            StateRead::Missing | StateRead::Empty => Ok(MarkerDoc::default()),
            StateRead::Invalid(err) => {
                crate::event!(
                    Error,
                    "client_action.store_corrupt",
                    json!({"path": self.path.display().to_string(), "detail": err.to_string()}),
                );
                Ok(MarkerDoc::default())
            }
            StateRead::Unreadable(source) => Err(StoreError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Best-effort read for status: every problem reads as empty.
    pub fn read_lenient(&self) -> MarkerDoc {
        match statefile::read_value(&self.path) {
            StateRead::Ok(value) => MarkerDoc::from_value(value),
            _ => MarkerDoc::default(),
        }
    }

    /// Lock, read, let `edit` change the document, write it back if it
    /// changed, unlock. `edit` must be quick: the lock is held throughout.
    pub fn modify<R>(&self, edit: impl FnOnce(&mut MarkerDoc) -> R) -> Result<R, StoreError> {
        let _lock = self.lock()?;
        let mut doc = self.read()?;
        let result = edit(&mut doc);
        if doc.is_changed() {
            statefile::write(&self.path, &doc.as_value()).map_err(StoreError::Write)?;
        }
        Ok(result)
    }

    fn lock(&self) -> Result<StoreLock, StoreError> {
        let wrap = |source: io::Error| StoreError::Lock {
            path: self.lock_path.clone(),
            source,
        };
        if let Some(dir) = self.lock_path.parent() {
            statefile::create_private_dir(dir).map_err(wrap)?;
        }
        let file = statefile::lock_exclusive(&self.lock_path).map_err(wrap)?;
        Ok(StoreLock { _file: file })
    }
}

/// Holds the exclusive lock; closing the file releases it.
struct StoreLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, MarkerStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = MarkerStore::new(&Paths::with_home(dir.path()));
        (dir, store)
    }

    fn marker(status: &str) -> Marker {
        json!({"status": status}).as_object().unwrap().clone()
    }

    #[test]
    fn an_edit_that_changes_nothing_writes_nothing() {
        let (_dir, store) = store();
        store
            .modify(|doc| doc.marker("backfill", "x").is_some())
            .unwrap();
        assert!(!store.path().exists());
    }

    #[test]
    fn removing_the_last_marker_drops_the_bucket_and_keeps_siblings() {
        let (_dir, store) = store();
        store
            .modify(|doc| {
                doc.set_marker("attach", "claude", marker("done"));
                doc.set_marker("backfill", "claude", marker("done"));
                doc.set_marker("backfill", "codex", marker("failed"));
            })
            .unwrap();
        assert!(
            store
                .modify(|doc| doc.remove_marker("attach", "claude"))
                .unwrap()
        );
        assert!(
            !store
                .modify(|doc| doc.remove_marker("attach", "claude"))
                .unwrap()
        );
        let doc = store.read().unwrap();
        assert_eq!(doc.kinds(), ["backfill"]);
        assert_eq!(doc.keys("backfill"), ["claude", "codex"]);
    }

    #[test]
    fn a_top_level_array_or_garbage_reads_as_empty() {
        let (_dir, store) = store();
        statefile::write(store.path(), &json!(["backfill"])).unwrap();
        assert_eq!(store.read().unwrap().kinds(), Vec::<String>::new());
        std::fs::write(store.path(), "{ this is not: json,,,").unwrap();
        assert_eq!(store.read().unwrap().kinds(), Vec::<String>::new());
    }

    #[test]
    fn an_unreadable_store_is_an_error_but_lenient_reads_are_empty() {
        let (_dir, store) = store();
        std::fs::create_dir_all(store.path()).unwrap();
        assert!(matches!(store.read(), Err(StoreError::Read { .. })));
        assert_eq!(store.read_lenient(), MarkerDoc::default());
    }

    #[test]
    fn concurrent_read_modify_writes_never_lose_an_update() {
        let (_dir, store) = store();
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        store
                            .modify(|doc| {
                                let count = doc
                                    .marker("test", "counter")
                                    .and_then(|marker| marker.get("count"))
                                    .and_then(Value::as_u64)
                                    .unwrap_or(0);
                                let mut marker = marker("done");
                                marker.insert("count".into(), json!(count + 1));
                                marker.insert("last_writer".into(), json!(writer));
                                doc.set_marker("test", "counter", marker);
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let doc = store.read().unwrap();
        assert_eq!(doc.marker("test", "counter").unwrap()["count"], 200);
    }

    #[test]
    fn replacing_a_marker_keeps_its_position() {
        let (_dir, store) = store();
        store
            .modify(|doc| {
                doc.set_marker("backfill", "a", marker("failed"));
                doc.set_marker("backfill", "b", marker("done"));
                doc.set_marker("backfill", "a", marker("done"));
            })
            .unwrap();
        assert_eq!(store.read().unwrap().keys("backfill"), ["a", "b"]);
    }
}
