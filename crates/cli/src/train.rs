//! `tinyrlhf pretrain` and `tinyrlhf sft`: the same loop around `SupervisedTrainer::step()` — a
//! progress bar with ETA and live loss, metrics appended as JSONL, a checkpoint every
//! `--save-every` steps (swapped in whole, so Ctrl-C or a kill never loses more than the steps since
//! the last one), `--resume` to continue from it, and a loadable model directory at the end.

use std::path::{Path, PathBuf};

use clap::Args;
use tinyrlhf_data::Demonstration;
use tinyrlhf_model::ModelConfig;
use tinyrlhf_rlhf::{Example, LanguageModel, SftSettings, SupervisedTrainer, Trainer, pack, sft_examples, split_validation};
use tinyrlhf_tokenizer::Tokenizer;

use crate::backend::Backend;
use crate::checkpoints;
use crate::drive::{Loop, drive};
use crate::files::{self, Result};
use crate::lora::{Base, LoraArgs, Tuned, TunedModel, save_tuned};
use crate::model_dirs;
use crate::outputs::{Out, Plan};
use crate::resume::{self, RunRecord};

/// Flags every supervised stage shares.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model directory to write (config.json, model.safetensors, tokenizer.json, manifest.json,
    /// metrics.jsonl, checkpoint/).
    #[arg(long)]
    out: PathBuf,
    /// Optimisation steps.
    #[arg(long)]
    steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = SftSettings::default().batch_size)]
    batch: usize,
    /// Peak learning rate (linear warm-up over 5% of the steps, cosine decay to 10%).
    #[arg(long, default_value_t = SftSettings::default().lr)]
    lr: f64,
    /// Seed for initialisation and batch order.
    #[arg(long, default_value_t = SftSettings::default().seed)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// Continue from `OUT/checkpoint/` if it exists.
    #[arg(long)]
    resume: bool,
    /// Steps between checkpoints.
    #[arg(long, value_parser = crate::at_least_one, default_value_t = 100)]
    save_every: usize,
    #[command(flatten)]
    lora: LoraArgs,
}

impl TrainArgs {
    fn settings(&self) -> SftSettings {
        SftSettings { steps: self.steps, batch_size: self.batch, lr: self.lr, seed: self.seed, lora: self.lora.config() }
    }

    fn plan<'a>(&'a self, inputs: Vec<&'a Path>) -> Plan<'a> {
        Plan { out: &self.out, kind: Out::ModelDir, inputs, resume: self.resume }
    }
}

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// tokenizer.json (from `tinyrlhf tokenizer`).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Plain text to learn to continue, one document per line (from `tinyrlhf data`).
    #[arg(long)]
    corpus: PathBuf,
    /// Model shape: tiny, small or gpt2-124m.
    #[arg(long, default_value = "tiny")]
    preset: String,
    /// Tokens per training sequence (at most the preset's context).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    #[command(flatten)]
    train: TrainArgs,
}

impl PretrainArgs {
    pub fn plan(&self) -> Plan<'_> {
        self.train.plan(vec![&self.tokenizer, &self.corpus])
    }
}

#[derive(Debug, Args)]
pub struct SftArgs {
    /// The base model directory to fine-tune (from `tinyrlhf pretrain`).
    #[arg(long)]
    model: PathBuf,
    /// Demonstrations, JSONL of {"prompt", "response"} (from `tinyrlhf data`).
    #[arg(long)]
    demos: PathBuf,
    #[command(flatten)]
    train: TrainArgs,
}

impl SftArgs {
    pub fn plan(&self) -> Plan<'_> {
        self.train.plan(vec![&self.model, &self.demos])
    }
}

pub fn pretrain(args: &PretrainArgs) -> Result<()> {
    let tokenizer = files::read_tokenizer(&args.tokenizer)?;
    let config = ModelConfig::preset(&args.preset, tokenizer.vocab_size())
        .ok_or_else(|| format!("unknown preset {:?}; use one of {}", args.preset, ModelConfig::preset_names()))?
        .with_special_tokens(tokenizer.special_ids().pad, tokenizer.special_ids().eos);
    if args.seq_len == 0 || args.seq_len > config.context_length() {
        return Err(format!("--seq-len {} must be between 1 and the context, {}", args.seq_len, config.context_length()));
    }
    let corpus = files::read_large(&args.corpus)?;
    let text = std::str::from_utf8(&corpus).map_err(|e| format!("{}: not UTF-8 text: {e}", args.corpus.display()))?;
    let stream = tokenizer.encode(text).map_err(|e| e.to_string())?;
    let examples = pack(&stream, args.seq_len);
    if examples.is_empty() {
        return Err(format!("{} is too short for one sequence of {} tokens", args.corpus.display(), args.seq_len + 1));
    }
    let mut settings = serde_json::to_value(args.train.settings()).expect("settings serialise");
    (settings["preset"], settings["seq_len"]) = (args.preset.clone().into(), args.seq_len.into());
    let record = RunRecord::new(&[("tokenizer", &args.tokenizer), ("corpus", &args.corpus)], settings)?;
    let manifest = serde_json::json!({
        "stage": "pretrain", "preset": args.preset, "seed": args.train.seed, "steps": args.train.steps,
        "batch": args.train.batch, "seq_len": args.seq_len, "lr": args.train.lr,
        "data": {"tokenizer": record.digest("tokenizer"), "corpus": record.digest("corpus"), "tokens": stream.len()},
    });
    run(&args.train, config, None, examples, &tokenizer, manifest, &record)
}

