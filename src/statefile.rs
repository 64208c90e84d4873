//! The only code that writes a JSON state file, and the tolerant reader for them.
//!
//! A write goes to `<file>.<pid>.<12 hex>.tmp` in the same directory, is
//! fsynced, renamed over the target, and the directory is fsynced: a crash
//! leaves the old file or the new one, never a torn one. A stray temp file from
//! a crash is never read, because readers open only the target name, and the
//! daemon removes those of dead writers at boot ([`remove_stray_temps`]).
//!
//! A read never trusts a file: missing, empty, unreadable and not-JSON are
//! distinct outcomes so status can explain each one and the daemon can carry on.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Mode of every state file.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory this project creates.
pub const DIR_MODE: u32 = 0o700;

/// What reading a state file found.
#[derive(Debug)]
pub enum StateRead<T> {
    /// No file at the path.
    Missing,
    /// The file exists and holds nothing but whitespace.
    Empty,
    /// The file exists but could not be read (permissions, a directory, ...).
    Unreadable(io::Error),
    /// The bytes are not valid JSON, or not the expected shape. A truncated
    /// file lands here: it is reported, never trusted.
    Invalid(serde_json::Error),
    Ok(T),
}

impl<T> StateRead<T> {
    /// The value, or `None` for every other outcome.
    pub fn ok(self) -> Option<T> {
        match self {
            StateRead::Ok(value) => Some(value),
            _ => None,
        }
    }

    /// A sentence for a diagnostic, or `None` when the file was fine or absent.
    pub fn problem(&self, path: &Path) -> Option<String> {
        let path = path.display();
        match self {
            StateRead::Ok(_) | StateRead::Missing => None,
            StateRead::Empty => Some(format!("{path} is empty")),
            StateRead::Unreadable(err) => Some(format!("cannot read {path}: {err}")),
            StateRead::Invalid(err) => Some(format!("{path} is not valid JSON: {err}")),
        }
    }
}

/// Read and parse a state file as `T`.
pub fn read<T: DeserializeOwned>(path: &Path) -> StateRead<T> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return StateRead::Missing,
        Err(err) => return StateRead::Unreadable(err),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return StateRead::Empty;
    }
    match serde_json::from_slice(&bytes) {
        Ok(value) => StateRead::Ok(value),
        Err(err) => StateRead::Invalid(err),
    }
}

/// Read a state file as an untyped JSON value.
pub fn read_value(path: &Path) -> StateRead<Value> {
    read(path)
}

/// Why a state file could not be written. Nothing was replaced when this is
/// returned: the old file, if any, is intact.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Write `value` as pretty JSON (2-space indent, trailing newline), atomically.
pub fn write<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), WriteError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|err| WriteError {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, err),
    })?;
    bytes.push(b'\n');
    write_bytes(path, &bytes)
}

/// Write raw bytes atomically with mode 0600, creating parent dirs 0700.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let wrap = |source: io::Error| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| wrap(io::Error::other("path has no parent directory")))?;
    create_private_dir(dir).map_err(wrap)?;
    let (temp_path, mut temp) = create_temp(path).map_err(wrap)?;
    let written = temp
        .write_all(bytes)
        .and_then(|()| temp.sync_all())
        .and_then(|()| fs::rename(&temp_path, path));
    if let Err(err) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(wrap(err));
    }
    sync_dir(dir).map_err(wrap)
}

/// Create `dir` and its missing parents with mode 0700. An existing directory
/// keeps its mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// An exclusive `flock` on `path` (created 0600 when missing), waiting as
/// long as another holder keeps it; closing the returned file releases it.
pub fn lock_exclusive(path: &Path) -> io::Result<File> {
    let file = open_lock_file(path)?;
    flock(&file, libc::LOCK_EX)?;
    Ok(file)
}

