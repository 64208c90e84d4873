//! Time for backfill: parsing the dates people and transcripts write, the
//! ISO form rows store, and the import window every line is checked against.
//!
//! Accepted (as the reference's `Date.parse` does for these shapes): RFC 3339
//! with any fraction length (truncated to ms), `YYYY-MM-DD` as UTC midnight,
//! and `YYYY-MM-DDTHH:MM[:SS[.f]]` without a zone as local time. The common
//! transcript form `YYYY-MM-DDTHH:MM:SS.sssZ` takes a fast path.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

pub const DAY_MS: i64 = 86_400_000;

/// The inclusive `[since, until]` window; `None` is an open end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Window {
    /// A line with no timestamp is always kept.
    pub fn contains(&self, ts_ms: Option<i64>) -> bool {
        let Some(ts) = ts_ms else { return true };
        self.since_ms.is_none_or(|since| ts >= since)
            && self.until_ms.is_none_or(|until| ts <= until)
    }
}

/// Where a run's lower bound came from, for the report: people need to
/// know that a default left their older history out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowSource {
    /// `--since`.
    Since,
    /// `--retention-days`.
    RetentionDays,
    /// `query.cache.retention.default_days` in the config.
    Config,
    /// Nothing set: the 90-day default.
    Default,
}

/// How many lines one read kept and left out because of the window. A
/// line with no timestamp is always kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowLines {
    pub kept: u64,
    pub outside: u64,
}

impl WindowLines {
    /// Count one line as `window` judges it.
    pub fn note(&mut self, window: &Window, ts_ms: Option<i64>) {
        if window.contains(ts_ms) {
            self.kept += 1;
        } else {
            self.outside += 1;
        }
    }

    /// The lines of a read, counted.
    pub fn count(window: &Window, timestamps: impl Iterator<Item = Option<i64>>) -> WindowLines {
        let mut lines = WindowLines::default();
        for ts_ms in timestamps {
            lines.note(window, ts_ms);
        }
        lines
    }

    /// Every line was left out: the file gave nothing because of the window.
    pub fn all_outside(&self) -> bool {
        self.outside > 0 && self.kept == 0
    }
}

/// A `--since`/`--until` value: a date [`parse_date_ms`] accepts, or a span
/// back from `now_ms` (`30d`, `12h`, `2w`).
pub fn parse_bound_ms(text: &str, now_ms: i64) -> Option<i64> {
    parse_span_ms(text)
        .map(|span| now_ms.saturating_sub(span))
        .or_else(|| parse_date_ms(text))
}

/// `<n>h`, `<n>d` or `<n>w` as milliseconds (a whole, non-negative `n`).
fn parse_span_ms(text: &str) -> Option<i64> {
    let unit_ms = match text.as_bytes().last()? {
        b'h' => 3_600_000,
        b'd' => DAY_MS,
        b'w' => 7 * DAY_MS,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    number.parse::<i64>().ok()?.checked_mul(unit_ms)
}

/// Where the timestamps read so far fell against the window they were read
/// under, in just enough detail to tell whether another window would keep
/// exactly the same ones. A resumed read needs that: `message_index`,
/// `previous_message_id` and (Claude) `conversation_started_at` of the
/// appended rows depend on which earlier lines the window kept, and the
/// lower bound moves forward on every run (`now - retention days`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowFootprint {
    /// Earliest and latest timestamp kept.
    kept: Option<(i64, i64)>,
    /// Latest timestamp dropped for being before `since`.
    below: Option<i64>,
    /// Earliest timestamp dropped for being after `until`.
    above: Option<i64>,
}

impl WindowFootprint {
    /// Record one line's timestamp as `window` judged it.
    pub fn note(&mut self, window: &Window, ts_ms: Option<i64>) {
        let Some(ts) = ts_ms else { return };
        if window.since_ms.is_some_and(|since| ts < since) {
            self.below = Some(self.below.map_or(ts, |below| below.max(ts)));
        } else if window.until_ms.is_some_and(|until| ts > until) {
            self.above = Some(self.above.map_or(ts, |above| above.min(ts)));
        } else {
            self.kept = Some(
                self.kept
                    .map_or((ts, ts), |(min, max)| (min.min(ts), max.max(ts))),
            );
        }
    }

    /// Whether `window` keeps and drops exactly the lines noted so far as
    /// their own window did: every kept timestamp inside it, every dropped
    /// one still outside on the same side.
    pub fn same_lines_under(&self, window: &Window) -> bool {
        let kept_ok = self
            .kept
            .is_none_or(|(min, max)| window.contains(Some(min)) && window.contains(Some(max)));
        let below_ok = self
            .below
            .is_none_or(|below| window.since_ms.is_some_and(|since| below < since));
        let above_ok = self
            .above
            .is_none_or(|above| window.until_ms.is_some_and(|until| above > until));
        kept_ok && below_ok && above_ok
    }
}

