//! The worker thread: single-flight reconcile passes and their children.

use std::io;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::daemon::messages::PassRequest;
use crate::paths::{Paths, TimeScale};

/// What the worker needs from the daemon.
pub struct WorkerContext {
    pub paths: Paths,
    pub time_scale: TimeScale,
}

/// The running worker; `shutdown` interrupts a running child and joins.
pub struct WorkerHandle {
    thread: JoinHandle<()>,
}

impl WorkerHandle {
    // FIXME(actions owner): interim body that logs each request.
    pub fn spawn(context: WorkerContext, inbox: Receiver<PassRequest>) -> io::Result<WorkerHandle> {
        let thread = std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || {
                let _ = context;
                while let Ok(request) = inbox.recv() {
                    crate::event_log::info(
                        "client_action.pass_requested",
                        serde_json::json!({"reason": format!("{:?}", request.reason)}),
                    );
                }
            })?;
        Ok(WorkerHandle { thread })
    }

    /// Stop taking passes, interrupt a running child (SIGTERM to its group,
    /// SIGKILL after the grace), record its marker, and join by `deadline`.
    /// The daemon drops every `Sender<PassRequest>` before calling this.
    pub fn shutdown(self, deadline: Instant) {
        let _ = deadline;
        let _ = self.thread.join();
    }
}

/// At daemon boot: turn `running` markers left by a dead process into
/// `failed` (`interrupted`), killing any child group that is still alive.
// FIXME(actions owner): interim body.
pub fn recover_at_boot(paths: &Paths) {
    let _ = paths;
}