/// [`lock_exclusive`] without waiting: `Ok(None)` while another holder keeps it.
pub fn try_lock_exclusive(path: &Path) -> io::Result<Option<File>> {
    let file = open_lock_file(path)?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(file)),
        Err(err) if err.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
        Err(err) => Err(err),
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// fsync a directory so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Make an existing file private (0600); used after writes that did not go
/// through [`write_bytes`].
pub fn make_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))
}

/// Remove the stray temp files of [`write_bytes`] in `dir` (not below it):
/// regular files named exactly `<file>.<pid>.<12 lowercase hex>.tmp` whose
/// writer is gone (`kill(pid, 0)` fails with `ESRCH`) or is this process (a
/// staged restart execs with the same pid, and at boot nothing of this
/// image writes yet). A temp of another live process is kept, since it may
/// be mid-write; so is every other name. Returns how many were removed; a
/// missing or unreadable `dir` removes nothing.
pub fn remove_stray_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let own_pid = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(temp_writer_pid) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        if is_file
            && (pid == own_pid || !process_exists(pid))
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    if removed > 0 {
        let _ = sync_dir(dir);
    }
    removed
}

/// The writer's pid when `name` is a temp name [`create_temp`] makes:
/// a non-empty target name, a pid (decimal, no leading zero, a valid
/// `pid_t`), 12 lowercase hex digits, `.tmp`.
fn temp_writer_pid(name: &str) -> Option<u32> {
    let (rest, salt) = name.strip_suffix(".tmp")?.rsplit_once('.')?;
    let (target, pid) = rest.rsplit_once('.')?;
    let salt_ok = salt.len() == 12
        && salt
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    let pid_ok =
        !pid.is_empty() && !pid.starts_with('0') && pid.bytes().all(|byte| byte.is_ascii_digit());
    if target.is_empty() || !salt_ok || !pid_ok {
        return None;
    }
    pid.parse::<u32>()
        .ok()
        .filter(|pid| libc::pid_t::try_from(*pid).is_ok())
}