pub fn sft(args: &SftArgs) -> Result<()> {
    let device = args.train.backend.device()?;
    let LanguageModel { config, model: base, tokenizer, identity } = model_dirs::load_model_dir(&args.model, &device)?;
    let tokenizer = tokenizer.for_instructions().map_err(|e| e.to_string())?;
    let demos: Vec<Demonstration> = files::read_records(&args.demos)?;
    let (examples, left_out) = sft_examples(&tokenizer, &demos, config.context_length()).map_err(|e| e.to_string())?;
    if left_out > 0 {
        eprintln!(
            "note: {left_out} of {} demonstrations are longer than the context ({} tokens) and were left out",
            demos.len(),
            config.context_length()
        );
    }
    let record = RunRecord::new(&[("model", &args.model), ("demonstrations", &args.demos)], args.train.settings())?;
    let manifest = serde_json::json!({
        "stage": "sft", "base": args.model, "seed": args.train.seed, "steps": args.train.steps,
        "batch": args.train.batch, "lr": args.train.lr,
        "data": {"demonstrations": record.digest("demonstrations"), "examples": examples.len()},
    });
    run(&args.train, config, Some((base, Base { path: &args.model, identity: &identity })), examples, &tokenizer, manifest, &record)
}

/// The shared loop. `base` is the model to start from and its path (none: a fresh one of `config`).
fn run(
    args: &TrainArgs,
    config: ModelConfig,
    base: Option<(tinyrlhf_model::CausalLm, Base)>,
    examples: Vec<Example>,
    tokenizer: &Tokenizer,
    mut manifest: serde_json::Value,
    record: &RunRecord,
) -> Result<()> {
    let device = args.backend.device()?;
    let pad = tokenizer.special_ids().pad;
    let (train, val) = split_validation(examples);
    let (base, base_path) = base.unzip();
    if args.resume {
        resume::check(&args.out, record, &["steps"])?;
    }

    let mut trainer = match (args.resume, checkpoints::load(&args.out)?) {
        (true, Some(checkpoint)) => {
            let mut trainer = SupervisedTrainer::resume(&checkpoint, base.as_ref(), train, pad, &device)
                .map_err(|e| format!("{}: {e}", checkpoints::folder(&args.out).display()))?;
            trainer.set_total_steps(args.steps);
            eprintln!("resuming {} at step {}", args.out.display(), trainer.steps_done());
            trainer
        }
        (resume, _) => {
            files::start_fresh(&args.out, resume, "training")?;
            device.seed(args.seed);
            let model = base.unwrap_or_else(|| config.init(&device));
            let settings = args.settings().supervised().map_err(|e| e.to_string())?;
            SupervisedTrainer::new(model, config, train, pad, settings).map_err(|e| e.to_string())?
        }
    };

    let run = Loop { out: &args.out, label: "", step_name: "step", unit: "steps", save_every: args.save_every };
    let seconds = drive(&mut trainer, run, &mut |trainer, stats, line, save, progress| {
        if !save {
            return Ok(());
        }
        // With one example there is none to hold out: no validation figure rather than a 0.
        let val_loss = if val.is_empty() { None } else { Some(pollster::block_on(trainer.evaluate(&val)).map_err(|e| e.to_string())?) };
        line["val_loss"] = val_loss.into();
        let shown = val_loss
            .map_or_else(|| "no validation loss (too few examples to hold one out)".to_owned(), |v| format!("validation loss {v:.4}"));
        progress.println(format!("step {}: loss {:.4}, {shown}", stats.step, stats.loss));
        let checkpoint = pollster::block_on(trainer.checkpoint()).map_err(|e| e.to_string())?;
        line.write()?;
        if trainer.is_done() {
            manifest["final_loss"] = stats.loss.into();
            manifest["val_loss"] = val_loss.into();
            manifest["command"] = std::env::args().collect::<Vec<_>>().join(" ").into();
            let tuned = Tuned {
                model: TunedModel::Language(&trainer.model()),
                config_json: &checkpoint.config_json,
                weights: checkpoint.weights.as_deref(),
                lora: trainer.settings().lora.as_ref(),
                base: base_path,
                merge: args.lora.merge(),
                tokenizer,
            };
            save_tuned(&args.out, &tuned, &manifest)?;
        }
        // The checkpoint last: a run killed before it resumes from the one before and writes the
        // model again, so a finished checkpoint always has its model beside it.
        checkpoints::save(&args.out, &checkpoint, &record.to_json())
    })?;
    eprintln!("done in {seconds:.0} s: {}", args.out.display());
    Ok(())
}

/// SHA-256 of the input files, so a manifest pins exactly what the model was trained on.
pub fn files_digest(paths: &[&Path]) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(files::read_large(path)?);
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}
