//! The blind comparison that says whether tuning worked: two models answer the same prompts with
//! the same sampling settings; a scripted labeler, seeing only the two texts, picks one or calls a
//! tie (half a win). Also measured: the first model's KL to the second on its own answers, its EOS
//! rate, and both models' answer lengths. The CLI's `eval` and the tab's compare view both call it.
//! [`gold_and_proxy`] adds the reward model's mean score of the policy's answers: the proxy that
//! training pushes up, beside the labeler's verdict, the gold it stands in for.

use serde::{Deserialize, Serialize};
use tinyrlhf_data::{Labeler, Tally};
use tinyrlhf_model::{CausalLm, SamplingConfig, ScalarModel, generate};
use tinyrlhf_tokenizer::Tokenizer;

use crate::checkpoint::TrainError;
use crate::methods::rollout::response_kl;

/// How one head-to-head is sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadToHeadConfig {
    /// Answers per prompt from each model.
    pub samples_per_prompt: usize,
    /// Sequences generated together.
    pub batch_size: usize,
    /// The reference samples with `seed + 2^32`, so the two models never share random draws.
    pub sampling: SamplingConfig,
}

impl HeadToHeadConfig {
    /// The temperature the tab judges and shows answers at (the blind verdict, gold against proxy,
    /// the compare view): below 1 so a verdict weighs what a model mostly says, not its tail.
    pub const JUDGE_TEMPERATURE: f32 = 0.7;

    /// The tab's judge: one answer per prompt from each model, an answer as long as one to rank, at
    /// [`Self::JUDGE_TEMPERATURE`], every prompt in one batch.
    pub fn judge(prompts: usize, seed: u64) -> Self {
        let sampling =
            SamplingConfig { max_new_tokens: crate::ANSWER_TOKENS, temperature: Self::JUDGE_TEMPERATURE, top_k: 0, top_p: 1.0, seed };
        Self { samples_per_prompt: 1, batch_size: prompts.max(1), sampling }
    }
}

/// What a head-to-head found; `ours` and `theirs` are the answers, in prompt order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadToHead {
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    /// Wins of the policy over the reference, a tie counting half.
    pub win_rate: f64,
    /// KL(policy || reference) per answer (k1, nats), on the policy's answers.
    pub kl: f64,
    /// Share of the policy's answers that end with EOS.
    pub eos_rate: f64,
    pub policy_words: f64,
    pub reference_words: f64,
    pub prompts: Vec<String>,
    pub ours: Vec<String>,
    pub theirs: Vec<String>,
}

/// Answers of one model: token ids (with EOS when finished), text, and whether each ended.
struct Answers {
    tokens: Vec<Vec<u32>>,
    texts: Vec<String>,
    finished: Vec<bool>,
}

async fn answers(
    lm: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    batch: usize,
    sampling: &SamplingConfig,
) -> Result<Answers, TrainError> {
    let special = tokenizer.special_ids();
    let mut out = Answers { tokens: vec![], texts: vec![], finished: vec![] };
    for (i, chunk) in prompts.chunks(batch.max(1)).enumerate() {
        let config = SamplingConfig { seed: sampling.seed.wrapping_add(i as u64), ..sampling.clone() };
        let generation = generate(lm, chunk, special.eos, special.pad, &config).await.map_err(|e| TrainError::Setting(e.to_string()))?;
        for (tokens, finished) in generation.tokens.into_iter().zip(generation.finished) {
            out.texts.push(tokenizer.decode_response(&tokens).map_err(|e| TrainError::Sampling(e.to_string()))?);
            out.tokens.push(tokens);
            out.finished.push(finished);
        }
    }
    Ok(out)
}

/// `policy` against `reference` on `prompts`, judged blind by `labeler`. Prompts too long for the
/// context lose their beginning, as everywhere else.
pub async fn head_to_head(
    policy: &CausalLm,
    reference: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[String],
    labeler: &Labeler,
    settings: &HeadToHeadConfig,
) -> Result<HeadToHead, TrainError> {
    Ok(judged(policy, reference, tokenizer, prompts, labeler, settings).await?.0)
}

