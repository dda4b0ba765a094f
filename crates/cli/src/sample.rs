//! `tinyrlhf sample` (K answers per prompt, to a samples file) and `tinyrlhf chat` (talk to a model).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;
use tinyrlhf_data::{Samples, write_jsonl};
use tinyrlhf_model::{CausalLm, ModelConfig, SamplingConfig, generate};
use tinyrlhf_rlhf::LanguageModel;
use tinyrlhf_rlhf::memory::sizes;
use tinyrlhf_tokenizer::Tokenizer;

use crate::backend::Backend;
use crate::files::{self, Result};
use crate::model_dirs;
use crate::outputs::{Out, Plan};

/// How to sample, shared by the commands that generate.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = SamplingConfig::default().temperature)]
    pub temperature: f32,
    /// Sample among the k most likely tokens only (0: all).
    #[arg(long, default_value_t = SamplingConfig::default().top_k)]
    pub top_k: usize,
    /// Sample among the most likely tokens covering this probability (1: all).
    #[arg(long, default_value_t = SamplingConfig::default().top_p)]
    pub top_p: f32,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = tinyrlhf_rlhf::ANSWER_TOKENS)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
}

impl SamplingArgs {
    pub fn config(&self, seed_offset: u64) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed.wrapping_add(seed_offset),
        }
    }
}

