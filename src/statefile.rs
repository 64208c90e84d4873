//! The only code that writes a JSON state file, and the tolerant reader for them.
//!
//! A write goes through `atomicwrites`: the bytes go to a temp file below the
//! target's directory, which is fsynced, renamed over the target, and the
//! directory is fsynced (atomicwrites does both fsyncs on unix): a crash
//! leaves the old file or the new one, never a torn one. The temp file is
//! made 0600 before the rename. atomicwrites puts it in a random
//! `.atomicwrite*` directory that names no writer, so that directory is made
//! inside a staging directory of ours, `<file>.<pid>.<12 random>.tmp`, which
//! says whose it is. A stray temp from a crash is never read, because readers
//! open only the target name, and the daemon removes the staging directories
//! of dead writers at boot ([`remove_stray_temps`]).
//!
//! A read never trusts a file: missing, empty, unreadable and not-JSON are
//! distinct outcomes so status can explain each one and the daemon can carry on.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use atomicwrites::{AtomicFile, OverwriteBehavior};
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
    write_atomic(path, bytes, FILE_MODE).map_err(wrap)
}

/// Replace `path` (in an existing directory) by `bytes` with `mode`,
/// atomically and durably; also for files that are not state (the systemd
/// unit, 0644). On error the temp file is gone and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let staging = staging_dir(path, dir)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(mode);
    AtomicFile::new_with_tmpdir(path, OverwriteBehavior::AllowOverwrite, staging.path())
        .write_with_options(
            |file| {
                // The mode above is masked by the umask; this is not.
                file.set_permissions(fs::Permissions::from_mode(mode))?;
                file.write_all(bytes)
            },
            options,
        )
        .map_err(io::Error::from)?;
    staging.close()
}

/// `<file>.<pid>.<12 random>.tmp` beside `path`, 0700, removed on drop: where
/// atomicwrites makes its temp directory, named so that
/// [`remove_stray_temps`] can tell whose it is.
fn staging_dir(path: &Path, dir: &Path) -> io::Result<tempfile::TempDir> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!("{name}.{}.", std::process::id()))
        .suffix(".tmp")
        .rand_bytes(SALT_LEN)
        .permissions(fs::Permissions::from_mode(DIR_MODE))
        .tempdir_in(dir)
}

/// Random characters in a staging directory's name.
const SALT_LEN: usize = 12;

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

/// fsync a directory so an unlink or a new file inside it is durable (an
/// atomic write gets its own from atomicwrites).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Remove the stray temps of [`write_atomic`] in `dir` (not below it): staging
/// directories named exactly `<file>.<pid>.<12 letters or digits>.tmp`
/// (with whatever atomicwrites left inside), and regular files of that name
/// (older hyp wrote its temp file there directly), whose writer is gone
/// (`kill(pid, 0)` fails with `ESRCH`) or is this process (a staged restart
/// execs with the same pid, and at boot nothing of this image writes yet).
/// The temp of another live process is kept, since it may be mid-write; so
/// is every other name, and a symlink. Returns how many were removed; a
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
        if pid != own_pid && process_exists(pid) {
            continue;
        }
        let gone = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::remove_dir_all(entry.path()),
            Ok(kind) if kind.is_file() => fs::remove_file(entry.path()),
            _ => continue,
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        let _ = sync_dir(dir);
    }
    removed
}

/// The writer's pid when `name` is a staging name [`staging_dir`] makes:
/// a non-empty target name, a pid (decimal, no leading zero, a valid
/// `pid_t`), 12 ASCII letters or digits, `.tmp`.
fn temp_writer_pid(name: &str) -> Option<u32> {
    let (rest, salt) = name.strip_suffix(".tmp")?.rsplit_once('.')?;
    let (target, pid) = rest.rsplit_once('.')?;
    let salt_ok = salt.len() == SALT_LEN && salt.bytes().all(|byte| byte.is_ascii_alphanumeric());
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
        let stray = plant_leftover(
            dir.path(),
            &format!("state.json.{}.00000000abcd.tmp", std::process::id()),
        );
        assert!(stray.exists());
        assert_eq!(read_value(&path).ok(), Some(json!({"generation": 1})));
        // The next write still succeeds and wins.
        write(&path, &json!({"generation": 3})).unwrap();
        assert_eq!(read_value(&path).ok(), Some(json!({"generation": 3})));
    }

    #[test]
    fn a_write_leaves_only_the_file_0600_even_under_umask_022() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only swaps the process's creation mask.
        let previous = unsafe { libc::umask(0o022) };
        let path = dir.path().join("state.json");
        let written = write(&path, &json!({"a": 1}));
        let unit = dir.path().join("unit.service");
        let unit_written = write_atomic(&unit, b"[Unit]\n", 0o644);
        // SAFETY: as above, restoring the mask found.
        unsafe { libc::umask(previous) };
        written.unwrap();
        unit_written.unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&unit), 0o644);
        assert_eq!(names_in(dir.path()), ["state.json", "unit.service"]);
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

    /// What a writer killed mid-write leaves: its staging directory with
    /// atomicwrites' temp directory and file inside.
    fn plant_leftover(dir: &Path, name: &str) -> PathBuf {
        let inner = dir.join(name).join(".atomicwriteAb12Cd");
        fs::create_dir_all(&inner).unwrap();
        fs::write(inner.join("tmpfile.tmp"), b"{\"half\": ").unwrap();
        dir.join(name)
    }

    #[test]
    fn stray_temps_of_dead_writers_and_of_this_process_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let own = std::process::id();
        let leftovers = [
            format!("state.json.{DEAD_PID}.0123456789ab.tmp"),
            format!("state.json.{own}.abcdefABCDEF.tmp"),
            format!(".hidden.{DEAD_PID}.000000000000.tmp"),
            format!("generation.{DEAD_PID}.ZZZZZZZZZZZZ.tmp"),
        ];
        for name in &leftovers {
            plant_leftover(dir.path(), name);
        }
        // An empty staging directory (killed before atomicwrites made its
        // own) and a temp file of an older hyp go too.
        fs::create_dir(
            dir.path()
                .join(format!("state.json.{DEAD_PID}.q1w2e3r4t5y6.tmp")),
        )
        .unwrap();
        fs::write(
            dir.path()
                .join(format!("state.json.{DEAD_PID}.0123456789ff.tmp")),
            b"{",
        )
        .unwrap();
        assert_eq!(remove_stray_temps(dir.path()), leftovers.len() + 2);
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
            ".atomicwriteAb12Cd".to_string(),
            format!("state.json.{DEAD_PID}.0123456789a.tmp"),
            format!("state.json.{DEAD_PID}.0123456789abc.tmp"),
            format!("state.json.{DEAD_PID}.0123456789a-.tmp"),
            format!("state.json.{DEAD_PID}.0123456789a_.tmp"),
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
            plant_leftover(dir.path(), name);
        }
        // A symlink with a dead writer's name is not the writer's.
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
    fn the_writers_own_staging_name_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        let staging = staging_dir(&target, dir.path()).unwrap();
        let name = staging.path().file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_writer_pid(name), Some(std::process::id()));
        let mode = fs::metadata(staging.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
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
        assert_eq!(names_in(dir.path()), ["target"], "no temp is left");
        assert!(path.join("keep").exists());
    }
}
