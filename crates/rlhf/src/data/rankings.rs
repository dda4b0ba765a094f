//! Rankings as the trainers see them: token ids, the held-out split and the calibration answers.
//! Decided once here for every edge (the CLI, the page) and every trainer that learns from
//! rankings (the reward model; DPO later).
//!
//! A prompt too long for the context loses its beginning, as it does when sampling, so one long
//! prompt typed into the page cannot block every later training run. A ranking that still cannot
//! be used (an answer longer than the context, or a record that is not a ranking) is skipped and
//! listed, never fatal: the edges show how many and why.

use tinyrlhf_data::Ranking;
use tinyrlhf_tokenizer::Tokenizer;

use crate::checkpoint::TrainError;
use crate::data::examples::Example;

/// One ranking as token ids: each completion is the whole chat (prompt, response, and EOS unless
/// the answer was cut at the sampler's token limit: then it ends where the sampler stopped, as a
/// cut rollout does when PPO, GRPO or RLOO score it, so the reward model learns to score cut
/// answers where it will be asked to).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRanking {
    pub sequences: Vec<Vec<u32>>,
    /// Indices into `sequences`, best first.
    pub order: Vec<usize>,
    /// How many leading tokens of every sequence are the prompt (the rest is the answer and EOS).
    pub prompt_len: usize,
}

impl TokenRanking {
    /// Tokenizes a ranking, cutting the prompt from the left so the longest completion fits in
    /// `context` (the `bool`: it was cut); an error says which completion cannot fit even so.
    /// `finished[i]` false: completion `i` was cut and gets no EOS (empty: every completion ended).
    pub fn new(
        tokenizer: &Tokenizer,
        prompt: &str,
        completions: &[String],
        finished: &[bool],
        order: &[usize],
        context: usize,
    ) -> Result<(Self, bool), String> {
        let eos = tokenizer.special_ids().eos;
        let mut responses =
            completions.iter().map(|c| tokenizer.encode_response(prompt, c).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
        for (response, _) in responses.iter_mut().zip(finished).filter(|(_, ended)| !**ended) {
            if response.len() > 1 && response.last() == Some(&eos) {
                response.pop();
            }
        }
        // The prompt keeps at least its first token and one more (`encode_prompt_within`).
        const MIN_PROMPT: usize = 2;
        let longest = responses.iter().map(Vec::len).max().unwrap_or(0);
        if let Some(i) = responses.iter().position(|r| r.len() + MIN_PROMPT > context) {
            return Err(format!(
                "completion {i} is {} tokens; with its prompt it cannot fit in the model's context of {context}",
                responses[i].len()
            ));
        }
        let (prompt_ids, cut) = tokenizer.encode_prompt_within(prompt, context - longest).map_err(|e| e.to_string())?;
        let sequences = responses.into_iter().map(|r| [prompt_ids.as_slice(), &r].concat()).collect();
        Ok((Self { sequences, order: order.to_vec(), prompt_len: prompt_ids.len() }, cut))
    }

    /// Refuses a ranking two of whose completions are the same tokens: text that differs only past
    /// an end-of-turn token typed into an answer (`<|im_end|>`) ends there as a model reads it, so
    /// the two are one answer and a pair of them teaches nothing. (Answers scored side by side, in
    /// the compare view, may well be the same.)
    fn check_distinct(self) -> Result<Self, String> {
        for (j, later) in self.sequences.iter().enumerate() {
            if let Some(i) = self.sequences[..j].iter().position(|earlier| earlier == later) {
                return Err(format!(
                    "completions {i} and {j} are the same answer once tokenized (they differ only after an end-of-turn token), so the ranking cannot order them"
                ));
            }
        }
        Ok(self)
    }

    /// Each sequence as an [`Example`] whose targets are the answer tokens and EOS.
    pub fn examples(&self) -> Vec<Example> {
        self.sequences.iter().map(|s| Example { tokens: s.clone(), target: (0..s.len()).map(|i| i >= self.prompt_len).collect() }).collect()
    }

    pub fn pair_count(&self) -> usize {
        let k = self.order.len();
        k * (k - 1) / 2
    }
}

/// Rankings ready to train on: tokenized, split into train and held-out, with what was left out.
#[derive(Debug, Clone, Default)]
pub struct RankingSet {
    pub train: Vec<TokenRanking>,
    pub held_out: Vec<TokenRanking>,
    /// Rankings that could not be used: the position of each in the list given, and why.
    pub skipped: Vec<(usize, String)>,
    /// How many rankings had their prompt cut to fit the context.
    pub prompts_cut: usize,
}

impl RankingSet {
    /// The fewest usable rankings a reward model or DPO trains on, at both edges.
    pub const MIN_TRAINABLE: usize = 1;

