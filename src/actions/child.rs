//! The only code that spawns daemon children, so every child gets the same
//! isolation: its own process group (signals reach it and its descendants
//! together, a terminal's ^C does not), nice +10, `PR_SET_PDEATHSIG` =
//! SIGKILL (it cannot outlive the daemon; the signal fires when the spawning
//! *thread* exits, so spawn from the long-lived worker thread), stdin null,
//! stdout captured up to 1 MiB, stderr appended to its action log.
//!
//! A run ends in a typed [`ChildOutcome`]. Cancelling (daemon shutdown)
//! sends SIGTERM to the group, waits the grace, then SIGKILLs it; nothing
//! here polls: the wait runs on a helper thread and the caller blocks on a
//! `select` of "exited" and "cancelled".

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, never, select};

use crate::statefile;

/// Stdout kept from a child; the rest is read and discarded.
pub const STDOUT_CAP: usize = 1024 * 1024;
/// The longest stderr line kept for a reason.
pub const STDERR_TAIL_CHARS: usize = 200;
/// How much of the end of the log is read to find the last line.
const STDERR_TAIL_BYTES: u64 = 64 * 1024;
/// After the child exits, how long to wait for its stdout to close (a
/// grandchild could hold it open).
const STDOUT_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a child ended.
#[derive(Debug)]
pub enum ChildOutcome {
    Exited(i32),
    /// Killed by this signal without being asked to stop.
    Signalled(i32),
    SpawnFailed(io::Error),
    /// Interrupted because the daemon is shutting down.
    Cancelled,
}

impl fmt::Display for ChildOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildOutcome::Exited(code) => write!(f, "exited with code {code}"),
            ChildOutcome::Signalled(signal) => match signal_name(*signal) {
                Some(name) => write!(f, "killed by signal {signal} ({name})"),
                None => write!(f, "killed by signal {signal}"),
            },
            ChildOutcome::SpawnFailed(err) => write!(f, "spawn failed: {err}"),
            ChildOutcome::Cancelled => write!(f, "interrupted by daemon shutdown"),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGBUS => "SIGBUS",
        libc::SIGQUIT => "SIGQUIT",
        _ => return None,
    })
}

/// The receiving side of shutdown: it fires (disconnects) once, for every
/// clone, when the [`CancelSource`] is cancelled or dropped.
#[derive(Debug, Clone)]
pub struct Cancel {
    fired: Receiver<()>,
    deadline: Arc<OnceLock<Instant>>,
}

