//! How an error reaches a person, at both edges (the CLI's stderr, the page's status lines): a
//! message that quotes a value from a file (a 100 MB token string, a template's runaway output)
//! shows its start and how much was left out, not megabytes.

/// The longest line of a message shown whole.
pub const MESSAGE_LINE_CHARS: usize = 400;
/// The most characters of one quoted value (`"…"` or `` `…` ``, as errors quote what they found)
/// shown whole; a longer one keeps its start and its end (a long path keeps its file name).
pub const QUOTED_VALUE_CHARS: usize = 100;

/// `message` with every quoted value longer than [`QUOTED_VALUE_CHARS`] cut to its first 60 and
/// last 20 characters with its length, then every line still longer than [`MESSAGE_LINE_CHARS`]
/// cut to its first 300 characters and a count of the rest.
pub fn shown(message: &str) -> String {
    let lines = message.lines().map(|line| {
        let line = cut_quoted_values(line);
        let count = line.chars().count();
        if count <= MESSAGE_LINE_CHARS {
            return line.to_owned();
        }
        let kept: String = line.chars().take(MESSAGE_LINE_CHARS - 100).collect();
        format!("{kept}… ({} more characters not shown)", count - kept.chars().count())
    });
    lines.collect::<Vec<_>>().join("\n")
}

fn cut_quoted_values(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len().min(4 * MESSAGE_LINE_CHARS));
    let mut i = 0;
    while i < chars.len() {
        let quote = chars[i];
        let close = matches!(quote, '"' | '`').then(|| closing(&chars, i, quote)).flatten();
        let Some(end) = close else {
            out.push(quote);
            i += 1;
            continue;
        };
        let inner = &chars[i + 1..end];
        out.push(quote);
        if inner.len() <= QUOTED_VALUE_CHARS {
            out.extend(inner);
            out.push(quote);
        } else {
            // Never end a kept piece inside an escape (`\"` cut after its backslash).
            let head: String = inner[..60].iter().collect();
            let tail: String = inner[inner.len() - 20..].iter().collect();
            out.push_str(&format!("{}…{}{quote} ({} characters)", head.trim_end_matches('\\'), tail, inner.len()));
        }
        i = end + 1;
    }
    out
}

/// The index of the quote that closes the one at `open` (inside `"…"` a backslash escapes the next
/// character, as Rust's `{:?}` writes them), if the line has one.
fn closing(chars: &[char], open: usize, quote: char) -> Option<usize> {
    let mut j = open + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if quote == '"' => j += 2,
            c if c == quote => return Some(j),
            _ => j += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_quoting_a_huge_value_shows_its_start_and_the_count() {
        let message = format!("tokenizer.json: unknown token {:?}\nsee the file", "x".repeat(100_000_000 / 1000));
        let shown = shown(&message);
        assert!(shown.len() < 1000 && shown.contains("(100000 characters)") && shown.ends_with("\nsee the file"), "{shown}");
        assert_eq!(super::shown("short\nlines"), "short\nlines");
    }

    #[test]
    fn a_long_quoted_value_keeps_its_start_its_end_and_the_words_after_it() {
        let path = format!("/home/me/{}rankings.jsonl", "deep/".repeat(40));
        let value = format!("{}\"quoted\"", "x".repeat(300));
        let message = format!("cannot read `{path}`: line 3: unknown labeler {value:?}; use concise or polite");
        let shown = shown(&message);
        assert!(shown.contains("`/home/me/deep/") && shown.contains("…/deep/rankings.jsonl` (223 characters):"), "{shown}");
        assert!(shown.contains(&format!("\"{}…", "x".repeat(60))) && shown.ends_with("; use concise or polite"), "{shown}");
        assert!(shown.chars().count() < 300 && message.chars().count() > 550, "{shown}");
        let short = "unknown labeler \"consise\" in `a.jsonl`, line 2";
        assert_eq!(super::shown(short), short);
        // An unclosed quote is text like any other.
        assert_eq!(super::shown("it's 6\" tall"), "it's 6\" tall");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // A line long without any quoted value is cut as a whole.
        let shown = shown(&"é".repeat(1000));
        assert!(shown.starts_with(&"é".repeat(300)) && shown.ends_with("(700 more characters not shown)"), "{shown}");
    }
}