/// Where a policy stands on the way to over-optimisation: how it scores under the reward model
/// (the proxy it was trained on) and under the labeler (the gold the rankings came from), at a KL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldAndProxy {
    /// KL(policy || SFT) per answer (k1, nats), on the policy's answers.
    pub kl: f64,
    /// The reward model's mean score of the policy's answers (at their last token).
    pub proxy: f64,
    /// The labeler's blind win-rate of the policy over SFT, a tie counting half.
    pub gold: f64,
    pub eos_rate: f64,
}

/// [`head_to_head`] of `policy` against `sft`, with the reward model's mean score of the policy's
/// answers.
pub async fn gold_and_proxy(
    policy: &CausalLm,
    sft: &CausalLm,
    reward: &ScalarModel,
    tokenizer: &Tokenizer,
    prompts: &[String],
    labeler: &Labeler,
    settings: &HeadToHeadConfig,
) -> Result<GoldAndProxy, TrainError> {
    let (verdict, prompt_ids, answers) = judged(policy, sft, tokenizer, prompts, labeler, settings).await?;
    let sequences: Vec<Vec<u32>> = prompt_ids.iter().zip(&answers.tokens).map(|(p, a)| [p.as_slice(), a].concat()).collect();
    let mut total = 0.0;
    for chunk in sequences.chunks(settings.batch_size.max(1)) {
        let scores = crate::stages::scoring::score_sequences(reward, chunk, tokenizer.special_ids().pad, &policy.device());
        total += crate::step::read::values(scores).await?.iter().map(|&s| f64::from(s)).sum::<f64>();
    }
    let proxy = total / sequences.len().max(1) as f64;
    Ok(GoldAndProxy { kl: verdict.kl, proxy, gold: verdict.win_rate, eos_rate: verdict.eos_rate })
}

/// The head-to-head, with the prompts' ids and the policy's answers it was judged on.
async fn judged(
    policy: &CausalLm,
    reference: &CausalLm,
    tokenizer: &Tokenizer,
    prompts: &[String],
    labeler: &Labeler,
    settings: &HeadToHeadConfig,
) -> Result<(HeadToHead, Vec<Vec<u32>>, Answers), TrainError> {
    let (k, batch, sampling) = (settings.samples_per_prompt.max(1), settings.batch_size.max(1), &settings.sampling);
    let mut ids = Vec::with_capacity(prompts.len() * k);
    let mut texts = Vec::with_capacity(prompts.len() * k);
    for prompt in prompts {
        let (p, _) = crate::data::prompts::prompt_ids(tokenizer, policy.context_length(), prompt, sampling.max_new_tokens)
            .map_err(|e| TrainError::Setting(e.to_string()))?;
        ids.extend(std::iter::repeat_n(p, k));
        texts.extend(std::iter::repeat_n(prompt.clone(), k));
    }
    let ours = answers(policy, tokenizer, &ids, batch, sampling).await?;
    let theirs =
        answers(reference, tokenizer, &ids, batch, &SamplingConfig { seed: sampling.seed.wrapping_add(1 << 32), ..sampling.clone() })
            .await?;

    let Tally { wins, ties, losses } = labeler.tally(&texts, &ours.texts, &theirs.texts);
    let special = tokenizer.special_ids();
    let temperature = if sampling.temperature > 0.0 { sampling.temperature } else { 1.0 };
    let mut kl = 0.0;
    for (p, r) in ids.chunks(batch).zip(ours.tokens.chunks(batch)) {
        kl += response_kl(policy, reference, p, r, temperature, special.eos, special.pad).await?.iter().sum::<f64>();
    }
    let n = texts.len().max(1) as f64;
    let words = |t: &[String]| t.iter().map(|s| s.split_whitespace().count()).sum::<usize>() as f64 / n;
    let verdict = HeadToHead {
        wins,
        ties,
        losses,
        win_rate: Tally { wins, ties, losses }.win_rate(),
        kl: kl / n,
        eos_rate: ours.finished.iter().filter(|&&f| f).count() as f64 / n,
        policy_words: words(&ours.texts),
        reference_words: words(&theirs.texts),
        prompts: texts,
        ours: ours.texts.clone(),
        theirs: theirs.texts,
    };
    Ok((verdict, ids, ours))
}