    /// With at least this many rankings and no separate held-out set, every fifth is held out.
    pub const SPLIT_FROM: usize = 10;

    /// Tokenizes `rankings`. Without `held_out`, every fifth ranking (by position, so a skipped one
    /// shifts nothing) is held out once there are [`Self::SPLIT_FROM`]; with it, all of `rankings`
    /// train and `held_out` is tokenized as given (its skipped ones are not listed: it only scores).
    pub fn prepare(tokenizer: &Tokenizer, rankings: &[Ranking], held_out: Option<&[Ranking]>, context: usize) -> Self {
        let mut set = Self::default();
        let split = held_out.is_none();
        for (i, r) in rankings.iter().enumerate() {
            let tokenized = r.check().and_then(|()| ranked(tokenizer, r, context));
            match tokenized {
                Ok((tokens, cut)) => {
                    set.prompts_cut += usize::from(cut);
                    if split && Self::is_held_out(i, rankings.len()) { set.held_out.push(tokens) } else { set.train.push(tokens) }
                }
                Err(why) => set.skipped.push((i, why)),
            }
        }
        for r in held_out.unwrap_or_default() {
            if let Ok((tokens, _)) = r.check().and_then(|()| ranked(tokenizer, r, context)) {
                set.held_out.push(tokens);
            }
        }
        set
    }

    /// Whether the `index`-th of `count` rankings is held out when no separate held-out set is
    /// given: every fifth, by position (so a skipped one shifts nothing), once there are
    /// [`Self::SPLIT_FROM`]. The one rule for the trainers and for what is exported to TRL.
    pub fn is_held_out(index: usize, count: usize) -> bool {
        count >= Self::SPLIT_FROM && index % 5 == 4
    }

    /// Preference pairs in the training rankings.
    pub fn train_pairs(&self) -> usize {
        self.train.iter().map(TokenRanking::pair_count).sum()
    }

    /// The answers the reward model is calibrated on: every training completion, i.e. SFT samples
    /// on the training prompts.
    pub fn calibration_set(&self) -> Vec<Vec<u32>> {
        self.train.iter().flat_map(|r| r.sequences.iter().cloned()).collect()
    }

    /// Refuses a set with no ranking left to train on (every one skipped, or none given), saying
    /// why the first was skipped; `what` names where the rankings came from. One rule for both
    /// edges: one usable ranking trains (a ranking of K answers is K(K-1)/2 pairs).
    pub fn check_trainable(&self, what: &str) -> Result<(), TrainError> {
        if self.train.len() >= Self::MIN_TRAINABLE {
            return Ok(());
        }
        let why = self.skipped_summary().map(|s| format!(": {s}")).unwrap_or_default();
        Err(TrainError::Unusable(format!("{what} has no usable rankings to train on{why}")))
    }

