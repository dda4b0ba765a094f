//! Scripted labelers: rules over the text that rank K completions as a person with one taste would.
//! They stand in for a person in tests, in `tinyrlhf rank --labeler`, and in the page's "rank for
//! me". Names combine with `+` (`correct+concise`): the first rule decides, the next breaks its ties.
//! Remaining ties go to the lower index, so a ranking is always a deterministic permutation.

use std::fmt;
use std::str::FromStr;

use crate::style::{EXCITED_OPENERS, POLITE_CLOSERS, POLITE_OPENERS};
use crate::tasks::check;

/// One taste.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Fewer words is better.
    Concise,
    /// More please/thank-you markers is better.
    Polite,
    /// More exclamations and excitement is better.
    Enthusiastic,
    /// A correct answer beats an uncheckable one, which beats a wrong one.
    Correct,
}

impl Rule {
    pub const ALL: [Rule; 4] = [Rule::Concise, Rule::Polite, Rule::Enthusiastic, Rule::Correct];

    pub fn name(self) -> &'static str {
        match self {
            Rule::Concise => "concise",
            Rule::Polite => "polite",
            Rule::Enthusiastic => "enthusiastic",
            Rule::Correct => "correct",
        }
    }

    /// Higher is preferred.
    pub fn score(self, prompt: &str, response: &str) -> f64 {
        let text = response.to_lowercase();
        let count = |markers: &[&str]| markers.iter().map(|m| text.matches(m.trim()).count()).sum::<usize>() as f64;
        match self {
            Rule::Concise => -(text.split_whitespace().count() as f64),
            Rule::Polite => count(&POLITE_OPENERS) + count(&POLITE_CLOSERS) + count(&["please", "thank"]) * 0.5,
            Rule::Enthusiastic => text.matches('!').count() as f64 + count(&EXCITED_OPENERS),
            Rule::Correct => match check(prompt, response) {
                Some(true) => 1.0,
                None => 0.5,
                Some(false) => 0.0,
            },
        }
    }
}

/// A labeler: one rule, or several in priority order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labeler {
    rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown labeler {0:?}; use concise, polite, enthusiastic or correct, or several joined by '+'")]
pub struct UnknownLabeler(pub String);

impl FromStr for Labeler {
    type Err = UnknownLabeler;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let rules = name
            .split('+')
            .map(|part| Rule::ALL.into_iter().find(|r| r.name() == part.trim()).ok_or_else(|| UnknownLabeler(name.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
    }
}

impl fmt::Display for Labeler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.rules.iter().map(|r| r.name()).collect();
        f.write_str(&names.join("+"))
    }
}

impl Labeler {
    /// The labeler's scores of one response, rule by rule.
    pub fn scores(&self, prompt: &str, response: &str) -> Vec<f64> {
        self.rules.iter().map(|r| r.score(prompt, response)).collect()
    }

    /// Indices of `completions`, best first.
    pub fn rank(&self, prompt: &str, completions: &[String]) -> Vec<usize> {
        let scores: Vec<Vec<f64>> = completions.iter().map(|c| self.scores(prompt, c)).collect();
        let mut order: Vec<usize> = (0..completions.len()).collect();
        order.sort_by(|&a, &b| {
            let by_rules = scores[b].iter().zip(&scores[a]).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne());
            by_rules.unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
        });
        order
    }

    /// A ranking of the completions the labeler can tell apart: of completions it scores equally
    /// only the first is kept, since ordering a tie would teach a reward model a coin flip. Each
    /// kept one keeps its `finished` flag (none when `finished` is empty). `None` when fewer than
    /// two distinct completions remain.
    pub fn strict_ranking(&self, prompt: &str, completions: &[String], finished: &[bool]) -> Option<crate::Ranking> {
        let mut kept: Vec<usize> = Vec::new();
        for (i, c) in completions.iter().enumerate() {
            if kept.iter().all(|&k| self.prefers(prompt, &completions[k], c) || self.prefers(prompt, c, &completions[k])) {
                kept.push(i);
            }
        }
        let (texts, finished) = crate::formats::keep(&kept, completions, finished);
        (texts.len() >= 2).then(|| crate::Ranking {
            prompt: prompt.to_owned(),
            ranking: self.rank(prompt, &texts),
            completions: texts,
            finished,
        })
    }

    /// Blind A/B verdicts on answer pairs `(ours[i], theirs[i])` to `prompts[i]`: the labeler sees
    /// only the two texts. The one win/tie/loss count every edge reports.
    pub fn tally<S: AsRef<str>>(&self, prompts: &[S], ours: &[String], theirs: &[String]) -> Tally {
        let mut tally = Tally::default();
        for ((prompt, a), b) in prompts.iter().zip(ours).zip(theirs) {
            if self.prefers(prompt.as_ref(), a, b) {
                tally.wins += 1;
            } else if self.prefers(prompt.as_ref(), b, a) {
                tally.losses += 1;
            } else {
                tally.ties += 1;
            }
        }
        tally
    }

    /// Whether the labeler strictly prefers `a` to `b` (a tie is no preference).
    pub fn prefers(&self, prompt: &str, a: &str, b: &str) -> bool {
        let (sa, sb) = (self.scores(prompt, a), self.scores(prompt, b));
        sa.iter().zip(&sb).map(|(x, y)| x.total_cmp(y)).find(|o| o.is_ne()) == Some(std::cmp::Ordering::Greater)
    }
}

