//! Whether a typed prompt is about the small world the shipped model learned: its words against
//! the words of the world's own texts (pretraining sentences, demonstrations, prompts). A prompt
//! with words the world never uses ("Write a poem about the sea") gets nonsense from that model;
//! the page says so, with a prompt of the world that shares the most words with it.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Serialize;

/// What the shipped model knows, in a line a person reads.
pub const WORLD: &str = "a small world of twelve animals (their colours, sounds, homes and food), colours, food, places, the weather, names, counting, and tiny stories";

/// How a prompt sits in the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// The prompt's words the world's texts never use, in the order they appear.
    pub unknown: Vec<String>,
    /// A training prompt of the world to try instead: the one sharing the most words with this one.
    pub example: String,
    pub world: &'static str,
}

/// Texts enough to meet every word of the world (its word lists are fixed; the seed only orders them).
const DEMONSTRATIONS: usize = 3000;
const CORPUS_LINES: usize = 2000;
const EXAMPLES: usize = 200;

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'').filter(|w| !w.is_empty()).map(str::to_lowercase)
}

fn world_words() -> &'static HashSet<String> {
    static WORDS: OnceLock<HashSet<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut set: HashSet<String> =
            crate::pretraining_corpus(0, CORPUS_LINES).iter().flat_map(|l| words(l).collect::<Vec<_>>()).collect();
        for d in crate::demonstrations(0, DEMONSTRATIONS) {
            set.extend(words(&d.prompt));
            set.extend(words(&d.response));
        }
        set
    })
}

fn examples() -> &'static [String] {
    static EXAMPLES_: OnceLock<Vec<String>> = OnceLock::new();
    EXAMPLES_.get_or_init(|| crate::training_prompts(0, EXAMPLES).into_iter().map(|p| p.prompt).collect())
}

/// Where `prompt` stands against the world's words, with a prompt of the world to try.
pub fn coverage(prompt: &str) -> Coverage {
    let known = world_words();
    let mut unknown: Vec<String> = Vec::new();
    for word in words(prompt) {
        if !known.contains(&word) && !unknown.contains(&word) {
            unknown.push(word);
        }
    }
    let asked: HashSet<String> = words(prompt).filter(|w| known.contains(w)).collect();
    // Shared words over all words of both (Jaccard), so a long story does not win on "the" alone.
    let likeness = |p: &String| {
        let theirs: HashSet<String> = words(p).collect();
        let shared = theirs.intersection(&asked).count();
        shared as f64 / (theirs.len() + asked.len() - shared).max(1) as f64
    };
    // The first of the most alike, so the same prompt always gets the same example.
    let mut best: Option<(&String, f64)> = None;
    for p in examples() {
        let like = likeness(p);
        if best.is_none_or(|(_, b)| like > b) {
            best = Some((p, like));
        }
    }
    Coverage { unknown, example: best.map(|(p, _)| p.clone()).unwrap_or_default(), world: WORLD }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_of_the_world_have_no_unknown_words() {
        for p in crate::held_out_prompts(7, 50) {
            assert_eq!(coverage(&p.prompt).unknown, Vec::<String>::new(), "{}", p.prompt);
        }
    }

    #[test]
    fn prompts_outside_the_world_name_their_new_words_and_get_an_example_that_shares_the_known_ones() {
        let c = coverage("Write a short poem about the sea.");
        assert!(c.unknown.contains(&"poem".to_string()) && c.unknown.contains(&"sea".to_string()), "{:?}", c.unknown);
        assert!(!c.unknown.contains(&"the".to_string()));
        let tea = coverage("How do I make tea for the frog?");
        assert!(tea.unknown.contains(&"tea".to_string()));
        assert!(tea.example.contains("frog"), "{}", tea.example);
        assert!(coverage(&tea.example).unknown.is_empty());
    }
}
