//! The 5-field cron schedule of sink `config.schedule`: the strict grammar
//! that validation enforces (`sink_schedule_invalid`) and the matching the
//! export driver runs once a minute. Deliberately narrow, as in the
//! reference: no `@hourly` aliases, no seconds field, no names, printable
//! ASCII only. Matching is in UTC, on the minute; when both day of month and
//! day of week are restricted a day matches if either does (classic cron).

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The schedule of a sink that sets none: every minute.
pub const EVERY_MINUTE: &str = "* * * * *";

/// Whether `expression` is a valid 5-field cron expression.
pub fn is_cron_expression(expression: &str) -> bool {
    Schedule::parse(expression).is_ok()
}

/// A parsed cron expression: the values each field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    minutes: FieldValues,
    hours: FieldValues,
    days_of_month: FieldValues,
    months: FieldValues,
    /// Sunday is 0; a 7 in the expression is stored as 0.
    days_of_week: FieldValues,
    /// Both day fields are restricted (neither is `*`): a day matches when
    /// either field does, instead of both.
    either_day_field: bool,
}

impl Schedule {
    /// Parse a 5-field expression: each field a comma list of `*`, `N`,
    /// `N-M` (N <= M), or one of those followed by `/STEP` (STEP >= 1;
    /// `N/STEP` runs from N to the field's maximum).
    pub fn parse(expression: &str) -> Result<Schedule, CronError> {
        if !expression.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
            return Err(CronError::NotPrintableAscii);
        }
        let fields: Vec<&str> = expression.split_whitespace().collect();
        match fields.as_slice() {
            [] => Err(CronError::Empty),
            [alias, ..] if alias.starts_with('@') => Err(CronError::Alias {
                alias: expression.trim().to_string(),
            }),
            [minute, hour, day_of_month, month, day_of_week] => Ok(Schedule {
                minutes: parse_field(Field::Minute, minute)?,
                hours: parse_field(Field::Hour, hour)?,
                days_of_month: parse_field(Field::DayOfMonth, day_of_month)?,
                months: parse_field(Field::Month, month)?,
                days_of_week: parse_field(Field::DayOfWeek, day_of_week)?.with_7_as_sunday(),
                either_day_field: *day_of_month != "*" && *day_of_week != "*",
            }),
            _ => Err(CronError::FieldCount {
                found: fields.len(),
            }),
        }
    }

    /// Whether the UTC minute holding `at` is one of the schedule's.
    pub fn matches(&self, at: Timestamp) -> bool {
        let utc = TimeZone::UTC.to_datetime(at);
        let day_of_month = self.days_of_month.contains(utc.day());
        let day_of_week = self
            .days_of_week
            .contains(utc.weekday().to_sunday_zero_offset());
        let day = if self.either_day_field {
            day_of_month || day_of_week
        } else {
            day_of_month && day_of_week
        };
        day && self.minutes.contains(utc.minute())
            && self.hours.contains(utc.hour())
            && self.months.contains(utc.month())
    }
}

/// Why an expression is not a valid schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CronError {
    /// A tab, a control character or a non-ASCII character.
    NotPrintableAscii,
    Empty,
    Alias {
        alias: String,
    },
    FieldCount {
        found: usize,
    },
    /// A part that is not `*`, `N`, `N-M` or a step over one of them.
    Malformed {
        field: Field,
        part: String,
    },
    OutOfRange {
        field: Field,
        value: String,
    },
    BackwardRange {
        field: Field,
        part: String,
    },
    /// A step of 0, or one that is not a number.
    BadStep {
        field: Field,
        part: String,
    },
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CronError::NotPrintableAscii => f.write_str(
                "a cron expression holds only printable ASCII, with fields separated by spaces",
            ),
            CronError::Empty => f.write_str("the cron expression is empty"),
            CronError::Alias { alias } => write!(
                f,
                "'{alias}' is an alias, which is not supported: write the 5 fields (e.g. '0 * * * *')"
            ),
            CronError::FieldCount { found } => write!(
                f,
                "a cron expression has 5 fields (minute hour day-of-month month day-of-week), found {found}"
            ),
            CronError::Malformed { field, part } => write!(
                f,
                "{field} '{part}' is not *, N, N-M or one of those followed by /STEP"
            ),
            CronError::OutOfRange { field, value } => {
                let (min, max) = field.range();
                write!(f, "{field} '{value}' is out of range {min}-{max}")
            }
            CronError::BackwardRange { field, part } => {
                write!(
                    f,
                    "{field} '{part}' is a range whose start is after its end"
                )
            }
            CronError::BadStep { field, part } => {
                write!(
                    f,
                    "{field} '{part}' needs a step that is a whole number >= 1"
                )
            }
        }
    }
}