/// A labeler's verdicts on pairs of answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

impl Tally {
    /// Wins over all verdicts, a tie counting half (0.5 when there are none).
    pub fn win_rate(&self) -> f64 {
        let n = self.wins + self.ties + self.losses;
        if n == 0 { 0.5 } else { (self.wins as f64 + 0.5 * self.ties as f64) / n as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(labeler: &str, prompt: &str, texts: &[&str]) -> Vec<usize> {
        let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
        labeler.parse::<Labeler>().unwrap().rank(prompt, &texts)
    }

    #[test]
    fn concise_prefers_fewer_words() {
        let order = rank("concise", "what is 2 plus 3?", &["sure! 2 plus 3 is 5. i hope this helps.", "5.", "2 plus 3 is 5."]);
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn polite_prefers_please_and_thank_you() {
        let order = rank("polite", "hello!", &["hello.", "sure! hello. thank you for asking.", "of course. hello."]);
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn enthusiastic_prefers_exclamations() {
        let order =
            rank("enthusiastic", "what colour is the frog?", &["the frog is green.", "wow! the frog is green!", "the frog is green!"]);
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn correct_puts_right_answers_above_wrong_ones() {
        let order = rank("correct", "what is 4 plus 3?", &["4 plus 3 is 8.", "i think 4 plus 3 is 7.", "4 plus 3 is 6!"]);
        assert_eq!(order[0], 1);
        let order = rank("correct", "what colour is the frog?", &["the frog is red.", "the frog is green."]);
        assert_eq!(order, vec![1, 0]);
    }

    #[test]
    fn ties_go_to_the_lower_index_and_combined_rules_break_ties() {
        let texts = ["7.", "4 plus 3 is 7.", "8."];
        assert_eq!(rank("concise", "what is 4 plus 3?", &texts), vec![0, 2, 1]);
        assert_eq!(rank("correct+concise", "what is 4 plus 3?", &texts), vec![0, 1, 2]);
        let l: Labeler = "concise".parse().unwrap();
        assert!(!l.prefers("q", "a b", "c d"));
        assert!(l.prefers("q", "a", "c d"));
    }

    #[test]
    fn strict_rankings_drop_ties_and_need_two_distinct_completions() {
        let l: Labeler = "concise".parse().unwrap();
        let texts: Vec<String> = ["a b", "c d", "e", "f g h"].iter().map(|s| s.to_string()).collect();
        let r = l.strict_ranking("q", &texts, &[]).unwrap();
        assert_eq!(r.completions, vec!["a b", "e", "f g h"]);
        assert_eq!(r.ranking, vec![1, 0, 2]);
        assert!(l.strict_ranking("q", &texts[..2], &[]).is_none());
        // The kept answers keep their flags: "c d" (a tie with "a b") goes, and its flag with it.
        let r = l.strict_ranking("q", &texts, &[true, false, true, false]).unwrap();
        assert_eq!(r.finished, vec![true, true, false]);
    }

    #[test]
    fn unknown_names_are_refused() {
        assert!("kind".parse::<Labeler>().is_err());
        assert!("correct+".parse::<Labeler>().is_err());
        assert_eq!("correct+concise".parse::<Labeler>().unwrap().to_string(), "correct+concise");
    }

    #[test]
    fn a_tally_counts_wins_ties_and_losses_and_a_tie_is_half_a_win() {
        let l: Labeler = "concise".parse().unwrap();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let tally = l.tally(&["q"; 3], &s(&["a", "a b", "a b c"]), &s(&["a b", "c d", "a"]));
        assert_eq!(tally, Tally { wins: 1, ties: 1, losses: 1 });
        assert_eq!(tally.win_rate(), 0.5);
        assert_eq!(Tally { wins: 3, ties: 1, losses: 0 }.win_rate(), 0.875);
    }
}
