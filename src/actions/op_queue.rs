//! Single flight with coalescing for reconcile passes.
//!
//! `request` records that a pass is wanted (several requests merge into
//! one); `should_start` hands out the pending pass only while none runs;
//! `completed` ends it. Requests made while a pass runs therefore produce
//! exactly one rerun, and nothing is lost because passes are level-triggered.
//! When requests merge, the rerun keeps the strongest reason: one that
//! retries failed units at once (boot, confirm edge) beats one that waits
//! for their backoff (reload, retry timer).

use crate::messages::PassReason;

#[derive(Debug, Default)]
pub struct OpQueue {
    pending: Option<PassReason>,
    running: bool,
}

impl OpQueue {
    pub fn request(&mut self, reason: PassReason) {
        let keep_old = self
            .pending
            .as_ref()
            .is_some_and(|old| retries_failed_now(old) && !retries_failed_now(&reason));
        if !keep_old {
            self.pending = Some(reason);
        }
    }

    /// The pass to run now, if one is pending and none is running.
    pub fn should_start(&mut self) -> Option<PassReason> {
        if self.running {
            return None;
        }
        let reason = self.pending.take()?;
        self.running = true;
        Some(reason)
    }

    pub fn completed(&mut self) {
        assert!(self.running, "completed() without a running pass");
        self.running = false;
    }

    pub fn is_idle(&self) -> bool {
        !self.running && self.pending.is_none()
    }
}

/// Boot passes and confirm edges retry failed units before their backoff.
pub fn retries_failed_now(reason: &PassReason) -> bool {
    matches!(reason, PassReason::Boot | PassReason::Confirmed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed() -> PassReason {
        PassReason::Confirmed { etag: "e1".into() }
    }

    #[test]
    fn an_idle_queue_starts_one_pass_per_request() {
        let mut queue = OpQueue::default();
        assert_eq!(queue.should_start(), None);
        queue.request(PassReason::Boot);
        assert_eq!(queue.should_start(), Some(PassReason::Boot));
        assert_eq!(queue.should_start(), None);
        queue.completed();
        assert!(queue.is_idle());
        assert_eq!(queue.should_start(), None);
    }

    #[test]
    fn requests_during_a_pass_coalesce_into_exactly_one_rerun() {
        let mut queue = OpQueue::default();
        queue.request(PassReason::Boot);
        assert!(queue.should_start().is_some());
        queue.request(PassReason::Reload);
        queue.request(PassReason::RetryDue);
        queue.request(PassReason::Reload);
        assert_eq!(queue.should_start(), None, "single flight");
        queue.completed();
        assert_eq!(queue.should_start(), Some(PassReason::Reload));
        queue.completed();
        assert_eq!(queue.should_start(), None, "exactly one rerun");
    }

    #[test]
    fn the_rerun_keeps_the_strongest_reason() {
        let mut queue = OpQueue::default();
        queue.request(confirmed());
        queue.request(PassReason::Reload);
        queue.request(PassReason::RetryDue);
        assert_eq!(queue.should_start(), Some(confirmed()));
        queue.completed();
        queue.request(PassReason::RetryDue);
        queue.request(PassReason::Boot);
        assert_eq!(queue.should_start(), Some(PassReason::Boot));
    }

    #[test]
    fn completing_nothing_is_a_bug() {
        let outcome = std::panic::catch_unwind(|| OpQueue::default().completed());
        assert!(outcome.is_err());
    }
}