impl std::error::Error for CronError {}

/// One of the five fields, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl Field {
    /// `(min, max)` allowed in the expression (day of week allows 7 for
    /// Sunday).
    fn range(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }
}

impl fmt::Display for Field {
    /// `field 2 (hour)`: the 1-based position and the name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (position, name) = match self {
            Field::Minute => (1, "minute"),
            Field::Hour => (2, "hour"),
            Field::DayOfMonth => (3, "day of month"),
            Field::Month => (4, "month"),
            Field::DayOfWeek => (5, "day of week"),
        };
        write!(f, "field {position} ({name})")
    }
}

/// The values one field allows, as bits 0..=63.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FieldValues(u64);

impl FieldValues {
    fn insert(&mut self, value: u32) {
        debug_assert!(value < 64, "field values are at most 59");
        self.0 |= 1 << value;
    }

    /// Day of week 7 is Sunday, which matching knows as 0.
    fn with_7_as_sunday(mut self) -> FieldValues {
        if self.contains(7) {
            self.insert(0);
        }
        self
    }

    fn contains(&self, value: impl TryInto<u32>) -> bool {
        value
            .try_into()
            .is_ok_and(|value: u32| value < 64 && self.0 & (1 << value) != 0)
    }
}

fn parse_field(field: Field, text: &str) -> Result<FieldValues, CronError> {
    let mut values = FieldValues::default();
    for part in text.split(',') {
        let (low, high, step) = parse_part(field, part)?;
        for value in (low..=high).step_by(step) {
            values.insert(value);
        }
    }
    Ok(values)
}

/// One comma-separated part as `(low, high, step)`.
fn parse_part(field: Field, part: &str) -> Result<(u32, u32, usize), CronError> {
    let (min, max) = field.range();
    let (base, step) = match part.rsplit_once('/') {
        None => (part, None),
        Some((base, step)) => (base, Some(parse_step(field, part, step)?)),
    };
    let (low, high) = match (base, base.split_once('-')) {
        ("*", _) => (min, max),
        (_, Some((low, high))) => {
            let low = parse_value(field, part, low)?;
            let high = parse_value(field, part, high)?;
            if low > high {
                return Err(CronError::BackwardRange {
                    field,
                    part: part.to_string(),
                });
            }
            (low, high)
        }
        (value, None) => {
            let value = parse_value(field, part, value)?;
            match step {
                Some(_) => (value, max),
                None => (value, value),
            }
        }
    };
    Ok((low, high, step.unwrap_or(1)))
}

/// A value of `field` inside `part`: digits only, within the field's range.
fn parse_value(field: Field, part: &str, text: &str) -> Result<u32, CronError> {
    if !is_digits(text) {
        return Err(CronError::Malformed {
            field,
            part: part.to_string(),
        });
    }
    let (min, max) = field.range();
    text.parse()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| CronError::OutOfRange {
            field,
            value: text.to_string(),
        })
}

fn parse_step(field: Field, part: &str, text: &str) -> Result<usize, CronError> {
    let step: Option<u32> = is_digits(text).then(|| text.parse().ok()).flatten();
    match step.and_then(|step| usize::try_from(step).ok()) {
        Some(step) if step > 0 => Ok(step),
        _ => Err(CronError::BadStep {
            field,
            part: part.to_string(),
        }),
    }
}

