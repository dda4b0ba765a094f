//! The instruction world: tinyrlhf's built-in data, made from a seed, no downloads.
//!
//! Boundary: text and records only — no tokens, no tensors, no files (JSONL comes and goes as
//! strings). Everything is deterministic from the seed: the same seed gives the same corpus,
//! demonstrations and prompts on every machine.
//!
//! - [`pretraining_corpus`]: plain sentences and tiny stories, for a base model that continues text;
//! - [`demonstrations`]: prompts with styled answers across nine task families, for SFT;
//! - [`training_prompts`] / [`held_out_prompts`]: disjoint prompt sets (held-out is decided by the
//!   prompt text, see [`tasks::is_held_out`]) for ranking, PPO and evaluation;
//! - [`labelers`]: rules that rank completions in place of a person;
//! - [`coverage`]: whether a typed prompt is about this world, with one of its prompts to try.

pub mod coverage;
pub mod formats;
pub mod labelers;
pub mod style;
pub mod tasks;
pub mod world;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use coverage::{Coverage, coverage};
pub use formats::{
    Demonstration, FormatError, MAX_FILE_BYTES, MAX_LINE_BYTES, Pair, PromptRecord, Ranking, Record, Samples, decode_text, distinct,
    read_demonstrations, read_jsonl, read_preferences, read_prompts, write_jsonl,
};
pub use labelers::{Labeler, Rule, Tally};
pub use style::Style;
pub use tasks::{Family, Task, check, family_of, is_held_out, make_task};

/// Streams are separated so that, say, asking for more demonstrations never changes the corpus.
fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The most records the built-in world writes to one file (demonstrations, prompts): what the
/// readers take back ([`MAX_FILE_BYTES`] holds about 300,000 of its demonstrations).
pub const MAX_RECORDS: usize = 200_000;
/// The most lines of its pretraining text (about 150 bytes each).
pub const MAX_CORPUS_LINES: usize = 5_000_000;

/// `lines` lines of pretraining text (about 150 bytes each), at most [`MAX_CORPUS_LINES`].
pub fn pretraining_corpus(seed: u64, lines: usize) -> Vec<String> {
    world::pretraining_text(&mut rng(seed, 1), lines.min(MAX_CORPUS_LINES))
}

/// `n` demonstrations (at most [`MAX_RECORDS`]) on training (not held-out) prompts, families in
/// turn, each answer in a random style.
pub fn demonstrations(seed: u64, n: usize) -> Vec<Demonstration> {
    let mut rng = rng(seed, 2);
    let n = n.min(MAX_RECORDS);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let family = Family::ALL[out.len() % Family::ALL.len()];
        let task = make_task(&mut rng, family);
        if is_held_out(&task.prompt) {
            continue;
        }
        let style = Style::random(&mut rng);
        out.push(Demonstration { response: style::render(&task, style, &mut rng), prompt: task.prompt });
    }
    out
}

fn prompts(rng: &mut ChaCha8Rng, n: usize, held_out: bool) -> Vec<PromptRecord> {
    let n = n.min(MAX_RECORDS);
    let mut out: Vec<PromptRecord> = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    let mut misses = 0;
    while out.len() < n && misses < 100_000 {
        let family = Family::ALL[rng.random_range(0..Family::ALL.len())];
        let prompt = make_task(rng, family).prompt;
        if is_held_out(&prompt) == held_out && seen.insert(prompt.clone()) {
            out.push(PromptRecord { prompt });
        } else {
            misses += 1;
        }
    }
    out
}

/// Up to `n` (and [`MAX_RECORDS`]) distinct training prompts (for sampling, ranking and PPO).
pub fn training_prompts(seed: u64, n: usize) -> Vec<PromptRecord> {
    prompts(&mut rng(seed, 3), n, false)
}

/// Up to `n` distinct held-out prompts, never seen in demonstrations or training prompts.
pub fn held_out_prompts(seed: u64, n: usize) -> Vec<PromptRecord> {
    prompts(&mut rng(seed, 4), n, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_data_and_another_seed_differs() {
        assert_eq!(demonstrations(1, 50), demonstrations(1, 50));
        assert_eq!(pretraining_corpus(1, 20), pretraining_corpus(1, 20));
        assert_ne!(demonstrations(1, 50), demonstrations(2, 50));
    }

    #[test]
    fn demonstrations_cover_every_family_with_varied_styles() {
        let demos = demonstrations(3, 900);
        for family in Family::ALL {
            assert!(demos.iter().filter(|d| family_of(&d.prompt) == Some(family)).count() >= 90, "{family:?}");
        }
        let exclaiming = demos.iter().filter(|d| d.response.contains('!')).count();
        let hedging = demos.iter().filter(|d| d.response.contains("i think") || d.response.contains("maybe")).count();
        assert!(exclaiming > 200 && hedging > 100, "{exclaiming} {hedging}");
    }

    #[test]
    fn correct_styles_check_correct_and_wrong_ones_check_wrong() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..500 {
            for family in Family::ALL {
                let task = make_task(&mut rng, family);
                let right = Style { verbose: true, polite: true, ..Default::default() };
                let wrong = Style { wrong: true, hedging: true, ..Default::default() };
                let (r, w) = (style::render(&task, right, &mut rng), style::render(&task, wrong, &mut rng));
                match check(&task.prompt, &r) {
                    Some(ok) => {
                        assert!(ok, "{family:?}: {} -> {r}", task.prompt);
                        assert_eq!(check(&task.prompt, &w), Some(false), "{family:?}: {} -> {w}", task.prompt);
                    }
                    None => assert!(matches!(family, Family::Story | Family::Greeting), "{family:?} unchecked"),
                }
            }
        }
    }

    #[test]
    fn held_out_prompts_never_appear_in_training_data() {
        let held: std::collections::HashSet<String> = held_out_prompts(7, 200).into_iter().map(|p| p.prompt).collect();
        assert!(held.len() >= 150, "{}", held.len());
        assert!(demonstrations(7, 3000).iter().all(|d| !held.contains(&d.prompt)));
        assert!(training_prompts(7, 500).iter().all(|p| !held.contains(&p.prompt)));
        let arithmetic = held.iter().filter(|p| family_of(p) == Some(Family::Arithmetic)).count();
        assert!(arithmetic >= 10, "{arithmetic}");
    }

    #[test]
    fn pretraining_text_has_no_instructions() {
        let corpus = pretraining_corpus(9, 500);
        let bytes: usize = corpus.iter().map(String::len).sum();
        assert!(bytes > 40_000, "{bytes}");
        assert!(corpus.iter().all(|l| !l.contains('?') && !l.contains("<|")));
    }
}
