//! How an error reaches a person, at both edges (the CLI's stderr, the page's status lines): a
//! message that quotes a value from a file (a 100 MB token string, a template's runaway output)
//! shows its start and how much was left out, not megabytes.

/// The longest line of a message shown whole.
pub const MESSAGE_LINE_CHARS: usize = 400;

/// `message` with every line longer than [`MESSAGE_LINE_CHARS`] cut to its first 300 characters
/// and a count of the rest.
pub fn shown(message: &str) -> String {
    let lines = message.lines().map(|line| {
        let count = line.chars().count();
        if count <= MESSAGE_LINE_CHARS {
            return line.to_owned();
        }
        let kept: String = line.chars().take(MESSAGE_LINE_CHARS - 100).collect();
        format!("{kept}… ({} more characters not shown)", count - kept.chars().count())
    });
    lines.collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_quoting_a_huge_value_shows_its_start_and_the_count() {
        let message = format!("tokenizer.json: unknown token {:?}\nsee the file", "x".repeat(100_000_000 / 1000));
        let shown = shown(&message);
        assert!(shown.len() < 1000 && shown.contains("more characters not shown") && shown.ends_with("\nsee the file"), "{shown}");
        assert_eq!(super::shown("short\nlines"), "short\nlines");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let shown = shown(&"é".repeat(1000));
        assert!(shown.starts_with(&"é".repeat(300)) && shown.ends_with("(700 more characters not shown)"), "{shown}");
    }
}