/// Digits only: no sign, no spaces, not empty.
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(expression: &str) -> Schedule {
        Schedule::parse(expression).expect("test expressions are valid")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("test timestamps are valid")
    }

    /// The minutes of the hour starting at `hour` that `expression` matches.
    fn minutes_matched(expression: &str, hour: &str) -> Vec<i64> {
        let schedule = schedule(expression);
        let start = at(hour);
        (0..60)
            .filter(|minute| schedule.matches(start + jiff::SignedDuration::from_mins(*minute)))
            .collect()
    }

    /// The days (`YYYY-MM-DD`) from `first` for `n_days` that `expression`
    /// matches at 00:00 UTC.
    fn days_matched(expression: &str, first: &str, n_days: i64) -> Vec<String> {
        let schedule = schedule(expression);
        let start = at(&format!("{first}T00:00:00Z"));
        (0..n_days)
            .map(|day| start + jiff::SignedDuration::from_hours(24 * day))
            .filter(|moment| schedule.matches(*moment))
            .map(|moment| moment.strftime("%Y-%m-%d").to_string())
            .collect()
    }

    #[test]
    fn accepts_standard_expressions() {
        for good in [
            "0 * * * *",
            "*/5 * * * *",
            "0 0 1 1 0",
            "59 23 31 12 7",
            "0-30/10 1,2,3 1-31 */2 1-5",
            "  0 * * * *  ",
            "5/10 * * * *",
            EVERY_MINUTE,
        ] {
            assert!(is_cron_expression(good), "{good:?} should be valid");
        }
    }

    #[test]
    fn rejects_aliases_and_malformed_fields() {
        for bad in [
            "",
            "   ",
            "@hourly",
            "@daily",
            "@every 5m * * * *",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "-1 * * * *",
            "1- * * * *",
            "1,,2 * * * *",
            ",1 * * * *",
            "*/5/5 * * * *",
            "/5 * * * *",
            "*/ * * * *",
            "*/-1 * * * *",
            "*-5 * * * *",
            "1-2-3 * * * *",
            "0 * * * MON",
            "０ * * * *",
            "0\t*\t*\t*\t*",
            "99999999999 * * * *",
            "*/99999999999 * * * *",
        ] {
            assert!(!is_cron_expression(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn errors_say_which_field_and_what_is_allowed() {
        let message = |expression: &str| {
            Schedule::parse(expression)
                .expect_err("test expressions are invalid")
                .to_string()
        };
        assert_eq!(
            message("0 24 * * *"),
            "field 2 (hour) '24' is out of range 0-23"
        );
        assert_eq!(
            message("0 0 0-5 * *"),
            "field 3 (day of month) '0' is out of range 1-31"
        );
        assert_eq!(
            message("0 0 * * 99999999999"),
            "field 5 (day of week) '99999999999' is out of range 0-7"
        );
        assert_eq!(
            message("30-10 * * * *"),
            "field 1 (minute) '30-10' is a range whose start is after its end"
        );
        assert_eq!(
            message("* * * */0 *"),
            "field 4 (month) '*/0' needs a step that is a whole number >= 1"
        );
        assert_eq!(
            message("* * * * MON"),
            "field 5 (day of week) 'MON' is not *, N, N-M or one of those followed by /STEP"
        );
        assert_eq!(
            message("* * *"),
            "a cron expression has 5 fields (minute hour day-of-month month day-of-week), found 3"
        );
        assert_eq!(
            message(" @hourly "),
            "'@hourly' is an alias, which is not supported: write the 5 fields (e.g. '0 * * * *')"
        );
        assert_eq!(message(""), "the cron expression is empty");
        assert_eq!(
            message("60 * * * 8"),
            "field 1 (minute) '60' is out of range 0-59",
            "the first bad field is named"
        );
        assert_eq!(
            Schedule::parse("0\t* * * *"),
            Err(CronError::NotPrintableAscii)
        );
    }

    #[test]
    fn every_minute_matches_every_minute() {
        let schedule = schedule(EVERY_MINUTE);
        let start = at("2024-02-28T22:00:00Z");
        for minute in 0..(3 * 24 * 60) {
            assert!(schedule.matches(start + jiff::SignedDuration::from_mins(minute)));
        }
    }

    #[test]
    fn lists_ranges_and_steps() {
        let hour = "2024-05-06T10:00:00Z";
        assert_eq!(minutes_matched("*/15 * * * *", hour), [0, 15, 30, 45]);
        assert_eq!(
            minutes_matched("1-30/5 * * * *", hour),
            [1, 6, 11, 16, 21, 26]
        );
        assert_eq!(
            minutes_matched("5/10 * * * *", hour),
            [5, 15, 25, 35, 45, 55]
        );
        assert_eq!(minutes_matched("0,30,59 * * * *", hour), [0, 30, 59]);
        assert_eq!(
            minutes_matched("10-12,40/20,3 * * * *", hour),
            [3, 10, 11, 12, 40]
        );
        assert_eq!(minutes_matched("*/100 * * * *", hour), [0]);
        assert_eq!(minutes_matched("0 9 * * *", hour), Vec::<i64>::new());
        assert_eq!(minutes_matched("0 10 * * *", hour), [0]);
        assert_eq!(minutes_matched("* 8-18/2 * * *", hour).len(), 60);
    }

    #[test]
    fn matching_is_in_utc_on_the_minute() {
        let schedule = schedule("30 7 * * *");
        assert!(schedule.matches(at("2024-05-06T07:30:00Z")));
        assert!(schedule.matches(at("2024-05-06T07:30:59.999Z")));
        assert!(schedule.matches(at("2024-05-06T09:30:00+02:00")));
        assert!(!schedule.matches(at("2024-05-06T07:31:00Z")));
        assert!(!schedule.matches(at("2024-05-06T07:29:59Z")));
        assert!(!schedule.matches(at("2024-05-06T07:30:00+02:00")));
    }

    #[test]
    fn sunday_is_0_and_7() {
        // 2024-01-07 is a Sunday, 2024-01-08 a Monday.
        for sunday in ["0 0 * * 0", "0 0 * * 7", "0 0 * * 6-7", "0 0 * * 5/2"] {
            assert_eq!(
                days_matched(sunday, "2024-01-07", 7)
                    .first()
                    .map(String::as_str),
                Some("2024-01-07"),
                "{sunday}"
            );
            assert!(
                !days_matched(sunday, "2024-01-08", 5)
                    .iter()
                    .any(|day| day == "2024-01-08"),
                "{sunday} does not match a Monday"
            );
        }
        assert_eq!(
            days_matched("0 0 * * 1-5", "2024-01-06", 9),
            [
                "2024-01-08",
                "2024-01-09",
                "2024-01-10",
                "2024-01-11",
                "2024-01-12"
            ]
        );
        assert_eq!(
            days_matched("0 0 * * 0,7", "2024-01-01", 14),
            ["2024-01-07", "2024-01-14"]
        );
    }

    #[test]
    fn restricted_day_fields_are_or_ed() {
        // January 2024: Fridays are the 5th, 12th, 19th and 26th.
        assert_eq!(
            days_matched("0 0 13 * 5", "2024-01-01", 31),
            [
                "2024-01-05",
                "2024-01-12",
                "2024-01-13",
                "2024-01-19",
                "2024-01-26"
            ]
        );
        assert_eq!(
            days_matched("0 0 1,15 * 0", "2024-01-01", 31),
            [
                "2024-01-01",
                "2024-01-07",
                "2024-01-14",
                "2024-01-15",
                "2024-01-21",
                "2024-01-28"
            ]
        );
        // Only a literal `*` leaves a day field unrestricted.
        assert_eq!(
            days_matched("0 0 */10 * 5", "2024-01-01", 31),
            [
                "2024-01-01",
                "2024-01-05",
                "2024-01-11",
                "2024-01-12",
                "2024-01-19",
                "2024-01-21",
                "2024-01-26",
                "2024-01-31"
            ]
        );
    }

    #[test]
    fn one_unrestricted_day_field_leaves_the_other_alone() {
        assert_eq!(
            days_matched("0 0 13 * *", "2024-01-01", 60),
            ["2024-01-13", "2024-02-13"]
        );
        assert_eq!(
            days_matched("0 0 * * 5", "2024-01-01", 14),
            ["2024-01-05", "2024-01-12"]
        );
        assert_eq!(
            days_matched("0 0 * 2 5", "2024-01-20", 21),
            ["2024-02-02", "2024-02-09"]
        );
    }

    #[test]
    fn month_boundaries() {
        assert_eq!(
            days_matched("0 0 31 * *", "2024-01-01", 366),
            [
                "2024-01-31",
                "2024-03-31",
                "2024-05-31",
                "2024-07-31",
                "2024-08-31",
                "2024-10-31",
                "2024-12-31"
            ]
        );
        let first_of_month = schedule("0 0 1 * *");
        assert!(first_of_month.matches(at("2024-02-01T00:00:00Z")));
        assert!(!first_of_month.matches(at("2024-01-31T23:59:00Z")));
        let end_of_day = schedule("59 23 * * *");
        assert!(end_of_day.matches(at("2024-01-31T23:59:00Z")));
        assert!(!end_of_day.matches(at("2024-02-01T00:00:00Z")));
        let december = schedule("* * * 12 *");
        assert!(december.matches(at("2024-12-31T23:59:00Z")));
        assert!(!december.matches(at("2025-01-01T00:00:00Z")));
        assert_eq!(days_matched("0 0 * 3-4 *", "2024-02-28", 3), ["2024-03-01"]);
    }

    #[test]
    fn leap_day() {
        assert_eq!(
            days_matched("0 0 29 2 *", "2020-01-01", 9 * 366),
            ["2020-02-29", "2024-02-29", "2028-02-29"]
        );
        assert_eq!(
            days_matched("0 0 * 2 *", "2023-02-27", 4),
            ["2023-02-27", "2023-02-28"]
        );
        assert_eq!(
            days_matched("0 0 * 2 *", "2024-02-27", 4),
            ["2024-02-27", "2024-02-28", "2024-02-29"]
        );
    }
}
