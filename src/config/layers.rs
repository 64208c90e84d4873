//! Resolving and loading the two config layers (config.md §1.3, §3.1).
//!
//! - **central** = the active slot when the `active` pointer resolves, else
//!   `seed.json` when it exists, else none. A pointer that resolves to a
//!   missing slot still counts: the layer then fails to load.
//! - **local** = the local-layer file (`HYP_CONFIG` or the default path).
//!
//! A layer that fails to load (`config_missing`, `config_unreadable`,
//! `config_invalid_json`, `config_invalid_shape`) counts as absent; the
//! failure is kept in its [`LayerReport`] so status and `hyp config` can
//! explain it. Nothing here writes.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::schema::shape_errors;
use crate::config::{ConfigError, ErrorKind};
use crate::paths::{Paths, Slot};

/// Where a layer's document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerSource {
    /// The central layer from A/B slot A (the `active` pointer names it).
    SlotA,
    SlotB,
    /// The central layer from the join seed (before the first apply).
    Seed,
    /// The user's local layer.
    Local,
}

impl LayerSource {
    pub fn from_slot(slot: Slot) -> LayerSource {
        match slot {
            Slot::A => LayerSource::SlotA,
            Slot::B => LayerSource::SlotB,
        }
    }

    /// `slot_a`, `slot_b`, `seed`, `local` (as in JSON output).
    pub fn as_str(self) -> &'static str {
        match self {
            LayerSource::SlotA => "slot_a",
            LayerSource::SlotB => "slot_b",
            LayerSource::Seed => "seed",
            LayerSource::Local => "local",
        }
    }

    /// For people: `active slot a`, `join seed`, `local`.
    pub fn describe(self) -> &'static str {
        match self {
            LayerSource::SlotA => "active slot a",
            LayerSource::SlotB => "active slot b",
            LayerSource::Seed => "join seed",
            LayerSource::Local => "local",
        }
    }
}

/// Why a layer file did not load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LoadErrorKind {
    #[serde(rename = "config_missing")]
    Missing,
    #[serde(rename = "config_unreadable")]
    Unreadable,
    #[serde(rename = "config_invalid_json")]
    InvalidJson,
    #[serde(rename = "config_invalid_shape")]
    InvalidShape,
}

impl LoadErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadErrorKind::Missing => "config_missing",
            LoadErrorKind::Unreadable => "config_unreadable",
            LoadErrorKind::InvalidJson => "config_invalid_json",
            LoadErrorKind::InvalidShape => "config_invalid_shape",
        }
    }
}

/// A failed load: the kind, one sentence for people, and (for a shape
/// failure) every shape error with its pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub kind: LoadErrorKind,
    pub message: String,
    /// The shape errors when `kind` is `InvalidShape`; otherwise one error
    /// of `kind` at the root, so callers can list errors uniformly.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

/// One layer: where it was looked for and what loading it gave.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    pub source: LayerSource,
    pub path: PathBuf,
    pub outcome: Result<Value, LoadError>,
}

impl LayerReport {
    /// Load the file at `path` as a layer of `source`.
    pub fn load(source: LayerSource, path: PathBuf) -> LayerReport {
        let outcome = load_layer_file(&path);
        LayerReport {
            source,
            path,
            outcome,
        }
    }

    /// The document when the layer loaded.
    pub fn document(&self) -> Option<&Value> {
        self.outcome.as_ref().ok()
    }

    pub fn error(&self) -> Option<&LoadError> {
        self.outcome.as_ref().err()
    }

    /// Whether the file simply does not exist (normal for a local layer).
    pub fn is_missing(&self) -> bool {
        self.error()
            .is_some_and(|error| error.kind == LoadErrorKind::Missing)
    }
}

/// Both layers as resolved from disk. `central` is `None` when no central
/// layer exists at all (no resolving pointer, no seed): a never-joined host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layers {
    pub central: Option<LayerReport>,
    pub local: Option<LayerReport>,
}

impl Layers {
    /// Resolve and load both layers. Never fails.
    pub fn resolve(paths: &Paths) -> Layers {
        let central =
            central_layer_path(paths).map(|(source, path)| LayerReport::load(source, path));
        let local = LayerReport::load(LayerSource::Local, paths.local_config().path.clone());
        Layers {
            central,
            local: Some(local),
        }
    }

    pub fn central_document(&self) -> Option<&Value> {
        self.central.as_ref().and_then(LayerReport::document)
    }

    pub fn local_document(&self) -> Option<&Value> {
        self.local.as_ref().and_then(LayerReport::document)
    }
}

/// Where the central layer lives: the active slot when the pointer resolves,
/// else the seed when it exists (anything but "not found" counts, so an
/// unreadable seed is reported rather than silently skipped), else none.
pub fn central_layer_path(paths: &Paths) -> Option<(LayerSource, PathBuf)> {
    if let Some(slot) = read_active_pointer(paths) {
        return Some((LayerSource::from_slot(slot), paths.slot(slot)));
    }
    let seed = paths.seed();
    match std::fs::symlink_metadata(&seed) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        _ => Some((LayerSource::Seed, seed)),
    }
}

