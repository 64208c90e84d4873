//! Making text from files and children safe to show: a child's stderr line
//! ends up in a marker's `reason`, and marker values end up on a terminal.
//! Control, bidirectional-override and invisible characters are removed, so
//! a hostile line cannot move the cursor, reorder text or hide content.

/// Whether `ch` must never reach a terminal or a marker.
pub fn is_unsafe_char(ch: char) -> bool {
    ch.is_control()
        || matches!(
            ch,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` without unsafe characters, trimmed, and clamped to `max_chars`
/// characters (the last one becomes `…` when something was cut).
pub fn clean_line(text: &str, max_chars: usize) -> String {
    let cleaned: String = text.chars().filter(|ch| !is_unsafe_char(*ch)).collect();
    let trimmed = cleaned.trim();
    if trimmed.chars().count() <= max_chars {
        return trimmed.to_string();
    }
    let mut clamped: String = trimmed.chars().take(max_chars.saturating_sub(1)).collect();
    clamped.push('…');
    clamped
}

/// The last line of `text` that has something left after cleaning.
pub fn last_meaningful_line(text: &str, max_chars: usize) -> Option<String> {
    text.lines()
        .rev()
        .map(|line| clean_line(line, max_chars))
        .find(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bidi_and_invisible_characters_are_removed() {
        let hostile = "\x1b[31mred\x1b[0m \u{202E}evil\u{202C} zero\u{200B}width\u{FEFF}\tend\r";
        assert_eq!(clean_line(hostile, 200), "[31mred[0m evil zerowidthend");
    }

    #[test]
    fn long_lines_are_clamped_with_an_ellipsis() {
        let long = "x".repeat(500);
        let clamped = clean_line(&long, 200);
        assert_eq!(clamped.chars().count(), 200);
        assert!(clamped.ends_with('…'));
        assert_eq!(clean_line("short", 200), "short");
    }

    #[test]
    fn the_last_meaningful_line_skips_blank_and_invisible_lines() {
        let text = "first\nsecond error\n\u{200B}\n   \n";
        assert_eq!(
            last_meaningful_line(text, 200).as_deref(),
            Some("second error")
        );
        assert_eq!(last_meaningful_line("\n\n", 200), None);
    }
}
