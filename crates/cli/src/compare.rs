//! `tinyrlhf eval --policy DIR --reference DIR --labeler NAME`: the blind comparison that says
//! whether RLHF worked. For each held-out prompt both models answer (same sampling settings); the
//! labeler, seeing only the two texts, picks one or calls a tie (half a win). Also reported: the
//! policy's KL to the reference on its own answers, its EOS rate and answer length.

use std::path::Path;

use tinyrlhf_data::Labeler;
use tinyrlhf_model::{Gpt, SamplingConfig, generate};
use tinyrlhf_rlhf::{check_compatible, response_kl};
use tinyrlhf_tokenizer::Tokenizer;

use crate::files::{self, Result};
use crate::sample::{SamplingArgs, prompt_ids};

/// Answers of one model: token ids (with EOS when finished) and text.
struct Answers {
    tokens: Vec<Vec<u32>>,
    texts: Vec<String>,
    finished: Vec<bool>,
}

fn answers(gpt: &Gpt, tokenizer: &Tokenizer, prompts: &[Vec<u32>], batch: usize, sampling: &SamplingConfig) -> Result<Answers> {
    let special = tokenizer.special_ids();
    let mut out = Answers { tokens: vec![], texts: vec![], finished: vec![] };
    for (i, chunk) in prompts.chunks(batch.max(1)).enumerate() {
        let config = SamplingConfig { seed: sampling.seed.wrapping_add(i as u64), ..sampling.clone() };
        let generation = pollster::block_on(generate(gpt, chunk, special.eos, special.pad, &config)).map_err(|e| e.to_string())?;
        for (tokens, finished) in generation.tokens.into_iter().zip(generation.finished) {
            out.texts.push(tokenizer.decode_response(&tokens).map_err(|e| e.to_string())?);
            out.tokens.push(tokens);
            out.finished.push(finished);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub fn compare(
    policy_dir: &Path,
    reference_dir: &Path,
    prompts: &[String],
    labeler: &Labeler,
    k: usize,
    batch: usize,
    sampling: &SamplingArgs,
    json: Option<&Path>,
) -> Result<()> {
    let device = sampling.backend.device()?;
    let (config, policy, tokenizer) = files::load_model_dir(policy_dir, &device)?;
    let (reference_config, reference, reference_tokenizer) = files::load_model_dir(reference_dir, &device)?;
    let role = format!("the reference in {}", reference_dir.display());
    check_compatible(&role, (&config, &tokenizer), (&reference_config, &reference_tokenizer)).map_err(|e| e.to_string())?;
    let mut ids = Vec::with_capacity(prompts.len() * k);
    let mut texts = Vec::with_capacity(prompts.len() * k);
    for prompt in prompts {
        let (p, _) = prompt_ids(&tokenizer, &config, prompt, sampling.max_new_tokens)?;
        ids.extend(std::iter::repeat_n(p, k));
        texts.extend(std::iter::repeat_n(prompt.clone(), k));
    }
    let ours = answers(&policy, &tokenizer, &ids, batch, &sampling.config(0))?;
    let theirs = answers(&reference, &tokenizer, &ids, batch, &sampling.config(1 << 32))?;

    let tally = labeler.tally(&texts, &ours.texts, &theirs.texts);
    let (wins, ties, losses, win_rate) = (tally.wins, tally.ties, tally.losses, tally.win_rate());
    let n = texts.len() as f64;
    let special = tokenizer.special_ids();
    let temperature = if sampling.temperature > 0.0 { sampling.temperature } else { 1.0 };
    let mut kl = Vec::with_capacity(ids.len());
    for (p, r) in ids.chunks(batch.max(1)).zip(ours.tokens.chunks(batch.max(1))) {
        kl.extend(
            pollster::block_on(response_kl(&policy, &reference, p, r, temperature, special.eos, special.pad)).map_err(|e| e.to_string())?,
        );
    }
    let mean_kl = kl.iter().sum::<f64>() / n;
    let eos_rate = ours.finished.iter().filter(|&&f| f).count() as f64 / n;
    let words = |t: &[String]| t.iter().map(|s| s.split_whitespace().count()).sum::<usize>() as f64 / n;

    println!(
        "{} vs {}: {} held-out prompts x {k}, temperature {}, judged by {labeler}",
        policy_dir.display(),
        reference_dir.display(),
        prompts.len(),
        sampling.temperature
    );
    println!("  win-rate of policy over reference: {:.1}% ({wins} wins, {ties} ties, {losses} losses; ties count half)", 100.0 * win_rate);
    println!("  KL(policy || reference): {mean_kl:.2} nats per answer (k1, temperature {temperature})");
    println!(
        "  policy EOS rate: {:.1}%; mean words: policy {:.1}, reference {:.1}",
        100.0 * eos_rate,
        words(&ours.texts),
        words(&theirs.texts)
    );
    for i in (0..texts.len()).step_by((texts.len() / 3).max(1)).take(3) {
        println!("  e.g. {:?}\n    policy:    {:?}\n    reference: {:?}", texts[i], ours.texts[i], theirs.texts[i]);
    }
    if let Some(path) = json {
        let report = serde_json::json!({
            "policy": policy_dir, "reference": reference_dir, "labeler": labeler.to_string(), "prompts": prompts.len(),
            "samples_per_prompt": k, "temperature": sampling.temperature,
            "win_rate": win_rate, "wins": wins, "ties": ties, "losses": losses, "kl": mean_kl, "eos_rate": eos_rate,
            "mean_words": {"policy": words(&ours.texts), "reference": words(&theirs.texts)},
        });
        files::write_atomic(path, serde_json::to_string_pretty(&report).expect("json").as_bytes())?;
    }
    Ok(())
}