/// The slot the `active` symlink names. It counts only when `readlink`
/// succeeds and the target, resolved against the control dir, is exactly
/// `<control>/config.a.json` or `<control>/config.b.json` (config.md §1.3).
/// A regular file, a directory, a target elsewhere or a readlink error is
/// no pointer; a dangling pointer to a slot name does count.
pub fn read_active_pointer(paths: &Paths) -> Option<Slot> {
    let control_dir = paths.control_dir();
    let target = std::fs::read_link(paths.active_pointer()).ok()?;
    let resolved = normalize(&control_dir.join(target));
    let control_dir = normalize(&control_dir);
    [Slot::A, Slot::B]
        .into_iter()
        .find(|slot| resolved == control_dir.join(slot.file_name()))
}

/// Lexical normalisation (`.` dropped, `..` pops), like Node's `path.resolve`:
/// the filesystem is not consulted, so a dangling target still resolves.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Read, parse and shape-check one layer file.
pub fn load_layer_file(path: &Path) -> Result<Value, LoadError> {
    let shown = path.display();
    // A FIFO or device would block or never end: only regular files load.
    if std::fs::metadata(path).is_ok_and(|metadata| !metadata.is_file()) {
        return Err(single(
            LoadErrorKind::Unreadable,
            ErrorKind::Unreadable,
            format!("failed to read config {shown}: not a regular file"),
        ));
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(single(
                LoadErrorKind::Missing,
                ErrorKind::Missing,
                format!("config not found at {shown}"),
            ));
        }
        Err(err) => {
            return Err(single(
                LoadErrorKind::Unreadable,
                ErrorKind::Unreadable,
                format!("failed to read config {shown}: {err}"),
            ));
        }
    };
    let document: Value = serde_json::from_slice(&bytes).map_err(|err| {
        single(
            LoadErrorKind::InvalidJson,
            ErrorKind::InvalidJson,
            format!("config {shown} is not valid JSON: {err}"),
        )
    })?;
    let errors = shape_errors(&document);
    match errors.first() {
        None => Ok(document),
        Some(first) => Err(LoadError {
            kind: LoadErrorKind::InvalidShape,
            message: format!("config {shown} has an invalid shape: {}", first.message),
            errors,
        }),
    }
}