impl Cancel {
    /// A cancel that never fires (CLI use, tests).
    pub fn never() -> Cancel {
        Cancel {
            fired: never(),
            deadline: Arc::new(OnceLock::new()),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(
            self.fired.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    /// The channel to `select` on; it becomes ready when cancelled.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.fired
    }

    /// The time by which the shutdown must be over, once cancelled.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }
}

/// The sending side of shutdown, owned by whoever decides to stop.
#[derive(Debug)]
pub struct CancelSource {
    keep_open: Sender<()>,
    deadline: Arc<OnceLock<Instant>>,
}

impl CancelSource {
    pub fn new() -> (CancelSource, Cancel) {
        let (keep_open, fired) = bounded(0);
        let deadline = Arc::new(OnceLock::new());
        let source = CancelSource {
            keep_open,
            deadline: Arc::clone(&deadline),
        };
        (source, Cancel { fired, deadline })
    }

    /// Fire: every [`Cancel`] clone sees it; `deadline` bounds the clean-up.
    pub fn cancel(self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        drop(self.keep_open);
    }
}

/// A child's whole environment: the daemon's, with `HYP_HOME` forced to
/// the daemon's home so the child works on the daemon's state and cache.
pub fn environment(
    paths: &crate::paths::Paths,
    base: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .into_iter()
        .filter(|(name, _)| name != "HYP_HOME")
        .collect();
    env.push(("HYP_HOME".into(), paths.home().as_os_str().to_owned()));
    env
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The child's whole environment (nothing is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Where stderr is appended.
    pub stderr_log: PathBuf,
    /// How long a cancelled child gets between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// What a run produced.
#[derive(Debug)]
pub struct ChildRun {
    pub outcome: ChildOutcome,
    /// The first [`STDOUT_CAP`] bytes of stdout.
    pub stdout: Vec<u8>,
    pub stdout_truncated: bool,
    /// The last non-blank stderr line this run wrote, sanitised and clamped.
    pub stderr_tail: Option<String>,
}

/// Spawn `spec`, call `started(pid)` right after the spawn, and wait for the
/// child or for `cancel`. Never blocks past the cancel's deadline by more
/// than the time the kernel needs to deliver SIGKILL.
pub fn run(spec: &ChildSpec, cancel: &Cancel, started: &dyn Fn(u32)) -> ChildRun {
    let not_run = |outcome| ChildRun {
        outcome,
        stdout: Vec::new(),
        stdout_truncated: false,
        stderr_tail: None,
    };
    if cancel.is_cancelled() {
        return not_run(ChildOutcome::Cancelled);
    }
    let (stderr_file, log_offset) = match open_stderr_log(&spec.stderr_log) {
        Ok(opened) => opened,
        Err(err) => return not_run(ChildOutcome::SpawnFailed(err)),
    };
    let mut command = isolated_command(spec, stderr_file);
    #[allow(clippy::disallowed_methods)]
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return not_run(ChildOutcome::SpawnFailed(err)),
    };
    let pid = child.id();
    started(pid);

    let stdout_done = match child.stdout.take() {
        Some(stdout) => drain_stdout(stdout),
        None => {
            let (sender, receiver) = bounded(1);
            let _ = sender.send((Vec::new(), false));
            receiver
        }
    };
    let (exit_sender, exited) = bounded::<io::Result<ExitStatus>>(1);
    let waiter = std::thread::Builder::new()
        .name("child-wait".into())
        .spawn(move || {
            let _ = exit_sender.send(child.wait());
        });
    if let Err(err) = waiter {
        // Without a waiter nothing can reap the child: kill it rather than
        // leave it unsupervised.
        signal_group(pid, libc::SIGKILL);
        return not_run(ChildOutcome::SpawnFailed(err));
    }

    let outcome = wait_or_cancel(pid, &exited, cancel, spec.grace);
    let (stdout, stdout_truncated) = stdout_done
        .recv_timeout(STDOUT_CLOSE_WAIT)
        .unwrap_or_default();
    ChildRun {
        outcome,
        stdout,
        stdout_truncated,
        stderr_tail: read_stderr_tail(&spec.stderr_log, log_offset),
    }
}

fn isolated_command(spec: &ChildSpec, stderr_file: File) -> Command {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr_file))
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Raising niceness cannot fail for lack of privilege; if it
            // fails anyway the child simply runs at normal priority.
            let _ = libc::nice(10);
            Ok(())
        });
    }
    command
}

fn open_stderr_log(path: &Path) -> io::Result<(File, u64)> {
    if let Some(dir) = path.parent() {
        statefile::create_private_dir(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(statefile::FILE_MODE)
        .open(path)?;
    let offset = file.metadata()?.len();
    Ok((file, offset))
}

/// Read stdout to its end on a thread, keeping the first [`STDOUT_CAP`]
/// bytes; the child never blocks on a full pipe.
fn drain_stdout(mut stdout: impl Read + Send + 'static) -> Receiver<(Vec<u8>, bool)> {
    let (sender, receiver) = bounded(1);
    let spawned = std::thread::Builder::new()
        .name("child-stdout".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let mut truncated = false;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stdout.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = STDOUT_CAP.saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..n.min(room)]);
                        truncated |= n > room;
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = sender.send((kept, truncated));
        });
    if spawned.is_err() {
        crate::event!(
            Error,
            "client_action.stdout_unread",
            serde_json::json!({"detail": "cannot start the stdout reader"}),
        );
    }
    receiver
}

