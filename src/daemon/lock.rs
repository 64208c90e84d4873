//! The single-instance lock: an exclusive `flock` on `S/run/hypaware.lock`,
//! taken before anything else and held for the daemon's whole life.
//!
//! Liveness is "does someone hold the lock", never "is the pid in the pid file
//! alive": a pid file outlives a crash, a lock does not. The lock file is
//! opened with `O_CLOEXEC` (std's default), so a staged restart's `exec`
//! releases it and the new image takes it again; no child inherits it.
//!
//! Other processes probe with a *shared* non-blocking lock on a separate,
//! read-only open: probes never conflict with each other, and a probe never
//! creates the file. A probe holds its shared lock for microseconds; the
//! daemon retries its exclusive lock briefly so a probe racing its boot does
//! not read as "already running".

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::paths::Paths;
use crate::statefile;

/// How often the daemon tries its exclusive lock before concluding another
/// daemon holds it, and the pause between tries (to outlast a probe).
const ACQUIRE_ATTEMPTS: u32 = 10;
const ACQUIRE_PAUSE: Duration = Duration::from_millis(10);

/// The held lock; dropping it (or `exec`) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    file: File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: a daemon runs for this `HYP_HOME`.
    Held,
    Io {
        path: PathBuf,
        source: io::Error,
    },
}

impl DaemonLock {
    /// Take the exclusive lock, creating `S/run/` and the lock file.
    pub fn acquire(paths: &Paths) -> Result<DaemonLock, LockError> {
        let path = paths.daemon_lock();
        let io_error = |source: io::Error| LockError::Io {
            path: path.clone(),
            source,
        };
        statefile::create_private_dir(&paths.run_dir()).map_err(io_error)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(statefile::FILE_MODE)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_error)?;
        for attempt in 0..ACQUIRE_ATTEMPTS {
            match try_flock(&file, libc::LOCK_EX) {
                Ok(true) => return Ok(DaemonLock { file }),
                Ok(false) if attempt + 1 < ACQUIRE_ATTEMPTS => std::thread::sleep(ACQUIRE_PAUSE),
                Ok(false) => {}
                Err(source) => return Err(io_error(source)),
            }
        }
        Err(LockError::Held)
    }

    /// Whether the descriptor closes on `exec` (it must, see the module doc).
    pub fn closes_on_exec(&self) -> bool {
        // SAFETY: F_GETFD on a descriptor this struct owns has no side effects.
        let flags = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETFD) };
        flags >= 0 && flags & libc::FD_CLOEXEC != 0
    }
}

/// Whether some process holds the daemon lock. Creates nothing; a missing or
/// unopenable lock file means nobody holds it.
pub fn is_held(paths: &Paths) -> bool {
    is_held_at(&paths.daemon_lock())
}

fn is_held_at(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    else {
        return false;
    };
    // Dropping `file` releases the shared lock if the probe took it.
    matches!(try_flock(&file, libc::LOCK_SH), Ok(false))
}

/// The pid of the process holding the daemon lock exclusively, from the
/// kernel's table of locks (`/proc/locks`): who really holds it, whatever a
/// (possibly stale) pid file says. `None` when nobody does or the table
/// cannot be read.
pub fn holder_pid(paths: &Paths) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(paths.daemon_lock()).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let device = format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    locks
        .lines()
        .find_map(|line| exclusive_flock_holder(line, &device))
}

/// The pid of one `/proc/locks` line when it is a granted exclusive flock
/// on `device` (`maj:min:inode`): `1: FLOCK  ADVISORY  WRITE 4242 08:02:1311 0 EOF`.
fn exclusive_flock_holder(line: &str, device: &str) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [_, "FLOCK", _, "WRITE", pid, inode, ..] if *inode == device => pid.parse().ok(),
        _ => None,
    }
}

/// `flock(operation | LOCK_NB)`: `Ok(true)` taken, `Ok(false)` held elsewhere.
fn try_flock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: flock on a descriptor owned by `file`, which outlives the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_probes_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::with_home(dir.path());
        assert!(!is_held(&paths), "no lock file: nobody holds it");
        assert!(
            !paths.daemon_lock().exists(),
            "a probe must not create the lock file"
        );
        let lock = DaemonLock::acquire(&paths).unwrap();
        assert!(is_held(&paths));
        assert!(matches!(DaemonLock::acquire(&paths), Err(LockError::Held)));
        assert!(
            lock.closes_on_exec(),
            "the lock must not leak into an exec'd image"
        );
        assert_eq!(holder_pid(&paths), Some(std::process::id()));
        drop(lock);
        assert!(!is_held(&paths));
        assert_eq!(holder_pid(&paths), None);
        let again = DaemonLock::acquire(&paths).unwrap();
        drop(again);
    }

    #[test]
    fn proc_locks_lines_are_read_for_exclusive_flocks_only() {
        let device = "08:02:1311";
        assert_eq!(
            exclusive_flock_holder("1: FLOCK  ADVISORY  WRITE 4242 08:02:1311 0 EOF", device),
            Some(4242)
        );
        assert_eq!(
            exclusive_flock_holder("2: FLOCK  ADVISORY  READ 4243 08:02:1311 0 EOF", device),
            None
        );
        assert_eq!(
            exclusive_flock_holder("3: POSIX  ADVISORY  WRITE 4244 08:02:1311 0 EOF", device),
            None
        );
        assert_eq!(
            exclusive_flock_holder("1: -> FLOCK  ADVISORY  WRITE 4245 08:02:1311 0 EOF", device),
            None
        );
        assert_eq!(
            exclusive_flock_holder("4: FLOCK  ADVISORY  WRITE 4246 08:02:9999 0 EOF", device),
            None
        );
    }
}
