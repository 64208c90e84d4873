//! Joining and leaving a fleet on disk (reference config.md §4.5, §4.7):
//! `join` writes the seed and resets the applied layer; `leave` removes the
//! central layer, the probation state and the identity.
//!
//! Neither touches the local layer, the reconciler's markers or the cache,
//! and neither talks to the server: the daemon does that. Reaching the daemon
//! is the caller's job (`cli::join`).

use std::fs;
use std::io;
use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::Digest;

use crate::config;
use crate::config::catalog::CENTRAL_PLUGIN;
use crate::control::engine;
use crate::control::sink;
use crate::paths::{Paths, Slot};
use crate::statefile;

/// The seed document `hyp join <url> <token>` writes (reference §1.4).
pub fn seed_document(url: &str, token: &str) -> Value {
    json!({
        "version": 2,
        "plugins": [{"name": CENTRAL_PLUGIN}],
        "sinks": {
            "central": {
                "plugin": CENTRAL_PLUGIN,
                "config": {"url": url, "identity": {"bootstrap_token": token}}
            }
        }
    })
}

/// Why `join` could not write its files.
#[derive(Debug)]
pub enum JoinError {
    /// The seed fails validation (cannot happen for a well-formed URL).
    InvalidSeed(Vec<config::ConfigError>),
    WriteSeed(statefile::WriteError),
    Reset {
        source: io::Error,
    },
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::InvalidSeed(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "{}", lines.join("\n"))
            }
            JoinError::WriteSeed(err) => write!(f, "{err}"),
            JoinError::Reset { source } => write!(
                f,
                "wrote the seed but cannot remove the old applied config: {source}; remove it with 'hyp leave' and join again"
            ),
        }
    }
}

impl std::error::Error for JoinError {}

/// What `join` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReport {
    pub seed_path: PathBuf,
    /// An applied slot was active and is now gone (#139).
    pub superseded_applied_config: bool,
}

/// Write the seed (0600, atomic) and reset the applied layer to it. The
/// installation id and an empty `client-sync.json` are made first, when
/// missing, as the reference stamps the latter before the seed exists.
pub fn join(paths: &Paths, url: &str, token: &str) -> Result<JoinReport, JoinError> {
    let seed = seed_document(url, token);
    let errors = config::validate_central_document(&seed);
    if !errors.is_empty() {
        return Err(JoinError::InvalidSeed(errors));
    }
    record_join(paths).map_err(JoinError::WriteSeed)?;
    if !paths.client_sync().exists() {
        statefile::write(&paths.client_sync(), &json!({"version": 1, "entries": []}))
            .map_err(JoinError::WriteSeed)?;
    }
    statefile::write(&paths.seed(), &seed).map_err(JoinError::WriteSeed)?;
    let reset = engine::reset_to_seed(paths).map_err(|source| JoinError::Reset { source })?;
    Ok(JoinReport {
        seed_path: paths.seed(),
        superseded_applied_config: reset.had_active_slot,
    })
}

/// `installation.json` as on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Installation {
    installation_id: String,
    created_at: String,
    /// The last `hyp join` (a sweep with on-join off imports from here on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    joined_at: Option<String>,
}

/// This installation's id: 32 lowercase hex characters made at the first
/// join (or the first export of a host joined by an older hyp) and kept
/// across leave and join. A damaged file is replaced by a new id.
pub fn installation_id(paths: &Paths) -> Result<String, statefile::WriteError> {
    if let Some(installation) = read_installation(paths) {
        return Ok(installation.installation_id);
    }
    if let Some(problem) = installation_problem(paths) {
        crate::event!(
            Error,
            "installation.unreadable",
            json!({"path": paths.installation().display().to_string(), "message": problem, "detail": "replaced by a new installation id"}),
        );
    }
    let installation = Installation {
        installation_id: new_installation_id(),
        created_at: crate::time::now_iso(),
        joined_at: None,
    };
    statefile::write(&paths.installation(), &installation)?;
    Ok(installation.installation_id)
}

/// Record that this machine joins now (`hyp join`), making the
/// installation id first if there is none.
fn record_join(paths: &Paths) -> Result<(), statefile::WriteError> {
    installation_id(paths)?;
    let mut installation = read_installation(paths).ok_or_else(|| statefile::WriteError {
        path: paths.installation(),
        source: std::io::Error::other("written but not readable back"),
    })?;
    installation.joined_at = Some(crate::time::now_iso());
    statefile::write(&paths.installation(), &installation)
}

/// The id when `installation.json` holds one (read-only callers: status,
/// the splay).
pub fn read_installation_id(paths: &Paths) -> Option<String> {
    read_installation(paths).map(|installation| installation.installation_id)
}

