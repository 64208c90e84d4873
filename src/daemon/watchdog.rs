//! The probation watchdog: one timer for the active probation's deadline,
//! owned by the main thread. Armed from boot evaluation, from reload and from
//! `PollEvent::Applied`; disarmed by `PollEvent::ProbationCleared`. When it
//! fires the main thread asks the poll thread to roll back.
//!
//! The deadline is an absolute time the apply engine computed from the
//! probation window, which `HYP_TIME_SCALE` already shrank; scaling the
//! remaining time again would fire before the engine considers it expired.

use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;

/// Fire a little after the deadline so the engine's own `until <= now` check
/// agrees that it passed.
const SLACK: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
pub struct Watchdog {
    armed: Option<Armed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Armed {
    etag: String,
    deadline: SystemTime,
}

impl Watchdog {
    pub fn arm(&mut self, etag: &str, deadline: SystemTime) {
        self.armed = Some(Armed {
            etag: etag.to_string(),
            deadline,
        });
    }

    pub fn disarm(&mut self) {
        self.armed = None;
    }

    pub fn deadline(&self) -> Option<SystemTime> {
        self.armed.as_ref().map(|armed| armed.deadline)
    }

    pub fn etag(&self) -> Option<&str> {
        self.armed.as_ref().map(|armed| armed.etag.as_str())
    }

    /// A channel that delivers once at the deadline, or never when disarmed.
    /// Built fresh for every `select!`, from the absolute deadline.
    pub fn timer(&self) -> Receiver<Instant> {
        match &self.armed {
            Some(armed) => {
                let remaining = armed
                    .deadline
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                crossbeam_channel::after(remaining + SLACK)
            }
            None => crossbeam_channel::never(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_past_deadline_fires_at_once_and_disarmed_never_fires() {
        let mut watchdog = Watchdog::default();
        assert!(
            watchdog
                .timer()
                .recv_timeout(Duration::from_millis(30))
                .is_err()
        );
        watchdog.arm("rev-1", SystemTime::now() - Duration::from_secs(5));
        assert!(
            watchdog
                .timer()
                .recv_timeout(Duration::from_secs(5))
                .is_ok()
        );
        assert_eq!(watchdog.etag(), Some("rev-1"));
        watchdog.disarm();
        assert_eq!(watchdog.deadline(), None);
    }

    #[test]
    fn a_future_deadline_does_not_fire_early() {
        let mut watchdog = Watchdog::default();
        watchdog.arm("rev-2", SystemTime::now() + Duration::from_secs(3600));
        assert!(
            watchdog
                .timer()
                .recv_timeout(Duration::from_millis(30))
                .is_err()
        );
    }
}
