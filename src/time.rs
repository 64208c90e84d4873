//! Wall-clock timestamps in the one text form every file and document uses:
//! ISO-8601 UTC with milliseconds, `2026-11-25T09:01:11.123Z`.

use jiff::Timestamp;

/// `ts` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_ms(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The current time as [`iso_ms`].
pub fn now_iso() -> String {
    iso_ms(Timestamp::now())
}

/// Parse an RFC 3339 / ISO-8601 timestamp with an offset (`Z` or `+hh:mm`).
pub fn parse_iso(text: &str) -> Option<Timestamp> {
    text.trim().parse::<Timestamp>().ok()
}

#[cfg(test)]
mod tests {
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