/// Why `installation.json` is present but holds no usable id (for status
/// and the log); `None` when it is missing or fine.
pub fn installation_problem(paths: &Paths) -> Option<String> {
    let path = paths.installation();
    match statefile::read::<Installation>(&path) {
        statefile::StateRead::Ok(installation) if has_usable_id(&installation) => None,
        statefile::StateRead::Ok(_) => Some(format!(
            "{} has no 32-hex-digit installation_id",
            path.display()
        )),
        other => other.problem(&path),
    }
}

fn read_installation(paths: &Paths) -> Option<Installation> {
    statefile::read::<Installation>(&paths.installation())
        .ok()
        .filter(has_usable_id)
}

fn has_usable_id(installation: &Installation) -> bool {
    let id = &installation.installation_id;
    id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// 16 random bytes from the kernel, as hex; the clock, pid and std's
/// random hash keys when `/dev/urandom` cannot be read.
fn new_installation_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let from_kernel = fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .is_ok();
    if !from_kernel {
        let seed = format!(
            "{}-{}-{}",
            jiff::Timestamp::now().as_nanosecond(),
            std::process::id(),
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        );
        let digest = sha2::Sha256::digest(seed.as_bytes());
        bytes.copy_from_slice(&digest[..16]);
    }
    crate::hex::hex(&bytes)
}

/// When this machine last joined: recorded by `hyp join`, else (a host
/// joined by an older hyp) the time the seed was written while it exists.
pub fn joined_at(paths: &Paths) -> Option<jiff::Timestamp> {
    if let Some(at) = read_installation(paths)
        .and_then(|installation| installation.joined_at)
        .and_then(|at| crate::time::parse_iso(&at))
    {
        return Some(at);
    }
    let modified = fs::metadata(paths.seed()).ok()?.modified().ok()?;
    jiff::Timestamp::try_from(modified).ok()
}

/// What `leave` found before it removed anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The central sinks' URLs of the central layer (may be empty when only
    /// residue is left).
    pub urls: Vec<String>,
}

/// Whether this machine is connected: a central layer resolves, or central
/// residue (seed, slots, sidecars, pointer, state, identity) is on disk.
pub fn connection(paths: &Paths) -> Option<Connection> {
    let urls = engine::central_layer_document(paths)
        .and_then(|document| sink::first_central_sink(&document).ok())
        .map(|sink| vec![sink.url])
        .unwrap_or_default();
    let residue = central_files(paths)
        .iter()
        .chain([paths.identity()].iter())
        .any(|path| fs::symlink_metadata(path).is_ok());
    (residue || !urls.is_empty()).then_some(Connection { urls })
}

fn central_files(paths: &Paths) -> Vec<PathBuf> {
    let mut files = vec![paths.seed(), paths.active_pointer(), paths.apply_state()];
    for slot in [Slot::A, Slot::B] {
        files.push(paths.slot(slot));
        files.push(paths.slot_etag(slot));
    }
    files
}

/// Remove the seed, the applied layer and `state.json`.
pub fn remove_central_layer(paths: &Paths) -> io::Result<()> {
    remove_if_present(&paths.seed())?;
    engine::reset_to_seed(paths).map(|_| ())
}

/// Remove `identity.json`; `Ok(false)` when there was none.
pub fn remove_identity(paths: &Paths) -> io::Result<bool> {
    match fs::remove_file(paths.identity()) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether the local layer defines a central sink of its own (leave keeps it).
pub fn local_layer_has_central_sink(paths: &Paths) -> bool {
    statefile::read_value(&paths.local_config().path)
        .ok()
        .is_some_and(|document| {
            !matches!(
                sink::first_central_sink(&document),
                Err(sink::SinkError::NoCentralSink)
            )
        })
}

fn remove_if_present(path: &std::path::Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_has_the_reference_shape_and_key_order() {
        let text =
            serde_json::to_string(&seed_document("https://central.example", "policy-token-1"))
                .unwrap();
        assert_eq!(
            text,
            r#"{"version":2,"plugins":[{"name":"@hypaware/central"}],"sinks":{"central":{"plugin":"@hypaware/central","config":{"url":"https://central.example","identity":{"bootstrap_token":"policy-token-1"}}}}}"#
        );
    }

    #[test]
    fn join_then_leave_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        assert!(connection(&paths).is_none());
        let report = join(&paths, "http://127.0.0.1:9", "tok").unwrap();
        assert!(!report.superseded_applied_config);
        assert_eq!(
            connection(&paths).unwrap().urls,
            vec!["http://127.0.0.1:9".to_string()]
        );
        remove_central_layer(&paths).unwrap();
        assert!(connection(&paths).is_none());
    }
}