/// Whether a process `pid` exists (ours to signal or not): only `ESRCH`
/// says it does not.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that `pid` exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn create_temp(target: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or_default();
        let salt = nanos
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let temp_path = target.with_file_name(format!(
            "{name}.{}.{:012x}.tmp",
            std::process::id(),
            salt & 0xffff_ffff_ffff
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp_path)
        {
            Ok(file) => return Ok((temp_path, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn write_then_read_round_trips_with_mode_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/state.json");
        write(&path, &json!({"a": 1, "b": [true]})).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\n  \"a\": 1,\n  \"b\": [\n    true\n  ]\n}\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(read_value(&path).ok(), Some(json!({"a": 1, "b": [true]})));
    }

    #[test]
    fn a_crash_before_rename_leaves_the_old_file_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &json!({"generation": 1})).unwrap();
        // A crash between write and rename leaves a half-written temp file.
        let stray = dir.path().join(format!(
            "state.json.{}.00000000abcd.tmp",
            std::process::id()
        ));
        fs::write(&stray, b"{\"generation\": 2, \"trunc").unwrap();
        assert_eq!(read_value(&path).ok(), Some(json!({"generation": 1})));
        // The next write still succeeds and wins.
        write(&path, &json!({"generation": 3})).unwrap();
        assert_eq!(read_value(&path).ok(), Some(json!({"generation": 3})));
    }

    #[test]
    fn each_broken_file_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(matches!(read_value(&missing), StateRead::Missing));
        assert!(read_value(&missing).problem(&missing).is_none());

        let empty = dir.path().join("empty.json");
        fs::write(&empty, b"  \n").unwrap();
        assert!(matches!(read_value(&empty), StateRead::Empty));

        let truncated = dir.path().join("truncated.json");
        fs::write(&truncated, b"{\"status\": \"do").unwrap();
        let outcome = read_value(&truncated);
        assert!(matches!(outcome, StateRead::Invalid(_)));
        assert!(
            outcome
                .problem(&truncated)
                .unwrap()
                .contains("not valid JSON")
        );

        let garbage = dir.path().join("garbage.json");
        fs::write(&garbage, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(read_value(&garbage), StateRead::Invalid(_)));

        let a_dir = dir.path().join("a-dir");
        fs::create_dir(&a_dir).unwrap();
        assert!(matches!(read_value(&a_dir), StateRead::Unreadable(_)));
    }

    #[test]
    fn typed_read_of_the_wrong_shape_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &json!(["not", "a", "map"])).unwrap();
        let outcome: StateRead<std::collections::BTreeMap<String, u32>> = read(&path);
        assert!(matches!(outcome, StateRead::Invalid(_)));
    }

    /// A pid no process can have (above any `pid_max`), so `kill` says ESRCH.
    const DEAD_PID: u32 = i32::MAX as u32;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn stray_temps_of_dead_writers_and_of_this_process_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let own = std::process::id();
        let removable = [
            format!("state.json.{DEAD_PID}.0123456789ab.tmp"),
            format!("state.json.{own}.abcdefabcdef.tmp"),
            format!(".hidden.{DEAD_PID}.000000000000.tmp"),
            format!("generation.{DEAD_PID}.ffffffffffff.tmp"),
        ];
        for name in &removable {
            fs::write(dir.path().join(name), b"{\"half\": ").unwrap();
        }
        assert_eq!(remove_stray_temps(dir.path()), removable.len());
        assert!(names_in(dir.path()).is_empty());
        assert_eq!(remove_stray_temps(dir.path()), 0);
    }

    #[test]
    fn everything_but_a_dead_writers_temp_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        // PID 1 is alive (and not ours to signal: EPERM still means alive).
        let kept = [
            "state.json".to_string(),
            "notes.tmp".to_string(),
            "state.json.1.0123456789ab.tmp".to_string(),
            format!("state.json.{DEAD_PID}.0123456789AB.tmp"),
            format!("state.json.{DEAD_PID}.0123456789a.tmp"),
            format!("state.json.{DEAD_PID}.0123456789abc.tmp"),
            format!("state.json.{DEAD_PID}.0123456789ag.tmp"),
            format!("state.json.0{DEAD_PID}.0123456789ab.tmp"),
            format!("state.json.+{DEAD_PID}.0123456789ab.tmp"),
            "state.json.0.0123456789ab.tmp".to_string(),
            "state.json.4294967295.0123456789ab.tmp".to_string(),
            format!(".{DEAD_PID}.0123456789ab.tmp"),
            format!("{DEAD_PID}.0123456789ab.tmp"),
            format!("state.json.{DEAD_PID}.0123456789ab.tmp.bak"),
            format!("state.json.{DEAD_PID}.0123456789ab.temp"),
        ];
        for name in &kept {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        // A directory and a symlink with a dead writer's name are not the
        // writer's files either.
        fs::create_dir(dir.path().join(format!("a.{DEAD_PID}.0123456789ab.tmp"))).unwrap();
        std::os::unix::fs::symlink(
            "state.json",
            dir.path().join(format!("b.{DEAD_PID}.0123456789ab.tmp")),
        )
        .unwrap();
        let before = names_in(dir.path());
        assert_eq!(remove_stray_temps(dir.path()), 0);
        assert_eq!(names_in(dir.path()), before);
        assert_eq!(remove_stray_temps(&dir.path().join("missing")), 0);
    }

    #[test]
    fn the_writers_own_temp_name_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let (temp_path, _file) = create_temp(&dir.path().join("state.json")).unwrap();
        let name = temp_path.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_writer_pid(name), Some(std::process::id()));
        assert_eq!(remove_stray_temps(dir.path()), 1);
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file_and_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target");
        // A directory in the way makes the rename fail.
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        assert!(write(&path, &json!({})).is_err());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        assert!(path.join("keep").exists());
    }
}
