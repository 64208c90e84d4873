//! Numbers as people read them in text output: `12,345 rows`, `2.1 MB`,
//! `12 s ago`. JSON output never uses these; it carries raw numbers.

use std::time::Duration;

/// `12345` as `12,345`.
pub fn count(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `n` followed by `singular` or `plural`, the number grouped.
pub fn counted(number: u64, singular: &str, plural: &str) -> String {
    format!(
        "{} {}",
        count(number),
        if number == 1 { singular } else { plural }
    )
}

/// Bytes in decimal units, one decimal place above a kilobyte: `2.1 MB`.
pub fn bytes(number: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if number < 1000 {
        return format!("{number} B");
    }
    let mut value = number as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in its largest whole unit: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn duration(span: Duration) -> String {
    let secs = span.as_secs();
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(392_691), "392,691");
        assert_eq!(count(12_345_678), "12,345,678");
        assert_eq!(counted(1, "row", "rows"), "1 row");
        assert_eq!(counted(1532, "row", "rows"), "1,532 rows");
    }

    #[test]
    fn bytes_use_decimal_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2_100_000), "2.1 MB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(bytes(596_000_000), "596.0 MB");
        assert_eq!(bytes(4_194_304), "4.2 MB");
    }

    #[test]
    fn durations_take_their_largest_whole_unit() {
        assert_eq!(duration(Duration::from_secs(12)), "12 s");
        assert_eq!(duration(Duration::from_secs(300)), "5 min");
        assert_eq!(duration(Duration::from_secs(3 * 3600)), "3 h");
        assert_eq!(duration(Duration::from_secs(3 * 86_400)), "3 d");
    }
}