fn wait_or_cancel(
    pid: u32,
    exited: &Receiver<io::Result<ExitStatus>>,
    cancel: &Cancel,
    grace: Duration,
) -> ChildOutcome {
    select! {
        recv(exited) -> status => return outcome_of(status.ok()),
        recv(cancel.receiver()) -> _ => {}
    }
    signal_group(pid, libc::SIGTERM);
    let now = Instant::now();
    let mut kill_at = now + grace;
    if let Some(deadline) = cancel.deadline() {
        // Leave a moment after the kill to reap and record the marker.
        let margin = Duration::from_millis(500);
        kill_at = kill_at.min(deadline.checked_sub(margin).unwrap_or(now).max(now));
    }
    select! {
        recv(exited) -> status => {
            // Sweep stragglers of the group (grandchildren) too.
            signal_group(pid, libc::SIGKILL);
            // A child that finished its work as the signal arrived keeps
            // its success: exit 0 is authoritative.
            return match outcome_of(status.ok()) {
                ChildOutcome::Exited(0) => ChildOutcome::Exited(0),
                _ => ChildOutcome::Cancelled,
            };
        }
        recv(crossbeam_channel::at(kill_at)) -> _ => {}
    }
    signal_group(pid, libc::SIGKILL);
    let _ = exited.recv_timeout(Duration::from_secs(5));
    ChildOutcome::Cancelled
}

fn outcome_of(status: Option<io::Result<ExitStatus>>) -> ChildOutcome {
    match status {
        Some(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => ChildOutcome::Exited(code),
            (None, Some(signal)) => ChildOutcome::Signalled(signal),
            (None, None) => ChildOutcome::Signalled(0),
        },
        Some(Err(err)) => ChildOutcome::SpawnFailed(err),
        None => ChildOutcome::SpawnFailed(io::Error::other("lost track of the child")),
    }
}

/// Send `signal` to the process group led by `pid` (best effort).
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

