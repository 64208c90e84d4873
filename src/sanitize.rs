//! Cleaning of untrusted text before it reaches a terminal or a marker.
//!
//! A status file, a marker reason, an etag or a child's stderr line comes
//! from disk, a server or another process, so it may carry escape sequences,
//! bidi overrides or zero-width characters that would forge or hide text.
//! Text output passes every such value through [`label`] or [`error_text`];
//! JSON output never does (it prints values byte-exact). The one rule set
//! lives here so status, `hyp actions` and the reconciler cannot disagree.

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
/// trim, then clamp to `max` characters with `...` counted inside the limit.
pub fn clean(raw: &str, max: usize) -> String {
    let kept: String = raw.chars().filter(|ch| !is_hidden(*ch)).collect();
    let kept: Vec<char> = kept.trim().chars().collect();
    if kept.len() <= max {
        return kept.into_iter().collect();
    }
    let mut clamped: String = kept[..max.saturating_sub(3)].iter().collect();
    clamped.push_str("...");
    clamped
}

/// The last line of `text` that has something left after cleaning (a
/// child's stderr tail for a marker's reason).
pub fn last_meaningful_line(text: &str, max: usize) -> Option<String> {
    text.lines()
        .rev()
        .map(|line| clean(line, max))
        .find(|line| !line.is_empty())
}

/// Controls (C0, DEL, C1), line and paragraph separators, bidi formatting,
/// and invisible formatting characters.
pub fn is_hidden(ch: char) -> bool {
    matches!(
        ch as u32,
        0x00..=0x1f
            | 0x7f..=0x9f
            | 0x00ad
            | 0x061c
            | 0x180e
            | 0x200b..=0x200f
            | 0x2028..=0x202e
            | 0x2060..=0x206f
            | 0xfe00..=0xfe0f
            | 0xfeff
            | 0xfff9..=0xfffb
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_controls_bidi_and_invisibles() {
        assert_eq!(label("ok\x1b[31mred\x1b[0m\n"), "ok[31mred[0m");
        assert_eq!(
            label("a\u{202e}b\u{2066}c\u{200b}d\u{feff}e\u{2028}f"),
            "abcdef"
        );
        assert_eq!(label("\u{0085}tab\there"), "tabhere");
        assert_eq!(label("héllo wörld ✓"), "héllo wörld ✓");
        assert_eq!(label("\u{200b}\u{200b}"), "");
    }

    #[test]
    fn the_last_meaningful_line_skips_blank_tails() {
        let stderr = "starting\nhyp backfill: local-only list is malformed\n\u{200b}\n  \n";
        assert_eq!(
            last_meaningful_line(stderr, 200).as_deref(),
            Some("hyp backfill: local-only list is malformed")
        );
        assert_eq!(last_meaningful_line("\n\n", 200), None);
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