    /// One line for a person: "2 rankings skipped (ranking 3: …)", or `None` when none was.
    pub fn skipped_summary(&self) -> Option<String> {
        let (first, why) = self.skipped.first()?;
        let n = self.skipped.len();
        Some(format!("{n} ranking{} skipped (ranking {}: {why})", if n == 1 { "" } else { "s" }, first + 1))
    }
}

/// A person's ranking as tokens to learn from: its completions distinct as tokens too.
fn ranked(tokenizer: &Tokenizer, r: &Ranking, context: usize) -> Result<(TokenRanking, bool), String> {
    let (tokens, cut) = TokenRanking::new(tokenizer, &r.prompt, &r.completions, &r.finished, &r.ranking, context)?;
    Ok((tokens.check_distinct()?, cut))
}

/// Refuses `k` answers sampled to be ranked outside 1 to [`Ranking::MAX_COMPLETIONS`]: a ranking
/// orders at most that many, so more could never be ranked. `what` names the setting as the
/// person set it. (Groups for GRPO and RLOO are not ranked and go further:
/// [`crate::memory::sizes::check_answers_per_prompt`].)
pub fn check_answers_to_rank(k: usize, what: &str) -> Result<(), TrainError> {
    if !(1..=Ranking::MAX_COMPLETIONS).contains(&k) {
        let most = Ranking::MAX_COMPLETIONS;
        return Err(TrainError::Setting(format!(
            "{what} = {k}: sample 1 to {most} answers per prompt to rank (a ranking orders at most {most})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        Tokenizer::train(["the cat sat on the mat and the dog ran to the red ball"].into_iter(), 300).unwrap()
    }

    fn ranking(prompt: &str, completions: &[&str]) -> Ranking {
        Ranking {
            prompt: prompt.into(),
            completions: completions.iter().map(|c| c.to_string()).collect(),
            ranking: (0..completions.len()).rev().collect(),
            finished: vec![],
        }
    }

    #[test]
    fn a_cut_answer_is_learnt_from_without_the_eos_it_never_wrote_and_an_ended_one_with_it() {
        let tok = tokenizer();
        let eos = tok.special_ids().eos;
        let mut r = ranking("the cat", &["the dog ran", "the red ball"]);
        r.finished = vec![true, false];
        let set = RankingSet::prepare(&tok, &[r.clone()], None, 64);
        let [ended, cut] = [&set.train[0].sequences[0], &set.train[0].sequences[1]];
        assert_eq!(ended.last(), Some(&eos));
        assert_ne!(cut.last(), Some(&eos));
        assert_eq!(
            [cut.as_slice(), &[eos]].concat(),
            [tok.encode_prompt("the cat").unwrap(), tok.encode_response("the cat", "the red ball").unwrap()].concat()
        );
        // Unknown (files from before the field, TRL pairs): every answer ended.
        r.finished.clear();
        let set = RankingSet::prepare(&tok, &[r.clone()], None, 64);
        assert!(set.train[0].sequences.iter().all(|s| s.last() == Some(&eos)));
        // Answers scored outside a ranking file (the page's reward column) are read the same way.
        let (scored, _) = TokenRanking::new(&tok, &r.prompt, &r.completions, &[true, false], &[0, 1], 64).unwrap();
        assert_eq!(scored.sequences, [ended.clone(), cut.clone()]);
    }

    #[test]
    fn a_prompt_longer_than_the_context_is_cut_from_the_left_so_every_answer_fits() {
        let tok = tokenizer();
        let long = "the cat sat on the mat ".repeat(40);
        let set = RankingSet::prepare(&tok, &[ranking(&long, &["the dog", "the red ball ran"])], None, 32);
        assert_eq!((set.train.len(), set.prompts_cut, set.skipped.len()), (1, 1, 0));
        let longest = tok.encode_response(&long, "the red ball ran").unwrap();
        assert!(set.train[0].sequences.iter().all(|s| s.len() <= 32));
        assert!(set.train[0].sequences[1].ends_with(&longest));
        // The prompt's end survives: that is where the question is.
        let full = tok.encode_prompt(&long).unwrap();
        let kept = &set.train[0].sequences[1][..32 - longest.len()];
        assert!(full.ends_with(&kept[1..]));
    }

    #[test]
    fn unusable_rankings_are_skipped_and_named_and_the_split_is_by_position() {
        let tok = tokenizer();
        let mut rankings: Vec<Ranking> = (0..10).map(|i| ranking(&format!("cat {i}"), &["the dog", "the mat"])).collect();
        rankings[1] = ranking("cat", &[&"ball ".repeat(60), "the mat"]);
        rankings[2] = ranking("cat", &["same", "same"]);
        let set = RankingSet::prepare(&tok, &rankings, None, 32);
        assert_eq!(set.skipped.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!((set.train.len(), set.held_out.len()), (6, 2));
        let summary = set.skipped_summary().unwrap();
        assert!(summary.starts_with("2 rankings skipped (ranking 2: completion 0 is"), "{summary}");
        assert_eq!(set.calibration_set().len(), 12);
        assert_eq!(set.train_pairs(), 6);
    }

    #[test]
    fn answers_to_rank_stop_where_a_ranking_does() {
        assert!(check_answers_to_rank(1, "K").is_ok());
        assert!(check_answers_to_rank(Ranking::MAX_COMPLETIONS, "K").is_ok());
        assert!(check_answers_to_rank(0, "K").is_err());
        let message = check_answers_to_rank(Ranking::MAX_COMPLETIONS + 1, "-k").unwrap_err().to_string();
        assert!(message.contains("-k = 10:") && message.contains("at most 9"), "{message}");
    }
}
