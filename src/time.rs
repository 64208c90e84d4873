//! Wall-clock timestamps in the one text form every file and document uses:
//! ISO-8601 UTC with milliseconds, `2026-11-25T09:01:11.123Z`; and a
//! thread's own CPU clock, for the per-phase figures of `make bench`.

use jiff::Timestamp;

/// `ts` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_ms(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A `SystemTime` as [`iso_ms`] (the clock the daemon's timers read).
pub fn iso_system(time: std::time::SystemTime) -> String {
    let since_epoch = time
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    match Timestamp::from_nanosecond(since_epoch.as_nanos() as i128) {
        Ok(timestamp) => iso_ms(timestamp),
        Err(_) => now_iso(),
    }
}

/// The current time as [`iso_ms`].
pub fn now_iso() -> String {
    iso_ms(Timestamp::now())
}

/// Parse an RFC 3339 / ISO-8601 timestamp with an offset (`Z` or `+hh:mm`).
pub fn parse_iso(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

/// CPU time the calling thread has used, in nanoseconds (0 where the clock
/// is unavailable). Per thread, so each stage of the pipeline is measured
/// apart from the others and from whatever else runs on the machine.
pub fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if read != 0 {
        return 0;
    }
    (now.tv_sec.max(0) as u64) * 1_000_000_000 + now.tv_nsec.max(0) as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_system_time_has_milliseconds_and_z() {
        let time =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(super::iso_system(time), "2023-11-14T22:13:20.123Z");
    }

    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        let ts: Timestamp = "2026-01-02T03:04:05.006789+02:00".parse().unwrap();
        assert_eq!(iso_ms(ts), "2026-01-02T01:04:05.006Z");
        assert_eq!(
            iso_ms(parse_iso("2026-01-02T01:04:05Z").unwrap()),
            "2026-01-02T01:04:05.000Z"
        );
        assert!(parse_iso("yesterday").is_none());
    }
}