/// Epoch ms of `text`, or `None` when it is not a date we accept.
pub fn parse_date_ms(text: &str) -> Option<i64> {
    if let Some(ms) = fast_utc_ms(text.as_bytes()) {
        return Some(ms);
    }
    let bytes = text.as_bytes();
    if bytes.len() < 10 || !is_ymd(&bytes[..10]) {
        return None;
    }
    if bytes.len() == 10 {
        let date: Date = text.parse().ok()?;
        let ts = TimeZone::UTC
            .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .ok()?;
        return Some(ts.as_millisecond());
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts.as_millisecond());
    }
    let sep = bytes[10];
    if sep == b'T' || sep == b't' || sep == b' ' {
        let datetime: DateTime = text.parse().ok()?;
        let ts = TimeZone::system().to_timestamp(datetime).ok()?;
        return Some(ts.as_millisecond());
    }
    None
}

/// A transcript `timestamp`: an ISO string or epoch-ms number.
pub fn timestamp_ms(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::String(text) => parse_date_ms(text),
        serde_json::Value::Number(number) => ms_from_number(number.as_f64()?),
        _ => None,
    }
}

/// A numeric timestamp (milliseconds) within the range a date can hold.
pub fn ms_from_number(ms: f64) -> Option<i64> {
    (ms.is_finite() && ms.abs() <= 8.64e15).then(|| ms.trunc() as i64)
}

fn is_ymd(bytes: &[u8]) -> bool {
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(index, byte)| index == 4 || index == 7 || byte.is_ascii_digit())
}

fn digits(bytes: &[u8]) -> Option<i64> {
    let mut value = 0i64;
    for byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Some(value)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff...]Z` without allocating.
fn fast_utc_ms(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 20 || bytes[bytes.len() - 1] != b'Z' || bytes[10] != b'T' {
        return None;
    }
    if !is_ymd(&bytes[..10]) || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    let rest = &bytes[19..bytes.len() - 1];
    let millis = match rest {
        [] => 0,
        [b'.', fraction @ ..] if !fraction.is_empty() && fraction.len() <= 9 => {
            let mut padded = [b'0'; 3];
            for (slot, byte) in padded.iter_mut().zip(fraction) {
                *slot = *byte;
            }
            digits(fraction)?;
            digits(&padded)?
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ` for epoch ms (years 0..=9999; other years
/// as `format!` writes them). Every message's `message_created_at` and
/// `raw_frame` timestamp goes through here, so the usual years are written
/// digit by digit into one exact allocation instead of through the
/// formatter (about 3,000 instructions a call).
pub fn iso_from_ms(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
        );
    }
    let mut out = String::with_capacity(24);
    for (value, width, after) in [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (hour, 2, ':'),
        (minute, 2, ':'),
        (second, 2, '.'),
        (milli, 3, 'Z'),
    ] {
        push_digits(&mut out, value, width);
        out.push(after);
    }
    out
}