fn single(kind: LoadErrorKind, error_kind: ErrorKind, message: String) -> LoadError {
    LoadError {
        kind,
        errors: vec![ConfigError::new(error_kind, "", message.clone())],
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        paths: Paths,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path().join("hyp"));
        std::fs::create_dir_all(paths.control_dir()).unwrap();
        Fixture { _dir: dir, paths }
    }

    const SEED: &str = r#"{"version": 2, "plugins": [{"name": "@hypaware/central"}]}"#;
    const SLOT: &str = r#"{"version": 2, "plugins": [{"name": "@hypaware/claude"}]}"#;

    #[test]
    fn a_relative_pointer_to_a_slot_counts() {
        let fx = fixture();
        symlink("config.b.json", fx.paths.active_pointer()).unwrap();
        assert_eq!(read_active_pointer(&fx.paths), Some(Slot::B));
        std::fs::remove_file(fx.paths.active_pointer()).unwrap();
        symlink("./config.a.json", fx.paths.active_pointer()).unwrap();
        assert_eq!(read_active_pointer(&fx.paths), Some(Slot::A));
    }

    #[test]
    fn a_pointer_that_resolves_into_the_control_dir_by_another_spelling_counts() {
        let fx = fixture();
        symlink("../config-control/config.a.json", fx.paths.active_pointer()).unwrap();
        assert_eq!(read_active_pointer(&fx.paths), Some(Slot::A));
    }

    #[test]
    fn a_pointer_elsewhere_is_no_pointer() {
        let fx = fixture();
        for target in [
            "config.c.json",
            "../config.a.json",
            "/tmp/config.a.json",
            "sub/config.a.json",
            "seed.json",
            "",
        ] {
            let _ = std::fs::remove_file(fx.paths.active_pointer());
            if symlink(target, fx.paths.active_pointer()).is_err() {
                continue;
            }
            assert_eq!(read_active_pointer(&fx.paths), None, "target {target:?}");
        }
    }

    #[test]
    fn a_regular_file_or_nothing_is_no_pointer() {
        let fx = fixture();
        assert_eq!(read_active_pointer(&fx.paths), None);
        std::fs::write(fx.paths.active_pointer(), "config.a.json").unwrap();
        assert_eq!(read_active_pointer(&fx.paths), None);
        std::fs::remove_file(fx.paths.active_pointer()).unwrap();
        std::fs::create_dir(fx.paths.active_pointer()).unwrap();
        assert_eq!(read_active_pointer(&fx.paths), None);
    }

    #[test]
    fn central_is_the_active_slot_then_the_seed_then_none() {
        let fx = fixture();
        assert_eq!(central_layer_path(&fx.paths), None);
        assert!(Layers::resolve(&fx.paths).central.is_none());

        std::fs::write(fx.paths.seed(), SEED).unwrap();
        assert_eq!(
            central_layer_path(&fx.paths),
            Some((LayerSource::Seed, fx.paths.seed()))
        );

        std::fs::write(fx.paths.slot(Slot::B), SLOT).unwrap();
        symlink("config.b.json", fx.paths.active_pointer()).unwrap();
        let layers = Layers::resolve(&fx.paths);
        let central = layers.central.as_ref().unwrap();
        assert_eq!(central.source, LayerSource::SlotB);
        assert_eq!(
            central.document().unwrap()["plugins"][0]["name"],
            "@hypaware/claude"
        );
    }

    #[test]
    fn a_dangling_pointer_to_a_slot_counts_and_then_fails_to_load() {
        let fx = fixture();
        std::fs::write(fx.paths.seed(), SEED).unwrap();
        symlink("config.b.json", fx.paths.active_pointer()).unwrap();
        let layers = Layers::resolve(&fx.paths);
        let central = layers.central.as_ref().unwrap();
        assert_eq!(central.source, LayerSource::SlotB);
        assert_eq!(central.error().unwrap().kind, LoadErrorKind::Missing);
        assert!(
            layers.central_document().is_none(),
            "no fallback to the seed"
        );
    }

    #[test]
    fn a_pointer_outside_the_control_dir_falls_back_to_the_seed() {
        let fx = fixture();
        std::fs::write(fx.paths.seed(), SEED).unwrap();
        let outside = fx.paths.home().join("config.a.json");
        std::fs::write(&outside, SLOT).unwrap();
        symlink(&outside, fx.paths.active_pointer()).unwrap();
        let layers = Layers::resolve(&fx.paths);
        assert_eq!(layers.central.as_ref().unwrap().source, LayerSource::Seed);
        assert_eq!(
            layers.central_document().unwrap()["plugins"][0]["name"],
            "@hypaware/central"
        );
    }

    #[test]
    fn a_regular_file_named_active_falls_back_to_the_seed() {
        let fx = fixture();
        std::fs::write(fx.paths.seed(), SEED).unwrap();
        std::fs::write(fx.paths.slot(Slot::A), SLOT).unwrap();
        std::fs::write(fx.paths.active_pointer(), "config.a.json").unwrap();
        let layers = Layers::resolve(&fx.paths);
        assert_eq!(layers.central.as_ref().unwrap().source, LayerSource::Seed);
    }

    #[test]
    fn each_load_failure_has_its_kind() {
        let fx = fixture();
        let path = fx.paths.home().join("x.json");
        let kind = |path: &Path| load_layer_file(path).unwrap_err().kind;

        assert_eq!(kind(&path), LoadErrorKind::Missing);
        let missing = load_layer_file(&path).unwrap_err();
        assert_eq!(missing.errors[0].kind, "config_missing");
        assert!(missing.message.starts_with("config not found at "));

        std::fs::write(&path, "{\"version\": 2,").unwrap();
        assert_eq!(kind(&path), LoadErrorKind::InvalidJson);
        std::fs::write(&path, "").unwrap();
        assert_eq!(kind(&path), LoadErrorKind::InvalidJson);
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(kind(&path), LoadErrorKind::InvalidJson);

        std::fs::write(&path, r#"{"version": 1, "extra": true}"#).unwrap();
        let shape = load_layer_file(&path).unwrap_err();
        assert_eq!(shape.kind, LoadErrorKind::InvalidShape);
        assert_eq!(shape.errors.len(), 2);
        assert!(shape.message.contains("version must be exactly 2"));

        assert_eq!(kind(fx.paths.home()), LoadErrorKind::Unreadable);
        let fifo = fx.paths.home().join("fifo.json");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert_eq!(
            kind(&fifo),
            LoadErrorKind::Unreadable,
            "a FIFO never blocks the load"
        );

        std::fs::write(&path, SLOT).unwrap();
        assert!(load_layer_file(&path).is_ok());
    }

    #[test]
    fn a_layer_that_is_not_json_counts_as_absent() {
        let fx = fixture();
        std::fs::write(fx.paths.seed(), "not json").unwrap();
        std::fs::write(&fx.paths.local_config().path, "[1, 2").unwrap();
        let layers = Layers::resolve(&fx.paths);
        assert!(layers.central_document().is_none());
        assert!(layers.local_document().is_none());
        assert_eq!(
            layers.central.as_ref().unwrap().error().unwrap().kind,
            LoadErrorKind::InvalidJson
        );
        assert_eq!(
            layers.local.as_ref().unwrap().error().unwrap().kind,
            LoadErrorKind::InvalidJson
        );
    }
}
