//! "Did you mean": the closest known name to a mistyped one, by edit
//! distance. Used for providers (`hyp backfill clade`) and plugin names in
//! `hyp config validate`; clap does the same for subcommands itself.

/// The known name closest to `given`, when it is within a small edit
/// distance: one edit for names up to 4 characters, two for up to 8,
/// three beyond. Ties go to the first candidate.
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = match given.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    known
        .into_iter()
        .map(|name| (levenshtein(given, name), name))
        .filter(|(distance, _)| *distance > 0 && *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Insertions, deletions and substitutions (by character) that turn `a`
/// into `b`.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (row, a_char) in a.chars().enumerate() {
        current[0] = row + 1;
        for (column, b_char) in b.iter().enumerate() {
            let substitute = previous[column] + usize::from(a_char != *b_char);
            current[column + 1] = substitute
                .min(previous[column + 1] + 1)
                .min(current[column] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_single_character_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("claude", "claude"), 0);
        assert_eq!(levenshtein("clade", "claude"), 1);
        assert_eq!(levenshtein("cluade", "claude"), 2);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("ünï", "uni"), 2);
    }

    #[test]
    fn only_close_names_are_suggested() {
        let known = ["claude", "codex"];
        assert_eq!(closest("clade", known), Some("claude"));
        assert_eq!(closest("codx", known), Some("codex"));
        assert_eq!(closest("Claude", known), Some("claude"));
        assert_eq!(closest("claude", known), None, "an exact name is no typo");
        assert_eq!(closest("ghost", known), None);
        assert_eq!(closest("x", known), None);
        assert_eq!(
            closest("@hypaware/claud", ["@hypaware/claude", "@hypaware/codex"]),
            Some("@hypaware/claude")
        );
    }
}