fn read_stderr_tail(path: &Path, offset: u64) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    let start = offset.max(length.saturating_sub(STDERR_TAIL_BYTES));
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.take(STDERR_TAIL_BYTES).read_to_end(&mut bytes).ok()?;
    crate::sanitize::last_meaningful_line(&String::from_utf8_lossy(&bytes), STDERR_TAIL_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn spec(dir: &Path, program: PathBuf) -> ChildSpec {
        ChildSpec {
            program,
            args: vec!["backfill".into(), "claude".into()],
            env: vec![("PATH".into(), std::env::var_os("PATH").unwrap_or_default())],
            stderr_log: dir.join("logs/actions/backfill-claude.log"),
            grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn exit_code_stdout_and_the_pid_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "child", "echo \"args:$*\"; exit 3");
        let seen = Cell::new(0);
        let run = run(&spec(dir.path(), program), &Cancel::never(), &|pid| {
            seen.set(pid)
        });
        assert!(
            matches!(run.outcome, ChildOutcome::Exited(3)),
            "{:?}",
            run.outcome
        );
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "args:backfill claude\n"
        );
        assert!(seen.get() > 0);
    }

    #[test]
    fn the_child_gets_exactly_the_given_environment_a_group_and_niceness() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(
            dir.path(),
            "child",
            "echo \"home=${HYP_HOME:-unset} user=${USER:-unset}\"; cat /proc/$$/stat",
        );
        let mut spec = spec(dir.path(), program);
        spec.env.push(("HYP_HOME".into(), "/resolved/home".into()));
        let pid = Cell::new(0);
        let run = run(&spec, &Cancel::never(), &|child| pid.set(child));
        let text = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            text.starts_with("home=/resolved/home user=unset\n"),
            "{text}"
        );
        let stat = text.lines().nth(1).unwrap_or_default();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        assert_eq!(fields[2], pid.get().to_string(), "own process group");
        let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(fields[16], (own_nice + 10).min(19).to_string(), "nice +10");
    }

    #[test]
    fn stdout_is_capped_without_blocking_the_child() {
        let dir = tempfile::tempdir().unwrap();
        // 3 MiB of output, then a clean exit: the child must not stall.
        let program = script(dir.path(), "child", "head -c 3145728 /dev/zero; exit 0");
        let run = run(&spec(dir.path(), program), &Cancel::never(), &|_| {});
        assert!(
            matches!(run.outcome, ChildOutcome::Exited(0)),
            "{:?}",
            run.outcome
        );
        assert_eq!(run.stdout.len(), STDOUT_CAP);
        assert!(run.stdout_truncated);
    }

    #[test]
    fn the_stderr_tail_is_the_last_line_of_this_run_only() {
        let dir = tempfile::tempdir().unwrap();
        let spec_first = spec(
            dir.path(),
            script(dir.path(), "first", "echo 'old failure' >&2; exit 1"),
        );
        let first = run(&spec_first, &Cancel::never(), &|_| {});
        assert_eq!(first.stderr_tail.as_deref(), Some("old failure"));
        let spec_second = spec(
            dir.path(),
            script(
                dir.path(),
                "second",
                "printf 'progress\\n\\033[31mno such dir\\033[0m \\342\\200\\256x\\n\\n' >&2; exit 1",
            ),
        );
        let second = run(&spec_second, &Cancel::never(), &|_| {});
        assert_eq!(second.stderr_tail.as_deref(), Some("[31mno such dir[0m x"));
        let log = std::fs::read_to_string(&spec_second.stderr_log).unwrap();
        assert!(
            log.contains("old failure") && log.contains("progress"),
            "appended"
        );
        let silent = run(
            &spec(dir.path(), script(dir.path(), "silent", "exit 1")),
            &Cancel::never(),
            &|_| {},
        );
        assert_eq!(silent.stderr_tail, None);
    }

    #[test]
    fn a_missing_program_is_a_spawn_failure() {
        let dir = tempfile::tempdir().unwrap();
        let run = run(
            &spec(dir.path(), dir.path().join("no-such-program")),
            &Cancel::never(),
            &|_| panic!("nothing was spawned"),
        );
        assert!(matches!(run.outcome, ChildOutcome::SpawnFailed(_)));
        assert!(run.outcome.to_string().contains("No such file"));
    }

    #[test]
    fn a_signal_killed_child_names_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        let run = run(
            &spec(dir.path(), script(dir.path(), "child", "kill -9 $$")),
            &Cancel::never(),
            &|_| {},
        );
        assert!(matches!(run.outcome, ChildOutcome::Signalled(9)));
        assert_eq!(run.outcome.to_string(), "killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn a_child_that_succeeds_on_sigterm_keeps_its_success() {
        let dir = tempfile::tempdir().unwrap();
        let ready = dir.path().join("ready");
        let program = script(
            dir.path(),
            "child",
            &format!(
                "trap 'exit 0' TERM\ntouch '{}'\nwhile :; do sleep 0.05; done",
                ready.display()
            ),
        );
        let (source, cancel) = CancelSource::new();
        let canceller = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !ready.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            source.cancel(Instant::now() + Duration::from_secs(30));
        });
        let run = run(&spec(dir.path(), program), &cancel, &|_| {});
        canceller.join().unwrap();
        assert!(
            matches!(run.outcome, ChildOutcome::Exited(0)),
            "{:?}",
            run.outcome
        );
    }

    #[test]
    fn cancel_terminates_the_group_and_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        // Ignores SIGTERM and has a grandchild in its group.
        let program = script(
            dir.path(),
            "child",
            "trap '' TERM; sleep 600 & echo $!; wait",
        );
        let mut spec = spec(dir.path(), program);
        spec.grace = Duration::from_millis(200);
        let (source, cancel) = CancelSource::new();
        let pid = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let recorded = Arc::clone(&pid);
        let canceller = std::thread::spawn(move || {
            while recorded.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            source.cancel(Instant::now() + Duration::from_secs(30));
        });
        let run = run(&spec, &cancel, &|child| {
            pid.store(child, std::sync::atomic::Ordering::SeqCst)
        });
        canceller.join().unwrap();
        assert!(matches!(run.outcome, ChildOutcome::Cancelled));
        let leader = pid.load(std::sync::atomic::Ordering::SeqCst);
        // Nothing of the group survives (zombies awaiting their reaper count
        // as gone).
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_has_live_members(leader) {
            assert!(Instant::now() < deadline, "group {leader} still alive");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether any non-zombie process is in process group `pgid`.
    pub(crate) fn group_has_live_members(pgid: u32) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return false;
        };
        entries.filter_map(Result::ok).any(|entry| {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            let Some(close) = stat.rfind(')') else {
                return false;
            };
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            fields.len() > 2
                && fields[2] == pgid.to_string()
                && fields[0] != "Z"
                && fields[0] != "X"
        })
    }
}