/// `value` (`0 <= value < 10^width`) in `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, value: i64, width: u32) {
    for place in (0..width).rev() {
        let digit = value / 10_i64.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_from_ms_writes_what_format_writes() {
        let formatted = |ms: i64| {
            let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
            let in_day = ms.rem_euclid(DAY_MS);
            format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                in_day / 3_600_000,
                in_day / 60_000 % 60,
                in_day / 1000 % 60,
                in_day % 1000
            )
        };
        let mut samples = vec![
            0,
            -1,
            1,
            DAY_MS - 1,
            1_767_323_045_678,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
            8_640_000_000_000_000,
            -8_640_000_000_000_000,
        ];
        let mut ms: i64 = -70_000_000_000_000;
        while ms < 300_000_000_000_000 {
            samples.push(ms);
            ms += 997_654_321_987;
        }
        for ms in samples {
            assert_eq!(iso_from_ms(ms), formatted(ms), "{ms}");
        }
    }

    fn iso(text: &str) -> Option<String> {
        parse_date_ms(text).map(iso_from_ms)
    }

    #[test]
    fn accepts_the_reference_shapes() {
        assert_eq!(
            iso("2026-01-01").as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(
            iso("2026-01-01T00:00:00Z").as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(
            iso("2026-01-01T02:00:00+02:00").as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(
            iso("2026-01-01T12:00Z").as_deref(),
            Some("2026-01-01T12:00:00.000Z")
        );
        assert_eq!(
            iso("2025-10-01 12:00:00Z").as_deref(),
            Some("2025-10-01T12:00:00.000Z")
        );
        assert_eq!(
            iso("2025-10-01T12:00:00.123456Z").as_deref(),
            Some("2025-10-01T12:00:00.123Z")
        );
        assert_eq!(
            iso("2025-10-01T12:00:00.5Z").as_deref(),
            Some("2025-10-01T12:00:00.500Z")
        );
        assert!(parse_date_ms("2026-01-01T00:00:00").is_some(), "local time");
        for bad in [
            "1735689600000",
            "20260101",
            "2026-13-01",
            "now",
            "",
            "2026-02-30T00:00:00Z",
            "notadate",
        ] {
            assert_eq!(parse_date_ms(bad), None, "{bad} must be refused");
        }
    }

    #[test]
    fn fast_path_agrees_with_jiff() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-11-25T09:01:11.123Z",
        ] {
            let jiff: Timestamp = text.parse().unwrap();
            assert_eq!(
                fast_utc_ms(text.as_bytes()),
                Some(jiff.as_millisecond()),
                "{text}"
            );
            assert_eq!(iso_from_ms(jiff.as_millisecond()), text);
        }
    }

    #[test]
    fn a_footprint_accepts_only_windows_that_keep_the_same_lines() {
        let first = Window {
            since_ms: Some(100),
            until_ms: None,
        };
        let mut footprint = WindowFootprint::default();
        for ts in [Some(50), Some(150), None, Some(300)] {
            footprint.note(&first, ts);
        }
        let since = |since_ms| Window {
            since_ms,
            until_ms: None,
        };
        assert!(footprint.same_lines_under(&first));
        assert!(
            footprint.same_lines_under(&since(Some(51))),
            "50 still dropped"
        );
        assert!(
            footprint.same_lines_under(&since(Some(150))),
            "150 still kept"
        );
        assert!(
            !footprint.same_lines_under(&since(Some(151))),
            "150 would drop"
        );
        assert!(
            !footprint.same_lines_under(&since(Some(50))),
            "50 would come in"
        );
        assert!(!footprint.same_lines_under(&since(None)));
        let capped = Window {
            since_ms: Some(100),
            until_ms: Some(300),
        };
        assert!(footprint.same_lines_under(&capped));
        assert!(!footprint.same_lines_under(&Window {
            since_ms: Some(100),
            until_ms: Some(299),
        }));
        let mut above = WindowFootprint::default();
        above.note(&capped, Some(400));
        assert!(above.same_lines_under(&capped));
        assert!(
            !above.same_lines_under(&since(Some(100))),
            "400 would come in"
        );
        assert!(WindowFootprint::default().same_lines_under(&since(None)));
    }

    #[test]
    fn bounds_take_spans_back_from_now_and_dates() {
        let now = 100 * DAY_MS;
        assert_eq!(parse_bound_ms("30d", now), Some(70 * DAY_MS));
        assert_eq!(parse_bound_ms("12h", now), Some(now - 12 * 3_600_000));
        assert_eq!(parse_bound_ms("2w", now), Some(86 * DAY_MS));
        assert_eq!(parse_bound_ms("0d", now), Some(now));
        assert_eq!(
            parse_bound_ms("2026-01-01", now),
            parse_date_ms("2026-01-01")
        );
        for bad in [
            "-1d",
            "d",
            "1.5d",
            "3m",
            "1 d",
            "99999999999999999999w",
            "w2",
        ] {
            assert_eq!(parse_bound_ms(bad, now), None, "{bad} must be refused");
        }
    }

    #[test]
    fn lines_are_counted_kept_or_outside() {
        let window = Window {
            since_ms: Some(10),
            until_ms: None,
        };
        let lines = WindowLines::count(&window, [Some(5), None, Some(20)].into_iter());
        assert_eq!(
            lines,
            WindowLines {
                kept: 2,
                outside: 1
            }
        );
        assert!(!lines.all_outside());
        assert!(WindowLines::count(&window, [Some(1), Some(2)].into_iter()).all_outside());
        assert!(
            !WindowLines::default().all_outside(),
            "an empty read is not outside"
        );
    }

    #[test]
    fn the_window_is_inclusive_and_keeps_untimed_lines() {
        let window = Window {
            since_ms: Some(10),
            until_ms: Some(20),
        };
        assert!(window.contains(Some(10)) && window.contains(Some(20)) && window.contains(None));
        assert!(!window.contains(Some(9)) && !window.contains(Some(21)));
        assert!(Window::default().contains(Some(i64::MIN)));
    }
}
