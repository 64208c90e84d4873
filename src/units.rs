//! Numbers as people read them in text output: `12,345 rows`, `2.1 MiB`,
//! `12 s ago`, `1.4 s`. JSON output never uses these; it carries raw
//! numbers.

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

/// Bytes in binary (IEC) units, one decimal place from a KiB up:
/// `2.1 MiB`. Binary, because that is what `ls -h`, `du -h` and `free -h`
/// show beside it.
pub fn bytes(number: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if number < 1024 {
        return format!("{number} B");
    }
    let mut value = number as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How long something took: milliseconds under a second, seconds with one
/// decimal under a minute, then [`duration`]'s whole units.
pub fn elapsed(span: Duration) -> String {
    let millis = span.as_millis();
    match millis {
        0..=999 => format!("{millis} ms"),
        1000..=59_999 => format!("{:.1} s", span.as_secs_f64()),
        _ => duration(span),
    }
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
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(2_202_010), "2.1 MiB");
        assert_eq!(bytes(1_048_575), "1.0 MiB");
        assert_eq!(bytes(4_194_304), "4.0 MiB");
        assert_eq!(bytes(472_011_336), "450.1 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn elapsed_times_keep_their_precision() {
        assert_eq!(elapsed(Duration::from_millis(7)), "7 ms");
        assert_eq!(elapsed(Duration::from_millis(1449)), "1.4 s");
        assert_eq!(elapsed(Duration::from_millis(59_900)), "59.9 s");
        assert_eq!(elapsed(Duration::from_secs(300)), "5 min");
    }

    #[test]
    fn durations_take_their_largest_whole_unit() {
        assert_eq!(duration(Duration::from_secs(12)), "12 s");
        assert_eq!(duration(Duration::from_secs(300)), "5 min");
        assert_eq!(duration(Duration::from_secs(3 * 3600)), "3 h");
        assert_eq!(duration(Duration::from_secs(3 * 86_400)), "3 d");
    }
}
