//! Style attributes: the same answer said long or short, politely or not, with excitement, with
//! hedging, formally or casually, and now and then wrongly. Demonstrations mix them at random so
//! the SFT model samples a mixture, and rankings have something to choose between.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::tasks::Task;
use crate::world::pick;

/// How one response is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Style {
    /// Adds a second, related sentence.
    pub verbose: bool,
    /// Says please/thank-you things.
    pub polite: bool,
    /// Exclamations and excitement.
    pub enthusiastic: bool,
    /// "i think", "maybe".
    pub hedging: bool,
    /// "certainly" rather than "ok".
    pub formal: bool,
    /// Gives the task's wrong answer.
    pub wrong: bool,
}

impl Style {
    /// Each attribute on with its own probability; wrong answers are rare (one in ten).
    pub fn random(rng: &mut ChaCha8Rng) -> Self {
        Self {
            verbose: rng.random_bool(0.4),
            polite: rng.random_bool(0.4),
            enthusiastic: rng.random_bool(0.35),
            hedging: rng.random_bool(0.25),
            formal: rng.random_bool(0.4),
            wrong: rng.random_bool(0.1),
        }
    }
}

/// Markers the labelers count: a polite answer contains one of these…
pub const POLITE_OPENERS: [&str; 3] = ["sure! ", "of course. ", "with pleasure. "];
pub const POLITE_CLOSERS: [&str; 3] = [" i hope this helps.", " thank you for asking.", " please ask me more."];
/// …an enthusiastic one these.
pub const EXCITED_OPENERS: [&str; 3] = ["great question! ", "wow! ", "oh, i love this! "];
pub const HEDGES: [&str; 3] = ["i think ", "maybe ", "i am not sure, but "];

/// The task's answer rendered in `style`.
pub fn render(task: &Task, style: Style, rng: &mut ChaCha8Rng) -> String {
    let mut body = if style.wrong { task.wrong.clone() } else { task.answer.clone() };
    if style.verbose {
        body = format!("{body} {}", task.extra);
    }
    if style.enthusiastic {
        body = exclaim(&body);
    }
    if style.hedging {
        body = format!("{}{body}", pick(rng, &HEDGES));
    }
    let mut out = String::new();
    if style.enthusiastic && rng.random_bool(0.6) {
        out.push_str(pick(rng, &EXCITED_OPENERS));
    }
    if style.polite {
        out.push_str(pick(rng, &POLITE_OPENERS));
    }
    out.push_str(match (style.formal, rng.random_bool(0.5)) {
        (true, true) => "certainly. ",
        (false, true) => "ok, ",
        _ => "",
    });
    out.push_str(&body);
    if style.polite && rng.random_bool(0.7) {
        out.push_str(pick(rng, &POLITE_CLOSERS));
    }
    out
}

/// Turns sentence-ending full stops into exclamation marks.
fn exclaim(text: &str) -> String {
    let mut out = text.replace(". ", "! ");
    if out.ends_with('.') {
        out.pop();
        out.push('!');
    }
    out
}
