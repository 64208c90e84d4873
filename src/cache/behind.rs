//! A thread that works behind the cache writer: woken after each commit to
//! copy or flush what was committed, so the end of an import finds little
//! left to do. The checkpointer of the WAL path and the flusher of a first
//! import are both one of these.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

/// The thread and the channel that wakes it. Dropped, it stops the thread
/// (letting a pending wake run first) and waits for it.
#[derive(Debug)]
pub(super) struct Behind<T> {
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> Behind<T> {
    /// Start `work` on a thread named `name`; it receives one message per
    /// wake and returns once the channel closes. `None` when the thread
    /// cannot start: the caller's end then does all the work, as it would
    /// anyway.
    pub(super) fn spawn(
        name: &str,
        work: impl FnOnce(Receiver<()>) -> T + Send + 'static,
    ) -> Option<Behind<T>> {
        let (wake, woken) = bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || work(woken))
            .ok()?;
        Some(Behind {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Ask for one more round; a wake already pending covers this one, and
    /// a thread that is gone leaves the work to the caller's end.
    pub(super) fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// Let the last requested round run, end the thread and take what it
    /// returned (`None` once stopped, or if it panicked).
    pub(super) fn stop(&mut self) -> Option<T> {
        self.wake = None;
        self.thread.take().and_then(|thread| thread.join().ok())
    }
}

impl<T> Drop for Behind<T> {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wake_is_served_before_stop_returns() {
        let mut behind = Behind::spawn("test-behind", |woken: Receiver<()>| woken.iter().count())
            .expect("a thread");
        behind.wake();
        assert_eq!(
            behind.stop(),
            Some(1),
            "the wake sent before stop is served"
        );
        assert_eq!(behind.stop(), None, "stopped once");
    }
}
