//! When a failed unit is tried again: exponential backoff with a jitter that
//! is fixed per host and unit, so a fleet that failed together does not
//! retry together, yet one host's schedule is reproducible.
//!
//! The delay after the n-th consecutive failure is
//! `min(6 h, 60 s x 2^(n-1)) x jitter`, jitter in `[0.8, 1.2]` derived from
//! SHA-256 of `hostname \0 kind \0 request_key`. The delay is divided by
//! `HYP_TIME_SCALE`, so the `next_attempt` written to a marker is the real
//! wall-clock time of the retry and needs no further scaling by readers.

use std::time::Duration;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::paths::TimeScale;

/// The first retry waits this long (before jitter).
const BASE_DELAY: Duration = Duration::from_secs(60);
/// No retry waits longer than this (before jitter).
const MAX_DELAY: Duration = Duration::from_secs(6 * 60 * 60);
const JITTER_LOW: f64 = 0.8;
const JITTER_SPAN: f64 = 0.4;

/// The unjittered delay after `attempts` consecutive failures (attempts >= 1;
/// 0 counts as 1).
pub fn base_delay(attempts: u64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(32) as u32;
    let factor = 2u64.saturating_pow(exponent);
    let delay = BASE_DELAY
        .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .unwrap_or(MAX_DELAY);
    delay.min(MAX_DELAY)
}

/// The jitter factor in `[0.8, 1.2]` for one unit on one host.
pub fn jitter(host: &str, kind: &str, request_key: &str) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(host.as_bytes());
    hasher.update([0u8]);
    hasher.update(kind.as_bytes());
    hasher.update([0u8]);
    hasher.update(request_key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let unit = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
    JITTER_LOW + JITTER_SPAN * unit
}

/// The retry schedule of one host under one time scale.
#[derive(Debug, Clone)]
pub struct Backoff {
    host: String,
    time_scale: TimeScale,
}

impl Backoff {
    pub fn new(host: impl Into<String>, time_scale: TimeScale) -> Backoff {
        Backoff {
            host: host.into(),
            time_scale,
        }
    }

    /// This machine's hostname (empty if it cannot be read).
    pub fn for_this_host(time_scale: TimeScale) -> Backoff {
        Backoff::new(hostname(), time_scale)
    }

    /// The scaled, jittered wait after `attempts` consecutive failures.
    pub fn delay(&self, kind: &str, request_key: &str, attempts: u64) -> Duration {
        let jittered = base_delay(attempts).mul_f64(jitter(&self.host, kind, request_key));
        self.time_scale.scale(jittered)
    }

    /// `last_attempt + delay`, in wall-clock time.
    pub fn next_attempt(
        &self,
        kind: &str,
        request_key: &str,
        attempts: u64,
        last_attempt: Timestamp,
    ) -> Timestamp {
        let delay = self.delay(kind, request_key, attempts);
        let millis = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let target = last_attempt.as_millisecond().saturating_add(millis);
        Timestamp::from_millisecond(target).unwrap_or(Timestamp::MAX)
    }
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at
    // most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return String::new();
    }
    let end = buffer
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_delay_doubles_from_a_minute_and_caps_at_six_hours() {
        let minutes = |attempts| base_delay(attempts).as_secs() / 60;
        assert_eq!(minutes(0), 1);
        assert_eq!(minutes(1), 1);
        assert_eq!(minutes(2), 2);
        assert_eq!(minutes(3), 4);
        assert_eq!(minutes(8), 128);
        assert_eq!(minutes(9), 256);
        assert_eq!(minutes(10), 360);
        assert_eq!(minutes(1000), 360);
        assert_eq!(minutes(u64::MAX), 360);
    }

    #[test]
    fn jitter_stays_in_range_and_is_deterministic_per_host_and_key() {
        for index in 0..500 {
            let key = format!("@hypaware/plugin-{index}");
            let factor = jitter("host-a", "backfill", &key);
            assert!((0.8..=1.2).contains(&factor), "{factor} out of range");
            assert_eq!(factor, jitter("host-a", "backfill", &key));
        }
        let a = jitter("host-a", "backfill", "@hypaware/claude");
        let b = jitter("host-b", "backfill", "@hypaware/claude");
        let c = jitter("host-a", "backfill", "@hypaware/codex");
        assert!(a != b && a != c, "jitter must depend on host and key");
    }

    #[test]
    fn next_attempt_adds_the_jittered_delay_to_the_last_attempt() {
        let backoff = Backoff::new("host-a", TimeScale::REAL);
        let last: Timestamp = "2026-06-25T00:00:00Z".parse().unwrap();
        let factor = jitter("host-a", "backfill", "@hypaware/claude");
        for (attempts, base_secs) in [(1u64, 60.0), (3, 240.0), (20, 21_600.0)] {
            let next = backoff.next_attempt("backfill", "@hypaware/claude", attempts, last);
            let waited = next.duration_since(last).as_secs_f64();
            assert!(
                (waited - base_secs * factor).abs() < 0.002,
                "attempt {attempts}: waited {waited}, expected {}",
                base_secs * factor
            );
        }
    }

    #[test]
    fn the_time_scale_divides_the_delay() {
        let real = Backoff::new("h", TimeScale::REAL).delay("backfill", "k", 2);
        let fast =
            Backoff::new("h", TimeScale::parse(Some("60")).unwrap()).delay("backfill", "k", 2);
        let ratio = real.as_secs_f64() / fast.as_secs_f64();
        assert!((ratio - 60.0).abs() < 1e-6, "ratio {ratio}");
    }
}
