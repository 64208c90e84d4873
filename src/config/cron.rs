//! The strict 5-field cron grammar that sink `config.schedule` must follow
//! (`sink_schedule_invalid`). Deliberately narrow, as in the reference: no
//! `@hourly` aliases, no seconds field, no names, printable ASCII only.

/// `(min, max)` of minute, hour, day of month, month, day of week.
const FIELD_RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];

/// Whether `expression` is a valid 5-field cron expression.
pub fn is_cron_expression(expression: &str) -> bool {
    if expression.is_empty() || !expression.bytes().all(|byte| (b' '..=b'~').contains(&byte)) {
        return false;
    }
    if expression.starts_with('@') {
        return false;
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    fields.len() == FIELD_RANGES.len()
        && fields
            .iter()
            .zip(FIELD_RANGES)
            .all(|(field, (min, max))| is_field(field, min, max))
}

fn is_field(field: &str, min: u32, max: u32) -> bool {
    !field.is_empty() && field.split(',').all(|part| is_part(part, min, max))
}

/// A part is `*`, `N`, `N-M` (N <= M) or `<part>/step` with step > 0.
fn is_part(part: &str, min: u32, max: u32) -> bool {
    if part == "*" {
        return true;
    }
    if let Some((base, step)) = part.rsplit_once('/') {
        let step_ok = parse_number(step).is_some_and(|step| step > 0);
        return step_ok && !base.is_empty() && !base.contains('/') && is_part(base, min, max);
    }
    if let Some((low, high)) = part.split_once('-') {
        return match (parse_number(low), parse_number(high)) {
            (Some(low), Some(high)) => low >= min && high <= max && low <= high,
            _ => false,
        };
    }
    parse_number(part).is_some_and(|value| (min..=max).contains(&value))
}

/// Digits only (no sign, no spaces); too large counts as invalid.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_expressions() {
        for good in [
            "0 * * * *",
            "*/5 * * * *",
            "0 0 1 1 0",
            "59 23 31 12 7",
            "0-30/10 1,2,3 1-31 */2 1-5",
            "  0 * * * *  ",
        ] {
            assert!(is_cron_expression(good), "{good:?} should be valid");
        }
    }

    #[test]
    fn rejects_aliases_and_malformed_fields() {
        for bad in [
            "",
            "@hourly",
            "@daily",
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
            "1,,2 * * * *",
            "*/5/5 * * * *",
            "/5 * * * *",
            "0 * * * MON",
            "０ * * * *",
            "0\t*\t*\t*\t*",
            "99999999999 * * * *",
        ] {
            assert!(!is_cron_expression(bad), "{bad:?} should be invalid");
        }
    }
}
