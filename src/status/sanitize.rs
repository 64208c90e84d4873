//! Cleaning of file-sourced values before they reach a terminal.
//!
//! A status file, a marker reason or an etag comes from disk or from the
//! central server, so it may carry escape sequences, bidi overrides or
//! zero-width characters that would forge or hide text. Text output passes
//! every such value through [`label`] or [`error_text`]; JSON output never
//! does (it prints values byte-exact).

/// Clamp for ordinary values.
pub const LABEL_MAX: usize = 120;
/// Clamp for error strings.
pub const ERROR_MAX: usize = 400;

/// `raw` cleaned and clamped to [`LABEL_MAX`] characters.
pub fn label(raw: &str) -> String {
    clean(raw, LABEL_MAX)
}

/// `raw` cleaned and clamped to [`ERROR_MAX`] characters.
pub fn error_text(raw: &str) -> String {
    clean(raw, ERROR_MAX)
}

/// Delete control, line-separator, bidi and invisible formatting characters,
/// then clamp to `max` characters with `...` counted inside the limit.
pub fn clean(raw: &str, max: usize) -> String {
    let kept: Vec<char> = raw.chars().filter(|ch| !is_hidden(*ch)).collect();
    if kept.len() <= max {
        return kept.into_iter().collect();
    }
    let mut clamped: String = kept[..max.saturating_sub(3)].iter().collect();
    clamped.push_str("...");
    clamped
}

fn is_hidden(ch: char) -> bool {
    matches!(
        ch as u32,
        0x00..=0x1f
            | 0x7f..=0x9f
            | 0x2028
            | 0x2029
            | 0x061c
            | 0x200e
            | 0x200f
            | 0x202a..=0x202e
            | 0x2066..=0x2069
            | 0x00ad
            | 0x180e
            | 0x200b..=0x200d
            | 0x2060..=0x2064
            | 0xfe00..=0xfe0f
            | 0xfeff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_controls_bidi_and_invisibles() {
        assert_eq!(label("ok\x1b[31mred\x1b[0m\n"), "ok[31mred[0m");
        assert_eq!(label("a\u{202e}b\u{2066}c\u{200b}d\u{feff}e\u{2028}f"), "abcdef");
        assert_eq!(label("\u{0085}tab\there"), "tabhere");
        assert_eq!(label("héllo wörld ✓"), "héllo wörld ✓");
        assert_eq!(label("\u{200b}\u{200b}"), "");
    }

    #[test]
    fn clamps_with_the_ellipsis_inside_the_limit() {
        let long = "x".repeat(500);
        assert_eq!(label(&long).chars().count(), LABEL_MAX);
        assert!(label(&long).ends_with("..."));
        assert_eq!(error_text(&long).chars().count(), ERROR_MAX);
        assert_eq!(label(&"y".repeat(LABEL_MAX)), "y".repeat(LABEL_MAX));
    }
}
