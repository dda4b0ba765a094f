//! `tinyrlhf eval --policy DIR --reference DIR --labeler NAME`: the blind comparison that says
//! whether RLHF worked, on any two model directories (the library's head-to-head; this file loads
//! the directories and prints).

use std::path::Path;

use tinyrlhf_data::Labeler;
use tinyrlhf_rlhf::{HeadToHeadConfig, LanguageModel, check_compatible, head_to_head};

use crate::files::{self, Result};
use crate::model_dirs;
use crate::sample::SamplingArgs;

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
    let LanguageModel { config, model: policy, tokenizer, .. } = model_dirs::load_model_dir(policy_dir, &device)?;
    let LanguageModel { config: reference_config, model: reference, tokenizer: reference_tokenizer, .. } =
        model_dirs::load_model_dir(reference_dir, &device)?;
    let role = format!("the reference in {}", reference_dir.display());
    check_compatible(&role, (&config, &tokenizer), (&reference_config, &reference_tokenizer)).map_err(|e| e.to_string())?;
    let settings = HeadToHeadConfig { samples_per_prompt: k, batch_size: batch, sampling: sampling.config(0) };
    let result =
        pollster::block_on(head_to_head(&policy, &reference, &tokenizer, prompts, labeler, &settings)).map_err(|e| e.to_string())?;

    println!(
        "{} vs {}: {} held-out prompts x {k}, temperature {}, judged by {labeler}",
        policy_dir.display(),
        reference_dir.display(),
        prompts.len(),
        sampling.temperature
    );
    let (wins, ties, losses) = (result.wins, result.ties, result.losses);
    println!(
        "  win-rate of policy over reference: {:.1}% ({wins} wins, {ties} ties, {losses} losses; ties count half)",
        100.0 * result.win_rate
    );
    println!("  KL(policy || reference): {:.2} nats per answer (k1)", result.kl);
    println!(
        "  policy EOS rate: {:.1}%; mean words: policy {:.1}, reference {:.1}",
        100.0 * result.eos_rate,
        result.policy_words,
        result.reference_words
    );
    let n = result.prompts.len();
    for i in (0..n).step_by((n / 3).max(1)).take(3) {
        println!("  e.g. {:?}\n    policy:    {:?}\n    reference: {:?}", result.prompts[i], result.ours[i], result.theirs[i]);
    }
    if let Some(path) = json {
        let report = serde_json::json!({
            "policy": policy_dir, "reference": reference_dir, "labeler": labeler.to_string(), "prompts": prompts.len(),
            "samples_per_prompt": k, "temperature": sampling.temperature,
            "win_rate": result.win_rate, "wins": wins, "ties": ties, "losses": losses, "kl": result.kl, "eos_rate": result.eos_rate,
            "mean_words": {"policy": result.policy_words, "reference": result.reference_words},
        });
        files::write_atomic(path, serde_json::to_string_pretty(&report).expect("json").as_bytes())?;
    }
    Ok(())
}
