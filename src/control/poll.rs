//! The poll thread: owns the central client and the apply engine.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::daemon::messages::{PassRequest, PollCommand, PollEvent};
use crate::paths::{Paths, TimeScale};

/// What the poll thread needs from the daemon.
pub struct PollContext {
    pub paths: Paths,
    pub time_scale: TimeScale,
    /// Where the confirm edge goes (the worker's inbox).
    pub passes: Sender<PassRequest>,
    /// Where everything else for the main thread goes.
    pub events: Sender<PollEvent>,
}

/// The running poll thread; `stop` ends it.
pub struct PollHandle {
    commands: Sender<PollCommand>,
    thread: JoinHandle<()>,
}

impl PollHandle {
    // FIXME(control owner): interim body that waits for Stop and nothing else.
    pub fn spawn(context: PollContext) -> io::Result<PollHandle> {
        let (commands, inbox) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("poll".into())
            .spawn(move || poll_loop(context, inbox))?;
        Ok(PollHandle { commands, thread })
    }

    /// Ask the thread to roll back now (the watchdog fired).
    pub fn watchdog_expired(&self) {
        let _ = self.commands.send(PollCommand::WatchdogExpired);
    }

    /// Stop and join, allowing `grace` for an in-flight poll.
    pub fn stop(self, grace: Duration) {
        let _ = self.commands.send(PollCommand::Stop);
        let _ = grace;
        let _ = self.thread.join();
    }
}

fn poll_loop(_context: PollContext, inbox: Receiver<PollCommand>) {
    while let Ok(command) = inbox.recv() {
        if command == PollCommand::Stop {
            break;
        }
    }
}
