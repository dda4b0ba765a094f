//! `tinyrlhf eval`: how well a model serves held-out prompts — does it end its answers (EOS rate),
//! how long are they, and do its samples differ in ways a labeler can rank (K samples at
//! `--temperature`); how often is its best (greedy) answer right, per task family where the world
//! can check.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use indicatif::ProgressBar;
use tinyrlhf_data::{Family, Labeler, Rule, check, family_of};
use tinyrlhf_rlhf::LanguageModel;

use crate::files::{self, Result};
use crate::model_dirs;
use crate::outputs::{Out, Plan};
use crate::sample::{SamplingArgs, answer};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model directory (the policy, when comparing).
    #[arg(long, alias = "policy")]
    model: PathBuf,
    /// Compare against this model: blind win-rate under --labeler (ties half) and KL to it.
    #[arg(long, requires = "labeler")]
    reference: Option<PathBuf>,
    /// Held-out prompts: JSONL of {"prompt"}, or one per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Samples per prompt (at least 2) for the EOS, length and "rankable" figures; answers per
    /// prompt and model when comparing.
    #[arg(short, long, default_value_t = 4, value_parser = crate::at_least_one)]
    k: usize,
    /// Sequences generated together.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Also report this labeler's mean score of the samples (concise, polite, enthusiastic, correct,
    /// or several joined by '+').
    #[arg(long)]
    labeler: Option<Labeler>,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

impl EvalArgs {
    /// Only `--json` is written.
    pub fn plan(&self) -> Option<Plan<'_>> {
        let inputs = [Some(&self.model), self.reference.as_ref(), Some(&self.prompts)].into_iter().flatten().map(|p| p.as_path()).collect();
        self.json.as_deref().map(|out| Plan { out, kind: Out::File, inputs, resume: false })
    }
}

pub fn eval(args: &EvalArgs) -> Result<()> {
    let device = args.sampling.backend.device()?;
    let LanguageModel { config, model: lm, tokenizer, .. } = model_dirs::load_model_dir(&args.model, &device)?;
    let prompts = files::read_prompts(&args.prompts)?;
    if prompts.is_empty() {
        return Err(format!("{} has no prompts", args.prompts.display()));
    }
    if let (Some(reference), Some(labeler)) = (&args.reference, &args.labeler) {
        return crate::compare::compare(
            &args.model,
            reference,
            &prompts,
            labeler,
            args.k,
            args.batch,
            &args.sampling,
            args.json.as_deref(),
        );
    }
    let k = args.k;
    if k < 2 {
        return Err(format!("-k {k}: the EOS, length and rankable figures need at least 2 samples per prompt"));
    }
    let bar = ProgressBar::new((prompts.len() * k) as u64);
    let answers = answer(&lm, &config, &tokenizer, &prompts, k, args.batch, &args.sampling, Some(&bar))?;
    // Accuracy is the model's best answer: greedy decoding, one per prompt.
    let greedy = SamplingArgs { temperature: 0.0, ..args.sampling.clone() };
    let best = answer(&lm, &config, &tokenizer, &prompts, 1, args.batch, &greedy, None)?;
    bar.finish_and_clear();

    let labelers: Vec<Labeler> = Rule::ALL.iter().map(|r| r.name().parse().expect("rule names parse")).collect();
    let (mut ended, mut words, mut rankable) = (0usize, 0usize, 0usize);
    let mut labeler_scores: Vec<f64> = Vec::new();
    let mut families: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((prompt, samples), best) in prompts.iter().zip(&answers).zip(&best) {
        let texts: Vec<String> = samples.iter().map(|(t, _)| t.clone()).collect();
        ended += samples.iter().filter(|(_, finished)| *finished).count();
        words += texts.iter().map(|t| t.split_whitespace().count()).sum::<usize>();
        let differs = labelers.iter().any(|l| texts.iter().any(|a| texts.iter().any(|b| l.prefers(prompt, a, b))));
        rankable += usize::from(differs);
        if let Some(labeler) = &args.labeler {
            for text in &texts {
                let scores = labeler.scores(prompt, text);
                labeler_scores.resize(scores.len(), 0.0);
                labeler_scores.iter_mut().zip(scores).for_each(|(sum, s)| *sum += s);
            }
        }
        let Some(family) = family_of(prompt) else { continue };
        let name = match family {
            Family::Arithmetic if prompt.contains(" plus ") || prompt.starts_with("please add ") => "addition",
            Family::Arithmetic => "subtraction",
            other => other.name(),
        };
        if let Some(correct) = check(prompt, &best[0].0) {
            let entry = families.entry(name).or_default();
            entry.0 += usize::from(correct);
            entry.1 += 1;
        }
    }
    let total = (prompts.len() * k) as f64;
    let labeler_means: Vec<f64> = labeler_scores.iter().map(|s| s / total).collect();
    let report = serde_json::json!({
        "labeler": args.labeler.as_ref().map(|l| serde_json::json!({"name": l.to_string(), "mean_scores": labeler_means})),
        "model": args.model,
        "prompts": prompts.len(),
        "samples_per_prompt": k,
        "temperature": args.sampling.temperature,
        "eos_rate": ended as f64 / total,
        "mean_words": words as f64 / total,
        "rankable_rate": rankable as f64 / prompts.len() as f64,
        "accuracy": families.iter().map(|(f, (ok, n))| ((*f).to_owned(), serde_json::json!({"correct": ok, "of": n, "rate": *ok as f64 / *n as f64}))).collect::<serde_json::Map<_, _>>(),
    });
    println!("{}: {} held-out prompts, {k} samples each at temperature {}", args.model.display(), prompts.len(), args.sampling.temperature);
    println!("  EOS within {} tokens: {:.1}%", args.sampling.max_new_tokens, 100.0 * ended as f64 / total);
    println!("  mean answer length:  {:.1} words", words as f64 / total);
    println!(
        "  rankable prompts:    {:.1}% (some labeler strictly prefers one sample to another)",
        100.0 * rankable as f64 / prompts.len() as f64
    );
    if let Some(labeler) = &args.labeler {
        println!("  labeler {labeler}: mean score {labeler_means:.3?} (rule by rule)");
    }
    for (family, (ok, n)) in &families {
        println!("  accuracy {family:<11} {:>5.1}% ({ok}/{n} prompts, greedy)", 100.0 * *ok as f64 / *n as f64);
    }
    if let Some(path) = &args.json {
        files::write_atomic(path, serde_json::to_string_pretty(&report).expect("json").as_bytes())?;
    }
    Ok(())
}