/// Answers to `prompts`, `k` each, decoded to text, in batches of `batch` sequences.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    lm: &CausalLm,
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    prompts: &[String],
    k: usize,
    batch: usize,
    sampling: &SamplingArgs,
    progress: Option<&ProgressBar>,
) -> Result<Vec<Vec<(String, bool)>>> {
    let context = config.context_length();
    tinyrlhf_rlhf::check_answer_room(tokenizer, context, sampling.max_new_tokens, "--max-new-tokens").map_err(|e| e.to_string())?;
    sizes::check_answers_per_prompt(k, "-k").map_err(|e| e.to_string())?;
    let batch = batch.clamp(1, prompts.len() * k);
    let special = tokenizer.special_ids();
    let mut rows = Vec::with_capacity(prompts.len() * k);
    for prompt in prompts {
        let (ids, cut) = tinyrlhf_rlhf::prompt_ids(tokenizer, context, prompt, sampling.max_new_tokens).map_err(|e| e.to_string())?;
        if cut {
            let note = format!("note: prompt {prompt:?} is longer than the context allows and was cut from the left");
            eprintln!("{}", tinyrlhf_rlhf::messages::shown(&note));
        }
        rows.extend(std::iter::repeat_n(ids, k));
    }
    // The KV cache grows with the answers: the longest row is its prompt and every new token, not
    // the model's whole context (8,192 tokens for SmolLM2).
    let longest = (rows.iter().map(Vec::len).max().unwrap_or(0) + sampling.max_new_tokens).min(context);
    sizes::check_sampling(config, batch, longest, "sampling one --batch").map_err(|e| e.to_string())?;
    let mut answers = Vec::with_capacity(rows.len());
    for (i, chunk) in rows.chunks(batch).enumerate() {
        let out =
            pollster::block_on(generate(lm, chunk, special.eos, special.pad, &sampling.config(i as u64))).map_err(|e| e.to_string())?;
        for (tokens, finished) in out.tokens.iter().zip(out.finished) {
            answers.push((tokenizer.decode_response(tokens).map_err(|e| e.to_string())?, finished));
        }
        if let Some(bar) = progress {
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(answers.chunks(k).map(<[_]>::to_vec).collect())
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Prompts, JSONL of {"prompt"}.
    #[arg(long)]
    prompts: PathBuf,
    /// Answers per prompt, to be ranked: 1 to 9.
    #[arg(short, long, default_value_t = 4)]
    k: usize,
    /// Samples file to write: JSONL of {"prompt", "completions"}.
    #[arg(long)]
    out: PathBuf,
    /// Sequences generated together.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

impl SampleArgs {
    pub fn plan(&self) -> Plan<'_> {
        Plan { out: &self.out, kind: Out::File, inputs: vec![&self.model, &self.prompts], resume: false }
    }
}

pub fn sample(args: &SampleArgs) -> Result<()> {
    tinyrlhf_rlhf::data::rankings::check_answers_to_rank(args.k, "-k").map_err(|e| e.to_string())?;
    let device = args.sampling.backend.device()?;
    let LanguageModel { config, model: lm, tokenizer, .. } = model_dirs::load_model_dir(&args.model, &device)?;
    let prompts = files::read_prompts(&args.prompts)?;
    let bar = ProgressBar::new((prompts.len() * args.k) as u64);
    let answers = answer(&lm, &config, &tokenizer, &prompts, args.k, args.batch, &args.sampling, Some(&bar))?;
    bar.finish_and_clear();
    let samples: Vec<Samples> = prompts
        .into_iter()
        .zip(answers)
        .map(|(prompt, answers)| {
            let (completions, finished) = answers.into_iter().unzip();
            Samples { prompt, completions, finished }
        })
        .collect();
    files::write_atomic(&args.out, write_jsonl(&samples).as_bytes())?;
    eprintln!("{}: {} prompts x {} samples", args.out.display(), samples.len(), args.k);
    Ok(())
}

/// The model's continuation of `text` with no template (the last tokens, if it is too long).
fn continue_text(
    lm: &CausalLm,
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    text: &str,
    sampling: &SamplingArgs,
) -> Result<(String, bool)> {
    let mut ids = tokenizer.encode(text).map_err(|e| e.to_string())?;
    let budget = tinyrlhf_rlhf::prompt_budget(config.context_length(), sampling.max_new_tokens);
    ids.drain(..ids.len().saturating_sub(budget));
    let special = tokenizer.special_ids();
    let out = pollster::block_on(generate(lm, &[ids], special.eos, special.pad, &sampling.config(0))).map_err(|e| e.to_string())?;
    Ok((tokenizer.decode_text(&out.tokens[0]).map_err(|e| e.to_string())?, out.finished[0]))
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Model directory.
    #[arg(long)]
    model: PathBuf,
    /// Continue the typed text as it is, without the chat template: what a base model does.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Reads a prompt per line from standard input and prints the model's answer.
pub fn chat(args: &ChatArgs) -> Result<()> {
    let device = args.sampling.backend.device()?;
    let LanguageModel { config, model: lm, tokenizer, .. } = model_dirs::load_model_dir(&args.model, &device)?;
    eprintln!(
        "talking to {} ({}, {} layers, d {}). One prompt per line; Ctrl-D ends.",
        args.model.display(),
        config.architecture(),
        config.num_layers(),
        config.width()
    );
    if !args.raw {
        tinyrlhf_rlhf::check_answer_room(&tokenizer, config.context_length(), args.sampling.max_new_tokens, "--max-new-tokens")
            .map_err(|e| e.to_string())?;
    }
    let mut turn = 0;
    loop {
        eprint!("> ");
        std::io::stderr().flush().ok();
        let Some(bytes) = files::stdin_line()? else { return Ok(()) };
        // A stray byte that is not UTF-8 (a paste from a Latin-1 terminal) ends this line, not the chat.
        let Ok(line) = std::str::from_utf8(&bytes) else {
            eprintln!("that line is not UTF-8 text (byte {}); type it again", std::str::from_utf8(&bytes).unwrap_err().valid_up_to() + 1);
            continue;
        };
        let prompt = line.trim();
        if prompt.is_empty() {
            continue;
        }
        let mut sampling = args.sampling.clone();
        sampling.seed = args.sampling.seed.wrapping_add(turn);
        turn += 1;
        let (text, finished) = if args.raw {
            continue_text(&lm, &config, &tokenizer, prompt, &sampling)?
        } else {
            answer(&lm, &config, &tokenizer, &[prompt.to_owned()], 1, 1, &sampling, None)?.remove(0).remove(0)
        };
        println!("{text}{}", if finished { "" } else { " …" });
    }
}
