//! Signals as messages. The forwarded signals are blocked in every thread
//! (the main thread blocks them before it spawns anything, and threads
//! inherit the mask), and one thread takes them with `sigwait` and turns
//! them into `DaemonSignal`s on a channel the main thread selects on. No
//! handler runs anywhere, so nothing is consumed behind our back.
//!
//! A staged restart first stops that thread ([`quiesce`]); from then on a
//! signal stays pending in the kernel, survives `execve` (the mask does too),
//! and is taken by the new image's thread. So a SIGTERM sent during a
//! restart is never lost and never takes its default action.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonSignal {
    /// SIGTERM: orderly shutdown (a second one during shutdown: exit now).
    Terminate,
    /// SIGINT: as SIGTERM.
    Interrupt,
    /// SIGHUP: re-merge config and reach the threads.
    Reload,
    /// SIGUSR1: a staged restart (drain, then exec of itself, same pid), the
    /// same path a config apply takes; used by tests and by operators who
    /// replaced the binary.
    Restart,
}

impl DaemonSignal {
    pub fn name(self) -> &'static str {
        match self {
            DaemonSignal::Terminate => "SIGTERM",
            DaemonSignal::Interrupt => "SIGINT",
            DaemonSignal::Reload => "SIGHUP",
            DaemonSignal::Restart => "SIGUSR1",
        }
    }

    pub fn stops(self) -> bool {
        matches!(self, DaemonSignal::Terminate | DaemonSignal::Interrupt)
    }
}

const FORWARDED: [i32; 4] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1];
/// Sent by this process to the forwarding thread alone to stop it.
const QUIT: i32 = libc::SIGUSR2;

/// Set by [`quiesce`] just before it sends [`QUIT`]: a SIGUSR2 from outside
/// finds it false and is ignored.
static QUIESCING: AtomicBool = AtomicBool::new(false);

/// The forwarding thread, kept so [`quiesce`] can stop and join it.
static FORWARDER: Mutex<Option<(libc::pthread_t, JoinHandle<()>)>> = Mutex::new(None);

/// Block the signals in this thread (and so in every thread it spawns later),
/// then start the forwarding thread. Call before spawning anything else.
pub fn forward() -> io::Result<Receiver<DaemonSignal>> {
    let set = signal_set()?;
    // SAFETY: `set` is a valid, initialised signal set.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => {}
        code => return Err(io::Error::from_raw_os_error(code)),
    }
    let (sender, receiver) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || forward_loop(set, sender))?;
    let pthread = std::os::unix::thread::JoinHandleExt::as_pthread_t(&thread);
    let mut forwarder = FORWARDER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *forwarder = Some((pthread, thread));
    Ok(receiver)
}

/// Stop the forwarding thread and wait for it: every signal it took is on
/// the channel; every later one stays pending for the next image.
pub fn quiesce() {
    let taken = FORWARDER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some((pthread, thread)) = taken {
        QUIESCING.store(true, Ordering::SeqCst);
        // SAFETY: the thread has not been joined, so its id is still valid.
        unsafe { libc::pthread_kill(pthread, QUIT) };
        let _ = thread.join();
    }
}

fn forward_loop(set: libc::sigset_t, sender: Sender<DaemonSignal>) {
    loop {
        let mut number: libc::c_int = 0;
        // SAFETY: `set` is initialised; `number` is written by the call.
        let code = unsafe { libc::sigwait(&set, &mut number) };
        if code != 0 {
            match code {
                libc::EINTR => continue,
                _ => return,
            }
        }
        if number == QUIT {
            if QUIESCING.load(Ordering::SeqCst) {
                return;
            }
            continue;
        }
        let signal = match number {
            SIGTERM => DaemonSignal::Terminate,
            SIGINT => DaemonSignal::Interrupt,
            SIGHUP => DaemonSignal::Reload,
            SIGUSR1 => DaemonSignal::Restart,
            _ => continue,
        };
        if sender.send(signal).is_err() {
            return;
        }
    }
}

fn signal_set() -> io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset initialises `set` before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        for signal in FORWARDED.into_iter().chain([QUIT]) {
            if libc::sigaddset(&mut set, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(set)
    }
}
